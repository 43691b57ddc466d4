"""The scheduling side of one server: the loop while this server leads, a view while it does not.

Every server serves the API; one, the leader, runs the scheduling loop (``store.leadership``).
``Replica`` is what the servicers see as ``Scheduling``. On start, and then every ``poll_s``
seconds on a thread of its own when the store is shared, it tries to take the store's lease; the
server that has it builds a loop from the store (so a new leader starts from what the old one
committed) whose cycle commits name its term. It checks the lease as often, and when it is lost
(the database restarted, the connection broke) it stops the loop and tries again like the
others: the loop pauses while the store is away and resumes by itself.

A follower on a shared store keeps a warm solver ready (``StandbySolver``: a solver process that
has solved once), built in the background when it starts following, and hands it to the loop it
builds when it wins the lease: the new leader's first placement does not wait for a solver
process to start. A follower is ready (``wait_ready``: the server serves) once its standby is
warm. SQLite's only server leads at once and keeps none.

On a shared store the leader learns of work from the events of every server (a subscription
taken before the loop loads, the events up to what the load reflects skipped); on SQLite, the
only server, RPC threads hand it work directly, as before.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence

from scheduler.domain import DrainPlan, Scenario, Workload, WorkloadState
from scheduler.domain.forecast import Forecast
from scheduler.loop import (
    LoopConfig,
    LoopObserver,
    SchedulingLoop,
    Snapshot,
    SolverClient,
    StandbySolver,
)
from scheduler.solver import SolverParams
from scheduler.store import StoreError, Subscription
from scheduler.store.base import NotLeaderError
from scheduler.store.leadership import FencedStore
from scheduler.store.sql import SqlStore

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often a follower tries the lease, and a leader checks it
VIEW_REFRESH_S = 10.0  # how often a follower reloads the view its snapshots come from


def holder_name() -> str:
    """This server in the ``leadership`` row: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Replica:
    """``Scheduling`` for the servicers, over the loop this server runs while it leads."""

    def __init__(
        self,
        store: SqlStore,
        scenario: Scenario,
        *,
        params: SolverParams | None = None,
        observers: Sequence[LoopObserver] = (),
        config: LoopConfig | None = None,
        on_leadership: Callable[[bool], None] | None = None,
        poll_s: float = POLL_S,
        forecast: Forecast | None = None,
    ) -> None:
        self._store = store
        self._shared = store.shared
        self._lease = store.leader_lease(holder_name())
        self.scenario = scenario
        self._params = params or SolverParams()
        self._observers = tuple(observers)
        self._config = config or LoopConfig()
        self._on_leadership = on_leadership
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._loop: SchedulingLoop | None = None  # while leading
        self._view: SchedulingLoop | None = None  # what snapshots come from
        self._view_at = 0.0
        self._subscription: Subscription | None = None
        self._lost = threading.Event()  # the leader's feed of events broke: lead anew
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.term: int | None = None
        self._forecast = forecast  # None: the scenario's day profile
        # the solver for the loop to come, kept warm while following (a shared store only)
        self._standby = (
            StandbySolver(
                scenario,
                self._params,
                process=self._config.solver_process,
                seed=self._config.seed,
            )
            if self._shared
            else None
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Lead at once if the lease is free (SQLite: it must be; ``StoreError`` otherwise);
        on a shared store, keep trying on a thread of its own."""
        term = self._lease.try_acquire()
        if term is not None:
            self._lead(term)
        elif not self._shared:
            raise StoreError("the store's lease is held by another server")
        elif self._standby is not None:
            self._standby.ensure()
        if self._shared:
            self._thread = threading.Thread(target=self._elect, name="valley-leader", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self._step_down()
        self._lease.release()
        if self._standby is not None:
            self._standby.close()

    @property
    def standby_pid(self) -> int | None:
        """The process id of the warm solver kept for when this server leads, while there is
        one (a follower on a shared store, once it has started and warmed up)."""
        return None if self._standby is None else self._standby.pid

    @property
    def loop(self) -> SchedulingLoop | None:
        """The loop, while this server leads."""
        return self._loop

    @property
    def leading(self) -> bool:
        return self._loop is not None

    def wait_ready(self, timeout: float) -> bool:
        """See ``SchedulingLoop.wait_ready``; on a follower, until its standby solver is built
        (a server that starts following is ready once it could lead without starting one)."""
        loop = self._loop
        if loop is not None:
            return loop.wait_ready(timeout)
        return self._standby.wait_ready(timeout) if self._standby is not None else True

    # ------------------------------------------------------------------ Scheduling

    @property
    def params(self) -> SolverParams:
        return self._params

    def submitted(self, workloads: Sequence[Workload]) -> None:
        """On a shared store the leader learns of them from the events; here, directly."""
        loop = self._loop
        if loop is not None and not self._shared:
            loop.submitted(workloads)

    def state_changed(self, workload: Workload, old: WorkloadState) -> None:
        loop = self._loop
        if loop is not None and not self._shared:
            loop.state_changed(workload, old)

    def drain(self, nodes: Sequence[str], dry_run: bool, timeout: float) -> DrainPlan:
        """The leader's loop moves the replicas; a follower cannot (``NotLeaderError``)."""
        loop = self._loop
        if loop is None:
            raise NotLeaderError("this server does not run the scheduling loop: ask the leader")
        return loop.drain(nodes, dry_run, timeout)

    def rebalance(
        self, dry_run: bool, max_moves: int, sites: Sequence[str], timeout: float
    ) -> DrainPlan:
        """As ``drain``: the leader's loop does it."""
        loop = self._loop
        if loop is None:
            raise NotLeaderError("this server does not run the scheduling loop: ask the leader")
        return loop.rebalance(dry_run, max_moves, sites, timeout)

    def capacity_changed(self) -> None:
        """Here, to this server's loop; a leader elsewhere sees it when it reads the cordons
        at its next cycle."""
        loop = self._loop
        if loop is not None:
            loop.capacity_changed()

    def snapshot(self) -> Snapshot:
        """The leader's loop's snapshot; on a follower, the store as last loaded."""
        view = self._loop or self._view
        if view is None:
            view = self._refresh_view()
        return view.snapshot()

    # ------------------------------------------------------------------ leadership

    def _elect(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                if self._loop is not None:
                    if self._lost.is_set() or not self._lease.held():
                        self._step_down()
                    continue
                term = self._lease.try_acquire()
                if term is not None:
                    self._lead(term)
                    continue
                if self._standby is not None:  # after a step-down, or its child died
                    self._standby.ensure()
                if time.monotonic() - self._view_at > VIEW_REFRESH_S:
                    self._refresh_view()
            except StoreError as e:
                log.warning("leadership: %s", e)
            except Exception:
                log.exception("leadership failed; trying again")

    def set_forecast(self, forecast: Forecast) -> None:
        """Plan with ``forecast`` (any thread): the loop leading now, and those to come."""
        self._forecast = forecast
        loop = self._loop
        if loop is not None:
            loop.set_forecast(forecast)

    def _new_loop(
        self, store: FencedStore | SqlStore, solver: SolverClient | None = None
    ) -> SchedulingLoop:
        return SchedulingLoop(
            store,
            self.scenario,
            params=self._params,
            observers=self._observers,
            config=self._config,
            forecast=self._forecast,
            solver=solver,
        )

    def _lead(self, term: int) -> None:
        """Run the loop as the leader of ``term``: loaded from the store, fenced by the term,
        fed by every server's events from before the load on."""
        fenced = FencedStore(self._store, term if self._shared else None)
        subscription = self._store.subscribe() if self._shared else None
        # the standby's warm solver, the loop's to close from now on (None: it starts its own)
        solver = self._standby.take() if self._standby is not None else None
        try:
            loop = self._new_loop(fenced if self._shared else self._store, solver)
        except BaseException:
            if solver is not None:
                solver.close()
            raise
        try:
            loop.start()
        except BaseException:
            if subscription is not None:
                subscription.close()
            loop.stop(0)
            self._lease.release()
            raise
        self._lost.clear()
        with self._lock:
            self._loop, self._view, self.term = loop, loop, term
            self._subscription = subscription
        if subscription is not None:
            threading.Thread(
                target=self._feed,
                args=(loop, subscription, fenced.as_of),
                name="valley-leader-feed",
                daemon=True,
            ).start()
        if self._shared:
            how = "a warm standby solver" if solver is not None else "a new solver"
            log.info("leading (term %d, with %s)", term, how)
        self._tell(True)

    def _step_down(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
            subscription, self._subscription = self._subscription, None
        if loop is None:
            return
        self._tell(False)
        if subscription is not None:
            subscription.close()
        loop.stop()
        self._lease.release()
        if self._shared and not self._stop.is_set():
            log.warning("no longer leading (term %s)", self.term)
            if self._standby is not None:  # a follower again: ready for the next term
                self._standby.ensure()

    def _tell(self, leading: bool) -> None:
        if self._on_leadership is not None:
            try:
                self._on_leadership(leading)
            except Exception:
                log.exception("leadership observer failed")

    def _feed(self, loop: SchedulingLoop, subscription: Subscription, after: int) -> None:
        """Hand the loop the workloads created and cancelled (by any server) after event
        ``after``, in commit order, until ``subscription`` ends; a feed that fell too far
        behind (``lagged``) makes this server lead anew, from the store."""
        while True:
            events = subscription.get_batch(0.5)
            if not events:
                if subscription.closed:
                    if subscription.lagged:
                        log.warning("the leader's event feed fell behind; reloading")
                        self._lost.set()
                    return
                continue
            created: list[Workload] = []
            for ev in events:
                if ev.sequence <= after:
                    continue
                if ev.previous_state == WorkloadState.UNSPECIFIED:
                    created.append(ev.workload)
                elif ev.workload.state == WorkloadState.CANCELLED:
                    if created:
                        loop.submitted(created)
                        created = []
                    loop.state_changed(ev.workload, ev.previous_state)
            if created:
                loop.submitted(created)

    def _refresh_view(self) -> SchedulingLoop:
        """A loop loaded from the store and not run: what a follower's snapshots show."""
        view = self._new_loop(self._store)
        view.load()
        with self._lock:
            self._view, self._view_at = view, time.monotonic()
        return view
