"""``StandbySolver``: a warm solver kept ready by a follower, for the loop it runs when it leads.

A new leader's loop would otherwise start its solver process and warm it up (imports, OR-Tools'
first solve) before its first placement: about two seconds of a failover, more under load. A
follower on a shared store builds one ahead, on a thread of its own: a started ``SolverClient``
whose child has solved a one-replica problem. ``take`` hands it to the loop (which owns and
closes it from then on); ``ensure`` builds the next one, and replaces one whose child died (at
most every ``RESTART_AFTER_S`` seconds, as the client restarts a child); ``close`` ends it and
any build in progress, so that no solver process outlives the server.
"""

from __future__ import annotations

import logging
import threading
import time

from scheduler.domain import Cluster, Scenario
from scheduler.loop.solver_client import RESTART_AFTER_S, SolveFunction, SolverClient
from scheduler.solver import SolverParams, solve

log = logging.getLogger(__name__)

BUILD_WAIT_S = 10.0  # how long ``take`` waits for a build in progress (it is sooner than anew)


class StandbySolver:
    """One warm ``SolverClient`` at most, built in the background (see the module docstring).
    Its methods may be called from any thread."""

    def __init__(
        self,
        scenario: Scenario,
        params: SolverParams,
        *,
        process: bool,
        seed: int = 0,
        solve_fn: SolveFunction = solve,
    ) -> None:
        self.scenario = scenario
        self._params = params
        self._process = process
        self._seed = seed
        self._solve_fn = solve_fn
        self._lock = threading.Lock()
        self._ready: SolverClient | None = None
        self._building: threading.Thread | None = None  # the build whose client is kept
        self._builds: set[threading.Thread] = set()  # every build still running
        self._build_after = 0.0  # monotonic time before which no build starts (a child died)
        self._built_at = -RESTART_AFTER_S  # when the last build started (monotonic)
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The ready standby's solver process id (None while there is none, or being built)."""
        ready = self._ready
        return None if ready is None else ready.pid

    def ensure(self) -> None:
        """Start building a standby unless one is ready or being built; close a ready one whose
        child died, and build its replacement once a build may start again."""
        dead = None
        with self._lock:
            if self._closed or self._building is not None:
                return
            if self._ready is not None:
                if self._ready.warm:
                    return
                dead, self._ready = self._ready, None
                # at once, unless it died young: then as a died child is started again
                self._build_after = self._built_at + RESTART_AFTER_S
                log.warning("the standby solver process died; building another")
            if time.monotonic() >= self._build_after:
                thread = threading.Thread(target=self._build, name="valley-standby", daemon=True)
                self._building, self._built_at = thread, time.monotonic()
                self._builds.add(thread)
                thread.start()
        if dead is not None:
            dead.close()

    def wait_ready(self, timeout: float) -> bool:
        """Block until a build in progress has ended (True at once when none is), False after
        ``timeout`` seconds."""
        building = self._building
        if building is None:
            return True
        building.join(timeout)
        return not building.is_alive()

    def take(self, wait_s: float = BUILD_WAIT_S) -> SolverClient | None:
        """The warm standby, for a loop to own (waiting up to ``wait_s`` seconds for a build in
        progress); None when there is none or its child died (the loop then starts its own)."""
        building = self._building
        if building is not None:
            building.join(wait_s)
        with self._lock:
            client, self._ready = self._ready, None
            self._building = None  # a build still running is closed when it ends
        if client is not None and not client.warm:
            client.close()
            return None
        return client

    def close(self, timeout: float = 15.0) -> None:
        """Close the standby and wait (up to ``timeout`` seconds) for builds in progress, which
        close what they built: no solver process is left behind."""
        with self._lock:
            self._closed = True
            client, self._ready = self._ready, None
            builds = list(self._builds)
        if client is not None:
            client.close()
        deadline = time.monotonic() + timeout
        for thread in builds:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _build(self) -> None:
        me = threading.current_thread()
        client = SolverClient(
            self.scenario, process=self._process, seed=self._seed, solve_fn=self._solve_fn
        )
        kept = False
        try:
            try:
                client.start()
                client.warm_up(Cluster(self.scenario), self._params)
            except Exception:
                log.exception("building the standby solver failed")
            with self._lock:
                mine = self._building is me  # not taken meanwhile
                if mine:
                    self._building = None
                kept = mine and not self._closed and client.warm
                if kept:
                    self._ready = client
                elif mine and not client.warm:  # it failed: not again at once
                    self._build_after = time.monotonic() + RESTART_AFTER_S
        finally:
            if not kept:  # closed or taken meanwhile, or not warm
                client.close()
            with self._lock:  # last: ``close`` waits for this thread, and so for the client
                self._builds.discard(me)
