"""The scheduling framework's seams: a Status per plugin verdict and the per-cycle state.

Plugins are small modules with ``NAME`` and ``filter(state, pod, node_info) -> Status``
and optionally ``score(state, pod, node_info) -> int`` (0..100) and ``pre_filter(state, pod)``
returning the node names the pod can only go to (None for any).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

Obj = dict[str, Any]

SUCCESS = "Success"
UNSCHEDULABLE = "Unschedulable"
UNRESOLVABLE = "UnschedulableAndUnresolvable"
MAX_NODE_SCORE = 100


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


@dataclass(slots=True)
class NodeInfo:
    """A node with what is already placed on it (requests summed, host ports in use)."""

    node: Obj
    pods: dict[str, Obj] = field(default_factory=dict)  # pod key -> pod
    requested: dict[str, int] = field(default_factory=dict)  # resource -> milli-units (cpu) or units
    used_ports: set[tuple[str, str, int]] = field(default_factory=set)  # (ip, protocol, port)

    @property
    def name(self) -> str:
        return self.node["metadata"]["name"]


class CycleState(dict[str, Any]):
    """Data a plugin computes once per pod (PreFilter/PreScore) and reads per node."""


class Plugin(Protocol):
    NAME: str

    def filter(self, state: CycleState, pod: Obj, info: NodeInfo) -> Status: ...
