"""Every error the server answers with: its status, its code, and a message that says why."""

from __future__ import annotations

import http.client
import json
import math
import socket
import sqlite3
import uuid

import pytest

from autolrs.core import Controller
from autolrs.core.commands import command_from_dict
from autolrs.service.jobs import JobManager
from autolrs.service.wire import ERROR_STATUS


def create(helpers, url, **changes):
    job_id = uuid.uuid4().hex
    config = helpers.small_config(**changes).to_dict()
    status, _, view = helpers.call(
        url, "POST", "/jobs", {"config": config, "validation": False, "job_id": job_id}
    )
    assert status == 201, view
    return job_id, view


def test_every_error_code_has_a_4xx_or_5xx_status():
    assert all(400 <= status < 600 for status in ERROR_STATUS.values())


# -- 400 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b'{"config": {', "Expecting"),
        (b'{"job_id": "\xc3\x28"}', "could not be read"),  # not UTF-8
        (b'{"seq": ' + b"9" * 5000 + b"}", "could not be read"),  # beyond Python's digit limit
        (b"[" * 100_000, "could not be read"),  # nesting deeper than the parser's stack
    ],
)
def test_a_body_that_is_not_json_is_malformed(service, helpers, raw, why):
    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", raw=raw), 400, "malformed_json"
    )
    assert why in message


# -- 404 / 405 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/jobs/no-such-job", None),
        ("GET", "/jobs/no-such-job/state", None),
        ("DELETE", "/jobs/no-such-job", None),
        ("POST", "/jobs/no-such-job/reports", {"seq": 0, "losses": [1.0]}),
    ],
)
def test_an_unknown_job_is_not_found(service, helpers, method, path, body):
    message = helpers.assert_error(
        helpers.call(service.url, method, path, body), 404, "job_not_found"
    )
    assert "'no-such-job'" in message


def test_an_unknown_endpoint_is_not_found_and_a_wrong_method_not_allowed(service, helpers):
    message = helpers.assert_error(helpers.call(service.url, "GET", "/nope"), 404, "not_found")
    assert "GET /nope" in message
    message = helpers.assert_error(
        helpers.call(service.url, "PATCH", "/jobs/x"), 405, "method_not_allowed"
    )
    assert "PATCH" in message


@pytest.mark.parametrize("method", ["GET", "DELETE"])
@pytest.mark.parametrize("path", ["/jobs/x/", "/jobs/x%2F", "/jobs/x/state/", "/jobs/"])
def test_a_trailing_slash_is_not_found_not_redirected(service, helpers, method, path):
    # With a job "x" existing, "/jobs/x/" must not be redirected to it.
    helpers.call(
        service.url,
        "POST",
        "/jobs",
        {"config": helpers.small_config().to_dict(), "validation": False, "job_id": "x"},
    )
    status, headers, _ = helpers.call(service.url, method, path)
    assert "location" not in headers
    assert status in (404, 405), status


def test_a_deleted_job_is_gone(service, helpers):
    job_id, _ = create(helpers, service.url)
    status, _, body = helpers.call(service.url, "DELETE", f"/jobs/{job_id}")
    assert status == 200 and body == {"job_id": job_id, "deleted": True}
    helpers.assert_error(helpers.call(service.url, "GET", f"/jobs/{job_id}"), 404, "job_not_found")
    helpers.assert_error(
        helpers.call(service.url, "DELETE", f"/jobs/{job_id}"), 404, "job_not_found"
    )


# -- 413 / 415 -------------------------------------------------------------------------------


def test_a_declared_body_over_the_cap_is_refused_unread(make_thread_server):
    with make_thread_server(max_body_bytes=1024) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 5000000\r\n\r\n{"
            )
            answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code":"body_too_large"' in answer and b"at most 1024 bytes" in answer


def test_a_chunked_body_growing_over_the_cap_is_refused(make_thread_server):
    with make_thread_server(max_body_bytes=1024) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(
                b"POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"[" + b"1," * 299 + b"1]"
            for _ in range(4):
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            answer = _read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413")
    assert b'"code":"body_too_large"' in answer


def test_a_body_within_the_cap_passes(make_thread_server, helpers):
    with make_thread_server(max_body_bytes=4096) as url:
        body = {"config": helpers.small_config().to_dict(), "validation": False}
        status, _, _ = helpers.call(url, "POST", "/jobs", body)
    assert status == 201


def test_a_body_that_is_not_json_typed_is_refused(service, helpers):
    message = helpers.assert_error(
        helpers.call(
            service.url, "POST", "/jobs", raw=b"config=1", headers={"Content-Type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    assert "text/plain" in message


def test_a_body_without_content_type_is_read_as_json(service, helpers):
    body = {"config": helpers.small_config().to_dict(), "validation": False}
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=60)
    try:
        conn.request("POST", "/jobs", body=json.dumps(body).encode())  # no Content-Type
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 201


# -- 409 / 422 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"config": {"min_lr": 0.1, "max_lr": 1.0}}, "validation"),  # missing field
        ({"config": {"min_lr": 0.1, "max_lr": 1.0}, "validation": "yes"}, "validation"),
        ({"config": [], "validation": False}, "config"),
        ({"config": {}, "validation": False, "job_id": "has space"}, "job_id"),
        ({"config": {}, "validation": False, "extra": 1}, "extra"),
        ([1, 2, 3], "body"),
    ],
)
def test_a_create_of_the_wrong_shape_is_an_invalid_request(service, helpers, body, named):
    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", body), 422, "invalid_request"
    )
    assert named in message


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"min_lr": 1.0, "max_lr": 0.1}, "min_lr"),
        ({"min_lr": 0.1, "max_lr": 1.0, "num_candidates": 1}, "num_candidates"),
        ({"min_lr": 0.1, "max_lr": 1.0, "nonsense": 3}, "nonsense"),
        ({"min_lr": 0.1, "max_lr": 1.0, "stage_steps": 2**63}, "stage_steps"),
        ({"min_lr": math.inf, "max_lr": 1.0}, "min_lr"),
    ],
)
def test_a_config_the_core_refuses_is_an_invalid_config(service, helpers, config, named):
    raw = (
        ('{"config": {' + ", ".join(f'"{k}": {_number(v)}' for k, v in config.items()) + "}, ")
        + '"validation": false}'
    ).encode()
    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", raw=raw), 422, "invalid_config"
    )
    assert named in message


@pytest.mark.parametrize(
    ("report", "named"),
    [
        ({"seq": "0", "losses": [1.0]}, "seq"),
        ({"seq": 0.0, "losses": [1.0]}, "seq"),
        ({"seq": True, "losses": [1.0]}, "seq"),
        ({"seq": -1, "losses": [1.0]}, "seq"),
        ({"seq": 0}, "losses"),
        ({"seq": 0, "losses": ["1.5"]}, "losses[0]"),
        ({"seq": 0, "losses": [1.0], "val_loss": []}, "val_loss"),
    ],
)
def test_a_report_of_the_wrong_shape_is_an_invalid_request(service, helpers, report, named):
    job_id, _ = create(helpers, service.url)
    message = helpers.assert_error(
        helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", report),
        422,
        "invalid_request",
    )
    assert named in message


@pytest.mark.parametrize("count", [0, 6])
def test_a_report_the_controller_refuses_is_an_invalid_report(service, helpers, count):
    job_id, _ = create(helpers, service.url)  # pending: a trial of 5 steps
    message = helpers.assert_error(
        helpers.call(
            service.url, "POST", f"/jobs/{job_id}/reports", {"seq": 0, "losses": [1.0] * count}
        ),
        422,
        "invalid_report",
    )
    assert "between 1 and 5 losses" in message


def test_a_report_stopped_early_without_reason_is_an_invalid_report(service, helpers):
    job_id, _ = create(helpers, service.url)
    message = helpers.assert_error(
        helpers.call(
            service.url, "POST", f"/jobs/{job_id}/reports", {"seq": 0, "losses": [1.0, 0.9]}
        ),
        422,
        "invalid_report",
    )
    assert "no reason to stop early" in message


@pytest.mark.parametrize("spelling", ["null", '"NaN"', "NaN", '"Infinity"', "1e400"])
def test_a_non_finite_warmup_loss_in_any_spelling_is_a_divergence(service, helpers, spelling):
    job_id, view = create(helpers, service.url, warmup_steps=4, warmup_lr=0.05)
    assert view["commands"][-1]["phase"] == "warmup"
    raw = ('{"seq": 0, "losses": [1.0, ' + spelling + "]}").encode()
    message = helpers.assert_error(
        helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", raw=raw), 422, "diverged"
    )
    assert "warmup" in message
    # The job did not move: the same report is refused the same way.
    helpers.assert_error(
        helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", raw=raw), 422, "diverged"
    )


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ({"version": 1}, "lacks the field"),
        ({"version": 999}, "version 999"),
        ({}, "version None"),
    ],
)
def test_a_state_the_controller_cannot_load_is_an_invalid_state(service, helpers, state, why):
    message = helpers.assert_error(
        helpers.call(service.url, "PUT", f"/jobs/{uuid.uuid4().hex}/state", state),
        422,
        "invalid_state",
    )
    assert why in message


def test_a_state_never_started_or_under_a_bad_id_is_refused(service, helpers):
    fresh = Controller(helpers.small_config(), validation=False).state_dict()
    message = helpers.assert_error(
        helpers.call(service.url, "PUT", f"/jobs/{uuid.uuid4().hex}/state", fresh),
        422,
        "invalid_state",
    )
    assert "never started" in message
    started = Controller(helpers.small_config(), validation=False)
    started.start()
    message = helpers.assert_error(
        helpers.call(service.url, "PUT", "/jobs/bad%20id/state", started.state_dict()),
        422,
        "invalid_request",
    )
    assert "'bad id'" in message


def test_a_huge_bad_value_is_quoted_in_a_bounded_message(service, helpers):
    body = {"config": {"min_lr": 0.1, "max_lr": 1.0, "seed": "x" * 100_000}, "validation": False}
    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", body), 422, "invalid_config"
    )
    assert len(message) <= 2000 and message.endswith("(message cut)")


# -- 5xx -------------------------------------------------------------------------------------


def test_an_unexpected_failure_is_an_internal_error_and_the_server_goes_on(
    make_thread_server, helpers, monkeypatch
):
    def broken(self, job_id):
        raise RuntimeError("a bug")

    monkeypatch.setattr(JobManager, "view", broken)
    with make_thread_server() as url:
        job_id, _ = create(helpers, url)
        message = helpers.assert_error(
            helpers.call(url, "GET", f"/jobs/{job_id}"), 500, "internal_error"
        )
        assert "RuntimeError" in message and "a bug" not in message  # no internals leak
        assert helpers.call(url, "GET", f"/jobs/{job_id}/state")[0] == 200


def test_a_locked_database_is_a_retryable_503_and_the_decision_is_not_lost(
    make_thread_server, helpers, tmp_path
):
    with make_thread_server(busy_timeout=0.2) as url:
        job_id, view = create(helpers, url)
        report = helpers.Trainee().execute([command_from_dict(c) for c in view["commands"]])
        body = {"seq": report.seq, "losses": list(report.losses)}
        blocker = sqlite3.connect(tmp_path / "thread.db", isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        try:
            message = helpers.assert_error(
                helpers.call(url, "POST", f"/jobs/{job_id}/reports", body),
                503,
                "storage_unavailable",
            )
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert "retry" in message
        status, headers, reply = helpers.call(url, "POST", f"/jobs/{job_id}/reports", body)
    assert status == 200 and headers["autolrs-replayed"] == "false"
    assert reply["state"]["seq"] == 1


def _number(value: float) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "1e400"  # overflows to infinity when parsed
    return str(value)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
