"""New workloads: ids, rows, and the group commit that writes concurrent submissions in one
transaction.

Submissions that arrive while another one is being written wait, and the first of them then
writes them all in one transaction (one fsync). Each call returns only after the commit that
holds its rows, or raises what that commit raised.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from scheduler.domain import (
    Resources,
    ValidationError,
    Workload,
    WorkloadSpec,
    WorkloadState,
    shorten,
)
from scheduler.store.base import Admit, StoreError, Submitted
from scheduler.store.codec import epoch, spec_to_json
from scheduler.store.queries import held
from scheduler.store.rows import PENDING, load
from scheduler.store.transactions import Transactions, Tx

# request_ids written by one transaction, by (tenant, request_id): (hash, workloads)
Written = dict[tuple[str, str], tuple[str, tuple[Workload, ...]]]


def new_workload_ids(n: int) -> list[str]:
    """``n`` new ids: ``w-``, the milliseconds since the epoch (11 hex digits), then 80 random
    bits (20 hex digits, from one call to the OS for all ``n``). Ids made later sort later, so
    the database inserts them at the end of its id indexes: random ids would each land on
    another index page, and every commit would write back a page per workload."""
    prefix = f"w-{time.time_ns() // 1_000_000:011x}"
    digits = os.urandom(10 * n).hex()
    return [prefix + digits[i : i + 20] for i in range(0, 20 * n, 20)]


class Submission:
    """One ``submit`` call waiting for the group commit that writes it."""

    __slots__ = (
        "admit",
        "error",
        "finished",
        "now",
        "prepared",
        "request_hash",
        "request_id",
        "result",
        "tenant",
        "wake",
    )

    def __init__(
        self,
        tenant: str,
        request_id: str,
        request_hash: str,
        specs: Sequence[WorkloadSpec],
        now: datetime,
        admit: Admit | None = None,
    ) -> None:
        self.tenant = tenant  # whose request_id it is
        self.admit = admit
        self.request_id = request_id
        self.request_hash = request_hash
        self.now = now
        self.prepared = _prepare(specs, now)  # the new workloads and their rows, before any lock
        self.wake = threading.Event()  # finished, or our turn to write the queue
        self.finished = False
        self.result: Submitted | None = None
        self.error: BaseException | None = None


def _prepare(
    specs: Sequence[WorkloadSpec], now: datetime
) -> list[tuple[Workload, tuple[Any, ...]]]:
    """New PENDING workloads for ``specs`` with their ``workloads`` rows (ids, spec JSON)."""
    pending = WorkloadState.PENDING
    t = epoch(now)
    out = []
    for wid, s in zip(new_workload_ids(len(specs)), specs, strict=True):
        r, k = s.resources, s.replicas
        row = (wid, s.tenant, PENDING, spec_to_json(s), t)
        held = (r.cpu_millis * k, r.memory_mib * k, r.gpu_demand_millis * k)
        out.append((Workload(wid, s, pending, (), "", now), row + held))
    return out


class GroupCommit:
    """Writes submissions through ``transactions``, those that wait for a write together;
    ``for_update`` is the dialect's row lock, ``tenant_lock`` its lock of a tenant's quota."""

    def __init__(self, transactions: Transactions, for_update: str, tenant_lock: str = "") -> None:
        self._transactions = transactions
        self._for_update = for_update
        self._tenant_lock = tenant_lock
        self._lock = threading.Lock()
        self._queue: list[Submission] = []
        self._leading = False

    def submit(self, job: Submission) -> Submitted:
        """Write ``job`` (alone or with others); its result, or raises its error."""
        with self._lock:
            self._queue.append(job)
            lead = not self._leading
            self._leading = True
        if not lead:
            job.wake.wait()
        if not job.finished:  # our turn to write: everything queued so far
            with self._lock:
                batch, self._queue = self._queue, []
            try:
                self._write(batch)
            finally:
                with self._lock:
                    if self._queue:
                        nxt = self._queue[0]  # written by the next one, with what came meanwhile
                        nxt.wake.set()
                    else:
                        self._leading = False
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _write(self, batch: list[Submission]) -> None:
        """One transaction for the submissions of ``batch``, in order; sets each one's result
        or error and wakes the waiting ones (all but the caller's own)."""
        try:
            with self._transactions.write() as tx:
                results = self._insert(tx, batch)
            for job, result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    job.error = result
                else:
                    job.result = result
        except BaseException as e:
            for job in batch:
                job.error = e if job is batch[0] else _shared_error(e)
            raise
        finally:
            for job in batch:
                job.finished = True
                job.wake.set()

    def _insert(self, tx: Tx, batch: Sequence[Submission]) -> list[Submitted | Exception]:
        results: list[Submitted | Exception] = []
        rows: list[tuple[Any, ...]] = []
        request_rows: list[tuple[Any, ...]] = []
        written: Written = {}
        event = tx.event
        checked = [job for job in batch if job.admit is not None]
        holdings = _Holdings(tx, self._tenant_lock, checked) if checked else None
        for job in batch:
            if job.request_id:
                replay = self._replay(tx, job, written)
                if replay is not None:
                    results.append(replay)
                    continue
            if holdings is not None:
                refused = holdings.admit(job)
                if refused is not None:
                    results.append(refused)
                    continue
            created = tuple(w for w, _ in job.prepared)
            rows.extend(row for _, row in job.prepared)
            for w in created:
                event(w, WorkloadState.UNSPECIFIED, job.now)
            if job.request_id:
                written[job.tenant, job.request_id] = (job.request_hash, created)
                request_rows.append(
                    (
                        job.tenant,
                        job.request_id,
                        job.request_hash,
                        json.dumps([w.id for w in created]),
                        epoch(job.now),
                    )
                )
            results.append(Submitted(created, created=True))
        if rows:
            tx.conn.executemany(
                "INSERT INTO workloads (id, tenant, state, spec, reason, reason_code, created_at, "
                "held_cpu_millis, held_memory_mib, held_gpu_millis) "
                "VALUES (?, ?, ?, ?, '', '', ?, ?, ?, ?)",
                rows,
            )
        if request_rows:
            tx.conn.executemany(
                "INSERT INTO requests (tenant, request_id, request_hash, workload_ids, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                request_rows,
            )
        return results

    def _replay(
        self, tx: Tx, job: Submission, written: Written
    ) -> Submitted | ValidationError | None:
        """The answer to a known request_id (a replay, or the error of a reuse), or None."""
        key = (job.tenant, job.request_id)
        if key in written:
            known_hash, workloads = written[key]
        else:
            known = tx.conn.query(
                "SELECT request_hash, workload_ids FROM requests "
                "WHERE tenant = ? AND request_id = ?" + self._for_update,
                key,
            )
            if not known:
                return None
            known_hash = known[0][0]
            ids = json.loads(known[0][1])
            found = load(tx.conn, ids) if known_hash == job.request_hash else {}
            workloads = tuple(found[i] for i in ids if i in found)
        if known_hash != job.request_hash:
            return ValidationError(
                "request_id",
                f"{shorten(job.request_id)!r} was already used for a different request",
            )
        return Submitted(workloads, created=False)


class _Holdings:
    """What tenants hold in one group commit's transaction: the committed PENDING and PLACED
    workloads (read once per tenant) plus the submissions admitted before in the same
    transaction, whose rows are not inserted yet. With a ``tenant_lock``, the tenants of the
    ``checked`` jobs are locked first, all at once in one order (no two servers wait on each
    other's), before any holding is read."""

    def __init__(self, tx: Tx, tenant_lock: str, checked: Sequence[Submission]) -> None:
        self._tx = tx
        self._held: dict[str, Resources] = {}
        if tenant_lock:
            tenants = {w.spec.tenant for job in checked for w, _ in job.prepared}
            for tenant in sorted(tenants):
                tx.conn.query(tenant_lock, (tenant,))

    def admit(self, job: Submission) -> Exception | None:
        """``job.admit``'s answer; an admitted job's resources count for the jobs after it."""
        added: dict[str, Resources] = {}
        for w, _ in job.prepared:
            total = w.spec.resources.scaled(w.spec.replicas)
            t = w.spec.tenant
            added[t] = added[t] + total if t in added else total
        for t in added:
            if t not in self._held:
                self._held[t] = held(self._tx.conn, t)
        if job.admit is not None:
            refused = job.admit({t: self._held[t] for t in added})
            if refused is not None:
                return refused
        for t, r in added.items():
            self._held[t] = self._held[t] + r
        return None


def _shared_error(e: BaseException) -> BaseException:
    """The error of a group commit as each of the other submissions in it raises it."""
    if isinstance(e, StoreError):
        return StoreError(str(e))
    return StoreError(f"the commit of this submission failed: {type(e).__name__}: {e}")
