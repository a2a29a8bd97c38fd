"""The client: argument checks, error mapping, retries and their limits."""

from __future__ import annotations

import http.server
import socket
import sqlite3
import threading
import time

import pytest

from autolrs import AutoLRSError, ConfigError, DivergenceError, ProtocolError
from autolrs.core import Controller, Report
from autolrs.service import RemoteController, RemoteControllerFactory


@pytest.fixture
def closed_url(helpers) -> str:
    """A loopback URL where nothing listens."""
    return f"http://127.0.0.1:{helpers.free_port()}"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"url": "ftp://host"}, "url"),
        ({"url": "no-scheme"}, "url"),
        ({"url": 8765}, "url"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
        ({"backoff": float("nan")}, "backoff"),
        ({"job_id": ""}, "job_id"),
        ({"config": {"min_lr": 0.1}}, "config"),
        ({"validation": 1}, "validation"),
    ],
)
def test_bad_arguments_are_refused_naming_the_parameter(helpers, closed_url, kwargs, named):
    arguments = {"url": closed_url, "config": helpers.small_config(), "validation": False}
    arguments.update(kwargs)
    url, config = arguments.pop("url"), arguments.pop("config")
    with pytest.raises(ConfigError, match=named):
        RemoteController(url, config, **arguments)


def test_a_report_before_start_is_refused_locally_like_the_controller_does(helpers, closed_url):
    remote = RemoteController(closed_url, helpers.small_config(), validation=False, retries=0)
    local = Controller(helpers.small_config(), validation=False)
    for controller in (remote, local):
        with pytest.raises(ProtocolError, match="before start"):
            controller.report(Report(seq=0, losses=[1.0]))


def test_a_report_that_is_not_a_report_is_refused_locally(service, helpers):
    remote = RemoteController(service.url, helpers.small_config(), validation=False)
    remote.start()
    with pytest.raises(ProtocolError, match="must be a Report, got dict"):
        remote.report({"seq": 0, "losses": [1.0]})


def test_start_twice_is_refused(service, helpers):
    remote = RemoteController(service.url, helpers.small_config(), validation=False)
    remote.start()
    with pytest.raises(ProtocolError, match="already called"):
        remote.start()


def test_an_unreachable_server_is_named_after_the_retry_budget(helpers, closed_url):
    remote = RemoteController(
        closed_url, helpers.small_config(), validation=False, retries=2, backoff=0.01
    )
    with pytest.raises(AutoLRSError, match="did not answer") as raised:
        remote.start()
    assert closed_url in str(raised.value) and "3 attempts" in str(raised.value)
    assert "ConnectionRefusedError" in str(raised.value)
    assert not remote.started


def test_a_server_that_never_answers_times_out(helpers):
    with socket.socket() as listener:  # accepts connections (the kernel does) but never replies
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        remote = RemoteController(
            url, helpers.small_config(), validation=False, timeout=0.2, retries=1, backoff=0
        )
        started = time.monotonic()
        with pytest.raises(AutoLRSError, match="timed out"):
            remote.start()
    assert time.monotonic() - started < 10


def test_a_wrong_seq_is_a_protocol_error_with_the_servers_message(service, helpers):
    remote = RemoteController(service.url, helpers.small_config(), validation=False)
    commands = remote.start()
    with pytest.raises(ProtocolError, match=r"waits for the report on seq=0.*409 seq_mismatch"):
        remote.report(Report(seq=3, losses=[1.0] * commands[-1].steps))
    assert remote.pending.seq == 0  # the mirror did not move


def test_a_deleted_job_can_no_longer_report(service, helpers):
    remote = RemoteController(service.url, helpers.small_config(), validation=False)
    commands = remote.start()
    remote.delete()
    with pytest.raises(ProtocolError, match="no job with id"):
        remote.report(helpers.Trainee().execute(commands))


def test_divergence_on_the_server_raises_divergence_error(service, helpers):
    config = helpers.small_config(warmup_steps=4, warmup_lr=0.05)
    remote = RemoteController(service.url, config, validation=False)
    remote.start()
    with pytest.raises(DivergenceError, match="warmup"):
        remote.report(Report(seq=0, losses=[1.0, float("nan")]))


def test_an_idle_connection_the_server_closed_is_reopened_without_using_a_retry(
    make_thread_server, helpers
):
    with make_thread_server(keep_alive=0.1) as url:
        remote = RemoteController(url, helpers.small_config(), validation=False, retries=0)
        trainee = helpers.Trainee()
        commands = remote.start()
        time.sleep(0.5)  # the server drops the kept-alive connection meanwhile
        commands = remote.report(trainee.execute(commands))
        time.sleep(0.5)
        remote.report(trainee.execute(commands))
    assert remote.pending.seq == 2


def test_503s_are_retried_until_the_database_frees_up(make_thread_server, helpers, tmp_path):
    config = helpers.small_config(seed=2)
    with make_thread_server(busy_timeout=0.1) as url:
        remote = RemoteController(url, config, validation=False, retries=30, backoff=0.05)
        trainee = helpers.Trainee()
        commands = remote.start()
        blocker = sqlite3.connect(
            tmp_path / "thread.db", isolation_level=None, check_same_thread=False
        )
        blocker.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.8, lambda: blocker.execute("ROLLBACK"))
        release.start()
        try:
            remote.report(trainee.execute(commands))
        finally:
            release.join()
            blocker.close()
    local = Controller(config, validation=False)
    helpers.drive(local, 1)
    assert helpers.canonical(remote.state_dict()) == helpers.canonical(local.state_dict())


class _Canned(http.server.BaseHTTPRequestHandler):
    """Answers every request with the class's status and body: a proxy or another server."""

    status = 502
    body = b"<html>Bad Gateway</html>"
    calls = 0

    def do_POST(self):  # noqa: N802 - the name http.server dispatches to
        type(self).calls += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    ("status", "retried", "match"),
    [(502, True, "HTTP 502: <html>Bad Gateway"), (500, False, "500"), (404, False, "404")],
)
def test_answers_from_something_else_than_the_service_are_reported(
    helpers, status, retried, match
):
    handler = type("Handler", (_Canned,), {"status": status, "calls": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        remote = RemoteController(url, helpers.small_config(), validation=False, retries=2,
                                  backoff=0.01)  # fmt: skip
        with pytest.raises(AutoLRSError, match=match):
            remote.start()
    finally:
        server.shutdown()
        server.server_close()
    assert handler.calls == (3 if retried else 1)


def test_the_factory_stands_in_for_the_controller_class(service, helpers):
    factory = RemoteControllerFactory(service.url, retries=3)
    config = helpers.small_config(seed=9)
    remote = factory(config, validation=True)
    trainee = helpers.Trainee()
    helpers.drive(remote, 3, trainee)

    again = factory.from_state_dict(remote.state_dict())
    assert again.job_id == remote.job_id
    helpers.drive(again, 2, trainee)
    local = Controller(config, validation=True)
    helpers.drive(local, 5)
    assert helpers.canonical(again.state_dict()) == helpers.canonical(local.state_dict())


def test_a_state_naming_no_server_needs_a_url(helpers):
    state = Controller(helpers.small_config(), validation=False).state_dict()
    with pytest.raises(ConfigError, match="url="):
        RemoteController.from_state_dict(state)
    with pytest.raises(ConfigError, match="must be a dict"):
        RemoteController.from_state_dict([])


def test_attaching_to_an_unknown_job_is_a_protocol_error(service):
    with pytest.raises(ProtocolError, match="no job with id 'absent'"):
        RemoteController.attach(service.url, "absent")


def test_repr_names_the_server_job_and_seq(service, helpers):
    remote = RemoteController(service.url, helpers.small_config(), validation=False, job_id="r1")
    assert repr(remote) == f"RemoteController(url='{service.url}', job_id='r1', seq=None)"
