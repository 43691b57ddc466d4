"""``valley bench SUITE``: each suite module adds one command to this group."""

from __future__ import annotations

import importlib

import click

from scheduler.bench.report import require_bench_extra

# suite name -> module that defines a click command named ``command``
SUITES = {
    "scenario": "scheduler.bench.scenario",
    "openb": "scheduler.bench.openb",
    "vbp": "scheduler.bench.vbp",
    "service": "scheduler.bench.service",
    "loop": "scheduler.bench.loop",
    "day": "scheduler.bench.day",
    "roadef": "scheduler.bench.roadef",
    "failover": "scheduler.bench.failover",
}


class _Suites(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUITES)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = SUITES.get(name)
        if module is None:
            return None
        try:
            cmd = importlib.import_module(module).command
        except ModuleNotFoundError as e:
            if e.name != module:
                raise

            @click.command(name, help=f"(not built yet: {module})")
            def missing() -> None:
                raise click.ClickException(f"suite {name} is not built yet ({module})")

            return missing
        assert isinstance(cmd, click.Command)
        return cmd


@click.group(cls=_Suites)
def bench() -> None:
    """Run a benchmark suite against peers, published results or ceilings (needs the bench
    extra: pip install 'valley-scheduler[bench]')."""
    require_bench_extra()
