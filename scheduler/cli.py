"""The ``valley`` command. Subcommands live in their own modules and register here."""

from __future__ import annotations

import click

from scheduler import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="valley")
def cli() -> None:
    """Valley: workload placement for the Beijing-Hebei Cloud Computing Valley."""


def _register() -> None:
    # Each module adds its commands to ``cli``; imported lazily so a broken optional piece
    # names itself instead of breaking every command.
    from benchmarks.cli import bench

    cli.add_command(bench)


def main() -> None:
    _register()
    cli()


if __name__ == "__main__":
    main()
