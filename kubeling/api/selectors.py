"""Label and field selectors, parsed, matched and printed as upstream does.

Label selectors follow k8s.io/apimachinery/pkg/labels: a small lexer/parser over
``a=b,c!=d,e in (x,y),!f`` with the same validation and error texts, and
requirements kept sorted by key so ``str()`` gives the canonical form. Field
selectors follow pkg/fields (``a=b,c!=d`` with backslash escapes). Each kind
accepts only the field labels its registry exposes; ``convert_field_selector``
applies upstream's per-kind conversion (and its error texts) and ``field_set``
computes the values a selector is matched against. Every syntax error is a
400 BadRequest StatusError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kubeling.api.errors import FieldError, StatusError, bad_request, go_repr, invalid
from kubeling.api.validation.meta import label_value, qualified_name


def _aggregate(errors: list[FieldError]) -> str:
    msgs = [str(e) for e in errors]
    return msgs[0] if len(msgs) == 1 else "[" + ", ".join(msgs) + "]"


# ---------------------------------------------------------------- label selectors
# keys and values are checked by validation.meta, as metadata.labels are (upstream: one function)

EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN, EXISTS, DOES_NOT_EXIST, GT, LT = "in", "notin", "exists", "!", "gt", "lt"
_BINARY_OPERATORS = [IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GT, LT]


def _parse_int64(text: str) -> int | None:
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        return None
    n = int(text)
    return n if -(2**63) <= n < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; build with ``new_requirement`` to validate."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GT, LT):
            if self.key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GT else have < want
        return False

    def __str__(self) -> str:
        op = self.operator
        if op == DOES_NOT_EXIST:
            return "!" + self.key
        if op == EXISTS:
            return self.key
        infix = {EQUALS: "=", DOUBLE_EQUALS: "==", NOT_EQUALS: "!=", IN: " in ", NOT_IN: " notin ",
                 GT: ">", LT: "<"}[op]
        vals = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if op in (IN, NOT_IN):
            vals = f"({vals})"
        return self.key + infix + vals


def new_requirement(key: str, operator: str, values: list[str], *, path: str = "") -> Requirement:
    """labels.NewRequirement: validate key, operator arity and values; raise 400 on error."""
    errs: list[FieldError] = []
    prefix = path + "." if path else ""
    if msgs := qualified_name(key):
        errs.append(invalid(prefix + "key", key, "; ".join(msgs)))
    values_path = prefix + "values"
    if operator in (IN, NOT_IN):
        if not values:
            errs.append(invalid(values_path, list(values), "for 'in', 'notin' operators, values set can't be empty"))
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(values) != 1:
            errs.append(invalid(values_path, list(values), "exact-match compatibility requires one single value"))
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if values:
            errs.append(invalid(values_path, list(values),
                                "values set must be empty for exists and does not exist"))
    elif operator in (GT, LT):
        if len(values) != 1:
            errs.append(invalid(values_path, list(values),
                                "for 'Gt', 'Lt' operators, exactly one value is required"))
        for i, v in enumerate(values):
            if _parse_int64(v) is None:
                errs.append(invalid(f"{values_path}[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        valid = ", ".join(f'"{o}"' for o in ["!", "=", "==", "in", "!=", "notin", "exists", "gt", "lt"])
        errs.append(FieldError("Unsupported value", prefix + "operator", "supported values: " + valid,
                               operator, True))
    for i, v in enumerate(values):
        if msgs := label_value(v):
            errs.append(invalid(f"{values_path}[{i}][{key}]", v, "; ".join(msgs)))
    if errs:
        raise bad_request(_aggregate(errs))
    return Requirement(key, operator, tuple(values))


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of requirements, sorted by key. ``nothing`` matches no object at all."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: dict[str, str] | None) -> bool:
        if self.nothing:
            return False
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def requires_exact(self, key: str) -> str | None:
        """The single value ``key`` must equal, if the selector pins it (for index lookups)."""
        for r in self.requirements:
            if r.key == key and r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                return r.values[0]
        return None


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)


def _sorted(reqs: list[Requirement]) -> tuple[Requirement, ...]:
    return tuple(sorted(reqs, key=lambda r: r.key))


# lexer tokens
_ERROR, _EOS, _CLOSE, _COMMA, _NOT, _DEQ, _EQ, _GT, _IDENT, _IN, _LT, _NEQ, _NOTIN, _OPEN = range(14)
_STRING_TO_TOKEN = {")": _CLOSE, ",": _COMMA, "!": _NOT, "==": _DEQ, "=": _EQ, ">": _GT, "in": _IN,
                    "<": _LT, "!=": _NEQ, "notin": _NOTIN, "(": _OPEN}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    """Tokenize like labels.Lexer; a NUL ends the input as Go's reader does."""
    text = text.split("\x00", 1)[0]
    out: list[tuple[int, str]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i >= n:
            out.append((_EOS, ""))
            return out
        if text[i] in _SPECIAL:
            buf, last, j = "", None, i
            while j < n and text[j] in _SPECIAL:
                buf += text[j]
                if buf in _STRING_TO_TOKEN:
                    last = (_STRING_TO_TOKEN[buf], buf)
                    j += 1
                elif last is not None:
                    break
                else:
                    j += 1
            if last is None:
                out.append((_ERROR, f"error expected: keyword found '{buf}'"))
                # Go keeps lexing after an error token; the parser stops at it anyway
                i = j
                continue
            out.append(last)
            i += len(last[1])
            continue
        j = i
        while j < n and text[j] not in _WHITESPACE and text[j] not in _SPECIAL:
            j += 1
        word = text[i:j]
        out.append((_STRING_TO_TOKEN.get(word, _IDENT), word))
        i = j


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _tok(self, values_ctx: bool, advance: bool) -> tuple[int, str]:
        tok, lit = self.items[min(self.pos, len(self.items) - 1)]
        if advance:
            self.pos += 1
        if values_ctx and tok in (_IN, _NOTIN):
            tok = _IDENT
        return tok, lit

    def lookahead(self, values_ctx: bool = True) -> tuple[int, str]:
        return self._tok(values_ctx, False)

    def consume(self, values_ctx: bool = True) -> tuple[int, str]:
        return self._tok(values_ctx, True)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_IDENT, _NOT):
                try:
                    reqs.append(self.requirement())
                except StatusError as e:
                    raise bad_request(f"unable to parse requirement: {e.message}") from None
                t, lit2 = self.consume()
                if t == _EOS:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.lookahead()
                    if t2 not in (_IDENT, _NOT):
                        raise bad_request(f"found '{l2}', expected: identifier after ','")
                else:
                    raise bad_request(f"found '{lit2}', expected: ',' or 'end of string'")
            elif tok == _EOS:
                return reqs
            else:
                raise bad_request(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        operator = ""
        tok, lit = self.consume()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _IDENT:
            raise bad_request(f"found '{lit}', expected: identifier")
        if msgs := qualified_name(lit):
            raise bad_request(f"<nil>: Invalid value: {go_repr(lit)}: {'; '.join(msgs)}")
        key = lit
        if self.lookahead()[0] in (_EOS, _COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, operator, [])
        operator = self.operator()
        values = self.set_values() if operator in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, operator, sorted(values))

    def operator(self) -> str:
        tok, lit = self.consume(values_ctx=False)
        ops = {_IN: IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _GT: GT, _LT: LT, _NOTIN: NOT_IN, _NEQ: NOT_EQUALS}
        if tok not in ops:
            raise bad_request(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return ops[tok]

    def set_values(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _OPEN:
            raise bad_request(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_IDENT, _COMMA):
            values = self.identifiers()
            if self.consume()[0] != _CLOSE:
                raise bad_request(f"found '{lit}', expected: ')'")
            return values
        if tok == _CLOSE:
            self.consume()
            return {""}
        raise bad_request(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _IDENT:
                values.add(lit)
                t2, l2 = self.lookahead()
                if t2 == _COMMA:
                    continue
                if t2 == _CLOSE:
                    return values
                raise bad_request(f"found '{l2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                t2, _ = self.lookahead()
                if t2 == _CLOSE:
                    values.add("")
                    return values
                if t2 == _COMMA:
                    self.consume()
                    values.add("")
                continue
            raise bad_request(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        tok, _ = self.lookahead()
        if tok in (_EOS, _COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _IDENT:
            return {lit}
        raise bad_request(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """labels.Parse: the query-string form; empty means everything."""
    if not text:
        return EVERYTHING
    return LabelSelector(_sorted(_Parser(text).parse()))


def label_selector_from_dict(selector: dict[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector: None selects nothing, {} selects everything."""
    if selector is None:
        return NOTHING
    match_labels = selector.get("matchLabels") or {}
    exprs = selector.get("matchExpressions") or []
    if not match_labels and not exprs:
        return EVERYTHING
    reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    ops = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}
    for expr in exprs:
        op = expr.get("operator", "")
        if op not in ops:
            raise bad_request(f"{go_repr(op)} is not a valid label selector operator")
        reqs.append(new_requirement(expr.get("key", ""), ops[op], list(expr.get("values") or [])))
    return LabelSelector(_sorted(reqs))


def format_labels(labels: dict[str, str] | None) -> str:
    """labels.FormatLabels: sorted ``k=v`` pairs, "<none>" when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def format_label_selector(selector: dict[str, Any] | None) -> str:
    """metav1.FormatLabelSelector as printed in wide table columns."""
    try:
        text = str(label_selector_from_dict(selector))
    except StatusError:
        return "<error>"
    return text or "<none>"


# ---------------------------------------------------------------- field selectors

@dataclass(frozen=True)
class FieldTerm:
    field: str
    op: str  # "=" or "!="
    value: str

    def __str__(self) -> str:
        return f"{self.field}{'=' if self.op == '=' else '!='}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[FieldTerm, ...] = field(default_factory=tuple)

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, fields: dict[str, str]) -> bool:
        for t in self.terms:
            have = fields.get(t.field, "")
            if (have == t.value) != (t.op == "="):
                return False
        return True

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)

    def requires_exact(self, name: str) -> str | None:
        for t in self.terms:
            if t.field == name and t.op == "=":
                return t.value
        return None


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Go formats the rune with %v, which prints its code point
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, in_slash = [], 0, False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def parse_field_selector(text: str | None) -> FieldSelector:
    """fields.ParseSelector: comma-separated ``f=v``, ``f==v`` or ``f!=v``, terms sorted."""
    if not text:
        return FieldSelector()
    terms: list[FieldTerm] = []
    for part in _split_terms(text):
        if not part:
            continue
        for i in range(len(part)):
            rest = part[i:]
            op = next((o for o in ("!=", "==", "=") if rest.startswith(o)), None)
            if op:
                lhs, rhs = part[:i], part[i + len(op):]
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        terms.append(FieldTerm(lhs, "!=" if op == "!=" else "=", _unescape_field_value(rhs)))
    # upstream sorts the parsed terms by field (not the raw text), so printing and re-parsing is stable
    return FieldSelector(tuple(sorted(terms, key=lambda t: t.field)))


# Field labels each kind accepts (upstream's AddFieldLabelConversionFunc per group/version/kind),
# with renames; kinds not listed accept only metadata.name and metadata.namespace.
_POD_FIELDS = ["metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
               "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
               "status.podIP", "status.podIPs", "status.nominatedNodeName"]
_EVENT_FIELDS = ["involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                 "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type",
                 "metadata.namespace", "metadata.name"]
_EVENTS_V1_MAP = {
    "reason": "reason", "regarding.kind": "involvedObject.kind",
    "regarding.namespace": "involvedObject.namespace", "regarding.name": "involvedObject.name",
    "regarding.uid": "involvedObject.uid", "regarding.apiVersion": "involvedObject.apiVersion",
    "regarding.resourceVersion": "involvedObject.resourceVersion",
    "regarding.fieldPath": "involvedObject.fieldPath", "reportingController": "reportingComponent",
    "type": "type", "metadata.namespace": "metadata.namespace", "metadata.name": "metadata.name",
}
FIELD_LABELS: dict[tuple[str, str], dict[str, str]] = {
    ("", "Pod"): {**{f: f for f in _POD_FIELDS}, "spec.host": "spec.nodeName"},
    ("", "Node"): {f: f for f in ["metadata.name", "spec.unschedulable"]},
    ("", "ReplicationController"): {f: f for f in ["metadata.name", "metadata.namespace", "status.replicas"]},
    ("", "Event"): {f: f for f in _EVENT_FIELDS},
    ("", "Namespace"): {f: f for f in ["status.phase", "metadata.name"]},
    ("", "Secret"): {f: f for f in ["type", "metadata.namespace", "metadata.name"]},
    ("", "Service"): {f: f for f in ["metadata.namespace", "metadata.name", "spec.clusterIP", "spec.type"]},
    ("batch", "Job"): {f: f for f in ["metadata.name", "metadata.namespace", "status.successful"]},
    ("certificates.k8s.io", "CertificateSigningRequest"): {f: f for f in ["metadata.name", "spec.signerName"]},
    ("events.k8s.io", "Event"): _EVENTS_V1_MAP,
    ("resource.k8s.io", "ResourceSlice"): {f: f for f in ["metadata.name", "spec.nodeName", "spec.driver"]},
}


def _unsupported(resource: Any, label: str) -> StatusError:
    key = (resource.group, resource.kind)
    if key not in FIELD_LABELS:
        return bad_request(f'"{label}" is not a known field selector: only "metadata.name", "metadata.namespace"')
    if key == ("resource.k8s.io", "ResourceSlice"):
        version = getattr(resource, "version", "v1beta1")
        return bad_request(f"field label not supported for {resource.group}/{version}, "
                           f"Kind={resource.kind}: {label}")
    return bad_request(f"field label not supported: {label}")


def convert_field_selector(resource: Any, selector: FieldSelector) -> FieldSelector:
    """Check each field label against the kind and rename legacy ones; 400 for unsupported labels."""
    allowed = FIELD_LABELS.get((resource.group, resource.kind),
                               {"metadata.name": "metadata.name", "metadata.namespace": "metadata.namespace"})
    terms = []
    for t in selector.terms:
        if t.field not in allowed:
            raise _unsupported(resource, t.field)
        terms.append(FieldTerm(allowed[t.field], t.op, t.value))
    return FieldSelector(tuple(terms))


def validate_field_selector(resource: Any, selector: FieldSelector | str) -> FieldSelector:
    """Parse (if needed) and convert; the result matches against ``field_set(resource, obj)``."""
    if isinstance(selector, str):
        selector = parse_field_selector(selector)
    return convert_field_selector(resource, selector)


def _bool(v: Any) -> str:
    return "true" if v else "false"


def field_set(resource: Any, obj: dict[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` (upstream's GetAttrs / ToSelectableFields)."""
    meta = obj.get("metadata") or {}
    out = {"metadata.name": meta.get("name", "")}
    if resource.namespaced:
        out["metadata.namespace"] = meta.get("namespace", "")
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    key = (resource.group, resource.kind)
    if key == ("", "Pod"):
        ips = status.get("podIPs") or []
        out.update({
            "spec.nodeName": spec.get("nodeName", ""),
            "spec.restartPolicy": spec.get("restartPolicy", ""),
            "spec.schedulerName": spec.get("schedulerName", ""),
            "spec.serviceAccountName": spec.get("serviceAccountName", ""),
            "spec.hostNetwork": _bool(spec.get("hostNetwork")),
            "status.phase": status.get("phase", ""),
            "status.podIP": (ips[0].get("ip", "") if ips else status.get("podIP", "")) or "",
            "status.nominatedNodeName": status.get("nominatedNodeName", ""),
        })
    elif key == ("", "Node"):
        out["spec.unschedulable"] = _bool(spec.get("unschedulable"))
    elif key == ("", "Namespace"):
        out["status.phase"] = status.get("phase", "")
        out["name"] = meta.get("name", "")  # upstream keeps this legacy key
    elif key == ("", "Secret"):
        out["type"] = obj.get("type", "")
    elif key == ("", "Service"):
        out["spec.clusterIP"] = spec.get("clusterIP", "")
        out["spec.type"] = spec.get("type", "")
    elif key == ("", "ReplicationController") or key == ("apps", "ReplicaSet"):
        out["status.replicas"] = str(status.get("replicas", 0))
    elif key == ("batch", "Job"):
        out["status.successful"] = str(status.get("succeeded", 0))
    elif key == ("certificates.k8s.io", "CertificateSigningRequest"):
        out["spec.signerName"] = spec.get("signerName", "")
    elif key == ("resource.k8s.io", "ResourceSlice"):
        out["spec.nodeName"] = spec.get("nodeName", "")
        out["spec.driver"] = spec.get("driver", "")
    elif resource.kind == "Event" and resource.group in ("", "events.k8s.io"):
        out.update(_event_fields(obj))
    return out


def _event_fields(obj: dict[str, Any]) -> dict[str, str]:
    """Event fields in core/v1 naming, from either a core/v1 or an events.k8s.io/v1 Event."""
    if "involvedObject" in obj or "regarding" not in obj:
        ref = obj.get("involvedObject") or {}
        source = obj.get("source") or {}
        reporting = obj.get("reportingComponent", "")
        component = source.get("component", "") or reporting
    else:
        ref = obj.get("regarding") or {}
        reporting = obj.get("reportingController", "")
        component = (obj.get("deprecatedSource") or {}).get("component", "") or reporting
    return {
        "involvedObject.kind": ref.get("kind", ""),
        "involvedObject.namespace": ref.get("namespace", ""),
        "involvedObject.name": ref.get("name", ""),
        "involvedObject.uid": ref.get("uid", ""),
        "involvedObject.apiVersion": ref.get("apiVersion", ""),
        "involvedObject.resourceVersion": ref.get("resourceVersion", ""),
        "involvedObject.fieldPath": ref.get("fieldPath", ""),
        "reason": obj.get("reason", ""),
        "reportingComponent": reporting,
        "source": component,
        "type": obj.get("type", ""),
    }
