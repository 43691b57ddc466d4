"""The store logic both SQL implementations share; each supplies connections and a dialect.

``SqlStore`` runs every operation of the ``Store`` protocol in one transaction
(``transactions``): submissions through a group commit (``submissions``), a scheduling cycle's
writes (``cycle``), reads (``queries``), all over the rows of ``rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from scheduler.domain import (
    Cost,
    ReplicaPlacement,
    Resources,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from scheduler.store import preemptions, queries
from scheduler.store.base import (
    Admit,
    CycleCommit,
    CycleOutcome,
    Displacement,
    NotFoundError,
    Page,
    PreconditionError,
    PreemptionOutcome,
    PreemptionRecord,
    StateChange,
    StateCounts,
    Submitted,
)
from scheduler.store.codec import epoch
from scheduler.store.connection import Conn, Dialect, Row, ThreadReaders
from scheduler.store.cycle import check_term, commit_cycle, commit_replan
from scheduler.store.events import Subscription
from scheduler.store.migrations import migrate
from scheduler.store.rows import PLACED, changed, load, states
from scheduler.store.submissions import GroupCommit, Submission
from scheduler.store.transactions import Transactions

if TYPE_CHECKING:
    from scheduler.store.leadership import Lease

# the names the SQLite and PostgreSQL stores build on
__all__ = ["Conn", "Dialect", "Row", "SqlStore", "ThreadReaders", "migrate"]


class SqlStore:
    """A ``Store`` over any SQL database that a ``Conn`` adapts."""

    def __init__(
        self,
        url: str,
        writer: Conn,
        reader: Callable[[], Conn],
        dialect: Dialect,
        release_reader: Callable[[Conn], None] | None = None,
    ) -> None:
        self.url = url
        self._writer = writer
        self._dialect = dialect
        self._tx = Transactions(writer, reader, dialect, release_reader)
        self._group = GroupCommit(self._tx, dialect.for_update, dialect.tenant_lock)

    # ------------------------------------------------------------------ the Store protocol

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
        if tenant is None:
            tenant = specs[0].tenant if specs else ""
        return self._group.submit(Submission(tenant, request_id, request_hash, specs, now, admit))

    def get(self, workload_id: str) -> Workload:
        found = self._tx.reading(lambda conn: load(conn, [workload_id]))
        if workload_id not in found:
            raise NotFoundError(workload_id)
        return found[workload_id]

    def list_workloads(
        self, tenant: str, states: Sequence[WorkloadState], after: int, limit: int
    ) -> Page:
        return self._tx.reading(lambda conn: queries.page(conn, tenant, states, after, limit))

    def cancel(self, workload_id: str, now: datetime) -> StateChange:
        with self._tx.write() as tx:
            found = load(tx.conn, [workload_id], self._dialect.for_update)
            if workload_id not in found:
                raise NotFoundError(workload_id)
            w = found[workload_id]
            if w.state == WorkloadState.CANCELLED:
                return StateChange(w, w.state, changed=False)
            if w.state in (WorkloadState.COMPLETED, WorkloadState.UNSCHEDULABLE):
                raise PreconditionError(
                    f"workload {workload_id!r} is {w.state.name}; only PENDING or PLACED "
                    "workloads can be cancelled"
                )
            tx.conn.execute(
                "UPDATE workloads SET state = ?, finished_at = ? WHERE id = ?",
                (int(WorkloadState.CANCELLED), epoch(now), workload_id),
            )
            after = changed(w, state=WorkloadState.CANCELLED)
            tx.event(after, w.state, now)
        return StateChange(after, w.state)

    def set_cordoned(self, nodes: Sequence[str], cordoned: bool, now: datetime) -> None:
        with self._tx.write() as tx:
            if cordoned:
                tx.conn.executemany(
                    "INSERT INTO cordons (node, since) VALUES (?, ?) ON CONFLICT (node) DO NOTHING",
                    [(n, epoch(now)) for n in nodes],
                )
            else:
                tx.conn.executemany("DELETE FROM cordons WHERE node = ?", [(n,) for n in nodes])

    def cordoned_nodes(self) -> frozenset[str]:
        rows = self._tx.reading(lambda conn: conn.query("SELECT node FROM cordons"))
        return frozenset(str(r[0]) for r in rows)

    def held_by(self, tenants: Collection[str]) -> dict[str, Resources]:
        return self._tx.reading(lambda conn: {t: queries.held(conn, t) for t in tenants})

    def commit_cycle(self, cycle: CycleCommit, term: int | None = None) -> CycleOutcome:
        """See ``Store.commit_cycle``; with a leader ``term``, refused (``NotLeaderError``)
        unless it is still the database's term."""
        return commit_cycle(self._tx, self._dialect.for_update, cycle, term)

    def replan(
        self,
        replan: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]],
        term: int | None = None,
    ) -> tuple[Workload, ...]:
        """See ``Store.replan``; ``term`` as for ``commit_cycle``."""
        return commit_replan(self._tx, self._dialect.for_update, replan, term)

    def move(
        self,
        moves: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]],
        now: datetime,
        term: int | None = None,
    ) -> tuple[Workload, ...]:
        """See ``Store.move``; ``term`` as for ``commit_cycle``."""
        return commit_replan(self._tx, self._dialect.for_update, moves, term, moved_at=now)

    def preempt(
        self, displacements: Sequence[Displacement], now: datetime, term: int | None = None
    ) -> PreemptionOutcome:
        """See ``Store.preempt``; ``term`` as for ``commit_cycle``."""
        return preemptions.commit_preemptions(
            self._tx, self._dialect.for_update, displacements, now, term
        )

    def preemptions_since(self, since: datetime) -> tuple[PreemptionRecord, ...]:
        return self._tx.reading(lambda conn: preemptions.preemptions_since(conn, since))

    def preemptions_of(self, workload_id: str, limit: int = 20) -> tuple[PreemptionRecord, ...]:
        return self._tx.reading(lambda conn: preemptions.preemptions_of(conn, workload_id, limit))

    def complete(
        self, workloads: Sequence[Workload], now: datetime, term: int | None = None
    ) -> tuple[StateChange, ...]:
        """See ``Store.complete``; ``term`` as for ``commit_cycle``."""
        if not workloads:
            return ()
        out: list[StateChange] = []
        with self._tx.write() as tx:
            check_term(tx.conn, term)
            found = states(tx.conn, [w.id for w in workloads], self._dialect.for_update)
            rows = []
            for w in workloads:
                if found.get(w.id) != PLACED:
                    continue
                after = changed(w, state=WorkloadState.COMPLETED)
                rows.append((int(after.state), epoch(now), w.id))
                tx.event(after, WorkloadState.PLACED, now)
                out.append(StateChange(after, WorkloadState.PLACED))
            if rows:
                tx.conn.executemany(
                    "UPDATE workloads SET state = ?, finished_at = ? WHERE id = ?", rows
                )
        return tuple(out)

    def active_workloads(self) -> tuple[Workload, ...]:
        return self._tx.reading(queries.active)

    def active_as_of(self) -> tuple[tuple[Workload, ...], int]:
        """``active_workloads`` and the sequence number of the last event they reflect (read
        in one transaction): a loop that loads them takes the events after it."""

        def read(conn: Conn) -> tuple[tuple[Workload, ...], int]:
            return queries.active(conn), queries.last_sequence(conn)

        return self._tx.reading(read)

    def counts(self) -> StateCounts:
        return self._tx.reading(queries.counts)

    def pending_reason_codes(self) -> dict[str, str]:
        return self._tx.reading(queries.pending_reason_codes)

    def ping(self) -> None:
        """Raise ``StoreError`` unless the database answers now (once, no retries)."""
        self._tx.reading(lambda conn: conn.query("SELECT 1"), attempts=1)

    def leader_lease(self, holder: str) -> Lease:
        """What makes this server the one that runs the scheduling loop (``leadership``)."""
        raise NotImplementedError

    @property
    def shared(self) -> bool:
        """Several servers may use this database at once (PostgreSQL)."""
        return self._dialect.shared

    def subscribe(self) -> Subscription:
        return self._tx.hub.subscribe()

    def close_watchers(self) -> None:
        """End every open subscription (a draining server lets its watch streams finish)."""
        self._tx.hub.close()

    def close(self) -> None:
        self._tx.close(self._close_connections)

    def _close_connections(self) -> None:
        self._writer.close()
