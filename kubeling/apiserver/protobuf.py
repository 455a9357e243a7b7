"""Decode ``application/vnd.kubernetes.protobuf`` request bodies into the JSON dicts the server works on.

kubectl 1.32's typed clients (``create namespace``, ``create configmap``, ``drain``'s evictions, ...)
send protobuf. The wire format is the ``k8s\\x00`` magic then a runtime.Unknown envelope (TypeMeta +
raw object bytes); the object's field table comes from upstream's generated.proto and types.go
(see protobuf_gen.py). Zero values of omitempty fields are dropped, as Go's JSON encoder would.
Responses stay JSON: every client that sends protobuf also accepts JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from functools import cache
from pathlib import Path
from typing import Any

import orjson

from kubeling.api import errors

MAGIC = b"k8s\x00"
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_SPECIAL = {
    META + "Time", META + "MicroTime", META + "Duration", META + "FieldsV1",
    "k8s.io.apimachinery.pkg.api.resource.Quantity", "k8s.io.apimachinery.pkg.util.intstr.IntOrString",
    "k8s.io.apimachinery.pkg.runtime.RawExtension",
}
# API groups whose k8s.io/api folder is not the group's first DNS label
_PACKAGE_OF_GROUP = {"": "core", "internal.apiserver.k8s.io": "apiserverinternal"}


@cache
def _table() -> dict[str, dict[str, list[Any]]]:
    return orjson.loads(Path(__file__).with_name("protobuf_messages.json").read_bytes())


def message_for(api_version: str, kind: str) -> str:
    group, _, version = api_version.rpartition("/")
    folder = _PACKAGE_OF_GROUP.get(group, group.split(".")[0])
    return f"k8s.io.api.{folder}.{version}.{kind}"


def decode(raw: bytes) -> dict[str, Any]:
    """A protobuf request body -> the object as JSON would have carried it."""
    if not raw.startswith(MAGIC):
        raise errors.bad_request("provided data does not appear to be a protobuf message, expected prefix "
                                 f"{list(MAGIC)}")
    try:
        envelope = _fields(memoryview(raw)[len(MAGIC):])
        type_meta = _fields(envelope.get(1, [b""])[-1])
        api_version = bytes(type_meta.get(1, [b""])[-1]).decode()
        kind = bytes(type_meta.get(2, [b""])[-1]).decode()
        body = envelope.get(2, [b""])[-1]
        name = message_for(api_version, kind)
        if name not in _table():
            raise errors.StatusError(
                415, "UnsupportedMediaType",
                f'the body of the request was in an unknown format - accepted media types include: '
                f'application/json, application/yaml (no protobuf for "{api_version}, Kind={kind}")')
        obj = _message(name, body)
    except errors.StatusError:
        raise
    except Exception as exc:  # noqa: BLE001 - any malformed message is the client's error
        raise errors.bad_request(f"unable to decode protobuf body: {exc}") from exc
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request was not an object")
    return {"kind": kind, "apiVersion": api_version, **obj}


# ---- wire format ------------------------------------------------------------------------

def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 70:
            raise ValueError("varint too long")


def _fields(buf: memoryview | bytes) -> dict[int, list[Any]]:
    """field number -> raw values (ints for varint/fixed, memoryviews for length-delimited)."""
    buf = memoryview(buf)
    out: dict[int, list[Any]] = {}
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value = ("f64", bytes(buf[i:i + 8]))
            i += 8
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ValueError("truncated field")
            value = buf[i:i + size]
            i += size
        elif wire == 5:
            value = ("f32", bytes(buf[i:i + 4]))
            i += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out.setdefault(num, []).append(value)
    return out


def _signed(v: int) -> int:
    """Negative int32/int64 values travel as 64-bit two's complement varints."""
    return v - (1 << 64) if v >= 1 << 63 else v


def _scalar(typ: str, v: Any) -> Any:
    if typ == "string":
        return bytes(v).decode()
    if typ == "bytes":
        return base64.b64encode(bytes(v)).decode()
    if typ == "bool":
        return bool(v)
    if typ in ("int32", "int64"):
        return _signed(v)
    if typ in ("uint32", "uint64"):
        return v
    if typ == "double":
        return struct.unpack("<d", v[1])[0]
    if typ == "float":
        return struct.unpack("<f", v[1])[0]
    raise ValueError(f"unsupported scalar {typ}")


def _repeated_scalars(typ: str, values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if isinstance(v, memoryview) and typ not in ("string", "bytes"):
            i = 0
            while i < len(v):  # a packed run
                item, i = _varint(v, i)
                out.append(_scalar(typ, item))
        else:
            out.append(_scalar(typ, v))
    return out


def _special(name: str, buf: memoryview) -> Any:
    f = _fields(buf)
    if name in (META + "Time", META + "MicroTime"):
        seconds, nanos = _signed(f.get(1, [0])[-1]), f.get(2, [0])[-1]
        if not seconds and not nanos:
            return None
        t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds, microseconds=nanos // 1000)
        return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if name.endswith("MicroTime") else "%Y-%m-%dT%H:%M:%SZ")
    if name == META + "Duration":
        ns = _signed(f.get(1, [0])[-1])
        return f"{ns / 1e9:g}s"
    if name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return bytes(f.get(1, [b""])[-1]).decode()
    if name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        if f.get(1, [0])[-1] == 1:
            return bytes(f.get(3, [b""])[-1]).decode()
        return _signed(f.get(2, [0])[-1])
    raw = bytes(f.get(1, [b""])[-1])  # RawExtension / FieldsV1: embedded JSON
    return orjson.loads(raw) if raw else None


def _value(typ: str, v: Any) -> Any:
    if typ in _SPECIAL:
        return _special(typ, v)
    if typ in _table():
        return _message(typ, v)
    return _scalar(typ, v)


def _is_zero(v: Any) -> bool:
    return v is None or v is False or v == 0 and not isinstance(v, bool) or v in ("", [], {})


def _message(name: str, buf: memoryview | bytes) -> dict[str, Any]:
    spec = _table()[name]
    out: dict[str, Any] = {}
    for num, values in _fields(buf).items():
        field = spec.get(str(num))
        if field is None or field[0] == "-":
            continue
        jname, keep, label, typ = field[0], field[1], field[2], field[3]
        value: Any
        if label == "map":
            value = {}
            for entry in values:
                ef = _fields(entry)
                key = _scalar(field[4], ef[1][-1]) if 1 in ef else ""
                value[key] = _value(typ, ef[2][-1]) if 2 in ef else _value(typ, b"") if typ in _table() \
                    else ("" if typ in ("string", "bytes") else 0)
        elif label == "rep":
            if typ in _SPECIAL or typ in _table():
                value = [_value(typ, v) for v in values]
            else:
                value = _repeated_scalars(typ, values)
        else:
            value = _value(typ, values[-1])
        if jname == "":
            if isinstance(value, dict):
                out.update(value)
            continue
        is_message = typ in _table() and label == "opt"
        if not keep and not is_message and _is_zero(value):
            continue
        out[jname] = value
    return out
