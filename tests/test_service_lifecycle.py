"""The in-process server gives back what it took when it stops."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from scheduler.config import Valley, ValleyConfig


def test_stopping_valley_also_stops_its_metrics_endpoint(tmp_path):
    # regression: the metrics HTTP thread outlived Valley.stop()
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address="127.0.0.1:0",
        store_url=f"sqlite:///{tmp_path / 'v.db'}",
    )
    valley = Valley(config).start()
    port = valley.metrics_port
    assert port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert b"valley_build_info" in response.read()
    valley.stop(grace=0.5)
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_valley_serves_once_its_solver_process_is_warm_and_ends_it_when_stopped(tmp_path):
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=f"sqlite:///{tmp_path / 'v.db'}",
    )
    valley = Valley(config).start()
    assert valley.loop is not None and valley.loop.wait_ready(0)
    solver = valley.loop._solver
    assert solver is not None and solver.alive
    valley.stop(grace=0.5)
    assert not solver.alive
