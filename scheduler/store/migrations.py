"""Schema versions. Each migration runs once, in order, in its own transaction; the version
reached is recorded in ``schema_version``. Never edit a released migration: add the next one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sqlite: tuple[str, ...]
    postgresql: tuple[str, ...]


_SQLITE = {"{REAL}": "REAL", "{SERIAL}": "INTEGER PRIMARY KEY AUTOINCREMENT"}
_POSTGRESQL = {
    "{REAL}": "DOUBLE PRECISION",
    "{SERIAL}": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}


def _dialect(statement: str, words: dict[str, str]) -> str:
    for k, v in words.items():
        statement = statement.replace(k, v)
    return statement


def _both(*statements: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The same DDL for both databases; ``{REAL}`` and ``{SERIAL}`` are spelled per dialect."""
    return (
        tuple(_dialect(s, _SQLITE) for s in statements),
        tuple(_dialect(s, _POSTGRESQL) for s in statements),
    )


_V1 = _both(
    """CREATE TABLE workloads (
        ord {SERIAL},
        id TEXT NOT NULL UNIQUE,
        tenant TEXT NOT NULL,
        state INTEGER NOT NULL,
        spec TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        reason_code TEXT NOT NULL DEFAULT '',
        created_at {REAL} NOT NULL,
        placed_at {REAL},
        finished_at {REAL},
        energy_cny_per_hour {REAL} NOT NULL DEFAULT 0,
        carbon_kg_per_hour {REAL} NOT NULL DEFAULT 0,
        power_watts {REAL} NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX workloads_by_tenant ON workloads (tenant, ord)",
    "CREATE INDEX workloads_by_state ON workloads (state, ord)",
    """CREATE TABLE placements (
        workload_id TEXT NOT NULL,
        replica INTEGER NOT NULL,
        site TEXT NOT NULL,
        node TEXT NOT NULL,
        latency_ms {REAL} NOT NULL,
        gpu_indices TEXT NOT NULL DEFAULT '',
        start_time {REAL},
        PRIMARY KEY (workload_id, replica)
    )""",
    """CREATE TABLE events (
        seq BIGINT PRIMARY KEY,
        workload_id TEXT NOT NULL,
        tenant TEXT NOT NULL,
        state INTEGER NOT NULL,
        previous_state INTEGER NOT NULL,
        time {REAL} NOT NULL
    )""",
    """CREATE TABLE requests (
        request_id TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL,
        workload_ids TEXT NOT NULL,
        created_at {REAL} NOT NULL
    )""",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "workloads, placements, events, requests", _V1[0], _V1[1]),
)

LATEST = MIGRATIONS[-1].version
