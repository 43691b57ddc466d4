"""Opaque page tokens for ListWorkloads: the position to continue after, bound to the query's
filters so that a token cannot silently be reused with other filters."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence

from scheduler.domain import ValidationError, WorkloadState

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# positions are BIGINT in every store: a token beyond it was not issued here (and would overflow
# the database driver's integer)
MAX_POSITION = 2**63 - 1


def page_size(requested: int) -> int:
    if requested < 0:
        raise ValidationError("page_size", f"must be >= 0 (got {requested})")
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _filters(tenant: str, states: Sequence[WorkloadState]) -> str:
    key = json.dumps([tenant, sorted(int(s) for s in states)])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def encode(after: int, tenant: str, states: Sequence[WorkloadState]) -> str:
    data = json.dumps({"a": after, "f": _filters(tenant, states)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode(token: str, tenant: str, states: Sequence[WorkloadState]) -> int:
    """The position after which the page starts; 0 for an empty token."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        after = data["a"]
        filters = data["f"]
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise ValidationError("page_token", "not a page token this server issued") from None
    if not isinstance(after, int) or isinstance(after, bool) or not 0 <= after <= MAX_POSITION:
        raise ValidationError("page_token", "not a page token this server issued")
    if filters != _filters(tenant, states):
        raise ValidationError(
            "page_token", "was issued for other filters (tenant, states); start without a token"
        )
    return after
