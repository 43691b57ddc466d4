"""``valley bench scenario``: the Beijing-Hebei trade-off, every policy on the same instance.

Per size, a Zhongguancun workload mix (``workload_mix``) and the default scenario with its node
counts scaled (``Scenario.scaled``) so that

- the latency-critical demand (workloads whose SLO only some sites meet: 2 ms, E-Town) fills
  ``--critical-share`` (0.9) of the CPU nodes of those sites, and
- the whole demand fills ``--load`` (0.5) of the capacity: CPU-only work of the CPU nodes, GPU
  work of the GPU nodes (which keep the scenario's proportions between pools),

each measured in the dominant resource (CPU or memory; GPUs too for GPU nodes), so the target
share is never infeasible in another resource. E-Town is then short of capacity: the critical
work needs nearly all of it, and everything else should go to Zhangbei.

Every policy solves the same problem; each result is verified by the independent checker
(``scheduler.bench.checker``) and scored by ``objective.evaluate`` (the facility energy cost and
carbon of the whole cluster after placement, per hour).
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click

from scheduler.bench import report
from scheduler.bench.checker import Violation, check_result, count_by_rule
from scheduler.bench.workload_mix import SHAPES_FILE, generate_mix, load_shapes
from scheduler.domain import (
    DEFAULT_SCENARIO,
    GPU_MILLIS,
    Cluster,
    Resources,
    Scenario,
    WorkloadSpec,
    load_scenario,
)
from scheduler.solver import (
    POLICIES,
    REPAIRS,
    PendingWorkload,
    PlacementResult,
    Problem,
    SolverParams,
    solve,
)
from scheduler.solver.floors import floor_params
from scheduler.solver.objective import evaluate, rack_sharing

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_SIZES = (1000, 10_000, 50_000)
MONTH = 1  # January: no critical-peak tariff; the hour decides the price

COLUMNS = (
    "policy",
    "replicas",
    "placed",
    "placed_critical",
    "slo_violations",
    "violations",
    "energy_cny_per_hour",
    "carbon_kg_per_hour",
    "energy_vs_kube",
    "carbon_vs_kube",
    "mean_service_rtt_ms",
    "etown_share_of_flexible",
    "solve_seconds",
    "objective",
    "gap",
    "rss_mib",
)


# --------------------------------------------------------------------------- the instance


def is_latency_critical(scenario: Scenario, spec: WorkloadSpec) -> bool:
    """An SLO that some site of the scenario does not meet (2 ms from Zhongguancun: E-Town only)."""
    if spec.max_latency_ms <= 0 or not spec.origin:
        return False
    return any(s.latency_ms[spec.origin] > spec.max_latency_ms for s in scenario.sites)


def _critical_sites(scenario: Scenario, mix: Sequence[PendingWorkload]) -> set[str]:
    sites: set[str] = set()
    for w in mix:
        if is_latency_critical(scenario, w.spec):
            sites |= {
                s.name
                for s in scenario.sites
                if s.latency_ms[w.spec.origin] <= w.spec.max_latency_ms
            }
    return sites


def _nodes_needed(demand: Resources, node: Resources, share: float) -> int:
    """Nodes of shape ``node`` for ``demand`` to fill ``share`` of them in the dominant
    resource (GPU demand counted in millis)."""
    ratios = [demand.cpu_millis / node.cpu_millis, demand.memory_mib / node.memory_mib]
    if node.gpus:
        ratios.append(demand.gpu_demand_millis / (node.gpus * GPU_MILLIS))
    return max(1, math.ceil(max(ratios) / share))


def _total(specs: Sequence[WorkloadSpec]) -> Resources:
    total = Resources()
    for s in specs:
        total = total + s.resources.scaled(s.replica_count)
    return total


def _split(count: int, weights: Sequence[int]) -> list[int]:
    """``count`` split in proportion to ``weights`` (largest remainder), at least 1 each."""
    total = sum(weights)
    raw = [count * w / total for w in weights]
    out = [max(1, math.floor(x)) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: raw[i] - math.floor(raw[i]), reverse=True)
    for i in order[: max(0, count - sum(out))]:
        out[i] += 1
    return out


@dataclass(frozen=True)
class Demand:
    """What the cluster is sized for: the latency-critical CPU-only demand (workloads whose SLO
    only some sites meet) and those sites, all CPU-only demand, and GPU demand."""

    critical: Resources
    critical_sites: frozenset[str]
    cpu: Resources
    gpu: Resources


def mix_demand(base: Scenario, mix: Sequence[PendingWorkload]) -> Demand:
    """The demand of ``mix``, every replica at once."""
    cpu_specs = [w.spec for w in mix if not w.spec.resources.wants_gpu]
    return Demand(
        critical=_total([s for s in cpu_specs if is_latency_critical(base, s)]),
        critical_sites=frozenset(_critical_sites(base, mix)),
        cpu=_total(cpu_specs),
        gpu=_total([w.spec for w in mix if w.spec.resources.wants_gpu]),
    )


def scaled_scenario(
    base: Scenario, mix: Sequence[PendingWorkload], load: float, critical_share: float
) -> Scenario:
    """``base`` with node counts for ``mix`` (see the module docstring)."""
    return scaled_for(base, mix_demand(base, mix), load, critical_share)


def scaled_for(base: Scenario, demand: Demand, load: float, critical_share: float) -> Scenario:
    """``base`` with node counts such that ``demand.critical`` fills ``critical_share`` of the
    CPU nodes of its sites and the whole demand ``load`` of the capacity (module docstring)."""
    cpu_pools = [p for p in base.pools if not p.node.gpus]
    gpu_pools = [p for p in base.pools if p.node.gpus]
    crit_pools = [p for p in cpu_pools if p.site in demand.critical_sites]
    other_pools = [p for p in cpu_pools if p.site not in demand.critical_sites]

    def mean_node(pools: Sequence[Any]) -> Resources:
        n = sum(p.count for p in pools)
        total = Resources()
        for p in pools:
            total = total + p.node.scaled(p.count)
        return Resources(
            total.cpu_millis // n, total.memory_mib // n, total.gpus // n, total.gpu_millis // n
        )

    counts: dict[str, int] = {}
    n_crit = 0
    if crit_pools:
        n_crit = _nodes_needed(demand.critical, mean_node(crit_pools), critical_share)
        for p, c in zip(crit_pools, _split(n_crit, [p.count for p in crit_pools]), strict=True):
            counts[p.key] = c
    if other_pools:
        n_cpu = _nodes_needed(demand.cpu, mean_node(cpu_pools), load)
        n_other = max(len(other_pools), n_cpu - n_crit)
        for p, c in zip(other_pools, _split(n_other, [p.count for p in other_pools]), strict=True):
            counts[p.key] = c
    if gpu_pools:
        n_gpu = _nodes_needed(demand.gpu, mean_node(gpu_pools), load)
        for p, c in zip(gpu_pools, _split(n_gpu, [p.count for p in gpu_pools]), strict=True):
            counts[p.key] = c
    return base.scaled({p.key: counts.get(p.key, p.count) / p.count for p in base.pools})


# --------------------------------------------------------------------------- floors


def _without_energy_prices(scenario: Scenario) -> Scenario:
    sites = tuple(
        replace(s, price_cny_per_kwh=(0.0,) * len(s.price_cny_per_kwh), critical_peak=None)
        for s in scenario.sites
    )
    return replace(scenario, sites=sites)


# the rack spread weight of the runs with the default spread (0 without it)
RACK_SPREAD = SolverParams().rack_spread_cny_per_replica_hour


def floors(
    problem: Problem, time_limit: float, seed: int, default_spread: bool = True
) -> dict[str, float | None]:
    """Lower bounds no placement of every workload can beat, from Valley's own bound with the
    objective cut down to one term: energy cost (carbon price, latency, headroom and rack
    spread weights 0) and carbon (energy prices 0, the scenario's carbon price). The penalties
    for leaving work out stay, so each bound holds for every placement that places all the
    work Valley's model can place (and keeps the SERVICE default spread unless
    ``default_spread`` is off). None where the solver proved no bound in time."""
    plain = floor_params(SolverParams(default_spread=default_spread), time_limit)
    energy = solve(problem, replace(plain, carbon_price_cny_per_tonne=0.0), seed=seed)
    carbon_problem = replace(problem, scenario=_without_energy_prices(problem.scenario))
    price = problem.scenario.carbon_price_cny_per_tonne / 1000.0  # CNY per kg
    carbon = solve(carbon_problem, plain, seed=seed)
    return {
        "energy_floor_cny_per_hour": energy.bound,
        "carbon_floor_kg_per_hour": (
            carbon.bound / price if carbon.bound is not None and price > 0 else None
        ),
    }


def _floor_line(row: Mapping[str, Any]) -> str:
    def show(value: float | None, unit: str, vs: float | None) -> str:
        if value is None:
            return "none proven"
        return f"{value:.1f} {unit}" + (f" ({vs:+.1%} vs kube)" if vs is not None else "")

    return (
        f"floors at {row['replicas']} replicas (no placement of all the work does better): "
        f"energy {show(row['energy_floor_cny_per_hour'], 'CNY/h', row.get('energy_floor_vs_kube'))}"
        f", carbon {show(row['carbon_floor_kg_per_hour'], 'kg/h', row.get('carbon_floor_vs_kube'))}"
    )


# --------------------------------------------------------------------------- one run


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def measure(
    problem: Problem, result: PlacementResult, params: SolverParams, replicas: int
) -> dict[str, Any]:
    """One row: the result checked by the independent checker and scored from scratch."""
    scenario = problem.scenario
    parts = result.gap_parts()
    specs = {w.id: w.spec for w in problem.workloads}
    violations: list[Violation] = check_result(
        problem,
        result,
        cpu_on_gpu_nodes=params.cpu_on_gpu_nodes,
        default_spread=params.default_spread,
    )
    by_rule = count_by_rule(violations)
    slo = by_rule.pop("slo", 0)
    scored = evaluate(problem, result.placements, params)
    placed = placed_critical = flexible = flexible_etown = 0
    rtt_sum = 0.0
    service_replicas = 0
    etown = "etown" if "etown" in scenario.site_names else scenario.sites[0].name
    for wid, reps in result.placements.items():
        spec = specs[wid]
        placed += len(reps)
        critical = is_latency_critical(scenario, spec)
        if critical:
            placed_critical += len(reps)
        else:
            flexible += len(reps)
            flexible_etown += sum(1 for rp in reps if rp.site == etown)
        if spec.is_service and spec.origin:
            for rp in reps:
                rtt_sum += scenario.site(rp.site).latency_ms[spec.origin]
                service_replicas += 1
    critical_total = sum(
        s.replica_count for s in specs.values() if is_latency_critical(scenario, s)
    )
    return {
        "policy": result.policy,
        "replicas": replicas,
        "placed": placed,
        "critical": critical_total,
        "placed_critical": placed_critical,
        "workloads": len(specs),
        "workloads_placed": len(result.placements),
        "slo_violations": slo,
        "violations": sum(by_rule.values()),
        "violation_rules": by_rule,
        "energy_cny_per_hour": scored.energy_cny_per_hour,
        "carbon_kg_per_hour": scored.carbon_kg_per_hour,
        "power_kw": scored.power_watts / 1000.0,
        "mean_service_rtt_ms": rtt_sum / service_replicas if service_replicas else None,
        # service replicas that share a rack with another replica of their service
        "service_replicas_sharing_a_rack": sum(
            rack_sharing(problem.cluster, reps)
            for wid, reps in result.placements.items()
            if specs[wid].is_service
        ),
        "etown_share_of_flexible": flexible_etown / flexible if flexible else None,
        "solve_seconds": result.solve_seconds,
        "objective": result.objective,
        "objective_recomputed": scored.objective,
        "bound": result.bound,
        "gap": result.gap,
        # the gap split: decision of the aggregated model above the bound, packing above it
        "gap_bound_side": parts[0] if parts else None,
        "gap_packing_side": parts[1] if parts else None,
        "status": result.status.value,
        "rss_mib": round(peak_rss_mib(), 1),
    }


def _compare_with_kube(rows: list[dict[str, Any]]) -> None:
    """Energy and carbon of each row relative to ``kube`` of the same size (-0.25 = 25% less)."""
    kube = {(r["replicas"], r["seed"]): r for r in rows if r["policy"] == "kube"}
    for r in rows:
        k = kube.get((r["replicas"], r["seed"]))
        for col, mine, theirs in (
            ("energy_vs_kube", "energy_cny_per_hour", "energy_cny_per_hour"),
            ("carbon_vs_kube", "carbon_kg_per_hour", "carbon_kg_per_hour"),
            ("energy_floor_vs_kube", "energy_floor_cny_per_hour", "energy_cny_per_hour"),
            ("carbon_floor_vs_kube", "carbon_floor_kg_per_hour", "carbon_kg_per_hour"),
        ):
            if mine not in r:
                continue
            if k is None or r[mine] is None or k[theirs] <= 0:
                r[col] = None
            else:
                r[col] = r[mine] / k[theirs] - 1.0


def run(
    sizes: Sequence[int],
    policies: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    time_limit: float = 1.0,
    hour: int = 12,
    load: float = 0.5,
    critical_share: float = 0.9,
    shapes_path: str | None = None,
    scenario: str = DEFAULT_SCENARIO,
    with_floors: bool = True,
    repairs: tuple[str, ...] = REPAIRS,
    default_spread: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every policy on every size; returns the rows and the node counts per size. With
    ``with_floors``, every row also carries its instance's energy and carbon floors.
    ``repairs``: the packing repairs Valley runs (leave one out to measure what it is worth).
    ``default_spread=False``: every policy without the SERVICE default of at most
    ``ceil(replicas / 2)`` replicas a node (``SolverParams.default_spread``) and without the
    rack spread term (``rack_spread_cny_per_replica_hour`` 0), to price both."""
    base = load_scenario(scenario)
    shapes = load_shapes(shapes_path)
    rows: list[dict[str, Any]] = []
    clusters: dict[str, dict[str, int]] = {}
    steps = [(seed, n, p) for seed in seeds for n in sizes for p in policies]
    problem: Problem | None = None
    current = (-1, -1)
    floor: dict[str, float | None] = {}
    for seed, n, policy in report.progress(steps, total=len(steps), desc="scenario"):
        if (seed, n) != current:
            mix = generate_mix(n, seed, shapes)
            scaled = scaled_scenario(base, mix, load, critical_share)
            key = str(n) if len(seeds) == 1 else f"{n} (seed {seed})"
            clusters[key] = {p.key: p.count for p in scaled.pools}
            problem = Problem(scaled, Cluster(scaled), mix, hour=hour, month=MONTH)
            current = (seed, n)
            floor = floors(problem, time_limit, seed, default_spread) if with_floors else {}
        assert problem is not None
        params = SolverParams(
            policy=policy,
            time_limit_s=time_limit,
            repairs=repairs,
            default_spread=default_spread,
            rack_spread_cny_per_replica_hour=RACK_SPREAD if default_spread else 0.0,
        )
        started = time.perf_counter()
        result = solve(problem, params, seed=seed)
        wall = time.perf_counter() - started
        row = measure(problem, result, params, n)
        row["seed"] = seed
        row["wall_seconds"] = wall
        if policy == "valley":
            row["bound_source"] = result.stats.bound_source
            row["repairs_applied"] = sorted(set(result.stats.repairs_applied))
        row.update(floor)
        rows.append(row)
    _compare_with_kube(rows)
    return rows, clusters


# (column, worst is the largest?) of the per-seed summary
SUMMARY_OF = (
    ("gap", True),
    ("gap_bound_side", True),
    ("gap_packing_side", True),
    ("energy_vs_kube", True),
    ("carbon_vs_kube", True),
    ("placed_share", False),
    ("placed_critical_share", False),
    ("solve_seconds", True),
)


def summarise(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per policy and size, over the seeds: the mean and the worst of each ``SUMMARY_OF``
    column (worst: the largest gap, cost or time; the smallest share placed)."""
    out = []
    keys = dict.fromkeys((r["policy"], r["replicas"]) for r in rows)
    for policy, n in keys:
        mine = [r for r in rows if r["policy"] == policy and r["replicas"] == n]
        row: dict[str, Any] = {"policy": policy, "replicas": n, "seeds": len(mine)}
        for col, worst_is_max in SUMMARY_OF:
            values = [_value(r, col) for r in mine]
            present = [v for v in values if v is not None]
            if not present:
                continue
            row[f"{col}_mean"] = sum(present) / len(present)
            row[f"{col}_worst"] = max(present) if worst_is_max else min(present)
        out.append(row)
    return out


def _value(row: Mapping[str, Any], col: str) -> float | None:
    if col == "placed_share":
        return row["placed"] / max(1, row["replicas"])
    if col == "placed_critical_share":
        return row["placed_critical"] / max(1, row["critical"])
    value = row.get(col)
    return None if value is None else float(value)


SUMMARY_COLUMNS = (
    "policy",
    "replicas",
    "seeds",
    "gap_mean",
    "gap_worst",
    "gap_bound_side_mean",
    "gap_packing_side_mean",
    "energy_vs_kube_mean",
    "energy_vs_kube_worst",
    "carbon_vs_kube_mean",
    "carbon_vs_kube_worst",
    "placed_share_worst",
    "solve_seconds_worst",
)


# --------------------------------------------------------------------------- plot


def plot(rows: Sequence[Mapping[str, Any]], path: str) -> None:
    """Energy and carbon relative to ``kube`` (with the proven floors as black marks, when
    measured) and the shares placed, per size and policy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted({r["replicas"] for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    metrics: tuple[tuple[str, str, str], ...]
    if "kube" in policies:
        metrics = (
            ("energy_vs_kube", "energy cost vs kube (%)", "energy_floor_vs_kube"),
            ("carbon_vs_kube", "carbon vs kube (%)", "carbon_floor_vs_kube"),
        )
    else:
        metrics = (
            ("energy_cny_per_hour", "energy, CNY/h", "energy_floor_cny_per_hour"),
            ("carbon_kg_per_hour", "carbon, kg/h", "carbon_floor_kg_per_hour"),
        )
    metrics += (
        ("placed", "share of replicas placed", ""),
        ("placed_critical", "share of latency-critical placed", ""),
    )
    # placed counts as shares of what was asked, so every size reads on one axis
    totals = {"placed": "replicas", "placed_critical": "critical"}
    percent = {"energy_vs_kube", "carbon_vs_kube"}
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8))
    width = 0.8 / max(1, len(policies))
    for ax, (key, label, floor_key) in zip(axes, metrics, strict=True):

        def of(row: Mapping[str, Any] | None, k: str) -> float | None:
            if row is None or row.get(k) is None:
                return None
            value = float(row[k])
            if k in totals:
                value /= max(1, row[totals[k]])
            return value * 100.0 if k in percent or k.endswith("_vs_kube") else value

        for i, policy in enumerate(policies):
            values = []
            for n in sizes:
                row = next((r for r in rows if r["policy"] == policy and r["replicas"] == n), None)
                values.append(of(row, key) or 0.0)
            xs = [j + (i - (len(policies) - 1) / 2) * width for j in range(len(sizes))]
            ax.bar(xs, values, width, label=policy)
        if floor_key:
            for j, n in enumerate(sizes):
                floor = of(next((r for r in rows if r["replicas"] == n), None), floor_key)
                if floor is not None:
                    ax.hlines(floor, j - 0.45, j + 0.45, colors="black", linestyles="dashed")
            ax.plot([], [], "k--", label="floor (proven)")
        ax.set_xticks(range(len(sizes)), [f"{n:,}" for n in sizes])
        ax.set_xlabel("replicas")
        ax.set_title(label)
        if key in totals:
            ax.set_ylim(0, 1.05)
        elif key in percent:
            ax.axhline(0, color="grey", linewidth=0.8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=len(labels),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.1),
    )
    fig.suptitle("scenario: Beijing-Hebei, every policy on the same instance", y=1.03)
    report.save_plot(fig, path)
    plt.close(fig)


# --------------------------------------------------------------------------- command


def instance_options(load_help: str, critical_help: str) -> Callable[[F], F]:
    """``--load``, ``--critical-share``, ``--shapes`` and ``--scenario``: how the suites that
    run the mix on the scaled default scenario (this one, ``day``) take their instance."""
    options = (
        click.option(
            "--load",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.5,
            show_default=True,
            help=load_help,
        ),
        click.option(
            "--critical-share",
            type=click.FloatRange(0, 1, min_open=True),
            default=0.9,
            show_default=True,
            help=critical_help,
        ),
        click.option(
            "--shapes",
            "shapes_path",
            type=click.Path(exists=True, dir_okay=False),
            default=None,
            help="request shapes: an openb pod list or a shapes table "
            f"[default: {SHAPES_FILE.name}]",
        ),
        click.option(
            "--scenario",
            default=DEFAULT_SCENARIO,
            show_default=True,
            help="scenario name or TOML file",
        ),
    )

    def apply(f: F) -> F:
        for option in reversed(options):
            f = option(f)
        return f

    return apply


@click.command("scenario")
@click.option(
    "--replicas",
    "sizes",
    type=click.IntRange(min=1),
    multiple=True,
    help="total replicas of one size (repeatable)  [default: 1000, 10000, 50000]",
)
@report.seed_option
@click.option(
    "--seeds",
    "n_seeds",
    type=click.IntRange(min=1),
    default=None,
    help="run seeds 0..N-1 (instead of --seed) and summarise them: mean and worst per policy",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="seconds per solve (SolverParams.time_limit_s)",
)
@click.option(
    "--hour", type=click.IntRange(0, 23), default=12, show_default=True, help="local hour"
)
@click.option(
    "--policies",
    default=",".join(POLICIES),
    show_default=True,
    help="comma-separated policies",
)
@instance_options(
    "demand as a share of capacity", "latency-critical demand as a share of its sites' CPU nodes"
)
@click.option(
    "--floors/--no-floors",
    "with_floors",
    default=True,
    show_default=True,
    help="also prove the least energy cost and carbon any placement of all the work can have",
)
@click.option(
    "--repairs",
    default=",".join(REPAIRS),
    show_default=True,
    help="comma-separated packing repairs Valley runs, in order (leave one out to measure it; "
    "'none' for none)",
)
@click.option(
    "--default-spread/--no-default-spread",
    default=True,
    show_default=True,
    help="keep a SERVICE of 2 or more replicas to at most ceil(replicas / 2) a node unless "
    "its spec sets max_replicas_per_node, and price its replicas sharing a rack; off "
    "measures what that availability costs",
)
@report.output_option
@report.plot_option
def command(
    sizes: tuple[int, ...],
    seed: int,
    n_seeds: int | None,
    time_limit: float,
    hour: int,
    policies: str,
    load: float,
    critical_share: float,
    shapes_path: str | None,
    scenario: str,
    with_floors: bool,
    repairs: str,
    default_spread: bool,
    output: str,
    plot_path: str | None,
) -> None:
    """Every policy on generated Zhongguancun mixes with E-Town short of capacity."""
    chosen_repairs = tuple(r.strip() for r in repairs.split(",") if r.strip() not in ("", "none"))
    wrong = [r for r in chosen_repairs if r not in REPAIRS]
    if wrong:
        raise click.BadParameter(
            f"unknown repairs {[w[:40] for w in wrong]} (known: {', '.join(REPAIRS)})",
            param_hint="--repairs",
        )
    chosen = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in POLICIES]
    if unknown or not chosen:
        raise click.BadParameter(
            f"unknown policies {unknown} (known: {', '.join(POLICIES)})", param_hint="--policies"
        )
    run_sizes = list(sizes) or list(DEFAULT_SIZES)
    seed_list = list(range(n_seeds)) if n_seeds else [seed]
    if output != "json":
        click.echo(
            f"local hour {hour}:00 (month {MONTH}), seeds {seed_list}, time limit {time_limit} s",
            err=True,
        )
    rows, clusters = run(
        run_sizes,
        chosen,
        seeds=seed_list,
        time_limit=time_limit,
        hour=hour,
        load=load,
        critical_share=critical_share,
        shapes_path=shapes_path,
        scenario=scenario,
        with_floors=with_floors,
        repairs=chosen_repairs,
        default_spread=default_spread,
    )
    params = {
        "replicas": run_sizes,
        "policies": chosen,
        "seed": seed_list[0] if len(seed_list) == 1 else seed_list,
        "time_limit_s": time_limit,
        "hour": hour,
        "month": MONTH,
        "load": load,
        "critical_share": critical_share,
        "scenario": scenario,
        "shapes": str(Path(shapes_path)) if shapes_path else SHAPES_FILE.name,
        "floors": with_floors,
        "repairs": list(chosen_repairs),
        "default_spread": default_spread,
        "nodes": clusters,
    }
    summary = summarise(rows)
    if output == "json":
        out = {**report.envelope("scenario", params, rows), "summary": summary}
        click.echo(json.dumps(out, indent=2, default=str))
    else:
        shown = {k: v for k, v in params.items() if k != "nodes"}
        report.emit("scenario", shown, rows, output, (*COLUMNS[:2], "seed", *COLUMNS[2:]))
        for n, pools in clusters.items():
            click.echo(f"nodes at {n} replicas: " + ", ".join(f"{k} {c}" for k, c in pools.items()))
        for row in rows:
            if row["policy"] == chosen[0] and "carbon_floor_kg_per_hour" in row:
                click.echo(_floor_line(row))
        if len(seed_list) > 1:
            click.echo(f"over seeds {seed_list[0]}..{seed_list[-1]}, mean and worst:")
            click.echo(report.table(summary, SUMMARY_COLUMNS))
    if plot_path:
        plot(rows if len(seed_list) == 1 else _mean_rows(summary), plot_path)


def _mean_rows(summary: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows the plot reads, from the means over seeds (placed counts as shares)."""
    return [
        {
            "policy": r["policy"],
            "replicas": r["replicas"],
            "critical": 1,
            "placed": (r.get("placed_share_mean") or 0.0) * r["replicas"],
            "placed_critical": r.get("placed_critical_share_mean"),
            "energy_vs_kube": r.get("energy_vs_kube_mean"),
            "carbon_vs_kube": r.get("carbon_vs_kube_mean"),
        }
        for r in summary
    ]
