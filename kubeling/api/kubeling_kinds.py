"""kubeling's own built-in kinds: ``RolloutPlan`` (``rollouts.kubeling.io/v1alpha1``).

The catalogue, schema validation and OpenAPI documents are all built from upstream data (lightkube's
resource list and kubernetes-validate's definitions). Our kind joins them through this module: a
:class:`Resource` for the catalogue and its definitions in the same JSON-schema dialect as
kubernetes-validate's files (``#/$defs/`` refs, nullable type lists), so the existing compilers
(strict decoding, ``kubectl explain``, strategic merge metadata) treat it like any built-in.
Defaulting and semantic validation of the kind live here too and are registered by one line each
in ``defaults.py`` and ``strategies.py``.

A RolloutPlan sits beside a DaemonSet (which stays a plain apps/v1 object) and makes its template
changes roll out in steps; see ``kubeling/controllers/rollout``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kubeling.api.catalogue import Resource, SubresourceInfo
from kubeling.api.errors import FieldError, invalid, required, unsupported

GROUP = "rollouts.kubeling.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RolloutPlan"
PLURAL = "rolloutplans"

# annotations the CLI writes and the controller reads (keyed by revision, so stale ones are inert)
PROMOTE_ANNOTATION = "rollouts.kubeling.io/promote"   # "<updateRevision>/<step>" or "<updateRevision>/full"
ABORT_ANNOTATION = "rollouts.kubeling.io/abort"       # "<updateRevision>"

PHASES = ("Progressing", "Paused", "Succeeded", "RolledBack", "Failed")
ACTIONS = ("Rollback", "Pause")

_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_PREFIX = "io.kubeling.rollouts.v1alpha1."
_META = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1."
_INTSTR = "#/$defs/io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_TIME = "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.Time"


def rollout_plan_resource() -> Resource:
    return Resource(
        group=GROUP, version=VERSION, kind=KIND, plural=PLURAL, singular="rolloutplan", namespaced=True,
        verbs=_VERBS, short_names=("rp",), categories=("all",),
        subresources={"status": SubresourceInfo("status", GROUP, VERSION, KIND, ("get", "patch", "update"))},
        schema_ref=_PREFIX + KIND,
    )


def resources() -> list[Resource]:
    """The kinds kubeling adds to the built-in catalogue."""
    return [rollout_plan_resource()]


# ---- schema ---------------------------------------------------------------------------------------

def _s(desc: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    return {"description": desc, "type": [type_, "null"], **extra}


def _ref(name: str, desc: str) -> dict[str, Any]:
    target = name if name.startswith("#/") else f"#/$defs/{_PREFIX}{name}"
    return {"$ref": target, "description": desc}


def _arr(item: dict[str, Any], desc: str) -> dict[str, Any]:
    return {"description": desc, "type": ["array", "null"], "items": item}


def _obj(desc: str, props: dict[str, Any], required_: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"description": desc, "type": ["object", "null"], "properties": props, **extra}
    if required_:
        d["required"] = list(required_)
    return d


_TYPES: dict[str, dict[str, Any]] = {
    KIND: _obj(
        "RolloutPlan makes a DaemonSet's template changes roll out in steps: canary nodes first, then growing "
        "shares of the eligible nodes, with pauses, promotion and automatic rollback on failures. The "
        "DaemonSet itself stays an unchanged apps/v1 object.",
        {
            "apiVersion": _s("APIVersion defines the versioned schema of this representation of an object.",
                             enum=[API_VERSION]),
            "kind": _s("Kind is a string value representing the REST resource this object represents.",
                       enum=[KIND]),
            "metadata": {"$ref": _META + "ObjectMeta", "description": "Standard object's metadata."},
            "spec": _ref("RolloutPlanSpec", "How the target's template changes roll out."),
            "status": _ref("RolloutPlanStatus", "The observed state of the rollout. Populated by the system."),
        },
        **{"x-kubernetes-group-version-kind": [{"group": GROUP, "kind": KIND, "version": VERSION}]},
    ),
    "RolloutPlanList": _obj(
        "RolloutPlanList is a list of RolloutPlans.",
        {
            "apiVersion": _s("APIVersion defines the versioned schema of this representation of an object.",
                             enum=[API_VERSION]),
            "items": _arr(_ref(KIND, ""), "Items is the list of RolloutPlans."),
            "kind": _s("Kind is a string value representing the REST resource this object represents.",
                       enum=["RolloutPlanList"]),
            "metadata": {"$ref": _META + "ListMeta", "description": "Standard list metadata."},
        },
        ("items",),
        **{"x-kubernetes-group-version-kind": [{"group": GROUP, "kind": "RolloutPlanList", "version": VERSION}]},
    ),
    "RolloutPlanSpec": _obj(
        "RolloutPlanSpec describes the steps, the canary nodes and what to do on failure.",
        {
            "targetRef": _ref("TargetRef", "The DaemonSet (in the plan's namespace) this plan rolls out."),
            "canaryNodes": {"$ref": _META + "LabelSelector",
                            "description": "Nodes matching this selector update first, in step 1."},
            "steps": _arr(_ref("RolloutStep", ""),
                          "Cumulative shares of the eligible nodes that may carry the new revision, in order. "
                          "Defaults to a single step of 100%."),
            "maxUnavailable": {"$ref": _INTSTR,
                               "description": "Most daemon pods unavailable at once within a step (a number or a "
                                              "percentage of the eligible nodes). Defaults to the DaemonSet's "
                                              "rollingUpdate.maxUnavailable."},
            "topologyKey": _s("A node label; each step is spread evenly over its values (e.g. "
                              "topology.kubernetes.io/zone)."),
            "failurePolicy": _ref("FailurePolicy", "When an updated revision counts as failed, and what then."),
            "paused": _s("Holds the rollout at its current step until cleared (kubeling rollout pause/promote).",
                         "boolean"),
        },
        ("targetRef",),
    ),
    "TargetRef": _obj(
        "TargetRef names the workload a plan rolls out.",
        {
            "apiVersion": _s("API version of the target; apps/v1 when empty."),
            "kind": _s("Kind of the target; only DaemonSet is supported."),
            "name": _s("Name of the target, in the plan's namespace."),
        },
        ("kind", "name"),
    ),
    "RolloutStep": _obj(
        "RolloutStep is one step: how many eligible nodes may carry the new revision, and an optional pause.",
        {
            "nodes": {"$ref": _INTSTR, "description": "Cumulative number or percentage of the eligible nodes "
                                                       "(rounded up) that may carry the new revision."},
            "pause": _ref("RolloutPause", "Wait once the step is complete: indefinitely (until promoted) when "
                                          "duration is empty, else for the duration."),
        },
        ("nodes",),
    ),
    "RolloutPause": _obj(
        "RolloutPause is a pause after a step.",
        {"duration": _s("How long to wait, e.g. 30s, 5m, 1h; empty waits for kubeling rollout promote.")},
    ),
    "FailurePolicy": _obj(
        "FailurePolicy decides when the new revision failed and what to do then.",
        {
            "maxFailedNodes": {"$ref": _INTSTR,
                               "description": "Most updated nodes (number or percentage of the eligible nodes, "
                                              "rounded down, at least 0) whose new pod may fail; more triggers "
                                              "the action. Default 0."},
            "progressDeadlineSeconds": _s("An updated pod not available within this many seconds counts as "
                                          "failed; a step making no progress for this long fails the rollout. "
                                          "Default 600.", "integer", format="int32"),
            "action": _s('What to do on failure: "Rollback" (default) puts the template back to the stable '
                         'revision; "Pause" stops and waits.'),
        },
    ),
    "RolloutPlanStatus": _obj(
        "RolloutPlanStatus is the observed state of a rollout.",
        {
            "observedGeneration": _s("The plan generation the controller last acted on.", "integer",
                                     format="int64"),
            "phase": _s("Progressing, Paused, Succeeded, RolledBack or Failed."),
            "message": _s("A human-readable account of the phase."),
            "currentStep": _s("Index (from 0) of the step in progress.", "integer", format="int32"),
            "stepStartTime": {"$ref": _TIME, "description": "When the current step (or its pause) began."},
            "lastProgressTime": {"$ref": _TIME, "description": "When the rollout last made progress."},
            "pauseStartTime": {"$ref": _TIME, "description": "When the current pause began."},
            "stableRevision": _s("controller-revision-hash of the last revision that reached 100%."),
            "updateRevision": _s("controller-revision-hash of the revision being rolled out."),
            "rollbackGeneration": _s("The DaemonSet generation the last rollback wrote.", "integer",
                                     format="int64"),
            "allowedNodes": _s("How many eligible nodes may carry the update revision at this step.", "integer",
                               format="int32"),
            "eligibleNodes": _s("How many nodes should run the daemon pod.", "integer", format="int32"),
            "updatedNodes": _s("Eligible nodes whose daemon pod runs the update revision.", "integer",
                               format="int32"),
            "availableUpdatedNodes": _s("Updated nodes whose daemon pod is available.", "integer", format="int32"),
            "failedNodes": _arr(_ref("FailedNode", ""), "Updated nodes whose pod failed, with reasons."),
            "conditions": _arr(_ref("RolloutCondition", ""), "Latest observations of the rollout's state."),
            "why": _arr(_ref("NodeReason", ""),
                        "kubeling.io/why: per-node reasons why a daemon pod is not (yet) running the update "
                        "revision and available (at most 100 entries, problems first)."),
        },
    ),
    "FailedNode": _obj(
        "FailedNode is an updated node whose new daemon pod failed.",
        {"name": _s("Node name."), "reason": _s("Why, e.g. ImagePullBackOff."),
         "message": _s("Details.")},
        ("name",),
    ),
    "NodeReason": _obj(
        "NodeReason says why a node's daemon pod is not (yet) running the update revision and available.",
        {"node": _s("Node name."), "reason": _s("A short reason, e.g. HeldBack, ImagePullBackOff, NotEligible."),
         "message": _s("Details, in upstream's words where upstream has them.")},
        ("node",),
    ),
    "RolloutCondition": _obj(
        "RolloutCondition is one observation of the rollout's state.",
        {
            "type": _s("Type of the condition: Progressing, Paused, Available or Failed."),
            "status": _s("True, False or Unknown."),
            "reason": _s("A machine-readable reason for the last transition."),
            "message": _s("A human-readable message."),
            "lastTransitionTime": {"$ref": _TIME, "description": "When the condition last changed status."},
            "lastUpdateTime": {"$ref": _TIME, "description": "When the condition was last updated."},
        },
        ("type", "status"),
    ),
}


def definitions(*, strict: bool = False) -> dict[str, dict[str, Any]]:
    """Our definitions by full name, in kubernetes-validate's dialect (strict: no unknown fields)."""
    out = {}
    for name, d in _TYPES.items():
        d = copy.deepcopy(d)
        if strict:
            d["additionalProperties"] = False
        out[_PREFIX + name] = d
    return out


# ---- defaulting and validation -------------------------------------------------------------------

def default_rollout_plan(obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    target = spec.get("targetRef")
    if isinstance(target, dict):
        target.setdefault("apiVersion", "apps/v1")
    if not spec.get("steps"):
        spec["steps"] = [{"nodes": "100%"}]
    policy = spec.setdefault("failurePolicy", {})
    if isinstance(policy, dict):
        policy.setdefault("maxFailedNodes", 0)
        policy.setdefault("progressDeadlineSeconds", 600)
        policy.setdefault("action", "Rollback")


_DURATION = re.compile(r"^(\d+(\.\d+)?(ms|s|m|h))+$")


def parse_duration(text: str) -> float:
    """A Go duration (``1h30m``, ``45s``) in seconds; ValueError when malformed."""
    if not _DURATION.match(text or ""):
        raise ValueError(f"invalid duration {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(ms|s|m|h)", text))


def _int_or_percent(value: Any, path: str, errs: list[FieldError]) -> int | None:
    """The value as a number (percentages as -percent), appending an error when malformed."""
    if isinstance(value, bool):
        errs.append(invalid(path, value, "must be an integer or percentage (e.g. '5%')"))
        return None
    if isinstance(value, int):
        if value < 0:
            errs.append(invalid(path, value, "must be greater than or equal to 0"))
        return value
    m = re.fullmatch(r"(\d+)%", str(value))
    if not m:
        errs.append(invalid(path, value, "a valid percent string must be a numeric string followed by an ending "
                                         "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))
        return None
    if int(m.group(1)) > 100:
        errs.append(invalid(path, value, "must not be greater than 100%"))
    return -int(m.group(1))


def validate_rollout_plan(obj: dict[str, Any]) -> list[FieldError]:
    """Semantic checks beyond the schema: a DaemonSet target, well-formed shares and durations."""
    errs: list[FieldError] = []
    spec = obj.get("spec") or {}
    target = spec.get("targetRef") or {}
    if not target.get("name"):
        errs.append(required("spec.targetRef.name", ""))
    if target.get("kind") != "DaemonSet":
        errs.append(unsupported("spec.targetRef.kind", target.get("kind"), ["DaemonSet"]))
    for i, step in enumerate(spec.get("steps") or []):
        if step.get("nodes") is None:
            errs.append(required(f"spec.steps[{i}].nodes", ""))
        else:
            _int_or_percent(step["nodes"], f"spec.steps[{i}].nodes", errs)
        duration = (step.get("pause") or {}).get("duration")
        if duration:
            try:
                parse_duration(str(duration))
            except ValueError:
                errs.append(invalid(f"spec.steps[{i}].pause.duration", duration,
                                    "must be a duration such as 30s, 5m or 1h"))
    if spec.get("maxUnavailable") is not None:
        _int_or_percent(spec["maxUnavailable"], "spec.maxUnavailable", errs)
    policy = spec.get("failurePolicy") or {}
    if policy.get("maxFailedNodes") is not None:
        _int_or_percent(policy["maxFailedNodes"], "spec.failurePolicy.maxFailedNodes", errs)
    deadline = policy.get("progressDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        errs.append(invalid("spec.failurePolicy.progressDeadlineSeconds", deadline, "must be greater than 0"))
    action = policy.get("action")
    if action is not None and action not in ACTIONS:
        errs.append(unsupported("spec.failurePolicy.action", action, list(ACTIONS)))
    return errs
