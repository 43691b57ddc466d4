"""What RPC threads hand the loop thread, and the loop thread's wait for it.

RPC threads post the workloads they have committed and the changes others committed (cancels)
and return at once. The loop thread waits until there is something to do (posted work, work of
its own, a completion due), then for a short batching window so that a burst of submissions
arrives as one batch, and takes everything posted so far.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from scheduler.domain import Workload, WorkloadState

Change = tuple[Workload, WorkloadState]  # a workload after a change, and its state before


class Mailbox:
    """See the module docstring. Thread-safe."""

    def __init__(self, batch_window_s: float) -> None:
        self.batch_window_s = batch_window_s
        self._cond = threading.Condition()
        self._inbox: list[Workload] = []
        self._changes: list[Change] = []
        self._first_post: float | None = None  # monotonic time of the oldest post not taken
        self._closed = False
        self._nudged = False  # a cycle is wanted although nothing was posted
        self._idle = threading.Event()  # the loop thread waits with nothing to do
        # changes posted ever; of them, taken by the last take; of them, shown by the loop
        self._posted = self._taken = self._shown = 0

    def post(self, workloads: Sequence[Workload] = (), changes: Sequence[Change] = ()) -> None:
        """Hand new PENDING workloads and committed changes to the loop thread."""
        with self._cond:
            self._inbox.extend(workloads)
            self._changes.extend(changes)
            self._posted += len(changes)
            if self._first_post is None:
                self._first_post = time.monotonic()
            self._idle.clear()
            self._cond.notify_all()

    def give_back(self, workloads: list[Workload], changes: list[Change]) -> None:
        """Put taken work back in front, for the next ``take`` (a cycle that failed with it)."""
        with self._cond:
            self._inbox[:0] = workloads
            self._changes[:0] = changes
            self._taken -= len(changes)  # not taken in the end: nothing shows them yet

    def wake(self) -> None:
        """Make a waiting ``take`` look at its conditions again now."""
        with self._cond:
            self._cond.notify_all()

    def nudge(self) -> None:
        """Make the next ``take`` return without anything posted (a cycle is wanted)."""
        with self._cond:
            self._nudged = True
            self._idle.clear()
            self._cond.notify_all()

    def close(self) -> None:
        """Make ``take`` return None from now on."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def has_submissions(self) -> bool:
        """Whether new workloads have been posted and not taken yet."""
        with self._cond:
            return bool(self._inbox)

    def take(
        self,
        busy: Callable[[], bool],
        next_due: Callable[[], float | None],
        now: Callable[[], float],
        not_before: float,
    ) -> tuple[list[Workload], list[Change]] | None:
        """Wait until work is posted, ``busy()`` (the loop has work of its own: then there is
        no batching window) or ``next_due()`` (epoch seconds) has come by ``now()``, and not
        before ``not_before`` (monotonic); then take what was posted. None once closed."""
        with self._cond:
            while not self._closed and not (self._inbox or self._changes or self._nudged or busy()):
                due, t = next_due(), now()
                if due is not None and due <= t:
                    break
                self._idle.set()
                self._cond.wait(None if due is None else min(due - t, 60.0))
            end = not_before
            if self._first_post is not None and not busy():
                end = max(end, self._first_post + self.batch_window_s)
            while not self._closed and (left := end - time.monotonic()) > 0:
                self._cond.wait(left)
            if self._closed:
                return None
            inbox, self._inbox = self._inbox, []
            changes, self._changes = self._changes, []
            self._first_post = None
            self._nudged = False
            self._taken = self._posted
        return inbox, changes

    def drain(self) -> tuple[list[Workload], list[Change]]:
        """Take what was posted now, without waiting (a caller that runs cycles itself)."""
        with self._cond:
            inbox, self._inbox = self._inbox, []
            changes, self._changes = self._changes, []
            self._first_post = None
            self._nudged = False
            self._taken = self._posted
        return inbox, changes

    def changes_shown(self) -> None:
        """The loop thread's copies (``SchedulingLoop.snapshot``) show every change it has
        taken (and not given back): their capacity is given back."""
        with self._cond:
            self._shown = self._taken
            self._cond.notify_all()

    def wait_changes_shown(self, timeout: float) -> bool:
        """Block until every change posted so far is shown (``changes_shown``), at most
        ``timeout`` seconds; whether it is (at once once closed: nothing will show them)."""
        with self._cond:
            target = self._posted
            return self._cond.wait_for(lambda: self._shown >= target or self._closed, timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing posted is left and the loop thread waits for more."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._cond:
                busy = bool(self._inbox or self._changes)
            if not busy and self._idle.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                with self._cond:
                    if not (self._inbox or self._changes):
                        return True
        return False
