"""Retried requests get the same answer; out-of-order ones are refused with the expected seq."""

from __future__ import annotations

import uuid

import pytest

from autolrs import ProtocolError
from autolrs.core import Controller
from autolrs.core.commands import command_from_dict
from autolrs.service import RemoteController


def new_job(helpers, url, job_id=None, seed=0, validation=False):
    job_id = job_id or uuid.uuid4().hex
    body = {"config": helpers.small_config(seed=seed).to_dict(), "validation": validation,
            "job_id": job_id}  # fmt: skip
    status, _, view = helpers.call(url, "POST", "/jobs", body)
    assert status == 201, view
    return job_id, body, view


def report_body(helpers, commands, trainee):
    report = trainee.execute([command_from_dict(c) for c in commands])
    return {
        "seq": report.seq,
        "losses": list(report.losses),
        "val_losses": list(report.val_losses),
    }


def test_a_replayed_report_gets_the_identical_reply_without_a_new_decision(service, helpers):
    job_id, _, view = new_job(helpers, service.url)
    body = report_body(helpers, view["commands"], helpers.Trainee())
    path = f"/jobs/{job_id}/reports"

    first = helpers.call(service.url, "POST", path, body)
    again = [helpers.call(service.url, "POST", path, body) for _ in range(3)]

    assert first[0] == 200 and first[1]["autolrs-replayed"] == "false"
    for status, headers, reply in again:
        assert status == 200 and headers["autolrs-replayed"] == "true"
        assert reply == first[2]
    _, _, state = helpers.call(service.url, "GET", f"/jobs/{job_id}/state")
    assert state["seq"] == first[2]["state"]["seq"]
    assert state["search_steps"] == len(body["losses"])  # counted once


def test_a_replayed_reply_is_identical_and_strict_json_even_with_nan(service, helpers):
    job_id, _, view = new_job(helpers, service.url)
    steps = view["commands"][-1]["steps"]
    # Python's json writes NaN as a bare token; the server accepts it on purpose.
    raw = ('{"seq": 0, "losses": [' + "1.0, " * (steps - 1) + "NaN]}").encode()

    replies = [
        helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", raw=raw) for _ in range(2)
    ]

    assert [status for status, _, _ in replies] == [200, 200]
    assert replies[0][2] == replies[1][2]
    assert replies[0][2]["history"][0]["candidates"][0]["losses"][-1] == "NaN"


def test_a_report_for_an_answered_seq_with_other_losses_is_a_conflict(service, helpers):
    job_id, _, view = new_job(helpers, service.url)
    body = report_body(helpers, view["commands"], helpers.Trainee())
    path = f"/jobs/{job_id}/reports"
    assert helpers.call(service.url, "POST", path, body)[0] == 200

    changed = {**body, "losses": [x + 1.0 for x in body["losses"]]}
    message = helpers.assert_error(
        helpers.call(service.url, "POST", path, changed), 409, "report_conflict"
    )
    assert "seq=0" in message and "different losses" in message


@pytest.mark.parametrize("offset", [-1, 1, 5])
def test_a_stale_or_future_seq_is_refused_naming_the_expected_seq(service, helpers, offset):
    job_id, _, view = new_job(helpers, service.url)
    trainee = helpers.Trainee()
    path = f"/jobs/{job_id}/reports"
    for _ in range(2):  # pending seq is now 2; seq 1 was the last answered
        body = report_body(helpers, view["commands"], trainee)
        status, _, view = helpers.call(service.url, "POST", path, body)
        assert status == 200
    wrong = 2 + offset if offset != -1 else 0  # 0: answered long ago (1 would be a replay)
    status, headers, error = helpers.call(
        service.url, "POST", path, {"seq": wrong, "losses": [1.0] * 5}
    )
    helpers.assert_error((status, headers, error), 409, "seq_mismatch")
    assert error["error"]["expected_seq"] == 2
    assert f"seq={wrong}" in error["error"]["message"]
    assert ("already answered" if wrong < 2 else "never issued") in error["error"]["message"]


def test_creating_a_job_again_with_the_same_body_returns_it(service, helpers):
    job_id, body, view = new_job(helpers, service.url)

    status, _, again = helpers.call(service.url, "POST", "/jobs", body)

    assert status == 200
    assert again.pop("created") is False and view.pop("created") is True
    assert again == view


def test_creating_a_job_again_with_another_config_is_a_conflict_naming_the_field(service, helpers):
    job_id, body, _ = new_job(helpers, service.url)
    other = {**body, "config": {**body["config"], "num_candidates": 4}}

    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", other), 409, "job_exists"
    )
    assert "num_candidates" in message
    message = helpers.assert_error(
        helpers.call(service.url, "POST", "/jobs", {**body, "validation": True}), 409, "job_exists"
    )
    assert "validation" in message


def test_an_equal_config_written_differently_is_the_same_job(service, helpers):
    job_id, body, _ = new_job(helpers, service.url)
    # min_lr given as an integer-valued float elsewhere, defaults spelled out or left out.
    sparse = {k: v for k, v in body["config"].items() if k in ("min_lr", "max_lr", "stage_steps",
              "max_stage_steps", "trial_fraction", "num_candidates", "val_every",
              "gp_fit_hyperparameters", "seed")}  # fmt: skip
    status, _, _ = helpers.call(service.url, "POST", "/jobs", {**body, "config": sparse})
    assert status == 200


def test_start_on_a_job_that_moved_on_refuses_and_attach_continues_it(service, helpers):
    config = helpers.small_config(seed=4)
    first = RemoteController(service.url, config, validation=False)
    trainee = helpers.Trainee()
    helpers.drive(first, 3, trainee)

    again = RemoteController(service.url, config, validation=False, job_id=first.job_id)
    with pytest.raises(ProtocolError, match="attach"):
        again.start()

    attached = RemoteController.attach(service.url, first.job_id)
    assert helpers.canonical(attached.state_dict()) == helpers.canonical(first.state_dict())
    local = Controller(config, validation=False)
    helpers.drive(local, 6, helpers.Trainee())
    helpers.drive(attached, 3, trainee)
    assert helpers.canonical(attached.state_dict()) == helpers.canonical(local.state_dict())


def test_a_retried_start_before_any_report_returns_the_first_commands(service, helpers):
    config = helpers.small_config(seed=5)
    first = RemoteController(service.url, config, validation=True)
    commands = first.start()
    again = RemoteController(service.url, config, validation=True, job_id=first.job_id)
    assert again.start() == commands


def test_putting_an_older_state_rewinds_the_job_like_a_checkpoint(service, helpers):
    config = helpers.small_config(seed=6)
    remote = RemoteController(service.url, config, validation=False)
    trainee = helpers.Trainee()
    helpers.drive(remote, 2, trainee)
    checkpoint, saved_progress = remote.state_dict(), (trainee.progress, trainee.saved)
    helpers.drive(remote, 3, trainee)  # the run goes on past the checkpoint, then crashes

    resumed = RemoteController.from_state_dict(checkpoint)
    assert resumed.job_id == remote.job_id and resumed.pending.seq == 2
    trainee.progress, trainee.saved = saved_progress
    helpers.drive(resumed, 3, trainee)

    local = Controller(config, validation=False)
    helpers.drive(local, 5, helpers.Trainee())
    assert helpers.canonical(resumed.state_dict()) == helpers.canonical(local.state_dict())


def test_putting_the_state_a_job_has_changes_nothing_and_keeps_replays(service, helpers):
    job_id, _, view = new_job(helpers, service.url)
    body = report_body(helpers, view["commands"], helpers.Trainee())
    path = f"/jobs/{job_id}/reports"
    _, _, reply = helpers.call(service.url, "POST", path, body)
    _, _, state = helpers.call(service.url, "GET", f"/jobs/{job_id}/state")

    status, _, put = helpers.call(service.url, "PUT", f"/jobs/{job_id}/state", state)

    assert status == 200 and put["created"] is False
    status, headers, replay = helpers.call(service.url, "POST", path, body)
    assert status == 200 and headers["autolrs-replayed"] == "true" and replay == reply


def test_putting_a_state_under_a_new_id_creates_the_job(service, helpers):
    config = helpers.small_config(seed=8)
    local = Controller(config, validation=False)
    trainee = helpers.Trainee()
    helpers.drive(local, 3, trainee)

    moved = RemoteController.from_state_dict(local.state_dict(), url=service.url)
    helpers.drive(moved, 2, trainee)
    reference = Controller(config, validation=False)
    helpers.drive(reference, 5, helpers.Trainee())
    assert helpers.canonical(moved.state_dict()) == helpers.canonical(reference.state_dict())
