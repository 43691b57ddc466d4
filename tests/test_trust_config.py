"""The trust settings themselves: the auth file's rules and its reload on SIGHUP, plaintext only
on loopback, and the store's password kept out of logs, errors and --help."""

from __future__ import annotations

import logging
import signal
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from scheduler._proto.valley.v1 import placement_pb2 as pb
from scheduler.cli import cli
from scheduler.config import Valley, ValleyConfig
from scheduler.domain import Scenario
from scheduler.loop import LoopConfig
from scheduler.service.auth import Auth, AuthFileError, hash_token, parse_auth
from scheduler.store import StoreError, open_store, redacted
from tests.test_service_process import valley_serve
from tests.trust_support import TOKENS, Stubs, auth_toml

pytest_plugins = ["tests.pg"]

HASH = hash_token("some-token")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f'[[tokens]]\nsha256 = "{HASH}"\ntenant = "t"\n', "tokens[0].name"),
        ('[[tokens]]\nname = "n"\nsha256 = "abc"\ntenant = "t"\n', "64 hex digits"),
        (f'[[tokens]]\nname = "n"\nsha256 = "{HASH}"\n', "exactly one of tenant and role"),
        (
            f'[[tokens]]\nname = "n"\nsha256 = "{HASH}"\ntenant = "t"\nrole = "operator"\n',
            "exactly one",
        ),
        (f'[[tokens]]\nname = "n"\nsha256 = "{HASH}"\nrole = "admin"\n', "'operator'"),
        (f'[[tokens]]\nname = "n"\nsha256 = "{HASH}"\ntenant = "t"\nx = 1\n', "unknown keys"),
        ("[quotas.t]\ncpu_millis = -1\n", "quotas.t.cpu_millis"),
        ("[quotas.t]\nsubmissions_per_second = 0\n", "submissions_per_second"),
        ("[quotas.t]\ncores = 4\n", "unknown keys"),
        ("tokens = 3\n", "array of tables"),
        (f'[[tokens]]\nname = "n"\nsha256 = "{HASH}"\ntenant = "t', "not valid TOML"),
    ],
)
def test_a_broken_auth_file_is_refused_naming_what_without_the_hash(text: str, says: str) -> None:
    with pytest.raises(AuthFileError) as info:
        parse_auth(text)
    assert says in str(info.value)
    assert HASH not in str(info.value)


def test_an_auth_file_over_its_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text("# " + "x" * (1 << 20) + "\n")
    with pytest.raises(AuthFileError, match="larger than"):
        Auth(str(path))


def test_a_broken_file_on_reload_keeps_the_previous_one_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "auth.toml"
    path.write_text(auth_toml())
    auth = Auth(str(path))
    md = (("authorization", f"Bearer {TOKENS['a']}"),)
    assert auth.identify(md).tenant == "a"
    path.write_text(auth_toml() + f'[[tokens]]\nname = "bad"\nsha256 = "{HASH}"\n')
    with caplog.at_level(logging.INFO):
        assert not auth.reload()
    assert auth.identify(md).tenant == "a"
    assert "not reloaded" in caplog.text and "tokens[3]" in caplog.text
    assert HASH not in caplog.text and hash_token(TOKENS["a"]) not in caplog.text


def test_sighup_rereads_the_auth_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the server runs this checkout's code, whichever one the environment installed
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    path = tmp_path / "auth.toml"
    path.write_text(auth_toml())
    with valley_serve(tmp_path, f"sqlite:///{tmp_path}/valley.db", "--auth", str(path)) as srv:
        with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            new = Stubs.over(ch, "a-token-added-later")

            def answer() -> grpc.StatusCode:
                try:
                    new.placement.ListWorkloads(
                        pb.ListWorkloadsRequest(), metadata=new.metadata, timeout=10
                    )
                except grpc.RpcError as e:
                    return e.code()
                return grpc.StatusCode.OK

            assert answer() == grpc.StatusCode.UNAUTHENTICATED
            added = f'[[tokens]]\nname = "later"\nsha256 = "{hash_token("a-token-added-later")}"'
            path.write_text(auth_toml() + added + '\ntenant = "c"\n')
            srv.proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 20
            while answer() != grpc.StatusCode.OK:
                assert time.monotonic() < end, "the new token was not taken"
                time.sleep(0.1)
        assert "reloaded" in "".join(srv.log)


def test_plaintext_on_a_non_loopback_address_is_refused_unless_insecure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    for address in ("127.0.0.1:0", "localhost:50051", "[::1]:0"):
        ValleyConfig(grpc_address=address).check_exposure()
    with pytest.raises(ValueError, match="--insecure"):
        ValleyConfig(grpc_address="0.0.0.0:50051").check_exposure()
    with pytest.raises(ValueError, match="not a loopback address"):
        ValleyConfig(grpc_address="[::]:50051").check_exposure()
    with caplog.at_level(logging.WARNING):
        ValleyConfig(grpc_address="0.0.0.0:50051", insecure=True).check_exposure()
    assert "--insecure" in caplog.text
    result = CliRunner().invoke(cli, ["serve", "--grpc-address", "0.0.0.0:0"])
    assert result.exit_code == 1 and "--insecure" in result.output


def test_the_store_password_is_redacted_in_every_form() -> None:
    assert redacted("postgresql://valley:s3cret@db:5432/valley") == (
        "postgresql://valley:***@db:5432/valley"
    )
    assert "s3cret" not in redacted("postgresql://valley@db/v?sslmode=require&password=s3cret")
    assert redacted("sqlite:///data/valley.db") == "sqlite:///data/valley.db"


def test_the_store_password_never_reaches_an_error_a_log_line_or_help(
    tiny: Scenario,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the pool gives up after twice the connect timeout: 2 s rather than 10 s, same error
    monkeypatch.setattr("scheduler.store.postgres.CONNECT_TIMEOUT_S", 1)
    with pytest.raises(StoreError) as info:
        open_store("postgresql://valley:s3cret@127.0.0.1:1/valley?connect_timeout=2")
    assert "s3cret" not in str(info.value)
    with pytest.raises(StoreError) as info:
        open_store(f"sqlite:///{tmp_path}/valley.db?password=s3cret")  # options: refused
    assert "s3cret" not in str(info.value)
    help_text = CliRunner(env={"VALLEY_STORE": "postgresql://v:s3cret@db/v"}).invoke(
        cli, ["serve", "--help"]
    )
    assert "VALLEY_STORE" in help_text.output and "s3cret" not in help_text.output


@pytest.mark.integration
def test_the_store_password_is_not_logged_when_the_server_starts(
    tiny: Scenario, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres_url.replace("://valley@", "://valley:s3cret@")  # the test server trusts all
    assert "s3cret" in url
    config = ValleyConfig(
        grpc_address="127.0.0.1:0",
        metrics_address=None,
        store_url=url,
        loop=LoopConfig(batch_window_s=0.01),
    )
    with caplog.at_level(logging.DEBUG), Valley(config, scenario=tiny):
        pass
    assert "valley:***@" in caplog.text and "s3cret" not in caplog.text
