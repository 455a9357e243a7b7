"""The simulated kubelet fleet (KWOK-style): declared stages, fault injection, the fleet itself."""

from kubeling.nodes.fleet import NodeFleet, create_initial_nodes

__all__ = ["NodeFleet", "create_initial_nodes"]
