"""/openapi/v2 content negotiation, and the document as protobuf (gnostic's ``openapi.v2.Document``).

kubectl's client-side validation asks for ``application/com.github.proto-openapi.spec.v2@v1.0+protobuf``
and, on a 406, falls back to a path no current server has. Upstream (kube-openapi's handler) parses
the JSON document with gnostic and marshals the resulting message; this module builds the same
message from the JSON document with the ``protobuf`` runtime (a dependency through aetcd). The
schema of the messages is declared below as data (names and field numbers of gnostic's
OpenAPIv2.proto) and loaded into a private descriptor pool, so no generated code is needed.

gnostic's mapping from JSON, kept here: a key starting with ``x-`` becomes a vendor extension whose
value is the YAML text of the JSON value; so do ``default``, ``example`` and ``enum`` members (the
``Any`` message); a JSON object of names becomes a repeated ``Named*`` message in document order;
the ``oneof`` messages pick their member from the JSON (``in`` of a parameter, ``$ref`` or not, the
``type`` of a security definition).

Serving follows kube-openapi's handler: media types negotiated as goautoneg sorts the Accept header,
an ETag that is the SHA-512 of the JSON document (shared by both forms, hence ``Vary: Accept``),
Last-Modified, 304 on a matching If-None-Match / If-Modified-Since, gzip when the client accepts it,
and 406 with an empty body when no form matches. Each form is built once per JSON document (the
document changes only when CRDs do) and kept with its gzip form.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import cache
from typing import Any

import orjson
import yaml
from aiohttp import web
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

JSON = "application/json"
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
# (type, subtype) clients may ask for -> what is answered; the deprecated "@" form answers the new name
_OFFERS = (("application", "json", "json"),
           ("application", "com.github.proto-openapi.spec.v2@v1.0+protobuf", "proto"),
           ("application", "com.github.proto-openapi.spec.v2.v1.0+protobuf", "proto"))
_GZIP_MIN = 1400  # gziphandler's DefaultMinSize

# gnostic's OpenAPIv2.proto, one message a line: field=number, ":type" (string when absent),
# "*" before the type for repeated, "|" before the name for a member of the message's one oneof.
_MESSAGES = """
AdditionalPropertiesItem |schema:Schema=1 |boolean:bool=2
Any value:.google.protobuf.Any=1 yaml=2
ApiKeySecurity type=1 name=2 in=3 description=4 vendor_extension:*NamedAny=5
BasicAuthenticationSecurity type=1 description=2 vendor_extension:*NamedAny=3
BodyParameter description=1 name=2 in=3 required:bool=4 schema:Schema=5 vendor_extension:*NamedAny=6
Contact name=1 url=2 email=3 vendor_extension:*NamedAny=4
Default additional_properties:*NamedAny=1
Definitions additional_properties:*NamedSchema=1
Document swagger=1 info:Info=2 host=3 base_path=4 schemes:*string=5 consumes:*string=6 produces:*string=7
    paths:Paths=8 definitions:Definitions=9 parameters:ParameterDefinitions=10
    responses:ResponseDefinitions=11 security:*SecurityRequirement=12
    security_definitions:SecurityDefinitions=13 tags:*Tag=14 external_docs:ExternalDocs=15
    vendor_extension:*NamedAny=16
Examples additional_properties:*NamedAny=1
ExternalDocs description=1 url=2 vendor_extension:*NamedAny=3
FileSchema format=1 title=2 description=3 default:Any=4 required:*string=5 type=6 read_only:bool=7
    external_docs:ExternalDocs=8 example:Any=9 vendor_extension:*NamedAny=10
FormDataParameterSubSchema required:bool=1 in=2 description=3 name=4 allow_empty_value:bool=5 type=6
    format=7 items:PrimitivesItems=8 collection_format=9 default:Any=10 maximum:double=11
    exclusive_maximum:bool=12 minimum:double=13 exclusive_minimum:bool=14 max_length:int64=15
    min_length:int64=16 pattern=17 max_items:int64=18 min_items:int64=19 unique_items:bool=20
    enum:*Any=21 multiple_of:double=22 vendor_extension:*NamedAny=23
Header type=1 format=2 items:PrimitivesItems=3 collection_format=4 default:Any=5 maximum:double=6
    exclusive_maximum:bool=7 minimum:double=8 exclusive_minimum:bool=9 max_length:int64=10
    min_length:int64=11 pattern=12 max_items:int64=13 min_items:int64=14 unique_items:bool=15
    enum:*Any=16 multiple_of:double=17 description=18 vendor_extension:*NamedAny=19
HeaderParameterSubSchema required:bool=1 in=2 description=3 name=4 type=5 format=6
    items:PrimitivesItems=7 collection_format=8 default:Any=9 maximum:double=10 exclusive_maximum:bool=11
    minimum:double=12 exclusive_minimum:bool=13 max_length:int64=14 min_length:int64=15 pattern=16
    max_items:int64=17 min_items:int64=18 unique_items:bool=19 enum:*Any=20 multiple_of:double=21
    vendor_extension:*NamedAny=22
Headers additional_properties:*NamedHeader=1
Info title=1 version=2 description=3 terms_of_service=4 contact:Contact=5 license:License=6
    vendor_extension:*NamedAny=7
ItemsItem schema:*Schema=1
JsonReference _ref=1 description=2
License name=1 url=2 vendor_extension:*NamedAny=3
NamedAny name=1 value:Any=2
NamedHeader name=1 value:Header=2
NamedParameter name=1 value:Parameter=2
NamedPathItem name=1 value:PathItem=2
NamedResponse name=1 value:Response=2
NamedResponseValue name=1 value:ResponseValue=2
NamedSchema name=1 value:Schema=2
NamedSecurityDefinitionsItem name=1 value:SecurityDefinitionsItem=2
NamedString name=1 value=2
NamedStringArray name=1 value:StringArray=2
NonBodyParameter |header_parameter_sub_schema:HeaderParameterSubSchema=1
    |form_data_parameter_sub_schema:FormDataParameterSubSchema=2
    |query_parameter_sub_schema:QueryParameterSubSchema=3 |path_parameter_sub_schema:PathParameterSubSchema=4
Oauth2AccessCodeSecurity type=1 flow=2 scopes:Oauth2Scopes=3 authorization_url=4 token_url=5
    description=6 vendor_extension:*NamedAny=7
Oauth2ApplicationSecurity type=1 flow=2 scopes:Oauth2Scopes=3 token_url=4 description=5
    vendor_extension:*NamedAny=6
Oauth2ImplicitSecurity type=1 flow=2 scopes:Oauth2Scopes=3 authorization_url=4 description=5
    vendor_extension:*NamedAny=6
Oauth2PasswordSecurity type=1 flow=2 scopes:Oauth2Scopes=3 token_url=4 description=5
    vendor_extension:*NamedAny=6
Oauth2Scopes additional_properties:*NamedString=1
Operation tags:*string=1 summary=2 description=3 external_docs:ExternalDocs=4 operation_id=5
    produces:*string=6 consumes:*string=7 parameters:*ParametersItem=8 responses:Responses=9
    schemes:*string=10 deprecated:bool=11 security:*SecurityRequirement=12 vendor_extension:*NamedAny=13
Parameter |body_parameter:BodyParameter=1 |non_body_parameter:NonBodyParameter=2
ParameterDefinitions additional_properties:*NamedParameter=1
ParametersItem |parameter:Parameter=1 |json_reference:JsonReference=2
PathItem _ref=1 get:Operation=2 put:Operation=3 post:Operation=4 delete:Operation=5 options:Operation=6
    head:Operation=7 patch:Operation=8 parameters:*ParametersItem=9 vendor_extension:*NamedAny=10
PathParameterSubSchema required:bool=1 in=2 description=3 name=4 type=5 format=6
    items:PrimitivesItems=7 collection_format=8 default:Any=9 maximum:double=10 exclusive_maximum:bool=11
    minimum:double=12 exclusive_minimum:bool=13 max_length:int64=14 min_length:int64=15 pattern=16
    max_items:int64=17 min_items:int64=18 unique_items:bool=19 enum:*Any=20 multiple_of:double=21
    vendor_extension:*NamedAny=22
Paths vendor_extension:*NamedAny=1 path:*NamedPathItem=2
PrimitivesItems type=1 format=2 items:PrimitivesItems=3 collection_format=4 default:Any=5
    maximum:double=6 exclusive_maximum:bool=7 minimum:double=8 exclusive_minimum:bool=9
    max_length:int64=10 min_length:int64=11 pattern=12 max_items:int64=13 min_items:int64=14
    unique_items:bool=15 enum:*Any=16 multiple_of:double=17 vendor_extension:*NamedAny=18
Properties additional_properties:*NamedSchema=1
QueryParameterSubSchema required:bool=1 in=2 description=3 name=4 allow_empty_value:bool=5 type=6
    format=7 items:PrimitivesItems=8 collection_format=9 default:Any=10 maximum:double=11
    exclusive_maximum:bool=12 minimum:double=13 exclusive_minimum:bool=14 max_length:int64=15
    min_length:int64=16 pattern=17 max_items:int64=18 min_items:int64=19 unique_items:bool=20
    enum:*Any=21 multiple_of:double=22 vendor_extension:*NamedAny=23
Response description=1 schema:SchemaItem=2 headers:Headers=3 examples:Examples=4
    vendor_extension:*NamedAny=5
ResponseDefinitions additional_properties:*NamedResponse=1
ResponseValue |response:Response=1 |json_reference:JsonReference=2
Responses response_code:*NamedResponseValue=1 vendor_extension:*NamedAny=2
Schema _ref=1 format=2 title=3 description=4 default:Any=5 multiple_of:double=6 maximum:double=7
    exclusive_maximum:bool=8 minimum:double=9 exclusive_minimum:bool=10 max_length:int64=11
    min_length:int64=12 pattern=13 max_items:int64=14 min_items:int64=15 unique_items:bool=16
    max_properties:int64=17 min_properties:int64=18 required:*string=19 enum:*Any=20
    additional_properties:AdditionalPropertiesItem=21 type:TypeItem=22 items:ItemsItem=23
    all_of:*Schema=24 properties:Properties=25 discriminator=26 read_only:bool=27 xml:Xml=28
    external_docs:ExternalDocs=29 example:Any=30 vendor_extension:*NamedAny=31
SchemaItem |schema:Schema=1 |file_schema:FileSchema=2
SecurityDefinitions additional_properties:*NamedSecurityDefinitionsItem=1
SecurityDefinitionsItem |basic_authentication_security:BasicAuthenticationSecurity=1
    |api_key_security:ApiKeySecurity=2 |oauth2_implicit_security:Oauth2ImplicitSecurity=3
    |oauth2_password_security:Oauth2PasswordSecurity=4
    |oauth2_application_security:Oauth2ApplicationSecurity=5
    |oauth2_access_code_security:Oauth2AccessCodeSecurity=6
SecurityRequirement additional_properties:*NamedStringArray=1
StringArray value:*string=1
Tag name=1 description=2 external_docs:ExternalDocs=3 vendor_extension:*NamedAny=4
TypeItem value:*string=1
VendorExtension additional_properties:*NamedAny=1
Xml name=1 namespace=2 prefix=3 attribute:bool=4 wrapped:bool=5 vendor_extension:*NamedAny=6
"""

_SCALARS = {
    "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
}
PACKAGE = "openapi.v2"


def _parse_messages() -> dict[str, list[tuple[str, int, str, bool, bool]]]:
    """message -> [(field, number, type, repeated, in_oneof)] from the table above."""
    out: dict[str, list[tuple[str, int, str, bool, bool]]] = {}
    current: list[tuple[str, int, str, bool, bool]] = []
    for line in _MESSAGES.strip().splitlines():
        tokens = line.split()
        if not line.startswith(" "):
            current = out[tokens.pop(0)] = []
        for tok in tokens:
            spec, _, number = tok.partition("=")
            name, _, typ = spec.partition(":")
            oneof = name.startswith("|")
            repeated = typ.startswith("*")
            current.append((name.lstrip("|"), int(number), typ.lstrip("*") or "string", repeated, oneof))
    return out


def file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """gnostic's OpenAPIv2.proto as a FileDescriptorProto."""
    fdp = descriptor_pb2.FileDescriptorProto(name="openapiv2/OpenAPIv2.proto", package=PACKAGE, syntax="proto3",
                                             dependency=["google/protobuf/any.proto"])
    fdp.options.go_package = "github.com/google/gnostic-models/openapiv2;openapi_v2"
    for msg_name, fields in _parse_messages().items():
        msg = fdp.message_type.add(name=msg_name)
        for name, number, typ, repeated, oneof in fields:
            f = msg.field.add(name=name, number=number)
            f.label = f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL
            if typ in _SCALARS:
                f.type = _SCALARS[typ]
            else:
                f.type = f.TYPE_MESSAGE
                f.type_name = typ if typ.startswith(".") else f".{PACKAGE}.{typ}"
            if oneof:
                if not msg.oneof_decl:
                    msg.oneof_decl.add(name="oneof")
                f.oneof_index = 0
    return fdp


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(any_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file_descriptor().SerializeToString())
    return pool


def message_class(name: str) -> type[Message]:
    """The message class of ``openapi.v2.<name>`` (e.g. for tests that decode the answer)."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"{PACKAGE}.{name}"))


# ---- JSON document -> Document message -------------------------------------------------------------
SCALAR, REPEATED_SCALAR, MESSAGE, REPEATED_MESSAGE, ANY, REPEATED_ANY = range(6)
Field = tuple[int, str, str]  # (kind, attribute, message type)


def _camel(name: str) -> str:
    if name == "_ref":
        return "$ref"
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


@cache
def _fields() -> dict[str, dict[str, Field]]:
    """message -> {JSON key: (kind, attribute, message type)}; vendor extensions are not listed."""
    out: dict[str, dict[str, Field]] = {}
    for msg_name, fields in _parse_messages().items():
        table: dict[str, Field] = {}
        for name, _, typ, repeated, _ in fields:
            if name == "vendor_extension":
                continue
            if typ in _SCALARS:
                kind = REPEATED_SCALAR if repeated else SCALAR
            elif typ == "Any":
                kind = REPEATED_ANY if repeated else ANY
            else:
                kind = REPEATED_MESSAGE if repeated else MESSAGE
            table[_camel(name)] = (kind, name, typ)
        out[msg_name] = table
    return out


def _yaml_text(value: Any) -> str:
    # gnostic stores an Any as yaml.v3's block-style text of the node (no line wrapping)
    text = yaml.dump(value, Dumper=_DUMPER, default_flow_style=False, sort_keys=False, allow_unicode=True,
                     width=1 << 30)
    return text[:-4] if text.endswith("\n...\n") else text


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Builder:
    """Fills messages from JSON values in place (children through their parent, so nothing is copied)."""

    def __init__(self) -> None:
        self.fields = _fields()
        self.vendor_holders = _vendor_holders()
        self.yaml_memo: dict[Any, str] = {}
        self.special: dict[str, Callable[[Any, Any], None]] = {
            "TypeItem": self._type_item, "ItemsItem": self._items_item,
            "AdditionalPropertiesItem": self._additional_properties, "SchemaItem": self._schema_item,
            "Parameter": self._parameter, "NonBodyParameter": self._non_body_parameter,
            "ParametersItem": self._ref_or("parameter", "Parameter"),
            "ResponseValue": self._ref_or("response", "Response"),
            "SecurityDefinitionsItem": self._security_definition, "Paths": self._paths,
            "Responses": self._responses, "StringArray": self._string_array,
        }
        # messages that are a JSON object of names: {wrapper: (kind of the Named* value, its type)}
        self.maps: dict[str, tuple[int, str]] = {}
        for msg_name, table in self.fields.items():
            if list(table) == ["additionalProperties"] and table["additionalProperties"][0] == REPEATED_MESSAGE:
                named = table["additionalProperties"][2]
                value = self.fields[named]["value"]
                self.maps[msg_name] = (value[0], value[2])

    def yaml(self, value: Any) -> str:
        key: Any = (type(value), value) if isinstance(value, str | int | float | bool) or value is None \
            else orjson.dumps(value)
        text = self.yaml_memo.get(key)
        if text is None:
            text = self.yaml_memo[key] = _yaml_text(value)
        return text

    def fill(self, msg: Any, typ: str, obj: Any) -> None:
        special = self.special.get(typ)
        if special is not None:
            special(msg, obj)
            return
        if not isinstance(obj, dict):
            return  # not what gnostic would accept here: left empty
        mapped = self.maps.get(typ)
        if mapped is not None:
            self._named(msg.additional_properties, obj, *mapped)
            return
        table = self.fields[typ]
        for key, value in obj.items():
            f = table.get(key)
            if f is not None:
                self._set(msg, f, value)
            elif key.startswith("x-") and typ in self.vendor_holders:
                self._vendor(msg, key, value)

    def _set(self, msg: Any, f: Field, value: Any) -> None:
        kind, attr, typ = f
        try:
            if kind == SCALAR:
                setattr(msg, attr, value)
            elif kind == MESSAGE:
                child = getattr(msg, attr)
                child.SetInParent()
                self.fill(child, typ, value)
            elif kind == REPEATED_MESSAGE:
                repeated = getattr(msg, attr)
                for item in value:
                    self.fill(repeated.add(), typ, item)
            elif kind == ANY:
                getattr(msg, attr).yaml = self.yaml(value)
            elif kind == REPEATED_ANY:
                repeated = getattr(msg, attr)
                for item in value:
                    repeated.add().yaml = self.yaml(item)
            else:
                getattr(msg, attr).extend(value)
        except (TypeError, ValueError):
            pass  # a value of the wrong JSON type: gnostic reports it, here the field stays unset

    def _named(self, repeated: Any, obj: Any, kind: int, typ: str) -> None:
        if not isinstance(obj, dict):
            return
        for name, value in obj.items():
            self._set(repeated.add(name=name), (kind, "value", typ), value)

    def _vendor(self, msg: Any, key: str, value: Any) -> None:
        msg.vendor_extension.add(name=key).value.yaml = self.yaml(value)

    # ---- the messages gnostic builds by shape, not by key --------------------------------------
    def _type_item(self, msg: Any, obj: Any) -> None:
        self._set(msg, (REPEATED_SCALAR, "value", "string"), [obj] if isinstance(obj, str) else obj)

    def _items_item(self, msg: Any, obj: Any) -> None:
        self._set(msg, (REPEATED_MESSAGE, "schema", "Schema"), [obj] if isinstance(obj, dict) else obj)

    def _additional_properties(self, msg: Any, obj: Any) -> None:
        if isinstance(obj, bool):
            msg.boolean = obj
        else:
            self._set(msg, (MESSAGE, "schema", "Schema"), obj)

    def _schema_item(self, msg: Any, obj: Any) -> None:
        is_file = isinstance(obj, dict) and obj.get("type") == "file"
        self._set(msg, (MESSAGE, "file_schema", "FileSchema") if is_file else (MESSAGE, "schema", "Schema"), obj)

    def _parameter(self, msg: Any, obj: Any) -> None:
        is_body = isinstance(obj, dict) and obj.get("in") == "body"
        self._set(msg, (MESSAGE, "body_parameter", "BodyParameter") if is_body
                  else (MESSAGE, "non_body_parameter", "NonBodyParameter"), obj)

    _SUB_SCHEMAS = {"header": ("header_parameter_sub_schema", "HeaderParameterSubSchema"),
                    "formData": ("form_data_parameter_sub_schema", "FormDataParameterSubSchema"),
                    "query": ("query_parameter_sub_schema", "QueryParameterSubSchema"),
                    "path": ("path_parameter_sub_schema", "PathParameterSubSchema")}

    def _non_body_parameter(self, msg: Any, obj: Any) -> None:
        sub = self._SUB_SCHEMAS.get(obj.get("in")) if isinstance(obj, dict) else None
        if sub is not None:
            self._set(msg, (MESSAGE, *sub), obj)

    def _ref_or(self, attr: str, typ: str) -> Callable[[Any, Any], None]:
        def fill(msg: Any, obj: Any) -> None:
            if isinstance(obj, dict) and "$ref" in obj:
                self._set(msg, (MESSAGE, "json_reference", "JsonReference"), obj)
            else:
                self._set(msg, (MESSAGE, attr, typ), obj)
        return fill

    _SECURITY = {("basic", None): ("basic_authentication_security", "BasicAuthenticationSecurity"),
                 ("apiKey", None): ("api_key_security", "ApiKeySecurity"),
                 ("oauth2", "implicit"): ("oauth2_implicit_security", "Oauth2ImplicitSecurity"),
                 ("oauth2", "password"): ("oauth2_password_security", "Oauth2PasswordSecurity"),
                 ("oauth2", "application"): ("oauth2_application_security", "Oauth2ApplicationSecurity"),
                 ("oauth2", "accessCode"): ("oauth2_access_code_security", "Oauth2AccessCodeSecurity")}

    def _security_definition(self, msg: Any, obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        kind = obj.get("type")
        sub = self._SECURITY.get((kind, obj.get("flow") if kind == "oauth2" else None))
        if sub is not None:
            self._set(msg, (MESSAGE, *sub), obj)

    def _paths(self, msg: Any, obj: Any) -> None:
        for key, value in obj.items() if isinstance(obj, dict) else ():
            if key.startswith("/"):
                self._set(msg.path.add(name=key), (MESSAGE, "value", "PathItem"), value)
            elif key.startswith("x-"):
                self._vendor(msg, key, value)

    def _responses(self, msg: Any, obj: Any) -> None:
        for key, value in obj.items() if isinstance(obj, dict) else ():
            if key.startswith("x-"):
                self._vendor(msg, key, value)
            else:
                self._set(msg.response_code.add(name=key), (MESSAGE, "value", "ResponseValue"), value)

    def _string_array(self, msg: Any, obj: Any) -> None:
        self._set(msg, (REPEATED_SCALAR, "value", "string"), obj)


@cache
def _vendor_holders() -> frozenset[str]:
    return frozenset(name for name, fields in _parse_messages().items()
                     if any(f[0] == "vendor_extension" for f in fields))


def document(doc: dict[str, Any]) -> Message:
    """The ``openapi.v2.Document`` message for a parsed OpenAPI v2 (Swagger 2.0) JSON document."""
    msg = message_class("Document")()
    _Builder().fill(msg, "Document", doc)
    return msg


def to_protobuf(json_body: bytes) -> bytes:
    """kube-openapi's ToProtoBinary: the JSON document -> the serialized Document."""
    return document(orjson.loads(json_body)).SerializeToString()


# ---- serving ----------------------------------------------------------------------------------------
@dataclass
class _Form:
    body: bytes
    gzipped: bytes | None = None

    async def encoded(self) -> bytes:
        if self.gzipped is None:  # tens of ms for a few MB: off the event loop, once
            self.gzipped = await asyncio.to_thread(gzip.compress, self.body, compresslevel=6, mtime=0)
        return self.gzipped


@dataclass
class _Served:
    """One JSON document and what is derived from it."""

    json: bytes
    etag: str
    last_modified: datetime
    forms: dict[str, _Form] = field(default_factory=dict)
    proto_task: asyncio.Future[bytes] | None = None


_current: _Served | None = None


def _served(json_body: bytes) -> _Served:
    global _current
    cur = _current
    if cur is None or (cur.json is not json_body and cur.json != json_body):
        # upstream's ETag: the upper-case hex SHA-512 of the JSON document, for both forms
        etag = '"' + hashlib.sha512(json_body).hexdigest().upper() + '"'
        now = datetime.fromtimestamp(int(time.time()), UTC)
        cur = _current = _Served(json_body, etag, now, {"json": _Form(json_body)})
    return cur


async def _form(served: _Served, name: str) -> _Form:
    form = served.forms.get(name)
    if form is not None:
        return form
    if served.proto_task is None:
        # seconds of CPU for a large document: off the event loop, once however many ask meanwhile
        served.proto_task = asyncio.ensure_future(asyncio.to_thread(to_protobuf, served.json))
    try:
        body = await asyncio.shield(served.proto_task)
    except Exception:
        served.proto_task = None
        raise
    form = served.forms.setdefault(name, _Form(body))
    return form


def negotiate(accept: str) -> str | None:
    """Which form ("json" or "proto") kube-openapi's handler serves for this Accept header; None: 406."""
    clauses = []
    for part in (accept or "*/*").split(","):
        media, *params = part.split(";")
        pieces = media.split("/")
        typ = pieces[0].strip()
        if len(pieces) == 2:
            sub = pieces[1].strip()
        elif len(pieces) == 1 and typ == "*":
            sub = "*"
        else:
            continue
        q = 1.0
        for p in params:
            k, eq, v = p.partition("=")
            if eq and k.strip() == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        clauses.append((-q, typ == "*", sub == "*", typ, sub))
    clauses.sort(key=lambda c: c[:3])
    for _, _, _, typ, sub in clauses:
        for offer_type, offer_sub, form in _OFFERS:
            if typ in (offer_type, "*") and sub in (offer_sub, "*"):
                return form
    return None


def _not_modified(request: web.Request, served: _Served) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or served.etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            return served.last_modified <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


async def serve(request: web.Request, json_body: bytes) -> web.Response:
    """GET /openapi/v2 as kube-openapi's OpenAPIService handler answers it."""
    served = _served(json_body)
    form_name = negotiate(request.headers.get("Accept", ""))
    headers = {"Vary": "Accept, Accept-Encoding", "Cache-Control": "no-cache, private"}
    if form_name is None:
        return web.Response(status=406, headers=headers)
    headers["Etag"] = served.etag
    if _not_modified(request, served):
        return web.Response(status=304, headers=headers)
    form = await _form(served, form_name)
    headers["Content-Type"] = JSON if form_name == "json" else PROTOBUF
    headers["Last-Modified"] = format_datetime(served.last_modified, usegmt=True)
    body = form.body
    if len(body) >= _GZIP_MIN and "gzip" in request.headers.get("Accept-Encoding", ""):
        body = await form.encoded()
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)
