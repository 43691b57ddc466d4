"""Compiling a hot loop with numba, cached on disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def jit(func: Callable[..., Any]) -> Any:
    """``numba.njit`` with an on-disk cache: beside the module, or in the user's cache folder
    (``NUMBA_CACHE_DIR``, else ``~/.cache``) when the package folder is read-only. Where no
    cache can be written at all the code compiles at first call instead (some seconds, once per
    process, inside the caller's time limit)."""
    try:
        return numba.njit(cache=True, nogil=True)(func)
    except RuntimeError:  # numba found no cache locator
        return numba.njit(nogil=True)(func)
