"""``valley demo``: the command that runs ``scheduler.demo``'s workload mix against a server,
reached as every client command reaches it (``--server``/``$VALLEY_SERVER``, ``--token``,
TLS)."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import click
import grpc

from scheduler.cli.client import Target, open_channel, server_option
from scheduler.demo import DemoLoad, Shapes


@click.command("demo")
@server_option
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1, max=10_000),
    default=10.0,
    show_default=True,
    help="Workloads submitted per second.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to run; 0 runs until Ctrl-C.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05, max=60),
    default=0.5,
    show_default=True,
    help="Seconds between two SubmitWorkloads requests (the rate is spread over them).",
)
@click.option(
    "--cancel-fraction",
    type=click.FloatRange(0, 1),
    default=0.05,
    show_default=True,
    help="Share of workloads their tenant cancels a few seconds after submitting.",
)
@click.option(
    "--misconfigured",
    type=click.FloatRange(0, 1),
    default=0.01,
    show_default=True,
    help="Share of workloads with an SLO no site can meet (they end UNSCHEDULABLE).",
)
@click.option(
    "--trace",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Draw shapes from an openb pod list CSV instead of the embedded sample.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the mix.")
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the server before giving up.",
)
@click.option("--quiet", is_flag=True, help="Print only the final summary.")
def demo(
    server: Target,
    rate: float,
    duration: float,
    interval: float,
    cancel_fraction: float,
    misconfigured: float,
    trace: str | None,
    seed: int,
    connect_timeout: float,
    quiet: bool,
) -> None:
    """Submit a continuous Zhongguancun workload mix to a running Valley server.

    Interactive services (SLO 2 ms from zhongguancun), regional services (SLO 5 ms), batch
    (some completing after duration_s), GPU inference on GPU shares and training on whole GPUs,
    with openb trace shapes, and a few cancellations. Stops after --duration seconds or Ctrl-C.
    """
    shapes = Shapes.from_trace(trace) if trace else Shapes.embedded()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGINT, on_signal)
    previous_term = signal.signal(signal.SIGTERM, on_signal)
    channel = open_channel(server)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            click.echo(f"valley demo: cannot reach a server at {server}", err=True)
            sys.exit(2)
        load = DemoLoad(
            channel,
            rate=rate,
            interval=interval,
            cancel_fraction=cancel_fraction,
            seed=seed,
            shapes=shapes,
            misconfigured=misconfigured,
        )
        if not quiet:
            until = f"for {duration:g} s" if duration else "until Ctrl-C"
            click.echo(f"valley demo: {rate:g} workloads/s to {server} {until}", err=True)
        stats = load.run(duration, stop, None if quiet else lambda s: click.echo(s, err=True))
        click.echo(stats.summary())
        if stats.total == 0 and stats.errors:
            sys.exit(1)
    finally:
        channel.close()
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
