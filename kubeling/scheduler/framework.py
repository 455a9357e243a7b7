"""The scheduling framework's seams: a Status per plugin verdict, the node cache entry, per-cycle state.

Plugins are small modules with ``NAME`` and ``filter(state, pod, node_info) -> Status``,
optionally ``score(state, pod, node_info) -> int`` with ``normalize(scores)`` (upstream's
NormalizeScore, over all feasible nodes), ``pre_score(state, pod) -> bool`` (False skips the
plugin for this pod, as upstream's PreScore returning Skip) and ``pre_filter(state, pod)``
returning the node names the pod can only go to (None for any).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubeling.api import quantity

Obj = dict[str, Any]

SUCCESS = "Success"
UNSCHEDULABLE = "Unschedulable"
UNRESOLVABLE = "UnschedulableAndUnresolvable"
MAX_NODE_SCORE = 100
# upstream's non-zero defaults for containers without requests (pkg/scheduler/util): used when
# scoring so that many request-less pods do not all pile onto one node
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@dataclass(slots=True)
class Status:
    code: str = SUCCESS
    reasons: list[str] = field(default_factory=list)
    plugin: str = ""

    @property
    def ok(self) -> bool:
        return self.code == SUCCESS


OK = Status()


def unschedulable(plugin: str, *reasons: str, resolvable: bool = True) -> Status:
    return Status(UNSCHEDULABLE if resolvable else UNRESOLVABLE, list(reasons), plugin)


def amount(resource: str, value: Any) -> int:
    """A quantity as the scheduler counts it: milli-units for cpu, units for everything else."""
    if isinstance(value, str):
        return _amount(resource, value)
    return _parse_amount(resource, value)


def _parse_amount(resource: str, value: Any) -> int:
    if resource == "cpu":
        return quantity.milli_value(value)
    return int(quantity.parse_value(value))


# the same few request strings ("100m", "16Mi") come with every pod: parse each once
_amount = functools.lru_cache(maxsize=4096)(_parse_amount)


@dataclass(slots=True)
class NodeInfo:
    """A node with what is already placed on it (requests summed, host ports in use).

    ``allocatable`` is parsed once per node update, not once per pod and node.
    """

    node: Obj
    pods: dict[str, Obj] = field(default_factory=dict)  # pod key -> pod
    requested: dict[str, int] = field(default_factory=dict)  # resource -> milli-units (cpu) or units
    nonzero: dict[str, int] = field(default_factory=dict)  # cpu/memory with upstream's non-zero defaults
    used_ports: set[tuple[str, str, int]] = field(default_factory=set)  # (ip, protocol, port)
    allocatable: dict[str, int] = field(default_factory=dict)
    # neither cordoned nor tainted: for a pod without node constraints only resources can reject it
    plain: bool = True

    def __post_init__(self) -> None:
        self.set_node(self.node)

    def set_node(self, node: Obj) -> None:
        self.node = node
        alloc = (node.get("status") or {}).get("allocatable") or {}
        parsed: dict[str, int] = {}
        for r, v in alloc.items():
            try:
                parsed[r] = amount(r, v)
            except Exception:  # noqa: BLE001 - a malformed quantity counts as none
                parsed[r] = 0
        self.allocatable = parsed
        spec = node.get("spec") or {}
        self.plain = not spec.get("unschedulable") and not spec.get("taints")

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]

    def clone(self) -> NodeInfo:
        """A copy whose pods and sums can be changed (preemption's what-if)."""
        c = NodeInfo.__new__(NodeInfo)
        c.node = self.node
        c.pods = dict(self.pods)
        c.requested = dict(self.requested)
        c.nonzero = dict(self.nonzero)
        c.used_ports = set(self.used_ports)
        c.allocatable = self.allocatable
        c.plain = self.plain
        return c


class CycleState(dict[str, Any]):
    """Data a plugin computes once per pod (PreFilter/PreScore) and reads per node."""


class Plugin(Protocol):
    NAME: str

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status: ...
