"""Which daemon pods to create and delete: upstream's ``manage`` / ``podsShouldBeOnNode`` as data.

``plan`` reads a DaemonSet, the nodes and the DaemonSet's pods grouped by target node and returns
:class:`Actions`; the controller is the only writer. Per node: create a pod where one should run
and none exists; where pods may keep running, delete failed ones (with per-node exponential
back-off and a FailedDaemonPod event), succeeded ones and surplus ones (keep the oldest, or the
right old/new pair while surging); where none may run, delete them all. Pods pinned to nodes
that no longer exist are deleted too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubeling.controllers.daemonset.placement import Placements, verdict
from kubeling.controllers.daemonset.pods import (
    Pod,
    is_deleting,
    is_pod_available,
    is_pod_ready,
    is_terminal,
    oldest_first_key,
    pod_name,
    target_node_name,
)
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL

FAILED_DAEMON_POD = "FailedDaemonPod"
BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 15 * 60.0


@dataclass
class Actions:
    """Planned writes: pods to create (by node name) and pods to delete (by name)."""

    create_on_nodes: list[str] = field(default_factory=list)
    delete_pods: list[str] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    requeue_after: float | None = None

    def requeue(self, seconds: float) -> None:
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds


class FailedPodBackoff:
    """client-go's flowcontrol.Backoff for failed daemon pods: 1 s doubling to 15 min per key."""

    def __init__(self, initial: float = BACKOFF_INITIAL, maximum: float = BACKOFF_MAX) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[str, tuple[float, float]] = {}  # key -> (delay, last update)

    def get(self, key: str) -> float:
        return self._entries.get(key, (0.0, 0.0))[0]

    def in_backoff_since_update(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        return entry is not None and now - entry[1] < entry[0]

    def next(self, key: str, now: float) -> None:
        entry = self._entries.get(key)
        if entry is None or now - entry[1] > 2 * self.maximum:
            self._entries[key] = (self.initial, now)
        else:
            self._entries[key] = (min(entry[0] * 2, self.maximum), now)

    def gc(self, now: float) -> None:
        for key in [k for k, (_, t) in self._entries.items() if now - t > 2 * self.maximum]:
            del self._entries[key]


def backoff_key(ds: dict[str, Any], node_name: str) -> str:
    observed = (ds.get("status") or {}).get("observedGeneration") or 0
    return f"{ds['metadata'].get('uid')}/{observed}/{node_name}"


def allows_surge(ds: dict[str, Any]) -> bool:
    strategy = (ds.get("spec") or {}).get("updateStrategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return False
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge")
    return surge not in (None, 0, "0", "0%")


def pods_by_node(pods: Iterable[Pod], *, include_deleted_terminal: bool) -> dict[str, list[Pod]]:
    """getNodesToDaemonPods over already-claimed pods; terminal pods being deleted are skipped
    unless asked for."""
    result: dict[str, list[Pod]] = {}
    for pod in pods:
        if not include_deleted_terminal and is_terminal(pod) and is_deleting(pod):
            continue
        node = target_node_name(pod)
        if node is None:
            continue
        result.setdefault(node, []).append(pod)
    return result


def _pods_should_be_on_node(ds: dict[str, Any], node_name: str, placement: tuple[bool, bool],
                            daemon_pods: list[Pod] | None, hash_: str, backoff: FailedPodBackoff, now: float,
                            actions: Actions) -> None:
    should_run, should_continue = placement
    if should_run and not daemon_pods:
        actions.create_on_nodes.append(node_name)
        return
    if not daemon_pods:
        return
    if not should_continue:
        actions.delete_pods.extend(pod_name(p) for p in daemon_pods if not is_deleting(p))
        return
    running: list[Pod] = []
    for pod in daemon_pods:
        if is_deleting(pod):
            continue
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Failed":
            key = backoff_key(ds, node_name)
            if backoff.in_backoff_since_update(key, now):
                actions.requeue(backoff.get(key))
                continue
            backoff.next(key, now)
            ns = pod["metadata"].get("namespace")
            actions.events.append(("Warning", FAILED_DAEMON_POD,
                                   f"Found failed daemon pod {ns}/{pod_name(pod)} on node {node_name}, "
                                   "will try to kill it"))
            actions.delete_pods.append(pod_name(pod))
        elif phase == "Succeeded":
            actions.delete_pods.append(pod_name(pod))
        else:
            running.append(pod)
    if len(running) <= 1:
        return
    running.sort(key=oldest_first_key)
    if not allows_surge(ds):
        actions.delete_pods.extend(pod_name(p) for p in running[1:])
        return
    # Surging: keep at most the oldest new pod and the oldest old pod; the old one goes once it
    # is not ready, or once the new one is available.
    oldest_new: Pod | None = None
    oldest_old: Pod | None = None
    for pod in running:
        is_new = ((pod.get("metadata") or {}).get("labels") or {}).get(CONTROLLER_REVISION_HASH_LABEL) == hash_
        if is_new and oldest_new is None:
            oldest_new = pod
        elif not is_new and oldest_old is None:
            oldest_old = pod
        else:
            actions.delete_pods.append(pod_name(pod))
    if oldest_new is not None and oldest_old is not None:
        min_ready = int((ds.get("spec") or {}).get("minReadySeconds") or 0)
        if not is_pod_ready(oldest_old) or is_pod_available(oldest_new, min_ready, now):
            actions.delete_pods.append(pod_name(oldest_old))


def _settled(pod: Pod) -> bool:
    """Neither being deleted nor finished: a lone pod like this is kept as it is."""
    return not is_deleting(pod) and not is_terminal(pod)


def plan(ds: dict[str, Any], nodes: Iterable[dict[str, Any]], by_node: dict[str, list[Pod]], *,
         hash_: str, backoff: FailedPodBackoff, now: float, placements: Placements | None = None) -> Actions:
    """The manage step: pods to create on nodes and pods to delete, from listers' contents only.

    ``placements`` (see ``placement.placements``) saves asking the placement question again."""
    actions = Actions()
    node_names: set[str] = set()
    for node in nodes:
        name = node["metadata"]["name"]
        node_names.add(name)
        placement = verdict(node, ds, placements)
        pods = by_node.get(name)
        if placement[1] and pods is not None and len(pods) == 1 and _settled(pods[0]):
            continue  # the usual case, one live pod where it may stay: nothing to do (saves a call)
        _pods_should_be_on_node(ds, name, placement, pods, hash_, backoff, now, actions)
    # Pods whose node is gone: upstream deletes the unscheduled ones here and leaves bound ones to
    # the pod GC; we delete both so a removed node's daemon pod goes at once.
    for node_name, pods in by_node.items():
        if node_name in node_names:
            continue
        actions.delete_pods.extend(pod_name(p) for p in pods if not is_deleting(p))
    return actions
