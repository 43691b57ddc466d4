"""The audit log: one line per submission, cancellation and operator action, on the logger
``valley.audit``, as ``key=value`` pairs: who (the token's name, or ``anonymous`` without
``--auth``), for which tenant, what, which workload ids (at most ``MAX_IDS`` of them, then how
many more), and the outcome (``OK`` or the status code). Never the token."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import grpc

from scheduler.service.auth import Caller
from scheduler.service.errors import code_of

log = logging.getLogger("valley.audit")

MAX_IDS = 20


def _value(v: str) -> str:
    """A value as it appears in a line: bare when it is a plain word, else a JSON string (so
    that a crafted name cannot forge another field)."""
    if v and all(c.isalnum() or c in "-_.:/@#" for c in v):
        return v
    return json.dumps(v[:256])


@dataclass
class Entry:
    """What one audited RPC did; the handler fills ``ids`` as it learns them."""

    caller: Caller
    action: str
    ids: Sequence[str] = field(default_factory=tuple)

    def line(self, outcome: str) -> str:
        shown = list(self.ids[:MAX_IDS])
        more = f" more_ids={len(self.ids) - MAX_IDS}" if len(self.ids) > MAX_IDS else ""
        role = "operator" if self.caller.operator else "tenant"
        return (
            f"who={_value(self.caller.name)} role={role} tenant={_value(self.caller.tenant)} "
            f"action={self.action} ids={_value(','.join(shown))}{more} outcome={outcome}"
        )


@contextlib.contextmanager
def audited(caller: Caller, action: str, ids: Sequence[str] = ()) -> Iterator[Entry]:
    """Log the RPC in the block once it ends: ``OK``, or the status code it failed with."""
    entry = Entry(caller, action, tuple(ids))
    try:
        yield entry
    except Exception as e:
        if log.isEnabledFor(logging.INFO):
            log.info("%s", entry.line(code_of(e).name))
        raise
    if log.isEnabledFor(logging.INFO):
        log.info("%s", entry.line(grpc.StatusCode.OK.name))
