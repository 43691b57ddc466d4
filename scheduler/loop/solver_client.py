"""How the loop gets its problems solved: in a child process of its own (``SolverProcess``) or in
the loop's process, behind one ``SolverClient``.

Python runs one thread at a time, so a solve in the server's own process holds up its RPCs; a
child solves on another core. The child gets the scenario once; each solve sends the cluster's
free capacity and the batch, pickled by constructor call (``dumps``), and receives the
``PlacementResult``. If the child dies, the client solves in the loop's process and starts a
new child at most every ``RESTART_AFTER_S`` seconds: the one restart policy.

The child is forked from a forkserver that has imported the solver already (``solver_start``):
not forked from the server, whose grpc threads make ``fork`` unsafe, nor spawned, which would
import OR-Tools, numba and the solver again, about a second at every start.
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import io
import logging
import operator
import pickle
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

from scheduler.domain import (
    Cluster,
    Cost,
    Reason,
    ReplicaPlacement,
    Resources,
    Scenario,
    WorkloadSpec,
)
from scheduler.domain.forecast import Forecast
from scheduler.domain.timeline import Timeline
from scheduler.loop.solver_start import start_solver_process
from scheduler.solver import (
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    Unplaced,
    solve,
)

log = logging.getLogger(__name__)

RESTART_AFTER_S = 10.0  # a died solver process is started again at most this often


class SolveFunction(Protocol):
    """The solver seam, ``scheduler.solver.solve`` by default. One that runs in the solver
    process must be picklable (a module-level function)."""

    def __call__(
        self, problem: Problem, params: SolverParams, *, seed: int, deadline: float | None
    ) -> PlacementResult: ...


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


def dumps(obj: object) -> bytes:
    """``obj`` pickled as it crosses to and from the solver process."""
    out = io.BytesIO()
    pickler = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DISPATCH
    pickler.dump(obj)
    return out.getvalue()


def _solver_child(conn: Connection, scenario: Scenario, solve_fn: SolveFunction) -> None:
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
        (
            workloads,
            free,
            hour,
            month,
            gpu_target,
            params,
            seed,
            budget,
            now,
            forecast,
            timeline,
        ) = pickle.loads(message)
        deadline = None if budget is None else time.monotonic() + budget
        cluster = base.copy()
        cluster.free_cpu, cluster.free_mem, cluster.gpu_free, cluster.replicas_on = free
        problem = Problem(
            scenario,
            cluster,
            workloads,
            hour,
            month,
            gpu_target,
            now=now,
            forecast=None if forecast is None else Forecast(scenario, *forecast),
            timeline=None if timeline is None else Timeline.from_state(base, timeline),
        )
        try:
            result = solve_fn(problem, params, seed=seed, deadline=deadline)
            answer: tuple[bool, Any] = (True, result)
        except Exception as e:
            log.exception("solve failed in the solver process")
            answer = (False, f"{type(e).__name__}: {e}")
        try:
            conn.send_bytes(dumps(answer))
        except (EOFError, OSError):
            return


class SolverProcess:
    """``solve()`` in a child process of its own (see the module docstring). ``solve`` raises
    ``SolverProcessError`` if the child is gone (``alive`` then says False) and
    ``RuntimeError`` if the solver itself failed there. One caller at a time."""

    def __init__(self, scenario: Scenario, solve_fn: SolveFunction = solve) -> None:
        self.scenario = scenario
        self._conn, self._process = start_solver_process(
            _solver_child, (scenario, solve_fn), "valley-solver"
        )

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
            problem.now,
            None
            if (f := problem.forecast) is None
            else (f.zone, f.profiles, f.start_hour, f.source),
            None if problem.timeline is None else problem.timeline.state(),
        )
        try:
            self._conn.send_bytes(dumps(request))
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

    def kill(self) -> None:
        """End the child now, whatever it is solving (from any thread): a ``receive`` waiting
        for it raises ``SolverProcessError``."""
        self._process.kill()

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


class SolverClient:
    """Solves the loop's problems with ``solve_fn``: in a ``SolverProcess`` when ``process`` is
    set and the child is up, otherwise in this process. ``solve`` answers at once; ``send``
    hands a problem to the child for ``receive`` to collect later (the loop commits the last
    batch meanwhile), and says False when there is no child to take it. One caller at a time."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        process: bool,
        seed: int = 0,
        solve_fn: SolveFunction = solve,
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self._want_process = process
        self._solve_fn = solve_fn
        self._process: SolverProcess | None = None
        self._restart_at = 0.0  # monotonic time from which a died child may be started again
        self._abandoned = False  # the loop is stopping: nothing more is solved
        self._warm_in: int | None = None  # the child warmed up (its pid; 0: this process)

    def start(self) -> None:
        """Start the child process, if one is wanted."""
        if self._want_process and self._process is None:
            self._process = SolverProcess(self.scenario, self._solve_fn)

    def close(self) -> None:
        if self._process is not None:
            self._process.close()

    def abandon(self) -> None:
        """Stop solving at once (from any thread; the loop is stopping): the child is killed
        mid-solve, a ``receive`` waiting for it raises ``SolverProcessError``, and ``solve``
        and ``send`` take nothing more. Its batch is lost to nobody: the store has it PENDING.
        A solve in this process cannot be interrupted; it ends by its deadline."""
        self._abandoned = True
        if self._process is not None:
            self._process.kill()

    @property
    def can_send(self) -> bool:
        """Whether ``send`` may take a problem: a child process is wanted (it may be down)."""
        return self._process is not None

    @property
    def alive(self) -> bool:
        """Whether the child process is up."""
        return self._process is not None and self._process.alive

    @property
    def pid(self) -> int | None:
        """The child process's id, if there is one."""
        return None if self._process is None else self._process.pid

    @property
    def warm(self) -> bool:
        """Whether ``warm_up`` has solved where the next solve runs: in the child, still up
        (a child started again since is cold), or in this process when no child is wanted."""
        if not self._want_process:
            return self._warm_in is not None
        return self.alive and self._warm_in == self.pid

    def solve(self, problem: Problem, params: SolverParams, deadline: float) -> PlacementResult:
        """``problem`` solved, in the child if it is up; raises what the solver raised, and
        ``SolverProcessError`` once the loop is stopping (``abandon``)."""
        if self._abandoned:
            raise SolverProcessError("the solver is stopping")
        child = self._child()
        if child is not None:
            try:
                return child.solve(problem, params, seed=self.seed, deadline=deadline)
            except SolverProcessError:
                if self._abandoned:  # killed because the loop is stopping: not solved here
                    raise
                self._died("the solver process died; solving in the loop's process meanwhile")
        return self._solve_fn(problem, params, seed=self.seed, deadline=deadline)

    def send(self, problem: Problem, params: SolverParams, deadline: float) -> bool:
        """Hand ``problem`` to the child (its cluster is copied now) for ``receive``; False if
        there is no child to take it."""
        child = self._child()
        if child is None:
            return False
        try:
            child.send(problem, params, seed=self.seed, deadline=deadline)
        except SolverProcessError:
            self._died("the solver process died; solving in the loop's process meanwhile")
            return False
        return True

    def receive(self) -> PlacementResult:
        """The answer to the last ``send``. Raises ``SolverProcessError`` if the child died
        with it (the problem is lost: solve it again) and ``RuntimeError`` if the solver
        failed on it."""
        assert self._process is not None, "receive() without send()"
        try:
            return self._process.receive()
        except SolverProcessError:
            self._died("the solver process died with a batch")
            raise

    def warm_up(self, cluster: Cluster, params: SolverParams) -> None:
        """Solve a one-replica problem once, so that the first real solve does not pay for
        imports and start-up (about a second for OR-Tools, more for a child process). Nothing
        to do when it is ``warm`` already (a standby handed to a loop, ``StandbySolver``)."""
        if self.warm:
            return
        spec = WorkloadSpec(tenant="warm-up", resources=Resources(1, 1))
        problem = Problem(self.scenario, cluster, (PendingWorkload("warm-up", spec),))
        try:
            self.solve(problem, params, time.monotonic() + 5.0)
        except Exception:
            log.exception("solver warm-up failed")
            return
        self._warm_in = self.pid or 0

    def _child(self) -> SolverProcess | None:
        """The child process if it is up, started again first if it died and may restart."""
        if self._abandoned:
            return None
        child = self._process
        if child is not None and not child.alive and time.monotonic() >= self._restart_at:
            log.warning("starting the solver process again")
            self._restart_at = time.monotonic() + RESTART_AFTER_S
            child = self._process = SolverProcess(self.scenario, self._solve_fn)
        return child if child is not None and child.alive else None

    def _died(self, message: str) -> None:
        if self._abandoned:
            log.info("solver process stopped mid-solve: the loop is stopping")
            return
        log.exception(message)
        self._restart_at = time.monotonic() + RESTART_AFTER_S
