"""The node cache in sampling order, with each node's verdict memoised per pod shape.

Most pending pods in a large cluster ask for nothing but resources: no nodeSelector, no node
affinity, no host ports (a Deployment's replicas, the benchmark's pods). For such a pod the
default profile's verdict on a node depends only on the pod's requests and tolerations and on
the node's allocatable, taints, cordon and what it already runs. On a *plain* node (neither
cordoned nor tainted) every filter but NodeResourcesFit passes, TaintToleration scores every
plain node the same (no taints to count) and NodeAffinity's scoring is skipped (no preferred
terms), so the node's score is the sum of the others (LeastAllocated, BalancedAllocation).

So per *shape* (requests, non-zero requests, tolerations) the snapshot keeps one list aligned
with the node order: the plain node's score if it fits, ``INFEASIBLE`` (its Status kept beside)
if it does not, ``MIXED`` for a tainted or cordoned node that fits (its score needs every
plugin, normalised with the other feasible nodes), and ``UNKNOWN`` until computed. A node that
changes (a pod bound, assumed or gone; new allocatable, taints) is reset to ``UNKNOWN`` in every
shape, so a scheduling cycle recomputes only the nodes that changed since that shape last looked
at them: a window of hundreds of nodes is then a slice, a count and a max, in C.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from kubeling.scheduler.framework import NodeInfo, Status

UNKNOWN = -3
MIXED = -2  # fits, but tainted or cordoned: scored with every plugin, beside the others
INFEASIBLE = -1
MAX_SHAPES = 16  # distinct pod shapes kept; the least recently used one is dropped

# (requests, non-zero cpu and memory, the tolerations as JSON)
Shape = tuple[tuple[tuple[str, int], ...], tuple[int, ...], bytes]


class ShapeVerdicts:
    """One pod shape's per-node verdicts (see the module docstring)."""

    __slots__ = ("scores", "statuses")

    def __init__(self, size: int) -> None:
        self.scores: list[int] = [UNKNOWN] * size
        self.statuses: dict[int, Status] = {}  # node index -> why it does not fit


class NodeSnapshot:
    """Nodes in a stable order (upstream samples them round-robin from a rotating index)."""

    def __init__(self) -> None:
        self.nodes: list[NodeInfo] = []
        self.index: dict[str, int] = {}
        self._shapes: OrderedDict[Shape, ShapeVerdicts] = OrderedDict()

    def rebuild(self, infos: Iterable[NodeInfo]) -> None:
        """A node added or removed: a new order, and every memoised verdict forgotten."""
        self.nodes = list(infos)
        self.index = {info.name: i for i, info in enumerate(self.nodes)}
        self._shapes.clear()

    def touch(self, info: NodeInfo) -> None:
        """``info`` changed (pods, allocatable, taints): its verdicts must be recomputed."""
        if not self._shapes:
            return
        i = self.index.get(info.name)
        if i is None or self.nodes[i] is not info:
            return  # not in the snapshot (a preemption what-if copy, or a node not yet listed)
        for verdicts in self._shapes.values():
            verdicts.scores[i] = UNKNOWN
            verdicts.statuses.pop(i, None)

    def verdicts(self, shape: Shape) -> ShapeVerdicts:
        v = self._shapes.get(shape)
        if v is None:
            v = self._shapes[shape] = ShapeVerdicts(len(self.nodes))
            if len(self._shapes) > MAX_SHAPES:
                self._shapes.popitem(last=False)
        else:
            self._shapes.move_to_end(shape)
        return v
