"""The LP relaxation behind Valley's first answer and its bound: it is solved where one of
OR-Tools' LP solvers can solve it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from scheduler.solver.valley.linear import LinearModel

DATA = Path(__file__).parent / "data" / "lp"


def load(name: str) -> LinearModel:
    """A model saved as JSON: ``vars`` [lb, ub, cost] (null: unbounded), ``rows`` [index,
    coefficients, lo, hi]."""
    d = json.loads((DATA / name).read_text())
    m = LinearModel()
    for i, (lb, ub, cost) in enumerate(d["vars"]):
        m.var(f"x{i}", -math.inf if lb is None else lb, math.inf if ub is None else ub, cost)
    for idx, coef, lo, hi in d["rows"]:
        m.row(idx, coef, -math.inf if lo is None else lo, math.inf if hi is None else hi)
    return m


def test_the_lp_is_solved_when_glop_ends_abnormal_on_it() -> None:
    # a cycle's model from a simulated day that GLOP's presolve ends ABNORMAL on
    m = load("glop_abnormal.json")
    r = m.solve_lp(5.0)
    assert r.solved and r.bound is not None
    assert len(r.x) == m.size
    # the solution is feasible and its value is the bound
    assert abs(m.value(r.x) - r.bound) <= 1e-6 * max(1.0, abs(r.bound))
    for lb, ub, x in zip(m.lb, m.ub, r.x, strict=True):
        assert lb - 1e-6 <= x <= ub + 1e-6
    for idx, coef, lo, hi in m.rows:
        total = sum(c * r.x[i] for i, c in zip(idx, coef, strict=True))
        assert lo - 1e-6 <= total <= hi + 1e-6
