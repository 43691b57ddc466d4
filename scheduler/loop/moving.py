"""``LiveMoves``: the part of ``SchedulingLoop`` that moves running replicas - drains and
rebalances asked by operators (``OperatorService``), the periodic rebalance, and preemption - on
the loop thread, between a cycle's intake and its batch.

Other threads never move anything themselves: ``drain`` and ``rebalance`` post the work to the
loop thread (``_ask``), which serves it at its next cycle (``_serve_requests``) on what the
store has committed, plans it (``draining``, ``preempting``), commits the moves in one store
transaction, and only then changes the loop's memory and tells its observers.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, tzinfo

from scheduler.domain import Cluster, DrainPlan, ReasonCode, Scenario, Workload, WorkloadState
from scheduler.domain.forecast import Forecast
from scheduler.loop.allocation import Allocation
from scheduler.loop.config import LoopConfig
from scheduler.loop.counters import StateCounters
from scheduler.loop.draining import plan_drain, plan_rebalance
from scheduler.loop.mailbox import Mailbox
from scheduler.loop.preempting import Preempter
from scheduler.loop.queue import WorkQueue
from scheduler.solver import PendingWorkload, Problem, SolverParams, without_room_on
from scheduler.solver.floors import objective_floor
from scheduler.store import Store, StoreError, Unfit

log = logging.getLogger(__name__)

S = WorkloadState
# the most a rebalance plan solves for its floor (on the caller's thread)
FLOOR_TIME_LIMIT_S = 1.0


class LiveMoves:
    """Drains, rebalances and preemptions of ``SchedulingLoop`` (module docstring). A mixin:
    the state below is the loop's, set by ``SchedulingLoop.__init__``."""

    store: Store
    scenario: Scenario
    params: SolverParams
    config: LoopConfig
    moves: int  # replicas moved by periodic rebalancing
    _clock: Callable[[], datetime]
    _zone: tzinfo
    _forecast: Forecast
    _mailbox: Mailbox
    _lock: threading.Lock
    _counters: StateCounters
    _queue: WorkQueue
    _allocation: Allocation
    _preempter: Preempter
    _cordoned: frozenset[str]
    _stopping: bool
    _rebalanced_at: datetime | None
    _moved_since_send: bool
    _requests: queue.SimpleQueue[tuple[Callable[[datetime], object], Future[object]]]

    # the loop's, used here
    def _publish(self) -> None: ...
    def _showing(self, publish: bool = False) -> AbstractContextManager[None]:
        raise NotImplementedError  # SchedulingLoop's

    def _share_allocation(self) -> None: ...
    def _tell(self, method: str, *args: object) -> None: ...
    def _tell_optional(self, method: str, *args: object) -> None: ...

    def local_hour_month(self, now: datetime | None = None) -> tuple[int, int]:
        """The scenario's local hour and month at ``now`` (the clock's time without)."""
        local = (now or self._clock()).astimezone(self._zone)
        return local.hour, local.month

    def drain(self, nodes: Sequence[str], dry_run: bool, timeout: float) -> DrainPlan:
        """Move the running replicas off ``nodes`` (``draining``), on the loop thread at its
        next cycle; with ``dry_run`` the plan only. Raises ``TimeoutError`` when the loop does
        not get to it within ``timeout`` seconds (it may still run)."""
        return self._ask(lambda now: self._drain(nodes, dry_run, now), timeout)

    def rebalance(
        self, dry_run: bool, max_moves: int, sites: Sequence[str], timeout: float
    ) -> DrainPlan:
        """Empty powered nodes onto other powered ones, and dearer sites' onto cheaper ones,
        where that lowers the objective (``draining.plan_rebalance``), at most ``max_moves``
        moves (0: no limit), on the loop thread; with ``dry_run`` the plan only.
        ``TimeoutError`` as ``drain``.

        The plan carries the floor of the running work (``floors.objective_floor``, at most
        ``FLOOR_TIME_LIMIT_S`` of solving on the caller's thread, not the loop's), so that its
        gap says how much a fuller re-optimisation could still gain."""
        started = time.monotonic()
        work: list[Problem] = []

        def plan_it(now: datetime) -> DrainPlan:
            work.append(self.running_work(now))
            return self._rebalance(dry_run, max_moves, sites, now)

        plan = self._ask(plan_it, timeout)
        limit = min(FLOOR_TIME_LIMIT_S, (timeout - (time.monotonic() - started)) / 2)
        if work and limit > 0.05:
            plan.objective_bound = objective_floor(work[0], self.params, limit)
        return plan

    def _ask(self, fn: Callable[[datetime], DrainPlan], timeout: float) -> DrainPlan:
        done: Future[object] = Future()
        self._requests.put((fn, done))
        self._mailbox.nudge()
        plan = done.result(timeout)
        assert isinstance(plan, DrainPlan)
        return plan

    def _serve_requests(self, now: datetime) -> None:
        while True:
            try:
                fn, done = self._requests.get_nowait()
            except queue.Empty:
                return
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(fn(now))
            except BaseException as e:  # the asker raises it; the loop goes on
                done.set_exception(e)

    def _drain(self, nodes: Sequence[str], dry_run: bool, now: datetime) -> DrainPlan:
        problem = self._moves_problem(now)
        if not dry_run:  # a batch solved before the cordon does not land there either
            self._cordoned = self._cordoned | set(nodes)
        holders = self._allocation.holders()
        plan = plan_drain(problem, self.params, holders, nodes, self._cordoned)
        return plan if dry_run else self._apply_moves(plan, now)

    def _rebalance(
        self, dry_run: bool, max_moves: int, sites: Sequence[str], now: datetime
    ) -> DrainPlan:
        problem = self._moves_problem(now)
        holders = self._allocation.holders()
        plan = plan_rebalance(problem, self.params, holders, self._cordoned, max_moves, sites)
        return plan if dry_run else self._apply_moves(plan, now)

    def _rebalance_if_due(self, now: datetime) -> None:
        """The periodic rebalance (``LoopConfig.rebalance_every_s``), when its time has come."""
        every = self.config.rebalance_every_s
        if every <= 0:
            return
        if self._rebalanced_at is None:
            self._rebalanced_at = now
            return
        if (now - self._rebalanced_at).total_seconds() < every:
            return
        self._rebalanced_at = now
        running = sum(len(w.placements) for w in self._allocation.holders())
        budget = max(1, int(running * self.config.rebalance_move_share))
        try:
            plan = self._rebalance(False, budget, (), now)
        except StoreError as e:
            log.warning("periodic rebalance not committed: %s", e)
            return
        self.moves += len(plan.moves)

    def running_work(self, now: datetime) -> Problem:
        """The work running at ``now`` (not reservations) as a problem on the empty cluster,
        cordoned nodes closed: the problem of the floor no placement of it can beat
        (``floors.objective_floor``). Call it on the loop's thread (or between cycles)."""
        hour, month = self.local_hour_month(now)
        running = [
            PendingWorkload(w.id, w.spec)
            for w in self._allocation.holders()
            if w.placements and not w.starts_after(now)
        ]
        empty, _ = without_room_on(Cluster(self.scenario), None, self._cordoned)
        return Problem(self.scenario, empty, tuple(running), hour, month)

    def _moves_problem(self, now: datetime) -> Problem:
        hour, month = self.local_hour_month(now)
        return Problem(
            scenario=self.scenario,
            cluster=self._allocation.cluster,
            workloads=(),
            hour=hour,
            month=month,
            now=now,
            forecast=self._forecast,
            timeline=self._allocation.timeline,  # moves leave reservations their room
        )

    def _apply_moves(self, plan: DrainPlan, now: datetime) -> DrainPlan:
        """Commit ``plan``'s moves; then the allocation holds the new placements."""
        if not plan.placements:
            return plan
        self._moved_since_send = True
        holders = {wid: self._allocation.holder(wid) for wid in plan.placements}
        moves = {wid: (holders[wid], reps, cost) for wid, (reps, cost) in plan.placements.items()}
        with self._showing():
            done = self.store.move(moves, now)
            self._allocation.moved(done)  # all at once: the plan moved them together
            self._publish()
        for w in done:
            self._tell("on_state_change", w, WorkloadState.PLACED)
            self._tell_optional("on_moved", holders[w.id], w, now)
        return plan

    def _preempt(
        self, pending: Sequence[Workload], why: Mapping[str, Unfit], now: datetime
    ) -> None:
        """Displace lower-priority running work for what a batch left ``pending`` for want of
        room (``loop.preempting``), if any may and can be."""
        if not self.config.preemption or self._stopping or not pending:
            return  # most cycles: nothing left pending, so no list of every holder to build
        stranded = self._preempter.stranded(pending, why, self._allocation.holders(), now)
        if not stranded:
            return
        # (readers wait for the planning too, within ``preempt_budget_s``: preemption is rare)
        with self._showing():
            try:
                done = self._preempter.preempt(
                    stranded,
                    self._moves_problem(now),
                    self.params,
                    self._allocation,
                    self._queue,
                    self._cordoned,
                    now,
                )
            except StoreError:
                log.exception("preemptions not committed; the stranded work waits")
                return
            if done is None:
                return
            self._moved_since_send = True  # a batch solved meanwhile may find its room taken
            with self._lock:
                for w in done.victims:
                    self._counters.change(w.id, S.PLACED, S.PENDING, "")
                    self._counters.change(w.id, S.PENDING, S.PENDING, ReasonCode.PRIORITY)
                self._counters.placed([w.id for w, _ in done.placed])
                self._share_allocation()
        for w in done.victims:
            self._tell("on_state_change", replace(w, state=S.PREEMPTED), S.PLACED)
            self._tell("on_state_change", w, S.PREEMPTED)
        for w, victims in done.placed:
            self._tell("on_state_change", w, S.PENDING)
            self._tell_optional("on_preempted", w, victims, now)
