"""``valley bench roadef``: machine reassignment on the ROADEF/EURO Challenge 2012 instances.

Each instance (sets A and B of ``../shared/data/roadef2012``: a model file and the initial
assignment beside it) is solved by Valley's reassignment engine (``scheduler.solver.reassign``)
under a wall-clock limit per instance (the challenge's 300 s by default, reading the files and
writing the solution included; the compiled code is loaded before the clock, ``warm_up``), and
every answer is re-checked by the independent evaluator (``reassign.evaluate``), which also
gives the reported cost. Per instance: the initial cost, the cost, the lower bound (the data's
``lb_*`` file), the gap to it, the best published cost (``best_known_AB.csv``) and the
challenge's score ``100 x (cost - best known) / initial cost``, seconds and validity; per set,
the mean and worst score.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import click
import numpy as np

from scheduler.bench import report
from scheduler.solver.reassign import (
    Instance,
    RoadefFormatError,
    assignment_path,
    evaluate,
    read_assignment,
    read_bound,
    read_model,
    reassign,
    write_assignment,
)
from scheduler.solver.reassign.search import SearchParams

PROJECT = Path(__file__).resolve().parents[2]  # the repository: shared/ sits beside it
DATA = PROJECT.parent / "shared" / "data" / "roadef2012"
DEFAULT_SETS = (DATA / "A", DATA / "B")
BEST_KNOWN = DATA / "best_known_AB.csv"
# the search ends this much before the limit: writing the solution (inside the limit, as in the
# challenge) and the search's last step overrunning its deadline take the rest
MARGIN_S = 0.5

COLUMNS = [
    "instance",
    "set",
    "initial_cost",
    "cost",
    "best_known",
    "score",
    "lower_bound",
    "gap_to_lower_bound",
    "seconds",
    "valid",
]


def canonical(name: str) -> str:
    """``b_01`` -> ``b_1`` (the best-known table's spelling)."""
    head, _, num = name.rpartition("_")
    return f"{head}_{int(num)}" if head and num.isdigit() else name


def read_best_known(path: str | Path) -> dict[str, int]:
    """The ``best_found`` column of ``best_known_AB.csv`` by instance (``a1_1``, ``b_1``)."""
    p = Path(path)
    out: dict[str, int] = {}
    with p.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for lineno, row in enumerate(reader, start=2):
            try:
                out[row["instance"]] = int(row["best_found"])
            except (KeyError, TypeError, ValueError):
                raise RoadefFormatError(
                    p, lineno, "needs integer instance and best_found"
                ) from None
    return out


def find_models(paths: Iterable[str | Path]) -> list[Path]:
    """Model files given directly or found (``model_*.txt``) in folders, sorted by name."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(sorted(p.glob("model_*.txt")))
        elif p.is_file():
            found.append(p)
        else:
            raise click.BadParameter(f"no such file or folder: {p}", param_hint="--instances")
    return sorted(set(found), key=lambda q: (q.parent.name, q.name))


def _i64(*values: Any) -> Any:
    return np.array(values, dtype=np.int64)


def warm_up() -> float:
    """Load (or, with no on-disk cache yet, compile: 20-40 s a kernel) the search's compiled
    code on the specification's example, before any instance's clock starts: the challenge
    times a built program, and a compile inside the first instance's limit overran a 5 s
    limit by 27 s. Once on the example as it is (descent, relocations, late acceptance, a
    neighbourhood) and once without its transient resource (the annealings). The seconds it
    took."""
    started = time.perf_counter()
    example = Instance(
        name="example",
        transient=np.array([True, False]),
        weight_load=_i64(100, 10),
        neighborhood=_i64(0, 0, 1, 1),
        location=_i64(0, 0, 1, 2),
        capacity=_i64([30, 400], [10, 240], [15, 100], [10, 100]),
        safety=_i64([16, 80], [8, 160], [12, 80], [8, 80]),
        machine_move_cost=_i64([0, 1, 4, 5], [1, 0, 3, 4], [4, 3, 0, 2], [5, 4, 2, 0]),
        spread_min=_i64(2, 1),
        dependencies=(_i64(), _i64(0)),
        service=_i64(0, 0, 1),
        requirement=_i64([12, 10], [10, 20], [6, 200]),
        process_move_cost=_i64(1000, 100, 1),
        balance=_i64([0, 1, 20]),
        weight_balance=_i64(10),
        weight_process_move=1,
        weight_service_move=10,
        weight_machine_move=100,
    )
    initial = _i64(0, 3, 0)
    no_settle = SearchParams(settle_max_processes=0)  # late acceptance, not the annealing
    for inst, params in (
        (example, no_settle),
        (replace(example, transient=np.array([False, False])), SearchParams()),
    ):
        reassign(inst, initial, time_limit_s=600.0, params=params, max_la=2000, max_lns=1)
    return time.perf_counter() - started


def solve_instance(
    model: str, time_limit_s: float, seed: int, solutions: str | None
) -> dict[str, Any]:
    """Solve one instance within ``time_limit_s``, as the challenge times it: reading the
    files, the search and writing the solution (``seconds``; ``read_seconds`` the reading
    alone). Then re-check the answer (a process-pool task)."""
    started = time.perf_counter()
    inst = read_model(model)
    initial = read_assignment(assignment_path(model), inst)
    lb_file = Path(model).with_name("lb_" + Path(model).name.removeprefix("model_"))
    lower = read_bound(lb_file) if lb_file.is_file() else None
    read_seconds = time.perf_counter() - started
    budget = time_limit_s - read_seconds - MARGIN_S
    result = reassign(inst, initial, time_limit_s=max(0.0, budget), seed=seed)
    if solutions:
        write_assignment(Path(solutions) / f"solution_{inst.name}.txt", result.assignment)
    seconds = time.perf_counter() - started
    verdict = evaluate(inst, initial, result.assignment)
    start_verdict = evaluate(inst, initial, initial)
    return {
        "instance": inst.name,
        "set": Path(model).parent.name,
        "initial_cost": start_verdict.total,
        "cost": verdict.total,
        "lower_bound": lower,
        "seconds": round(seconds, 2),
        "read_seconds": round(read_seconds, 2),
        # the search's own bookkeeping must agree with the evaluator's recomputation
        "valid": verdict.valid and verdict.total == result.cost,
        "violations": [f"{v.kind}: {v.detail}" for v in verdict.violations[:5]],
        "moved": int((result.assignment != initial).sum()),
        "stats": result.stats,
    }


def score_rows(rows: list[dict[str, Any]], best: dict[str, int]) -> None:
    """Add the best known cost, the score and the gap to the lower bound to each row."""
    for row in rows:
        known = best.get(canonical(row["instance"]))
        row["best_known"] = known
        row["score"] = (
            100.0 * (row["cost"] - known) / row["initial_cost"]
            if known is not None and row["initial_cost"]
            else None
        )
        lb = row["lower_bound"]
        row["gap_to_lower_bound"] = (
            100.0 * (row["cost"] - lb) / row["cost"] if lb is not None and row["cost"] else None
        )


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per set: instances, all valid, mean and worst score, mean gap to the bound."""
    out = []
    for name in sorted({r["set"] for r in rows}):
        members = [r for r in rows if r["set"] == name]
        scores = [r["score"] for r in members if r["score"] is not None]
        gaps = [r["gap_to_lower_bound"] for r in members if r["gap_to_lower_bound"] is not None]
        out.append(
            {
                "set": name,
                "instances": len(members),
                "all_valid": all(r["valid"] for r in members),
                "mean_score": float(np.mean(scores)) if scores else None,
                "worst_score": float(np.max(scores)) if scores else None,
                "mean_gap_to_lower_bound": float(np.mean(gaps)) if gaps else None,
                "mean_seconds": float(np.mean([r["seconds"] for r in members])),
            }
        )
    return out


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r["score"] is not None]
    xs = np.arange(len(shown))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(shown) + 2), 4.5))
    ax.bar(xs, [max(r["score"], 1e-4) for r in shown], color="tab:blue", label="Valley")
    ax.set_yscale("log")
    ax.axhline(0.5, color="tab:red", lw=0.8, ls="--", label="target A (0.5)")
    ax.axhline(0.3, color="tab:orange", lw=0.8, ls="--", label="target B (0.3)")
    ax.set_xticks(xs, [r["instance"] for r in shown], rotation=60, fontsize=7)
    ax.set_ylabel("score: 100 x (cost - best known) / initial cost")
    ax.set_title("ROADEF/EURO 2012 machine reassignment")
    ax.legend(fontsize=8)
    report.save_plot(fig, path)
    plt.close(fig)


@click.command("roadef")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--instances",
    "instance_paths",
    multiple=True,
    type=click.Path(),
    help="a model file or a folder of model_*.txt files (repeatable; more files may follow as "
    "arguments); the assignment is the file beside it (model_ -> assignment_); "
    "default: sets A and B",
)
@click.option(
    "--time-limit",
    "time_limit_s",
    type=click.FloatRange(min=1.0),
    default=300.0,
    show_default=True,
    help="wall-clock seconds per instance, reading and writing the files included (the "
    "challenge's limit is 300)",
)
@click.option(
    "--solutions",
    "solutions_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="write each new assignment here (solution_NAME.txt, the challenge's format)",
)
@click.option(
    "--best-known",
    "best_known_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="the table of best published costs (default: the data's best_known_AB.csv)",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="instances solved in parallel (processes; each search uses one core)",
)
@report.seed_option
@report.output_option
@report.plot_option
def command(
    paths: tuple[str, ...],
    instance_paths: tuple[str, ...],
    time_limit_s: float,
    solutions_dir: str | None,
    best_known_path: str | None,
    jobs: int,
    seed: int,
    output: str,
    plot_path: str | None,
) -> None:
    """ROADEF/EURO 2012 machine reassignment: Valley's reassignment engine against the
    challenge's best known results and lower bounds, every solution re-checked."""
    sources = list(instance_paths) + list(paths)
    if not sources:
        missing = [p for p in DEFAULT_SETS if not p.is_dir()]
        if missing:
            raise click.ClickException(
                f"instance folder not found: {missing[0]} (pass --instances MODEL_FILES)"
            )
        sources = [str(p) for p in DEFAULT_SETS]
    models = find_models(sources)
    if not models:
        raise click.ClickException("no model_*.txt instances found")
    best_path = Path(best_known_path) if best_known_path else BEST_KNOWN
    try:
        best = read_best_known(best_path) if best_path.is_file() else {}
        for m in models:  # fail early, naming the file and line, before any solving
            read_assignment(assignment_path(m), read_model(m))
    except RoadefFormatError as e:
        raise click.ClickException(str(e)) from None
    except OSError as e:
        raise click.ClickException(f"{best_path}: {e}") from None
    if solutions_dir:
        Path(solutions_dir).mkdir(parents=True, exist_ok=True)
    warm_s = warm_up()  # in this process; each pool worker loads the code again from disk
    started = time.perf_counter()
    args = [str(m) for m in models]
    rows: list[dict[str, Any]] = []
    if jobs == 1:
        for model in report.progress(args, total=len(args), desc="roadef"):
            rows.append(solve_instance(model, time_limit_s, seed, solutions_dir))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=warm_up) as pool:
            futures = pool.map(
                solve_instance,
                args,
                [time_limit_s] * len(args),
                [seed] * len(args),
                [solutions_dir] * len(args),
            )
            rows.extend(report.progress(futures, total=len(args), desc="roadef"))
    score_rows(rows, best)
    summary = summarise(rows)
    params = {
        "instances": len(models),
        "time_limit_s": time_limit_s,
        "seed": seed,
        "jobs": jobs,
        "best_known": str(best_path),
        "solutions": solutions_dir,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "warm_up_seconds": round(warm_s, 1),
    }
    if output == "json":
        report.emit("roadef", {**params, "summary": summary}, rows, output)
    else:
        report.emit("roadef", params, rows, output, columns=COLUMNS)
        click.echo("")
        click.echo(report.table(summary))
    if plot_path:
        plot(rows, plot_path)
