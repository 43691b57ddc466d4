"""``LoopConfig``: how the scheduling loop batches, solves and rests."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LoopConfig:
    batch_window_s: float = 0.02  # gather a batch this long after the first new work
    max_batch_workloads: int = 3000  # the rest waits for the next cycle
    # and at most this many replicas (but at least one workload, however large): the solver's
    # time grows with the replicas it places (10,000 take it ~0.2-0.4 s against a 50 ms budget,
    # 10 million 91 s), so a huge request is placed over many cycles of about the budget,
    # other tenants' work taken in between (WorkQueue is fair across tenants)
    max_batch_replicas: int = 2_500
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
    # hours ahead the timeline keeps (reservations of deferrable work start within it)
    horizon_hours: int = 48
    # reservations planned again per cycle after a trigger (a new forecast, capacity freed)
    replan_per_cycle: int = 8
    # Periodic rebalancing (``OperatorService.Rebalance`` in the loop): every this many seconds
    # of the loop's clock, the least used powered nodes are emptied onto others where that
    # lowers the cost, at most ``rebalance_move_share`` of the running replicas moved (at least
    # one). 0: never (the default: moves are the operator's to ask for).
    rebalance_every_s: float = 0.0
    rebalance_move_share: float = 0.02
    # Preemption (``loop.preempting``): a batch's PENDING work of higher priority that fits only
    # by displacing lower-priority running work displaces the fewest, cheapest of it, at most
    # ``preempt_per_cycle`` preemptors a cycle, planned within ``preempt_budget_s``. False:
    # higher priority wins only the capacity that is free.
    preemption: bool = True
    preempt_per_cycle: int = 8
    preempt_budget_s: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.batch_window_s <= 10:
            raise ValueError(f"batch_window_s must be in 0..10 (got {self.batch_window_s})")
        if self.max_batch_workloads < 1:
            raise ValueError("max_batch_workloads must be >= 1")
        if self.max_batch_replicas < 1:
            raise ValueError("max_batch_replicas must be >= 1")
        if self.solve_budget_s <= 0:
            raise ValueError("solve_budget_s must be > 0")
        if self.rest_from_batch < 1:
            raise ValueError("rest_from_batch must be >= 1")
        if not 2 <= self.horizon_hours <= 24 * 14:
            raise ValueError(f"horizon_hours must be in 2..336 (got {self.horizon_hours})")
        if self.replan_per_cycle < 0:
            raise ValueError("replan_per_cycle must be >= 0")
        if self.rebalance_every_s < 0 or not 0 < self.rebalance_move_share <= 1:
            raise ValueError(
                "rebalance_every_s must be >= 0 and rebalance_move_share in (0, 1] (got "
                f"{self.rebalance_every_s}, {self.rebalance_move_share})"
            )
        if self.preempt_per_cycle < 1 or self.preempt_budget_s <= 0:
            raise ValueError(
                "preempt_per_cycle must be >= 1 and preempt_budget_s > 0 (got "
                f"{self.preempt_per_cycle}, {self.preempt_budget_s})"
            )
        if self.lp_bound_from_batch < 0:
            raise ValueError("lp_bound_from_batch must be >= 0")
        if not (0 <= self.rest_ratio <= 10 and 0 <= self.max_rest_s <= 10):
            raise ValueError(
                f"rest_ratio and max_rest_s must be in 0..10 (got {self.rest_ratio}, "
                f"{self.max_rest_s})"
            )
