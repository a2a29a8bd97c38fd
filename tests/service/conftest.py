"""Shared pieces of the service tests: real servers on loopback, a simulated model, a driver.

Servers are real: a ``python -m autolrs.service`` subprocess (shared by the session, or started
by a test that kills it), or uvicorn in a thread of this process where a test needs to reach
into the server (a small body cap, a failing job manager).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs the service extra")
pytest.importorskip("uvicorn", reason="the server needs the service extra")

import uvicorn  # noqa: E402

from autolrs import AutoLRSConfig  # noqa: E402
from autolrs.core import Report, Restore, Snapshot, Train  # noqa: E402

READY_TIMEOUT = 60.0  # seconds; importing the core and FastAPI takes a few on a busy machine


# -- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """``python -m autolrs.service`` on 127.0.0.1, its output in a log file."""

    def __init__(self, db: Path, port: int | None = None, *args: str, env: dict | None = None):
        self.db = db
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.env = env
        self.log = db.with_suffix(".log")
        self.process: subprocess.Popen | None = None

    def start(self, token: str | None = None) -> ServerProcess:
        env = {**os.environ, **(self.env or {})}
        command = [sys.executable, "-m", "autolrs.service", "--db", str(self.db)]
        command += ["--port", str(self.port), *self.args]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=log, env=env)
        wait_ready(self.url, self.process, self.log, token=token)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_ready(url: str, process=None, log: Path | None = None, token: str | None = None) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            text = log.read_text() if log is not None else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{text}")
        try:
            status, _, _ = call(url, "GET", "/health", token=token, timeout=2)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server at {url} not ready after {READY_TIMEOUT} s")


@contextlib.contextmanager
def thread_server(app, keep_alive: float = 5.0) -> Iterator[str]:
    """Serve ``app`` from a thread of this process; yield its URL.

    ``keep_alive``: seconds an idle connection stays open (uvicorn's default is 5).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_config=None,
        access_log=False,
        timeout_keep_alive=keep_alive,
    )
    # uvicorn's own socket setup: with a plain socket made here, every answer waited ~40 ms.
    sock = config.bind_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not server.started:
            assert time.monotonic() < deadline, "thread server did not start"
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="session")
def service(tmp_path_factory) -> Iterator[ServerProcess]:
    """One server process shared by the session's tests; each test uses its own job ids."""
    server = ServerProcess(tmp_path_factory.mktemp("service") / "jobs.db").start()
    yield server
    server.stop()


@pytest.fixture
def make_thread_server(tmp_path) -> Callable[..., Any]:
    """``make_thread_server(**create_app options)`` → a context manager yielding the URL."""
    from autolrs.service.app import create_app

    def make(keep_alive: float = 5.0, **options):
        return thread_server(create_app(tmp_path / "thread.db", **options), keep_alive)

    return make


# -- raw HTTP --------------------------------------------------------------------------------


def call(
    url: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    token: str | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], Any]:
    """One request on a fresh connection: (status, lower-cased headers, parsed JSON or text)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        payload = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json"} if payload is not None else {}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        conn.request(method, path, body=payload, headers=sent)
        response = conn.getresponse()
        text = response.read().decode()
        received = {key.lower(): value for key, value in response.getheaders()}
    finally:
        conn.close()
    try:
        return response.status, received, json.loads(text, parse_constant=_strict_json_only)
    except json.JSONDecodeError:
        return response.status, received, text


def _strict_json_only(token: str) -> None:
    raise AssertionError(f"the server sent {token}, which strict JSON parsers refuse")


def assert_error(response: tuple[int, dict, Any], status: int, code: str) -> str:
    """Check the error shape, status and code; return the message."""
    got_status, headers, body = response
    assert got_status == status, body
    assert headers["content-type"] == "application/json"
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


# -- the simulated training run ---------------------------------------------------------------


def small_config(seed: int = 0, **changes: Any) -> AutoLRSConfig:
    """Stages of 20 steps doubling to 40, trials of 5 and 10 steps, 3 candidates: fast."""
    base: dict[str, Any] = dict(
        min_lr=1e-3,
        max_lr=1.0,
        stage_steps=20,
        max_stage_steps=40,
        trial_fraction=0.25,
        num_candidates=3,
        val_every=2,
        gp_fit_hyperparameters=False,
        seed=seed,
    )
    base.update(changes)
    return AutoLRSConfig(**base)


class Trainee:
    """A model whose whole state is one number, ``progress``, that each step advances.

    The gain per step peaks at an LR of 0.2 and the loss decays with progress; above an LR of
    0.6 the third step of a command diverges (NaN), which aborts the command early.
    """

    DIVERGING_LR = 0.6

    def __init__(self, offset: float = 0.0) -> None:
        self.progress = 0.0
        self.saved: float | None = None
        self.offset = offset  # a different offset per job gives every job its own curves

    def loss(self) -> float:
        return 0.2 + self.offset + 2.0 * math.exp(-self.progress / 3.0)

    def execute(self, commands: list) -> Report:
        for command in commands:
            if isinstance(command, Snapshot):
                self.saved = self.progress
            elif isinstance(command, Restore):
                assert self.saved is not None
                self.progress = self.saved
        train = commands[-1]
        assert isinstance(train, Train)
        losses: list[float] = []
        val_losses: list[float] = []
        for step in range(train.steps):
            lr = train.lr_at(step)
            self.progress += lr * math.exp(-lr / 0.2)
            loss = math.nan if lr > self.DIVERGING_LR and step >= 2 else self.loss()
            losses.append(loss)
            if train.should_abort(loss):
                break
            if train.evaluates_after(step):
                val_losses.append(1.1 * loss)
        return Report(seq=train.seq, losses=losses, val_losses=val_losses)


def drive(controller: Any, reports: int, trainee: Trainee | None = None) -> list[list[dict]]:
    """Start ``controller`` (if needed) and feed it ``reports`` reports; return every reply.

    Works on a Controller and a RemoteController alike: that is the point.
    """
    trainee = trainee if trainee is not None else Trainee()
    commands = controller.last_reply if controller.started else controller.start()
    replies = [[c.to_dict() for c in commands]]
    for _ in range(reports):
        commands = controller.report(trainee.execute(commands))
        replies.append([c.to_dict() for c in commands])
    return replies


def canonical(state: dict) -> str:
    """A controller state as comparable text (NaN equals NaN), the client's extra key dropped."""
    return json.dumps({k: v for k, v in state.items() if k != "service"}, sort_keys=True)


@pytest.fixture
def helpers():
    """The module-level helpers, for test modules (conftest cannot be imported directly)."""
    return sys.modules[__name__]
