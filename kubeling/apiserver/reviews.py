"""The review resources: create-only, answered from the request, never stored.

authentication.k8s.io/v1 ``selfsubjectreviews`` (``kubectl auth whoami``) and ``tokenreviews``;
authorization.k8s.io/v1 ``selfsubjectaccessreviews`` (``kubectl auth can-i``), ``subjectaccessreviews``,
``localsubjectaccessreviews`` and ``selfsubjectrulesreviews`` (``kubectl auth can-i --list``).

kubeling enforces no authorization: every authenticated user may do everything, which is upstream's
``--authorization-mode=AlwaysAllow`` (and what its privileged-group authorizer answers for
system:masters). So an access review is allowed with an empty reason, as those authorizers give,
and a rules review lists ``*`` verbs on ``*`` resources of ``*`` groups and on ``*`` non-resource
URLs, not incomplete. Upstream's request validation of each kind is kept, with its messages.

``ResourceHandlers.create`` consults ``CREATE_ONLY`` before the store's create path.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from kubeling.api import errors
from kubeling.api.catalogue import Resource
from kubeling.apiserver import encoding, requestkeys
from kubeling.apiserver.handlers import json_response, read_raw
from kubeling.apiserver.registry import now_rfc3339
from kubeling.apiserver.requestinfo import RequestInfo
from kubeling.apiserver.tokens import ISSUER

if TYPE_CHECKING:
    from kubeling.apiserver.handlers import ResourceHandlers

Obj = dict[str, Any]
Handler = Callable[["ResourceHandlers", web.Request, Resource, RequestInfo], Awaitable[web.Response]]

# upstream's --api-audiences default: the service account issuer
API_AUDIENCES = [ISSUER]
AUTHENTICATED = "system:authenticated"
INVALID_TOKEN = "invalid bearer token"  # what upstream's bearer token authenticator reports


# ---- shared steps ------------------------------------------------------------------------------------
async def _decode(handlers: ResourceHandlers, request: web.Request, res: Resource,
                  info: RequestInfo) -> tuple[Obj, list[str]]:
    """The request's object, checked as any create's is (kind, namespace, strict field validation)."""
    raw = await read_raw(request)
    body = encoding.decode_body(raw, request.headers.get("Content-Type", "application/json"))
    if not isinstance(body, dict):
        raise errors.bad_request("the body of the request was not a JSON object")
    registry = handlers.registry
    registry._check_identity(res, body, info.namespace)
    warnings = registry._validate_schema(res, body, handlers._field_validation(request))
    # Go writes the zero creationTimestamp of an object it did not stamp as null
    body["metadata"].setdefault("creationTimestamp", None)
    return body, warnings


def user_info(user: Obj) -> Obj:
    """authentication/v1 UserInfo of an authenticated user, with the group every one of them gets."""
    groups = list(user.get("groups") or [])
    if AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)  # upstream's AuthenticatedGroupAdder
    out: Obj = {"username": user.get("name", ""), "uid": user.get("uid", ""), "groups": groups,
                "extra": {k: list(v) for k, v in (user.get("extra") or {}).items()}}
    return {k: v for k, v in out.items() if v}  # every field is omitempty


def _requester(request: web.Request) -> Obj:
    user = request.get(requestkeys.USER)
    if user is None:
        raise errors.bad_request("no user present on request")
    return user


# ---- authentication.k8s.io -----------------------------------------------------------------------------
async def self_subject_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                              info: RequestInfo) -> web.Response:
    _, warnings = await _decode(handlers, request, res, info)
    review = {"kind": res.kind, "apiVersion": res.api_version,
              "metadata": {"creationTimestamp": now_rfc3339()},
              "status": {"userInfo": user_info(_requester(request))}}
    return json_response(review, 201, warnings=warnings)


def _go_quoted_list(values: list[str]) -> str:
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(orjson.dumps(v).decode() for v in values) + "]"


def _token_audiences(token: str) -> list[str]:
    """The aud claim of a JWT the service account authenticator has already verified."""
    payload = token.split(".")[1]
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    aud = claims.get("aud") or []
    return [aud] if isinstance(aud, str) else list(aud)


async def authenticate_token(handlers: ResourceHandlers, token: str,
                             audiences: list[str]) -> tuple[Obj | None, list[str], str]:
    """The server's token authenticators, as a TokenReview runs them: (user, audiences, error)."""
    server = handlers.server
    static = server.tokens.get(token)
    if static is not None:
        # the token file knows no audiences: it answers for the API server's own only
        both = [a for a in API_AUDIENCES if a in audiences]
        return (static, both, "") if both else (None, [], INVALID_TOKEN)
    user = await server.sa_tokens.authenticate(token)
    if user is None:
        return None, [], INVALID_TOKEN
    token_auds = _token_audiences(token) or API_AUDIENCES
    both = [a for a in token_auds if a in audiences]
    if not both:
        return None, [], (f"token audiences {_go_quoted_list(token_auds)} is invalid for the target "
                          f"audiences {_go_quoted_list(audiences)}")
    return user, both, ""


async def token_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                       info: RequestInfo) -> web.Response:
    review, warnings = await _decode(handlers, request, res, info)
    spec = review.get("spec") or {}
    token = spec.get("token") or ""
    if not token:
        raise errors.bad_request("token is required for TokenReview in authentication")
    audiences = list(spec.get("audiences") or API_AUDIENCES)
    user, granted, error = await authenticate_token(handlers, token, audiences)
    status: Obj = {"user": {}}
    if user is not None:
        status = {"authenticated": True, "user": user_info(user), "audiences": granted}
    if error:
        status["error"] = error
    review["status"] = status
    return json_response(review, 201, warnings=warnings)


# ---- authorization.k8s.io --------------------------------------------------------------------------------
def _go_struct(type_name: str, fields: list[tuple[str, str]], value: Obj) -> str:
    """Go's %#v of a struct of string fields, as a field error renders its bad value."""
    return type_name + "{" + ", ".join(f"{go}:{orjson.dumps(str(value.get(key) or '')).decode()}"
                                       for go, key in fields) + "}"


def _non_resource_repr(attrs: Obj) -> str:
    return _go_struct("authorization.NonResourceAttributes", [("Path", "path"), ("Verb", "verb")], attrs)


def _go_map(value: Any) -> str:
    if not value:
        return "map[string]string(nil)"
    return "map[string]string{" + ", ".join(f"{orjson.dumps(k).decode()}:{orjson.dumps(str(v)).decode()}"
                                            for k, v in sorted(value.items())) + "}"


def _object_meta_repr(meta: Obj) -> str:
    """Go's %#v of the metav1.ObjectMeta a review must not carry (the usual fields; the rest zero)."""
    strings = [("Name", "name"), ("GenerateName", "generateName"), ("Namespace", "namespace"),
               ("SelfLink", "selfLink"), ("UID", "uid"), ("ResourceVersion", "resourceVersion")]
    parts = [f"{go}:{orjson.dumps(str(meta.get(key) or '')).decode()}" for go, key in strings]
    finalizers = meta.get("finalizers")
    parts += [f"Generation:{int(meta.get('generation') or 0)}",
              "CreationTimestamp:time.Date(1, time.January, 1, 0, 0, 0, 0, time.UTC)",
              "DeletionTimestamp:(*v1.Time)(nil)", "DeletionGracePeriodSeconds:(*int64)(nil)",
              f"Labels:{_go_map(meta.get('labels'))}", f"Annotations:{_go_map(meta.get('annotations'))}",
              "OwnerReferences:[]v1.OwnerReference(nil)",
              "Finalizers:" + ("[]string{" + ", ".join(orjson.dumps(f).decode() for f in finalizers) + "}"
                               if finalizers else "[]string(nil)"),
              "ManagedFields:[]v1.ManagedFieldsEntry(nil)"]
    return "v1.ObjectMeta{" + ", ".join(parts) + "}"


def _meta_is_empty(meta: Obj, *, except_namespace: bool = False) -> bool:
    ignored = {"managedFields"} | ({"namespace"} if except_namespace else set())
    return not any(v for k, v in meta.items() if k not in ignored)


class _Rendered(errors.FieldError):
    """A field error whose bad value is already rendered as Go's %#v (printed as is, not quoted)."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.field}: {self.type}: {self.bad_value}: {self.detail}"


def _invalid_struct(field: str, rendered: str, detail: str) -> errors.FieldError:
    return _Rendered("Invalid value", field, detail, rendered, True)


def _attributes_errors(spec: Obj) -> list[errors.FieldError]:
    """ValidateSelfSubjectAccessReviewSpec: exactly one of resource or non-resource attributes."""
    resource, non_resource = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    errs: list[errors.FieldError] = []
    if resource is not None and non_resource is not None:
        errs.append(_invalid_struct("spec.nonResourceAttributes", _non_resource_repr(non_resource),
                                    "cannot be specified in combination with resourceAttributes"))
    if resource is None and non_resource is None:
        # upstream passes the (nil) non-resource attributes as the bad value: Go prints "null"
        errs.append(errors.invalid("spec.resourceAttributes", "null",
                                   "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    return errs


def _subject_errors(spec: Obj) -> list[errors.FieldError]:
    errs = _attributes_errors(spec)
    if not spec.get("user") and not spec.get("groups"):
        errs.append(errors.invalid("spec.user", spec.get("user") or "", "at least one of user or group must be specified"))
    return errs


def _meta_errors(meta: Obj, *, local: bool = False) -> list[errors.FieldError]:
    if _meta_is_empty(meta, except_namespace=local):
        return []
    detail = "must be empty except for namespace" if local else "must be empty"
    return [_invalid_struct("metadata", _object_meta_repr(meta), detail)]


def _allow(review: Obj) -> Obj:
    # AlwaysAllow (and the system:masters authorizer) allow with no reason
    review["status"] = {"allowed": True}
    return review


async def _access_review(handlers: ResourceHandlers, request: web.Request, res: Resource, info: RequestInfo,
                         spec_errors: Callable[[Obj], list[Any]], *, self_review: bool) -> web.Response:
    """Validate a (self) subject access review and allow it, as upstream's AlwaysAllow answers."""
    review, warnings = await _decode(handlers, request, res, info)
    errs = spec_errors(review.get("spec") or {}) + _meta_errors(review["metadata"])
    if errs:
        raise errors.invalid_error(res.group, res.kind, "", errs)
    if self_review:
        _requester(request)
    return json_response(_allow(review), 201, warnings=warnings)


async def self_subject_access_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                                     info: RequestInfo) -> web.Response:
    return await _access_review(handlers, request, res, info, _attributes_errors, self_review=True)


async def subject_access_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                                info: RequestInfo) -> web.Response:
    return await _access_review(handlers, request, res, info, _subject_errors, self_review=False)


async def local_subject_access_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                                      info: RequestInfo) -> web.Response:
    review, warnings = await _decode(handlers, request, res, info)
    spec = review.get("spec") or {}
    namespace = review["metadata"].get("namespace") or ""
    errs = _subject_errors(spec) + _meta_errors(review["metadata"], local=True)
    resource = spec.get("resourceAttributes")
    if resource is not None and (resource.get("namespace") or "") != namespace:
        errs.append(errors.invalid("spec.resourceAttributes.namespace", resource.get("namespace") or "",
                                   "must match metadata.namespace"))
    non_resource = spec.get("nonResourceAttributes")
    if non_resource is not None:
        errs.append(_invalid_struct("spec.nonResourceAttributes", _non_resource_repr(non_resource),
                                    "disallowed on this kind of request"))
    if errs:
        raise errors.invalid_error(res.group, res.kind, "", errs)
    if not info.namespace:
        raise errors.bad_request(f"namespace is required on this type: {info.namespace or ''}")
    return json_response(_allow(review), 201, warnings=warnings)


def rules_status() -> Obj:
    """What AlwaysAllow's rule resolver lists: everything, and nothing left out."""
    return {"resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False}


async def self_subject_rules_review(handlers: ResourceHandlers, request: web.Request, res: Resource,
                                    info: RequestInfo) -> web.Response:
    review, warnings = await _decode(handlers, request, res, info)
    _requester(request)
    if not (review.get("spec") or {}).get("namespace"):
        raise errors.bad_request("no namespace on request")
    # upstream answers a new object: only the status, not the spec it was asked with
    answer = {"kind": res.kind, "apiVersion": res.api_version, "metadata": {"creationTimestamp": None},
              "spec": {}, "status": rules_status()}
    return json_response(answer, 201, warnings=warnings)


CREATE_ONLY: dict[tuple[str, str], Handler] = {
    ("authentication.k8s.io", "selfsubjectreviews"): self_subject_review,
    ("authentication.k8s.io", "tokenreviews"): token_review,
    ("authorization.k8s.io", "selfsubjectaccessreviews"): self_subject_access_review,
    ("authorization.k8s.io", "subjectaccessreviews"): subject_access_review,
    ("authorization.k8s.io", "localsubjectaccessreviews"): local_subject_access_review,
    ("authorization.k8s.io", "selfsubjectrulesreviews"): self_subject_rules_review,
}
