"""How a Valley server is configured and put together: the composition root.

``Valley(config).start()`` opens the store, loads the scenario, rebuilds and starts the
scheduling loop, wires metrics (when a metrics address is given) and starts the gRPC server;
``stop()`` drains it. The service and the loop are independent layers; this module is the one
place that knows both.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import grpc

from scheduler.domain import DEFAULT_SCENARIO, Scenario, ValidationError, load_scenario
from scheduler.domain.forecast import Forecast, load_forecast
from scheduler.loop import LoopConfig, LoopObserver, SchedulingLoop
from scheduler.replica import Replica
from scheduler.service import ServerConfig, ServerLimits, ValleyServer, create_server
from scheduler.service.auth import Auth
from scheduler.service.tls import TlsFiles, is_loopback
from scheduler.solver import SolverParams
from scheduler.store import StoreError, open_store, redacted
from scheduler.store.sql import SqlStore

log = logging.getLogger(__name__)

DEFAULT_GRPC_ADDRESS = "127.0.0.1:50051"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"


def data_dir() -> Path:
    """Where the embedded store lives: ``$VALLEY_DATA_DIR`` or ``./data``."""
    return Path(os.environ.get("VALLEY_DATA_DIR") or "data")


def default_store_url() -> str:
    # sqlite:///relative.db or sqlite:////absolute.db: an absolute path brings its own slash
    return f"sqlite:///{data_dir() / 'valley.db'}"


@dataclass(frozen=True)
class ValleyConfig:
    grpc_address: str = DEFAULT_GRPC_ADDRESS
    metrics_address: str | None = DEFAULT_METRICS_ADDRESS  # None: no metrics endpoint
    store_url: str = field(default_factory=default_store_url)
    scenario: str = DEFAULT_SCENARIO  # a shipped name or a TOML path
    params: SolverParams = field(default_factory=SolverParams)
    loop: LoopConfig = field(default_factory=LoopConfig)
    limits: ServerLimits = field(default_factory=ServerLimits)
    grace_s: float = 10.0
    warm_up_timeout_s: float = 60.0
    health_interval_s: float = 1.0  # how often health asks whether the store answers
    auth_file: str | None = None  # tokens, roles and quotas; None: every caller trusted
    tls: TlsFiles | None = None
    insecure: bool = False  # plaintext on a non-loopback address, knowingly
    # hourly price and carbon per site replacing the scenario's (``domain.forecast``),
    # read again when the file changes; None: the scenario's
    forecast_file: str | None = None

    def check_exposure(self) -> None:
        """Plaintext only on loopback, unless ``insecure`` (then a warning): anyone who can
        reach the port could read tokens and workloads off the wire."""
        if self.tls is not None or is_loopback(self.grpc_address):
            return
        if not self.insecure:
            raise ValueError(
                f"refusing to serve plaintext gRPC on {self.grpc_address}, which is not a "
                "loopback address: give --tls-cert and --tls-key, or --insecure to accept it"
            )
        log.warning(
            "serving plaintext gRPC on %s (--insecure): tokens and workloads cross the "
            "network unencrypted",
            self.grpc_address,
        )


class ForecastWatch:
    """A forecast file (``domain.forecast``) read at start and again whenever it changes (its
    modification time or size, looked at every ``interval_s``). A change that does not parse
    is logged with the file and field, and the forecast before it is kept."""

    def __init__(self, path: str, scenario: Scenario, interval_s: float = 2.0) -> None:
        self.path, self.scenario, self.interval_s = path, scenario, interval_s
        self._stamp: tuple[float, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self) -> Forecast:
        """Read the file now; raises ``ValidationError`` naming the file and field."""
        self._stamp = self._stat()
        return load_forecast(self.path, self.scenario)

    def start(self, apply: Callable[[Forecast], None]) -> None:
        def watch() -> None:
            while not self._stop.wait(self.interval_s):
                if self._stat() == self._stamp:
                    continue
                try:
                    forecast = self.load()
                except ValidationError as e:
                    log.error("forecast not reloaded, the last one stays: %s", e)
                    continue
                log.info("forecast reloaded from %s", self.path)
                apply(forecast)

        self._thread = threading.Thread(target=watch, name="valley-forecast", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _stat(self) -> tuple[float, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime, st.st_size)


class Valley:
    """A Valley server in this process: store, scheduling loop (while it leads: ``Replica``),
    gRPC server, metrics. Health is SERVING while the store answers, NOT_SERVING while it
    does not (checked every ``health_interval_s``), without a restart either way."""

    def __init__(
        self,
        config: ValleyConfig,
        *,
        scenario: Scenario | None = None,
        observers: Sequence[LoopObserver] = (),
        interceptors: Sequence[grpc.ServerInterceptor] = (),
    ) -> None:
        self.config = config
        self.scenario = scenario or load_scenario(config.scenario)
        self._observers = list(observers)
        self._interceptors = list(interceptors)
        self.store: SqlStore | None = None
        self.replica: Replica | None = None
        self.server: ValleyServer | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self._health_stop = threading.Event()
        self._health: threading.Thread | None = None
        self.auth = Auth()
        self._forecast_watch: ForecastWatch | None = None

    @property
    def loop(self) -> SchedulingLoop | None:
        """The scheduling loop, while this server leads."""
        return self.replica.loop if self.replica is not None else None

    def start(self) -> Valley:
        self.config.check_exposure()
        self.auth = Auth(self.config.auth_file)
        metrics: ModuleType | None = None
        on_leadership = None
        if self.config.metrics_address is not None:
            metrics = importlib.import_module("scheduler.metrics")
            self._interceptors.insert(0, metrics.grpc_interceptor())
            self._observers.append(metrics.MetricsObserver())
            on_leadership = metrics.leadership_changed
        forecast = None
        if self.config.forecast_file is not None:
            self._forecast_watch = ForecastWatch(self.config.forecast_file, self.scenario)
            forecast = self._forecast_watch.load()  # a bad file stops the start, with why
        store = open_store(self.config.store_url)
        assert isinstance(store, SqlStore)
        self.store = store
        try:
            self.replica = Replica(
                store,
                self.scenario,
                params=self.config.params,
                observers=self._observers,
                config=self.config.loop,
                on_leadership=on_leadership,
                forecast=forecast,
            )
            self.replica.start()
            if self._forecast_watch is not None:
                self._forecast_watch.start(self.replica.set_forecast)
            self.server, self.port = create_server(
                ServerConfig(
                    store=self.store,
                    scheduling=self.replica,
                    scenario=self.scenario,
                    address=self.config.grpc_address,
                    limits=self.config.limits,
                    interceptors=self._interceptors,
                    auth=self.auth,
                    tls=self.config.tls,
                )
            )
            if metrics is not None and self.config.metrics_address is not None:
                metrics.register_snapshot_source(self.replica.snapshot)
                self.metrics_port = metrics.start_http_server(self.config.metrics_address)
            # SERVING once the solver is ready: the first submissions would wait for it
            if not self.replica.wait_ready(self.config.warm_up_timeout_s):
                log.warning("the solver is not warm after %.0f s", self.config.warm_up_timeout_s)
            self.server.start()
            self._health = threading.Thread(
                target=self._watch_store, name="valley-health", daemon=True
            )
            self._health.start()
        except BaseException:
            self._shutdown(0.0)
            raise
        log.info(
            "valley serving %s on port %d (store %s, scenario %s)",
            ", ".join(s.name for s in self.scenario.sites),
            self.port,
            redacted(self.config.store_url),
            self.scenario.name,
        )
        return self

    def _watch_store(self) -> None:
        """Health follows the store: NOT_SERVING while it does not answer, SERVING again once
        it does (a load balancer and the readiness probe stop sending work meanwhile)."""
        serving = True
        while not self._health_stop.wait(self.config.health_interval_s):
            assert self.store is not None and self.server is not None
            try:
                self.store.ping()
                ok = True
            except StoreError as e:
                ok = False
                if serving:
                    log.warning("store unreachable, health NOT_SERVING: %s", e)
            if ok != serving and not self._health_stop.is_set():
                self.server.set_serving(ok)
                if ok:
                    log.info("store reachable again, health SERVING")
                serving = ok

    def stop(self, grace: float | None = None) -> None:
        """Drain: NOT_SERVING, watch streams ended, in-flight RPCs finish, loop stops."""
        self._shutdown(self.config.grace_s if grace is None else grace)

    def _shutdown(self, grace: float) -> None:
        self._health_stop.set()
        if self._forecast_watch is not None:
            self._forecast_watch.stop()
        if self._health is not None:
            self._health.join(5)
        if self.server is not None:
            self.server.drain(grace)
        if self.replica is not None:
            self.replica.stop()
            if self.metrics_port is not None:
                from scheduler import metrics

                metrics.unregister_snapshot_source(self.replica.snapshot)
                metrics.stop_http_server(self.metrics_port)
        if self.store is not None:
            self.store.close()

    def __enter__(self) -> Valley:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(grace=1.0)
