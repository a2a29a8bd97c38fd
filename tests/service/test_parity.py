"""A job driven through the server decides exactly what an in-process Controller decides."""

from __future__ import annotations

import inspect

import pytest

from autolrs.core import Controller
from autolrs.service import RemoteController
from autolrs.service.wire import decode_non_finite

# (config changes, validation): training loss only with diverging candidates; validation loss
# once τ reaches τ_max; a warmup ramp first; keep_last_trial's shortened stage commands.
SETUPS = [
    ({}, False),
    ({}, True),
    ({"warmup_steps": 6, "warmup_lr": 0.05}, True),
    ({"keep_last_trial": True, "first_candidate": "center", "choose_by": "forecast"}, False),
    # The default for a budget: search window, tolerance, restarts, a cooldown, and a budget
    # that counts the search, spent within the reports below.
    (
        {
            "total_steps": 150,
            "budget_includes_search": True,
            "cooldown_fraction": 0.3,
            "restart_on_no_progress": True,
            "search_window": 3.0,
            "larger_lr_tolerance": 0.5,
            "stop_search_when_settled": True,
        },
        True,
    ),
]


@pytest.mark.parametrize(("changes", "validation"), SETUPS)
def test_remote_job_issues_the_same_commands_and_history_as_in_process(
    service, helpers, changes, validation
):
    config = helpers.small_config(seed=7, **changes)
    local = Controller(config, validation=validation)
    remote = RemoteController(service.url, config, validation=validation)

    # Three stages' worth of reports, through stage changes and diverged candidates; with a
    # budget, exactly as many as spend it.
    reports = 13
    if config.total_steps is not None:
        probe, trainee = Controller(config, validation=validation), helpers.Trainee()
        commands, reports = probe.start(), 0
        while not probe.finished:
            commands = probe.report(trainee.execute(commands))
            reports += 1
    expected = helpers.drive(local, reports)
    got = helpers.drive(remote, reports)
    assert local.finished == (config.total_steps is not None)

    assert got == expected
    assert helpers.canonical(remote.state_dict()) == helpers.canonical(local.state_dict())
    history = helpers.canonical({"h": [s.to_dict() for s in remote.history]})
    assert history == helpers.canonical({"h": [s.to_dict() for s in local.history]})
    for name in ("started", "phase", "stage_index", "update_steps", "search_steps",
                 "evaluations", "budget_used", "finished", "metric", "validation",
                 "config"):  # fmt: skip
        assert getattr(remote, name) == getattr(local, name), name
    assert remote.pending == local.pending
    assert remote.last_reply == local.last_reply
    assert remote.schedule() == local.schedule()

    # The server's own copy agrees too, to the bit.
    status, _, state = helpers.call(service.url, "GET", f"/jobs/{remote.job_id}/state")
    assert status == 200
    assert helpers.canonical(decode_non_finite(state)) == helpers.canonical(local.state_dict())


def test_a_diverged_candidate_crosses_the_wire_as_nan(service, helpers):
    config = helpers.small_config(seed=7)
    remote = RemoteController(service.url, config, validation=False)
    helpers.drive(remote, 4)

    failed = [c for s in remote.history for c in s.candidates if c.reason == "non_finite"]
    assert failed, "the simulated run should diverge at an LR above 0.6"
    assert all(c.lr > helpers.Trainee.DIVERGING_LR for c in failed)
    assert failed[0].losses[-1] != failed[0].losses[-1]  # NaN, not a string or None


def test_before_start_the_remote_controller_reads_like_a_fresh_one(service, helpers):
    config = helpers.small_config()
    local = Controller(config, validation=True)
    remote = RemoteController(service.url, config, validation=True)

    for name in ("started", "pending", "last_reply", "phase", "stage_index", "update_steps",
                 "search_steps", "evaluations", "history", "metric"):  # fmt: skip
        assert getattr(remote, name) == getattr(local, name), name
    assert remote.schedule() == local.schedule() == []
    assert helpers.canonical(remote.state_dict()) == helpers.canonical(local.state_dict())


def test_remote_controller_offers_every_public_name_of_controller():
    for name, member in inspect.getmembers(Controller):
        if name.startswith("_"):
            continue
        assert hasattr(RemoteController, name), f"RemoteController lacks {name}"
        remote_member = inspect.getattr_static(RemoteController, name)
        local_member = inspect.getattr_static(Controller, name)
        assert type(remote_member) is type(local_member), name
        if callable(member) and not isinstance(local_member, property):
            local_params = list(inspect.signature(member).parameters)
            remote_params = list(inspect.signature(getattr(RemoteController, name)).parameters)
            assert remote_params[: len(local_params)] == local_params, name


def test_state_dict_of_a_remote_job_loads_into_an_in_process_controller(service, helpers):
    config = helpers.small_config(seed=3)
    remote = RemoteController(service.url, config, validation=False)
    helpers.drive(remote, 5)

    moved = Controller.from_state_dict(remote.state_dict())
    local = Controller(config, validation=False)
    trainee = helpers.Trainee()
    helpers.drive(local, 5, trainee)
    assert helpers.canonical(moved.state_dict()) == helpers.canonical(local.state_dict())
    report = trainee.execute(local.last_reply)
    assert moved.report(report) == local.report(report)
