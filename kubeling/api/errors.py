"""API errors as upstream's metav1.Status, and field errors as upstream's field.Error.

Everything that rejects a request raises StatusError; the HTTP layer writes its
``status`` dict as the body with its ``code``. Messages follow
k8s.io/apimachinery/pkg/api/errors and pkg/util/validation/field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

# field.ErrorType: the Go constant names travel in Status.details.causes[].reason
FIELD_REASONS = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Not found": "FieldValueNotFound",
    "Internal error": "InternalError",
    "Unknown field": "FieldValueUnknown",  # strict decoding
}


def go_repr(value: Any) -> str:
    """Render a value roughly as Go's %v/%q would in a field error message."""
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        inner = ", ".join(f"{orjson.dumps(str(k)).decode()}:{go_repr(v)}" for k, v in value.items())
        if all(isinstance(v, str) for v in value.values()):
            return "map[string]string{" + inner + "}"
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]" + ("string{" if all(isinstance(v, str) for v in value) else "interface {}{") + \
            ", ".join(go_repr(v) for v in value) + "}"
    return str(value)


@dataclass(slots=True)
class FieldError:
    """One field.Error: ``type`` is the human form ("Invalid value", "Required value", ...)."""

    type: str
    field: str
    detail: str = ""
    bad_value: Any = None
    has_value: bool = False

    def __str__(self) -> str:
        if self.type in ("Required value", "Forbidden", "Too long", "Too many", "Internal error"):
            s = f"{self.field}: {self.type}"
        elif self.type == "Unknown field":
            return f'unknown field "{self.field}"'
        else:
            s = f"{self.field}: {self.type}"
            if self.has_value:
                s += f": {go_repr(self.bad_value)}"
        if self.detail:
            s += f": {self.detail}"
        return s

    def cause(self) -> dict[str, str]:
        return {"reason": FIELD_REASONS.get(self.type, "FieldValueInvalid"),
                "message": str(self) if self.type == "Unknown field" else _message_tail(self),
                "field": self.field}


def _message_tail(e: FieldError) -> str:
    full = str(e)
    prefix = f"{e.field}: "
    return full[len(prefix):] if full.startswith(prefix) else full


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", field, detail, value, True)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required value", field, detail)


def unsupported(field: str, value: Any, valid: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{v}"' for v in valid)
    return FieldError("Unsupported value", field, detail, value, True)


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, detail)


def duplicate(field: str, value: Any) -> FieldError:
    return FieldError("Duplicate value", field, "", value, True)


def not_found(field: str, value: Any) -> FieldError:
    return FieldError("Not found", field, "", value, True)


class StatusError(Exception):
    """An error answered as a metav1.Status body with HTTP ``code``."""

    def __init__(self, code: int, reason: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    @property
    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(name: str, group: str, kind: str, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = kind
    d.update(extra)
    return d


def _qualified(group: str, resource: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found_error(group: str, resource: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(group, resource)} "{name}" not found',
                       details=_details(name, group, resource))


def already_exists(group: str, resource: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(group, resource)} "{name}" already exists',
                       details=_details(name, group, resource))


def conflict(group: str, resource: str, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(group, resource)} "{name}": {why}',
                       details=_details(name, group, resource))


OBJECT_MODIFIED = "the object has been modified; please apply your changes to the latest version and try again"


def invalid_error(group: str, kind: str, name: str, errors: list[FieldError]) -> StatusError:
    """422 Invalid: 'The DaemonSet "x" is invalid: <field errors>' as upstream's NewInvalid."""
    qualified = f"{kind}.{group}" if group else kind
    msgs = [str(e) for e in errors]
    agg = msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"
    return StatusError(422, "Invalid", f'{qualified} "{name}" is invalid: {agg}',
                       details=_details(name, group, kind, causes=[e.cause() for e in errors]))


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type})")


def too_large() -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def forbidden_error(group: str, resource: str, name: str, why: str) -> StatusError:
    return StatusError(403, "Forbidden", f'{_qualified(group, resource)} "{name}" is forbidden: {why}',
                       details=_details(name, group, resource))


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")
