"""A small solver-neutral linear model, exported to CP-SAT (integer) and to GLOP or HiGHS (its
relaxations), so that the bound and the decision come from the very same model."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from ortools.linear_solver import linear_solver_pb2, pywraplp
from ortools.sat.python import cp_model

log = logging.getLogger(__name__)

INF = math.inf
# CP-SAT needs integer objective coefficients: money in micro-CNY per hour, or coarser where
# the objective's terms would otherwise overflow 64 bits
MONEY_SCALE = 1_000_000
OBJECTIVE_LIMIT = 2**60

_LINEAR_STATUS = {
    pywraplp.Solver.OPTIMAL: "OPTIMAL",
    pywraplp.Solver.FEASIBLE: "FEASIBLE",
    pywraplp.Solver.INFEASIBLE: "INFEASIBLE",
    pywraplp.Solver.UNBOUNDED: "UNBOUNDED",
    pywraplp.Solver.ABNORMAL: "ABNORMAL",
    pywraplp.Solver.MODEL_INVALID: "MODEL_INVALID",
    pywraplp.Solver.NOT_SOLVED: "NOT_SOLVED",
    # MPSOLVER_UNKNOWN_STATUS: HiGHS stopped by its time limit without a proven optimum
    99: "UNKNOWN",
}
# statuses that mean "out of time", expected under a budget: counted, not logged
_OUT_OF_TIME = frozenset({"NOT_SOLVED", "UNKNOWN"})


@dataclass(frozen=True, slots=True)
class Relaxation:
    """What a relaxation's solver said: its status name, and where it proved its optimum, a
    lower bound on the model's objective and the solution (empty otherwise)."""

    status: str
    bound: float | None = None
    x: tuple[float, ...] = ()

    @property
    def solved(self) -> bool:
        return self.bound is not None


@dataclass
class LinearModel:
    """Variables with bounds and costs, and rows ``lo <= sum(coef * x) <= hi``. A row's bounds
    may be fractional: the relaxations take them as they are, CP-SAT rounds them inwards, and
    ``row_rounding`` says what that may cost."""

    lb: list[float] = field(default_factory=list)
    ub: list[float] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    rows: list[tuple[list[int], list[int], float, float]] = field(default_factory=list)
    constant: float = 0.0
    # the most rounding fractional row bounds can add to CP-SAT's optimum (CNY/h); the model's
    # builder knows it for the rows it rounds (a slack variable's cost times the fraction)
    row_rounding: float = 0.0

    def var(self, name: str, lb: float, ub: float, cost: float = 0.0) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.cost.append(cost)
        self.names.append(name)
        return len(self.lb) - 1

    def row(
        self, idx: Sequence[int], coef: Sequence[int], lo: float = -INF, hi: float = INF
    ) -> None:
        self.rows.append((list(idx), list(coef), lo, hi))

    @property
    def size(self) -> int:
        return len(self.lb)

    def value(self, x: Sequence[float]) -> float:
        return sum(c * v for c, v in zip(self.cost, x, strict=True)) + self.constant

    # ------------------------------------------------------------------ relaxations

    def solve_lp(self, time_limit_s: float) -> Relaxation:
        """The LP relaxation (GLOP; HiGHS in the time left where GLOP ends ABNORMAL, as its
        presolve does on a few of the day's cycle models that HiGHS solves)."""
        end = time.monotonic() + time_limit_s
        r = self._solve("GLOP", time_limit_s, set(), 0.0)
        if r.status == "ABNORMAL":
            r = self._solve("HIGHS", max(end - time.monotonic(), 0.001), set(), 0.0)
        return r

    def solve_mip(self, time_limit_s: float, integer: Sequence[int], mip_gap: float) -> Relaxation:
        """The relaxation with the variables listed in ``integer`` kept integer (a small MIP for
        HiGHS, solved to within ``mip_gap`` CNY/h); all others continuous."""
        return self._solve("HIGHS", time_limit_s, set(integer), mip_gap)

    def _solve(
        self, backend: str, time_limit_s: float, integer: set[int], mip_gap: float
    ) -> Relaxation:
        lp = pywraplp.Solver.CreateSolver(backend)
        if lp is None:
            log.warning("the %s solver is not available in this OR-Tools build", backend)
            return Relaxation("MODEL_INVALID")
        lp.SuppressOutput()
        if backend == "HIGHS":
            # the objective carries the large rewards for placing work: a relative MIP gap
            # would be relative to them, so the search closes to an absolute gap in CNY/h
            lp.SetSolverSpecificParametersAsString(
                "output_flag=false\nlog_to_console=false\nmip_rel_gap=0\n"
                f"mip_abs_gap={max(mip_gap, 1e-9)!r}\n"
            )
        lp.SetTimeLimit(max(1, int(time_limit_s * 1000)))
        error = lp.LoadModelFromProto(self._proto(integer))
        if error:
            log.warning("%s refused the model: %s", backend, error)
            return Relaxation("MODEL_INVALID")
        obj = lp.Objective()
        code = lp.Solve()
        status = _LINEAR_STATUS.get(code, f"STATUS_{code}")
        # only a proven optimum is used: the interface's best bound of an unfinished MIP is
        # not reliable across backends
        if code != pywraplp.Solver.OPTIMAL:
            if status not in _OUT_OF_TIME and (backend, status) != ("GLOP", "ABNORMAL"):
                log.warning("%s ended %s on a model of %d variables", backend, status, self.size)
            return Relaxation(status)
        # a MIP proven optimal to within its absolute gap: the optimum is at least this
        bound = obj.Value() - (max(mip_gap, 1e-9) if integer else 0.0)
        if not math.isfinite(bound):
            return Relaxation("ABNORMAL")
        solution = linear_solver_pb2.MPSolutionResponse()
        lp.FillSolutionResponseProto(solution)
        return Relaxation(status, bound + self.constant, tuple(solution.variable_value))

    def _proto(self, integer: set[int]) -> linear_solver_pb2.MPModelProto:
        """The model as OR-Tools' proto, for its linear solvers to load at once (at 50k
        replicas, 30k coefficients set one call at a time took 0.1 s, beside packing)."""
        m = linear_solver_pb2.MPModelProto()
        add_var = m.variable.add
        for i, (lo, hi, c) in enumerate(zip(self.lb, self.ub, self.cost, strict=True)):
            add_var(
                lower_bound=lo, upper_bound=hi, objective_coefficient=c, is_integer=i in integer
            )
        add_row = m.constraint.add
        for idx, coef, lo, hi in self.rows:
            row = add_row(lower_bound=lo, upper_bound=hi)
            if len(set(idx)) < len(idx):  # a variable named twice: its last coefficient holds
                terms = dict(zip(idx, coef, strict=True))
                idx, coef = list(terms), list(terms.values())
            row.var_index.extend(idx)
            row.coefficient.extend(map(float, coef))
        return m

    # ------------------------------------------------------------------ the integer model

    def build_cpsat(self) -> tuple[cp_model.CpModel, list[cp_model.IntVar]]:
        m = cp_model.CpModel()
        xs = [
            m.new_int_var(math.ceil(lo), math.floor(hi), n)
            for lo, hi, n in zip(self.lb, self.ub, self.names, strict=True)
        ]
        for idx, coef, lo, hi in self.rows:
            expr = cp_model.LinearExpr.weighted_sum([xs[i] for i in idx], coef)
            if lo == hi:
                m.add(expr == int(lo))
            else:
                if lo != -INF:
                    m.add(expr >= math.ceil(lo))
                if hi != INF:
                    m.add(expr <= math.floor(hi))
        nz = [(i, c) for i, c in enumerate(self.cost) if c]
        scale = self.money_scale
        m.minimize(
            cp_model.LinearExpr.weighted_sum(
                [xs[i] for i, _ in nz], [round(c * scale) for _, c in nz]
            )
        )
        return m, xs

    @property
    def money_scale(self) -> float:
        """Integer objective units per CNY/h for CP-SAT: micro-CNY unless the sum of the
        objective's terms over their domains would come near 2**63."""
        span = sum(
            abs(c) * max(abs(lo), abs(hi))
            for lo, hi, c in zip(self.lb, self.ub, self.cost, strict=True)
        )
        return min(float(MONEY_SCALE), OBJECTIVE_LIMIT / max(span, 1.0))

    def rounding_slack(self) -> float:
        """The most CP-SAT's optimum (integer coefficients, rounded row bounds) can lie above
        the model's own optimum over integer points."""
        scale = self.money_scale
        return self.row_rounding + sum(
            abs(round(c * scale) - c * scale) / scale * max(abs(lo), abs(hi))
            for lo, hi, c in zip(self.lb, self.ub, self.cost, strict=True)
            if c
        )

    def cpsat_bound(self, best_objective_bound: float) -> float:
        """CP-SAT's proven bound in CNY/h, made valid for the model itself."""
        return best_objective_bound / self.money_scale + self.constant - self.rounding_slack()
