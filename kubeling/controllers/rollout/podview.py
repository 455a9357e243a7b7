"""What a plan sync reads from its DaemonSet's pods, kept between syncs.

A plan syncs after pod events, and every sync looks at every daemon pod: which one is each node's
current pod, whether it runs the update revision, is ready, failed. Per pod version (uid and
resourceVersion) those facts never change (:class:`PodFacts`), and between two syncs only a few
pods change: a :class:`PodView` is built once from all the pods and then told of each pod that
changed (the controller's pod events name them), re-deciding only the nodes those pods are on.
Its answers are those of a fresh view of the same pods, exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubeling.api.timeutil import parse_rfc3339
from kubeling.client.informer import object_key
from kubeling.controllers.daemonset.pods import (
    _ready_condition,
    is_deleting,
    target_node_name,
)
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL
from kubeling.controllers.rollout import steps

Obj = dict[str, Any]


def pod_hash(pod: Obj) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL)


def pod_problem(pod: Obj) -> tuple[str, str] | None:
    """A failing container (image pull, crash loop) or an unschedulable pod, as (reason, message)."""
    status = pod.get("status") or {}
    if status.get("phase") == "Failed":
        return status.get("reason") or "Failed", status.get("message") or "pod failed"
    for cs in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in steps.FAILURE_REASONS:
            return waiting["reason"], waiting.get("message") or f"container {cs.get('name')}: {waiting['reason']}"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return cond.get("reason") or "Unschedulable", cond.get("message") or ""
    return None


@functools.lru_cache(maxsize=4096)  # a rollout's pods share a few hundred distinct seconds
def _parsed_seconds(text: str) -> float | None:
    t = parse_rfc3339(text)
    return t.timestamp() if t else None


def _seconds(text: Any) -> float | None:
    return _parsed_seconds(text) if isinstance(text, str) else None


def _ready_since(pod: Obj) -> float | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return _seconds(cond.get("lastTransitionTime"))
    return None


def _created(pod: Obj) -> float | None:
    return _seconds((pod.get("metadata") or {}).get("creationTimestamp"))


@dataclass(frozen=True, slots=True, eq=False)
class PodFacts:
    """What ``observe`` reads from one pod version; the same for every sync that sees it."""

    node: str | None
    name: str  # the pod's
    deleting: bool
    hash: str | None
    oldest_key: tuple[int, float, str]
    ready: bool  # podutil.IsPodReady (first Ready condition True)
    ready_transition: float | None  # that condition's lastTransitionTime, for minReadySeconds
    ready_since: float | None
    created: float | None
    problem: tuple[str, str] | None

    def available(self, min_ready: int, now: float) -> bool:
        """is_pod_available without parsing timestamps again."""
        if not self.ready:
            return False
        if not min_ready:
            return True
        return self.ready_transition is not None and self.ready_transition + min_ready < now


# pod uid -> (resourceVersion, facts): a controller syncs a plan after every pod event, and
# re-reading every daemon pod's conditions and timestamps each time was most of its CPU.
_FACTS: dict[str, tuple[str, PodFacts]] = {}
_FACTS_LIMIT = 200_000


def facts_of(pod: Obj) -> PodFacts:
    meta = pod.get("metadata") or {}
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if uid and rv:
        hit = _FACTS.get(uid)
        if hit is not None and hit[0] == rv:
            return hit[1]
    cond = _ready_condition(pod)
    ready = cond is not None and cond.get("status") == "True"
    transition = _seconds(cond.get("lastTransitionTime")) if ready and cond is not None else None
    created = _created(pod)
    name = meta.get("name") or ""
    # pods.oldest_first_key, with the creation time parsed once
    oldest = (0 if (pod.get("spec") or {}).get("nodeName") else 1, created if created is not None else 0.0, name)
    facts = PodFacts(node=target_node_name(pod), name=name, deleting=is_deleting(pod), hash=pod_hash(pod),
                     oldest_key=oldest, ready=ready, ready_transition=transition, ready_since=_ready_since(pod),
                     created=created, problem=pod_problem(pod))
    if uid and rv:
        if len(_FACTS) >= _FACTS_LIMIT:
            _FACTS.clear()
        _FACTS[uid] = (rv, facts)
    return facts


def _oldest_key(facts: PodFacts) -> tuple[int, float, str]:
    return facts.oldest_key


class PodView:
    """Each node's current daemon pod at one revision, kept up to date pod by pod.

    ``current``: node -> its live pod (an updated one first, the oldest among several);
    ``updated``: the nodes with a live pod at the revision; ``ready``: the nodes whose current pod
    is ready. Read them, never change them: :meth:`put` does.
    """

    __slots__ = ("hash", "facts", "by_node", "current", "updated", "ready")

    def __init__(self, hash_: str) -> None:
        self.hash = hash_
        self.facts: dict[str, PodFacts] = {}  # pod key -> facts, for the live pods with a node
        self.by_node: dict[str, list[PodFacts]] = {}
        self.current: dict[str, PodFacts] = {}
        self.updated: set[str] = set()
        self.ready: set[str] = set()

    @classmethod
    def of(cls, pods: Iterable[Obj], hash_: str) -> PodView:
        """The view of ``pods`` (each under its ``namespace/name`` key)."""
        view = cls(hash_)
        for pod in pods:
            view._add(object_key(pod), pod)
        for node in view.by_node:
            view._settle(node)
        return view

    def put(self, key: str, pod: Obj | None) -> None:
        """``pod`` is now the pod under ``key`` (None: there is none, or it is not one of ours)."""
        touched = []
        old = self.facts.pop(key, None)
        if old is not None:
            node_pods = self.by_node[old.node]  # type: ignore[index]
            for i, other in enumerate(node_pods):
                if other is old:
                    del node_pods[i]
                    break
            touched.append(old.node)
        if pod is not None:
            touched.append(self._add(key, pod))
        for node in touched:
            if node is not None:
                self._settle(node)

    def _add(self, key: str, pod: Obj) -> str | None:
        facts = facts_of(pod)
        if facts.node is None or facts.deleting:
            return None
        self.facts[key] = facts
        self.by_node.setdefault(facts.node, []).append(facts)
        return facts.node

    def _settle(self, node: str) -> None:
        """Decide ``node``'s current pod again from its live pods."""
        node_pods = self.by_node.get(node)
        if not node_pods:
            self.by_node.pop(node, None)
            self.current.pop(node, None)
            self.updated.discard(node)
            self.ready.discard(node)
            return
        if len(node_pods) == 1:
            current = node_pods[0]
            is_new = current.hash == self.hash
        else:
            new = [p for p in node_pods if p.hash == self.hash]
            current = min(new or node_pods, key=_oldest_key)
            is_new = bool(new)
        self.current[node] = current
        (self.updated.add if is_new else self.updated.discard)(node)
        (self.ready.add if current.ready else self.ready.discard)(node)
