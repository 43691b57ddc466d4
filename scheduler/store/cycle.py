"""A scheduling cycle's commit: placements, state changes and events in one transaction.

Everything the cycle writes is built before taking the write lock, which submissions wait for;
under it, only the check that each workload is still PENDING, the writes and the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from scheduler.domain import Cost, ReplicaPlacement, Workload, WorkloadState
from scheduler.store.base import CycleCommit, CycleOutcome, NotLeaderError
from scheduler.store.codec import epoch, gpus_to_text
from scheduler.store.connection import Conn
from scheduler.store.rows import PENDING, PLACED, PLACEMENT_COLUMNS, changed, states
from scheduler.store.transactions import Transactions, Tx

# One entry per workload: its state after the cycle, its row update (or None), its placement
# rows, and whether the change is an event.
Entry = tuple[Workload, tuple[Any, ...] | None, list[tuple[Any, ...]], bool]


def check_term(conn: Conn, term: int | None) -> None:
    """Fencing: raise ``NotLeaderError`` unless ``term`` (if given) is the database's leader
    term. The UPDATE locks the leadership row until the commit, so a new leader's term cannot
    begin between this check and the commit: it waits for it, then sees what it wrote."""
    if term is None:
        return
    if conn.execute("UPDATE leadership SET term = term WHERE id = 1 AND term = ?", (term,)) != 1:
        raise NotLeaderError(f"leader term {term} is over: another server leads now")


def commit_cycle(
    transactions: Transactions, for_update: str, cycle: CycleCommit, term: int | None = None
) -> CycleOutcome:
    """Write ``cycle`` through ``transactions`` (``for_update``: the dialect's row lock); the
    workloads no longer PENDING are skipped. With a leader ``term``, fenced (``check_term``)."""
    ids = list(cycle.workloads)
    if not ids:
        return CycleOutcome()
    now = cycle.now
    entries = entries_of(cycle, now)
    with transactions.write() as tx:
        check_term(tx.conn, term)
        found = states(tx.conn, ids, for_update)
        skipped = {e[0].id for e in entries if found.get(e[0].id) != PENDING}
        if skipped:  # cancelled while the cycle solved: left as they are
            entries = [e for e in entries if e[0].id not in skipped]
        write_entries(tx, entries, now)
    return _outcome(entries, skipped)


def write_entries(tx: Tx, entries: list[Entry], now: datetime) -> None:
    """Write the decisions of ``entries`` about PENDING workloads (rows, placements, events)."""
    updates = [e[1] for e in entries if e[1] is not None]
    if updates:
        tx.conn.executemany(
            "UPDATE workloads SET state = ?, reason = ?, reason_code = ?, placed_at = ?, "
            "energy_cny_per_hour = ?, carbon_kg_per_hour = ?, power_watts = ? "
            "WHERE id = ?",
            updates,
        )
    placement_rows = [row for e in entries for row in e[2]]
    if placement_rows:
        tx.conn.executemany(
            f"INSERT INTO placements ({PLACEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (workload_id, replica) DO UPDATE SET site = excluded.site, "
            "node = excluded.node, latency_ms = excluded.latency_ms, "
            "gpu_indices = excluded.gpu_indices, start_time = excluded.start_time",
            placement_rows,
        )
    event = tx.event
    for w, _, _, is_event in entries:
        if is_event:
            event(w, WorkloadState.PENDING, now)


def placement_rows(wid: str, reps: tuple[ReplicaPlacement, ...]) -> list[tuple[Any, ...]]:
    """The ``placements`` rows of a workload's replicas (``PLACEMENT_COLUMNS``)."""
    return [
        (
            wid,
            p.replica,
            p.site,
            p.node,
            p.latency_ms,
            gpus_to_text(p.gpu_indices),
            epoch(p.start_time),
        )
        for p in reps
    ]


def commit_replan(
    transactions: Transactions,
    for_update: str,
    replan: Mapping[str, tuple[Workload, tuple[ReplicaPlacement, ...], Cost]],
    term: int | None = None,
    moved_at: datetime | None = None,
) -> tuple[Workload, ...]:
    """New placements for PLACED workloads (reservations planned again, or running replicas
    moved); those no longer PLACED are left out. With ``moved_at``, each one changed gets an
    event (PLACED -> PLACED: watchers see the move); without, none (a plan changed)."""
    if not replan:
        return ()
    out: list[Workload] = []
    with transactions.write() as tx:
        check_term(tx.conn, term)
        found = states(tx.conn, list(replan), for_update)
        rows: list[tuple[Any, ...]] = []
        updates = []
        for wid, (w, reps, cost) in replan.items():
            if found.get(wid) != PLACED:
                continue
            tx.conn.execute("DELETE FROM placements WHERE workload_id = ?", (wid,))
            rows += placement_rows(wid, reps)
            updates.append(
                (cost.energy_cny_per_hour, cost.carbon_kg_per_hour, cost.power_watts, wid)
            )
            after = changed(w, placements=reps, cost=cost)
            out.append(after)
            if moved_at is not None:
                tx.event(after, WorkloadState.PLACED, moved_at)
        if rows:
            tx.conn.executemany(
                f"INSERT INTO placements ({PLACEMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
            tx.conn.executemany(
                "UPDATE workloads SET energy_cny_per_hour = ?, carbon_kg_per_hour = ?, "
                "power_watts = ? WHERE id = ?",
                updates,
            )
    return tuple(out)


def _outcome(entries: list[Entry], skipped: set[str]) -> CycleOutcome:
    by_state: dict[WorkloadState, list[Workload]] = {
        WorkloadState.PLACED: [],
        WorkloadState.UNSCHEDULABLE: [],
        WorkloadState.PENDING: [],
    }
    for w, _, _, _ in entries:
        by_state[w.state].append(w)
    return CycleOutcome(
        tuple(by_state[WorkloadState.PLACED]),
        tuple(by_state[WorkloadState.UNSCHEDULABLE]),
        tuple(by_state[WorkloadState.PENDING]),
        frozenset(skipped),
    )


def entries_of(cycle: CycleCommit, now: datetime) -> list[Entry]:
    """The writes of a cycle, placed workloads first, then unschedulable, then pending."""
    t = epoch(now)
    source = cycle.workloads
    placed_state = WorkloadState.PLACED
    entries: list[Entry] = []
    for wid, (given, cost) in cycle.placed.items():
        # a reservation keeps the start the solver gave it; all else starts now
        reps = tuple(
            ReplicaPlacement(
                p.replica, p.site, p.node, p.latency_ms, p.gpu_indices, p.start_time or now
            )
            for p in given
        )
        src = source[wid]
        w = Workload(wid, src.spec, placed_state, reps, "", src.created_at, now, cost)
        update = (
            PLACED,
            "",
            "",
            t,
            cost.energy_cny_per_hour,
            cost.carbon_kg_per_hour,
            cost.power_watts,
            wid,
        )
        entries.append((w, update, placement_rows(wid, reps), True))
    for wid, unfit in cycle.unschedulable.items():
        w = changed(source[wid], state=WorkloadState.UNSCHEDULABLE, reason=unfit.message)
        update = (int(w.state), unfit.message, unfit.code, None, 0.0, 0.0, 0.0, wid)
        entries.append((w, update, [], True))
    for wid, unfit in cycle.pending.items():
        w = source[wid]
        if w.reason == unfit.message:
            entries.append((w, None, [], False))
            continue
        w = changed(w, reason=unfit.message)
        update = (int(w.state), unfit.message, unfit.code, None, 0.0, 0.0, 0.0, wid)
        entries.append((w, update, [], False))
    return entries
