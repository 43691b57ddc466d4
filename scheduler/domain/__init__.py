"""The domain: pure Python (and numpy) objects of the scheduler, no solver or transport."""

from scheduler.domain.cluster import CapacityError, Cluster
from scheduler.domain.energy import (
    SiteRates,
    attributed_watts,
    dynamic_watts,
    node_it_watts,
    site_costs,
)
from scheduler.domain.errors import ScenarioError, ValidationError, ValidationErrors, shorten
from scheduler.domain.forecast import Forecast, SiteProfile, hour_of, load_forecast
from scheduler.domain.moves import DrainPlan, Move, Stuck
from scheduler.domain.resources import GPU_MILLIS, Resources
from scheduler.domain.scenario import (
    DEFAULT_SCENARIO,
    Pool,
    RackRange,
    Scenario,
    Site,
    load_scenario,
    parse_scenario,
)
from scheduler.domain.timeline import Timeline
from scheduler.domain.workload import (
    Cost,
    Explanation,
    Reason,
    ReasonCode,
    ReplicaPlacement,
    SiteVerdict,
    Topology,
    Workload,
    WorkloadKind,
    WorkloadSpec,
    WorkloadState,
    per_node_limit,
    primary_reason_code,
)

__all__ = [
    "DEFAULT_SCENARIO",
    "GPU_MILLIS",
    "CapacityError",
    "Cluster",
    "Cost",
    "DrainPlan",
    "Explanation",
    "Forecast",
    "Move",
    "Pool",
    "RackRange",
    "Reason",
    "ReasonCode",
    "ReplicaPlacement",
    "Resources",
    "Scenario",
    "ScenarioError",
    "Site",
    "SiteProfile",
    "SiteRates",
    "SiteVerdict",
    "Stuck",
    "Timeline",
    "Topology",
    "ValidationError",
    "ValidationErrors",
    "Workload",
    "WorkloadKind",
    "WorkloadSpec",
    "WorkloadState",
    "attributed_watts",
    "dynamic_watts",
    "hour_of",
    "load_forecast",
    "load_scenario",
    "node_it_watts",
    "parse_scenario",
    "per_node_limit",
    "primary_reason_code",
    "shorten",
    "site_costs",
]
