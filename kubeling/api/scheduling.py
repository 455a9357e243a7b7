"""Pure placement predicates shared by the scheduler and the controllers that place pods.

Taint toleration (core/v1 ``Toleration.ToleratesTaint``), nodeSelector and required node affinity
(``component-helpers/scheduling/corev1/nodeaffinity``, matchExpressions on labels and matchFields on
``metadata.name``) and metav1 label selectors. Everything works on plain dicts and has no side
effects, so the DaemonSet controller, the scheduler plugins and tests agree on one definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

NO_SCHEDULE = "NoSchedule"
PREFER_NO_SCHEDULE = "PreferNoSchedule"
NO_EXECUTE = "NoExecute"

OBJECT_NAME_FIELD = "metadata.name"  # the only field matchFields supports upstream

Obj = Mapping[str, Any]


# -- taints and tolerations ------------------------------------------------------------------------

def tolerates_taint(toleration: Obj, taint: Obj) -> bool:
    """Whether one toleration tolerates one taint (empty effect or key in the toleration match all)."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    if key and key != (taint.get("key") or ""):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def taint_tolerated(taint: Obj, tolerations: Iterable[Obj] | None) -> bool:
    return any(tolerates_taint(t, taint) for t in tolerations or ())


def find_untolerated_taint(taints: Iterable[Obj] | None, tolerations: Iterable[Obj] | None,
                           effect_filter: Callable[[Obj], bool] | None = None) -> Obj | None:
    """The first taint (passing ``effect_filter``) that no toleration tolerates, or None."""
    tolerations = list(tolerations or ())
    for taint in taints or ():
        if effect_filter is not None and not effect_filter(taint):
            continue
        if not taint_tolerated(taint, tolerations):
            return taint
    return None


def effects(*names: str) -> Callable[[Obj], bool]:
    """A filter for :func:`find_untolerated_taint` keeping taints with one of these effects."""
    wanted = frozenset(names)
    return lambda taint: (taint.get("effect") or "") in wanted


def same_toleration(a: Obj, b: Obj) -> bool:
    """core/v1 ``Toleration.MatchToleration``: equal key, operator, value and effect."""
    return all((a.get(f) or "") == (b.get(f) or "") for f in ("key", "operator", "value", "effect"))


def add_or_update_toleration(spec: dict[str, Any], toleration: dict[str, Any]) -> bool:
    """Add ``toleration`` to a pod spec, replacing a matching one that differs; True if changed."""
    current = spec.get("tolerations") or []
    result: list[dict[str, Any]] = []
    replaced = False
    for t in current:
        if same_toleration(toleration, t):
            if t == toleration:
                return False
            result.append(dict(toleration))
            replaced = True
            continue
        result.append(t)
    if not replaced:
        result.append(dict(toleration))
    spec["tolerations"] = result
    return True


# -- node selectors and node affinity --------------------------------------------------------------

class _Invalid(Exception):
    """A requirement that does not parse; the term holding it matches nothing (upstream's lazy error)."""


def _int(value: str) -> int:
    try:
        return int(value, 10)
    except (TypeError, ValueError) as exc:
        raise _Invalid(value) from exc


def _requirement_matches(req: Obj, values_by_key: Mapping[str, str]) -> bool:
    key = req.get("key") or ""
    op = req.get("operator") or ""
    values = list(req.get("values") or [])
    present = key in values_by_key
    value = values_by_key.get(key)
    if op == "In":
        if not values:
            raise _Invalid(key)
        return present and value in values
    if op == "NotIn":
        if not values:
            raise _Invalid(key)
        return not present or value not in values
    if op == "Exists":
        if values:
            raise _Invalid(key)
        return present
    if op == "DoesNotExist":
        if values:
            raise _Invalid(key)
        return not present
    if op in ("Gt", "Lt"):
        if len(values) != 1:
            raise _Invalid(key)
        bound = _int(values[0])
        if not present:
            return False
        try:
            have = int(value or "", 10)
        except ValueError:
            return False
        return have > bound if op == "Gt" else have < bound
    raise _Invalid(op)


def node_fields(node: Obj) -> dict[str, str]:
    """The node fields that matchFields may select on."""
    return {OBJECT_NAME_FIELD: (node.get("metadata") or {}).get("name", "")}


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    """One NodeSelectorTerm: all its expressions and fields must match; an empty term matches nothing."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    labels = (node.get("metadata") or {}).get("labels") or {}
    try:
        for req in fields:
            if (req.get("key") or "") != OBJECT_NAME_FIELD or (req.get("operator") or "") not in ("In", "NotIn"):
                raise _Invalid(req.get("key"))
            if len(req.get("values") or []) != 1:
                raise _Invalid(req.get("key"))
        return (all(_requirement_matches(r, labels) for r in exprs)
                and all(_requirement_matches(r, node_fields(node)) for r in fields))
    except _Invalid:
        return False


def node_selector_matches(node_selector: Obj | None, node: Obj) -> bool:
    """A NodeSelector: the terms are ORed; no terms match nothing."""
    if node_selector is None:
        return True
    return any(node_selector_term_matches(t, node) for t in node_selector.get("nodeSelectorTerms") or [])


def required_node_affinity(pod_spec: Obj) -> Obj | None:
    affinity = (pod_spec.get("affinity") or {}).get("nodeAffinity") or {}
    return affinity.get("requiredDuringSchedulingIgnoredDuringExecution")


def node_selector_labels_match(node_selector: Mapping[str, str] | None, node: Obj) -> bool:
    """``spec.nodeSelector``: every label must be present with the same value."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return all(k in labels and labels[k] == v for k, v in (node_selector or {}).items())


def pod_matches_node_selector_and_affinity(pod_spec: Obj, node: Obj) -> bool:
    """upstream's ``GetRequiredNodeAffinity(pod).Match(node)``: nodeSelector AND required affinity."""
    return (node_selector_labels_match(pod_spec.get("nodeSelector"), node)
            and node_selector_matches(required_node_affinity(pod_spec), node))


# -- label selectors (metav1.LabelSelector) --------------------------------------------------------

def label_selector_matches(selector: Obj | None, labels: Mapping[str, str] | None) -> bool:
    """A metav1.LabelSelector against labels. None selects nothing, ``{}`` selects everything."""
    if selector is None:
        return False
    labels = labels or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for req in selector.get("matchExpressions") or []:
        key, op, values = req.get("key"), req.get("operator"), req.get("values") or []
        if op == "In" and (key not in labels or labels[key] not in values):
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def label_selector_is_empty(selector: Obj | None) -> bool:
    return selector is not None and not selector.get("matchLabels") and not selector.get("matchExpressions")
