"""What every suite shares: the JSON envelope, the table, the progress bar and the plot.

tqdm and matplotlib come with the ``bench`` extra (the server image leaves them out): they are
imported when a suite runs, and ``require_bench_extra`` says how to install them.

JSON: ``{"suite": NAME, "params": {...}, "rows": [...]}``, one row per policy (and size), and
``"summary": {...}`` for a suite whose run has figures of its own (``failover``).
"""

from __future__ import annotations

import importlib
import json
import math
import os
import platform
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")

BENCH_PACKAGES = ("tqdm", "matplotlib")


def require_bench_extra() -> None:
    """Raise a ``click.ClickException`` naming the install command when a package of the
    ``bench`` extra is missing (a server installed without it still serves)."""
    missing = []
    for name in BENCH_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise click.ClickException(
            f"valley bench needs {', '.join(missing)}, which come with the bench extra: "
            "pip install 'valley-scheduler[bench]'"
        )


def machine() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


def envelope(
    suite: str,
    params: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    out = {
        "suite": suite,
        "params": {**params, "machine": machine()},
        "rows": [dict(r) for r in rows],
    }
    if summary is not None:
        out["summary"] = dict(summary)
    return out


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """A progress bar on a terminal (stderr), silent in CI or when piped."""
    require_bench_extra()
    from tqdm import tqdm

    quiet = bool(os.environ.get("CI")) or not sys.stderr.isatty()
    yield from tqdm(items, total=total, desc=desc, disable=quiet, leave=False, file=sys.stderr)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A plain aligned text table of the rows."""
    if not rows:
        return "(no rows)"
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def emit(
    suite: str,
    params: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    output: str,
    columns: Sequence[str] | None = None,
    summary: Mapping[str, Any] | None = None,
) -> None:
    """Print the suite's result as a table (with its parameters, then ``summary`` if given: what
    holds for the run as a whole) or as JSON."""
    if output == "json":
        click.echo(json.dumps(envelope(suite, params, rows, summary), indent=2, default=str))
        return
    shown = ", ".join(f"{k}={v}" for k, v in params.items())
    click.echo(f"suite {suite}: {shown}")
    click.echo(table(rows, columns))
    if summary:
        click.echo("summary: " + ", ".join(f"{k}={_cell(v)}" for k, v in summary.items()))


def save_plot(fig: Any, path: str | Path) -> None:
    """Write a matplotlib figure as PNG and say where."""
    fig.savefig(path, dpi=120, bbox_inches="tight")
    click.echo(f"plot written to {path}", err=True)


output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for machines",
)
plot_option = click.option(
    "--plot", "plot_path", type=click.Path(dir_okay=False), default=None, help="write a PNG figure"
)
seed_option = click.option(
    "--seed", type=int, default=0, show_default=True, help="random seed (printed with the results)"
)


def store_kind(store: str) -> str:
    """``sqlite`` or ``postgresql``: what a row says of its store (never the URL, which may
    hold a password)."""
    return "sqlite" if store.startswith("sqlite") else "postgresql"


def _check_stores(ctx: click.Context, param: click.Parameter, stores: tuple[str, ...]) -> Any:
    for store in stores:
        if store != "sqlite" and not store.startswith(("postgresql://", "postgres://")):
            raise click.BadParameter(f"{store!r}: sqlite or a postgresql:// URL")
    return stores


stores_option = click.option(
    "--store",
    "stores",
    multiple=True,
    default=("sqlite",),
    show_default=True,
    callback=_check_stores,
    help="Valley's store, repeatable (a row each): sqlite (a temporary file) or the "
    "postgresql:// URL of an empty database",
)
