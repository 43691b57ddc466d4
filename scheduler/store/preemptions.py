"""Preemptions in the SQL store: their commit (the preemptors placed, their victims back to
PENDING, every event and the history row in one transaction) and the reads of that history."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scheduler.domain import Cost, ReasonCode, Workload, WorkloadState
from scheduler.store.base import (
    CycleCommit,
    Displacement,
    PreemptionOutcome,
    PreemptionRecord,
)
from scheduler.store.codec import epoch, instant
from scheduler.store.connection import Conn, Row
from scheduler.store.cycle import check_term, entries_of, write_entries
from scheduler.store.rows import PENDING, PLACED, changed, states
from scheduler.store.transactions import Transactions

_COLUMNS = "workload_id, preemptor_id, preemptor_priority, priority, site, time"


def preempted_reason(preemptor: Workload) -> str:
    """The reason a displaced workload carries: who preempted it (id and priority)."""
    return (
        f"preempted by {preemptor.id} (priority {preemptor.spec.priority}); "
        "pending until there is room"
    )


def commit_preemptions(
    transactions: Transactions,
    for_update: str,
    displacements: Sequence[Displacement],
    now: datetime,
    term: int | None = None,
) -> PreemptionOutcome:
    """See ``Store.preempt``; with a leader ``term``, fenced (``check_term``)."""
    if not displacements:
        return PreemptionOutcome()
    ids = [d.preemptor.id for d in displacements] + [v.id for d in displacements for v in d.victims]
    t = epoch(now)
    placed: list[Workload] = []
    preempted: list[tuple[Workload, str]] = []
    gone: set[str] = set()
    skipped: set[str] = set()
    with transactions.write() as tx:
        check_term(tx.conn, term)
        found = states(tx.conn, ids, for_update)
        history: list[tuple[Any, ...]] = []
        for d in displacements:
            p = d.preemptor
            if found.get(p.id) != PENDING:
                skipped.add(p.id)  # cancelled meanwhile: its victims stay
                continue
            reason = preempted_reason(p)
            for v in d.victims:
                if found.get(v.id) != PLACED:
                    gone.add(v.id)
                    continue
                tx.conn.execute("DELETE FROM placements WHERE workload_id = ?", (v.id,))
                tx.conn.execute(
                    "UPDATE workloads SET state = ?, reason = ?, reason_code = ?, "
                    "placed_at = NULL, energy_cny_per_hour = 0, carbon_kg_per_hour = 0, "
                    "power_watts = 0 "
                    "WHERE id = ?",
                    (PENDING, reason, ReasonCode.PRIORITY.value, v.id),
                )
                out = changed(v, placements=(), reason=reason, placed_at=None, cost=Cost())
                tx.event(changed(out, state=WorkloadState.PREEMPTED), WorkloadState.PLACED, now)
                back = changed(out, state=WorkloadState.PENDING)
                tx.event(back, WorkloadState.PREEMPTED, now)
                preempted.append((back, p.id))
                site = v.placements[0].site if v.placements else ""
                history.append((v.id, p.id, p.spec.priority, v.spec.priority, site, t))
            cycle = CycleCommit({p.id: p}, {p.id: (d.placements, d.cost)}, {}, {}, now)
            entries = entries_of(cycle, now)
            write_entries(tx, entries, now)
            placed += [e[0] for e in entries]
        if history:
            tx.conn.executemany(
                f"INSERT INTO preemptions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", history
            )
    return PreemptionOutcome(tuple(placed), tuple(preempted), frozenset(gone), frozenset(skipped))


def preemptions_since(conn: Conn, since: datetime) -> tuple[PreemptionRecord, ...]:
    rows = conn.query(
        f"SELECT {_COLUMNS} FROM preemptions WHERE time >= ? ORDER BY id", (epoch(since),)
    )
    return tuple(_record(r) for r in rows)


def preemptions_of(conn: Conn, workload_id: str, limit: int) -> tuple[PreemptionRecord, ...]:
    rows = conn.query(
        f"SELECT id, {_COLUMNS} FROM preemptions WHERE workload_id = ? "
        f"UNION ALL SELECT id, {_COLUMNS} FROM preemptions WHERE preemptor_id = ? "
        "ORDER BY id DESC LIMIT ?",
        (workload_id, workload_id, limit),
    )
    return tuple(_record(r[1:]) for r in reversed(rows))


def _record(r: Row) -> PreemptionRecord:
    when = instant(r[5])
    assert when is not None
    return PreemptionRecord(str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]), when)
