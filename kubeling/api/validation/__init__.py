"""Semantic validation of built-in kinds, with upstream's messages and field paths.

Split by area: ``meta`` (names, labels, selectors, ObjectMeta), ``pod`` (PodSpec),
``apps`` (workloads), ``core`` (nodes, namespaces, services, config, events, leases).
"""
