"""A DaemonSet's claimed pods by node, kept between syncs and brought up to date from the pods that
changed, instead of being claimed and grouped again from every pod at every sync.

The controller's pod handler marks the keys of pods that carry (or carried) a DaemonSet's
controllerRef as dirty; a sync applies just those keys. Whatever the incremental path cannot decide
alone (an orphan that may need adopting, an owned pod that stopped matching the selector and must
be released, a changed selector, a first sync) sends the controller back to the full claim, whose
result then replaces the index. The grouping is ``pods_by_node(claimed, include_deleted_terminal=False)``.

Kept alongside, from the same inserts and removals: how many live pods carry each revision (so a
rolling-update step with no outdated pod can be skipped) and the nodes whose pods changed (so the
status counts are recounted on those nodes only, see ``status.RunningCounts``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from kubeling.api.scheduling import label_selector_matches
from kubeling.client.informer import object_key
from kubeling.client.ownership import controller_ref
from kubeling.controllers.daemonset.pods import (
    TEMPLATE_GENERATION_LABEL,
    Pod,
    is_deleting,
    is_terminal,
    target_node_name,
)
from kubeling.controllers.daemonset.status import RunningCounts
from kubeling.controllers.history import CONTROLLER_REVISION_HASH_LABEL

Revision = tuple[str | None, str | None]  # (controller-revision-hash, pod-template-generation) labels

MAX_DIRTY = 50_000  # beyond this many changed pods a full claim is as cheap: stop tracking them


def selector_key(ds: dict[str, Any]) -> bytes:
    return orjson.dumps((ds.get("spec") or {}).get("selector"), option=orjson.OPT_SORT_KEYS)


def _controller_uid(pod: Pod) -> str | None:
    ref = controller_ref(pod)
    return ref.get("uid") if ref is not None else None


class ClaimedPods:
    """One DaemonSet's claimed pods by target node (see the module docstring)."""

    def __init__(self, uid: str, namespace: str) -> None:
        self.uid = uid
        self.namespace = namespace
        self.selector: bytes | None = None  # the selector the index was built with; None: rebuild
        self.by_node: dict[str, list[Pod]] = {}
        self._node_of: dict[str, str] = {}  # pod key -> its bucket
        self._revision_of: dict[str, Revision] = {}  # live (not deleting) pod key -> its revision labels
        self._revisions: Counter[Revision] = Counter()
        self._changed_nodes: set[str] | None = None  # buckets changed since take_changed_nodes; None: all
        self.counts = RunningCounts()  # the status counts over this index, kept by the status step
        self.dirty: set[str] = set()  # pods changed since the index was last brought up to date
        self._overflowed = False

    def invalidate(self) -> None:
        """Start afresh: call just before a full claim, whose result goes to ``rebuild``."""
        self.selector = None
        self.dirty.clear()
        self._overflowed = False

    def mark(self, key: str) -> None:
        if self._overflowed:
            return
        self.dirty.add(key)
        if len(self.dirty) > MAX_DIRTY:
            self._overflowed = True
            self.dirty.clear()

    def rebuild(self, claimed: Iterable[Pod], selector: bytes) -> None:
        """Replace the index with a full claim's result. Pods that changed while the claim ran are
        still dirty, so the next refresh reads them again."""
        self.by_node = {}
        self._node_of = {}
        self._revision_of = {}
        self._revisions = Counter()
        self._changed_nodes = None
        for pod in claimed:
            self._insert(object_key(pod), pod)
        self.selector = None if self._overflowed else selector

    def refresh(self, ds: dict[str, Any], get: Callable[[str], Pod | None]) -> bool:
        """Apply the dirty keys; False when only a full claim can decide."""
        if self.selector is None or self._overflowed or self.selector != selector_key(ds):
            return False
        selector = (ds.get("spec") or {}).get("selector")
        updates: list[tuple[str, Pod | None]] = []
        for key in self.dirty:
            pod = get(key)
            if pod is not None and (_controller_uid(pod) != self.uid
                                    or (pod.get("metadata") or {}).get("namespace") != self.namespace):
                pod = None  # owned by someone else now (or an orphan: the orphan check sees it)
            if pod is not None and not label_selector_matches(selector, pod["metadata"].get("labels")):
                return False  # to be released: the full claim does it
            updates.append((key, pod))
        self.dirty.clear()
        for key, pod in updates:
            self._remove(key)
            if pod is not None:
                self._insert(key, pod)
        return True

    def _insert(self, key: str, pod: Pod) -> None:
        if is_terminal(pod) and is_deleting(pod):
            return
        node = target_node_name(pod)
        if node is None:
            return
        self.by_node.setdefault(node, []).append(pod)
        self._node_of[key] = node
        if self._changed_nodes is not None:
            self._changed_nodes.add(node)
        if not is_deleting(pod):
            labels = pod["metadata"].get("labels") or {}
            revision = (labels.get(CONTROLLER_REVISION_HASH_LABEL), labels.get(TEMPLATE_GENERATION_LABEL))
            self._revision_of[key] = revision
            self._revisions[revision] += 1

    def nodes_changed(self, names: Iterable[str]) -> None:
        """Nodes whose placement answers changed: their counts are due again too."""
        if self._changed_nodes is not None:
            self._changed_nodes.update(names)

    def take_changed_nodes(self) -> set[str] | None:
        """Nodes whose pods changed since the last call (None: since a rebuild, so all of them)."""
        changed, self._changed_nodes = self._changed_nodes, set()
        return changed

    def has_outdated(self, hash_: str, generation: int | None) -> bool:
        """Whether a live indexed pod is not updated (``is_pod_updated``): without one, a rolling
        update step has nothing to do."""
        gen = None if generation is None else str(generation)
        return any(count > 0 and not ((hash_ and h == hash_) or (gen is not None and g == gen))
                   for (h, g), count in self._revisions.items())

    def _remove(self, key: str) -> None:
        node = self._node_of.pop(key, None)
        if node is None:
            return
        revision = self._revision_of.pop(key, None)
        if revision is not None:
            self._revisions[revision] -= 1
        if self._changed_nodes is not None:
            self._changed_nodes.add(node)
        bucket = self.by_node.get(node) or []
        for i, pod in enumerate(bucket):
            if object_key(pod) == key:
                del bucket[i]
                break
        if not bucket:
            self.by_node.pop(node, None)
