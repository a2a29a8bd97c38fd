"""Reading a run back from its event log alone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autolrs.errors import AutoLRSError
from autolrs.reporting import read_run, stage_posterior


def test_every_logged_step_comes_back_with_its_phase_lr_and_loss(recorded_run):
    run = read_run(recorded_run.log)
    scheduler = recorded_run.scheduler
    logged = scheduler.controller.update_steps + scheduler.controller.search_steps

    assert [s.total_step for s in run.steps] == list(range(1, logged + 1))
    loop = recorded_run.executed[:logged]
    assert [s.lr for s in run.steps] == [lr for _, lr, _ in loop]  # the ramp bit for bit
    assert np.array_equal([s.loss for s in run.steps], [v for _, _, v in loop], equal_nan=True)
    # A stage training that diverged was rolled back: search, though the loop saw "stage".
    differ = [
        (s.phase, seen) for s, (seen, _, _) in zip(run.steps, loop, strict=True) if s.phase != seen
    ]
    restarted = sum(r.steps for stage in run.history for r in stage.restarts)
    assert differ == [("trial", "stage")] * restarted
    kept = [s.update_step for s in run.steps if s.phase != "trial"]
    assert kept == list(range(scheduler.controller.update_steps))


def test_the_history_and_totals_match_the_scheduler(recorded_run):
    run = read_run(recorded_run.log)
    scheduler = recorded_run.scheduler
    assert run.config == scheduler.config
    assert run.validation is True
    assert [s.to_dict() for s in run.history] == [s.to_dict() for s in scheduler.history]
    assert run.history[1].restarts, "the NaN in stage 1's training restarted it"
    assert any(c.failed for c in run.history[1].candidates)

    totals = run.totals
    assert totals.update_steps == scheduler.controller.update_steps
    assert totals.search_steps == scheduler.controller.search_steps
    assert totals.executed_steps == len(run.steps)
    assert totals.evaluations == scheduler.controller.evaluations == len(run.val_points)
    assert 0 < totals.search_seconds < totals.wall_seconds
    assert totals.resumes == 0
    assert [s.index for s in run.stages] == [s.index for s in run.history if s.chosen_lr]


def test_a_restarted_stage_counts_its_diverged_steps_as_search(recorded_run):
    run = read_run(recorded_run.log)
    stage, following = run.history[1], run.history[2]
    window = [
        s for s in run.steps if stage.start_total_step < s.total_step <= following.start_total_step
    ]
    search = [s for s in window if s.phase == "trial"]
    trials = sum(c.steps for c in stage.candidates)
    assert len(search) == trials + sum(r.steps for r in stage.restarts)
    assert [s.lr for s in search[trials:]] == [stage.restarts[0].lr] * stage.restarts[0].steps
    assert {s.lr for s in window if s.phase == "stage"} == {stage.chosen_lr}


def test_validation_points_follow_the_step_they_were_measured_after(recorded_run):
    run = read_run(recorded_run.log)
    by_step = {s.total_step: s for s in run.steps}
    assert all(point.total_step in by_step for point in run.val_points)
    assert [p.total_step for p in run.val_points] == sorted(p.total_step for p in run.val_points)


def test_a_log_holding_two_runs_is_read_as_its_last(recorded_run, tmp_path):
    lines = recorded_run.log.read_text().splitlines()
    start = json.loads(lines[0])
    report = next(json.loads(line) for line in lines if '"report"' in line)
    log = tmp_path / "twice.jsonl"
    log.write_text("\n".join([*lines, json.dumps(start), json.dumps(report)]) + "\n")
    run = read_run(log)
    assert len(run.steps) == len(report["losses"])


def test_a_resume_drops_the_steps_that_were_redone(recorded_run, tmp_path):
    events = [json.loads(line) for line in recorded_run.log.read_text().splitlines()]
    cut = next(i for i, e in enumerate(events) if e["event"] == "stage_end")
    state = recorded_run.scheduler.controller.state_dict()  # any state; only counters matter
    resume = {
        "event": "resume",
        "time": 0.5,
        "update_steps": events[cut]["update_steps"],
        "search_steps": events[cut]["search_steps"],
        "evaluations": events[cut]["evaluations"],
        "controller": state,
    }
    # The first two stages, more steps that a crash lost, a resume to the end of stage 0.
    log = tmp_path / "resumed.jsonl"
    kept = events[: cut + 1]
    lost = [e for e in events[cut + 1 : cut + 12] if e["event"] == "report"]
    log.write_text("\n".join(json.dumps(e) for e in [*kept, *lost, resume]) + "\n")

    run = read_run(log)
    assert run.totals.resumes == 1
    assert len(run.steps) == events[cut]["update_steps"] + events[cut]["search_steps"]
    assert run.totals.wall_seconds == pytest.approx(lost[-1]["time"] + 0.5)


def test_a_missing_or_empty_log_is_an_error_that_says_so(tmp_path, recorded_run):
    with pytest.raises(AutoLRSError, match="does not exist"):
        read_run(tmp_path / "nothing.jsonl")
    only_start = tmp_path / "start.jsonl"
    only_start.write_text(recorded_run.log.read_text().splitlines()[0] + "\n")
    with pytest.raises(AutoLRSError, match="no finished command yet"):
        read_run(only_start)
    other = tmp_path / "other.jsonl"
    other.write_text('{"hello": 1}\n')
    with pytest.raises((AutoLRSError, KeyError)):
        read_run(other)


def test_the_stage_posterior_is_the_gp_that_chose_the_lr(recorded_run):
    run = read_run(recorded_run.log)
    for stage in run.stages:
        posterior = stage_posterior(run.config, stage, points=400)
        assert posterior.ok
        assert posterior.lrs[0] == pytest.approx(run.config.min_lr, rel=1e-12)
        assert posterior.lrs[-1] == pytest.approx(run.config.max_lr, rel=1e-12)
        assert np.all(posterior.std >= 0)
        # choose_by="posterior_mean": the prediction for η* is the posterior mean there.
        at_chosen = np.interp(math.log(stage.chosen_lr), np.log(posterior.lrs), posterior.mean)
        spread = float(np.ptp(posterior.mean))
        assert at_chosen == pytest.approx(stage.chosen_forecast, abs=0.01 * spread)
    for stage in run.stages:
        any_failed = any(c.failed for c in stage.candidates)
        assert (stage_posterior(run.config, stage).penalty is not None) == any_failed


def test_the_posterior_grid_needs_two_points(recorded_run):
    run = read_run(recorded_run.log)
    with pytest.raises(AutoLRSError, match="points must be >= 2, got 1"):
        stage_posterior(run.config, run.history[0], points=1)


def test_non_finite_losses_survive_the_round_trip(recorded_run):
    run = read_run(recorded_run.log)
    assert any(math.isnan(s.loss) for s in run.steps)
