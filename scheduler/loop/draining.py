"""Moving running replicas: off nodes (``OperatorService.DrainNodes``), and onto fewer
powered nodes (``OperatorService.Rebalance``, ``plan_rebalance`` at the end).

A drain moves only the replicas on the drained nodes; a workload's other replicas stay. Each
replica goes where its own rules allow - a pool its eligibility names (SLO, residency, GPU
model), never a drained or cordoned node, a GANG workload's replicas in one site, a SPREAD
workload over at least ``min_sites`` sites, at most its per-node limit on a node - the site
the rest of its run costs least in first (``RunMoney``: the forecast's mean rates over that
run where the problem has a clock, else the hour's), powered nodes first, best fit within them
(as the packing's repairs move replicas). A replica that has nowhere to go stays, listed with
why. A reservation that has not started holds no node yet: it is left to be planned again and
listed.

Nothing here changes the caller's cluster: ``plan_drain`` works on a copy and returns the moves,
the new placements and the hourly cost of the cluster before and after.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace

import numpy as np

from scheduler.domain import (
    Cluster,
    Cost,
    DrainPlan,
    Move,
    ReplicaPlacement,
    Resources,
    Stuck,
    Topology,
    Workload,
    dynamic_watts,
    site_costs,
)
from scheduler.loop.allocation import start_of
from scheduler.solver import Problem, SolverParams, greedy
from scheduler.solver.filters import eligibility_of, sites_for_a_move
from scheduler.solver.hourly_room import HourlyRoom, Span
from scheduler.solver.objective import (
    carbon_price,
    cheapest_site_order,
    rates_over_runs,
    site_rates,
    spec_rates,
    workload_cost,
)
from scheduler.solver.runs import OPEN_ENDED_S, RunMoney


def cluster_cost(cluster: Cluster, hour: int, month: int) -> Cost:
    """The whole cluster's cost per hour."""
    total = Cost()
    for c in site_costs(cluster, hour, month).values():
        total = total + c
    return total


def plan_drain(
    problem: Problem,
    params: SolverParams,
    holders: Sequence[Workload],
    drained: Collection[str],
    cordoned: Collection[str] = (),
) -> DrainPlan:
    """The moves that empty the ``drained`` nodes of ``holders``' replicas on ``problem``'s
    cluster (not changed), keeping every rule (module docstring)."""
    cluster = problem.cluster.copy()
    plan = DrainPlan(
        cost_before=cluster_cost(cluster, problem.hour, problem.month),
        carbon_cny_per_kg=carbon_price(problem, params) / 1000.0,
    )
    room = HourlyRoom(problem)
    out = {cluster.index[n] for n in (*drained, *cordoned) if n in cluster.index}
    gone = {cluster.index[n] for n in drained if n in cluster.index}
    index = greedy.NodeIndex(cluster)
    rates = site_rates(problem)
    cprice = carbon_price(problem, params)
    # one span of the forecast covers every holder's run (what is left of a run is no longer)
    runs = rates_over_runs(problem, cprice, (w.spec for w in holders))
    # sites ranked by what the rest of a workload's run costs there, as placing it ranks them
    money = RunMoney(problem, cprice, rates, runs)
    for w in holders:
        on = [p for p in w.placements if p.node in cluster.index and cluster.index[p.node] in gone]
        if not on:
            continue
        if w.starts_after(problem.now):
            plan.stuck += [
                Stuck(w.id, p.replica, p.node, "a reservation that has not started: not moved")
                for p in on
            ]
            continue
        left = max(_left(problem, w, p) for p in on)
        order = sorted(problem.scenario.site_names, key=lambda s: money(s, left))
        scorer = greedy.site_ranked(order, cluster.site_names, greedy.awake_first(greedy.best_fit))
        reps = _move_workload(problem, params, cluster, index, scorer, w, on, out, plan, room)
        if reps is not None:
            cost = workload_cost(problem, w.spec, reps, spec_rates(problem, w.spec, rates, runs))
            plan.placements[w.id] = (reps, cost)
    plan.cost_after = cluster_cost(cluster, problem.hour, problem.month)
    return plan


def _move_workload(
    problem: Problem,
    params: SolverParams,
    cluster: Cluster,
    index: greedy.NodeIndex,
    scorer: greedy.NodeScorer,
    w: Workload,
    on: Sequence[ReplicaPlacement],
    out: set[int],
    plan: DrainPlan,
    room: HourlyRoom,
    awake_only: bool = False,
    to_site: str = "",
) -> tuple[ReplicaPlacement, ...] | None:
    """Move ``w``'s replicas ``on`` drained nodes, each where its rules allow (with
    ``awake_only``, only to nodes that hold replicas now: a rebalance wakes none); the
    workload's placements after (None if none moved). ``to_site``: every replica to that site
    (the caller moves them all, so a GANG stays whole). ``cluster`` is changed: the moves are
    taken, and so is the room they take from and give back to reservations later (``room``:
    each replica in the hours of the rest of its run)."""
    spec, r = w.spec, w.spec.resources
    e = eligibility_of(problem.scenario, cluster, [(w.id, spec)], params)[w.id]
    span = _run_span(room, w)
    reps = {p.replica: p for p in w.placements}
    per_node = Counter(p.node for p in w.placements)
    moved = False
    for p in on:
        others = [q for q in reps.values() if q.replica != p.replica]
        other_sites = {q.site for q in others}
        if to_site:
            sites = [to_site] if to_site in e.sites else []
        else:
            sites = sites_for_a_move(spec.topology, spec.min_sites, e.sites, p.site, other_sites)
        pools = tuple(pi for s in sites for pi in e.pools_by_site.get(s, ()))
        nodes = index.nodes(pools)
        keep = [
            n
            for n in nodes.tolist()
            if n not in out
            and per_node[cluster.node_names[n]] < e.per_node
            and (not awake_only or cluster.replicas_on[n] > 0)
        ]
        node = -1
        if keep:
            candidates = np.asarray(keep, dtype=np.int64)
            fit = candidates[room.fit_mask(cluster, r, candidates, span)]
            if len(fit):
                node = int(fit[int(np.argmin(scorer(cluster, fit, r)))])
        if node < 0:
            why = "no node its rules allow has room" if pools else "no site its rules allow"
            plan.stuck.append(Stuck(w.id, p.replica, p.node, why))
            continue
        cluster.release(cluster.index[p.node], r, p.gpu_indices)
        room.give_back(cluster.index[p.node], r, p.gpu_indices, span)
        gpus = cluster.allocate(node, r, room.choose_gpus(cluster, node, r, span))
        room.take(node, r, gpus, span)
        new = greedy.placement(cluster, problem.scenario, spec, p.replica, node, gpus)
        new = replace(new, start_time=p.start_time)  # a move does not restart the replica
        reps[p.replica] = new
        per_node[p.node] -= 1
        per_node[new.node] += 1
        plan.moves.append(Move(w.id, p.replica, p.node, new.node))
        moved = True
    if not moved:
        return None
    return tuple(reps[i] for i in sorted(reps))


def plan_rebalance(
    problem: Problem,
    params: SolverParams,
    holders: Sequence[Workload],
    cordoned: Collection[str] = (),
    max_moves: int = 0,
    sites: Collection[str] = (),
    budget_s: float = 2.0,
) -> DrainPlan:
    """Moves that lower what the running work costs: first whole workloads to a site where the
    rest of their run costs less (``_Rebalancing.to_cheaper_sites``); then moves that let
    powered nodes power down: the powered nodes (of ``sites``, all when empty) whose emptying
    saves the most idle power per move first (``_worth_emptying``), each emptied onto other
    powered nodes - every replica where its rules allow, or none of the node's - when that
    lowers the cluster's objective; then nodes of dearer sites emptied onto cheaper ones. At
    most ``max_moves`` replica moves (0: no limit), for at most ``budget_s`` seconds.
    ``problem.cluster`` is not changed."""
    cluster = problem.cluster.copy()
    plan = DrainPlan(
        cost_before=cluster_cost(cluster, problem.hour, problem.month),
        carbon_cny_per_kg=carbon_price(problem, params) / 1000.0,
    )
    blocked = {cluster.index[n] for n in cordoned if n in cluster.index}
    room = HourlyRoom(problem)
    index = greedy.NodeIndex(cluster)
    order = cheapest_site_order(problem, params)
    scorer = greedy.site_ranked(order, cluster.site_names, greedy.awake_first(greedy.best_fit))
    current = {w.id: w for w in holders if not w.starts_after(problem.now)}
    by_node: dict[str, dict[str, list[ReplicaPlacement]]] = {}
    for w in current.values():
        for p in w.placements:
            by_node.setdefault(p.node, {}).setdefault(w.id, []).append(p)
    end = time.monotonic() + budget_s
    state = _Rebalancing(problem, params, cluster, index, scorer, room, blocked, current, plan)
    awake = _worth_emptying(cluster, state.longest, state.idle_cny_h, sites)
    # whole workloads to a site cheaper over the rest of their run (a GANG moves whole)
    state.to_cheaper_sites(by_node, max_moves, sites, end)
    for a in awake:  # onto powered nodes: the emptied node powers down
        if time.monotonic() > end:
            break
        state.empty(a, by_node, max_moves, awake_only=True)
    # then from the dearest sites to cheaper ones, waking nodes there where that pays
    dear = sorted(
        (a for a in awake if state.cluster.replicas_on[a] > 0),
        key=lambda a: -order.index(cluster.site_of(a)),
    )
    for a in dear:
        if time.monotonic() > end or order.index(cluster.site_of(a)) == 0:
            break
        state.empty(a, by_node, max_moves, awake_only=False)
    cluster = state.cluster
    plan.cost_after = cluster_cost(cluster, problem.hour, problem.month)
    return plan


class _Rebalancing:
    """``plan_rebalance``'s state: the cluster as planned so far, the workloads where they
    would be, and the objective per hour of that."""

    def __init__(
        self,
        problem: Problem,
        params: SolverParams,
        cluster: Cluster,
        index: greedy.NodeIndex,
        scorer: greedy.NodeScorer,
        room: HourlyRoom,
        blocked: set[int],
        current: dict[str, Workload],
        plan: DrainPlan,
    ) -> None:
        self.problem, self.params, self.cluster = problem, params, cluster
        self.index, self.scorer, self.room, self.blocked = index, scorer, room, blocked
        self.current, self.plan = current, plan
        self.rates = site_rates(problem)
        # a moved workload's cost per hour of its run, as placing it counts it
        self.runs = rates_over_runs(
            problem, carbon_price(problem, params), (w.spec for w in current.values())
        )
        self.objective = plan.objective(plan.cost_before)
        # seconds each node's work keeps it powered
        self.longest = remaining_runs(problem, cluster, current.values())
        cprice = carbon_price(problem, params)
        money = np.asarray([self.rates[s].money_per_it_watt(cprice) for s in cluster.site_names])
        self.idle_w = np.asarray([pool.idle_watts for pool in cluster.pools])[cluster.node_pool]
        self.idle_cny_h = self.idle_w * money[cluster.node_site]  # a powered node's idle, CNY/h

    def empty(
        self,
        a: int,
        by_node: dict[str, dict[str, list[ReplicaPlacement]]],
        max_moves: int,
        awake_only: bool,
    ) -> None:
        """Move every replica off node ``a`` where its rules allow (``awake_only``: onto
        powered nodes only), if all can go within ``max_moves`` and the objective falls.
        Each replica prefers a node whose own work outlasts it (a node kept up longer by a
        moved replica gives back part of the idle time emptying ``a`` saves); onto powered
        nodes, the idle time added must be worth less than the idle time saved."""
        problem, plan, current = self.problem, self.plan, self.current
        on = by_node.get(self.cluster.node_names[a], {})
        count = sum(len(ps) for ps in on.values())
        if not count or (max_moves and len(plan.moves) + count > max_moves):
            return
        trial, longest, room = self.cluster.copy(), self.longest.copy(), self.room
        mark = room.mark()  # the trial's changes to the later room are taken back if it fails
        scratch = DrainPlan()
        moved: dict[str, tuple[ReplicaPlacement, ...]] = {}
        added = 0.0  # CNY of idle power the moves add on the nodes they go to
        for wid, ps in on.items():
            run = max(_left(problem, current[wid], p) for p in ps)
            first = len(scratch.moves)
            reps = _move_workload(
                problem, self.params, trial, self.index, self._outlasting(longest, run),
                current[wid], ps, self.blocked | {a}, scratch, room, awake_only=awake_only,
            )  # fmt: skip
            if reps is not None:
                moved[wid] = reps
            for m in scratch.moves[first:]:
                t = trial.index[m.to_node]
                added += self.idle_cny_h[t] * max(0.0, run - longest[t]) / 3600.0
                longest[t] = max(longest[t], run)
        after = plan.objective(cluster_cost(trial, problem.hour, problem.month))
        # a service moved further from its users costs what the solver's objective prices it
        farther = sum(self._latency(current[wid], reps) for wid, reps in moved.items())
        if (
            scratch.stuck
            or after + farther >= self.objective - 1e-9
            # keeping the others up longer costs more than powering ``a`` down saves
            or (awake_only and added >= self.idle_cny_h[a] * self.longest[a] / 3600.0)
        ):
            room.undo_to(mark)  # the node stays as it is
            return
        longest[a] = 0.0
        self._take(trial, after, longest, scratch, moved, by_node)

    def _take(
        self,
        trial: Cluster,
        after: float,
        longest: np.ndarray,
        scratch: DrainPlan,
        moved: dict[str, tuple[ReplicaPlacement, ...]],
        by_node: dict[str, dict[str, list[ReplicaPlacement]]],
    ) -> None:
        """Make a trial the plan: its cluster, objective, nodes' remaining runs, moves and the
        moved workloads' placements (its changes to the later room are ``self.room``'s)."""
        self.cluster, self.objective, self.longest = trial, after, longest
        self.plan.moves += scratch.moves
        for wid, reps in moved.items():
            for p in self.current[wid].placements:
                by_node[p.node].pop(wid, None)
            self.current[wid] = replace(self.current[wid], placements=reps)
            for p in reps:
                by_node.setdefault(p.node, {}).setdefault(wid, []).append(p)
            spec = self.current[wid].spec
            rates = spec_rates(self.problem, spec, self.rates, self.runs)
            self.plan.placements[wid] = (reps, workload_cost(self.problem, spec, reps, rates))

    def to_cheaper_sites(
        self,
        by_node: dict[str, dict[str, list[ReplicaPlacement]]],
        max_moves: int,
        sites: Collection[str],
        end: float,
    ) -> None:
        """Move whole workloads (every replica, so a GANG stays in one site) to a site where
        the rest of their run costs less, the workloads that save the most per replica moved
        first, while ``max_moves`` and the time (``end``, monotonic) allow. Work that landed
        in the dear site while the cheap one was full stays there for hours (GPU training
        runs up to a day) after room has come back; a node-by-node rebalance cannot move it,
        as a GANG's replicas must stay together. A move is taken when, over the workload's
        remaining run at the forecast's rates, its own power at the new site, plus the idle
        power of the nodes it wakes there, less the idle power of the nodes it empties here
        (for as long as their work would have kept them up), saves at least
        ``MIN_SAVING_PER_MOVE_CNY`` per replica moved; a service's added latency is priced as
        the solver prices it. SPREAD work stays (its sites are its rule)."""
        problem = self.problem
        if problem.now is None:
            return
        money = RunMoney(problem, carbon_price(problem, self.params), self.rates, self.runs)
        chosen = [
            w
            for w in self.current.values()
            if w.spec.topology != Topology.SPREAD
            and len({p.site for p in w.placements}) == 1
            and (not sites or w.placements[0].site in sites)
        ]
        elig = eligibility_of(
            problem.scenario, self.cluster, ((w.id, w.spec) for w in chosen), self.params
        )
        ranked: list[tuple[float, str, str, float]] = []
        for w in chosen:
            here = w.placements[0].site
            run = max(_left(problem, w, p) for p in w.placements)
            watts = sum(self._dynamic(p.node, w.spec.resources) for p in w.placements)
            for there in elig[w.id].sites:
                gain = watts * (money(here, run) - money(there, run)) * run / 3600.0
                if there != here and gain > MIN_SAVING_PER_MOVE_CNY * len(w.placements):
                    ranked.append((gain / len(w.placements), w.id, there, run))
        ranked.sort(reverse=True)
        for _, wid, there, run in ranked:
            if time.monotonic() > end:
                return
            w = self.current[wid]
            if max_moves and len(self.plan.moves) + len(w.placements) > max_moves:
                continue
            if w.placements[0].site == there:
                continue  # moved there already, for a better site's sake
            self._try_site(w, there, run, money, by_node)

    def _try_site(
        self,
        w: Workload,
        there: str,
        run: float,
        money: RunMoney,
        by_node: dict[str, dict[str, list[ReplicaPlacement]]],
    ) -> None:
        """Move every replica of ``w`` to site ``there`` if that saves what ``to_cheaper_sites``
        asks (its docstring)."""
        problem, here = self.problem, w.placements[0].site
        trial, longest, room = self.cluster.copy(), self.longest.copy(), self.room
        mark = room.mark()  # taken back if the move is not made
        scratch = DrainPlan()
        reps = _move_workload(
            problem, self.params, trial, self.index, self.scorer, w, w.placements,
            self.blocked, scratch, room, to_site=there,
        )  # fmt: skip
        if scratch.stuck or reps is None:
            room.undo_to(mark)
            return
        hours = run / 3600.0
        saving = hours * (
            money(here, run) * sum(self._dynamic(p.node, w.spec.resources) for p in w.placements)
            - money(there, run) * sum(self._dynamic(p.node, w.spec.resources) for p in reps)
        )
        for n in {trial.index[p.node] for p in w.placements}:
            if trial.replicas_on[n] == 0:  # emptied: it powers down
                saving += self.idle_w[n] * money(here, longest[n]) * longest[n] / 3600.0
                longest[n] = 0.0
        for n in {trial.index[p.node] for p in reps}:
            if self.cluster.replicas_on[n] == 0:  # woken for it
                saving -= self.idle_w[n] * money(there, run) * hours
            longest[n] = max(longest[n], run)
        saving -= self._latency(w, reps) * hours  # a service farther from its users
        if saving < MIN_SAVING_PER_MOVE_CNY * len(reps):
            room.undo_to(mark)
            return
        after = self.plan.objective(cluster_cost(trial, problem.hour, problem.month))
        self._take(trial, after, longest, scratch, {w.id: reps}, by_node)

    def _dynamic(self, node: str, r: Resources) -> float:
        """IT watts replica resources ``r`` add on ``node``."""
        return dynamic_watts(
            self.cluster.pools[self.cluster.node_pool[self.cluster.index[node]]], r
        )

    def _outlasting(self, longest: np.ndarray, run: float) -> greedy.NodeScorer:
        """The rebalance's scorer, with nodes whose work ends before a replica that runs
        ``run`` more seconds made worse in proportion to the time it would add (up to 5:
        powered nodes stay first, a step of 10, and cheaper sites, 100)."""
        base = self.scorer

        def score(cluster: Cluster, nodes: greedy.IntArray, r: Resources) -> greedy.FloatArray:
            extra = np.clip(run - longest[nodes], 0.0, None) / max(run, 1.0)
            return base(cluster, nodes, r) + 5.0 * extra

        return score

    def _latency(self, w: Workload, reps: Sequence[ReplicaPlacement]) -> float:
        """CNY per hour the move of ``w`` to ``reps`` adds in latency (services only)."""
        if not w.spec.is_service:
            return 0.0
        rtt = sum(p.latency_ms for p in reps) - sum(p.latency_ms for p in w.placements)
        return self.params.latency_cny_per_ms_hour * rtt


# the least a move of a workload to a cheaper site must save per replica moved, over the rest
# of its run: a move is not free to the tenant (it is a state change watchers see)
MIN_SAVING_PER_MOVE_CNY = 0.5


def remaining_runs(problem: Problem, cluster: Cluster, running: Iterable[Workload]) -> np.ndarray:
    """Per node of ``cluster``, the seconds its work keeps it powered from ``problem.now``: the
    longest remaining run of a replica on it (``OPEN_ENDED_S`` for work without a duration)."""
    longest = np.zeros(len(cluster))
    for w in running:
        for p in w.placements:
            n = cluster.index.get(p.node)
            if n is not None:
                longest[n] = max(longest[n], _left(problem, w, p))
    return longest


def _left(problem: Problem, w: Workload, p: ReplicaPlacement) -> float:
    """The seconds replica ``p`` of ``w`` has still to run at ``problem.now``: from its own
    start (a moved replica keeps it), else from when ``w`` started (``start_of``)."""
    if w.spec.duration_s <= 0 or problem.now is None:
        return OPEN_ENDED_S
    start = p.start_time if p.start_time is not None else start_of(w)
    since = (problem.now - start).total_seconds() if start is not None else 0.0
    return min(OPEN_ENDED_S, max(0.0, w.spec.duration_s - since))


def _run_span(room: HourlyRoom, w: Workload) -> Span:
    """The hours of the timeline each replica of ``w`` holds from now on: to the end of its
    run, for good without a duration. From the workload's start (``start_of``), as the loop's
    timeline holds it: a move gives back exactly what the replica held."""
    if w.spec.duration_s <= 0:
        return room.run_span(None, 0)
    start = start_of(w)
    return room.run_span(start.timestamp() if start is not None else None, w.spec.duration_s)


def _worth_emptying(
    cluster: Cluster, longest: np.ndarray, idle_cny_h: np.ndarray, sites: Collection[str]
) -> list[int]:
    """The powered nodes (of ``sites``, all when empty) in the order a rebalance tries to empty
    them: the most idle power saved per replica moved first - a node powers down only as long
    as its work would have kept it up (``longest``, ``remaining_runs``), its idle power costs
    ``idle_cny_h`` (a GPU node's several times a CPU node's), and each of its replicas is a
    move - then the least used first."""
    used = (cluster.cap_cpu - cluster.free_cpu) / cluster.cap_cpu + (
        cluster.cap_mem - cluster.free_mem
    ) / cluster.cap_mem
    worth = idle_cny_h * longest / np.maximum(cluster.replicas_on, 1)
    order = np.lexsort((used, -worth))
    return [
        n
        for n in order.tolist()
        if cluster.replicas_on[n] > 0 and (not sites or cluster.site_of(n) in sites)
    ]
