"""The seam between the DaemonSet controller and RolloutPlans: which nodes a rollout holds back.

When a RolloutPlan (read through an informer, never through a call to its controller) targets a
DaemonSet, only the nodes its current step allows may carry the update revision, as a
StatefulSet partition holds ordinals back; every other node keeps the stable revision, and a
daemon pod missing there is recreated from the stable ControllerRevision's template. With no plan
the DaemonSet behaves exactly as upstream (``compute`` returns None).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubeling.controllers import history
from kubeling.controllers.daemonset.pods import Pod, is_deleting
from kubeling.controllers.rollout import nodeorder, steps

Obj = dict[str, Any]


@dataclass(frozen=True)
class HoldBack:
    """Nodes allowed the update revision, and where held-back pods come from."""

    allowed: frozenset[str]
    stable_hash: str
    stable_template: Obj | None  # the pod template of the stable revision (None if pruned)
    max_unavailable: int | str | None  # the plan's override of the DaemonSet's own


def revision_template(revision: Obj) -> Obj:
    """The pod template stored in a DaemonSet ControllerRevision (``{"spec":{"template":...}}``)."""
    data = revision.get("data") or {}
    if isinstance(data, (str, bytes)):
        import json

        data = json.loads(data)
    template = copy.deepcopy(((data.get("spec") or {}).get("template")) or {})
    template.pop("$patch", None)
    meta = template.get("metadata") or {}
    if meta.get("creationTimestamp", "") is None:
        del meta["creationTimestamp"]
    return template


def updated_nodes(by_node: Mapping[str, list[Pod]], hash_: str) -> set[str]:
    """Nodes with a live pod labelled with revision ``hash_``."""
    label = history.CONTROLLER_REVISION_HASH_LABEL
    return {node for node, pods in by_node.items()
            if any(not is_deleting(p) and ((p.get("metadata") or {}).get("labels") or {}).get(label) == hash_
                   for p in pods)}


def _stable_template(plan: Obj, revisions: Iterable[Obj]) -> tuple[str, Obj | None]:
    stable = (plan.get("status") or {}).get("stableRevision") or ""
    for rev in revisions:
        if history.revision_hash(rev) == stable:
            return stable, revision_template(rev)
    return stable, None


def compute(ds: Obj, plans: Iterable[Obj], nodes: Iterable[Obj], by_node: Mapping[str, list[Pod]], *,
            hash_: str, revisions: Iterable[Obj],
            placements: Mapping[str, tuple[bool, bool]] | None = None) -> HoldBack | None:
    """The hold-back for ``ds`` at revision ``hash_``, or None when nothing is held back.

    ``placements`` are the sync's ``node_should_run_daemon_pod`` answers by node name, if known.
    The node order (the costly part at thousands of nodes) is asked only when the plan's step
    decides, and the updated nodes only when a paused or failed rollout keeps to them: everything
    else is answered from the plan's status alone (see ``steps.allowed_update_nodes``).
    """
    plan = steps.plan_for(ds, plans)
    if plan is None:
        return None
    order: list[str] = []
    canaries = 0
    updated: set[str] = set()
    if steps.holds_by_step(plan, hash_):
        ordered = nodeorder.eligible_in_order(plan, ds, nodes, placements=placements)
        order, canaries = ordered.order, ordered.canaries
        if steps.frozen(plan):
            updated = updated_nodes(by_node, hash_)
    allowed = steps.allowed_update_nodes(plan, hash_=hash_, order=order, canaries=canaries, updated=updated)
    if allowed is None:
        return None
    stable, template = _stable_template(plan, revisions)
    return HoldBack(frozenset(allowed), stable, template, (plan.get("spec") or {}).get("maxUnavailable"))
