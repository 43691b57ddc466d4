"""Reads of the SQL store, each inside a read transaction on ``conn``: pages of workloads in
submission order, the active ones, and counts by state and reason code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scheduler.domain import Resources, Workload, WorkloadState
from scheduler.store.base import Page, StateCounts
from scheduler.store.connection import Conn
from scheduler.store.rows import COLUMNS, workloads


def page(conn: Conn, tenant: str, states: Sequence[WorkloadState], after: int, limit: int) -> Page:
    """Up to ``limit`` workloads after position ``after``, of ``tenant`` and ``states`` when
    given; the page says where the next one starts (None when this is the last)."""
    where = ["ord > ?"]
    params: list[Any] = [after]
    if tenant:
        where.append("tenant = ?")
        params.append(tenant)
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        params.extend(int(s) for s in states)
    params.append(limit + 1)
    sql = f"SELECT {COLUMNS} FROM workloads WHERE {' AND '.join(where)}"
    rows = conn.query(sql + " ORDER BY ord LIMIT ?", params)
    more = len(rows) > limit
    rows = rows[:limit]
    found = workloads(conn, rows)
    return Page(tuple(found), int(rows[-1][0]) if more and rows else None)


def active(conn: Conn) -> tuple[Workload, ...]:
    """Every PENDING and PLACED workload, in submission order."""
    rows = conn.query(
        f"SELECT {COLUMNS} FROM workloads WHERE state IN (?, ?) ORDER BY ord",
        (int(WorkloadState.PENDING), int(WorkloadState.PLACED)),
    )
    return tuple(workloads(conn, rows))


def counts(conn: Conn) -> StateCounts:
    """Workloads per state, and per reason code for PENDING and UNSCHEDULABLE ones."""
    by_state: dict[WorkloadState, int] = {}
    pending: dict[str, int] = {}
    unschedulable: dict[str, int] = {}
    rows = conn.query(
        "SELECT state, reason_code, COUNT(*) FROM workloads GROUP BY state, reason_code"
    )
    for state, code, n in rows:
        s = WorkloadState(int(state))
        by_state[s] = by_state.get(s, 0) + int(n)
        if s == WorkloadState.PENDING and code:
            pending[code] = pending.get(code, 0) + int(n)
        elif s == WorkloadState.UNSCHEDULABLE and code:
            unschedulable[code] = unschedulable.get(code, 0) + int(n)
    return StateCounts(by_state, pending, unschedulable)


def pending_reason_codes(conn: Conn) -> dict[str, str]:
    """The reason code of every PENDING workload that has one."""
    rows = conn.query(
        "SELECT id, reason_code FROM workloads WHERE state = ? AND reason_code <> ''",
        (int(WorkloadState.PENDING),),
    )
    return {r[0]: r[1] for r in rows}


def last_sequence(conn: Conn) -> int:
    """The sequence number of the last event committed."""
    return int(conn.query("SELECT last FROM event_sequence WHERE id = 1")[0][0])


def held(conn: Conn, tenant: str) -> Resources:
    """What ``tenant``'s PENDING and PLACED workloads hold (resources x replicas); whole GPUs
    come as ``gpu_millis``, 1000 each."""
    rows = conn.query(
        "SELECT COALESCE(SUM(held_cpu_millis), 0), COALESCE(SUM(held_memory_mib), 0), "
        "COALESCE(SUM(held_gpu_millis), 0) FROM workloads WHERE tenant = ? AND state IN (?, ?)",
        (tenant, int(WorkloadState.PENDING), int(WorkloadState.PLACED)),
    )
    cpu, mem, gpu = rows[0]
    return Resources(int(cpu), int(mem), 0, int(gpu))
