import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkloadKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_KIND_UNSPECIFIED: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_SERVICE: _ClassVar[WorkloadKind]
    WORKLOAD_KIND_BATCH: _ClassVar[WorkloadKind]

class Topology(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOPOLOGY_UNSPECIFIED: _ClassVar[Topology]
    TOPOLOGY_GANG: _ClassVar[Topology]
    TOPOLOGY_SPREAD: _ClassVar[Topology]

class WorkloadState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_STATE_UNSPECIFIED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_PENDING: _ClassVar[WorkloadState]
    WORKLOAD_STATE_PLACED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_UNSCHEDULABLE: _ClassVar[WorkloadState]
    WORKLOAD_STATE_CANCELLED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_COMPLETED: _ClassVar[WorkloadState]
    WORKLOAD_STATE_PREEMPTED: _ClassVar[WorkloadState]
WORKLOAD_KIND_UNSPECIFIED: WorkloadKind
WORKLOAD_KIND_SERVICE: WorkloadKind
WORKLOAD_KIND_BATCH: WorkloadKind
TOPOLOGY_UNSPECIFIED: Topology
TOPOLOGY_GANG: Topology
TOPOLOGY_SPREAD: Topology
WORKLOAD_STATE_UNSPECIFIED: WorkloadState
WORKLOAD_STATE_PENDING: WorkloadState
WORKLOAD_STATE_PLACED: WorkloadState
WORKLOAD_STATE_UNSCHEDULABLE: WorkloadState
WORKLOAD_STATE_CANCELLED: WorkloadState
WORKLOAD_STATE_COMPLETED: WorkloadState
WORKLOAD_STATE_PREEMPTED: WorkloadState

class Resources(_message.Message):
    __slots__ = ("cpu_millis", "memory_mib", "gpus", "gpu_millis")
    CPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_MILLIS_FIELD_NUMBER: _ClassVar[int]
    cpu_millis: int
    memory_mib: int
    gpus: int
    gpu_millis: int
    def __init__(self, cpu_millis: _Optional[int] = ..., memory_mib: _Optional[int] = ..., gpus: _Optional[int] = ..., gpu_millis: _Optional[int] = ...) -> None: ...

class WorkloadSpec(_message.Message):
    __slots__ = ("tenant", "name", "resources", "replicas", "origin", "max_latency_ms", "priority", "kind", "duration_s", "deadline", "allowed_sites", "topology", "min_sites", "gpu_models", "labels", "max_replicas_per_node")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    MAX_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_SITES_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    MIN_SITES_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    name: str
    resources: Resources
    replicas: int
    origin: str
    max_latency_ms: float
    priority: int
    kind: WorkloadKind
    duration_s: int
    deadline: _timestamp_pb2.Timestamp
    allowed_sites: _containers.RepeatedScalarFieldContainer[str]
    topology: Topology
    min_sites: int
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    max_replicas_per_node: int
    def __init__(self, tenant: _Optional[str] = ..., name: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., replicas: _Optional[int] = ..., origin: _Optional[str] = ..., max_latency_ms: _Optional[float] = ..., priority: _Optional[int] = ..., kind: _Optional[_Union[WorkloadKind, str]] = ..., duration_s: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., allowed_sites: _Optional[_Iterable[str]] = ..., topology: _Optional[_Union[Topology, str]] = ..., min_sites: _Optional[int] = ..., gpu_models: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., max_replicas_per_node: _Optional[int] = ...) -> None: ...

class ReplicaPlacement(_message.Message):
    __slots__ = ("replica", "site", "node", "latency_ms", "start_time", "gpu_indices")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    GPU_INDICES_FIELD_NUMBER: _ClassVar[int]
    replica: int
    site: str
    node: str
    latency_ms: float
    start_time: _timestamp_pb2.Timestamp
    gpu_indices: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, replica: _Optional[int] = ..., site: _Optional[str] = ..., node: _Optional[str] = ..., latency_ms: _Optional[float] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpu_indices: _Optional[_Iterable[int]] = ...) -> None: ...

class Cost(_message.Message):
    __slots__ = ("energy_cny_per_hour", "carbon_kg_per_hour", "power_watts")
    ENERGY_CNY_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    CARBON_KG_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    POWER_WATTS_FIELD_NUMBER: _ClassVar[int]
    energy_cny_per_hour: float
    carbon_kg_per_hour: float
    power_watts: float
    def __init__(self, energy_cny_per_hour: _Optional[float] = ..., carbon_kg_per_hour: _Optional[float] = ..., power_watts: _Optional[float] = ...) -> None: ...

class Workload(_message.Message):
    __slots__ = ("id", "spec", "state", "placements", "reason", "created_at", "placed_at", "cost")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    PLACED_AT_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: WorkloadSpec
    state: WorkloadState
    placements: _containers.RepeatedCompositeFieldContainer[ReplicaPlacement]
    reason: str
    created_at: _timestamp_pb2.Timestamp
    placed_at: _timestamp_pb2.Timestamp
    cost: Cost
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[WorkloadSpec, _Mapping]] = ..., state: _Optional[_Union[WorkloadState, str]] = ..., placements: _Optional[_Iterable[_Union[ReplicaPlacement, _Mapping]]] = ..., reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., placed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ...) -> None: ...

class SubmitWorkloadsRequest(_message.Message):
    __slots__ = ("request_id", "workloads")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    workloads: _containers.RepeatedCompositeFieldContainer[WorkloadSpec]
    def __init__(self, request_id: _Optional[str] = ..., workloads: _Optional[_Iterable[_Union[WorkloadSpec, _Mapping]]] = ...) -> None: ...

class SubmitWorkloadsResponse(_message.Message):
    __slots__ = ("workloads",)
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ...) -> None: ...

class GetWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListWorkloadsRequest(_message.Message):
    __slots__ = ("tenant", "states", "page_size", "page_token")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    states: _containers.RepeatedScalarFieldContainer[WorkloadState]
    page_size: int
    page_token: str
    def __init__(self, tenant: _Optional[str] = ..., states: _Optional[_Iterable[_Union[WorkloadState, str]]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkloadsResponse(_message.Message):
    __slots__ = ("workloads", "next_page_token")
    WORKLOADS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workloads: _containers.RepeatedCompositeFieldContainer[Workload]
    next_page_token: str
    def __init__(self, workloads: _Optional[_Iterable[_Union[Workload, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchWorkloadsRequest(_message.Message):
    __slots__ = ("tenant", "states")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    states: _containers.RepeatedScalarFieldContainer[WorkloadState]
    def __init__(self, tenant: _Optional[str] = ..., states: _Optional[_Iterable[_Union[WorkloadState, str]]] = ...) -> None: ...

class WorkloadEvent(_message.Message):
    __slots__ = ("workload", "previous_state", "sequence", "time")
    WORKLOAD_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    workload: Workload
    previous_state: WorkloadState
    sequence: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, workload: _Optional[_Union[Workload, _Mapping]] = ..., previous_state: _Optional[_Union[WorkloadState, str]] = ..., sequence: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WorkloadEventBatch(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkloadEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WorkloadEvent, _Mapping]]] = ...) -> None: ...

class ExplainWorkloadRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "message", "resource", "requested", "largest_free")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    LARGEST_FREE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    resource: str
    requested: float
    largest_free: float
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., resource: _Optional[str] = ..., requested: _Optional[float] = ..., largest_free: _Optional[float] = ...) -> None: ...

class SiteVerdict(_message.Message):
    __slots__ = ("site", "feasible", "reasons", "cost")
    SITE_FIELD_NUMBER: _ClassVar[int]
    FEASIBLE_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    site: str
    feasible: bool
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    cost: Cost
    def __init__(self, site: _Optional[str] = ..., feasible: _Optional[bool] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., cost: _Optional[_Union[Cost, _Mapping]] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("summary", "sites", "state", "placed_sites")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PLACED_SITES_FIELD_NUMBER: _ClassVar[int]
    summary: str
    sites: _containers.RepeatedCompositeFieldContainer[SiteVerdict]
    state: WorkloadState
    placed_sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, summary: _Optional[str] = ..., sites: _Optional[_Iterable[_Union[SiteVerdict, _Mapping]]] = ..., state: _Optional[_Union[WorkloadState, str]] = ..., placed_sites: _Optional[_Iterable[str]] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ("include_nodes",)
    INCLUDE_NODES_FIELD_NUMBER: _ClassVar[int]
    include_nodes: bool
    def __init__(self, include_nodes: _Optional[bool] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "pool", "capacity", "allocated", "gpu_model", "rack", "cordoned")
    NAME_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    name: str
    pool: str
    capacity: Resources
    allocated: Resources
    gpu_model: str
    rack: str
    cordoned: bool
    def __init__(self, name: _Optional[str] = ..., pool: _Optional[str] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., allocated: _Optional[_Union[Resources, _Mapping]] = ..., gpu_model: _Optional[str] = ..., rack: _Optional[str] = ..., cordoned: _Optional[bool] = ...) -> None: ...

class Site(_message.Message):
    __slots__ = ("name", "pue", "latency_ms", "capacity", "allocated", "price_cny_per_kwh", "carbon_kg_per_kwh", "power_watts", "nodes", "energy_cny_per_hour", "carbon_kg_per_hour", "reserved_cores_by_hour")
    class LatencyMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    PUE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    PRICE_CNY_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    CARBON_KG_PER_KWH_FIELD_NUMBER: _ClassVar[int]
    POWER_WATTS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    ENERGY_CNY_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    CARBON_KG_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    RESERVED_CORES_BY_HOUR_FIELD_NUMBER: _ClassVar[int]
    name: str
    pue: float
    latency_ms: _containers.ScalarMap[str, float]
    capacity: Resources
    allocated: Resources
    price_cny_per_kwh: float
    carbon_kg_per_kwh: float
    power_watts: float
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    energy_cny_per_hour: float
    carbon_kg_per_hour: float
    reserved_cores_by_hour: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, name: _Optional[str] = ..., pue: _Optional[float] = ..., latency_ms: _Optional[_Mapping[str, float]] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., allocated: _Optional[_Union[Resources, _Mapping]] = ..., price_cny_per_kwh: _Optional[float] = ..., carbon_kg_per_kwh: _Optional[float] = ..., power_watts: _Optional[float] = ..., nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ..., energy_cny_per_hour: _Optional[float] = ..., carbon_kg_per_hour: _Optional[float] = ..., reserved_cores_by_hour: _Optional[_Iterable[float]] = ...) -> None: ...

class CordonNodesRequest(_message.Message):
    __slots__ = ("nodes", "site", "cordoned")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    CORDONED_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    site: str
    cordoned: bool
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., site: _Optional[str] = ..., cordoned: _Optional[bool] = ...) -> None: ...

class DrainNodesRequest(_message.Message):
    __slots__ = ("nodes", "site", "dry_run")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedScalarFieldContainer[str]
    site: str
    dry_run: bool
    def __init__(self, nodes: _Optional[_Iterable[str]] = ..., site: _Optional[str] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class RebalanceRequest(_message.Message):
    __slots__ = ("dry_run", "max_moves", "sites")
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    MAX_MOVES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    max_moves: int
    sites: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dry_run: _Optional[bool] = ..., max_moves: _Optional[int] = ..., sites: _Optional[_Iterable[str]] = ...) -> None: ...

class Move(_message.Message):
    __slots__ = ("workload_id", "replica", "from_node", "to_node")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    FROM_NODE_FIELD_NUMBER: _ClassVar[int]
    TO_NODE_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    replica: int
    from_node: str
    to_node: str
    def __init__(self, workload_id: _Optional[str] = ..., replica: _Optional[int] = ..., from_node: _Optional[str] = ..., to_node: _Optional[str] = ...) -> None: ...

class Stuck(_message.Message):
    __slots__ = ("workload_id", "replica", "node", "reason")
    WORKLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workload_id: str
    replica: int
    node: str
    reason: str
    def __init__(self, workload_id: _Optional[str] = ..., replica: _Optional[int] = ..., node: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class MovePlan(_message.Message):
    __slots__ = ("moves", "stuck", "objective_before", "objective_after", "cost_before", "cost_after", "objective_bound")
    MOVES_FIELD_NUMBER: _ClassVar[int]
    STUCK_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_AFTER_FIELD_NUMBER: _ClassVar[int]
    COST_BEFORE_FIELD_NUMBER: _ClassVar[int]
    COST_AFTER_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_BOUND_FIELD_NUMBER: _ClassVar[int]
    moves: _containers.RepeatedCompositeFieldContainer[Move]
    stuck: _containers.RepeatedCompositeFieldContainer[Stuck]
    objective_before: float
    objective_after: float
    cost_before: Cost
    cost_after: Cost
    objective_bound: float
    def __init__(self, moves: _Optional[_Iterable[_Union[Move, _Mapping]]] = ..., stuck: _Optional[_Iterable[_Union[Stuck, _Mapping]]] = ..., objective_before: _Optional[float] = ..., objective_after: _Optional[float] = ..., cost_before: _Optional[_Union[Cost, _Mapping]] = ..., cost_after: _Optional[_Union[Cost, _Mapping]] = ..., objective_bound: _Optional[float] = ...) -> None: ...

class CordonNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites", "hour", "month", "reserved_from")
    SITES_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FROM_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[Site]
    hour: int
    month: int
    reserved_from: _timestamp_pb2.Timestamp
    def __init__(self, sites: _Optional[_Iterable[_Union[Site, _Mapping]]] = ..., hour: _Optional[int] = ..., month: _Optional[int] = ..., reserved_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
