"""``SchedulingLoop``: its lifecycle, what RPC threads hand it, and the cycle (see the package
docstring for what the loop does).

A cycle either completes or leaves the queue and the capacity as the store has them. Each of its
store writes (completions, a batch's decisions) changes the loop's memory only once it has
returned; what a cycle took before a write fails (a batch, due completions, the work handed over
by RPC threads) goes back, and a batch's placements are applied to a copy of the cluster that
the loop keeps only once the store has them. A failed cycle is logged and tried again.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from scheduler.domain import (
    Cluster,
    ReasonCode,
    Scenario,
    Workload,
    WorkloadState,
)
from scheduler.domain.forecast import Forecast, hour_start, scenario_zone
from scheduler.domain.timeline import Timeline
from scheduler.loop.allocation import Allocation, hold_placed
from scheduler.loop.apply import Decisions, apply_result, release_replicas, starts_later
from scheduler.loop.config import LoopConfig
from scheduler.loop.counters import StateCounters
from scheduler.loop.mailbox import Change, Mailbox
from scheduler.loop.moving import LiveMoves
from scheduler.loop.preempting import Preempter
from scheduler.loop.queue import WorkQueue
from scheduler.loop.replanning import Replanner
from scheduler.loop.reports import CycleReport, LoopObserver, Snapshot
from scheduler.loop.solver_client import SolveFunction, SolverClient, SolverProcessError
from scheduler.solver import (
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    solve,
    without_room_on,
)
from scheduler.solver.fragmentation import RequestHistory
from scheduler.store import CycleCommit, CycleOutcome, Store, StoreError, Unfit

log = logging.getLogger(__name__)

S = WorkloadState
# the longest a reader of the loop's copies waits for a store write in progress to show in them
VIEW_WAIT_S = 2.0


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Solving:
    """A batch handed to the solver process; the next cycle collects the answer."""

    batch: list[Workload]
    started_at: datetime
    t0: float  # perf_counter at the start of the cycle that sent it
    s0: float  # perf_counter when it was sent


@dataclass(frozen=True)
class _Decided:
    """A solved batch applied to ``cluster`` (a copy of the loop's, changed by nothing else
    since), ready to be committed."""

    batch: list[Workload]
    result: PlacementResult
    decisions: Decisions
    cluster: Cluster
    timeline: Timeline  # a copy of the loop's, with the batch's placements held
    started_at: datetime
    t0: float
    solve_seconds: float


class SchedulingLoop(LiveMoves):
    """See the package docstring. ``start()`` loads the state and starts the thread.

    ``solve_fn`` is the solver (``scheduler.solver.solve``); with ``config.solver_process`` it
    runs in a child process and must be picklable. ``solver``: a ``SolverClient`` already
    started and warm (a follower's ``StandbySolver``) for the loop to own and close, so that
    its start does not wait for a solver process; built for ``scenario`` with ``config.seed``
    (and then ``solve_fn`` is not used). None: the loop builds its own, as ``config`` says."""

    def __init__(
        self,
        store: Store,
        scenario: Scenario,
        params: SolverParams | None = None,
        observers: Sequence[LoopObserver] = (),
        config: LoopConfig | None = None,
        clock: Callable[[], datetime] = _utcnow,
        solve_fn: SolveFunction = solve,
        forecast: Forecast | None = None,
        solver: SolverClient | None = None,
    ) -> None:
        self.store = store
        self.scenario = scenario
        self.params = params or SolverParams()
        self.config = config or LoopConfig()
        self._observers = tuple(observers)
        self._clock = clock
        self._zone = scenario_zone(scenario)
        self._forecast = forecast or Forecast.of(scenario)
        self._mailbox = Mailbox(self.config.batch_window_s)  # from RPC threads
        self._lock = threading.Lock()
        # held by the loop thread from a store write until the copies below show it, and by
        # ``snapshot``: a reader that saw a change in the store never reads copies without it
        self._view_lock = threading.RLock()
        # --- shared with RPC threads, under _lock
        self._counters = StateCounters()
        self._cluster = Cluster(scenario)  # a copy of the allocation's, replaced, never changed
        self._last_result: PlacementResult | None = None
        self._reserved: tuple[datetime, npt.NDArray[np.float64]] | None = None
        self._timeline: Timeline | None = None  # a copy of the allocation's, as _cluster
        # --- owned by the loop thread
        self._queue = WorkQueue()
        self._allocation = Allocation(scenario, self.config.horizon_hours)
        self._replanner = Replanner(self.config.replan_per_cycle)
        if solver is None:
            solver = SolverClient(
                scenario,
                process=self.config.solver_process,
                seed=self.config.seed,
                solve_fn=solve_fn,
            )
        elif solver.scenario is not scenario or solver.seed != self.config.seed:
            raise ValueError("the solver given was built for another scenario or seed")
        self._solver = solver
        self._solving: _Solving | None = None  # sent to the solver process, not collected
        self._gpu_history = RequestHistory()  # FGD's target workload (config.fgd)
        self._batch_limit: int | None = None  # smaller batches after a solver failure
        self._thread: threading.Thread | None = None
        self._warm = threading.Event()  # the solver has solved once (imports, process start)
        self._rest_until = 0.0  # monotonic time before which no cycle starts (rest_ratio)
        self._last_batch = 0  # workloads in the last cycle's batch
        self._stopping = False  # stop() was called: no new batch is solved
        self._rebalanced_at: datetime | None = None  # the last periodic rebalance (clock)
        self._moved_since_send = False  # replicas moved while a batch was being solved
        self.moves = 0  # replicas moved by periodic rebalancing
        # work other threads ask of the loop thread (a drain), served at the next cycle
        self._requests: queue.SimpleQueue[tuple[Callable[[datetime], object], Future[object]]]
        self._requests = queue.SimpleQueue()
        self._cordoned: frozenset[str] = frozenset()  # as the last cycle read them
        cfg = self.config
        self._preempter = Preempter(store, cfg.preempt_per_cycle, cfg.preempt_budget_s)
        self.cycles = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Rebuild the state from the store, then start the loop thread."""
        self.load()
        self._solver.start()
        self._thread = threading.Thread(target=self._run, name="valley-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop thread within about ``timeout`` seconds: a solve in progress is
        abandoned (its batch stays PENDING in the store, for the next start)."""
        self._stopping = True
        self._mailbox.close()
        self._solver.abandon()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("scheduling loop did not stop within %.1f s", timeout)
        self._solver.close()

    def wait_ready(self, timeout: float) -> bool:
        """Block until the solver has warmed up (its first solve pays for imports and, with a
        solver process, for starting it: a second or two), so that the first clients do not
        wait for it; False after ``timeout`` seconds."""
        return self._warm.wait(timeout)

    @property
    def solver_pid(self) -> int | None:
        """The solver process's id, if the loop solves in one."""
        return self._solver.pid

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def load(self) -> None:
        """Rebuild the queue, the cluster and the counts from the store (``start`` does it; a
        loop that is only loaded answers ``snapshot`` as of then)."""
        active = self.store.active_workloads()
        counts = self.store.counts()
        codes = self.store.pending_reason_codes()
        now = self._clock()
        self._allocation.advance(now)
        for w in active:
            if w.state == S.PENDING:
                self._enqueue(w)
            else:
                self._allocation.restore(w, now)
        if self.config.preemption:
            self._preempter.load(now)
        with self._lock:
            self._share_allocation()
            self._counters.load(counts, codes)
        log.info("loop resumed: %d placed, %d pending", len(self._allocation), len(self._queue))

    # ------------------------------------------------------------------ called by RPC threads

    def submitted(self, workloads: Sequence[Workload]) -> None:
        """New PENDING workloads, already committed."""
        if not workloads:
            return
        with self._lock:
            self._counters.submitted(len(workloads))
        self._mailbox.post(workloads)
        self._tell("on_submitted", workloads)

    def state_changed(self, workload: Workload, old: WorkloadState) -> None:
        """A change committed by someone else (a cancel): free its capacity, forget it."""
        with self._lock:
            self._counters.change(workload.id, old, workload.state, "")
        self._mailbox.post(changes=[(workload, old)])
        self._tell("on_state_change", workload, old)

    @property
    def forecast(self) -> Forecast:
        """The price and carbon per site and hour ahead the solver plans with."""
        return self._forecast

    def set_forecast(self, forecast: Forecast) -> None:
        """Plan with ``forecast`` from the next cycle on (any thread); reservations are planned
        again against it (``Replanner``)."""
        self._forecast = forecast
        self._replanner.trigger()
        self._mailbox.wake()

    def run_cycle(self) -> None:
        """One cycle now, on the calling thread, without waiting: what was submitted or
        changed since the last one, the completions and reservation starts due by the clock,
        a solve of the batch and its commit. For a driver that owns the clock (a simulated
        day): build the loop with ``clock`` and ``LoopConfig(solver_process=False)``, call
        ``load()`` once (not ``start()``), then per step move the clock, hand over work
        (``submitted``, ``state_changed``) and call ``run_cycle()``."""
        if self.running:
            raise RuntimeError("run_cycle() drives a loop whose thread is not running")
        inbox, changes = self._mailbox.drain()
        self._cycle(inbox, changes)

    def next_event(self) -> datetime | None:
        """When the next completion or reservation start is due (loop thread or a driver that
        runs cycles itself): a driver of simulated time may move its clock there."""
        due = [t for t in (self._allocation.next_due(), self._allocation.next_start()) if t]
        return datetime.fromtimestamp(min(due), UTC) if due else None

    def wake(self) -> None:
        """Look at the clock again now (completions); for clocks that jump (tests)."""
        self._mailbox.wake()

    def capacity_changed(self) -> None:
        """Capacity came back outside the loop (nodes uncordoned): a cycle soon, which reads the
        cordons and tries the waiting workloads again."""
        self._mailbox.nudge()

    def snapshot(self) -> Snapshot:
        """What other threads read of the loop (ListSites, the metrics): the cluster, counts
        and reservations as of the loop's last store write, never older than what the store
        shows of the loop's own writes (placements, moves, preemptions, completions), nor than
        a cancel handed to it (``state_changed``) before: the capacity it frees is given back
        first. A reader waits for that at most ``VIEW_WAIT_S`` (a write that hangs, the database
        unreachable), then reads the copies as they are: reads stay available. On the loop's
        own thread, or with no loop thread (a driver runs the cycles), nothing is waited for."""
        now = self._clock()
        hour, month = self.local_hour_month(now)
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            with self._lock:
                return self._snapshot(now, hour, month)
        end = time.monotonic() + VIEW_WAIT_S
        self._mailbox.wait_changes_shown(VIEW_WAIT_S)
        waited = self._view_lock.acquire(timeout=max(0.0, end - time.monotonic()))
        try:
            with self._lock:
                return self._snapshot(now, hour, month)
        finally:
            if waited:
                self._view_lock.release()

    def _snapshot(self, now: datetime, hour: int, month: int) -> Snapshot:
        """``snapshot``'s copies (hold ``_lock``)."""
        c = self._counters
        return Snapshot(
            c.by_state(),
            c.pending_by_reason(),
            c.unschedulable_by_reason(),
            self._cluster.copy(),
            self.scenario,
            hour,
            month,
            self._last_result,
            None if self._reserved is None else self._reserved[1],
            None if self._reserved is None else self._reserved[0],
            now,
            self._forecast,
            self._timeline,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Block until the loop has nothing to do (tests and benchmarks)."""
        return self._mailbox.wait_idle(timeout)

    def _tell(self, method: str, *args: object) -> None:
        for o in self._observers:
            try:
                getattr(o, method)(*args)
            except Exception:
                log.exception("observer %r failed in %s", o, method)

    def _tell_optional(self, method: str, *args: object) -> None:
        """``_tell`` the observers that have ``method`` (``on_moved``, ``on_preempted``)."""
        for o in self._observers:
            told = getattr(o, method, None)
            if told is None:
                continue
            try:
                told(*args)
            except Exception:
                log.exception("observer %r failed in %s", o, method)

    # ------------------------------------------------------------------ the loop thread

    def _run(self) -> None:
        try:
            self._solver.warm_up(self._allocation.cluster, self.params)
        finally:
            self._warm.set()
        while (work := self._next_work()) is not None:
            started = time.monotonic()
            try:
                self._cycle(*work)
            except Exception:
                log.exception("scheduling cycle failed; retrying")
                self._recover()
                time.sleep(self.config.retry_after_error_s)
            finished = time.monotonic()
            busy = self._mailbox.has_submissions  # submissions came in while this cycle ran
            # a backlog left over (the batch was full) cannot make the next batch larger:
            # resting would only let it grow; while the solver process has a batch, this
            # thread waits for it anyway
            if (
                busy
                and not self._queue.has_ready
                and self._solving is None
                and self._last_batch >= self.config.rest_from_batch
            ):
                rest = min(self.config.rest_ratio * (finished - started), self.config.max_rest_s)
                self._rest_until = finished + rest

    def _next_work(self) -> tuple[list[Workload], list[Change]] | None:
        """The submissions and changes posted since the last cycle, once there is something to
        do and the batching window (or a rest) has passed; None: stop. A batch the solver
        process has is collected at once: the work that came in meanwhile is the next batch."""
        return self._mailbox.take(
            busy=lambda: self._queue.has_ready or self._solving is not None,
            next_due=self._next_due,
            now=lambda: self._clock().timestamp(),
            not_before=self._rest_until,
        )

    def _next_due(self) -> float | None:
        """When the loop must look at the clock again: a completion, or a preemption leaving
        the no-loop rules' window (what it held back may preempt, or be displaced, again)."""
        due = [self._allocation.next_due()]
        if self.config.preemption:
            due.append(self._preempter.history.next_expiry())
        return min((t for t in due if t is not None), default=None)

    def _cycle(self, inbox: list[Workload], changes: list[Change]) -> None:
        started_at = self._clock()
        t0 = time.perf_counter()
        self._allocation.advance(started_at)
        freed = self._intake(inbox, changes)
        freed |= self._complete_due(started_at)
        freed |= self._read_cordons()
        freed |= self.config.preemption and self._preempter.history.expire(started_at)
        self._serve_requests(started_at)  # (drains, rebalances) on what is committed now
        self._rebalance_if_due(started_at)
        self._allocation.start_due(started_at)
        # the batch the solver process has solved meanwhile, applied to a copy of the cluster
        # (not committed yet: the next batch is sent first, to be solved on that copy)
        decided = self._collect() if self._solving is not None else None
        if self._stopping:
            return  # what was taken stays PENDING in the store
        if freed:
            self._queue.wake()
        batch = self._take_batch()
        # the solver process solves this batch while this thread commits the one before
        cluster = self._allocation.cluster if decided is None else decided.cluster
        timeline = self._allocation.timeline if decided is None else decided.timeline
        sent = bool(batch) and self._send(batch, cluster, timeline, started_at, t0)
        if decided is not None:
            self._commit(decided)
        if batch and not sent:
            self._solve_and_commit(batch, started_at, t0)
        elif decided is None:
            self._publish()
        if self._solving is None and not self._stopping:
            self._replan(started_at)

    def _recover(self) -> None:
        """After a failed cycle: what it took from the queue is ready again (but the batch the
        solver process still has), and so is every waiting workload, as capacity may have been
        freed; other threads see the cluster the loop keeps."""
        keep = {w.id for w in self._solving.batch} if self._solving is not None else set()
        if n := self._queue.restore(keep):
            log.warning("%d workloads of the failed cycle are queued again", n)
        self._queue.wake()
        self._publish()

    def _publish(self) -> None:
        with self._lock:
            self._share_allocation()

    @contextmanager
    def _showing(self, publish: bool = False) -> Iterator[None]:
        """Around a store write and the loop's memory following it (shared with ``_publish``
        or ``_share_allocation`` inside, or on leaving with ``publish``): ``snapshot`` waits
        for it, so no reader sees the write in the store and then copies without it."""
        with self._view_lock:
            yield
            if publish:
                self._publish()

    def _share_allocation(self) -> None:
        """Copies of what other threads read of the allocation (hold ``_lock``)."""
        self._cluster = self._allocation.cluster.copy()
        timeline = self._allocation.timeline
        self._timeline = timeline.copy()  # replaced, never changed (a dry run plans on it)
        self._reserved = (hour_start(timeline.base), timeline.reserved_cores())
        self._mailbox.changes_shown()  # the cancels taken so far are in these copies

    def _enqueue(self, w: Workload) -> None:
        if self._queue.add(w) and self.config.fgd:
            self._gpu_history.add(w.spec)

    def _intake(self, inbox: list[Workload], changes: list[Change]) -> bool:
        """Queue the new workloads and forget the changed ones (cancelled), giving back the
        capacity they held (``snapshot`` waits for the copies that show it: every cycle
        publishes them); True if any was given back."""
        freed = False
        try:
            for w in inbox:
                self._enqueue(w)
            for w, _old in changes:
                self._queue.remove(w.id)
                if self._allocation.release(w.id):
                    freed = True
                    self._replanner.trigger()  # its hours ahead are free now too
        except BaseException:
            # each step can be taken again: hand everything back for the next cycle
            self._mailbox.give_back(inbox, changes)
            raise
        return freed

    def _complete_due(self, now: datetime) -> bool:
        """Complete the workloads whose duration is over; True if any capacity was freed."""
        due = self._allocation.pop_due(now.timestamp())
        if not due:
            return False
        with self._showing():
            try:
                done = self.store.complete(due, now)
            except StoreError:
                log.exception("cannot record completions; retrying")
                self._allocation.reschedule(due)
                return False
            except BaseException:
                self._allocation.reschedule(due)
                raise
            for change in done:
                self._allocation.release(change.workload.id)
            with self._lock:
                for change in done:
                    self._counters.change(change.workload.id, S.PLACED, change.workload.state, "")
                self._share_allocation()
        for change in done:
            self._tell("on_state_change", change.workload, change.previous_state)
        return bool(done)

    def _take_batch(self) -> list[Workload]:
        batch = self._queue.take(
            self._batch_limit or self.config.max_batch_workloads, self.config.max_batch_replicas
        )
        self._last_batch = len(batch)
        if not self._queue.has_ready:
            self._batch_limit = None  # the backlog that made a solve fail is gone
        return batch

    def _read_cordons(self) -> bool:
        """The cordoned nodes, read once a cycle (any server may have changed them); True if
        some were uncordoned: what waits may fit now."""
        cordoned = self.store.cordoned_nodes()
        freed = bool(self._cordoned - cordoned)
        self._cordoned = cordoned
        return freed

    def _problem(
        self,
        batch: list[Workload],
        cluster: Cluster,
        started_at: datetime,
        timeline: Timeline | None = None,
    ) -> tuple[Problem, SolverParams]:
        hour, month = self.local_hour_month(started_at)
        cluster, room = without_room_on(
            cluster, timeline or self._allocation.timeline, self._cordoned
        )
        problem = Problem(
            scenario=self.scenario,
            cluster=cluster,
            workloads=tuple(PendingWorkload(w.id, w.spec) for w in batch),
            hour=hour,
            month=month,
            gpu_target=self._gpu_history.target() if self.config.fgd else (),
            now=started_at,
            forecast=self._forecast,
            timeline=room,
        )
        params = self.params
        if params.mip_bound and 0 < self.config.lp_bound_from_batch <= len(batch):
            params = replace(params, mip_bound=False)
        return problem, params

    def _deadline(self) -> float:
        return time.monotonic() + self.config.solve_budget_s

    def _send(
        self,
        batch: list[Workload],
        cluster: Cluster,
        timeline: Timeline,
        started_at: datetime,
        t0: float,
    ) -> bool:
        """Hand ``batch`` to the solver process, for the next cycle to collect; False if there
        is no solver process to take it."""
        if not self._solver.can_send:
            return False
        problem, params = self._problem(batch, cluster, started_at, timeline)
        s0 = time.perf_counter()
        if not self._solver.send(problem, params, self._deadline()):
            return False
        self._solving = _Solving(batch, started_at, t0, s0)
        return True

    def _collect(self) -> _Decided | None:
        """The answer of the solver process to the batch sent last, applied to a copy of the
        cluster; None if there is none (the batch is queued again, or retried as after any
        solver failure)."""
        solving, self._solving = self._solving, None
        assert solving is not None
        try:
            result = self._solver.receive()
        except SolverProcessError:
            self._queue.requeue(solving.batch)
            return None
        except Exception:
            log.exception("solve failed on a batch of %d workloads", len(solving.batch))
            self._solve_failed(solving.batch, solving.started_at)
            return None
        solve_seconds = time.perf_counter() - solving.s0
        return self._decide(solving.batch, result, solving.started_at, solving.t0, solve_seconds)

    def _solve_and_commit(self, batch: list[Workload], started_at: datetime, t0: float) -> None:
        problem, params = self._problem(batch, self._allocation.cluster, started_at)
        s0 = time.perf_counter()
        try:
            result = self._solver.solve(problem, params, self._deadline())
        except SolverProcessError:  # the loop is stopping: the store keeps the batch PENDING
            self._queue.requeue(batch)
            return
        except Exception:
            log.exception("solve failed on a batch of %d workloads", len(batch))
            self._publish()
            self._solve_failed(batch, started_at)
            return
        solve_seconds = time.perf_counter() - s0
        self._commit(self._decide(batch, result, started_at, t0, solve_seconds))

    def _solve_failed(self, batch: list[Workload], now: datetime) -> None:
        """A solver error must not lose work: retry in smaller batches; a single workload that
        still fails waits, with the reason, until capacity changes."""
        if len(batch) > 1:
            self._batch_limit = max(1, len(batch) // 8)
            self._queue.requeue(batch)
            return
        (w,) = batch
        unfit = Unfit(ReasonCode.ERROR, "does not fit now: the solver failed on this workload")
        try:
            outcome = self.store.commit_cycle(CycleCommit({w.id: w}, {}, {}, {w.id: unfit}, now))
        except StoreError:
            log.exception("cannot record the solver failure of %s", w.id)
            self._queue.wait(w)
            return
        for wid in outcome.skipped:  # cancelled meanwhile
            self._queue.remove(wid)
        for p in outcome.pending:
            self._queue.wait(p)
            with self._lock:
                self._counters.change(p.id, S.PENDING, S.PENDING, ReasonCode.ERROR)

    def _decide(
        self,
        batch: list[Workload],
        result: PlacementResult,
        started_at: datetime,
        t0: float,
        solve_seconds: float,
    ) -> _Decided:
        cluster = self._allocation.cluster.copy()
        moved, self._moved_since_send = self._moved_since_send, False
        # a node cordoned while the batch was solved (read this cycle) takes none of it either
        decisions = apply_result(batch, result, cluster, self._cordoned, moved)
        timeline = self._allocation.timeline.copy()
        hold_placed(timeline, cluster, batch, decisions.placed, started_at)
        return _Decided(batch, result, decisions, cluster, timeline, started_at, t0, solve_seconds)

    def _commit(self, d: _Decided) -> None:
        """Store what ``d`` decided; then its cluster becomes the loop's. If the store fails,
        the batch is queued again (and the loop's cluster never had its placements)."""
        decisions = d.decisions
        commit = CycleCommit(
            workloads={w.id: w for w in d.batch},
            placed=decisions.placed,
            unschedulable=decisions.unschedulable,
            pending=decisions.pending,
            now=self._clock(),
        )
        with self._showing():
            try:
                outcome = self.store.commit_cycle(commit)
            except StoreError:
                log.exception("cannot commit cycle; its %d workloads stay queued", len(d.batch))
                self._queue.requeue(d.batch)
                self._publish()
                failed = True
            else:
                report = self._settle(d, commit, outcome)
                failed = False
        if failed:
            time.sleep(self.config.retry_after_error_s)
            return
        self._tell("on_cycle", report)
        self._preempt(outcome.pending, d.decisions.pending, commit.now)

    def _replan(self, now: datetime) -> None:
        """Plan a few reservations again (``Replanner.replan``)."""

        def solve_them(batch: list[Workload], timeline: Timeline) -> PlacementResult:
            problem, params = self._problem(batch, self._allocation.cluster, now, timeline)
            return self._solver.solve(problem, params, self._deadline())

        price = self.params.carbon_price_cny_per_tonne
        cprice = self.scenario.carbon_price_cny_per_tonne if price is None else price
        self._replanner.replan(
            self._allocation, self.store, solve_them, now, cprice, lambda: self._showing(True)
        )

    def _settle(self, d: _Decided, commit: CycleCommit, outcome: CycleOutcome) -> CycleReport:
        """Make the loop's memory follow a committed cycle; the report to tell the observers."""
        placed = d.decisions.placed
        for wid in outcome.skipped:
            # cancelled while we solved: give back what we took for it
            if wid in placed:
                if not starts_later(placed[wid][0]):
                    release_replicas(d.cluster, commit.workloads[wid], placed[wid][0])
                d.timeline.release(wid)
            self._queue.remove(wid)
        self._allocation.adopt(d.cluster, outcome.placed, d.timeline)
        for w in (*outcome.placed, *outcome.unschedulable):
            self._queue.remove(w.id)
        for w in outcome.pending:
            self._queue.wait(w)
        with self._lock:
            self._share_allocation()
            self._last_result = d.result
            self._counters.placed([w.id for w in outcome.placed])
            for w in outcome.unschedulable:
                code = d.decisions.unschedulable[w.id].code
                self._counters.change(w.id, S.PENDING, S.UNSCHEDULABLE, code)
            for w in outcome.pending:
                self._counters.change(w.id, S.PENDING, S.PENDING, d.decisions.pending[w.id].code)
        self.cycles += 1
        report = CycleReport(
            started_at=d.started_at,
            cycle_seconds=time.perf_counter() - d.t0,
            solve_seconds=d.solve_seconds,
            batch_workloads=len(d.batch),
            batch_replicas=sum(w.spec.replica_count for w in d.batch),
            result=d.result,
            placed=outcome.placed,
            unschedulable=outcome.unschedulable,
            pending=outcome.pending,
        )
        return report
