"""A plan's eligible nodes in rollout order, remembered between syncs.

Every DaemonSet sync (through the hold-back) and every plan sync (through ``observe``) needs the
order of the eligible nodes; at thousands of nodes, asking every node whether the daemon pod runs
there, matching the canary selector and sorting, at every sync, was most of their CPU.

What a node contributes depends only on its version: whether the pod should run there and, if so,
its :func:`steps.order_facts`. That entry is kept per node uid and resourceVersion, in a table per
(order fields of the plan, placement fields of the DaemonSet). The last node list of each such
pair is kept too, with its entries and the order computed from them: the next call finds the
node objects that changed with one C-level identity scan, asks only those again, and sorts only
when an entry differs. Both controllers share the answers, which are exactly those of
``steps.rollout_order`` over the nodes where ``node_should_run_daemon_pod`` says the pod runs.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from kubeling.controllers.daemonset.placement import node_should_run_daemon_pod, placement_key
from kubeling.controllers.rollout import steps

Obj = dict[str, Any]
# an eligible node's steps.order_facts, or the name of a node the pod should not run on (spelt out:
# importing steps first imports the DaemonSet controller, whose holdback imports this module while
# steps is half done)
Entry = tuple[str, bool, str | None] | str
Placements = Mapping[str, tuple[bool, bool]]
TableKey = tuple[bytes, bytes]   # (order key, placement key)

_TABLE_LIMIT = 32         # (plan, DaemonSet) field combinations remembered
_NODE_LIMIT = 200_000     # node versions per table before it is started afresh
_DIFF_SHARE = 4           # past 1/4 of the nodes changed, the whole list is gone through again


class Fleet:
    """The nodes of one call: the eligible ones in plan order, all of them by name. Shared between
    calls and callers: never mutate it."""

    __slots__ = ("order", "canaries", "_entries", "_eligible", "_names")

    def __init__(self, entries: list[Entry], *, topology: bool) -> None:
        eligible = [e for e in entries if type(e) is tuple]
        self.order = steps.order_from_facts(eligible, topology=topology)
        self.canaries = sum(1 for f in eligible if f[1])
        self._entries = entries
        self._eligible: frozenset[str] | None = None
        self._names: list[str] | None = None

    @property
    def eligible(self) -> frozenset[str]:
        """The names in ``order``."""
        if self._eligible is None:
            self._eligible = frozenset(self.order)
        return self._eligible

    @property
    def names(self) -> list[str]:
        """Every node's name (eligible or not), sorted."""
        if self._names is None:
            self._names = sorted(e if type(e) is str else e[0] for e in self._entries)
        return self._names


class _Last:
    """The node list of the last call for one table, its entries, and the answer."""

    __slots__ = ("nodes", "entries", "fleet")

    def __init__(self, nodes: list[Obj], entries: list[Entry], fleet: Fleet) -> None:
        self.nodes = nodes
        self.entries = entries
        self.fleet = fleet


_TABLES: dict[TableKey, dict[str, tuple[str, Entry]]] = {}  # node uid -> (resourceVersion, entry)
_LAST: dict[TableKey, _Last] = {}


def order_key(plan: Obj) -> bytes:
    """The fields of ``plan`` that the order reads, as bytes."""
    spec = plan.get("spec") or {}
    selector = spec.get("canaryNodes") if steps.has_canaries(plan) else None
    return orjson.dumps([selector, spec.get("topologyKey") or None], option=orjson.OPT_SORT_KEYS)


def _entry(plan: Obj, ds: Obj, node: Obj, placements: Placements | None) -> Entry:
    name = node["metadata"]["name"]
    known = placements.get(name) if placements is not None else None
    should_run = known[0] if known is not None else node_should_run_daemon_pod(node, ds)[0]
    return steps.order_facts(plan, node) if should_run else name


def _table(key: TableKey) -> dict[str, tuple[str, Entry]]:
    table = _TABLES.get(key)
    if table is None or len(table) > _NODE_LIMIT:
        if table is None and len(_TABLES) >= _TABLE_LIMIT:
            dropped = next(iter(_TABLES))
            del _TABLES[dropped]
            _LAST.pop(dropped, None)
        table = _TABLES[key] = {}
    return table


def _stored_entry(table: dict[str, tuple[str, Entry]], plan: Obj, ds: Obj, node: Obj,
                  placements: Placements | None) -> Entry | None:
    """The node's entry through the table; None for a node that is not a stored version."""
    meta = node["metadata"]
    uid, rv = meta.get("uid"), meta.get("resourceVersion")
    if not uid or not rv:
        return None
    hit = table.get(uid)
    if hit is None or hit[0] != rv:
        hit = table[uid] = (rv, _entry(plan, ds, node, placements))
    return hit[1]


def _changed(nodes: list[Obj], last: _Last) -> list[int] | None:
    """Positions whose node object is not the last call's, or None when the list changed shape."""
    if len(nodes) != len(last.nodes):
        return None
    if nodes == last.nodes:  # compares pointers until a difference: touches no node
        if nodes and (nodes[0] is not last.nodes[0] or nodes[-1] is not last.nodes[-1]):
            last.nodes = list(nodes)  # equal copies: keep these, so that pointers match next time
        return []
    changed = list(itertools.compress(itertools.count(), map(operator.is_not, nodes, last.nodes)))
    return changed if len(changed) * _DIFF_SHARE <= len(nodes) else None


def _apply(last: _Last, nodes: list[Obj], changed: list[int], table: dict[str, tuple[str, Entry]], plan: Obj,
           ds: Obj, placements: Placements | None, topology: bool) -> Fleet | None:
    """The last call's answer brought up to date with the nodes at ``changed``; None if one of
    them is not a stored version (its entry could change without its identity changing)."""
    entries = last.entries
    for i in changed:
        entry = _stored_entry(table, plan, ds, nodes[i], placements)
        if entry is None:
            return None
        if entry != entries[i]:
            if entries is last.entries:
                entries = list(entries)  # the last Fleet keeps its own
            entries[i] = entry
        last.nodes[i] = nodes[i]
    if entries is not last.entries:
        last.entries = entries
        last.fleet = Fleet(entries, topology=topology)
    return last.fleet


def eligible_in_order(plan: Obj, ds: Obj, nodes: Iterable[Obj], *, placements: Placements | None = None) -> Fleet:
    """The nodes where ``ds``'s pod should run, in ``plan``'s order, and the canary count.

    ``placements`` (node name -> ``node_should_run_daemon_pod``), when the caller has them, spare
    asking again for the nodes not seen in this version yet. Only stored versions (uid and
    resourceVersion, never changed in place) are remembered.
    """
    nodes = nodes if isinstance(nodes, list) else list(nodes)
    topology = bool((plan.get("spec") or {}).get("topologyKey"))
    pkey = placement_key(ds)
    if pkey is None:  # not a stored DaemonSet: nothing to key the answers on
        return Fleet([_entry(plan, ds, n, placements) for n in nodes], topology=topology)
    key = (order_key(plan), pkey)
    table = _table(key)
    last = _LAST.get(key)
    changed = _changed(nodes, last) if last is not None else None
    if last is not None and changed is not None:
        fleet = _apply(last, nodes, changed, table, plan, ds, placements, topology)
        if fleet is not None:
            return fleet
    entries: list[Entry] = []
    stored = True
    for node in nodes:
        entry = _stored_entry(table, plan, ds, node, placements)
        if entry is None:
            stored = False
            entry = _entry(plan, ds, node, placements)
        entries.append(entry)
    same = last is not None and entries == last.entries
    fleet = last.fleet if same else Fleet(entries, topology=topology)  # type: ignore[union-attr]
    if stored:
        _LAST[key] = _Last(list(nodes), entries, fleet)
    else:
        _LAST.pop(key, None)
    return fleet
