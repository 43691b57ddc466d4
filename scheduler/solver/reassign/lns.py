"""Large neighbourhood search: re-solve a few machines exactly with CP-SAT.

A neighbourhood is a handful of machines, some of the processes on them and some processes
elsewhere whose original machine is among them (they may come home, which gives back the
transient resources their origin still holds, or stay). Every other process stays where it is.
The sub-problem keeps every hard rule (capacity, transient usage, conflict, spread, dependency,
with what stays fixed as constants) and minimises the exact cost it can change: load and
balance on those machines, the process- and machine-move costs of the free processes, and the
service-move cost (the most moved processes of a service: those outside are a constant floor).
The current placement is the hint, so the answer
is never worse; it is applied through ``State.shift`` and re-checked there, and a sub-solution
that does not lower the exact cost is undone.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from scheduler.solver.reassign.state import State

Var = cp_model.IntVar
LinearExpr = cp_model.LinearExprT


def returners(state: State, machines: Sequence[int], limit: int) -> list[int]:
    """Processes away from an original machine among ``machines`` that may come home: at most
    one per service and per machine they leave, and only where leaving keeps their service in
    that location and neighbourhood (so nothing outside the sub-problem can break)."""
    inside = set(machines)
    homes = np.flatnonzero(np.isin(state.initial, machines) & ~np.isin(state.assign, machines))
    out: list[int] = []
    services: set[int] = set()
    left: set[int] = set()
    for found in homes:
        p = int(found)
        s, m = int(state.svc[p]), int(state.assign[p])
        if s in services or m in left or m in inside:
            continue
        if state.svc_loc[s, state.loc[m]] < 2 or state.svc_nb[s, state.nb[m]] < 2:
            continue
        out.append(p)
        services.add(s)
        left.add(m)
        if len(out) >= limit:
            break
    return out


class _Neighbourhood:
    """The CP-SAT model of one neighbourhood."""

    def __init__(
        self, state: State, machines: Sequence[int], free: Sequence[int], away: Sequence[int]
    ):
        self.state = state
        self.machines = list(machines)
        self.free = list(free) + list(away)
        self.away = set(away)
        self.col = {m: j for j, m in enumerate(self.machines)}
        self.model = cp_model.CpModel()
        self.x: dict[tuple[int, int], Var] = {}
        self.stay: dict[int, Var] = {}
        self.objective: list[LinearExpr] = []
        self.by_service: dict[int, list[int]] = defaultdict(list)
        for p in self.free:
            self.by_service[int(state.svc[p])].append(p)
        self._fixed_counts()
        self._variables()
        self._conflict_and_spread()
        self._dependency()
        self._service_moves()
        self._machines()

    def _fixed_counts(self) -> None:
        """Per service with free processes: its fixed processes per chosen machine, location
        and neighbourhood."""
        st = self.state
        self.fixed_here: dict[int, np.ndarray] = {}
        self.fixed_loc: dict[int, np.ndarray] = {}
        self.fixed_nb: dict[int, np.ndarray] = {}
        for s, ps in self.by_service.items():
            here = np.array(
                [st.svc_machine.get(s * st.inst.machines + m, 0) for m in self.machines]
            )
            loc = st.svc_loc[s].copy()
            nb = st.svc_nb[s].copy()
            for p in ps:
                m = int(st.assign[p])
                loc[st.loc[m]] -= 1
                nb[st.nb[m]] -= 1
                if m in self.col:
                    here[self.col[m]] -= 1
            self.fixed_here[s], self.fixed_loc[s], self.fixed_nb[s] = here, loc, nb

    def _variables(self) -> None:
        st, model = self.state, self.model
        for p in self.free:
            s = int(st.svc[p])
            o = int(st.initial[p])
            cur = int(st.assign[p])
            for j, m in enumerate(self.machines):
                if self.fixed_here[s][j] > 0:
                    continue  # a process of the same service stays there
                v = model.new_bool_var(f"x_{p}_{m}")
                self.x[p, j] = v
                model.add_hint(v, int(m == cur))
                cost = st.wm * int(st.mmc[o, m]) + (st.wp * int(st.pmc[p]) if m != o else 0)
                if cost:
                    self.objective.append(cost * v)
            options = [self.x[p, j] for j in range(len(self.machines)) if (p, j) in self.x]
            if p in self.away:
                stay = model.new_bool_var(f"stay_{p}")
                model.add_hint(stay, 1)
                self.stay[p] = stay
                options.append(stay)
                # staying costs its move and what leaving would save on that machine
                r = st.req[p]
                left = int(st.costs_of(st.usage[cur] - r, st.cap[cur], st.inst.safety[cur]))
                cost = (
                    int(st.machine_cost[cur])
                    - left
                    + st.wm * int(st.mmc[o, cur])
                    + st.wp * int(st.pmc[p])
                )
                if cost:
                    self.objective.append(cost * stay)
            model.add_exactly_one(options)

    def _at(self, ps: Sequence[int], where: str, value: int) -> list[Var]:
        """The variables placing one of ``ps`` on a chosen machine in location (``where`` =
        "loc") or neighbourhood ("nb") ``value``."""
        st = self.state
        key = st.loc if where == "loc" else st.nb
        return [
            self.x[p, j]
            for p in ps
            for j, m in enumerate(self.machines)
            if (p, j) in self.x and key[m] == value
        ]

    def _conflict_and_spread(self) -> None:
        st, model = self.state, self.model
        locations = {int(st.loc[m]) for m in self.machines}
        for s, ps in self.by_service.items():
            if len(ps) > 1:
                for j in range(len(self.machines)):
                    vs = [self.x[p, j] for p in ps if (p, j) in self.x]
                    if len(vs) > 1:
                        model.add_at_most_one(vs)
            # the locations the service keeps, the stays among them, and those it may open
            held = int((self.fixed_loc[s] > 0).sum())
            need = int(st.inst.spread_min[s]) - held
            if need <= 0:
                continue
            opens = []
            stays_at = {int(st.loc[st.assign[p]]) for p in ps if p in self.stay}
            for loc in locations | stays_at:
                if self.fixed_loc[s][loc] > 0:
                    continue
                vs = self._at(ps, "loc", loc) + [
                    self.stay[p] for p in ps if p in self.stay and st.loc[st.assign[p]] == loc
                ]
                if vs:
                    y = model.new_bool_var(f"loc_{s}_{loc}")
                    model.add(y <= sum(vs))
                    opens.append(y)
            model.add(sum(opens) >= need)

    def _presence(self, s: int, n: int) -> Var | int:
        """1 if service ``s`` runs in neighbourhood ``n`` (an int when fixed processes decide)."""
        st = self.state
        fixed = self.fixed_nb[s][n] if s in self.fixed_nb else st.svc_nb[s, n]
        if fixed > 0:
            return 1
        vs = self._at(self.by_service.get(s, []), "nb", n)
        if not vs:
            return 0
        key = (s, n)
        if key not in self._present:
            b = self.model.new_bool_var(f"in_{s}_{n}")
            self.model.add(b <= sum(vs))
            self._present[key] = b
        return self._present[key]

    def _dependency(self) -> None:
        st, model = self.state, self.model
        self._present: dict[tuple[int, int], Var] = {}
        nbs = {int(st.nb[m]) for m in self.machines}
        for s, ps in self.by_service.items():
            for n in nbs:
                here = self._at(ps, "nb", n)
                for sb in st.inst.dependencies[s]:
                    pres = self._presence(int(sb), n)
                    if isinstance(pres, int):
                        if pres == 0:
                            for v in here:
                                model.add(v == 0)
                        continue
                    for v in here:
                        model.add_implication(v, pres)
                # fixed processes of services that need s in n keep s there
                if self.fixed_nb[s][n] > 0:
                    continue
                for sa in st.rdeps[s]:
                    sa = int(sa)
                    fixed_sa = self.fixed_nb[sa][n] if sa in self.fixed_nb else st.svc_nb[sa, n]
                    if fixed_sa > 0:
                        model.add(sum(here) >= 1)
                        break

    def _service_moves(self) -> None:
        """The service-move cost exactly: the largest number of moved processes of a service,
        over the services outside the sub-problem (a constant) and those inside."""
        st = self.state
        if not st.ws:
            return
        outside = st.svc_moved.copy()
        outside[list(self.by_service)] = 0
        counts: list[tuple[int, list[Var]]] = []
        for s, ps in self.by_service.items():
            fixed = int(st.svc_moved[s]) - sum(int(st.assign[p] != st.initial[p]) for p in ps)
            movers: list[Var] = [
                self.x[p, j]
                for p in ps
                for j, m in enumerate(self.machines)
                if (p, j) in self.x and m != st.initial[p]
            ]
            movers += [self.stay[p] for p in ps if p in self.stay]
            counts.append((fixed, movers))
        low = int(outside.max(initial=0))
        high = max([low] + [fixed + len(movers) for fixed, movers in counts])
        most = self.model.new_int_var(low, high, "most_moved")
        for fixed, movers in counts:
            if fixed + len(movers) > low:
                self.model.add(most >= fixed + sum(movers))
        self.objective.append(st.ws * most)

    def _machines(self) -> None:
        """Capacity, transient usage, load and balance cost of each chosen machine."""
        st, model, inst = self.state, self.model, self.state.inst
        req = st.req
        for j, m in enumerate(self.machines):
            # usage and transient usage without the free processes
            base_use = st.usage[m].copy()
            base_tr = st.trans[m].copy()
            for p in self.free:
                cur, o = int(st.assign[p]), int(st.initial[p])
                if cur == m:
                    base_use -= req[p]
                if cur == m or (o == m and cur != m):
                    base_tr -= req[p]
            use: list[Any] = []  # linear expressions
            mine = [p for p in self.free if (p, j) in self.x]
            for r in range(inst.resources):
                cap = int(inst.capacity[m, r])
                expr = sum(self.x[p, j] * int(req[p, r]) for p in mine if req[p, r]) + int(
                    base_use[r]
                )
                model.add(expr <= cap)
                if inst.transient[r]:
                    home = sum(int(req[p, r]) for p in self.free if int(st.initial[p]) == m)
                    moved_in = sum(
                        self.x[p, j] * int(req[p, r])
                        for p in mine
                        if req[p, r] and int(st.initial[p]) != m
                    )
                    model.add(moved_in + int(base_tr[r]) + home <= cap)
                use.append(expr)
                if inst.weight_load[r]:
                    over = model.new_int_var(0, cap, f"over_{m}_{r}")
                    model.add(over >= expr - int(inst.safety[m, r]))
                    self.objective.append(int(inst.weight_load[r]) * over)
            for b in range(len(inst.weight_balance)):
                r1, r2, t = (int(v) for v in inst.balance[b])
                c1, c2 = int(inst.capacity[m, r1]), int(inst.capacity[m, r2])
                bal = model.new_int_var(0, max(0, t * c1), f"bal_{m}_{b}")
                model.add(bal >= t * (c1 - use[r1]) - (c2 - use[r2]))
                self.objective.append(int(inst.weight_balance[b]) * bal)

    def solve(self, time_limit_s: float, work_limit: float, seed: int) -> dict[int, int] | None:
        """The new machine of each free process, or None without a solution."""
        self.model.minimize(sum(self.objective))
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = max(0.01, time_limit_s)
        # the deterministic limit usually ends the solve first: the same seed, the same answer
        solver.parameters.max_deterministic_time = work_limit
        solver.parameters.num_workers = 1
        solver.parameters.random_seed = seed
        status = solver.solve(self.model)
        if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        out = {}
        for p in self.free:
            out[p] = int(self.state.assign[p])
            for j, m in enumerate(self.machines):
                if (p, j) in self.x and solver.boolean_value(self.x[p, j]):
                    out[p] = m
        return out


def solve_neighbourhood(
    state: State,
    machines: Sequence[int],
    free: Sequence[int],
    away: Sequence[int],
    time_limit_s: float,
    work_limit: float,
    seed: int,
) -> bool:
    """Re-place the ``free`` processes (on ``machines``) and the ``away`` ones (elsewhere,
    with an original machine among ``machines``) as well as CP-SAT can in the time limit;
    apply the result when it lowers the exact cost. True if it did. CP-SAT stops at
    ``time_limit_s`` seconds or ``work_limit`` deterministic units, whichever comes first (one
    worker: the same seed and work give the same answer)."""
    machines = [int(m) for m in machines]
    hood = _Neighbourhood(state, machines, [int(p) for p in free], [int(p) for p in away])
    target = hood.solve(time_limit_s, work_limit, seed)
    if target is None:
        return False
    changes = [(p, m, int(state.assign[p])) for p, m in target.items() if m != state.assign[p]]
    if not changes:
        return False
    before = state.cost
    for p, m, _ in changes:
        state.shift(p, m)
    touched = set(machines) | {m0 for _, _, m0 in changes}
    if state.cost < before and state.check(touched, [p for p, _, _ in changes]):
        return True
    for p, _, m0 in reversed(changes):
        state.shift(p, m0)
    return False
