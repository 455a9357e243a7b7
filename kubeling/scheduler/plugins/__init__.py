"""The default profile's plugins, in upstream's filter order; one module per plugin."""

from kubeling.scheduler.plugins import (
    node_affinity,
    node_name,
    node_ports,
    node_resources_balanced_allocation,
    node_resources_fit,
    node_unschedulable,
    taint_toleration,
)

# filter order as the default profile runs them; a node fails on the first plugin that rejects it
FILTERS = [node_unschedulable, node_name, taint_toleration, node_affinity, node_ports, node_resources_fit]
# score plugins and their weights in the default profile (upstream's v1 defaults)
SCORERS = [(taint_toleration, 3), (node_affinity, 2), (node_resources_fit, 1),
           (node_resources_balanced_allocation, 1)]
