"""The search's view of an assignment: usage, costs and constraint counters kept incrementally.

``State.shift`` moves one process and updates everything in O(R + 1); ``State.check`` then
verifies only the constraints a set of changes can have broken, so a compound move (a swap, a
chain) is applied raw, checked locally and undone by shifting back when it breaks a rule or
does not pay. ``State.shift_deltas`` prices moving one process to every machine at once (numpy
over machines x resources) with every hard constraint as a mask: that is the move pricing that
rebalancing reuses.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from scheduler.solver.reassign.model import Instance, IntArray

FloatArray = npt.NDArray[np.float64]
INFEASIBLE = np.inf


class State:
    """A mutable assignment of an instance with its cost maintained incrementally."""

    def __init__(self, inst: Instance, initial: IntArray, assignment: IntArray | None = None):
        self.inst = inst
        self.initial = np.asarray(initial, dtype=np.int64).copy()
        self.assign = (
            self.initial.copy() if assignment is None else np.asarray(assignment, np.int64).copy()
        )
        m_count, s_count = inst.machines, inst.services
        self.req = inst.requirement
        self.cap = inst.capacity
        self.tr = np.flatnonzero(inst.transient)
        self.loc = inst.location
        self.nb = inst.neighborhood
        self.mmc = inst.machine_move_cost
        self.pmc = inst.process_move_cost
        self.svc = inst.service
        self.wl = inst.weight_load
        self.bal_r1 = inst.balance[:, 0]
        self.bal_r2 = inst.balance[:, 1]
        self.bal_t = inst.balance[:, 2]
        self.wb = inst.weight_balance
        self.wp, self.ws, self.wm = (
            inst.weight_process_move,
            inst.weight_service_move,
            inst.weight_machine_move,
        )
        order = np.argsort(self.svc, kind="stable")
        bounds = np.searchsorted(self.svc[order], np.arange(s_count + 1))
        self.members = [order[bounds[s] : bounds[s + 1]] for s in range(s_count)]
        rdeps: list[list[int]] = [[] for _ in range(s_count)]
        for sa, deps in enumerate(inst.dependencies):
            for sb in deps:
                rdeps[int(sb)].append(sa)
        self.rdeps = [np.asarray(r, dtype=np.int64) for r in rdeps]
        self.has_deps = np.array([len(d) > 0 for d in inst.dependencies])
        self.has_rdeps = np.array([len(r) > 0 for r in self.rdeps])

        a = self.assign
        self.usage = np.zeros((m_count, inst.resources), dtype=np.int64)
        np.add.at(self.usage, a, self.req)
        self.trans = self.usage.copy()  # + what moved processes still hold on their origin
        moved = a != self.initial
        np.add.at(self.trans, self.initial[moved], self.req[moved])
        self.svc_loc = np.zeros((s_count, int(self.loc.max()) + 1), dtype=np.int64)
        np.add.at(self.svc_loc, (self.svc, self.loc[a]), 1)
        self.nlocs = (self.svc_loc > 0).sum(axis=1)
        self.svc_nb = np.zeros((s_count, int(self.nb.max()) + 1), dtype=np.int64)
        np.add.at(self.svc_nb, (self.svc, self.nb[a]), 1)
        self.svc_machine: dict[int, int] = {}
        for p in range(inst.processes):
            key = int(self.svc[p]) * m_count + int(a[p])
            self.svc_machine[key] = self.svc_machine.get(key, 0) + 1
        self.svc_moved = np.bincount(self.svc[moved], minlength=s_count).astype(np.int64)
        self.moved_hist = np.bincount(
            self.svc_moved, minlength=max(len(m) for m in self.members) + 2
        )
        self.max_moved = int(self.svc_moved.max(initial=0))
        self.pmc_sum = int(self.pmc[moved].sum())
        self.mmc_sum = int(self.mmc[self.initial, a].sum())
        self.machine_cost = self.costs_of(self.usage, self.cap, inst.safety)
        self.machine_cost_sum = int(self.machine_cost.sum())

    # ------------------------------------------------------------------ pricing

    def costs_of(self, usage: IntArray, cap: IntArray, safety: IntArray) -> IntArray:
        """The weighted load and balance cost of machines with these usages (rows)."""
        load = (np.maximum(0, usage - safety) * self.wl).sum(axis=-1)
        if len(self.wb):
            avail = cap - usage
            bal = (
                np.maximum(0, self.bal_t * avail[..., self.bal_r1] - avail[..., self.bal_r2])
                * self.wb
            )
            load = load + bal.sum(axis=-1)
        return load

    @property
    def cost(self) -> int:
        """The total objective cost of the current assignment."""
        return (
            self.machine_cost_sum
            + self.wp * self.pmc_sum
            + self.ws * self.max_moved
            + self.wm * self.mmc_sum
        )

    def _service_delta(self, s: int, change: int) -> int:
        """The weighted service-move cost change when service ``s`` moves ``change`` more."""
        cur = int(self.svc_moved[s])
        if change > 0:
            return self.ws * max(0, cur + change - self.max_moved)
        if change < 0 and cur == self.max_moved and self.moved_hist[cur] == 1:
            return -self.ws
        return 0

    def shift_deltas(self, p: int) -> FloatArray:
        """The cost change of moving process ``p`` to each machine (``inf`` where a hard
        constraint forbids it, and on its own machine)."""
        inst = self.inst
        m0 = int(self.assign[p])
        o = int(self.initial[p])
        s = int(self.svc[p])
        r = self.req[p]
        new_usage = self.usage + r
        delta = (self.costs_of(new_usage, self.cap, inst.safety) - self.machine_cost).astype(
            np.float64
        )
        delta += float(
            self.costs_of(self.usage[m0] - r, self.cap[m0], inst.safety[m0]) - self.machine_cost[m0]
        )
        ok = (new_usage <= self.cap).all(axis=1)
        if len(self.tr):
            tr_new = self.trans[:, self.tr] + r[self.tr]
            tr_new[o] -= r[self.tr]  # back on its origin it holds nothing more
            ok &= (tr_new <= self.cap[:, self.tr]).all(axis=1)
        ok[m0] = False
        ok[self.assign[self.members[s]]] = False  # conflict
        # spread
        l0 = int(self.loc[m0])
        if self.svc_loc[s, l0] == 1 and self.nlocs[s] <= inst.spread_min[s]:
            # leaving its last process in l0 must open a location elsewhere
            gain = self.svc_loc[s][self.loc] == 0
            ok &= (self.loc == l0) | (self.nlocs[s] - 1 + gain >= inst.spread_min[s])
        # dependency: s needs its dependencies where it goes; who needs s needs it to stay
        if self.has_deps[s]:
            needs = np.asarray((self.svc_nb[inst.dependencies[s]] > 0).all(axis=0))
            ok &= needs[self.nb]
        n0 = int(self.nb[m0])
        if (
            self.has_rdeps[s]
            and self.svc_nb[s, n0] == 1
            and (self.svc_nb[self.rdeps[s], n0] > 0).any()
        ):
            ok &= self.nb == n0
        # moves
        was_moved = m0 != o
        move = self.wm * self.mmc[o].astype(np.float64)
        move += self.wp * self.pmc[p]
        move[o] -= self.wp * self.pmc[p]
        move -= self.wm * self.mmc[o, m0] + (self.wp * self.pmc[p] if was_moved else 0)
        delta += move
        if was_moved:
            delta[o] += self._service_delta(s, -1)
        else:
            delta += self._service_delta(s, 1)
            delta[o] -= self._service_delta(s, 1)
        delta[~ok] = INFEASIBLE
        return delta

    # ------------------------------------------------------------------ changes

    def shift(self, p: int, m: int) -> None:
        """Move process ``p`` to machine ``m`` with no check (``check`` verifies)."""
        m0 = int(self.assign[p])
        if m0 == m:
            return
        o = int(self.initial[p])
        s = int(self.svc[p])
        r = self.req[p]
        inst = self.inst
        self.usage[m0] -= r
        self.usage[m] += r
        if m0 != o:
            self.trans[m0] -= r
        if m != o:
            self.trans[m] += r
        for mm in (m0, m):
            c = int(self.costs_of(self.usage[mm], self.cap[mm], inst.safety[mm]))
            self.machine_cost_sum += c - int(self.machine_cost[mm])
            self.machine_cost[mm] = c
        l0, l1 = int(self.loc[m0]), int(self.loc[m])
        if l0 != l1:
            self.svc_loc[s, l0] -= 1
            self.svc_loc[s, l1] += 1
            self.nlocs[s] += int(self.svc_loc[s, l1] == 1) - int(self.svc_loc[s, l0] == 0)
        self.svc_nb[s, self.nb[m0]] -= 1
        self.svc_nb[s, self.nb[m]] += 1
        k0, k1 = s * inst.machines + m0, s * inst.machines + m
        self.svc_machine[k0] -= 1
        self.svc_machine[k1] = self.svc_machine.get(k1, 0) + 1
        change = int(m != o) - int(m0 != o)
        if change:
            cur = int(self.svc_moved[s])
            self.moved_hist[cur] -= 1
            self.moved_hist[cur + change] += 1
            self.svc_moved[s] = cur + change
            if change > 0:
                self.max_moved = max(self.max_moved, cur + 1)
            elif self.moved_hist[self.max_moved] == 0:
                self.max_moved -= 1
            self.pmc_sum += change * int(self.pmc[p])
        self.mmc_sum += int(self.mmc[o, m]) - int(self.mmc[o, m0])
        self.assign[p] = m

    def check(self, machines: Iterable[int], processes: Iterable[int]) -> bool:
        """Whether the constraints that changes on these machines, by these processes, can
        break still hold (the rest held before the changes)."""
        inst = self.inst
        ms = np.fromiter(set(machines), dtype=np.int64)
        if (self.usage[ms] > self.cap[ms]).any():
            return False
        if len(self.tr) and (self.trans[np.ix_(ms, self.tr)] > self.cap[np.ix_(ms, self.tr)]).any():
            return False
        services = {int(self.svc[p]) for p in processes}
        nbs = {int(self.nb[m]) for m in ms}
        for s in services:
            if self.nlocs[s] < inst.spread_min[s]:
                return False
            for m in ms:
                if self.svc_machine.get(s * inst.machines + int(m), 0) > 1:
                    return False
            for n in nbs:
                present = self.svc_nb[s, n] > 0
                if (
                    present
                    and self.has_deps[s]
                    and not (self.svc_nb[inst.dependencies[s], n] > 0).all()
                ):
                    return False
                if not present and self.has_rdeps[s] and (self.svc_nb[self.rdeps[s], n] > 0).any():
                    return False
        return True

    def swap_deltas(self, p: int, others: IntArray) -> FloatArray:
        """The cost change of swapping process ``p`` with each of ``others`` (their machines
        exchange), counting capacity, transient usage and the load, balance, process- and
        machine-move costs; ``inf`` where capacity or transient usage forbids it. Conflict,
        spread, dependency and the service-move cost are left to ``check`` and the exact cost
        once a swap is applied (they rarely decide it)."""
        inst = self.inst
        m1 = int(self.assign[p])
        o1 = int(self.initial[p])
        r1 = self.req[p]
        m2 = self.assign[others]
        o2 = self.initial[others]
        r2 = self.req[others]
        u1 = self.usage[m1] - r1 + r2
        u2 = self.usage[m2] - r2 + r1
        delta = (
            self.costs_of(u1, self.cap[m1], inst.safety[m1])
            + self.costs_of(u2, self.cap[m2], inst.safety[m2])
            - self.machine_cost[m1]
            - self.machine_cost[m2]
        ).astype(np.float64)
        ok = (u1 <= self.cap[m1]).all(axis=1) & (u2 <= self.cap[m2]).all(axis=1) & (m2 != m1)
        if len(self.tr):
            tr = self.tr
            away1 = np.not_equal(m2, o1)[:, None]  # p lands away from its origin
            away2 = np.not_equal(o2, m1)[:, None]
            t1 = self.trans[m1, tr] - (r1[tr] if m1 != o1 else 0) + r2[:, tr] * away2
            t2 = self.trans[m2][:, tr] - r2[:, tr] * np.not_equal(m2, o2)[:, None] + r1[tr] * away1
            ok &= (t1 <= self.cap[m1, tr]).all(axis=1) & (t2 <= self.cap[m2][:, tr]).all(axis=1)
        wp, wm = self.wp, self.wm
        delta += wm * (self.mmc[o1, m2] - self.mmc[o1, m1]) + wp * self.pmc[p] * (
            np.not_equal(m2, o1).astype(np.int64) - int(m1 != o1)
        )
        delta += wm * (self.mmc[o2, m1] - self.mmc[o2, m2]) + wp * self.pmc[others] * (
            np.not_equal(o2, m1).astype(np.int64) - np.not_equal(m2, o2)
        )
        delta[~ok] = INFEASIBLE
        return delta
