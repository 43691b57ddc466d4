"""In-process fan-out of committed events to watchers, in commit order.

Writers publish while they still hold the store's write lock, so subscribers see events in the
order of their sequence numbers. A subscriber that falls ``max_backlog`` events behind is cut off
(``lagged``) rather than letting memory grow without bound.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

DEFAULT_BACKLOG = 100_000


class Subscription:
    """Events published after it was opened. ``get`` blocks up to ``timeout`` seconds."""

    def __init__(self, hub: EventHub, max_backlog: int) -> None:
        self._hub = hub
        self._queue: deque[Any] = deque()
        self._cond = threading.Condition()
        self._max_backlog = max_backlog
        self.closed = False
        self.lagged = False
        self.after = 0  # events numbered up to this one are not for this subscription

    def skip_through(self, sequence: int) -> None:
        """Leave out the events up to ``sequence`` (committed before the subscription)."""
        with self._cond:
            self.after = sequence
            while self._queue and self._queue[0].sequence <= sequence:
                self._queue.popleft()

    def _push(self, events: list[Any]) -> bool:
        with self._cond:
            if self.closed:
                return False
            if self.after and events[0].sequence <= self.after:
                events = [e for e in events if e.sequence > self.after]
            if len(self._queue) + len(events) > self._max_backlog:
                self.lagged = True
                self.closed = True
                self._queue.clear()
            else:
                self._queue.extend(events)
            self._cond.notify_all()
            return not self.closed

    def get(self, timeout: float) -> Any | None:
        """The next event, or None after ``timeout`` or once closed and drained."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def get_batch(self, timeout: float, limit: int = 1000) -> list[Any]:
        """Up to ``limit`` events at once (a watcher drains its backlog with one lock round
        trip); empty after ``timeout`` or once closed and drained."""
        with self._cond:
            if not self._queue and not self.closed:
                self._cond.wait(timeout)
            q = self._queue
            if len(q) <= limit:
                out = list(q)
                q.clear()
                return out
            return [q.popleft() for _ in range(limit)]

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._hub._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventHub:
    def __init__(self, max_backlog: int = DEFAULT_BACKLOG) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._max_backlog = max_backlog
        self._closed = False

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._max_backlog)
        with self._lock:
            if self._closed:
                sub.closed = True
            else:
                self._subs.append(sub)
        return sub

    def publish(self, events: Iterable[Any]) -> None:
        batch = list(events)
        if not batch:
            return
        with self._lock:
            subs = list(self._subs)
        dropped = [s for s in subs if not s._push(batch)]
        for s in dropped:
            self._remove(s)

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        """End every subscription (their ``get`` returns None once drained)."""
        with self._lock:
            self._closed = True
            subs, self._subs = self._subs, []
        for s in subs:
            with s._cond:
                s.closed = True
                s._cond.notify_all()
