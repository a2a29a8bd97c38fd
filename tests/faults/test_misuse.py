"""Every way of misusing the library, in one table: each raises an error of the library's own
type whose message names the parameter and the value it received.

A second, shorter table lists what looks like misuse but is accepted on purpose, and why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fault_support import Run, small_config

from autolrs import AutoLRS, AutoLRSConfig, AutoLRSError, ConfigError

#: Update steps of a run under ``small_config(total_steps=BUDGET)``: stage 0 of 16 steps,
#: then stage 1 stretched from 32 to the end of the budget.
BUDGET = 48


# -- actions that need a little setup ---------------------------------------------------------


def run_to_the_end() -> Run:
    run = Run(config=small_config(total_steps=BUDGET))
    while run.scheduler.update_steps < BUDGET:
        run.step()
    return run


def step_after_the_end(tmp_path: Path) -> None:
    run_to_the_end().step()


def step_before_any_optimizer_step(tmp_path: Path) -> None:
    Run().scheduler.step(1.0)


def step_with(loss: Any) -> Callable[[Path], None]:
    def action(tmp_path: Path) -> None:
        run = Run()
        run.train_step()
        run.scheduler.step(loss)

    return action


def optimizer_without_param_groups(tmp_path: Path) -> None:
    run = Run(build=False)
    run.optimizer.param_groups.clear()
    run.make_scheduler()


def load(change: Callable[[dict[str, Any]], Any], **other: Any) -> Callable[[Path], None]:
    """Load a real scheduler state, after ``change`` edits (or replaces) it."""

    def action(tmp_path: Path) -> None:
        run = Run()
        run.steps(3)
        state = run.scheduler.state_dict()
        edited = change(state)
        target = Run(**other) if other else Run()
        target.scheduler.load_state_dict(state if edited is None else edited)

    return action


def two_param_groups(tmp_path: Path) -> None:
    run = Run()
    run.steps(3)
    state = run.scheduler.state_dict()
    target = Run(build=False)
    first, second = target.model[0], target.model[2]
    target.optimizer = torch.optim.SGD(
        [{"params": first.parameters()}, {"params": second.parameters()}], lr=0.1
    )
    target.make_scheduler().load_state_dict(state)


def build(**arguments: Any) -> Callable[[Path], None]:
    def action(tmp_path: Path) -> None:
        run = Run(build=False)
        resolved = {k: (tmp_path if v is Path else v) for k, v in arguments.items()}
        if "min_lr" not in resolved:
            resolved.setdefault("config", small_config())
        AutoLRS(run.optimizer, run.model, **resolved)

    return action


def config(**fields: Any) -> Callable[[Path], None]:
    def action(tmp_path: Path) -> None:
        AutoLRSConfig(**{"min_lr": 1e-3, "max_lr": 0.1, **fields})

    return action


def register(name: str, obj: Any) -> Callable[[Path], None]:
    def action(tmp_path: Path) -> None:
        Run().scheduler.register_state(name, obj)

    return action


def with_key(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state[key] = value

    return change


def without(key: str) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        del state[key]

    return change


def controller_version(version: int) -> Callable[[dict[str, Any]], None]:
    def change(state: dict[str, Any]) -> None:
        state["controller"]["version"] = version

    return change


# -- the table -------------------------------------------------------------------------------

MISUSE = [
    # The config: every field is checked where it is written.
    pytest.param(
        config(min_lr=-1.0), ConfigError, ["min_lr", "-1.0"], id="config-negative-min-lr"
    ),
    pytest.param(
        config(min_lr=0.1, max_lr=0.01),
        ConfigError,
        ["max_lr", "min_lr=0.1", "max_lr=0.01"],
        id="config-max-lr-below-min-lr",
    ),
    pytest.param(
        config(trial_fraction=1.5), ConfigError, ["trial_fraction", "1.5"], id="config-fraction"
    ),
    pytest.param(
        config(num_candidates=1), ConfigError, ["num_candidates", "got 1"], id="config-k"
    ),
    pytest.param(
        config(stage_steps=2.5), ConfigError, ["stage_steps", "2.5"], id="config-float-steps"
    ),
    pytest.param(config(kappa=math.nan), ConfigError, ["kappa", "nan"], id="config-nan-kappa"),
    pytest.param(
        config(warmup_steps=10), ConfigError, ["warmup_lr", "None"], id="config-warmup-no-lr"
    ),
    pytest.param(
        config(choose_by="median"), ConfigError, ["choose_by", "'median'"], id="config-choice"
    ),
    pytest.param(
        lambda tmp_path: AutoLRSConfig.for_budget(10, 1e-3, 0.1),
        ConfigError,
        ["total_steps", "got 10"],
        id="config-budget-too-small",
    ),
    pytest.param(
        lambda tmp_path: AutoLRSConfig.from_dict({"min_lr": 1e-3, "max_lr": 0.1, "tau": 5}),
        ConfigError,
        ["unknown config fields", "'tau'"],
        id="config-unknown-field",
    ),
    # The scheduler's constructor.
    pytest.param(
        optimizer_without_param_groups,
        ConfigError,
        ["optimizer", "param_groups=[]"],
        id="optimizer-without-param-groups",
    ),
    pytest.param(
        lambda tmp_path: AutoLRS(object(), Run(build=False).model, 1e-3, 0.1),
        ConfigError,
        ["optimizer", "object"],
        id="optimizer-not-an-optimizer",
    ),
    pytest.param(
        lambda tmp_path: AutoLRS(Run(build=False).optimizer, "model", 1e-3, 0.1),
        ConfigError,
        ["model", "str"],
        id="model-not-a-module",
    ),
    pytest.param(
        build(config=small_config(), total_steps=100),
        ConfigError,
        ["total_steps", "total_steps=100", "config"],
        id="total-steps-and-config",
    ),
    pytest.param(
        build(min_lr=1e-3, max_lr=None),
        ConfigError,
        ["max_lr", "max_lr=None"],
        id="missing-max-lr",
    ),
    pytest.param(build(val_fn=3), ConfigError, ["val_fn", "int"], id="val-fn-not-callable"),
    pytest.param(
        build(snapshot="cloud"), ConfigError, ["snapshot", "'cloud'"], id="snapshot-kind"
    ),
    pytest.param(
        build(snapshot="disk"), ConfigError, ["snapshot_dir", "None"], id="disk-without-folder"
    ),
    pytest.param(
        build(snapshot="memory", snapshot_dir=Path),
        ConfigError,
        ["snapshot_dir", "must be None", "tmp"],  # the folder received, under the tmp dir
        id="memory-with-a-folder",
    ),
    pytest.param(
        register("ema", 3), ConfigError, ["extra state 'ema'", "int"], id="extra-state-object"
    ),
    pytest.param(
        register("model", torch.nn.Linear(1, 1)),
        ConfigError,
        ["extra state name 'model'", "taken"],
        id="extra-state-name",
    ),
    # step().
    pytest.param(
        step_with(torch.tensor([0.5, 0.4])),
        ConfigError,
        ["loss", "shape (2,)"],
        id="step-loss-of-several-elements",
    ),
    pytest.param(step_with("a lot"), ConfigError, ["loss", "str", "'a lot'"], id="step-loss-text"),
    pytest.param(
        step_with("0.5"), ConfigError, ["loss", "str", "'0.5'"], id="step-loss-numeric-text"
    ),
    pytest.param(step_with(None), ConfigError, ["loss", "NoneType"], id="step-loss-none"),
    pytest.param(step_with(True), ConfigError, ["loss", "bool", "True"], id="step-loss-bool"),
    pytest.param(step_with([0.5]), ConfigError, ["loss", "list", "[0.5]"], id="step-loss-list"),
    pytest.param(
        step_with(np.array([0.5])),
        ConfigError,
        ["loss", "ndarray", "array([0.5])"],
        id="step-loss-array",  # NumPy arrays are read only when 0-d, as float() reads them
    ),
    pytest.param(
        step_before_any_optimizer_step,
        AutoLRSError,
        ["step(loss)", "before any optimizer.step()", "optimizer steps so far: 0"],
        id="step-before-any-optimizer-step",
    ),
    pytest.param(
        step_after_the_end,
        AutoLRSError,
        [
            f"training ended after {BUDGET} update steps",
            f"total_steps={BUDGET}",
            "step() was called again",
        ],
        id="step-after-training-ended",
    ),
    # load_state_dict().
    pytest.param(
        load(lambda state: None, config=small_config(num_candidates=4)),
        ConfigError,
        ["config differs", "num_candidates (3 vs 4)"],
        id="load-another-config",
    ),
    pytest.param(
        load(with_key("format", 99)),
        ConfigError,
        ["format 99", "expected 1"],
        id="load-another-format",
    ),
    pytest.param(
        load(controller_version(7)),
        ConfigError,
        ["controller state version 7", "reads version 1"],
        id="load-another-controller-version",
    ),
    pytest.param(
        load(lambda state: "garbage"),
        ConfigError,
        ["state_dict", "got str"],
        id="load-garbage",
    ),
    pytest.param(
        load(without("progress")),
        ConfigError,
        ["state_dict is not a scheduler state", "'progress'"],
        id="load-truncated-state",
    ),
    pytest.param(
        load(with_key("progress", [1, 2, 3])),
        ConfigError,
        ["state_dict is not a scheduler state", "list"],
        id="load-mangled-state",
    ),
    pytest.param(
        two_param_groups,
        ConfigError,
        ["state_dict", "1 param groups", "has 2"],
        id="load-into-another-optimizer",
    ),
]


@pytest.mark.parametrize(("action", "error", "fragments"), MISUSE)
def test_misuse_is_refused_naming_the_parameter_and_the_value(action, error, fragments, tmp_path):
    with pytest.raises(error) as raised:
        action(tmp_path)

    assert isinstance(raised.value, AutoLRSError)  # one base class catches them all
    message = str(raised.value)
    missing = [fragment for fragment in fragments if fragment not in message]
    assert not missing, f"{missing} not in the message: {message}"


def test_a_failed_load_leaves_the_scheduler_as_it_was():
    run = Run()
    run.steps(5)
    before = run.scheduler.state_dict()
    state = run.scheduler.state_dict()
    del state["optimizer_steps"]  # everything else parses: the controller, the progress
    with pytest.raises(ConfigError):
        run.scheduler.load_state_dict(state)
    assert str(run.scheduler.state_dict()) == str(before)
    run.steps(1)  # and it trains on


def test_after_the_budget_no_snapshot_is_taken_and_step_keeps_refusing():
    run = Run(build=False, config=small_config(total_steps=BUDGET))
    events: list[str] = []
    run.scheduler = run.make_scheduler()
    run.scheduler.add_listener(lambda event: events.append(event["event"]))
    while not run.scheduler.finished:
        assert run.scheduler.update_steps < BUDGET
        run.step()

    assert run.scheduler.update_steps == BUDGET and len(run.scheduler.history) == 3
    assert events.count("snapshot") == 1  # stage 1's; the third stage never trains
    weights = run.state()
    for _ in range(2):
        with pytest.raises(AutoLRSError, match="training ended"):
            run.scheduler.step(1.0)
    checkpoint = run.scheduler.state_dict()
    resumed = Run(config=small_config(total_steps=BUDGET))
    resumed.scheduler.load_state_dict(checkpoint)
    resumed.train_step()
    assert resumed.scheduler.finished
    with pytest.raises(AutoLRSError, match="training ended"):
        resumed.scheduler.step(1.0)
    assert str(run.state()) == str(weights)


# -- what looks like misuse but is accepted on purpose ----------------------------------------


def step_twice_per_optimizer_step(run: Run) -> None:
    # Not detectable as misuse: an AMP GradScaler skips optimizer.step() when the gradients
    # overflow, and the training loop still calls scheduler.step(loss). That step counts like
    # any other (it trained nothing, as a step at a tiny LR would not).
    run.scheduler.step(0.8)
    run.scheduler.step(0.9)


ACCEPTED = [
    pytest.param(step_twice_per_optimizer_step, 2, id="step-without-an-optimizer-step"),
    pytest.param(lambda run: run.scheduler.step(np.float32(0.5)), 1, id="numpy-scalar"),
    pytest.param(lambda run: run.scheduler.step(np.array(0.5)), 1, id="0-d-array"),
    pytest.param(lambda run: run.scheduler.step(torch.tensor([[0.5]])), 1, id="1x1-tensor"),
    pytest.param(lambda run: run.scheduler.step(2), 1, id="integer-loss"),
    pytest.param(lambda run: run.scheduler.step(math.inf), 1, id="non-finite-loss"),
]


@pytest.mark.parametrize(("action", "recorded"), ACCEPTED)
def test_accepted_on_purpose(action, recorded):
    run = Run()
    run.train_step()  # the first optimizer step; without it step() refuses (see MISUSE)
    executed = run.scheduler.total_steps

    action(run)

    # A non-finite loss is recorded and aborts the candidate, like any diverged trial.
    assert run.scheduler.total_steps == executed + recorded
