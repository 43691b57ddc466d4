"""``valley bench openb``: GPU-sharing fragmentation on the Alibaba openb trace (FGD, ATC'23).

The cluster is the trace's node list; pods come from one of its pod lists. Pods arrive in trace
order (``--order random``: drawn at random with replacement from the start, as the paper's
Monte-Carlo "workload inflation" does), are drawn again at random (seeded) once the list runs
out, and never leave, until the GPU demand that has arrived reaches ``--demand`` (1.3) times the
cluster's GPU capacity. Every policy sees the same sequence. Reported per policy, at the moment
the arrived GPU demand reaches 100% of capacity: GPUs allocated, unallocated GPU capacity (the
paper's headline figure), pods placed, and the decision time per pod.

Pods: ``gpu_milli`` is the share of one GPU when ``num_gpu`` is 1; ``num_gpu`` > 1 means that
many whole GPUs; ``num_gpu`` = 1 with ``gpu_milli`` = 1000 is one whole GPU. ``gpu_spec`` lists
the GPU models a pod accepts (``|``-separated, empty: any). A pod asking for 0 MiB of memory
(one in the trace) is counted as 1 MiB so that it is a valid request for every policy.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import numpy.typing as npt

from scheduler.bench import report
from scheduler.bench.openb_policies import PEERS, make_peer
from scheduler.domain import GPU_MILLIS, Cluster, Pool, Resources, Scenario, Site, WorkloadSpec
from scheduler.solver import PendingWorkload, Problem, SolverParams, solve
from scheduler.solver.fragmentation import FragmentationScorer, RequestType, target_workload

IntArray = npt.NDArray[np.int64]

PROJECT = Path(__file__).resolve().parents[2]  # the repository: shared/ sits beside it
DATA = PROJECT.parent / "shared" / "data" / "openb"
DEFAULT_NODES = DATA / "openb_node_list_all_node.csv"
DEFAULT_PODS = DATA / "openb_pod_list_default.csv"
POLICIES = (*PEERS, "valley")
SITE = "openb"


class OpenbFormatError(ValueError):
    """A malformed node or pod list: names the file, the line and the reason."""

    def __init__(self, path: str | Path, line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    cpu_millis: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True, slots=True)
class Pod:
    name: str
    resources: Resources
    gpu_models: tuple[str, ...] = ()

    @property
    def gpu_demand_millis(self) -> int:
        return self.resources.gpu_demand_millis


# ----------------------------------------------------------------------------- readers


def _rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        handle = path.open(encoding="utf-8", newline="")
    except OSError as e:
        raise OpenbFormatError(path, 0, f"cannot read: {e.strerror}") from None
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise OpenbFormatError(path, 1, "empty file (a header line is expected)")
        header = [h.strip() for h in header]
        missing = [c for c in required if c not in header]
        if missing:
            raise OpenbFormatError(path, 1, f"header lacks column(s) {', '.join(missing)}")
        out = []
        for lineno, row in enumerate(reader, start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) != len(header):
                raise OpenbFormatError(
                    path, lineno, f"expected {len(header)} fields, got {len(row)}"
                )
            out.append((lineno, dict(zip(header, (v.strip() for v in row), strict=True))))
    return out


def _int(path: Path, lineno: int, row: dict[str, str], col: str, low: int = 0) -> int:
    try:
        value = int(row[col])
    except ValueError:
        raise OpenbFormatError(
            path, lineno, f"{col} must be an integer, got {row[col]!r}"
        ) from None
    if value < low:
        raise OpenbFormatError(path, lineno, f"{col} must be >= {low}, got {value}")
    return value


def read_nodes(path: str | Path) -> list[Node]:
    """Read a node list (``sn,cpu_milli,memory_mib,gpu,model``)."""
    p = Path(path)
    nodes = []
    for lineno, row in _rows(p, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        gpus = _int(p, lineno, row, "gpu")
        model = row["model"]
        if gpus and not model:
            raise OpenbFormatError(p, lineno, "a node with GPUs needs a GPU model")
        nodes.append(
            Node(
                row["sn"],
                _int(p, lineno, row, "cpu_milli", 1),
                _int(p, lineno, row, "memory_mib", 1),
                gpus,
                model if gpus else "",
            )
        )
    if not nodes:
        raise OpenbFormatError(p, 2, "no nodes")
    return nodes


def read_pods(path: str | Path) -> list[Pod]:
    """Read a pod list (``name,cpu_milli,memory_mib,num_gpu,gpu_milli[,gpu_spec,...]``)."""
    p = Path(path)
    pods = []
    for lineno, row in _rows(p, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")):
        cpu = _int(p, lineno, row, "cpu_milli", 1)
        mem = max(1, _int(p, lineno, row, "memory_mib"))
        num_gpu = _int(p, lineno, row, "num_gpu")
        milli = _int(p, lineno, row, "gpu_milli")
        if milli > GPU_MILLIS:
            raise OpenbFormatError(p, lineno, f"gpu_milli must be <= {GPU_MILLIS}, got {milli}")
        if num_gpu == 0:
            if milli:
                raise OpenbFormatError(p, lineno, f"gpu_milli {milli} without num_gpu")
            r = Resources(cpu, mem)
        elif num_gpu == 1 and milli < GPU_MILLIS:
            if milli == 0:
                raise OpenbFormatError(p, lineno, "num_gpu 1 needs gpu_milli 1..1000")
            r = Resources(cpu, mem, gpu_millis=milli)
        else:
            r = Resources(cpu, mem, gpus=num_gpu)
        spec = row.get("gpu_spec", "")
        models = tuple(m for m in spec.split("|") if m) if num_gpu else ()
        pods.append(Pod(row["name"], r, models))
    if not pods:
        raise OpenbFormatError(p, 2, "no pods")
    return pods


def resolve_pods(value: str) -> Path:
    """A pod list path, or a variant name of the trace (``default``, ``gpushare40``, ...)."""
    p = Path(value)
    if p.exists() or p.suffix == ".csv":
        return p
    return DATA / f"openb_pod_list_{value}.csv"


# ----------------------------------------------------------------------------- the cluster


def build_scenario(nodes: Sequence[Node]) -> Scenario:
    """One site; one pool per distinct node shape and GPU model, in order of first appearance."""
    shapes: dict[tuple[int, int, int, str], int] = {}
    for n in nodes:
        key = (n.cpu_millis, n.memory_mib, n.gpus, n.model)
        shapes[key] = shapes.get(key, 0) + 1
    pools = []
    for cpu, mem, gpus, model in shapes:
        name = f"{model or 'cpu'}-{cpu // 1000}c-{mem // 1024}g" + (f"-{gpus}gpu" if gpus else "")
        pools.append(
            Pool(
                name=name,
                site=SITE,
                count=shapes[(cpu, mem, gpus, model)],
                node=Resources(cpu, mem, gpus, gpus * GPU_MILLIS),
                gpu_model=model,
            )
        )
    site = Site(
        name=SITE,
        pue=1.2,
        latency_ms={SITE: 0.0},
        price_cny_per_kwh=(0.5,) * 24,
        carbon_kg_per_kwh=(0.5,) * 24,
        pools=tuple(pools),
    )
    return Scenario(name="openb", sites=(site,), origins=(SITE,), description="Alibaba openb trace")


def arrivals(
    pods: Sequence[Pod], capacity_millis: int, until: float, seed: int, order: str = "trace"
) -> IntArray:
    """Indices of the pods that arrive, in order, until their GPU demand reaches ``until``
    times ``capacity_millis``: the list in trace order, then seeded draws with replacement
    (``order='random'``: seeded draws from the start)."""
    rng = np.random.default_rng(seed)
    demand = np.asarray([p.gpu_demand_millis for p in pods], dtype=np.int64)
    if not demand.any():
        raise click.ClickException("the pod list asks for no GPU at all: nothing to measure")
    target = until * capacity_millis
    out: list[int] = []
    total = 0
    if order == "trace":
        for i in range(len(pods)):
            if total >= target:
                break
            out.append(i)
            total += int(demand[i])
    while total < target:
        chunk = rng.integers(0, len(pods), size=1024)
        for i in chunk.tolist():
            if total >= target:
                break
            out.append(i)
            total += int(demand[i])
    return np.asarray(out, dtype=np.int64)


@dataclass
class Run:
    """What one policy did with one arrival sequence."""

    policy: str
    seed: int
    arrived: int = 0
    placed: int = 0
    seconds: float = 0.0
    # at 100% arrived demand
    full_arrived: int = 0
    full_placed: int = 0
    full_allocated_millis: int = 0
    full_fragmentation_millis: float = 0.0
    # allocation ratio against arrived-demand ratio, one point per pod or batch
    curve_x: list[float] = field(default_factory=list)
    curve_y: list[float] = field(default_factory=list)


class Simulation:
    """The node and pod lists, the cluster they make and the trace's request distribution."""

    def __init__(self, nodes: Sequence[Node], pods: Sequence[Pod]) -> None:
        self.nodes = list(nodes)
        self.pods = list(pods)
        self.scenario = build_scenario(nodes)
        self.empty = Cluster(self.scenario)
        self.capacity_millis = int(self.empty.n_gpus.sum()) * GPU_MILLIS
        if not self.capacity_millis:
            raise click.ClickException("the node list has no GPU: nothing to measure")
        self.target: tuple[RequestType, ...] = target_workload(
            (p.resources, p.gpu_models) for p in pods
        )
        self.frag = FragmentationScorer(self.target)
        # per kind of pod (GPU or not) and set of accepted GPU models: the nodes it may use
        self._model_mask: dict[tuple[bool, tuple[str, ...]], npt.NDArray[np.bool_]] = {}
        models = np.asarray([self.empty.pool_of(i).gpu_model for i in range(len(self.empty))])
        self._node_models = models

    def allowed(self, pod: Pod) -> npt.NDArray[np.bool_]:
        """The nodes ``pod`` may use: GPU nodes of a model it accepts, or any node for a pod
        without GPU (a CPU-only pod and a GPU pod accepting any model both list no model, so
        the kind of pod is part of the key)."""
        key = (pod.resources.wants_gpu, pod.gpu_models)
        if key not in self._model_mask:
            if pod.resources.wants_gpu:
                mask = self.empty.n_gpus > 0
                if pod.gpu_models:
                    mask &= np.isin(self._node_models, list(pod.gpu_models))
            else:
                mask = np.ones(len(self.empty), dtype=np.bool_)  # CPU pods may use GPU nodes
            self._model_mask[key] = mask
        return self._model_mask[key]

    def full_index(self, seq: IntArray) -> int:
        """How many arrivals it takes for the arrived GPU demand to reach 100% of capacity."""
        demand = np.cumsum([self.pods[i].gpu_demand_millis for i in seq.tolist()])
        return min(len(seq), int(np.searchsorted(demand, self.capacity_millis)) + 1)

    def _record(self, run: Run, cluster: Cluster, arrived_millis: int, allocated: int) -> None:
        run.curve_x.append(arrived_millis / self.capacity_millis)
        run.curve_y.append(allocated / self.capacity_millis)

    def _snapshot(self, run: Run, cluster: Cluster, allocated: int) -> None:
        run.full_arrived = run.arrived
        run.full_placed = run.placed
        run.full_allocated_millis = allocated
        run.full_fragmentation_millis = self.frag.cluster_fragmentation(cluster)

    def run_peer(self, name: str, seq: IntArray, seed: int) -> Run:
        cluster = self.empty.copy()
        peer = make_peer(name, cluster, seed, self.target)
        run = Run(name, seed)
        full = self.full_index(seq)
        arrived_millis = allocated = 0
        all_nodes = np.arange(len(cluster))
        for k, i in enumerate(seq.tolist(), start=1):
            pod = self.pods[i]
            r = pod.resources
            started = time.perf_counter()
            cand = all_nodes[self.allowed(pod)]
            cand = cand[cluster.fit_mask(r, cand)]
            if len(cand):
                node, gpus = peer.choose(cluster, cand, r)
                cluster.allocate(node, r, gpus)
                peer.placed(cluster, node, r)
                run.placed += 1
                allocated += r.gpu_demand_millis
            run.seconds += time.perf_counter() - started
            run.arrived = k
            arrived_millis += pod.gpu_demand_millis
            self._record(run, cluster, arrived_millis, allocated)
            if k == full:
                self._snapshot(run, cluster, allocated)
        return run

    def run_valley(self, seq: IntArray, seed: int, window: int, time_limit_s: float) -> Run:
        """The scheduler's own ``solve()`` with policy ``valley``, fed the arrivals in batches
        of one scheduling window (a batch also ends where arrived demand reaches 100%)."""
        cluster = self.empty.copy()
        # the FGD paper's setting: CPU work may use GPU nodes, and GPUs allocated is the
        # measure (no energy), so the refit may wake a node where that fragments less
        params = SolverParams(
            policy="valley",
            time_limit_s=time_limit_s,
            cpu_on_gpu_nodes=True,
            fgd_wakes_nodes=True,
        )
        # the trace's request distribution, for a solver that packs GPU work by fragmentation
        # (passed once ``Problem`` has a ``gpu_target`` field)
        extra: dict[str, Any] = {}
        if "gpu_target" in {f.name for f in dataclasses.fields(Problem)}:
            extra["gpu_target"] = self.target
        run = Run("valley", seed)
        full = self.full_index(seq)
        arrived_millis = allocated = 0
        bounds = sorted({*range(0, len(seq), window), full, len(seq)})
        for lo, hi in itertools.pairwise(bounds):
            batch = seq[lo:hi].tolist()
            workloads = tuple(
                PendingWorkload(
                    f"p{lo + j}",
                    WorkloadSpec(
                        tenant="openb",
                        name=self.pods[i].name,
                        resources=self.pods[i].resources,
                        gpu_models=self.pods[i].gpu_models,
                    ),
                )
                for j, i in enumerate(batch)
            )
            started = time.perf_counter()
            result = solve(Problem(self.scenario, cluster, workloads, **extra), params, seed=seed)
            for wid, reps in result.placements.items():
                r = self.pods[seq[int(wid[1:])]].resources
                for rp in reps:
                    cluster.allocate(cluster.index[rp.node], r, rp.gpu_indices)
                    allocated += r.gpu_demand_millis
                run.placed += 1
            run.seconds += time.perf_counter() - started
            run.arrived = hi
            arrived_millis += sum(self.pods[i].gpu_demand_millis for i in batch)
            self._record(run, cluster, arrived_millis, allocated)
            if hi == full:
                self._snapshot(run, cluster, allocated)
        return run


# ----------------------------------------------------------------------------- report


def summarise(runs: Sequence[Run], capacity_millis: int) -> list[dict[str, Any]]:
    """One row per policy: means over seeds (and the standard deviation and the worst seed's
    unallocated GPUs where it varies)."""
    rows = []
    for policy in dict.fromkeys(r.policy for r in runs):
        mine = [r for r in runs if r.policy == policy]
        alloc = np.asarray([r.full_allocated_millis / GPU_MILLIS for r in mine])
        unalloc = capacity_millis / GPU_MILLIS - alloc
        frag = np.asarray([r.full_fragmentation_millis / GPU_MILLIS for r in mine])
        rows.append(
            {
                "policy": policy,
                "seeds": len(mine),
                "gpus_allocated": float(alloc.mean()),
                "gpu_unallocated_at_full_demand": float(unalloc.mean()),
                "gpu_unallocated_std": float(unalloc.std()),
                "gpu_unallocated_worst": float(unalloc.max()),
                "gpu_unallocated_share": float(unalloc.mean() / (capacity_millis / GPU_MILLIS)),
                "fragmented_gpus": float(frag.mean()),
                "pods_arrived": float(np.mean([r.full_arrived for r in mine])),
                "pods_placed": float(np.mean([r.full_placed for r in mine])),
                "pods_placed_at_end": float(np.mean([r.placed for r in mine])),
                "pods_arrived_at_end": float(np.mean([r.arrived for r in mine])),
                "seconds_per_pod": float(
                    sum(r.seconds for r in mine) / max(1, sum(r.arrived for r in mine))
                ),
            }
        )
    return rows


def plot(panels: Sequence[tuple[str, Sequence[Run]]], path: str) -> None:
    """GPUs allocated against arrived demand, one panel per pod list (title, runs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 4.8 * rows), squeeze=False)
    for ax, (title, runs) in zip(axes.flat, panels, strict=False):
        _panel(ax, runs, title)
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    report.save_plot(fig, path)
    plt.close(fig)


def _panel(ax: Any, runs: Sequence[Run], title: str) -> None:
    grid = np.linspace(0.0, max(max(r.curve_x) for r in runs), 300)
    for policy in dict.fromkeys(r.policy for r in runs):
        ys = [np.interp(grid, r.curve_x, r.curve_y) for r in runs if r.policy == policy]
        ax.plot(
            grid * 100,
            np.mean(ys, axis=0) * 100,
            label=policy,
            lw=1.4 if policy in ("fgd", "valley") else 1.0,
        )
    ax.plot([0, 100, grid[-1] * 100], [0, 100, 100], color="0.6", ls=":", lw=1, label="ideal")
    ax.axvline(100, color="0.8", lw=0.8)
    ax.set_xlabel("arrived GPU demand (% of cluster GPU capacity)")
    ax.set_ylabel("GPUs allocated (% of capacity)")
    ax.set_xlim(60, grid[-1] * 100)
    ax.set_ylim(60, 101)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")


@click.command("openb")
@click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(dir_okay=False),
    default=str(DEFAULT_NODES),
    show_default="../shared/data/openb/openb_node_list_all_node.csv",
    help="node list CSV",
)
@click.option(
    "--pods",
    "pods_paths",
    multiple=True,
    show_default="../shared/data/openb/openb_pod_list_default.csv",
    help="pod list CSV, or a variant name (default, cpu050, gpushare40, gpuspec20, multigpu30), "
    "or 'all' for every variant (repeatable; one table row per list and policy)",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice(POLICIES),
    help="policies to run (repeatable); default: all",
)
@click.option("--seed", "seeds", multiple=True, type=int, help="a seed (repeatable); default 0")
@click.option(
    "--seeds", "n_seeds", type=click.IntRange(min=1), default=None, help="run seeds 0..N-1"
)
@click.option(
    "--order",
    type=click.Choice(["trace", "random"]),
    default="trace",
    show_default=True,
    help="trace order then random draws, or random draws from the start (the paper's)",
)
@click.option(
    "--demand",
    "until",
    type=click.FloatRange(min=1.0, max=3.0),
    default=1.3,
    show_default=True,
    help="stop when arrived GPU demand reaches this share of capacity",
)
@click.option(
    "--limit",
    "limit_pods",
    type=click.IntRange(min=1),
    default=None,
    help="use only the first N pods of the list (toy runs)",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="pods per valley scheduling window",
)
@click.option(
    "--time-limit",
    "time_limit_s",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="valley solver seconds per window",
)
@report.output_option
@report.plot_option
def command(
    nodes_path: str,
    pods_paths: tuple[str, ...],
    policies: tuple[str, ...],
    seeds: tuple[int, ...],
    n_seeds: int | None,
    order: str,
    until: float,
    limit_pods: int | None,
    window: int,
    time_limit_s: float,
    output: str,
    plot_path: str | None,
) -> None:
    """GPU-sharing fragmentation on the Alibaba openb trace: unallocated GPUs when the arrived
    demand reaches the cluster's capacity, for the FGD paper's policies and Valley."""
    pod_files = [f for value in (pods_paths or (str(DEFAULT_PODS),)) for f in _pod_files(value)]
    for what, path in (("node list", Path(nodes_path)), *(("pod list", f) for f in pod_files)):
        if not path.is_file():
            raise click.ClickException(
                f"{what} not found: {path} "
                "(the openb data lives in ../shared/data/openb; pass --nodes/--pods)"
            )
    try:
        nodes = read_nodes(nodes_path)
        pod_lists = [read_pods(f) for f in pod_files]
    except OpenbFormatError as e:
        raise click.ClickException(str(e)) from None
    chosen = list(policies) or list(POLICIES)
    seed_list = list(seeds) + (list(range(n_seeds)) if n_seeds else [])
    seed_list = list(dict.fromkeys(seed_list)) or [0]
    rows: list[dict[str, Any]] = []
    panels: list[tuple[str, list[Run]]] = []
    capacity_millis = 0
    request_types = 0
    for pods_file, pods in zip(pod_files, pod_lists, strict=True):
        if limit_pods:
            pods = pods[:limit_pods]
        sim = Simulation(nodes, pods)
        capacity_millis, request_types = sim.capacity_millis, len(sim.target)
        jobs = [(s, p) for s in seed_list for p in chosen]
        sequences = {s: arrivals(pods, sim.capacity_millis, until, s, order) for s in seed_list}
        runs: list[Run] = []
        for s, p in report.progress(jobs, total=len(jobs), desc=f"openb {pods_file.stem}"):
            seq = sequences[s]
            runs.append(
                sim.run_valley(seq, s, window, time_limit_s)
                if p == "valley"
                else sim.run_peer(p, seq, s)
            )
        for row in summarise(runs, sim.capacity_millis):
            rows.append({"pods": _variant(pods_file), **row} if len(pod_files) > 1 else row)
        title = f"openb: {pods_file.stem}, {len(nodes)} nodes, {capacity_millis // GPU_MILLIS} GPUs"
        panels.append((title, runs))
    params = {
        "nodes": str(nodes_path),
        "pods": str(pod_files[0]) if len(pod_files) == 1 else [str(f) for f in pod_files],
        "node_count": len(nodes),
        "gpu_capacity": capacity_millis // GPU_MILLIS,
        "pod_list": len(pod_lists[0]) if len(pod_lists) == 1 else [len(p) for p in pod_lists],
        "order": order,
        "demand": until,
        "seeds": seed_list,
        "window": window,
        "valley_time_limit_s": time_limit_s,
        "request_types": request_types,
    }
    columns = [
        "policy",
        "seeds",
        "gpus_allocated",
        "gpu_unallocated_at_full_demand",
        "gpu_unallocated_std",
        "fragmented_gpus",
        "pods_arrived",
        "pods_placed",
        "seconds_per_pod",
    ]
    report.emit(
        "openb", params, rows, output, ["pods", *columns] if len(pod_files) > 1 else columns
    )
    if plot_path:
        plot(panels, plot_path)


VARIANTS = ("default", "cpu050", "gpushare40", "gpuspec20", "multigpu30")


def _pod_files(value: str) -> list[Path]:
    """The pod lists ``--pods`` names: one file or variant, or every variant for ``all``."""
    if value == "all":
        return [resolve_pods(v) for v in VARIANTS]
    return [resolve_pods(value)]


def _variant(path: Path) -> str:
    return path.stem.removeprefix("openb_pod_list_")
