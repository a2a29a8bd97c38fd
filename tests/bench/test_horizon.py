"""The NQM stage-objective study: exact moments against step-by-step and brute-force references."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autolrs.bench.horizon import (
    NQMMoments,
    cosine_lrs,
    main,
    run_objective,
    stage_lengths,
    wsd_lrs,
)
from autolrs.config import AutoLRSConfig
from autolrs.errors import ConfigError


def step_by_step(nqm: NQMMoments, v: np.ndarray, lrs: list[float]) -> np.ndarray:
    """The recursion E θ²ₜ₊₁ = (1 − ηh)² E θ²ₜ + η²h/B, one step at a time."""
    for lr in lrs:
        v = (1.0 - lr * nqm.h) ** 2 * v + lr**2 * nqm.h / nqm.batch_size
    return v


def test_the_closed_form_of_a_constant_lr_matches_the_recursion() -> None:
    nqm = NQMMoments(dimension=300, batch_size=2)
    start = np.linspace(0.5, 2.0, 300)
    lrs = np.array([0.01, 0.3, 1.0, 1.9])
    closed = nqm.constant(start, lrs, 57)
    for row, lr in zip(closed, lrs, strict=True):
        np.testing.assert_allclose(row, step_by_step(nqm, start, [lr] * 57), rtol=1e-10)


def test_the_ramp_matches_the_recursion_and_the_schedule() -> None:
    nqm = NQMMoments(dimension=200)
    lrs = wsd_lrs(0.8, 120, 1.0)  # all decay: 0.8·(120 − i)/120
    ramped = nqm.ramp(nqm.initial(), np.array([0.8]), 120)[0]
    np.testing.assert_allclose(ramped, step_by_step(nqm, nqm.initial(), lrs), rtol=1e-12)
    assert nqm.schedule(lrs) == pytest.approx(float(nqm.loss(ramped)), rel=1e-12)


def test_a_diverging_lr_reads_as_diverged_not_as_nan() -> None:
    nqm = NQMMoments(dimension=50)
    ends = nqm.constant(nqm.initial(), np.array([0.5, 2.5]), 2000)
    losses = nqm.loss(ends)
    assert np.isfinite(losses[0]) and losses[0] < nqm.loss(nqm.initial())
    assert losses[1] >= 1e30


def test_the_tuned_cosine_matches_the_tasks_documented_value() -> None:
    # autolrs.bench.tasks.nqm documents ≈ 0.81 for cosine at peak 1.0 over T = 4000, d = 10⁴.
    nqm = NQMMoments(dimension=10_000)
    assert nqm.schedule(cosine_lrs(1.0, 4000)) == pytest.approx(0.81, abs=0.01)


def test_stage_lengths_double_and_fill_the_steps_before_the_cooldown() -> None:
    config = AutoLRSConfig.for_budget(4000, 0.03, 3.0)
    lengths = stage_lengths(config, 4000)
    assert sum(lengths) == 4000 - config.cooldown_steps
    assert lengths[:3] == [config.stage_length(i) for i in range(3)]
    assert all(tau <= 2 * config.max_stage_steps for tau in lengths)


def test_greedy_and_tolerant_choices_match_a_brute_force_over_whole_schedules() -> None:
    nqm = NQMMoments(dimension=100)
    lrs = np.geomspace(0.05, 1.5, 9)
    config = AutoLRSConfig.for_budget(400, 0.05, 1.5, cooldown_fraction=0.0)
    greedy = run_objective(nqm, "greedy", lrs, config, update_steps=400)
    tolerant = run_objective(nqm, "tolerant", lrs, config, update_steps=400, tolerance=0.5)

    # Reference: rebuild each stage from the whole LR list so far, one step at a time.
    for run, tolerance in ((greedy, 0.0), (tolerant, 0.5)):
        schedule: list[float] = []
        for index, (tau, chosen) in enumerate(zip(run.stage_steps, run.stage_lrs, strict=True)):
            start = nqm.schedule(schedule)
            ends = [nqm.schedule(schedule + [lr] * tau) for lr in lrs]
            best = min(ends)
            allowed = [
                lr
                for lr, end in zip(lrs, ends, strict=True)
                if end <= best + tolerance * min(start - best, best)
            ]
            tolerant_here = tolerance and index > 0  # the first stage is greedy
            assert chosen == pytest.approx(max(allowed) if tolerant_here else lrs[np.argmin(ends)])
            schedule += [chosen] * tau
        assert run.final_loss == pytest.approx(nqm.schedule(schedule), rel=1e-9)
    assert tolerant.stage_lrs[0] == greedy.stage_lrs[0]
    assert tolerant.stage_lrs[1] > greedy.stage_lrs[1]


def test_a_decay_to_the_end_picks_the_lr_best_after_annealing() -> None:
    nqm = NQMMoments(dimension=100)
    lrs = np.geomspace(0.05, 1.5, 7)
    config = AutoLRSConfig.for_budget(400, 0.05, 1.5, cooldown_fraction=0.0)
    run = run_objective(nqm, "decay-to-end", lrs, config, update_steps=400)
    tau = run.stage_steps[0]
    after = [nqm.schedule([lr] * tau + wsd_lrs(lr, 400 - tau, 1.0)) for lr in lrs]
    assert run.stage_lrs[0] == pytest.approx(lrs[int(np.argmin(after))])


def test_an_unknown_objective_is_refused_by_name() -> None:
    config = AutoLRSConfig.for_budget(400, 0.05, 1.5)
    with pytest.raises(ConfigError, match="objective must be one of .* got 'best'"):
        run_objective(NQMMoments(10), "best", np.array([0.1]), config, update_steps=400)


def test_the_command_writes_json_and_markdown(tmp_path) -> None:
    assert main(["--out", str(tmp_path), "--dimension", "50", "--budget", "400"]) == 0
    results = json.loads((tmp_path / "horizon.json").read_text())
    methods = {row["method"] for row in results["rows"]}
    assert {"cosine", "greedy", "tolerant", "decay-after", "decay-to-end"} <= methods
    assert all(np.isfinite(row["final_loss"]) for row in results["rows"])
    assert {row["update_steps"] for row in results["sweep"]} == {400, 368, 350}
    text = (tmp_path / "horizon.md").read_text()
    assert "| greedy |" in text and "tolerance × final cooldown" in text
