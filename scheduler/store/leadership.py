"""Leadership: which server runs the scheduling loop, and the fencing of its commits.

Every server serves the API; one, the leader, runs the loop. It holds a ``Lease`` (PostgreSQL:
a session-level advisory lock on a connection of its own; SQLite: an exclusive lock on a file
beside the database, as SQLite serves one process) and, when it takes it, a new term from the
``leadership`` row. Its placement commits name that term (``FencedStore``) and the database
refuses them once a later term has begun, so a deposed leader's late commit cannot land
whatever the timing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from scheduler.domain import (
    Cost,
    ReplicaPlacement,
    Resources,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.store.base import (
    Admit,
    CycleCommit,
    CycleOutcome,
    Displacement,
    Page,
    PreemptionOutcome,
    PreemptionRecord,
    StateChange,
    StateCounts,
    Submitted,
)
from scheduler.store.events import Subscription
from scheduler.store.sql import SqlStore


class Lease(Protocol):
    """The right to run the scheduling loop, held by at most one server at a time."""

    def try_acquire(self) -> int | None:
        """Take the lease if nobody holds it: the new leader term, or None."""
        ...

    def held(self) -> bool:
        """Whether the lease is still ours (checked against the database); False once lost."""
        ...

    def release(self) -> None:
        """Give the lease up (idempotent)."""
        ...


class FencedStore:
    """``store`` as the leader of ``term`` uses it: its cycle commits and completions are
    refused once the term is over; ``as_of`` is the last event its ``active_workloads``
    reflect (events after it are new to a loop that loaded them)."""

    def __init__(self, store: SqlStore, term: int | None) -> None:
        self._store = store
        self.term = term
        self.url = store.url
        self.as_of = 0

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
        return self._store.submit(request_id, request_hash, specs, now, tenant=tenant, admit=admit)

    def get(self, workload_id: str) -> Workload:
        return self._store.get(workload_id)

    def list_workloads(
        self, tenant: str, states: Sequence[WorkloadState], after: int, limit: int
    ) -> Page:
        return self._store.list_workloads(tenant, states, after, limit)

    def cancel(self, workload_id: str, now: datetime) -> StateChange:
        return self._store.cancel(workload_id, now)

    def commit_cycle(self, cycle: CycleCommit) -> CycleOutcome:
        return self._store.commit_cycle(cycle, self.term)

    def replan(
        self, replan: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]]
    ) -> tuple[Workload, ...]:
        return self._store.replan(replan, self.term)

    def move(
        self,
        moves: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]],
        now: datetime,
    ) -> tuple[Workload, ...]:
        return self._store.move(moves, now, self.term)

    def preempt(self, displacements: Sequence[Displacement], now: datetime) -> PreemptionOutcome:
        return self._store.preempt(displacements, now, self.term)

    def preemptions_since(self, since: datetime) -> tuple[PreemptionRecord, ...]:
        return self._store.preemptions_since(since)

    def preemptions_of(self, workload_id: str, limit: int = 20) -> tuple[PreemptionRecord, ...]:
        return self._store.preemptions_of(workload_id, limit)

    def complete(self, workloads: Sequence[Workload], now: datetime) -> tuple[StateChange, ...]:
        return self._store.complete(workloads, now, self.term)

    def active_workloads(self) -> tuple[Workload, ...]:
        active, self.as_of = self._store.active_as_of()
        return active

    def counts(self) -> StateCounts:
        return self._store.counts()

    def pending_reason_codes(self) -> dict[str, str]:
        return self._store.pending_reason_codes()

    def subscribe(self) -> Subscription:
        return self._store.subscribe()

    def set_cordoned(self, nodes: Sequence[str], cordoned: bool, now: datetime) -> None:
        self._store.set_cordoned(nodes, cordoned, now)

    def cordoned_nodes(self) -> frozenset[str]:
        return self._store.cordoned_nodes()

    def held_by(self, tenants: Collection[str]) -> dict[str, Resources]:
        return self._store.held_by(tenants)

    def close(self) -> None:
        """The store is the server's, not the term's: left open."""
