"""The client commands: each is its own logic; ``client.py`` connects, reports gRPC errors
and prints (``tables.py`` for people, JSON for machines)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import click
import grpc

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.cli.client import (
    Api,
    Shown,
    Target,
    as_dict,
    client_command,
    connect,
    field_violations,
    output_option,
    server_option,
)
from scheduler.cli.tables import (
    event_line,
    explanation,
    move_plan_tables,
    node_table,
    planned_rows,
    planned_start,
    site_tables,
    state_name,
    workload_detail,
    workload_rows,
)
from scheduler.cli.workload_files import WorkloadFile, WorkloadFileError, load_workload_file

F = TypeVar("F", bound=Callable[..., Any])
MAX_PER_REQUEST = 1000  # the API's limit per SubmitWorkloads call


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--request-id",
    default="",
    help="makes resubmitting the same file safe: the server creates nothing new",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="show where the workloads would go now, what they would cost or why not; "
    "nothing is stored",
)
@client_command
def submit(api: Api, file: str, request_id: str, dry_run: bool) -> Shown:
    """Submit the workload specs in FILE (YAML or JSON, the API's field names)."""
    wf = load_workload_file(file)
    rid = request_id or wf.request_id
    rpc = api.placement.PlanWorkloads if dry_run else api.placement.SubmitWorkloads
    accepted: list[pb.Workload] = []
    for start in range(0, len(wf.specs), MAX_PER_REQUEST):
        chunk = wf.specs[start : start + MAX_PER_REQUEST]
        part = (
            f"{rid}#{start // MAX_PER_REQUEST}" if rid and len(wf.specs) > MAX_PER_REQUEST else rid
        )
        try:
            resp = api.call(rpc, pb.SubmitWorkloadsRequest(request_id=part, workloads=chunk))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise _located(wf, e, start) from None
            raise
        accepted += resp.workloads
    if dry_run:
        return Shown(accepted, planned_rows, planned_note(accepted))
    return Shown(accepted, workload_rows, submitted_note(len(accepted), rid))


def planned_note(planned: Sequence[pb.Workload]) -> str:
    """What a dry run found: how many would be placed (and of those, reserved to start
    later), and their cost per hour."""
    placed = [w for w in planned if w.state == pb.WORKLOAD_STATE_PLACED]
    cny = sum(w.cost.energy_cny_per_hour for w in placed)
    kg = sum(w.cost.carbon_kg_per_hour for w in placed)
    later = sum(1 for w in placed if planned_start(w) != "now")
    when = f" ({later} of them reserved to start later)" if later else " now"
    return (
        f"dry run, nothing stored: {len(placed)} of {len(planned)} workloads would be "
        f"placed{when}, {cny:.2f} CNY and {kg:.2f} kg CO2 per hour"
    )


def submitted_note(n: int, request_id: str) -> str:
    """What a submission did. A repeated request_id returns the workloads its first submission
    created, and the response does not say whether it was a repeat: so with a request_id the
    note does not claim that anything was accepted just now."""
    workloads = f"{n} workload{'' if n == 1 else 's'}"
    if not request_id:
        return f"{workloads} accepted"
    return (
        f"{workloads} for request id {request_id} (new ones, or the ones this id created "
        "before: a repeated request id creates nothing new)"
    )


def _located(wf: WorkloadFile, e: grpc.RpcError, offset: int) -> click.ClickException:
    """Point each of a server's field violations (``workloads[3].resources.cpu_millis: ...``)
    at the file's line, one line each; ``offset`` is the index of the request's first workload
    in the file."""
    listed = [f"{field}: {description}" for field, description in field_violations(e)]
    lines = [_line_of(wf, text, offset) for text in listed or [e.details() or ""]]
    if len(lines) == 1:
        return WorkloadFileError(wf.path, *lines[0])
    more = e.details() or ""
    summary = f"{len(lines)} problems" + (f" ({more})" if "more)" in more else "")
    body = "".join(
        f"\n{wf.path}:{line}: {text}" if line else f"\n{wf.path}: {text}" for line, text in lines
    )
    return WorkloadFileError(wf.path, None, summary + body)


def _line_of(wf: WorkloadFile, text: str, offset: int) -> tuple[int | None, str]:
    """The file's line for one violation, and the violation with its index in the file."""
    m = re.match(r"workloads\[(\d+)\](\S*): (.*)", text, re.S)
    if m is None:
        return None, text
    field_path = f"workloads[{int(m.group(1)) + offset}]{m.group(2)}"
    return wf.line_of(field_path), f"{field_path}: {m.group(3)}"


@click.command()
@click.argument("workload_id")
@client_command
def get(api: Api, workload_id: str) -> Shown:
    """Show one workload: state, reason, placements and cost."""
    w = api.call(api.placement.GetWorkload, pb.GetWorkloadRequest(id=workload_id))
    return Shown(w, workload_detail)


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


def _states(names: tuple[str, ...]) -> list[pb.WorkloadState]:
    return [pb.WorkloadState.Value(f"WORKLOAD_STATE_{s.upper()}") for s in names]


@click.command("list")
@click.option("--tenant", default="", help="only this tenant's workloads")
@_state_option("only these states (repeatable)")
@click.option(
    "--limit",
    type=click.IntRange(0),
    default=100,
    show_default=True,
    help="at most this many (0: all)",
)
@client_command
def list_workloads(api: Api, tenant: str, states: tuple[str, ...], limit: int) -> Shown:
    """List workloads in submission order."""
    found: list[pb.Workload] = []
    token = ""
    while True:
        size = 1000 if limit == 0 else min(1000, limit - len(found))
        page = api.call(
            api.placement.ListWorkloads,
            pb.ListWorkloadsRequest(
                tenant=tenant, states=_states(states), page_size=size, page_token=token
            ),
        )
        found += page.workloads
        token = page.next_page_token
        if not token:
            return Shown(found, workload_rows)
        if limit and len(found) >= limit:
            return Shown(found, workload_rows, f"(first {len(found)}; --limit 0 for all)")


@click.command()
@click.argument("workload_id")
@client_command
def cancel(api: Api, workload_id: str) -> Shown:
    """Cancel a workload; its capacity is free for the next cycle."""
    w = api.call(api.placement.CancelWorkload, pb.CancelWorkloadRequest(id=workload_id))
    return Shown(w, lambda w: f"{w.id}: {state_name(w.state)}")


@click.command()
@click.argument("workload_id")
@client_command
def explain(api: Api, workload_id: str) -> Shown:
    """Why a workload is where it is, or why it is not placed: a verdict per site."""
    e = api.call(api.placement.ExplainWorkload, pb.ExplainWorkloadRequest(id=workload_id))
    return Shown(e, functools.partial(explanation, workload_id))


@click.command()
@click.option("--nodes", is_flag=True, help="list every node too")
@client_command
def sites(api: Api, nodes: bool) -> Shown:
    """Every site: capacity, allocation, and energy, price and carbon now."""
    resp = api.call(api.cluster.ListSites, pb.ListSitesRequest(include_nodes=nodes))
    return Shown(resp, functools.partial(site_tables, nodes=nodes))


def _cordon_command(cordoned: bool) -> click.Command:
    verb = "cordon" if cordoned else "uncordon"

    @click.command(name=verb)
    @click.argument("nodes", nargs=-1)
    @click.option("--site", default="", help="every node of this site")
    @client_command
    def command(api: Api, nodes: tuple[str, ...], site: str) -> Shown:
        if not nodes and not site:
            raise click.UsageError("name nodes, --site, or both")
        resp = api.call(
            api.operator.CordonNodes,
            pb.CordonNodesRequest(nodes=list(nodes), site=site, cordoned=cordoned),
        )
        n = len(resp.nodes)
        return Shown(
            resp, lambda r: node_table(r.nodes), f"{n} node{'' if n == 1 else 's'} {verb}ed"
        )

    command.help = (
        "Cordon NODES (and --site's): they take no new replicas; what they hold stays."
        if cordoned
        else "Uncordon NODES (and --site's): they take new replicas again."
    )
    return command


cordon = _cordon_command(True)
uncordon = _cordon_command(False)


@click.command()
@click.argument("nodes", nargs=-1)
@click.option("--site", default="", help="every node of this site")
@click.option("--dry-run", is_flag=True, help="show the plan only: nothing cordoned or moved")
@client_command
def drain(api: Api, nodes: tuple[str, ...], site: str, dry_run: bool) -> Shown:
    """Cordon NODES (and --site's) and move their running replicas elsewhere, every rule
    kept; what cannot move stays, listed with why."""
    if not nodes and not site:
        raise click.UsageError("name nodes, --site, or both")
    plan = api.call(
        api.operator.DrainNodes, pb.DrainNodesRequest(nodes=list(nodes), site=site, dry_run=dry_run)
    )
    return Shown(plan, move_plan_tables, move_plan_note(plan, dry_run))


@click.command()
@click.option("--dry-run", is_flag=True, help="show the plan only: nothing moved")
@click.option(
    "--max-moves", type=click.IntRange(0, 1_000_000), default=0, help="at most N moves (0: any)"
)
@click.option("--site", "sites", multiple=True, help="only nodes of this site (repeatable)")
@client_command
def rebalance(api: Api, dry_run: bool, max_moves: int, sites: tuple[str, ...]) -> Shown:
    """Move running replicas so that powered nodes can power down, and from dearer sites to
    cheaper ones, where that lowers the cluster's cost; every rule kept. The plan shows the
    cost before and after and the floor no placement of the running work can beat."""
    plan = api.call(
        api.operator.Rebalance,
        pb.RebalanceRequest(dry_run=dry_run, max_moves=max_moves, sites=list(sites)),
    )
    return Shown(plan, move_plan_tables, move_plan_note(plan, dry_run))


def move_plan_note(plan: pb.MovePlan, dry_run: bool) -> str:
    """What a drain or rebalance did (or would): moves, what stays, the cost before and after
    and, for a rebalance, the floor of the running work and the gap to it."""
    verb = "would move" if dry_run else "moved"
    note = (
        f"{len(plan.moves)} replicas {verb}, {len(plan.stuck)} stay; the cluster "
        f"{plan.objective_before:.2f} -> {plan.objective_after:.2f} CNY/h (energy and carbon)"
    )
    if plan.HasField("objective_bound") and plan.objective_after > 0:
        gap = (plan.objective_after - plan.objective_bound) / plan.objective_after
        note += (
            f"; no placement of the running work does better than {plan.objective_bound:.2f} "
            f"(gap {round(100 * gap, 1) + 0.0:.1f}%)"
        )
    return note


@click.command()
@click.option("--tenant", default="", help="only this tenant's workloads")
@_state_option("only changes into these states (repeatable)")
@server_option
@output_option("table: one line per event; json: one JSON object per line")
@click.option(
    "--count",
    type=click.IntRange(0),
    default=0,
    help="stop after this many events (0: until Ctrl-C)",
)
def watch(tenant: str, states: tuple[str, ...], server: Target, output: str, count: int) -> None:
    """Print every workload state change as it is committed, until Ctrl-C."""
    request = pb.WatchWorkloadsRequest(tenant=tenant, states=_states(states))
    # a stream has no deadline: it runs until --count events or Ctrl-C
    with connect(server, None) as api:
        # several events per message: keeps up with thousands of changes a second
        stream = api.placement.WatchWorkloadBatches(request)
        try:
            for seen, e in enumerate(_events(stream), 1):
                if output == "json":
                    click.echo(json.dumps(as_dict(e), ensure_ascii=False))
                else:
                    click.echo(event_line(e))
                if count and seen >= count:
                    break
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise
        except KeyboardInterrupt:
            pass
        finally:
            stream.cancel()


def _events(stream: Any) -> Iterator[pb.WorkloadEvent]:
    for batch in stream:
        yield from batch.events
