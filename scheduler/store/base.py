"""The store protocol, the values it exchanges and its errors.

The store is the truth: a submission is committed before the RPC returns; a scheduling cycle's
placements, state changes and events commit in one transaction. Every committed state change
gets an event with a strictly increasing ``sequence``, published in commit order to the
subscribers of ``subscribe()`` once the transaction has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from scheduler.domain import (
    Cost,
    Reason,
    ReplicaPlacement,
    Resources,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.store.events import Subscription

# Given what each tenant of a submission holds now (resources x replicas over its PENDING and
# PLACED workloads, the submissions committed with it included), None to admit the submission
# or the error to refuse it with: run inside the transaction that would insert it.
Admit = Callable[[Mapping[str, Resources]], Exception | None]


class StoreError(RuntimeError):
    """The store cannot serve the request now (database unavailable, locked, corrupt)."""


class NotLeaderError(StoreError):
    """A placement commit named a leader term that is over: another server leads now."""


class NotFoundError(LookupError):
    """No workload with that id."""

    def __init__(self, workload_id: str) -> None:
        super().__init__(f"workload {workload_id!r} not found")
        self.workload_id = workload_id


class PreconditionError(RuntimeError):
    """The change is not allowed in the workload's current state."""


@dataclass(frozen=True, slots=True)
class WorkloadEvent:
    """A committed state change: ``workload`` as it is after it, ``previous_state``
    UNSPECIFIED for creation."""

    sequence: int
    workload: Workload
    previous_state: WorkloadState
    time: datetime


@dataclass(frozen=True, slots=True)
class Submitted:
    """The workloads of a submission in request order; ``created`` is False for a replay of an
    earlier request with the same request_id."""

    workloads: tuple[Workload, ...]
    created: bool


@dataclass(frozen=True, slots=True)
class StateChange:
    workload: Workload  # after the change
    previous_state: WorkloadState
    changed: bool = True  # False: it was already in the target state, nothing written


@dataclass(frozen=True, slots=True)
class Page:
    workloads: tuple[Workload, ...]
    # position of the last workload returned, to continue after; None on the last page
    next_after: int | None


@dataclass(frozen=True, slots=True)
class Unfit:
    """Why a workload was not placed in a cycle: ``code`` is the first reason's code."""

    code: str
    message: str
    reasons: tuple[Reason, ...] = ()


@dataclass(frozen=True)
class CycleCommit:
    """Everything one scheduling cycle decided, written in one transaction.

    ``workloads`` are the loop's copies (as PENDING) of every workload named below. A workload
    that is no longer PENDING in the store (cancelled meanwhile) is skipped."""

    workloads: Mapping[str, Workload]
    placed: Mapping[str, tuple[tuple[ReplicaPlacement, ...], Cost]]
    unschedulable: Mapping[str, Unfit]
    pending: Mapping[str, Unfit]
    now: datetime


@dataclass(frozen=True)
class CycleOutcome:
    placed: tuple[Workload, ...] = ()
    unschedulable: tuple[Workload, ...] = ()
    pending: tuple[Workload, ...] = ()  # still PENDING, with the reason written
    skipped: frozenset[str] = field(default_factory=frozenset)  # no longer PENDING in the store


@dataclass(frozen=True)
class Displacement:
    """One preemption to commit: ``preemptor`` (the loop's copy, PENDING) placed on
    ``placements`` at ``cost`` per hour, ``victims`` (the loop's copies, PLACED) displaced."""

    preemptor: Workload
    placements: tuple[ReplicaPlacement, ...]
    cost: Cost
    victims: tuple[Workload, ...]


@dataclass(frozen=True)
class PreemptionOutcome:
    """What ``Store.preempt`` committed: the preemptors now PLACED, the victims displaced (now
    PENDING, each with its preemptor's id), the victims that were no longer PLACED (cancelled
    or completed meanwhile: their room is free anyway) and the preemptors no longer PENDING
    (nothing was done for them)."""

    placed: tuple[Workload, ...] = ()
    preempted: tuple[tuple[Workload, str], ...] = ()
    gone: frozenset[str] = field(default_factory=frozenset)
    skipped: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class PreemptionRecord:
    """One committed preemption: ``workload_id`` (of ``priority``, running in ``site``) was
    displaced by ``preemptor_id`` (of ``preemptor_priority``) at ``time``."""

    workload_id: str
    preemptor_id: str
    preemptor_priority: int
    priority: int
    site: str
    time: datetime


@dataclass(frozen=True)
class StateCounts:
    """Workloads per state, and per reason code for PENDING and UNSCHEDULABLE ones."""

    by_state: Mapping[WorkloadState, int]
    pending_by_reason: Mapping[str, int]
    unschedulable_by_reason: Mapping[str, int]


class Store(Protocol):
    """Durable state of the scheduler. Thread-safe: RPC threads and the loop share one."""

    url: str

    def submit(
        self,
        request_id: str,
        request_hash: str,
        specs: Sequence[WorkloadSpec],
        now: datetime,
        *,
        tenant: str | None = None,
        admit: Admit | None = None,
    ) -> Submitted:
        """Record new PENDING workloads (committed when this returns). A request_id is the
        ``tenant``'s (default: the first spec's tenant): one it already used with the same hash
        replays the first call's workloads; with another hash it raises ``ValidationError``
        naming ``request_id``. Another tenant's request_ids are unknown here. ``admit`` (not
        asked for a replay) may refuse the submission: its error is raised and nothing is
        stored."""
        ...

    def get(self, workload_id: str) -> Workload:
        """Raises NotFoundError."""
        ...

    def list_workloads(
        self, tenant: str, states: Sequence[WorkloadState], after: int, limit: int
    ) -> Page:
        """Workloads in submission order, after position ``after`` (0: from the start)."""
        ...

    def cancel(self, workload_id: str, now: datetime) -> StateChange:
        """PENDING or PLACED -> CANCELLED. Already CANCELLED: unchanged (changed=False).
        COMPLETED or UNSCHEDULABLE: PreconditionError. Unknown: NotFoundError."""
        ...

    def commit_cycle(self, cycle: CycleCommit) -> CycleOutcome: ...

    def replan(
        self, replan: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]]
    ) -> tuple[Workload, ...]:
        """New placements (and hourly cost) for PLACED workloads that have not started: each
        entry is the workload as the caller has it, its new placements and cost. Returns the
        workloads changed (those still PLACED), as they are now."""
        ...

    def move(
        self,
        moves: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]],
        now: datetime,
    ) -> tuple[Workload, ...]:
        """New placements (and hourly cost) for running PLACED workloads (replicas moved off
        drained nodes): as ``replan``, and each workload changed gets an event (PLACED ->
        PLACED) so that watchers see the move. Returns the workloads changed, as they are now."""
        ...

    def preempt(self, displacements: Sequence[Displacement], now: datetime) -> PreemptionOutcome:
        """Commit preemptions in one transaction: each preemptor still PENDING becomes PLACED
        (event PENDING -> PLACED); each of its victims still PLACED gets an event in state
        PREEMPTED (reason naming the preemptor), then one back to PENDING without placements
        (its capacity released), and a ``PreemptionRecord``. A preemptor no longer PENDING is
        skipped with its victims."""
        ...

    def preemptions_since(self, since: datetime) -> tuple[PreemptionRecord, ...]:
        """The preemptions committed at ``since`` or later, oldest first."""
        ...

    def preemptions_of(self, workload_id: str, limit: int = 20) -> tuple[PreemptionRecord, ...]:
        """The last ``limit`` preemptions ``workload_id`` took part in (as the displaced one
        or as the preemptor), oldest first."""
        ...

    def complete(self, workloads: Sequence[Workload], now: datetime) -> tuple[StateChange, ...]:
        """PLACED -> COMPLETED for those still PLACED; the others are left out of the result."""
        ...

    def active_workloads(self) -> tuple[Workload, ...]:
        """Every PENDING and PLACED workload (with placements), in submission order: what a
        restarted loop resumes from."""
        ...

    def counts(self) -> StateCounts: ...

    def pending_reason_codes(self) -> dict[str, str]:
        """Reason code of every PENDING workload that has been tried."""
        ...

    def subscribe(self) -> Subscription:
        """Events committed from now on, in commit order."""
        ...

    def set_cordoned(self, nodes: Sequence[str], cordoned: bool, now: datetime) -> None:
        """Cordon ``nodes`` (they take no new replicas) or, with ``cordoned`` False, uncordon
        them; durable like every commit."""
        ...

    def cordoned_nodes(self) -> frozenset[str]:
        """The nodes cordoned now."""
        ...

    def held_by(self, tenants: Collection[str]) -> dict[str, Resources]:
        """What each of ``tenants``' PENDING and PLACED workloads hold now (resources x
        replicas; whole GPUs as ``gpu_millis``, 1000 each): the amounts quotas count."""
        ...

    def close(self) -> None: ...
