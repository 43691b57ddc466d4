"""The workload counts a snapshot shows: per state, and per reason code for PENDING and
UNSCHEDULABLE workloads. Loaded from the store on start, then kept up to date with every
change the loop commits or is told about, so that a scrape never reads the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from scheduler.domain import WorkloadState
from scheduler.store import StateCounts


class StateCounters:
    """See the module docstring. Not locked: the loop changes and reads it under its lock."""

    def __init__(self) -> None:
        self._counts: Counter[WorkloadState] = Counter()
        self._pending_code: dict[str, str] = {}  # PENDING workload id -> reason code
        self._pending_by_reason: Counter[str] = Counter()
        self._unschedulable_by_reason: Counter[str] = Counter()

    def load(self, counts: StateCounts, pending_codes: dict[str, str]) -> None:
        """Start from the store's counts and the reason code of every tried PENDING workload."""
        self._counts = Counter(counts.by_state)
        self._pending_by_reason = Counter(counts.pending_by_reason)
        self._unschedulable_by_reason = Counter(counts.unschedulable_by_reason)
        self._pending_code = dict(pending_codes)

    def submitted(self, n: int) -> None:
        self._counts[WorkloadState.PENDING] += n

    def change(self, wid: str, old: WorkloadState, new: WorkloadState, code: str) -> None:
        """``wid`` went from ``old`` to ``new`` (UNSPECIFIED: it is new); ``code`` is its reason
        code for PENDING and UNSCHEDULABLE (PENDING to PENDING: its reason changed)."""
        if old == new:
            if new == WorkloadState.PENDING and code != self._pending_code.get(wid, ""):
                self._set_pending_code(wid, code)
            return
        if old != WorkloadState.UNSPECIFIED:
            self._counts[old] -= 1
        self._counts[new] += 1
        if old == WorkloadState.PENDING:
            self._set_pending_code(wid, "")
        if new == WorkloadState.UNSCHEDULABLE:
            self._unschedulable_by_reason[code or "other"] += 1

    def placed(self, ids: Sequence[str]) -> None:
        """``change(PENDING -> PLACED)`` for a cycle's placed workloads at once."""
        self._counts[WorkloadState.PENDING] -= len(ids)
        self._counts[WorkloadState.PLACED] += len(ids)
        if self._pending_code:
            for wid in ids:
                if wid in self._pending_code:
                    self._set_pending_code(wid, "")

    def by_state(self) -> dict[WorkloadState, int]:
        return dict(self._counts)

    def pending_by_reason(self) -> dict[str, int]:
        return {k: v for k, v in self._pending_by_reason.items() if v}

    def unschedulable_by_reason(self) -> dict[str, int]:
        return {k: v for k, v in self._unschedulable_by_reason.items() if v}

    def _set_pending_code(self, wid: str, code: str) -> None:
        old = self._pending_code.pop(wid, "")
        if old:
            self._pending_by_reason[old] -= 1
        if code:
            self._pending_code[wid] = code
            self._pending_by_reason[code] += 1
