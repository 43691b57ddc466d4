"""The scheduling loop: one thread that turns pending workloads into placements.

It wakes when work arrives or capacity is freed, waits a short batching window to gather a batch,
builds a ``Problem`` (the scenario, the cluster it keeps up to date in memory, the batch, the
scenario's local hour and month), calls ``solve()`` with a deadline, commits the cycle's
decisions in one store transaction and tells its observers. RPC threads only hand work over
(``submitted``, ``state_changed``) and read copies (``snapshot``); they never wait for a solve.

The store is the truth; the loop's memory is a cache of it that it rebuilds on start
(``Store.active_workloads``): the cluster from the placements of every PLACED workload (with
their GPU indices, so the per-GPU shares come back exactly) and the queue from every PENDING one.
Per cycle the loop touches only its batch, never the whole store.

Retries: a workload that does not fit now stays PENDING with a reason and waits until capacity
is freed (a cancel or a completion), not every cycle, so a full cluster costs nothing. One that
can never fit (``Unplaced.final``) becomes UNSCHEDULABLE.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import heapq
import io
import logging
import multiprocessing
import operator
import pickle
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from scheduler.domain import (
    CapacityError,
    Cluster,
    Cost,
    Reason,
    ReplicaPlacement,
    Resources,
    Scenario,
    Workload,
    WorkloadSpec,
    WorkloadState,
    primary_reason_code,
)
from scheduler.solver import (
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    Unplaced,
    solve,
)
from scheduler.solver.fragmentation import RequestHistory
from scheduler.store import CycleCommit, Store, StoreError, Unfit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CycleReport:
    """One per cycle that solved something."""

    started_at: datetime
    cycle_seconds: float
    solve_seconds: float
    batch_workloads: int
    batch_replicas: int
    result: PlacementResult
    placed: tuple[Workload, ...]  # became PLACED this cycle (created_at, placed_at set)
    unschedulable: tuple[Workload, ...]  # became UNSCHEDULABLE this cycle
    pending: tuple[Workload, ...]  # tried, still PENDING with a reason


class LoopObserver(Protocol):
    """Told about everything the loop sees; called from RPC threads (``on_submitted``, cancels)
    and the loop thread, so implementations must be thread-safe and quick."""

    def on_submitted(self, workloads: Sequence[Workload]) -> None: ...

    def on_cycle(self, report: CycleReport) -> None: ...

    def on_state_change(self, workload: Workload, old: WorkloadState) -> None: ...


@dataclass(frozen=True)
class Snapshot:
    """Read at scrape time and by RPCs that show the cluster; cheap to take."""

    counts_by_state: Mapping[WorkloadState, int]
    pending_by_reason: Mapping[str, int]  # Reason.code -> PENDING workloads with that code
    unschedulable_by_reason: Mapping[str, int]
    cluster: Cluster  # a copy of the current allocation
    scenario: Scenario
    hour: int
    month: int
    last_result: PlacementResult | None


@dataclass(frozen=True)
class LoopConfig:
    batch_window_s: float = 0.02  # gather a batch this long after the first new work
    max_batch_workloads: int = 3000  # the rest waits for the next cycle
    solve_budget_s: float = 0.05  # deadline handed to solve(): bounds submit-to-placed latency
    retry_after_error_s: float = 0.5  # pause after a store error before trying again
    # Under sustained load (a batch of at least rest_from_batch workloads, and new work
    # submitted while it was solved) the next cycle starts no sooner than
    # min(rest_ratio x c, max_rest_s) after a cycle of c seconds: the loop then takes larger
    # batches (the solver's cost per cycle is spread over more workloads) and leaves the CPU
    # to the RPCs and watch streams part of the time. Light load (1,000 workloads/s in batches
    # of 100) and a backlog with nothing else to do never rest.
    rest_ratio: float = 1.0
    max_rest_s: float = 0.4
    rest_from_batch: int = 500
    # A batch of at least this many workloads is solved with the LP bound only
    # (SolverParams.mip_bound=False): under sustained load the MIP bound's CPU is better spent
    # placing; light load keeps the tighter bound. 0: never.
    lp_bound_from_batch: int = 500
    # Solve in a child process (SolverProcess): Python runs one thread at a time, so a solve in
    # the server's own process holds up its RPCs; a child solves on another core. False: in
    # this process (tests, and machines with one core).
    solver_process: bool = True
    # GPU work is placed where it leaves the least fragmented GPU capacity for the GPU requests
    # submitted lately (FGD, with fragmentation.RequestHistory as its target workload): on the
    # Alibaba openb trace this leaves 11-21% fewer GPUs unallocated than FGD alone. False: the
    # packing as the model decided.
    fgd: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.batch_window_s <= 10:
            raise ValueError(f"batch_window_s must be in 0..10 (got {self.batch_window_s})")
        if self.max_batch_workloads < 1:
            raise ValueError("max_batch_workloads must be >= 1")
        if self.solve_budget_s <= 0:
            raise ValueError("solve_budget_s must be > 0")
        if self.rest_from_batch < 1:
            raise ValueError("rest_from_batch must be >= 1")
        if self.lp_bound_from_batch < 0:
            raise ValueError("lp_bound_from_batch must be >= 0")
        if not (0 <= self.rest_ratio <= 10 and 0 <= self.max_rest_s <= 10):
            raise ValueError(
                f"rest_ratio and max_rest_s must be in 0..10 (got {self.rest_ratio}, "
                f"{self.max_rest_s})"
            )


def scenario_zone(scenario: Scenario) -> tzinfo:
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(scenario.timezone)
    except Exception:  # no tz database: China has kept UTC+8 without DST since 1991
        if scenario.timezone == "Asia/Shanghai":
            return timezone(timedelta(hours=8))
        log.warning("unknown timezone %r, using UTC", scenario.timezone)
        return UTC


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _allocate_cpu_work(
    cluster: Cluster, placed: Sequence[tuple[Workload, Sequence[ReplicaPlacement]]]
) -> bool:
    """Apply the placements of CPU-only workloads to ``cluster`` all at once, as
    ``Cluster.allocate`` would one replica at a time; False (and ``cluster`` unchanged) if any
    replica does not fit, names an unknown node or carries GPU indices: the caller then applies
    them one by one to find which."""
    n = sum(len(reps) for _, reps in placed)
    if not n:
        return True
    index = cluster.index
    try:
        nodes = np.fromiter(
            (index[p.node] for _, reps in placed for p in reps), dtype=np.int64, count=n
        )
    except KeyError:
        return False
    if any(p.gpu_indices for _, reps in placed for p in reps):
        return False
    cpu = np.fromiter(
        (w.spec.resources.cpu_millis for w, reps in placed for _ in reps), dtype=np.int64, count=n
    )
    mem = np.fromiter(
        (w.spec.resources.memory_mib for w, reps in placed for _ in reps), dtype=np.int64, count=n
    )
    # every request is > 0, so the totals fit exactly when each replica in turn would have
    np.subtract.at(cluster.free_cpu, nodes, cpu)
    np.subtract.at(cluster.free_mem, nodes, mem)
    if (cluster.free_cpu[nodes] < 0).any() or (cluster.free_mem[nodes] < 0).any():
        np.add.at(cluster.free_cpu, nodes, cpu)
        np.add.at(cluster.free_mem, nodes, mem)
        return False
    np.add.at(cluster.replicas_on, nodes, 1)
    return True


def _reason_code(reasons: Sequence[Reason], final: bool) -> str:
    return primary_reason_code(reasons, final)


@dataclass(frozen=True)
class _Solving:
    """A batch handed to the solver process; the next cycle collects the answer."""

    batch: list[Workload]
    started_at: datetime
    t0: float  # perf_counter at the start of the cycle that sent it
    s0: float  # perf_counter when it was sent


@dataclass(frozen=True)
class _Decided:
    """A solved batch applied to the cycle's cluster, ready to be committed."""

    batch: list[Workload]
    result: PlacementResult
    placed: dict[str, tuple[tuple[ReplicaPlacement, ...], Cost]]
    unschedulable: dict[str, Unfit]
    pending: dict[str, Unfit]
    started_at: datetime
    t0: float
    solve_seconds: float


class SolverProcessError(RuntimeError):
    """The solver's child process died or could not be reached."""


def _by_fields(cls: type) -> Callable[[Any], tuple[type, tuple[Any, ...]]]:
    """A pickle reducer that rebuilds a dataclass by calling it with its fields in order."""
    get = operator.attrgetter(*(f.name for f in dataclasses.fields(cls)))
    return lambda obj: (cls, get(obj))


# What crosses to and from the solver process, pickled by constructor call: the default for
# slotted dataclasses looks up their fields for every object, several times slower.
_DISPATCH: dict[Any, Any] = dict(copyreg.dispatch_table)
_DISPATCH.update(
    (cls, _by_fields(cls))
    for cls in (PendingWorkload, WorkloadSpec, Resources, ReplicaPlacement, Cost, Reason, Unplaced)
)


def _dumps(obj: object) -> bytes:
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return out.getvalue()


def _solver_child(conn: Connection, scenario: Scenario) -> None:
    """The child of ``SolverProcess``: solves the cycles it is sent until told to stop or its
    parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    base = Cluster(scenario)
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if not message:
            return
        workloads, free, hour, month, gpu_target, params, seed, budget = pickle.loads(message)
        deadline = None if budget is None else time.monotonic() + budget
        cluster = base.copy()
        cluster.free_cpu, cluster.free_mem, cluster.gpu_free, cluster.replicas_on = free
        problem = Problem(scenario, cluster, workloads, hour, month, gpu_target)
        try:
            answer: tuple[bool, Any] = (True, solve(problem, params, seed=seed, deadline=deadline))
        except Exception as e:
            log.exception("solve failed in the solver process")
            answer = (False, f"{type(e).__name__}: {e}")
        try:
            conn.send_bytes(_dumps(answer))
        except (EOFError, OSError):
            return


class SolverProcess:
    """``solve()`` in a child process of its own, for a loop that shares its process with RPC
    threads: Python runs one thread at a time, so solving there holds up every RPC, while a
    child solves on another core. The child gets the scenario once; each call sends the
    cluster's free capacity and the batch, and receives the ``PlacementResult``. ``solve``
    raises ``SolverProcessError`` if the child is gone (``alive`` then says False) and
    ``RuntimeError`` if the solver itself failed there. One caller at a time."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        ctx = multiprocessing.get_context("spawn")  # fork is unsafe with grpc's threads
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(
            target=_solver_child, args=(child, scenario), name="valley-solver", daemon=True
        )
        self._process.start()
        child.close()

    @property
    def alive(self) -> bool:
        return self._process.is_alive() and not self._conn.closed

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def solve(
        self, problem: Problem, params: SolverParams, *, seed: int, deadline: float | None
    ) -> PlacementResult:
        self.send(problem, params, seed=seed, deadline=deadline)
        return self.receive()

    def send(
        self, problem: Problem, params: SolverParams, *, seed: int, deadline: float | None
    ) -> None:
        """Hand ``problem`` to the child (its cluster is copied now); ``receive`` answers."""
        if problem.scenario is not self.scenario:
            raise ValueError("this solver process serves another scenario")
        c = problem.cluster
        # the time left when called is the child's from when it has the batch: the transfer
        # would otherwise eat a short budget and leave the child the greedy fallback only
        budget = None if deadline is None else max(0.0, deadline - time.monotonic())
        request = (
            problem.workloads,
            (c.free_cpu, c.free_mem, c.gpu_free, c.replicas_on),
            problem.hour,
            problem.month,
            problem.gpu_target,
            params,
            seed,
            budget,
        )
        try:
            self._conn.send_bytes(_dumps(request))
        except (EOFError, OSError) as e:
            self.close()
            raise SolverProcessError(f"the solver process is gone: {e!r}") from e

    def receive(self) -> PlacementResult:
        """The answer to the last ``send``, waiting for it."""
        try:
            ok, answer = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError) as e:
            self.close()
            raise SolverProcessError(f"the solver process is gone: {e!r}") from e
        if not ok:
            raise RuntimeError(f"in the solver process: {answer}")
        result: PlacementResult = answer
        return result

    def close(self, timeout: float = 5.0) -> None:
        """Ask the child to stop, and end it if it does not within ``timeout`` seconds."""
        if not self._conn.closed:
            with contextlib.suppress(EOFError, OSError):
                self._conn.send_bytes(b"")
            self._conn.close()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout)


class SchedulingLoop:
    """See the module docstring. ``start()`` loads the state and starts the thread."""

    def __init__(
        self,
        store: Store,
        scenario: Scenario,
        params: SolverParams | None = None,
        observers: Sequence[LoopObserver] = (),
        config: LoopConfig | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.params = params or SolverParams()
        self.config = config or LoopConfig()
        self._observers = tuple(observers)
        self._clock = clock
        self._zone = scenario_zone(scenario)
        self._cond = threading.Condition()
        # --- shared with RPC threads, under _cond
        self._inbox: list[Workload] = []
        self._changes: list[tuple[Workload, WorkloadState]] = []
        self._first_signal: float | None = None  # monotonic time of the oldest unhandled signal
        self._stopping = False
        self._counts: Counter[WorkloadState] = Counter()
        self._pending_code: dict[str, str] = {}  # PENDING workload id -> reason code
        self._pending_by_reason: Counter[str] = Counter()
        self._unschedulable_by_reason: Counter[str] = Counter()
        self._cluster = Cluster(scenario)  # replaced (never changed in place) after load
        self._last_result: PlacementResult | None = None
        # --- owned by the loop thread
        self._pending: dict[str, Workload] = {}  # every PENDING workload the loop knows
        self._ready: list[tuple[int, int, str]] = []  # heap of (-priority, arrival, id)
        self._arrivals = 0
        self._gpu_history = RequestHistory()  # FGD's target workload (config.fgd)
        self._waiting: dict[str, Workload] = {}  # tried, wait for capacity to be freed
        self._allocated: dict[str, Workload] = {}  # PLACED, holding capacity in _cluster
        self._completions: list[tuple[float, str]] = []  # heap of (due epoch seconds, id)
        self._batch_limit: int | None = None  # smaller batches after a solver failure
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._warm = threading.Event()  # the solver has solved once (imports, process start)
        self._rest_until = 0.0  # monotonic time before which no cycle starts (rest_ratio)
        self._last_batch = 0  # workloads in the last cycle's batch
        self._solver: SolverProcess | None = None
        self._solving: _Solving | None = None  # sent to the solver process, not collected
        self._solver_retry_at = 0.0  # monotonic time to start a died solver process again
        self.cycles = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Rebuild the state from the store, then start the loop thread."""
        self._load()
        if self.config.solver_process:
            self._solver = SolverProcess(self.scenario)
        self._thread = threading.Thread(target=self._run, name="valley-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("scheduling loop did not stop within %.1f s", timeout)
        if self._solver is not None:
            self._solver.close()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the solver has warmed up (its first solve pays for imports and, with a
        solver process, for starting it: a second or two), so that the first clients do not
        wait for it; False after ``timeout`` seconds."""
        return self._warm.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _load(self) -> None:
        cluster = Cluster(self.scenario)
        active = self.store.active_workloads()
        counts = self.store.counts()
        codes = self.store.pending_reason_codes()
        for w in active:
            if w.state == WorkloadState.PENDING:
                self._enqueue(w)
                continue
            try:
                for p in w.placements:
                    cluster.allocate(cluster.index[p.node], w.spec.resources, p.gpu_indices)
            except (CapacityError, KeyError) as e:
                # the scenario changed under a stored placement: keep the record, say so
                log.error("cannot restore placement of %s: %s", w.id, e)
                continue
            self._allocated[w.id] = w
            self._schedule_completion(w)
        with self._cond:
            self._cluster = cluster
            self._counts = Counter(counts.by_state)
            self._pending_by_reason = Counter(counts.pending_by_reason)
            self._unschedulable_by_reason = Counter(counts.unschedulable_by_reason)
            self._pending_code = codes
        log.info("loop resumed: %d placed, %d pending", len(self._allocated), len(self._pending))

    # ------------------------------------------------------------------ called by RPC threads

    def submitted(self, workloads: Sequence[Workload]) -> None:
        """New PENDING workloads, already committed."""
        if not workloads:
            return
        with self._cond:
            self._inbox.extend(workloads)
            self._counts[WorkloadState.PENDING] += len(workloads)
            self._signal()
        self._tell("on_submitted", workloads)

    def state_changed(self, workload: Workload, old: WorkloadState) -> None:
        """A change committed by someone else (a cancel): free its capacity, forget it."""
        with self._cond:
            self._changes.append((workload, old))
            self._count_change(workload.id, old, workload.state, "")
            self._signal()
        self._tell("on_state_change", workload, old)

    def wake(self) -> None:
        """Look at the clock again now (completions); for clocks that jump (tests)."""
        with self._cond:
            self._cond.notify_all()

    def snapshot(self) -> Snapshot:
        with self._cond:
            counts = dict(self._counts)
            pending = {k: v for k, v in self._pending_by_reason.items() if v}
            unsched = {k: v for k, v in self._unschedulable_by_reason.items() if v}
            cluster = self._cluster.copy()
            last = self._last_result
        hour, month = self.local_hour_month()
        return Snapshot(counts, pending, unsched, cluster, self.scenario, hour, month, last)

    def local_hour_month(self, now: datetime | None = None) -> tuple[int, int]:
        local = (now or self._clock()).astimezone(self._zone)
        return local.hour, local.month

    def wait_idle(self, timeout: float) -> bool:
        """Block until the loop has nothing to do (tests and benchmarks)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = bool(self._inbox or self._changes)
            if not busy and self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                with self._cond:
                    if not (self._inbox or self._changes):
                        return True
        return False

    def _signal(self) -> None:
        if self._first_signal is None:
            self._first_signal = time.monotonic()
        self._idle.clear()
        self._cond.notify_all()

    def _count_change(self, wid: str, old: WorkloadState, new: WorkloadState, code: str) -> None:
        """Update the counters (under _cond) for ``wid`` going from ``old`` to ``new``."""
        if old == new:
            if new == WorkloadState.PENDING and code != self._pending_code.get(wid, ""):
                self._set_pending_code(wid, code)
            return
        if old != WorkloadState.UNSPECIFIED:
            self._counts[old] -= 1
        self._counts[new] += 1
        if old == WorkloadState.PENDING:
            self._set_pending_code(wid, "")
        if new == WorkloadState.UNSCHEDULABLE:
            self._unschedulable_by_reason[code or "other"] += 1

    def _set_pending_code(self, wid: str, code: str) -> None:
        old = self._pending_code.pop(wid, "")
        if old:
            self._pending_by_reason[old] -= 1
        if code:
            self._pending_code[wid] = code
            self._pending_by_reason[code] += 1

    def _tell(self, method: str, *args: object) -> None:
        for o in self._observers:
            try:
                getattr(o, method)(*args)
            except Exception:
                log.exception("observer %r failed in %s", o, method)

    # ------------------------------------------------------------------ the loop thread

    def _enqueue(self, w: Workload) -> None:
        if self.config.fgd:
            self._gpu_history.add(w.spec)
        self._pending[w.id] = w
        self._arrivals += 1
        heapq.heappush(self._ready, (-w.spec.priority, self._arrivals, w.id))

    def _schedule_completion(self, w: Workload) -> None:
        if w.spec.duration_s > 0 and w.placed_at is not None:
            due = w.placed_at.timestamp() + w.spec.duration_s
            heapq.heappush(self._completions, (due, w.id))

    def _next_due(self) -> float | None:
        while self._completions and self._completions[0][1] not in self._allocated:
            heapq.heappop(self._completions)  # cancelled meanwhile
        return self._completions[0][0] if self._completions else None

    def _warm_up(self) -> None:
        """Solve a one-replica problem once, so the first real cycle does not pay for imports
        and solver start-up (about a second for OR-Tools) while clients wait."""
        spec = WorkloadSpec(tenant="warm-up", resources=Resources(1, 1))
        problem = Problem(self.scenario, self._cluster.copy(), (PendingWorkload("warm-up", spec),))
        try:
            self._solve(problem, self.params, time.monotonic() + 5.0)
        except Exception:
            log.exception("solver warm-up failed")

    def _solve(self, problem: Problem, params: SolverParams, deadline: float) -> PlacementResult:
        """``solve()``, in the solver process when there is one; if that died, here until it
        has been started again (at most every 10 s)."""
        solver = self._solver
        if solver is not None and not solver.alive and time.monotonic() >= self._solver_retry_at:
            log.warning("starting the solver process again")
            self._solver_retry_at = time.monotonic() + 10.0
            self._solver = SolverProcess(self.scenario)
        if self._solver is not None and self._solver.alive:
            try:
                return self._solver.solve(problem, params, seed=self.config.seed, deadline=deadline)
            except SolverProcessError:
                log.exception("the solver process died; solving in the loop's process meanwhile")
                self._solver_retry_at = time.monotonic() + 10.0
        return solve(problem, params, seed=self.config.seed, deadline=deadline)

    def _run(self) -> None:
        try:
            self._warm_up()
        finally:
            self._warm.set()
        while True:
            with self._cond:
                while not self._stopping:
                    if self._inbox or self._changes or self._ready or self._solving:
                        break
                    due = self._next_due()
                    now = self._clock().timestamp()
                    if due is not None and due <= now:
                        break
                    self._idle.set()
                    self._cond.wait(None if due is None else min(due - now, 60.0))
                if self._stopping:
                    return
                # the batching window: let a burst of submissions or cancels gather
                # (a batch with the solver process is collected at once: the work that came
                # in while it was solved is the next batch)
                end = self._rest_until
                if self._first_signal is not None and not self._ready and self._solving is None:
                    end = max(end, self._first_signal + self.config.batch_window_s)
                while not self._stopping and (left := end - time.monotonic()) > 0:
                    self._cond.wait(left)
                if self._stopping:
                    return
                inbox, self._inbox = self._inbox, []
                changes, self._changes = self._changes, []
                self._first_signal = None
            started = time.monotonic()
            try:
                self._cycle(inbox, changes)
            except Exception:
                log.exception("scheduling cycle failed; retrying")
                time.sleep(self.config.retry_after_error_s)
            finished = time.monotonic()
            with self._cond:
                busy = bool(self._inbox)  # submissions came in while this cycle ran
            # a backlog left over (the batch was full) cannot make the next batch larger:
            # resting would only let it grow; while the solver process has a batch, this
            # thread waits for it anyway
            if (
                busy
                and not self._ready
                and self._solving is None
                and self._last_batch >= self.config.rest_from_batch
            ):
                rest = min(self.config.rest_ratio * (finished - started), self.config.max_rest_s)
                self._rest_until = finished + rest

    def _release(self, cluster: Cluster, w: Workload) -> None:
        for p in w.placements:
            try:
                cluster.release(cluster.index[p.node], w.spec.resources, p.gpu_indices)
            except (CapacityError, KeyError) as e:
                log.error("cannot release %s from %s: %s", w.id, p.node, e)

    def _cycle(self, inbox: list[Workload], changes: list[tuple[Workload, WorkloadState]]) -> None:
        started_at = self._clock()
        t0 = time.perf_counter()
        for w in inbox:
            if w.id not in self._pending:
                self._enqueue(w)
        cluster = self._cluster.copy()
        freed = False
        for w, _old in changes:
            self._pending.pop(w.id, None)
            self._waiting.pop(w.id, None)
            held = self._allocated.pop(w.id, None)
            if held is not None:
                self._release(cluster, held)
                freed = True
        freed |= self._complete_due(cluster, started_at)
        # the batch the solver process has solved meanwhile, applied to ``cluster`` (not
        # committed yet: the next batch is sent first)
        decided = self._collect(cluster) if self._solving is not None else None
        if freed:
            for wid, waiting in self._waiting.items():
                heapq.heappush(self._ready, (-waiting.spec.priority, self._arrivals, wid))
                self._arrivals += 1
            self._waiting.clear()
        batch: list[Workload] = []
        limit = self._batch_limit or self.config.max_batch_workloads
        while self._ready and len(batch) < limit:
            _, _, wid = heapq.heappop(self._ready)
            queued = self._pending.get(wid)
            if queued is not None and wid not in self._waiting:
                batch.append(queued)
        batch = list({w.id: w for w in batch}.values())  # a workload queued twice counts once
        self._last_batch = len(batch)
        if not self._ready:
            self._batch_limit = None  # the backlog that made a solve fail is gone
        # the solver process solves this batch while this thread commits the one before
        sent = bool(batch) and self._send(batch, cluster, started_at, t0)
        if decided is not None:
            self._commit(decided, cluster)
        if batch and not sent:
            self._solve_and_commit(batch, cluster, started_at, t0)
        elif decided is None:
            with self._cond:
                self._cluster = cluster

    def _solve_failed(self, batch: list[Workload], now: datetime) -> None:
        """A solver error must not lose work: retry in smaller batches; a single workload that
        still fails waits, with the reason, until capacity changes."""
        if len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 8)
            for w in batch:
                heapq.heappush(self._ready, (-w.spec.priority, self._arrivals, w.id))
                self._arrivals += 1
            return
        (w,) = batch
        unfit = Unfit("error", "does not fit now: the solver failed on this workload")
        try:
            outcome = self.store.commit_cycle(CycleCommit({w.id: w}, {}, {}, {w.id: unfit}, now))
        except StoreError:
            log.exception("cannot record the solver failure of %s", w.id)
            self._waiting[w.id] = w
            return
        for p in outcome.pending:
            self._pending[p.id] = p
            self._waiting[p.id] = p
            with self._cond:
                self._count_change(p.id, WorkloadState.PENDING, WorkloadState.PENDING, "error")

    def _complete_due(self, cluster: Cluster, now: datetime) -> bool:
        due: list[Workload] = []
        t = now.timestamp()
        while (d := self._next_due()) is not None and d <= t:
            _, wid = heapq.heappop(self._completions)
            if wid in self._allocated:
                due.append(self._allocated[wid])
        if not due:
            return False
        try:
            done = self.store.complete(due, now)
        except StoreError:
            log.exception("cannot record completions; retrying")
            for w in due:
                self._schedule_completion(w)
            return False
        for change in done:
            held = self._allocated.pop(change.workload.id, None)
            if held is not None:
                self._release(cluster, held)
            with self._cond:
                self._count_change(
                    change.workload.id, WorkloadState.PLACED, change.workload.state, ""
                )
            self._tell("on_state_change", change.workload, change.previous_state)
        return bool(done)

    def _problem(
        self, batch: list[Workload], cluster: Cluster, started_at: datetime
    ) -> tuple[Problem, SolverParams]:
        hour, month = self.local_hour_month(started_at)
        problem = Problem(
            scenario=self.scenario,
            cluster=cluster,
            workloads=tuple(PendingWorkload(w.id, w.spec) for w in batch),
            hour=hour,
            month=month,
            gpu_target=self._gpu_history.target() if self.config.fgd else (),
        )
        params = self.params
        if params.mip_bound and 0 < self.config.lp_bound_from_batch <= len(batch):
            params = replace(params, mip_bound=False)
        return problem, params

    def _send(
        self, batch: list[Workload], cluster: Cluster, started_at: datetime, t0: float
    ) -> bool:
        """Hand ``batch`` to the solver process, for the next cycle to collect; False if there
        is no solver process to take it."""
        solver = self._solver
        if solver is None or not solver.alive:
            return False
        problem, params = self._problem(batch, cluster, started_at)
        s0 = time.perf_counter()
        deadline = time.monotonic() + self.config.solve_budget_s
        try:
            solver.send(problem, params, seed=self.config.seed, deadline=deadline)
        except SolverProcessError:
            log.exception("the solver process died; solving in the loop's process meanwhile")
            self._solver_retry_at = time.monotonic() + 10.0
            return False
        self._solving = _Solving(batch, started_at, t0, s0)
        return True

    def _collect(self, cluster: Cluster) -> _Decided | None:
        """The answer of the solver process to the batch sent last, applied to ``cluster``;
        None if there is none (the batch is queued again, or retried as after any solver
        failure)."""
        solving, self._solving = self._solving, None
        assert solving is not None and self._solver is not None
        try:
            result = self._solver.receive()
        except SolverProcessError:
            log.exception("the solver process died; its batch is queued again")
            self._solver_retry_at = time.monotonic() + 10.0
            self._requeue(solving.batch)
            return None
        except Exception:
            log.exception("solve failed on a batch of %d workloads", len(solving.batch))
            self._solve_failed(solving.batch, solving.started_at)
            return None
        solve_seconds = time.perf_counter() - solving.s0
        return self._apply(
            solving.batch, result, cluster, solving.started_at, solving.t0, solve_seconds
        )

    def _requeue(self, batch: Sequence[Workload]) -> None:
        for w in batch:
            heapq.heappush(self._ready, (-w.spec.priority, self._arrivals, w.id))
            self._arrivals += 1

    def _solve_and_commit(
        self, batch: list[Workload], cluster: Cluster, started_at: datetime, t0: float
    ) -> None:
        problem, params = self._problem(batch, cluster, started_at)
        s0 = time.perf_counter()
        try:
            result = self._solve(problem, params, time.monotonic() + self.config.solve_budget_s)
        except Exception:
            log.exception("solve failed on a batch of %d workloads", len(batch))
            with self._cond:
                self._cluster = cluster
            self._solve_failed(batch, started_at)
            return
        solve_seconds = time.perf_counter() - s0
        self._commit(self._apply(batch, result, cluster, started_at, t0, solve_seconds), cluster)

    def _apply(
        self,
        batch: list[Workload],
        result: PlacementResult,
        cluster: Cluster,
        started_at: datetime,
        t0: float,
        solve_seconds: float,
    ) -> _Decided:
        """Apply ``result`` to ``cluster`` (changed in place) before anything is stored: a
        placement that does not fit is a solver bug, and must not reach the store. CPU-only
        work (most of it) is applied in one step."""
        placed: dict[str, tuple[tuple[ReplicaPlacement, ...], Cost]] = {}
        pending: dict[str, Unfit] = {}
        unschedulable: dict[str, Unfit] = {}
        costs = result.costs
        cpu_work: list[tuple[Workload, Sequence[ReplicaPlacement]]] = []
        one_by_one: list[tuple[Workload, Sequence[ReplicaPlacement]]] = []
        for w in batch:
            got = result.placements.get(w.id)
            if got:
                r = w.spec.resources
                (one_by_one if r.gpus or r.gpu_millis else cpu_work).append((w, got))
                continue
            u = result.unplaced.get(w.id)
            if u is None:
                pending[w.id] = Unfit("capacity", "does not fit now")
            elif u.final:
                unschedulable[w.id] = Unfit(_reason_code(u.reasons, True), u.summary, u.reasons)
            else:
                pending[w.id] = Unfit(_reason_code(u.reasons, False), u.summary, u.reasons)
        rejected: set[str] = set()
        if not _allocate_cpu_work(cluster, cpu_work):
            one_by_one = cpu_work + one_by_one
        for w, reps in one_by_one:
            taken = []
            try:
                for p in reps:
                    node = cluster.index[p.node]
                    cluster.allocate(node, w.spec.resources, p.gpu_indices or None)
                    taken.append(p)
            except (CapacityError, KeyError) as e:
                log.error("solver placement of %s does not fit: %s", w.id, e)
                self._release(cluster, replace(w, placements=tuple(taken)))
                pending[w.id] = Unfit("capacity", "does not fit now: placement rejected")
                rejected.add(w.id)
        for w in batch:  # in batch order, as the events will be
            got = result.placements.get(w.id)
            if got and w.id not in rejected:
                placed[w.id] = (tuple(got), costs.get(w.id) or Cost())
        return _Decided(
            batch, result, placed, unschedulable, pending, started_at, t0, solve_seconds
        )

    def _commit(self, d: _Decided, cluster: Cluster) -> None:
        """Store what ``_apply`` decided and applied to ``cluster``, which then becomes the
        loop's cluster; if the store fails, the placements are taken back out of ``cluster``
        and the batch is queued again."""
        batch, placed = d.batch, d.placed
        commit = CycleCommit(
            workloads={w.id: w for w in batch},
            placed=placed,
            unschedulable=d.unschedulable,
            pending=d.pending,
            now=self._clock(),
        )
        try:
            outcome = self.store.commit_cycle(commit)
        except StoreError:
            log.exception("cannot commit cycle; its %d workloads stay queued", len(batch))
            for wid, (reps, _) in placed.items():
                self._release(cluster, replace(commit.workloads[wid], placements=reps))
            self._requeue(batch)
            with self._cond:
                self._cluster = cluster
            time.sleep(self.config.retry_after_error_s)
            return
        for wid in outcome.skipped:
            # cancelled while we solved: give back what we took for it
            if wid in placed:
                self._release(cluster, replace(commit.workloads[wid], placements=placed[wid][0]))
            self._pending.pop(wid, None)
        for w in outcome.placed:
            self._pending.pop(w.id, None)
            self._allocated[w.id] = w
            self._schedule_completion(w)
        for w in outcome.unschedulable:
            self._pending.pop(w.id, None)
        for w in outcome.pending:
            self._pending[w.id] = w
            self._waiting[w.id] = w
        with self._cond:
            self._cluster = cluster
            self._last_result = d.result
            # _count_change(PENDING -> PLACED) for all of them at once
            self._counts[WorkloadState.PENDING] -= len(outcome.placed)
            self._counts[WorkloadState.PLACED] += len(outcome.placed)
            if self._pending_code:
                for w in outcome.placed:
                    if w.id in self._pending_code:
                        self._set_pending_code(w.id, "")
            for w in outcome.unschedulable:
                code = d.unschedulable[w.id].code
                self._count_change(w.id, WorkloadState.PENDING, WorkloadState.UNSCHEDULABLE, code)
            for w in outcome.pending:
                self._count_change(
                    w.id, WorkloadState.PENDING, WorkloadState.PENDING, d.pending[w.id].code
                )
        self.cycles += 1
        report = CycleReport(
            started_at=d.started_at,
            cycle_seconds=time.perf_counter() - d.t0,
            solve_seconds=d.solve_seconds,
            batch_workloads=len(batch),
            batch_replicas=sum(w.spec.replica_count for w in batch),
            result=d.result,
            placed=outcome.placed,
            unschedulable=outcome.unschedulable,
            pending=outcome.pending,
        )
        self._tell("on_cycle", report)
