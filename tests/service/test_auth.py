"""A token is required off loopback, and checked on every request when set."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from autolrs import ConfigError
from autolrs.service import RemoteController
from autolrs.service import cli as service_cli
from autolrs.service.wire import TOKEN_ENV

TOKEN = "a-test-token-of-some-length"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    service_cli.configure_parser(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_only_loopback_addresses_count_as_loopback(host, loopback):
    assert service_cli.is_loopback(host) is loopback


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "my-host.example"])
def test_binding_off_loopback_without_a_token_is_refused(host, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    status = service_cli.main(parse("--host", host, "--db", str(tmp_path / "x.db")))
    assert status == 2
    assert "refusing to bind" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()  # refused before touching anything


def test_an_empty_token_is_no_token(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(TOKEN_ENV, "")
    assert service_cli.main(parse("--host", "0.0.0.0", "--token", "")) == 2


def test_the_module_entry_point_refuses_too(tmp_path):
    env_without_token = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autolrs.service",
            "--host",
            "0.0.0.0",
            "--db",
            str(tmp_path / "x.db"),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
        env=env_without_token,
    )
    assert done.returncode == 2
    assert "refusing to bind '0.0.0.0' without a token" in done.stderr


@pytest.mark.parametrize("source", ["flag", "environment"])
def test_with_a_token_binding_off_loopback_goes_ahead(source, monkeypatch, tmp_path):
    served = {}

    def fake_run(app, **options):
        served.update(options, app=app)

    monkeypatch.setattr("uvicorn.run", fake_run)
    argv = ["--host", "0.0.0.0", "--port", "9", "--db", str(tmp_path / "x.db")]
    if source == "flag":
        argv += ["--token", TOKEN]
    else:
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
    assert service_cli.main(parse(*argv)) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 9


@pytest.fixture
def guarded(make_thread_server):
    with make_thread_server(token=TOKEN) as url:
        yield url


@pytest.mark.parametrize("path", ["/health", "/jobs/x", "/openapi.json", "/no-such-endpoint"])
@pytest.mark.parametrize(
    "header", [None, "Bearer wrong-token", f"bearer {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
def test_every_request_without_the_right_token_is_unauthorized(guarded, helpers, path, header):
    headers = {} if header is None else {"Authorization": header}
    response = helpers.call(guarded, "GET", path, headers=headers)
    helpers.assert_error(response, 401, "unauthorized")
    assert response[1]["www-authenticate"].startswith("Bearer")


def test_the_right_token_is_let_through(guarded, helpers):
    assert helpers.call(guarded, "GET", "/health", token=TOKEN)[0] == 200
    helpers.assert_error(
        helpers.call(guarded, "GET", "/jobs/x", token=TOKEN), 404, "job_not_found"
    )


def test_the_client_sends_the_token_from_its_argument_or_the_environment(
    guarded, helpers, monkeypatch
):
    config = helpers.small_config()
    with RemoteController(guarded, config, validation=False, token=TOKEN) as remote:
        assert remote.start()
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with RemoteController(guarded, config, validation=False) as remote:
        assert remote.start()


def test_a_client_with_the_wrong_token_gets_a_config_error(guarded, helpers, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    remote = RemoteController(guarded, helpers.small_config(), validation=False, token="nope")
    with pytest.raises(ConfigError, match="Authorization: Bearer"):
        remote.start()
