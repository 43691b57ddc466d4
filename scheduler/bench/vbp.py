"""``valley bench vbp``: consolidation against proven optima (vector bin packing).

Every node is the same; the question is how few nodes hold the work. Instances are the
Panigrahy classes and the Triplets (``../shared/data/vbp``); the reference tables give each
instance's lower bound, its optimum where one is proven (``OPT = -1`` otherwise) and the best
bin count of about 300 published heuristics. Policies: ``valley`` (``scheduler.solver.binpack
.min_bins``) and ``ffd`` (first-fit decreasing by the sum of capacity-normalised sizes).

Reported per benchmark, class and dimension: mean bins / OPT (or / LB where no optimum is
known), the share solved to the optimum, the same ratio for the best published heuristic over
the same instances, and seconds per instance. Valley's limit is deterministic work (about
seconds of one core; ``scheduler.solver.binpack.work``), so a run gives the same packings under
any load unless the wall-clock cap cuts in first (``share_wall_capped``).
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from scheduler.bench import report
from scheduler.solver.binpack import check_packing, first_fit_decreasing, min_bins

IntArray = npt.NDArray[np.int64]

PROJECT = Path(__file__).resolve().parents[2]  # the repository: shared/ sits beside it
DATA = PROJECT.parent / "shared" / "data" / "vbp"
DEFAULT_INSTANCES = (DATA / "panigrahy", DATA / "triplet")
DEFAULT_REFERENCES = (DATA / "Panigrahy_summary_known.csv", DATA / "Triplet_summary_known.csv")
POLICIES = ("valley", "ffd")
# the default wall-clock cap per instance, in multiples of the work limit: loose enough that the
# work limit, not the load, ends the search on a busy machine
WALL_FACTOR = 10.0


class VbpFormatError(ValueError):
    """A malformed ``.vbp`` or reference file: names the file, the line and the reason."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True)
class Instance:
    name: str
    path: str
    capacity: IntArray  # d
    items: IntArray  # n x d, one row per item (multiplicities expanded)

    @property
    def dimension(self) -> int:
        return len(self.capacity)

    @property
    def family(self) -> str:
        """The class in the file name: ``class1_120_10_3`` -> ``class1``."""
        return self.name.split("_", 1)[0]


@dataclass(frozen=True)
class Reference:
    benchmark: str
    lower_bound: int
    optimum: int  # -1: none proven
    best_overall: int

    @property
    def target(self) -> int:
        """What a bin count is compared with: the optimum, else the lower bound."""
        return self.optimum if self.optimum > 0 else self.lower_bound


# ----------------------------------------------------------------------------- readers


def read_vbp(path: str | Path) -> Instance:
    """Read a ``.vbp`` file: ``d``; the ``d`` capacities; the number of item lines; then one
    line per item type with ``d`` sizes and a multiplicity. Blank lines are skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise VbpFormatError(p, 0, f"cannot read: {e.strerror}") from None
    lines = [(k + 1, line.split()) for k, line in enumerate(text.splitlines()) if line.strip()]
    if not lines:
        raise VbpFormatError(p, 1, "empty file")

    def ints(lineno: int, fields: list[str], what: str) -> list[int]:
        try:
            return [int(f) for f in fields]
        except ValueError:
            raise VbpFormatError(
                p, lineno, f"{what}: expected integers, got {' '.join(fields)!r}"
            ) from None

    pos = 0

    def take(what: str) -> tuple[int, list[str]]:
        nonlocal pos
        if pos >= len(lines):
            last = lines[-1][0] if lines else 0
            raise VbpFormatError(p, last + 1, f"unexpected end of file: {what} missing")
        pos += 1
        return lines[pos - 1]

    ln, f = take("dimension")
    dims = ints(ln, f, "dimension")
    if len(dims) != 1 or dims[0] < 1:
        raise VbpFormatError(p, ln, f"dimension must be one integer >= 1, got {' '.join(f)!r}")
    d = dims[0]
    ln, f = take("capacities")
    cap = ints(ln, f, "capacities")
    if len(cap) != d:
        raise VbpFormatError(p, ln, f"expected {d} capacities, got {len(cap)}")
    if min(cap) <= 0:
        raise VbpFormatError(p, ln, f"capacities must be > 0, got {cap}")
    ln, f = take("number of item lines")
    count = ints(ln, f, "number of item lines")
    if len(count) != 1 or count[0] < 0:
        raise VbpFormatError(
            p, ln, f"number of item lines must be one integer >= 0, got {' '.join(f)!r}"
        )
    rows: list[list[int]] = []
    for k in range(count[0]):
        ln, f = take(f"item line {k + 1} of {count[0]}")
        vals = ints(ln, f, "item")
        if len(vals) != d + 1:
            raise VbpFormatError(
                p,
                ln,
                f"an item line has {d} sizes and a multiplicity ({d + 1} numbers), got {len(vals)}",
            )
        if vals[d] < 1:
            raise VbpFormatError(p, ln, f"multiplicity must be >= 1, got {vals[d]}")
        if any(v > c for v, c in zip(vals[:d], cap, strict=True)):
            raise VbpFormatError(p, ln, f"item {vals[:d]} exceeds the capacity {cap}")
        rows.append(vals)
    if pos < len(lines):
        ln, f = lines[pos]
        raise VbpFormatError(p, ln, f"extra line after {count[0]} item lines: {' '.join(f)!r}")
    arr = np.asarray(rows, dtype=np.int64).reshape(-1, d + 1)
    items = np.repeat(arr[:, :d], arr[:, d], axis=0)
    return Instance(p.stem, str(p), np.asarray(cap, dtype=np.int64), items)


def read_reference(path: str | Path) -> dict[str, Reference]:
    """Read a ``*_summary_known.csv`` table (tab-separated: instance_name, LB, OPT,
    best_overall, ...)."""
    p = Path(path)
    benchmark = p.name.split("_", 1)[0]
    out: dict[str, Reference] = {}
    try:
        handle = p.open(encoding="utf-8", newline="")
    except OSError as e:
        raise VbpFormatError(p, 0, f"cannot read: {e.strerror}") from None
    with handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        need = ("instance_name", "LB", "OPT", "best_overall")
        if header is None or any(h not in header for h in need):
            raise VbpFormatError(p, 1, f"header must name {', '.join(need)} (tab-separated)")
        col = {h: header.index(h) for h in need}
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < len(header):
                raise VbpFormatError(
                    p, lineno, f"expected {len(header)} tab-separated fields, got {len(row)}"
                )
            try:
                lb, opt, best = (int(row[col[h]]) for h in ("LB", "OPT", "best_overall"))
            except ValueError:
                raise VbpFormatError(
                    p, lineno, "LB, OPT and best_overall must be integers"
                ) from None
            if lb < 1 or best < lb or (opt != -1 and not lb <= opt <= best):
                raise VbpFormatError(
                    p, lineno, f"inconsistent bounds LB={lb} OPT={opt} best={best}"
                )
            out[row[col["instance_name"]]] = Reference(benchmark, lb, opt, best)
    return out


def find_instances(paths: Iterable[str | Path]) -> list[Path]:
    """``.vbp`` files given directly or found (recursively) in folders, sorted by name."""
    found: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend(sorted(p.rglob("*.vbp")))
        elif p.is_file():
            found.append(p)
        else:
            raise click.BadParameter(f"no such file or folder: {p}", param_hint="--instances")
    return sorted(set(found), key=lambda q: (q.name, str(q)))


def limit_per_group(paths: Sequence[Path], limit: int | None) -> list[Path]:
    """At most ``limit`` instances per class and dimension, evenly spread over the sorted list
    so that every size is represented."""
    if not limit:
        return list(paths)
    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for p in paths:
        parts = p.stem.split("_")
        groups[(parts[0], parts[2] if len(parts) > 2 else "")].append(p)
    out: list[Path] = []
    for members in groups.values():
        members = sorted(members, key=_natural_key)
        if len(members) <= limit:
            out.extend(members)
        else:
            picks = np.linspace(0, len(members) - 1, limit).round().astype(int)
            out.extend(members[int(i)] for i in sorted(set(picks.tolist())))
    return sorted(out, key=_natural_key)


def _natural_key(p: Path) -> tuple[Any, ...]:
    return tuple(int(t) if t.isdigit() else t for t in p.stem.split("_"))


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class Outcome:
    name: str
    family: str
    dimension: int
    n: int
    policy: str
    bins: int
    lower_bound: int
    proven_optimal: bool
    seconds: float
    work: float = 0.0  # deterministic work units used
    wall_capped: bool = False  # the wall-clock limit, not the work limit, ended the search


def solve_instance(
    path: str, time_limit_s: float, seed: int, wall_limit_s: float | None = None
) -> list[Outcome]:
    """Both policies on one instance (a process-pool task): valley gets ``time_limit_s`` units
    of deterministic work (about seconds of one core) and at most ``wall_limit_s`` seconds."""
    inst = read_vbp(path)
    out = []
    started = time.perf_counter()
    res = min_bins(
        inst.items,
        inst.capacity,
        time_limit_s=wall_limit_s or time_limit_s,
        work_limit=time_limit_s,
        seed=seed,
    )
    seconds = time.perf_counter() - started
    check_packing(inst.items, inst.capacity, res.assignment)
    out.append(
        Outcome(
            inst.name,
            inst.family,
            inst.dimension,
            len(inst.items),
            "valley",
            res.bins,
            res.lower_bound,
            res.optimal,
            seconds,
            float(res.stats.get("work_used", 0.0)),
            bool(res.stats.get("wall_capped", 0)),
        )
    )
    started = time.perf_counter()
    ffd = first_fit_decreasing(inst.items, inst.capacity)
    seconds = time.perf_counter() - started
    bins = check_packing(inst.items, inst.capacity, ffd)
    out.append(
        Outcome(
            inst.name,
            inst.family,
            inst.dimension,
            len(inst.items),
            "ffd",
            bins,
            res.lower_bound,
            bins <= res.lower_bound,
            seconds,
        )
    )
    return out


def write_details(outcomes: Sequence[Outcome], path: str) -> None:
    """Every outcome as a JSON list (instance, policy, bins, work, seconds, ...)."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([asdict(o) for o in outcomes], handle, indent=1)


def summarise(outcomes: Sequence[Outcome], refs: dict[str, Reference]) -> list[dict[str, Any]]:
    """One row per policy, benchmark, class and dimension, then one per policy and benchmark
    (class ``all``, dimension 0)."""
    groups: dict[tuple[str, str, str, int], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        ref = refs.get(o.name)
        bench = ref.benchmark if ref else "unreferenced"
        groups[(o.policy, bench, o.family, o.dimension)].append(o)
        groups[(o.policy, bench, "all", 0)].append(o)
    rows = []
    order = {p: i for i, p in enumerate(POLICIES)}
    for (policy, bench, family, dim), members in sorted(
        groups.items(),
        key=lambda kv: (
            order.get(kv[0][0], 9),
            kv[0][1],
            kv[0][2] == "all",
            _family_key(kv[0][2]),
            kv[0][3],
        ),
    ):
        ratios, optimal, ref_ratios = [], [], []
        for o in members:
            ref = refs.get(o.name)
            # without a reference table, the instance is measured against our own bound
            target = ref.target if ref else o.lower_bound
            ratios.append(o.bins / target)
            optimal.append(o.bins <= target or (ref is None and o.proven_optimal))
            if ref:
                ref_ratios.append(ref.best_overall / ref.target)
        rows.append(
            {
                "policy": policy,
                "benchmark": bench,
                "class": family,
                "dimension": dim,
                "instances": len(members),
                "mean_ratio_to_opt": float(np.mean(ratios)),
                "max_ratio_to_opt": float(np.max(ratios)),
                "share_optimal": float(np.mean(optimal)),
                "share_proven_optimal": float(np.mean([o.proven_optimal for o in members])),
                "seconds_per_instance": float(np.mean([o.seconds for o in members])),
                "work_per_instance": float(np.mean([o.work for o in members])),
                "share_wall_capped": float(np.mean([o.wall_capped for o in members])),
                "reference_best_ratio": float(np.mean(ref_ratios)) if ref_ratios else None,
            }
        )
    return rows


def _family_key(family: str) -> tuple[int, str]:
    digits = "".join(ch for ch in family if ch.isdigit())
    return (int(digits) if digits else 999, family)


def plot(rows: Sequence[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [r for r in rows if r["class"] != "all" and r["policy"] == "valley"]
    labels = [f"{r['class']}\nd={r['dimension']}" for r in groups]
    xs = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) + 2), 4.5))
    width = 0.28
    for k, policy in enumerate(POLICIES):
        vals = [
            next(
                (
                    r["mean_ratio_to_opt"]
                    for r in rows
                    if r["policy"] == policy
                    and r["class"] == g["class"]
                    and r["dimension"] == g["dimension"]
                    and r["benchmark"] == g["benchmark"]
                ),
                np.nan,
            )
            for g in groups
        ]
        ax.bar(xs + (k - 1) * width, vals, width, label=policy)
    ref = [
        g["reference_best_ratio"] if g["reference_best_ratio"] is not None else np.nan
        for g in groups
    ]
    ax.bar(xs + width, ref, width, label="best published heuristic", color="0.6")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("bins / optimum (or lower bound)")
    ax.set_ylim(0.98, max(1.05, np.nanmax([r["mean_ratio_to_opt"] for r in rows]) + 0.01))
    ax.set_title("Vector bin packing: mean bins relative to the optimum")
    ax.legend(fontsize=8)
    report.save_plot(fig, path)
    plt.close(fig)


@click.command("vbp")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--instances",
    "instance_paths",
    multiple=True,
    type=click.Path(),
    help="a .vbp file or a folder of them (repeatable); default: every Panigrahy and Triplet one",
)
@click.option(
    "--reference",
    "references",
    multiple=True,
    type=click.Path(),
    help="a *_summary_known.csv table (repeatable); default: the Panigrahy and Triplet tables",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="at most N instances per class and dimension (spread over the sizes)",
)
@click.option(
    "--time-limit",
    "time_limit_s",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="work per instance for valley, in deterministic units of about one second of one core "
    "(the same packing under any machine load)",
)
@click.option(
    "--wall-limit",
    "wall_limit_s",
    type=click.FloatRange(min=0.01),
    default=None,
    help="wall-clock cap per instance in seconds (default: 10 x --time-limit); where it cuts in "
    "before the work limit, the result depends on the load (share_wall_capped)",
)
@click.option(
    "--details",
    "details_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="write every instance's outcome to this JSON file (to compare runs instance by instance)",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="instances solved in parallel (processes)",
)
@report.seed_option
@report.output_option
@report.plot_option
def command(
    paths: tuple[str, ...],
    instance_paths: tuple[str, ...],
    references: tuple[str, ...],
    limit: int | None,
    time_limit_s: float,
    wall_limit_s: float | None,
    details_path: str | None,
    jobs: int,
    seed: int,
    output: str,
    plot_path: str | None,
) -> None:
    """Vector bin packing: Valley's consolidation solver and first-fit decreasing against
    proven optima and the best of about 300 published heuristics."""
    sources = list(paths) + list(instance_paths)
    if not sources:
        missing = [p for p in DEFAULT_INSTANCES if not p.is_dir()]
        if missing:
            raise click.ClickException(
                f"instance folder not found: {missing[0]} (pass --instances PATH)"
            )
        sources = [str(p) for p in DEFAULT_INSTANCES]
    files = limit_per_group(find_instances(sources), limit)
    if not files:
        raise click.ClickException("no .vbp instances found")
    ref_paths = list(references) or [str(p) for p in DEFAULT_REFERENCES if p.is_file()]
    refs: dict[str, Reference] = {}
    try:
        for rp in ref_paths:
            refs.update(read_reference(rp))
        for f in files:  # fail early, naming the file and line, before any solving
            read_vbp(f)
    except VbpFormatError as e:
        raise click.ClickException(str(e)) from None
    wall = wall_limit_s or WALL_FACTOR * time_limit_s
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    if jobs == 1:
        for f in report.progress(files, total=len(files), desc="vbp"):
            outcomes.extend(solve_instance(str(f), time_limit_s, seed, wall))
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = pool.map(
                solve_instance,
                [str(f) for f in files],
                [time_limit_s] * len(files),
                [seed] * len(files),
                [wall] * len(files),
            )
            for res in report.progress(futures, total=len(files), desc="vbp"):
                outcomes.extend(res)
    rows = summarise(outcomes, refs)
    params = {
        "instances": len(files),
        "time_limit_s": time_limit_s,
        "wall_limit_s": wall,
        "seed": seed,
        "limit_per_class": limit,
        "jobs": jobs,
        "references": [str(p) for p in ref_paths],
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    report.emit(
        "vbp",
        params,
        rows,
        output,
        columns=[
            "policy",
            "benchmark",
            "class",
            "dimension",
            "instances",
            "mean_ratio_to_opt",
            "max_ratio_to_opt",
            "share_optimal",
            "reference_best_ratio",
            "seconds_per_instance",
            "share_wall_capped",
        ],
    )
    if details_path:
        write_details(outcomes, details_path)
    if plot_path:
        plot(rows, plot_path)
