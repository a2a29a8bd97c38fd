"""Clients that misbehave: two clients driving one job, and clients that are slow.

Two clients of one job: a report is keyed by its job and ``seq``, so each seq is decided once.
The same report again gets the stored reply; a different report for an answered seq is a 409
``report_conflict``, and one for a seq answered before that a 409 ``seq_mismatch``; neither
changes the job. Slow clients: a client idle between requests, or one whose body arrives a few
bytes at a time, holds no worker thread, so other jobs are answered meanwhile.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from autolrs import ProtocolError
from autolrs.core import Controller, Report
from autolrs.core.commands import command_from_dict
from autolrs.service import RemoteController
from autolrs.service.wire import decode_non_finite

#: Longest answer a fast client may wait for while slow clients are connected, seconds. The
#: slow clients take three seconds and more: an answer held up behind them would show.
PROMPT = 1.5


def create_job(helpers, url: str, seed: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    job_id = uuid.uuid4().hex
    body = {"config": helpers.small_config(seed=seed).to_dict(), "validation": False,
            "job_id": job_id}  # fmt: skip
    status, _, view = helpers.call(url, "POST", "/jobs", body)
    assert status == 201, view
    return job_id, body, view


def report_body(commands: list[dict[str, Any]], trainee) -> dict[str, Any]:
    report = trainee.execute([command_from_dict(c) for c in commands])
    return {"seq": report.seq, "losses": list(report.losses), "val_losses": []}


def local_replies(helpers, seed: int, bodies: list[dict[str, Any]]) -> Controller:
    """A local controller fed ``bodies`` (the reports the job accepted), for comparison."""
    controller = Controller(helpers.small_config(seed=seed), validation=False)
    controller.start()
    for body in bodies:
        controller.report(Report(seq=body["seq"], losses=body["losses"]))
    return controller


def job_state(helpers, url: str, job_id: str) -> dict[str, Any]:
    """The job's controller state, non-finite losses read back as floats."""
    status, _, state = helpers.call(url, "GET", f"/jobs/{job_id}/state")
    assert status == 200, state
    return decode_non_finite(state)


# -- two clients, one job --------------------------------------------------------------------


def test_two_clients_sending_the_same_reports_get_one_decision_per_seq(service, helpers):
    job_id, body, view = create_job(helpers, service.url, seed=40)
    status, _, second_view = helpers.call(service.url, "POST", "/jobs", body)  # client B
    assert status == 200 and second_view["commands"] == view["commands"]
    path = f"/jobs/{job_id}/reports"
    trainees = {"A": helpers.Trainee(), "B": helpers.Trainee()}  # identical, deterministic
    commands = {"A": view["commands"], "B": second_view["commands"]}
    accepted = []

    for round_ in range(6):
        order = ["A", "B"] if round_ % 2 == 0 else ["B", "A"]  # each goes first in turn
        answers = {}
        for client in order:
            report = report_body(commands[client], trainees[client])
            answers[client] = helpers.call(service.url, "POST", path, report)
            commands[client] = answers[client][2]["commands"]
        first, second = (answers[client] for client in order)
        assert first[0] == second[0] == 200
        assert (first[1]["autolrs-replayed"], second[1]["autolrs-replayed"]) == ("false", "true")
        assert first[2] == second[2]
        accepted.append(report)

    local = local_replies(helpers, 40, accepted)
    assert helpers.canonical(job_state(helpers, service.url, job_id)) == helpers.canonical(
        local.state_dict()
    )
    # A client that fell behind is told which seq the job waits for; nothing changes.
    stale = helpers.call(service.url, "POST", path, accepted[0])
    helpers.assert_error(stale, 409, "seq_mismatch")
    assert stale[2]["error"]["expected_seq"] == local.pending.seq
    assert job_state(helpers, service.url, job_id)["seq"] == local.state_dict()["seq"]


def test_a_second_client_with_other_losses_gets_a_conflict_and_changes_nothing(service, helpers):
    job_id, _, view = create_job(helpers, service.url, seed=41)
    path = f"/jobs/{job_id}/reports"
    first = report_body(view["commands"], helpers.Trainee(offset=0.0))
    other = report_body(view["commands"], helpers.Trainee(offset=0.3))
    assert first["losses"] != other["losses"]

    assert helpers.call(service.url, "POST", path, first)[0] == 200
    message = helpers.assert_error(
        helpers.call(service.url, "POST", path, other), 409, "report_conflict"
    )
    assert "seq=0" in message and "different losses" in message

    expected = local_replies(helpers, 41, [first]).state_dict()
    assert helpers.canonical(job_state(helpers, service.url, job_id)) == helpers.canonical(
        expected
    )


def test_racing_reports_for_one_seq_one_is_decided_the_other_is_a_conflict(service, helpers):
    for seed in range(42, 48):  # the race goes either way; several jobs see both outcomes
        job_id, _, view = create_job(helpers, service.url, seed=seed)
        bodies = [
            report_body(view["commands"], helpers.Trainee(offset=offset)) for offset in (0.0, 0.3)
        ]
        barrier = threading.Barrier(2)

        def send(body, barrier=barrier, job_id=job_id):
            barrier.wait(timeout=60)
            return helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", body)

        with ThreadPoolExecutor(max_workers=2) as pool:
            answers = list(pool.map(send, bodies))

        assert sorted(status for status, _, _ in answers) == [200, 409]
        winner = next(i for i, (status, _, _) in enumerate(answers) if status == 200)
        helpers.assert_error(answers[1 - winner], 409, "report_conflict")
        expected = local_replies(helpers, seed, [bodies[winner]])
        assert answers[winner][2]["commands"] == [c.to_dict() for c in expected.last_reply]
        assert helpers.canonical(job_state(helpers, service.url, job_id)) == helpers.canonical(
            expected.state_dict()
        )


def test_two_remote_controllers_on_one_job_replay_or_refuse(service, helpers):
    config = helpers.small_config(seed=48)
    first = RemoteController(service.url, config, validation=False)
    commands = first.start()
    second = RemoteController.attach(service.url, first.job_id)
    trainee = helpers.Trainee()
    report = trainee.execute(commands)

    answered = first.report(report)
    assert second.report(report) == answered  # the same report: the stored reply
    assert second.pending == first.pending

    diverging = helpers.Trainee(offset=0.3).execute(commands)
    with pytest.raises(ProtocolError, match="report_conflict"):
        second.report(diverging)
    assert second.pending == first.pending  # the refused client's view is unchanged
    again = trainee.execute(answered)
    first.report(again)
    with pytest.raises(ProtocolError, match="seq_mismatch"):
        second.report(report)  # seq 0 now lies two answers back
    assert helpers.canonical(first.state_dict()) == helpers.canonical(
        local_replies(
            helpers,
            48,
            [{"seq": r.seq, "losses": list(r.losses)} for r in (report, again)],
        ).state_dict()
    )


# -- slow clients ----------------------------------------------------------------------------


class FastClient:
    """Drives a job of its own as fast as it can, timing every answer, until told to stop."""

    def __init__(self, helpers, url: str, seed: int) -> None:
        self.remote = RemoteController(url, helpers.small_config(seed=seed), validation=False)
        self.trainee = helpers.Trainee(offset=0.05)
        self.latencies: list[float] = []
        self.finished_at = 0.0
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            commands = self.remote.start()
            while not self.stop.is_set():
                report = self.trainee.execute(commands)
                began = time.monotonic()
                commands = self.remote.report(report)
                self.latencies.append(time.monotonic() - began)
            self.finished_at = time.monotonic()
        except BaseException as error:  # reported by the test thread
            self.error = error

    def __enter__(self) -> FastClient:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.remote.close()

    def check(self, helpers, reports_at_least: int) -> None:
        assert self.error is None, self.error
        assert len(self.latencies) >= reports_at_least, self.latencies
        assert max(self.latencies) < PROMPT, max(self.latencies)
        local = Controller(self.remote.config, validation=False)
        helpers.drive(local, len(self.latencies), helpers.Trainee(offset=0.05))
        assert helpers.canonical(self.remote.state_dict()) == helpers.canonical(local.state_dict())


class TricklingRequest:
    """An HTTP request on a raw socket whose body is sent a few bytes at a time."""

    def __init__(self, url: str, method: str, path: str, body: Any) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.body = json.dumps(body).encode()
        self.sent = 0
        self.sock = socket.create_connection((host, int(port)), timeout=60)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def send(self, count: int) -> None:
        self.sock.sendall(self.body[self.sent : self.sent + count])
        self.sent += count

    def answer(self) -> tuple[int, Any]:
        assert self.sent >= len(self.body)
        response = http.client.HTTPResponse(self.sock)
        response.begin()
        data = json.loads(response.read())
        self.sock.close()
        return response.status, data


def test_a_client_pausing_between_requests_does_not_hold_up_other_jobs(service, helpers):
    config = helpers.small_config(seed=50)
    slow = RemoteController(service.url, config, validation=False)
    trainee = helpers.Trainee()
    replies = [[c.to_dict() for c in slow.start()]]

    with FastClient(helpers, service.url, seed=51) as fast:
        for _ in range(3):
            time.sleep(1.2)  # idle on its kept-alive connection, below the server's 5 s
            replies.append([c.to_dict() for c in slow.report(trainee.execute(slow.last_reply))])
        answered_while_slow_paused = len(fast.latencies)
    slow.close()

    fast.check(helpers, reports_at_least=10)
    assert answered_while_slow_paused >= 10
    assert replies == helpers.drive(Controller(config, validation=False), 3)


def test_a_body_trickling_in_does_not_hold_up_other_jobs_and_is_answered_right(service, helpers):
    job_id, _, view = create_job(helpers, service.url, seed=52)
    body = report_body(view["commands"], helpers.Trainee())
    slow = TricklingRequest(service.url, "POST", f"/jobs/{job_id}/reports", body)
    pieces = 12
    piece = -(-len(slow.body) // pieces)

    with FastClient(helpers, service.url, seed=53) as fast:
        for _ in range(pieces):
            time.sleep(0.25)  # three seconds for the whole body
            slow.send(piece)
        answered_before_the_body_was_complete = len(fast.latencies)
    status, reply = slow.answer()

    fast.check(helpers, reports_at_least=10)
    assert answered_before_the_body_was_complete >= 10
    assert status == 200
    expected = local_replies(helpers, 52, [body])
    assert reply["commands"] == [c.to_dict() for c in expected.last_reply]
    assert helpers.canonical(job_state(helpers, service.url, job_id)) == helpers.canonical(
        expected.state_dict()
    )


def test_more_trickling_bodies_than_worker_threads_hold_up_nothing(service, helpers):
    # The server's worker threads (40 in AnyIO's default pool) run the endpoints; bodies are
    # read before, by the event loop. 48 unfinished bodies must not take the threads.
    creates = []
    for index in range(48):
        body = {"config": helpers.small_config(seed=60 + index).to_dict(), "validation": False,
                "job_id": uuid.uuid4().hex}  # fmt: skip
        creates.append(TricklingRequest(service.url, "POST", "/jobs", body))
        creates[-1].send(len(creates[-1].body) // 2)

    with FastClient(helpers, service.url, seed=54) as fast:
        time.sleep(2.0)
        answered_while_bodies_hang = len(fast.latencies)
    for request in creates:
        request.send(len(request.body))
    answers = [request.answer() for request in creates]

    fast.check(helpers, reports_at_least=10)
    assert answered_while_bodies_hang >= 10
    for index, (status, view) in enumerate(answers):
        assert status == 201, view
        first = Controller(helpers.small_config(seed=60 + index), validation=False).start()
        assert view["commands"] == [c.to_dict() for c in first]
