"""The validated config, its presets and its wire form."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from autolrs import AutoLRSConfig
from autolrs.config import BUDGET_DEFAULTS, ConfigError
from autolrs.core.commands import Report, Restore, Snapshot, Train, command_from_dict
from autolrs.errors import ProtocolError

GOOD = {"min_lr": 1e-3, "max_lr": 1e-1}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"min_lr": 0.1, "max_lr": 0.01}, r"min_lr must be smaller than max_lr.*0\.1"),
        ({"min_lr": 0.1, "max_lr": 0.1}, "min_lr must be smaller than max_lr"),
        ({"min_lr": 0.0}, "min_lr must be > 0, got 0.0"),
        ({"min_lr": -1e-3}, "min_lr must be > 0"),
        ({"max_lr": math.nan}, "max_lr must be finite, got nan"),
        ({"max_lr": math.inf}, "max_lr must be finite"),
        ({"min_lr": "0.1"}, "min_lr must be a real number, got '0.1'"),
        ({"stage_steps": 0}, "stage_steps must be >= 1, got 0"),
        ({"stage_steps": 10.5}, "stage_steps must be an integer"),
        ({"stage_steps": 100, "max_stage_steps": 50}, "max_stage_steps must be >= stage_steps"),
        ({"trial_fraction": 0.0}, r"trial_fraction must be in \(0, 1\]"),
        ({"trial_fraction": 1.5}, r"trial_fraction must be in \(0, 1\], got 1.5"),
        ({"num_candidates": 1}, "num_candidates must be >= 2, got 1"),
        ({"num_candidates": True}, "num_candidates must be an integer"),
        ({"kappa": -1.0}, "kappa must be >= 0"),
        ({"val_every": 0}, "val_every must be >= 1"),
        ({"use_val_loss": 1}, "use_val_loss must be True or False"),
        ({"warmup_steps": -1}, "warmup_steps must be >= 0"),
        ({"warmup_steps": 10}, "warmup_lr is required when warmup_steps > 0"),
        ({"warmup_steps": 10, "warmup_lr": 0.0}, "warmup_lr must be > 0"),
        ({"seed": -3}, "seed must be >= 0"),
        ({"first_candidate": "prior"}, r"first_candidate must be one of \('random', 'center'\)"),
        ({"choose_by": "mean"}, "choose_by must be one of"),
        ({"gp_length_scale": 0.0}, "gp_length_scale must be > 0"),
        ({"gp_fit_hyperparameters": "yes"}, "gp_fit_hyperparameters must be True or False"),
        ({"keep_last_trial": None}, "keep_last_trial must be True or False"),
        ({"stop_search_when_settled": 1}, "stop_search_when_settled must be True or False"),
        ({"stage_steps": 40, "max_stage_steps": 80}, "trials of 4 steps; the forecast needs"),
        ({"val_every": 200}, "val_every=200 gives 4 validation losses per trial of 800 steps"),
        ({"cooldown_fraction": 1.0, "total_steps": 100}, r"cooldown_fraction must be in \[0, 1\)"),
        ({"cooldown_fraction": -0.1}, r"cooldown_fraction must be in \[0, 1\), got -0.1"),
        ({"cooldown_fraction": 0.2}, "cooldown_fraction=0.2 needs total_steps"),
        ({"larger_lr_tolerance": 1.0}, r"larger_lr_tolerance must be in \[0, 1\), got 1.0"),
        ({"larger_lr_tolerance": math.nan}, "larger_lr_tolerance must be finite"),
    ],
)
def test_bad_values_are_refused_with_the_field_and_value_named(changes, message):
    with pytest.raises(ConfigError, match=message):
        AutoLRSConfig(**{**GOOD, **changes})


def test_config_error_is_also_a_value_error():
    with pytest.raises(ValueError):
        AutoLRSConfig(min_lr=1.0, max_lr=0.5)


def test_paper_preset_has_the_papers_constants():
    config = AutoLRSConfig.paper(1e-3, 1e-1)
    assert (config.stage_steps, config.max_stage_steps) == (1000, 8000)
    assert config.num_candidates == 10
    assert config.trial_fraction == 0.1
    assert config.kappa == 1000.0
    assert config.val_every == 50
    assert config.choose_by == "posterior_mean"
    assert not config.keep_last_trial
    assert [config.stage_length(i) for i in range(5)] == [1000, 2000, 4000, 8000, 8000]
    assert [config.trial_length(config.stage_length(i)) for i in range(4)] == [100, 200, 400, 800]


def test_for_budget_scales_stages_to_the_run_length():
    config = AutoLRSConfig.for_budget(4000, 1e-3, 1e-1)
    assert (config.stage_steps, config.max_stage_steps) == (100, 500)
    assert [config.stage_length(i) for i in range(5)] == [100, 200, 400, 500, 500]
    # τ'_max = 50 steps would give 16 validation points at val_every = 3; validation is never
    # more often than every 5 steps, so 10 points.
    assert config.val_every == 5 and config.use_val_loss
    assert config.total_steps == 4000
    long = AutoLRSConfig.for_budget(64_000, 1e-3, 1e-1)
    assert long.val_every == 800 // 16
    total = sum(config.stage_length(i) for i in range(11))
    assert 4000 <= total <= 5000, "about ten stages fill the budget"


def test_for_budget_keeps_trials_long_enough_to_forecast_on_short_budgets():
    config = AutoLRSConfig.for_budget(400, 1e-3, 1e-1)
    assert config.stage_steps == config.max_stage_steps == 100
    assert config.trial_length(config.stage_steps) == 10
    # Ten-step trials are too short for 5 validation points 5 steps apart.
    assert not config.use_val_loss
    assert AutoLRSConfig.for_budget(400, 1e-3, 1e-1, trial_fraction=0.25).stage_steps == 40


def test_validation_may_be_sparse_when_it_is_not_used():
    config = AutoLRSConfig(**GOOD, val_every=500, use_val_loss=False)
    assert config.val_every == 500


def test_for_budget_overrides_win_and_are_validated():
    config = AutoLRSConfig.for_budget(8000, 1e-3, 1e-1, num_candidates=5, val_every=7)
    assert config.num_candidates == 5 and config.val_every == 7
    with pytest.raises(ConfigError, match="total_steps must be >= 40"):
        AutoLRSConfig.for_budget(39, 1e-3, 1e-1)


def test_for_budget_is_the_paper_scaled_to_the_budget_plus_the_library_changes():
    paper = AutoLRSConfig.paper_for_budget(4000, 1e-3, 1e-1)
    default = AutoLRSConfig.for_budget(4000, 1e-3, 1e-1)
    assert paper.replace(**BUDGET_DEFAULTS) == default
    # The paper's algorithm: ten candidates over the whole range, the best one, no cooldown.
    assert (paper.num_candidates, paper.search_window) == (10, None)
    assert (paper.larger_lr_tolerance, paper.cooldown_fraction) == (0.0, 0.0)
    # Every change is undone by its own override, and the others stay.
    undone = AutoLRSConfig.for_budget(4000, 1e-3, 1e-1, cooldown_fraction=0.0)
    assert undone == default.replace(cooldown_fraction=0.0)
    assert default.cooldown_steps == round(4000 * BUDGET_DEFAULTS["cooldown_fraction"])


def test_numpy_scalars_are_stored_as_plain_python_numbers():
    config = AutoLRSConfig(min_lr=np.float32(1e-3), max_lr=np.float64(0.1), seed=np.int64(3))
    assert type(config.min_lr) is float and type(config.seed) is int
    json.dumps(config.to_dict())


def test_dict_round_trip_is_exact_and_unknown_fields_are_named():
    config = AutoLRSConfig(**GOOD, warmup_steps=5, warmup_lr=0.05, seed=7)
    assert AutoLRSConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match=r"unknown config fields \['tau'\]"):
        AutoLRSConfig.from_dict({**GOOD, "tau": 3})


def test_replace_validates_the_changed_config():
    config = AutoLRSConfig(**GOOD)
    assert config.replace(num_candidates=4).num_candidates == 4
    with pytest.raises(ConfigError, match="num_candidates"):
        config.replace(num_candidates=0)


def test_commands_and_reports_round_trip_through_json():
    commands = [
        Snapshot(),
        Restore(),
        Train(seq=3, phase="trial", steps=10, lr=0.1, end_lr=0.1, eval_every=2),
        Train(seq=4, phase="warmup", steps=5, lr=0.01, end_lr=0.05, abort_above=9.5),
    ]
    for command in commands:
        assert command_from_dict(json.loads(json.dumps(command.to_dict()))) == command
    report = Report(seq=3, losses=[1.0, 0.5], val_losses=[0.7])
    assert Report.from_dict(json.loads(json.dumps(report.to_dict()))) == Report(
        seq=3, losses=[1.0, 0.5], val_losses=[0.7]
    )
    with pytest.raises(ProtocolError, match="unknown command op 'jump'"):
        command_from_dict({"op": "jump"})


def test_train_ramps_linearly_and_knows_when_to_evaluate_and_stop():
    ramp = Train(seq=0, phase="warmup", steps=5, lr=0.1, end_lr=0.5, eval_every=2)
    assert [ramp.lr_at(i) for i in range(5)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5])
    assert [ramp.evaluates_after(i) for i in range(5)] == [False, True, False, True, False]
    capped = Train(seq=0, phase="trial", steps=5, lr=0.1, end_lr=0.1, abort_above=3.0)
    assert capped.should_abort(math.nan) and capped.should_abort(3.5)
    assert not capped.should_abort(2.9)


def test_a_budget_that_counts_the_search_must_fit_the_first_stage():
    # Four trials of 10 steps and a stage of 10: 50 steps before anything is trained.
    assert AutoLRSConfig.for_budget(50, 1e-3, 1e-1).total_steps == 50
    with pytest.raises(ConfigError, match=r"total_steps must be >= 50 .* got total_steps=49"):
        AutoLRSConfig.for_budget(49, 1e-3, 1e-1)
    # A warmup comes out of the budget first.
    warm = {"warmup_steps": 2, "warmup_lr": 1e-2}
    assert AutoLRSConfig.for_budget(52, 1e-3, 1e-1, **warm).total_steps == 52
    with pytest.raises(ConfigError, match=r"total_steps must be >= 52 .* warmup's 2 steps"):
        AutoLRSConfig.for_budget(51, 1e-3, 1e-1, **warm)
    # Counting update steps only, the search comes on top: no such floor.
    assert AutoLRSConfig.for_budget(49, 1e-3, 1e-1, budget_includes_search=False).total_steps == 49
