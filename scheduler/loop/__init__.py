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

The parts, one concern each:

- ``scheduling``: ``SchedulingLoop`` (lifecycle, what RPC threads hand it, the cycle);
- ``moving``: ``LiveMoves``, the loop's drains, rebalances (asked and periodic) and
  preemptions of running replicas;
- ``mailbox``: ``Mailbox``, what RPC threads post to the loop thread, and its batching window;
- ``queue``: ``WorkQueue``, the PENDING workloads (ready, waiting, taken);
- ``allocation``: ``Allocation``, the cluster and the PLACED workloads holding it, completions;
- ``apply``: ``apply_result``, a solver's answer applied to a cluster (no loop state);
- ``draining``: ``plan_drain`` and ``plan_rebalance``, moves of running replicas;
- ``preempting``: ``Preempter``, higher-priority work displacing lower-priority work it
  needs the room of, and the rules against cascades and loops (``PreemptionHistory``);
- ``solver_client``: ``SolverClient``, solves in a child process (``SolverProcess``) or here;
  ``solver_start`` starts that child, forked from a forkserver that has the solver imported;
- ``standby``: ``StandbySolver``, a warm ``SolverClient`` a follower keeps for when it leads;
- ``counters``: ``StateCounters``, the counts per state and reason a snapshot shows;
- ``config`` and ``reports``: ``LoopConfig``; ``CycleReport``, ``LoopObserver``, ``Snapshot``.
"""

from __future__ import annotations

from scheduler.loop.config import LoopConfig
from scheduler.loop.reports import CycleReport, LoopObserver, Snapshot
from scheduler.loop.scheduling import SchedulingLoop, scenario_zone
from scheduler.loop.solver_client import (
    SolveFunction,
    SolverClient,
    SolverProcess,
    SolverProcessError,
)
from scheduler.loop.standby import StandbySolver

__all__ = [
    "CycleReport",
    "LoopConfig",
    "LoopObserver",
    "SchedulingLoop",
    "Snapshot",
    "SolveFunction",
    "SolverClient",
    "SolverProcess",
    "SolverProcessError",
    "StandbySolver",
    "scenario_zone",
]
