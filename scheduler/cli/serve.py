"""``valley serve``: the service in the foreground until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging
import signal
import sys
import threading

import click


@click.command()
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
    envvar="VALLEY_STORE",
    show_envvar=True,
    help="store URL: sqlite:///relative.db, sqlite:////abs.db or postgresql://user@host/db "
    "(a password is best given through the environment) "
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
    "--max-batch-replicas",
    type=click.IntRange(1, 100_000_000),
    default=2_500,
    show_default=True,
    help="replicas a cycle takes at most (at least one workload): the rest, fairly across "
    "tenants, in later cycles, so that a cycle stays near its budget",
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
    "--preemption/--no-preemption",
    default=True,
    show_default=True,
    help="pending work of higher priority displaces the fewest, cheapest lower-priority "
    "running work it needs the room of (displaced work is PREEMPTED, then PENDING again)",
)
@click.option(
    "--grace",
    type=click.FloatRange(0, 600),
    default=10.0,
    show_default=True,
    help="seconds in-flight RPCs get on SIGTERM",
)
@click.option(
    "--max-concurrent-rpcs",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="RPCs at once (running or queued); beyond: RESOURCE_EXHAUSTED",
)
@click.option(
    "--max-watchers",
    type=click.IntRange(0, 10_000),
    default=48,
    show_default=True,
    help="open watch streams in all (each holds a thread; --max-workers must exceed it)",
)
@click.option(
    "--max-watchers-per-tenant",
    type=click.IntRange(0, 10_000),
    default=8,
    show_default=True,
    help="open watch streams of one tenant; beyond: RESOURCE_EXHAUSTED",
)
@click.option(
    "--max-workers",
    type=click.IntRange(2, 10_000),
    default=128,
    show_default=True,
    help="RPC worker threads",
)
@click.option(
    "--keepalive-time-s",
    type=click.FloatRange(1, 86_400),
    default=30.0,
    show_default=True,
    help="ping an idle connection this often (keeps long watch streams open)",
)
@click.option(
    "--keepalive-timeout-s",
    type=click.FloatRange(1, 3600),
    default=10.0,
    show_default=True,
    help="close a connection whose ping is not answered within this",
)
@click.option(
    "--max-connection-age-s",
    type=click.FloatRange(0, 30 * 86_400),
    default=3600.0,
    show_default=True,
    help="close connections this old so that clients reconnect and rebalance behind a load "
    "balancer; 0: never",
)
@click.option(
    "--max-connection-age-grace-s",
    type=click.FloatRange(0, 86_400),
    default=60.0,
    show_default=True,
    help="what calls of a connection closed for its age get to finish",
)
@click.option(
    "--auth",
    "auth_file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar="VALLEY_AUTH",
    show_envvar=True,
    help="tokens, roles and quotas (TOML; re-read on SIGHUP); without it every caller is trusted",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar="VALLEY_TLS_CERT",
    show_envvar=True,
    help="the server's certificate chain (PEM); with --tls-key, gRPC is served over TLS",
)
@click.option(
    "--tls-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar="VALLEY_TLS_KEY",
    show_envvar=True,
    help="the server's private key (PEM)",
)
@click.option(
    "--tls-client-ca",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    envvar="VALLEY_TLS_CLIENT_CA",
    show_envvar=True,
    help="require client certificates signed by this CA (PEM): mutual TLS",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="allow plaintext gRPC on a non-loopback --grpc-address (logs a warning)",
)
@click.option(
    "--forecast",
    "forecast_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="hourly price and carbon per site replacing the scenario's (TOML, or JSON for a "
    ".json name; see scheduler/domain/forecast.py); read again when it changes",
)
@click.option(
    "--rebalance-every-s",
    type=click.FloatRange(0),
    default=0.0,
    show_default=True,
    help="rebalance the running work this often (0: only when an operator asks)",
)
@click.option(
    "--rebalance-move-share",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.02,
    show_default=True,
    help="the most of the running replicas a periodic rebalance moves",
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
    max_batch_replicas: int,
    solver_process: bool,
    fgd: bool,
    preemption: bool,
    grace: float,
    max_concurrent_rpcs: int,
    max_watchers: int,
    max_watchers_per_tenant: int,
    max_workers: int,
    keepalive_time_s: float,
    keepalive_timeout_s: float,
    max_connection_age_s: float,
    max_connection_age_grace_s: float,
    auth_file: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_client_ca: str | None,
    insecure: bool,
    forecast_file: str | None,
    rebalance_every_s: float,
    rebalance_move_share: float,
    log_level: str,
) -> None:
    """Run the Valley service: gRPC API, scheduling loop, store and metrics.

    SIGTERM (or Ctrl-C) drains: health turns NOT_SERVING, watch streams end, in-flight RPCs get
    --grace seconds, then the process exits 0. SIGHUP re-reads the --auth file."""
    from dataclasses import replace

    from scheduler.config import Valley, ValleyConfig, default_store_url
    from scheduler.domain import ScenarioError, ValidationError
    from scheduler.loop import LoopConfig
    from scheduler.service import ServerLimits
    from scheduler.service.tls import TlsFiles
    from scheduler.solver import SolverParams
    from scheduler.store import StoreError, redacted

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca and not tls_cert:
        raise click.UsageError("--tls-client-ca needs --tls-cert and --tls-key")

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
                max_batch_replicas=max_batch_replicas,
                solver_process=solver_process,
                fgd=fgd,
                rebalance_every_s=rebalance_every_s,
                rebalance_move_share=rebalance_move_share,
                preemption=preemption,
            ),
            grace_s=grace,
            limits=ServerLimits(
                max_workers=max_workers,
                max_watchers=max_watchers,
                max_watchers_per_tenant=max_watchers_per_tenant,
                max_concurrent_rpcs=max_concurrent_rpcs,
                keepalive_time_s=keepalive_time_s,
                keepalive_timeout_s=keepalive_timeout_s,
                max_connection_age_s=max_connection_age_s,
                max_connection_age_grace_s=max_connection_age_grace_s,
            ),
            auth_file=auth_file,
            tls=TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None,
            insecure=insecure,
            forecast_file=forecast_file,
        )
        valley = Valley(config).start()
    except (StoreError, ScenarioError, ValidationError, OSError, ValueError) as e:
        raise click.ClickException(str(e)) from None
    stop = threading.Event()
    reload = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, lambda signum, frame: reload.set())
    host = grpc_address.rpartition(":")[0] or "0.0.0.0"
    metrics = (
        f", metrics on http://{metrics_address.rpartition(':')[0]}:{valley.metrics_port}/metrics"
        if valley.metrics_port
        else ""
    )
    click.echo(
        f"valley: serving gRPC{' over TLS' if config.tls else ''} on {host}:{valley.port}"
        f"{metrics}; store {redacted(config.store_url)}; "
        f"scenario {valley.scenario.name}; policy {params.policy}",
        err=True,
    )
    while not stop.wait(0.5):
        if reload.is_set():
            reload.clear()
            valley.auth.reload()
    click.echo("valley: draining", err=True)
    valley.stop(grace)
    click.echo("valley: stopped", err=True)
