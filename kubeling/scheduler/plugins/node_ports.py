"""NodePorts: a hostPort can be taken by one pod per node (per IP and protocol)."""

from __future__ import annotations

from kubeling.scheduler.framework import OK, CycleState, NodeInfo, Obj, Status, unschedulable

NAME = "NodePorts"
ERR_REASON = "node(s) didn't have free ports for the requested pod ports"


def host_ports(pod: Obj) -> list[tuple[str, str, int]]:
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append((p.get("hostIP") or "0.0.0.0", p.get("protocol") or "TCP", int(p["hostPort"])))
    return out


def _conflicts(want: tuple[str, str, int], used: set[tuple[str, str, int]]) -> bool:
    ip, proto, port = want
    for uip, uproto, uport in used:
        if uport == port and uproto == proto and (ip == "0.0.0.0" or uip == "0.0.0.0" or uip == ip):
            return True
    return False


def filter(state: CycleState, pod: Obj, info: NodeInfo) -> Status:  # noqa: A001
    wanted = state.get("host_ports")
    if wanted is None:
        wanted = state["host_ports"] = host_ports(pod)
    if any(_conflicts(w, info.used_ports) for w in wanted):
        return unschedulable(NAME, ERR_REASON)
    return OK
