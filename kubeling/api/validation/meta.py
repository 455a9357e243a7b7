"""Names, labels, annotations, label selectors and ObjectMeta (apimachinery validation)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from kubeling.api.errors import FieldError, forbidden, invalid, required
from kubeling.api.scheduling import label_selector_matches

Obj = dict[str, Any]

DNS1123_SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                         "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                         "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
DNS1123_LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
                     "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
                     "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_LABEL_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                     "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                     "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
QUALIFIED_NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
                           "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                           "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")
QUALIFIED_NAME_MSG = ("a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start "
                      "and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                      "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS "
                      "subdomain prefix and '/' (e.g. 'example.com/MyName')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
IMMUTABLE = "field is immutable"
TOTAL_ANNOTATION_SIZE = 256 * 1024

# matched with fullmatch: Go's "^...$" does not accept a trailing newline, Python's "$" would
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QNAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LVALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def _max(n: int) -> str:
    return f"must be no more than {n} characters"


_KNOWN_VALID_LIMIT = 50_000


# strings qualified_name, label_value, dns1123_subdomain and dns1123_label passed (see _remember_valid):
# hot callers (validate_labels, ObjectMeta, the pod spec's first passes) test these sets themselves,
# sparing a call per string
_VALID_QUALIFIED_NAMES: set[str] = set()
_VALID_LABEL_VALUES: set[str] = set()
_VALID_SUBDOMAINS: set[str] = set()
_VALID_DNS_LABELS: set[str] = set()
# each _remember_valid check -> the strings it passed, for callers that test the set before a call
_KNOWN_VALID: dict[Callable[[str], list[str]], set[str]] = {}


def _remember_valid(check: Callable[[str], list[str]], valid: set[str] | None = None) -> Callable[[str], list[str]]:
    """Skip the regexes for strings this check already passed: namespaces, label keys and values,
    container and account names repeat on every create. Invalid strings are checked every time."""
    known: set[str] = set() if valid is None else valid

    @functools.wraps(check)
    def cached(value: str) -> list[str]:
        if type(value) is str and value in known:
            return []
        errs = check(value)
        if not errs and type(value) is str:
            if len(known) >= _KNOWN_VALID_LIMIT:
                known.clear()
            known.add(value)
        return errs

    _KNOWN_VALID[cached] = known
    return cached


def _remember_valid_in(valid: set[str]) -> Callable[[Callable[[str], list[str]]], Callable[[str], list[str]]]:
    """_remember_valid with a given set (one its hot callers can test themselves)."""
    return lambda check: _remember_valid(check, valid)


@_remember_valid_in(_VALID_SUBDOMAINS)
def dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(_max(253))
    if not _SUBDOMAIN.fullmatch(value):
        errs.append(DNS1123_SUBDOMAIN_MSG)
    return errs


@_remember_valid_in(_VALID_DNS_LABELS)
def dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max(63))
    if not _LABEL.fullmatch(value):
        errs.append(DNS1123_LABEL_MSG)
    return errs


def dns1035_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max(63))
    if not _DNS1035.fullmatch(value):
        errs.append(DNS1035_LABEL_MSG)
    return errs


def path_segment_name(value: str) -> list[str]:
    """Names of kinds that only need to be a URL path segment (RBAC roles and bindings)."""
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


@_remember_valid_in(_VALID_QUALIFIED_NAMES)
def qualified_name(value: str) -> list[str]:
    """validation.IsQualifiedName: an optional DNS-subdomain prefix and '/', then a 63-character name
    (label keys, annotation keys, finalizers; label selectors check their keys with it too)."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in dns1123_subdomain(prefix))
    else:
        return [QUALIFIED_NAME_MSG]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + _max(63))
    if not _QNAME.fullmatch(name):  # an empty name fails here too, as upstream says both
        errs.append(QUALIFIED_NAME_PART_MSG)
    return errs


@_remember_valid_in(_VALID_LABEL_VALUES)
def label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(_max(63))
    if not _LVALUE.fullmatch(value):
        errs.append(LABEL_VALUE_MSG)
    return errs


def plain_labels(labels: Any) -> bool:
    """True when labels is a dict in which validate_labels finds nothing: a first pass without paths or
    lists, which checks only strings not yet known valid."""
    if not isinstance(labels, dict):
        return False
    known_keys, known_values = _VALID_QUALIFIED_NAMES, _VALID_LABEL_VALUES
    for k, v in labels.items():
        if type(k) is not str or (k not in known_keys and qualified_name(k)):
            return False
        if type(v) is not str or (v not in known_values and label_value(v)):
            return False
    return True


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(labels, dict):
        return errs
    known_keys, known_values = _VALID_QUALIFIED_NAMES, _VALID_LABEL_VALUES
    for k, v in labels.items():
        if type(k) is not str or k not in known_keys:  # a known-valid key needs no call
            msgs = qualified_name(k)
            if msgs:
                errs.extend(invalid(path, k, m) for m in msgs)
        if type(v) is not str or v not in known_values:
            msgs = label_value(v if isinstance(v, str) else str(v))
            if msgs:
                errs.extend(invalid(path, v, m) for m in msgs)
    return errs


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(annotations, dict):
        return errs
    total = 0
    for k, v in annotations.items():
        msgs = qualified_name(k.lower())
        if msgs:
            errs.extend(invalid(path, k, m) for m in msgs)
        total += len(k) + len(v if isinstance(v, str) else "")
    if total > TOTAL_ANNOTATION_SIZE:
        errs.append(FieldError("Too long", path, f"must have at most {TOTAL_ANNOTATION_SIZE} bytes"))
    return errs


def nonnegative(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def positive(value: Any, path: str) -> list[FieldError]:
    if isinstance(value, int) and value <= 0:
        return [invalid(path, value, "must be greater than 0")]
    return []


class GoValue:
    """A bad value rendered verbatim (Go's %#v of a struct) in a field error."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def go_string_map(m: Any) -> GoValue:
    if not m:
        return GoValue("map[string]string(nil)")
    inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(m.items()))
    return GoValue("map[string]string{" + inner + "}")


def go_label_selector(sel: Any) -> GoValue:
    sel = sel if isinstance(sel, dict) else {}
    ml = go_string_map(sel.get("matchLabels")).text
    exprs = sel.get("matchExpressions") or []
    if exprs:
        items = ", ".join(
            'v1.LabelSelectorRequirement{{Key:"{}", Operator:"{}", Values:{}}}'.format(
                e.get("key", ""), e.get("operator", ""),
                "[]string{" + ", ".join(f'"{v}"' for v in e.get("values") or []) + "}"
                if e.get("values") else "[]string(nil)")
            for e in exprs if isinstance(e, dict))
        me = "[]v1.LabelSelectorRequirement{" + items + "}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return GoValue(f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}")


def go_int_or_string(v: Any) -> GoValue:
    if isinstance(v, str):
        return GoValue(f'intstr.IntOrString{{Type:1, IntVal:0, StrVal:"{v}"}}')
    return GoValue(f'intstr.IntOrString{{Type:0, IntVal:{int(v or 0)}, StrVal:""}}')


# ---- label selectors --------------------------------------------------------------------

_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


def validate_label_selector(sel: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if not isinstance(sel, dict):
        return errs
    for i, req in enumerate(sel.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op = req.get("operator")
        values = req.get("values") or []
        if op in ("In", "NotIn"):
            if not values:
                errs.append(required(f"{p}.values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                errs.append(forbidden(f"{p}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(f"{p}.operator", op, "not a valid selector operator"))
        errs.extend(invalid(f"{p}.key", req.get("key", ""), m) for m in qualified_name(req.get("key") or ""))
    errs.extend(validate_labels(sel.get("matchLabels"), f"{path}.matchLabels"))
    return errs


def selector_matches(sel: Any, labels: Any) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything, a malformed one nothing."""
    if not isinstance(sel, dict):
        return False
    return label_selector_matches(sel, labels if isinstance(labels, dict) else None)


def selector_empty(sel: Any) -> bool:
    return not isinstance(sel, dict) or (not sel.get("matchLabels") and not sel.get("matchExpressions"))


# ---- ObjectMeta -------------------------------------------------------------------------

_NONE_KNOWN: frozenset[str] = frozenset()


def validate_object_meta(obj: Obj, *, namespaced: bool, name_fn: Any = dns1123_subdomain,
                         path: str = "metadata") -> list[FieldError]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    errs: list[FieldError] = []
    name = meta.get("name") or ""
    gen = meta.get("generateName") or ""
    if gen:
        msgs = name_fn(gen.rstrip("-") if gen.endswith("-") else gen)
        if msgs:
            errs.extend(invalid(f"{path}.generateName", gen, m) for m in msgs)
    if not name:
        if not gen:
            errs.append(required(f"{path}.name", "name or generateName is required"))
    elif type(name) is not str or name not in _KNOWN_VALID.get(name_fn, _NONE_KNOWN):  # else: no call
        msgs = name_fn(name)
        if msgs:
            errs.extend(invalid(f"{path}.name", name, m) for m in msgs)
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(required(f"{path}.namespace", ""))
        elif type(ns) is not str or ns not in _VALID_DNS_LABELS:
            msgs = dns1123_label(ns)
            if msgs:
                errs.extend(invalid(f"{path}.namespace", ns, m) for m in msgs)
    elif ns:
        errs.append(forbidden(f"{path}.namespace", "not allowed on this type"))
    # absent or empty fields are skipped: their checks would find nothing (and need no path)
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errs.extend(nonnegative(generation, f"{path}.generation"))
    labels = meta.get("labels")
    if labels and not plain_labels(labels):
        errs.extend(validate_labels(labels, f"{path}.labels"))
    annotations = meta.get("annotations")
    if annotations:
        errs.extend(validate_annotations(annotations, f"{path}.annotations"))
    finalizers = meta.get("finalizers")
    if finalizers:
        for f in finalizers:
            msgs = qualified_name(f)
            if msgs:
                errs.extend(invalid(f"{path}.finalizers", f, m) for m in msgs)
    refs = meta.get("ownerReferences")
    if refs and not _plain_owner_references(refs):
        errs.extend(_owner_references(refs, f"{path}.ownerReferences"))
    return errs


def _plain_owner_references(refs: Any) -> bool:
    """True when _owner_references finds nothing (every controller-made object has one reference):
    a first pass without paths."""
    controllers = 0
    for ref in refs:
        if not (ref.get("apiVersion") and ref.get("kind") and ref.get("name") and ref.get("uid")):
            return False
        if ref.get("controller"):
            controllers += 1
    return controllers <= 1


def _owner_references(refs: Any, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    for i, ref in enumerate(refs):
        p = f"{path}[{i}]"
        if not ref.get("apiVersion"):
            errs.append(invalid(f"{p}.apiVersion", ref.get("apiVersion", ""), "version must not be empty"))
        if not ref.get("kind"):
            errs.append(invalid(f"{p}.kind", ref.get("kind", ""), "kind must not be empty"))
        if not ref.get("name"):
            errs.append(invalid(f"{p}.name", ref.get("name", ""), "name must not be empty"))
        if not ref.get("uid"):
            errs.append(invalid(f"{p}.uid", ref.get("uid", ""), "uid must not be empty"))
    controllers = [r for r in refs if r.get("controller")]
    if len(controllers) > 1:
        names = ", ".join(f"{r.get('kind')}/{r.get('name')}" for r in controllers)
        errs.append(invalid(path, GoValue("[]v1.OwnerReference{...}"),
                            f"Only one reference can have Controller set to true. Found \"true\" in references for {names}"))
    return errs


def validate_object_meta_update(new: Obj, old: Obj, path: str = "metadata") -> list[FieldError]:
    nm, om = new.get("metadata") or {}, old.get("metadata") or {}
    errs: list[FieldError] = []
    for key in ("name", "namespace", "uid"):
        if (nm.get(key) or "") != (om.get(key) or ""):
            errs.append(invalid(f"{path}.{key}", nm.get(key) or "", IMMUTABLE))
    if om.get("creationTimestamp") and nm.get("creationTimestamp") != om.get("creationTimestamp"):
        errs.append(invalid(f"{path}.creationTimestamp", nm.get("creationTimestamp"), IMMUTABLE))
    return errs
