"""How solver processes start: forked from a forkserver that has the solver imported already.

Not ``fork`` from the server: the server has threads (grpc's own, the RPC threads, the loop), and
a child forked from a threaded process can inherit a lock another thread held, or grpc's state
mid-change. ``spawn`` is safe but each child starts a fresh interpreter and imports the solver
again: OR-Tools (which imports pandas), numba and the kernels' modules, the loop and solver
packages, about 1.2 s of every server start, failover and test server. ``forkserver`` starts,
once per process (at its first solver process), a process of its own from a fresh interpreter;
it imports (preloads) the solver's modules, which start no thread of Python's and import neither
grpc nor a store driver, and forks every solver process from then on: a child starts in a few
milliseconds with its imports done, from a process that never had grpc or the server's threads.

What this module takes care of:

- Python 3.11's forkserver preloads on the ``sys.path`` of ``python -c`` run in this directory
  with this environment, not on this process's: it preloads this package only when such an
  interpreter finds this very ``scheduler`` package (checked once, by asking one), else a child
  would run another checkout's code. Third-party modules are the same either way.
- A preload that fails with ``ImportError`` is skipped (the child imports what it needs); with
  another error the forkserver dies and the start fails: solver processes are then spawned, from
  then on, as they are where there is no forkserver (not on Unix).

A forked solver process is the forkserver's child, not the server's, and has the environment the
forkserver started with.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import threading
from collections.abc import Callable
from multiprocessing import spawn
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

log = logging.getLogger(__name__)

# What the forkserver imports before it forks solver processes: the heavy third-party modules,
# then ``solver_client`` (the child's entry, which brings the loop and solver packages) and the
# one policy module the solver imports lazily.
PRELOAD_THIRD_PARTY = ("numpy", "pandas", "numba", "ortools.sat.python.cp_model")
PRELOAD_OURS = ("scheduler.loop.solver_client", "scheduler.solver.heuristics")

_IMPORTED_IN = os.getpid()  # a forked solver process has the forkserver's pid here
_lock = threading.Lock()
_forkserver: ForkServerContext | None = None
_spawn_only = False  # no forkserver here, or it failed


def imports_inherited() -> bool:
    """Whether this process has this package's solver modules from the process it was forked
    from (a solver process forked by a forkserver that preloaded them) rather than importing them
    itself."""
    return os.getpid() != _IMPORTED_IN


def start_solver_process(
    target: Callable[..., None], args: tuple[Any, ...], name: str
) -> tuple[Connection, BaseProcess]:
    """A started daemon child process running ``target(conn, *args)``, and the other end of
    ``conn``'s pipe: forked by the forkserver, or spawned (see the module docstring). ``target``
    and ``args`` must be picklable."""
    forkserver = _forkserver_context()
    if forkserver is not None:
        try:
            return _start(forkserver, target, args, name)
        except (OSError, EOFError):
            global _spawn_only
            _spawn_only = True
            log.exception("the solver's forkserver failed: solver processes are spawned now")
    return _start(multiprocessing.get_context("spawn"), target, args, name)


def _start(
    ctx: ForkServerContext | SpawnContext,
    target: Callable[..., None],
    args: tuple[Any, ...],
    name: str,
) -> tuple[Connection, BaseProcess]:
    conn, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(child, *args), name=name, daemon=True)
    try:
        process.start()
    except BaseException:
        conn.close()
        raise
    finally:
        child.close()
    return conn, process


def _forkserver_context() -> ForkServerContext | None:
    """The forkserver context, its preloads set at the first call; None to spawn."""
    global _forkserver, _spawn_only
    with _lock:
        if _forkserver is None and not _spawn_only:
            if "forkserver" not in multiprocessing.get_all_start_methods():
                _spawn_only = True
            else:
                ctx = multiprocessing.get_context("forkserver")
                ours = PRELOAD_OURS if _fresh_interpreter_finds_this_package() else ()
                if not ours:
                    log.info(
                        "another scheduler package is first on a fresh sys.path here: the "
                        "solver's forkserver preloads third-party modules only"
                    )
                ctx.set_forkserver_preload([*PRELOAD_THIRD_PARTY, *ours])
                _forkserver = ctx
        return None if _spawn_only else _forkserver


def _fresh_interpreter_finds_this_package() -> bool:
    """Whether ``python -c`` here (the forkserver's interpreter, flags, directory and
    environment) imports this process's ``scheduler`` package."""
    import scheduler

    code = "import importlib.util as u; s = u.find_spec('scheduler'); print(s and s.origin)"
    flags: list[str] = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]
    try:
        found = subprocess.run(
            [spawn.get_executable(), *flags, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        log.exception("could not tell which scheduler package a fresh interpreter imports")
        return False
    here = scheduler.__spec__.origin if scheduler.__spec__ else None
    return (
        found != "None" and here is not None and os.path.realpath(found) == os.path.realpath(here)
    )
