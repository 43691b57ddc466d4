"""``valley bench roadef``: machine reassignment on the ROADEF/EURO Challenge 2012 instances.

Each instance (sets A and B of ``../shared/data/roadef2012``: a model file and the initial
assignment beside it) is solved by Valley's reassignment engine (``scheduler.solver.reassign``)
under a wall-clock limit per instance (the challenge's 300 s by default, reading the files and
writing the solution included; the compiled code is loaded before the clock, ``warm_up``), and
every answer is re-checked by the independent evaluator (``reassign.evaluate``), which also
gives the reported cost. Each instance is searched ``--searches`` times at once (processes,
seeds ``search_seed``; by default as many as the cores allow beside ``--jobs``) and the
cheapest valid answer is kept (``keep_best``): the runs of one search differ by seed about as
much as there is left to gain on the hardest instances. Per instance: the initial cost, the
cost, the lower bound (the data's ``lb_*`` file), the gap to it, the best published cost
(``best_known_AB.csv``) and the challenge's score ``100 x (cost - best known) / initial
cost``, seconds and validity; per set, the mean and worst score.
"""

from __future__ import annotations

import csv
import os
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


def search_seed(seed: int, k: int) -> int:
    """The seed of an instance's ``k``-th search: the run's own seed for the first (one search
    is the run it always was), a draw from both for the others."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, k]).generate_state(1)[0] >> 1)


def solve_instance(
    model: str, time_limit_s: float, seed: int, solutions: str | None, k: int = 0
) -> dict[str, Any]:
    """Solve one instance within ``time_limit_s``, as the challenge times it: reading the
    files, the search and writing the solution (``seconds``; ``read_seconds`` the reading
    alone). Then re-check the answer (a process-pool task). ``k``: which of the instance's
    searches this is (its seed: ``search_seed``; its solution file gets the suffix ``.k``
    when ``k > 0``, for ``keep_best`` to pick)."""
    started = time.perf_counter()
    inst = read_model(model)
    initial = read_assignment(assignment_path(model), inst)
    lb_file = Path(model).with_name("lb_" + Path(model).name.removeprefix("model_"))
    lower = read_bound(lb_file) if lb_file.is_file() else None
    read_seconds = time.perf_counter() - started
    budget = time_limit_s - read_seconds - MARGIN_S
    own_seed = search_seed(seed, k)
    result = reassign(inst, initial, time_limit_s=max(0.0, budget), seed=own_seed)
    if solutions:
        write_assignment(solution_path(solutions, inst.name, k), result.assignment)
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
        "seed": own_seed,
        "stats": result.stats,
    }


def solution_path(folder: str, name: str, k: int = 0) -> Path:
    """Where search ``k`` of instance ``name`` writes its assignment."""
    path = Path(folder) / f"solution_{name}.txt"
    return path if k == 0 else path.with_name(f"{path.name}.{k}")


def keep_best(searches: Sequence[dict[str, Any]], solutions: str | None) -> dict[str, Any]:
    """One instance's row from its searches' rows: the cheapest valid one (the first search's
    when none is valid), with every search's cost and the slowest one's seconds (they ran at
    once); its solution file becomes ``solution_NAME.txt``, the others' are removed."""
    order = sorted(
        range(len(searches)), key=lambda k: (not searches[k]["valid"], searches[k]["cost"], k)
    )
    k = order[0] if searches[order[0]]["valid"] else 0
    row = dict(searches[k])
    row["seconds"] = max(s["seconds"] for s in searches)
    row["searches"] = len(searches)
    row["search_costs"] = [s["cost"] for s in searches]
    row["all_searches_valid"] = all(s["valid"] for s in searches)
    if solutions:
        name = row["instance"]
        for j in range(1, len(searches)):
            path = solution_path(solutions, name, j)
            if j == k:
                path.replace(solution_path(solutions, name))
            else:
                path.unlink(missing_ok=True)
    return row


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
@click.option(
    "--searches",
    type=click.IntRange(min=1, max=64),
    default=None,
    help="searches of each instance at once, each a process with its own seed, the cheapest "
    "kept (default: the cores over --jobs; 1 gives the single search of earlier versions)",
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
    searches: int | None,
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
    per = searches if searches is not None else max(1, usable_cores() // jobs)
    tasks = [(str(m), k) for m in models for k in range(per)]
    rows: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []

    def finished(search: dict[str, Any]) -> None:
        done.append(search)
        if len(done) == per:  # an instance's searches are in: keep one row and one file
            rows.append(keep_best(done, solutions_dir))
            done.clear()

    if jobs * per == 1:
        for model, k in report.progress(tasks, total=len(tasks), desc="roadef"):
            finished(solve_instance(model, time_limit_s, seed, solutions_dir, k))
    else:
        # an instance's searches are neighbours in the queue, so they run at the same time
        with ProcessPoolExecutor(max_workers=jobs * per, initializer=warm_up) as pool:
            futures = pool.map(
                solve_instance,
                [t[0] for t in tasks],
                [time_limit_s] * len(tasks),
                [seed] * len(tasks),
                [solutions_dir] * len(tasks),
                [t[1] for t in tasks],
            )
            for search in report.progress(futures, total=len(tasks), desc="roadef"):
                finished(search)
    score_rows(rows, best)
    summary = summarise(rows)
    params = {
        "instances": len(models),
        "time_limit_s": time_limit_s,
        "seed": seed,
        "jobs": jobs,
        "searches": per,
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
