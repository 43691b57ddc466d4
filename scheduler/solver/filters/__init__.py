"""Hard rules that do not depend on the cycle's decisions (residency, SLO, GPU model, node
shape), as filter plugins, and the reasons a replica does not fit now.

Like Kubernetes Filter plugins, each rule returns machine-readable reasons rather than a boolean,
so that "why is it pending?" has an answer per site. ``plugins`` holds the rules and their
registry, ``eligibility`` runs them, ``capacity`` explains what is full.
"""

from scheduler.solver.filters.capacity import capacity_counts, capacity_reasons, spread_node_reason
from scheduler.solver.filters.eligibility import (
    FINAL_READS,
    Eligibility,
    eligibility,
    eligibility_of,
    sites_for_a_move,
)
from scheduler.solver.filters.plugins import (
    FILTERS,
    RESOURCE_NAMES,
    Candidates,
    Filter,
    FilterRegistry,
    GpuModel,
    NodeShape,
    Residency,
    Slo,
    Verdict,
)

__all__ = [
    "FILTERS",
    "FINAL_READS",
    "RESOURCE_NAMES",
    "Candidates",
    "Eligibility",
    "Filter",
    "FilterRegistry",
    "GpuModel",
    "NodeShape",
    "Residency",
    "Slo",
    "Verdict",
    "capacity_counts",
    "capacity_reasons",
    "eligibility",
    "eligibility_of",
    "sites_for_a_move",
    "spread_node_reason",
]
