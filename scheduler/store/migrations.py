"""Schema versions. Each migration runs once, in order, in its own transaction; the version
reached is recorded in ``schema_version``. Never edit a released migration: add the next one."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from scheduler.store.base import StoreError
from scheduler.store.connection import Conn

log = logging.getLogger(__name__)


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

# request_ids scoped per tenant: the key becomes (tenant, request_id). A request recorded before
# belongs to the tenant of its first workload (every request then had one tenant in practice;
# one without workloads to the empty tenant). The first id is read from the JSON list per dialect.
_V2_TABLE = """CREATE TABLE requests_v2 (
        tenant TEXT NOT NULL,
        request_id TEXT NOT NULL,
        request_hash TEXT NOT NULL,
        workload_ids TEXT NOT NULL,
        created_at {REAL} NOT NULL,
        PRIMARY KEY (tenant, request_id)
    )"""
_V2_COPY = """INSERT INTO requests_v2 (tenant, request_id, request_hash, workload_ids, created_at)
    SELECT COALESCE((SELECT w.tenant FROM workloads w WHERE w.id = {FIRST_ID}), ''),
        r.request_id, r.request_hash, r.workload_ids, r.created_at
    FROM requests r"""
_V2_SWAP = ("DROP TABLE requests", "ALTER TABLE requests_v2 RENAME TO requests")
_V2 = (
    (
        _dialect(_V2_TABLE, _SQLITE),
        _V2_COPY.replace("{FIRST_ID}", "json_extract(r.workload_ids, '$[0]')"),
        *_V2_SWAP,
    ),
    (
        _dialect(_V2_TABLE, _POSTGRESQL),
        _V2_COPY.replace("{FIRST_ID}", "(r.workload_ids::json ->> 0)"),
        *_V2_SWAP,
    ),
)

# Version 3: what several servers on one database share. ``event_sequence`` numbers the events
# (a transaction takes its numbers with an UPDATE of this one row just before it commits, so the
# row lock orders the commits that write events: sequence order is commit order, without gaps);
# ``leadership`` holds the term of the server that runs the scheduling loop, which its placement
# commits check (a deposed leader's late commit names an old term and is refused).
_V3 = _both(
    "CREATE TABLE event_sequence (id INTEGER PRIMARY KEY, last BIGINT NOT NULL)",
    "INSERT INTO event_sequence (id, last) SELECT 1, COALESCE(MAX(seq), 0) FROM events",
    """CREATE TABLE leadership (
        id INTEGER PRIMARY KEY,
        term BIGINT NOT NULL,
        holder TEXT NOT NULL,
        since {REAL} NOT NULL
    )""",
    "INSERT INTO leadership (id, term, holder, since) VALUES (1, 0, '', 0)",
)

# Version 4: what each workload holds (resources x replicas; a whole GPU counts 1000 GPU
# millis), so that a tenant's quota is summed from an index instead of from every spec's JSON.
_HELD = ("held_cpu_millis", "held_memory_mib", "held_gpu_millis")
_V4_INDEX = "CREATE INDEX workloads_by_tenant_state ON workloads (tenant, state)"


def _v4(resource: str, replicas: str) -> tuple[str, ...]:
    """The version-4 DDL with ``resource`` ({i}: the index into the spec's resources array)
    and ``replicas`` spelled in the dialect's JSON functions."""
    r = [resource.format(i=i) for i in range(4)]
    return (
        *(f"ALTER TABLE workloads ADD COLUMN {c} BIGINT NOT NULL DEFAULT 0" for c in _HELD),
        f"UPDATE workloads SET held_cpu_millis = {r[0]} * {replicas}, "
        f"held_memory_mib = {r[1]} * {replicas}, "
        f"held_gpu_millis = ({r[2]} * 1000 + {r[3]}) * {replicas}",
        _V4_INDEX,
    )


# Version 5: nodes an operator cordoned (they take no new replicas), by name.
_V5 = _both("CREATE TABLE cordons (node TEXT PRIMARY KEY, since {REAL} NOT NULL)")

# Version 6: every preemption (who displaced whom, at which priorities, from which site, when):
# the loop's rule against preempting one workload again and again reads the last hour of it
# after a restart, and ExplainWorkload names who preempted a workload (or whom it displaced).
_V6 = _both(
    """CREATE TABLE preemptions (
        id {SERIAL},
        workload_id TEXT NOT NULL,
        preemptor_id TEXT NOT NULL,
        preemptor_priority BIGINT NOT NULL,
        priority BIGINT NOT NULL,
        site TEXT NOT NULL,
        time {REAL} NOT NULL
    )""",
    "CREATE INDEX preemptions_by_time ON preemptions (time)",
    "CREATE INDEX preemptions_by_workload ON preemptions (workload_id)",
    "CREATE INDEX preemptions_by_preemptor ON preemptions (preemptor_id)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "workloads, placements, events, requests", _V1[0], _V1[1]),
    Migration(2, "request_ids scoped per tenant", _V2[0], _V2[1]),
    Migration(3, "event sequence and leadership term in the database", _V3[0], _V3[1]),
    Migration(
        4,
        "resources held per workload, for quotas",
        _v4("json_extract(spec, '$.resources[{i}]')", "json_extract(spec, '$.replicas')"),
        _v4("((spec::jsonb)->'resources'->>{i})::bigint", "((spec::jsonb)->>'replicas')::bigint"),
    ),
    Migration(5, "cordoned nodes", _V5[0], _V5[1]),
    Migration(6, "preemptions", _V6[0], _V6[1]),
)

LATEST = MIGRATIONS[-1].version


def migrate(conn: Conn, dialect: str, lock: str = "") -> int:
    """Bring the schema to the latest version; returns the version reached. ``lock`` is a
    statement run first in each migration transaction (PostgreSQL: an advisory lock, so that
    two servers starting together do not both migrate)."""
    conn.begin_write()
    try:
        if lock:
            conn.execute(lock)
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        rows = conn.query("SELECT MAX(version) FROM schema_version")
        version = int(rows[0][0] or 0)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    if version > LATEST:
        raise StoreError(
            f"the database schema is version {version}, newer than this Valley knows ({LATEST}); "
            "upgrade Valley"
        )
    for m in MIGRATIONS:
        if m.version <= version:
            continue
        conn.begin_write()
        try:
            if lock:
                conn.execute(lock)
            current = int(conn.query("SELECT MAX(version) FROM schema_version")[0][0] or 0)
            if current < m.version:
                for statement in m.sqlite if dialect == "sqlite" else m.postgresql:
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (m.version,))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        log.info("store schema migrated to version %d (%s)", m.version, m.description)
        version = m.version
    return version
