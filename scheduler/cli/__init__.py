"""The ``valley`` command: ``serve`` runs the service (``serve.py``); ``submit``, ``get``,
``list``, ``cancel``, ``explain``, ``sites``, ``watch``, ``cordon``, ``uncordon``,
``drain`` and ``rebalance`` talk to one over gRPC (``commands.py``, on ``client.py`` and
``tables.py``); ``bench`` comes from its own package and ``demo`` (``demo.py``, over the
``scheduler.demo`` mix) is imported when named.

The client commands know only the protos (never the domain): they are a client like any other.
"""

from __future__ import annotations

import click

from scheduler import __version__
from scheduler.cli.commands import (
    cancel,
    cordon,
    drain,
    explain,
    get,
    list_workloads,
    rebalance,
    sites,
    submit,
    uncordon,
    watch,
)
from scheduler.cli.lazy import LazyGroup
from scheduler.cli.serve import serve
from scheduler.cli.workload_files import WorkloadFile, WorkloadFileError, load_workload_file

__all__ = ["WorkloadFile", "WorkloadFileError", "cli", "load_workload_file", "main"]


@click.group(
    cls=LazyGroup,
    lazy={"bench": "scheduler.bench.cli:bench", "demo": "scheduler.cli.demo:demo"},
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(__version__, prog_name="valley")
def cli() -> None:
    """Valley: workload placement for the Beijing-Hebei Cloud Computing Valley."""


for _command in (
    serve,
    submit,
    get,
    list_workloads,
    cancel,
    explain,
    sites,
    watch,
    cordon,
    drain,
    uncordon,
    rebalance,
):
    cli.add_command(_command)


def main() -> None:
    """The ``valley`` script."""
    cli()
