"""The ``valley`` command: ``serve`` runs the service; ``submit``, ``get``, ``list``, ``cancel``,
``explain``, ``sites`` and ``watch`` talk to one over gRPC; ``bench`` and ``demo`` register from
their own modules.

The client commands know only the protos (never the domain): they are a client like any other.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click

from scheduler import __version__

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_SERVER = "127.0.0.1:50051"
MAX_PER_REQUEST = 1000


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="valley")
def cli() -> None:
    """Valley: workload placement for the Beijing-Hebei Cloud Computing Valley."""


# =============================================================================== serve


@cli.command()
@click.option(
    "--grpc-address",
    default="127.0.0.1:50051",
    show_default=True,
    help="HOST:PORT to serve gRPC on (port 0: any free port)",
)
@click.option(
    "--metrics-address",
    default="127.0.0.1:9464",
    show_default=True,
    help="HOST:PORT for /metrics; empty to turn it off",
)
@click.option(
    "--store",
    "store_url",
    default=None,
    help="store URL: sqlite:///relative.db, sqlite:////abs.db or postgresql://user@host/db "
    "[default: sqlite:/// in $VALLEY_DATA_DIR or ./data]",
)
@click.option(
    "--scenario",
    default="beijing-hebei",
    show_default=True,
    help="a shipped scenario name or a scenario TOML file",
)
@click.option(
    "--policy",
    default="valley",
    show_default=True,
    help="placement policy: valley, first-fit, best-fit, kube, cheapest-first",
)
@click.option(
    "--params",
    "params_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="solver parameters (TOML)",
)
@click.option(
    "--batch-window-ms",
    type=click.FloatRange(0, 10_000),
    default=20.0,
    show_default=True,
    help="how long the loop gathers a batch",
)
@click.option(
    "--solve-budget-ms",
    type=click.FloatRange(1, 600_000),
    default=50.0,
    show_default=True,
    help="deadline of each cycle's solve: placement quality against submit-to-placed latency",
)
@click.option(
    "--solver-process/--no-solver-process",
    default=True,
    show_default=True,
    help="solve in a child process (another core) so solving never holds up RPCs; "
    "--no-solver-process for one-core machines",
)
@click.option(
    "--fgd/--no-fgd",
    default=True,
    show_default=True,
    help="place GPU work to leave the least fragmented GPU capacity for the GPU requests "
    "submitted lately",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 600),
    default=10.0,
    show_default=True,
    help="seconds in-flight RPCs get on SIGTERM",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def serve(
    grpc_address: str,
    metrics_address: str,
    store_url: str | None,
    scenario: str,
    policy: str,
    params_file: str | None,
    batch_window_ms: float,
    solve_budget_ms: float,
    solver_process: bool,
    fgd: bool,
    grace: float,
    log_level: str,
) -> None:
    """Run the Valley service: gRPC API, scheduling loop, store and metrics.

    SIGTERM (or Ctrl-C) drains: health turns NOT_SERVING, watch streams end, in-flight RPCs get
    --grace seconds, then the process exits 0."""
    from dataclasses import replace

    from scheduler.config import Valley, ValleyConfig, default_store_url
    from scheduler.domain import ScenarioError, ValidationError
    from scheduler.loop import LoopConfig
    from scheduler.solver import SolverParams
    from scheduler.store import StoreError

    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        params = SolverParams.from_toml(params_file) if params_file else SolverParams()
        params = replace(params, policy=policy)
        config = ValleyConfig(
            grpc_address=grpc_address,
            metrics_address=metrics_address or None,
            store_url=store_url or default_store_url(),
            scenario=scenario,
            params=params,
            loop=LoopConfig(
                batch_window_s=batch_window_ms / 1000.0,
                solve_budget_s=solve_budget_ms / 1000.0,
                solver_process=solver_process,
                fgd=fgd,
            ),
            grace_s=grace,
        )
        valley = Valley(config).start()
    except (StoreError, ScenarioError, ValidationError, OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = grpc_address.rpartition(":")[0] or "0.0.0.0"
    metrics = (
        f", metrics on http://{metrics_address.rpartition(':')[0]}:{valley.metrics_port}/metrics"
        if valley.metrics_port
        else ""
    )
    click.echo(
        f"valley: serving gRPC on {host}:{valley.port}{metrics}; store {config.store_url}; "
        f"scenario {valley.scenario.name}; policy {params.policy}",
        err=True,
    )
    while not stop.wait(0.5):
        pass
    click.echo("valley: draining", err=True)
    valley.stop(grace)
    click.echo("valley: stopped", err=True)


# =============================================================================== client plumbing


@dataclass
class Client:
    server: str
    output: str
    timeout: float
    _channel: Any = None
    _placement: Any = None
    _cluster: Any = None

    def _connect(self) -> None:
        if self._channel is None:
            import grpc

            from scheduler._proto.valley.v1 import placement_pb2_grpc as pb_grpc

            self._channel = grpc.insecure_channel(self.server)
            self._placement = pb_grpc.PlacementServiceStub(self._channel)
            self._cluster = pb_grpc.ClusterServiceStub(self._channel)

    @property
    def placement(self) -> Any:
        self._connect()
        return self._placement

    @property
    def cluster(self) -> Any:
        self._connect()
        return self._cluster

    def call(self, method: Callable[..., T], request: Any) -> T:
        import grpc

        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise rpc_failure(e, self.server) from None

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()


def rpc_failure(e: Any, server: str) -> click.ClickException:
    import grpc

    code = e.code()
    details = e.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return click.ClickException(
            f"cannot reach the Valley server at {server} ({details or 'unavailable'}); "
            "is `valley serve` running there? (--server HOST:PORT)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return click.ClickException(f"the server at {server} did not answer in time (--timeout)")
    return click.ClickException(f"{code.name}: {details}")


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option(
        "--timeout",
        type=click.FloatRange(0.1, 3600),
        default=30.0,
        show_default=True,
        help="seconds to wait for the server",
    )(fn)
    fn = click.option(
        "--output",
        "-o",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        help="table for people, json for machines",
    )(fn)
    fn = click.option(
        "--server",
        envvar="VALLEY_SERVER",
        default=DEFAULT_SERVER,
        show_default=True,
        help="HOST:PORT of the Valley server ($VALLEY_SERVER)",
    )(fn)
    return fn


def as_dict(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    out: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return out


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [
        ["-" if c is None or c == "" else str(c) for c in r] for r in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def state_name(value: int) -> str:
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    return pb.WorkloadState.Name(value).removeprefix("WORKLOAD_STATE_")


def _cores(millis: int) -> str:
    return f"{millis / 1000:g}"


def _where(w: Any) -> str:
    sites: dict[str, int] = {}
    for p in w.placements:
        sites[p.site] = sites.get(p.site, 0) + 1
    return ", ".join(f"{s} x{n}" for s, n in sites.items())


def _shape(r: Any) -> str:
    parts = [f"{_cores(r.cpu_millis)} cpu", f"{r.memory_mib} MiB"]
    if r.gpus:
        parts.append(f"{r.gpus} gpu")
    if r.gpu_millis:
        parts.append(f"{r.gpu_millis}m gpu")
    return " ".join(parts)


def workload_rows(workloads: Sequence[Any]) -> str:
    rows = [
        (
            w.id,
            w.spec.tenant,
            w.spec.name,
            state_name(w.state),
            w.spec.replicas or 1,
            _shape(w.spec.resources),
            _where(w),
            _clip(w.reason, 70),
        )
        for w in workloads
    ]
    return table(
        rows, ("ID", "TENANT", "NAME", "STATE", "REPLICAS", "PER REPLICA", "SITES", "REASON")
    )


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _ts(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return (
        datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[
            :-3
        ]
        + "Z"
    )


def workload_detail(w: Any) -> str:
    s = w.spec
    lines = [
        f"id:          {w.id}",
        f"tenant:      {s.tenant}",
        f"name:        {s.name}",
        f"state:       {state_name(w.state)}",
    ]
    if w.reason:
        lines.append(f"reason:      {w.reason}")
    lines += [
        f"replicas:    {s.replicas or 1} x {_shape(s.resources)}",
        f"created:     {_ts(w.created_at)}",
        f"placed:      {_ts(w.placed_at)}",
    ]
    if s.origin:
        slo = f", SLO {s.max_latency_ms:g} ms" if s.max_latency_ms else ""
        lines.append(f"origin:      {s.origin}{slo}")
    if w.placements:
        lines.append(
            f"cost:        {w.cost.energy_cny_per_hour:.4f} CNY/h, "
            f"{w.cost.carbon_kg_per_hour:.4f} kg CO2/h, {w.cost.power_watts:.1f} W"
        )
        lines.append("")
        rows = [
            (
                p.replica,
                p.site,
                p.node,
                ",".join(str(g) for g in p.gpu_indices),
                f"{p.latency_ms:g}",
            )
            for p in w.placements
        ]
        lines.append(table(rows, ("REPLICA", "SITE", "NODE", "GPUS", "RTT MS")))
    return "\n".join(lines)


# =============================================================================== workload files


class WorkloadFileError(click.ClickException):
    def __init__(self, path: str, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass
class WorkloadFile:
    path: str
    specs: list[Any]
    request_id: str = ""
    lines: dict[str, int] = field(default_factory=dict)  # field path -> line

    def line_of(self, field_path: str) -> int | None:
        """The line of the longest known prefix of ``field_path``."""
        p = field_path
        while p:
            if p in self.lines:
                return self.lines[p]
            cut = max(p.rfind("."), p.rfind("["))
            if cut <= 0:
                break
            p = p[:cut]
        return None


_ENUMS = {"kind": "WORKLOAD_KIND_", "topology": "TOPOLOGY_"}


def load_workload_file(path: str) -> WorkloadFile:
    """Read workload specs from a YAML or JSON file: a list of specs, one spec, or a mapping
    with ``workloads`` (and optionally ``request_id``). Errors name the file and line."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise WorkloadFileError(path, None, f"cannot read: {e}") from None
    if path.endswith(".json"):
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkloadFileError(
                path, e.lineno, f"invalid JSON: {e.msg} (column {e.colno})"
            ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        context, cmark = getattr(e, "context", None), getattr(e, "context_mark", None)
        if context and cmark is not None:
            problem += f" ({context} started on line {cmark.line + 1})"
        line = mark.line + 1 if mark else None
        raise WorkloadFileError(path, line, f"invalid YAML: {problem}") from None
    if root is None:
        raise WorkloadFileError(path, None, "empty file: expected a list of workload specs")
    return _FileReader(path).read(root)


class _FileReader:
    def __init__(self, path: str) -> None:
        import yaml

        self.path = path
        self.yaml = yaml
        self.lines: dict[str, int] = {}
        self._constructor = yaml.SafeLoader("")

    def fail(self, node: Any, message: str) -> WorkloadFileError:
        return WorkloadFileError(self.path, node.start_mark.line + 1, message)

    def scalar(self, node: Any, where: str) -> Any:
        if not isinstance(node, self.yaml.ScalarNode):
            raise self.fail(node, f"{where}: expected a single value")
        return self._constructor.construct_object(node, deep=True)

    def read(self, root: Any) -> WorkloadFile:
        y = self.yaml
        request_id = ""
        items = root
        if isinstance(root, y.MappingNode):
            keys = {self.scalar(k, "key"): (k, v) for k, v in root.value}
            if "workloads" in keys:
                for k in keys:
                    if k not in ("workloads", "request_id"):
                        raise self.fail(
                            keys[k][0], f"unknown key {k!r} (expected workloads, request_id)"
                        )
                items = keys["workloads"][1]
                if "request_id" in keys:
                    request_id = str(self.scalar(keys["request_id"][1], "request_id"))
            else:
                items = y.SequenceNode(
                    tag="tag:yaml.org,2002:seq",
                    value=[root],
                    start_mark=root.start_mark,
                    end_mark=root.end_mark,
                )
        if not isinstance(items, y.SequenceNode):
            raise self.fail(items, "expected a list of workload specs")
        specs = [self.spec(node, f"workloads[{i}]") for i, node in enumerate(items.value)]
        if not specs:
            raise self.fail(items, "no workloads in the file")
        return WorkloadFile(self.path, specs, request_id, self.lines)

    def spec(self, node: Any, where: str) -> Any:
        from scheduler._proto.valley.v1 import placement_pb2 as pb

        if not isinstance(node, self.yaml.MappingNode):
            raise self.fail(node, f"{where}: expected a mapping of spec fields")
        self.lines[where] = node.start_mark.line + 1
        spec = pb.WorkloadSpec()
        fields = pb.WorkloadSpec.DESCRIPTOR.fields_by_name
        for key_node, value in node.value:
            key = self.scalar(key_node, where)
            path = f"{where}.{key}"
            self.lines[path] = key_node.start_mark.line + 1
            if key not in fields:
                raise self.fail(key_node, f"{path}: unknown field (known: {', '.join(fields)})")
            if key == "resources":
                self.resources(value, path, spec.resources)
            elif key == "deadline":
                self.deadline(value, path, spec.deadline)
            elif key == "labels":
                if not isinstance(value, self.yaml.MappingNode):
                    raise self.fail(value, f"{path}: expected a mapping of label -> value")
                for k, v in value.value:
                    spec.labels[str(self.scalar(k, path))] = self.text(
                        v, f"{path}.{self.scalar(k, path)}"
                    )
            elif key in ("allowed_sites", "gpu_models"):
                entries = value.value if isinstance(value, self.yaml.SequenceNode) else [value]
                getattr(spec, key).extend(
                    self.text(v, f"{path}[{i}]") for i, v in enumerate(entries)
                )
            elif key in _ENUMS:
                setattr(spec, key, self.enum(value, path, key))
            elif key == "max_latency_ms":
                v = self.scalar(value, path)
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise self.fail(value, f"{path}: expected a number (got {v!r})")
                spec.max_latency_ms = float(v)
            elif key in ("tenant", "name", "origin"):
                setattr(spec, key, self.text(value, path))
            else:
                setattr(spec, key, self.integer(value, path, 64 if key == "duration_s" else 32))
        return spec

    def text(self, node: Any, where: str) -> str:
        v = self.scalar(node, where)
        if not isinstance(v, str):
            raise self.fail(node, f"{where}: expected text (got {v!r}; quote it)")
        return v

    def integer(self, node: Any, where: str, bits: int) -> int:
        v = self.scalar(node, where)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(node, f"{where}: expected a whole number (got {v!r})")
        limit = 2 ** (bits - 1)
        if not -limit <= v < limit:
            raise self.fail(node, f"{where}: {v} is out of range for a {bits}-bit integer")
        return v

    def resources(self, node: Any, where: str, out: Any) -> None:
        if not isinstance(node, self.yaml.MappingNode):
            raise self.fail(
                node, f"{where}: expected a mapping (cpu_millis, memory_mib, gpus, gpu_millis)"
            )
        bits = {"cpu_millis": 64, "memory_mib": 64, "gpus": 32, "gpu_millis": 32}
        for k, v in node.value:
            key = self.scalar(k, where)
            path = f"{where}.{key}"
            self.lines[path] = k.start_mark.line + 1
            if key not in bits:
                raise self.fail(k, f"{path}: unknown field (known: {', '.join(bits)})")
            setattr(out, key, self.integer(v, path, bits[key]))

    def enum(self, node: Any, where: str, key: str) -> int:
        from scheduler._proto.valley.v1 import placement_pb2 as pb

        enum = pb.WorkloadKind if key == "kind" else pb.Topology
        v = self.scalar(node, where)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        name = str(v).upper()
        prefix = _ENUMS[key]
        full = name if name.startswith(prefix) else prefix + name
        try:
            return int(enum.Value(full))
        except ValueError:
            known = ", ".join(
                d.name.removeprefix(prefix).lower()
                for d in enum.DESCRIPTOR.values
                if not d.name.endswith("UNSPECIFIED")
            )
            raise self.fail(node, f"{where}: unknown value {v!r} (known: {known})") from None

    def deadline(self, node: Any, where: str, out: Any) -> None:
        v = self.scalar(node, where)
        if isinstance(v, str):
            try:
                v = datetime.fromisoformat(v.replace("Z", "+00:00"))
            except ValueError:
                raise self.fail(
                    node, f"{where}: expected an RFC 3339 time such as 2025-07-01T12:00:00+08:00"
                ) from None
        if isinstance(v, date) and not isinstance(v, datetime):
            v = datetime(v.year, v.month, v.day, tzinfo=UTC)
        if not isinstance(v, datetime):
            raise self.fail(node, f"{where}: expected a time (got {v!r})")
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        out.FromDatetime(v.astimezone(UTC))


# =============================================================================== client commands


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--request-id",
    default="",
    help="makes resubmitting the same file safe: the server creates nothing new",
)
@client_options
def submit(file: str, request_id: str, server: str, output: str, timeout: float) -> None:
    """Submit the workload specs in FILE (YAML or JSON, the API's field names)."""
    import grpc

    from scheduler._proto.valley.v1 import placement_pb2 as pb

    wf = load_workload_file(file)
    rid = request_id or wf.request_id
    client = Client(server, output, timeout)
    accepted: list[Any] = []
    try:
        for start in range(0, len(wf.specs), MAX_PER_REQUEST):
            chunk = wf.specs[start : start + MAX_PER_REQUEST]
            part = (
                f"{rid}#{start // MAX_PER_REQUEST}"
                if rid and len(wf.specs) > MAX_PER_REQUEST
                else rid
            )
            try:
                resp = client.placement.SubmitWorkloads(
                    pb.SubmitWorkloadsRequest(request_id=part, workloads=chunk), timeout=timeout
                )
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                    raise _located(wf, e.details() or "", start) from None
                raise rpc_failure(e, server) from None
            accepted += resp.workloads
    finally:
        client.close()
    if output == "json":
        echo_json([as_dict(w) for w in accepted])
        return
    click.echo(workload_rows(accepted))
    click.echo(f"\n{len(accepted)} workloads accepted", err=True)


def _located(wf: WorkloadFile, details: str, offset: int) -> click.ClickException:
    """Point a server's validation error (``workloads[3].resources.cpu_millis: ...``) at the
    file's line; ``offset`` is the index of the request's first workload in the file."""
    import re

    m = re.match(r"workloads\[(\d+)\](\S*): (.*)", details, re.S)
    if m is None:
        return WorkloadFileError(wf.path, None, details)
    index = int(m.group(1)) + offset
    field_path = f"workloads[{index}]{m.group(2)}"
    return WorkloadFileError(wf.path, wf.line_of(field_path), f"{field_path}: {m.group(3)}")


@cli.command()
@click.argument("workload_id")
@client_options
def get(workload_id: str, server: str, output: str, timeout: float) -> None:
    """Show one workload: state, reason, placements and cost."""
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    client = Client(server, output, timeout)
    try:
        w = client.call(client.placement.GetWorkload, pb.GetWorkloadRequest(id=workload_id))
    finally:
        client.close()
    if output == "json":
        echo_json(as_dict(w))
    else:
        click.echo(workload_detail(w))


def _state_option(help: str) -> Callable[[F], F]:
    """``--state`` (repeatable), the workload states by their API names in lower case."""
    return click.option(
        "--state",
        "states",
        multiple=True,
        type=click.Choice(
            ["pending", "placed", "unschedulable", "cancelled", "completed", "preempted"],
            case_sensitive=False,
        ),
        help=help,
    )


@cli.command("list")
@click.option("--tenant", default="", help="only this tenant's workloads")
@_state_option("only these states (repeatable)")
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="at most this many (0: all)",
)
@client_options
def list_workloads(
    tenant: str, states: tuple[str, ...], limit: int, server: str, output: str, timeout: float
) -> None:
    """List workloads in submission order."""
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    wanted = [pb.WorkloadState.Value(f"WORKLOAD_STATE_{s.upper()}") for s in states]
    client = Client(server, output, timeout)
    found: list[Any] = []
    token = ""
    more = False
    try:
        while True:
            size = 1000 if limit == 0 else min(1000, limit - len(found))
            page = client.call(
                client.placement.ListWorkloads,
                pb.ListWorkloadsRequest(
                    tenant=tenant, states=wanted, page_size=size, page_token=token
                ),
            )
            found += page.workloads
            token = page.next_page_token
            if not token:
                break
            if limit and len(found) >= limit:
                more = True
                break
    finally:
        client.close()
    if output == "json":
        echo_json([as_dict(w) for w in found])
        return
    click.echo(workload_rows(found))
    if more:
        click.echo(f"\n(first {len(found)}; --limit 0 for all)", err=True)


@cli.command()
@click.argument("workload_id")
@client_options
def cancel(workload_id: str, server: str, output: str, timeout: float) -> None:
    """Cancel a workload; its capacity is free for the next cycle."""
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    client = Client(server, output, timeout)
    try:
        w = client.call(client.placement.CancelWorkload, pb.CancelWorkloadRequest(id=workload_id))
    finally:
        client.close()
    if output == "json":
        echo_json(as_dict(w))
    else:
        click.echo(f"{w.id}: {state_name(w.state)}")


@cli.command()
@click.argument("workload_id")
@client_options
def explain(workload_id: str, server: str, output: str, timeout: float) -> None:
    """Why a workload is where it is, or why it is not placed: a verdict per site."""
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    client = Client(server, output, timeout)
    try:
        e = client.call(client.placement.ExplainWorkload, pb.ExplainWorkloadRequest(id=workload_id))
    finally:
        client.close()
    if output == "json":
        echo_json(as_dict(e))
        return
    click.echo(f"{workload_id}: {state_name(e.state)}")
    click.echo(e.summary)
    click.echo("")
    rows = [
        (
            v.site,
            "yes" if v.feasible else "no",
            f"{v.cost.energy_cny_per_hour:.4f}" if v.cost.power_watts else "-",
            f"{v.cost.carbon_kg_per_hour:.4f}" if v.cost.power_watts else "-",
            "; ".join(f"{r.code}: {r.message}" for r in v.reasons),
        )
        for v in e.sites
    ]
    click.echo(table(rows, ("SITE", "FEASIBLE", "CNY/H", "KG CO2/H", "REASONS")))


@cli.command()
@click.option("--nodes", is_flag=True, help="list every node too")
@client_options
def sites(nodes: bool, server: str, output: str, timeout: float) -> None:
    """Every site: capacity, allocation, and energy, price and carbon now."""
    from scheduler._proto.valley.v1 import placement_pb2 as pb

    client = Client(server, output, timeout)
    try:
        resp = client.call(client.cluster.ListSites, pb.ListSitesRequest(include_nodes=nodes))
    finally:
        client.close()
    if output == "json":
        echo_json(as_dict(resp))
        return
    rows = []
    for s in resp.sites:
        rows.append(
            (
                s.name,
                f"{s.pue:g}",
                f"{_cores(s.allocated.cpu_millis)}/{_cores(s.capacity.cpu_millis)}",
                f"{s.allocated.memory_mib // 1024}/{s.capacity.memory_mib // 1024}",
                f"{s.allocated.gpus}/{s.capacity.gpus}",
                f"{s.allocated.gpu_millis}/{s.capacity.gpu_millis}",
                f"{s.power_watts / 1000:.1f}",
                f"{s.price_cny_per_kwh:.4f}",
                f"{s.carbon_kg_per_kwh:.3f}",
                f"{s.energy_cny_per_hour:.2f}",
            )
        )
    click.echo(f"local time {resp.hour:02d}:00, month {resp.month}")
    click.echo(
        table(
            rows,
            (
                "SITE",
                "PUE",
                "CORES",
                "MEMORY GIB",
                "GPUS",
                "GPU MILLIS",
                "POWER KW",
                "CNY/KWH",
                "KG CO2/KWH",
                "CNY/H",
            ),
        )
    )
    if nodes:
        node_rows = [
            (
                n.name,
                n.pool,
                n.gpu_model,
                f"{_cores(n.allocated.cpu_millis)}/{_cores(n.capacity.cpu_millis)}",
                f"{n.allocated.memory_mib}/{n.capacity.memory_mib}",
                f"{n.allocated.gpus}/{n.capacity.gpus}" if n.capacity.gpus else "",
                f"{n.allocated.gpu_millis}/{n.capacity.gpu_millis}" if n.capacity.gpus else "",
            )
            for s in resp.sites
            for n in s.nodes
        ]
        click.echo("")
        click.echo(
            table(
                node_rows,
                ("NODE", "POOL", "GPU MODEL", "CORES", "MEMORY MIB", "GPUS", "GPU MILLIS"),
            )
        )


@cli.command()
@click.option("--tenant", default="", help="only this tenant's workloads")
@_state_option("only changes into these states (repeatable)")
@click.option(
    "--server",
    envvar="VALLEY_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    help="HOST:PORT of the Valley server ($VALLEY_SERVER)",
)
@click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table: one line per event; json: one JSON object per line",
)
@click.option(
    "--count",
    type=click.IntRange(0),
    default=0,
    help="stop after this many events (0: until Ctrl-C)",
)
def watch(tenant: str, states: tuple[str, ...], server: str, output: str, count: int) -> None:
    """Print every workload state change as it is committed, until Ctrl-C."""
    import grpc

    from scheduler._proto.valley.v1 import placement_pb2 as pb

    client = Client(server, output, 0)
    wanted = [pb.WorkloadState.Value(f"WORKLOAD_STATE_{s.upper()}") for s in states]
    # several events per message: keeps up with thousands of changes a second
    stream = client.placement.WatchWorkloadBatches(
        pb.WatchWorkloadsRequest(tenant=tenant, states=wanted)
    )
    seen = 0
    try:
        for e in _events(stream):
            w = e.workload
            if output == "json":
                click.echo(json.dumps(as_dict(e), ensure_ascii=False))
            else:
                detail = _where(w) or w.reason
                click.echo(
                    f"{_ts(e.time)}  #{e.sequence}  {w.id}  {w.spec.tenant}/{w.spec.name}  "
                    f"{state_name(e.previous_state)} -> {state_name(w.state)}  {_clip(detail, 80)}"
                )
            seen += 1
            if count and seen >= count:
                break
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            raise rpc_failure(e, server) from None
    except KeyboardInterrupt:
        pass
    finally:
        stream.cancel()
        client.close()


def _events(stream: Any) -> Iterator[Any]:
    for batch in stream:
        yield from batch.events


# =============================================================================== registration


def _register() -> None:
    # Each module adds its commands to ``cli``; imported lazily so a broken optional piece
    # names itself instead of breaking every command.
    from scheduler.bench.cli import bench

    cli.add_command(bench)
    try:
        from scheduler.demo import demo
    except ImportError as e:
        if e.name not in ("scheduler.demo",):
            logging.getLogger(__name__).debug("valley demo unavailable: %s", e)
    else:
        cli.add_command(demo)


def main() -> None:
    _register()
    cli()


if __name__ == "__main__":
    main()
