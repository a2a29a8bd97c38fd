import math
from typing import Any

import pytest
import torch

from autolrs.bench.drivers import BN_RECALIBRATION_BATCHES, Driver, ScheduleDriver, make_driver
from autolrs.bench.methods import SCHEDULEFREE_DEFAULT_LR, MethodConfig, resolve_method
from autolrs.bench.runner import RunSettings, _Loop, run, run_key
from autolrs.bench.schedules import expand_segments, schedule_factor
from autolrs.errors import ConfigError

TUNED = {"constant": 0.01, "cosine": 0.03, "step": 0.03, "schedulefree": 0.1}
NON_AUTOLRS = ("constant", "cosine", "step", "schedulefree", "schedulefree-tuned", "prodigy",
               "plateau")  # fmt: skip
SETTINGS = RunSettings(threads=1)


@pytest.mark.parametrize("method", NON_AUTOLRS)
def test_every_method_trains_to_the_budget_with_a_point_every_eval_every(
    fake_task, method, fake_spec
):
    config = resolve_method(method, fake_spec, TUNED)
    record = run(fake_task, config, seed=0, settings=SETTINGS)

    assert record.stop_reason == "budget"
    assert record.update_steps == record.total_steps == fake_spec.budget
    assert [p.update_steps for p in record.curve] == list(range(10, 81, 10))
    assert [p.total_steps for p in record.curve] == list(range(10, 81, 10))
    assert all(p.val_loss is not None and p.val_loss < 10 for p in record.curve)
    assert record.final_val_loss == record.curve[-1].val_loss
    assert len(expand_segments(record.lr_segments)) == fake_spec.budget
    walls = [p.wall_s for p in record.curve]
    assert walls == sorted(walls) and record.wall_s >= walls[-1]


@pytest.mark.parametrize("method", NON_AUTOLRS)
def test_a_run_is_reproducible_from_its_seed(fake_task, method, fake_spec):
    config = resolve_method(method, fake_spec, TUNED)
    first = run(fake_task, config, seed=3, settings=SETTINGS)
    second = run(fake_task, config, seed=3, settings=SETTINGS)
    assert [p.val_loss for p in first.curve] == [p.val_loss for p in second.curve]
    other = run(fake_task, config, seed=4, settings=SETTINGS)
    assert [p.val_loss for p in other.curve] != [p.val_loss for p in first.curve]


@pytest.mark.parametrize("family", ["constant", "cosine", "step"])
def test_the_recorded_lrs_follow_the_schedule(fake_task, family, fake_spec):
    record = run(fake_task, resolve_method(family, fake_spec, TUNED), seed=0, settings=SETTINGS)
    expected = [
        TUNED[family] * schedule_factor(family, s, fake_spec.budget, fake_spec.warmup_steps)
        for s in range(fake_spec.budget)
    ]
    assert expand_segments(record.lr_segments) == pytest.approx(expected, rel=2e-3)


def test_only_plateau_pays_for_its_own_validations(fake_task, fake_spec):
    for method in NON_AUTOLRS:
        record = run(fake_task, resolve_method(method, fake_spec, TUNED), 0, SETTINGS)
        if method == "plateau":
            # Every evaluation after warmup (all 8 here) drives the plateau scheduler.
            assert record.eval_cost == pytest.approx(8 * (16 / 3))
            assert record.curve[-1].eval_cost == pytest.approx(record.eval_cost)
        else:
            assert record.eval_cost == 0.0


def test_schedulefree_uses_its_published_default_lr_and_the_tuned_one_the_grid(fake_spec):
    assert resolve_method("schedulefree", fake_spec, TUNED).lr == SCHEDULEFREE_DEFAULT_LR["sgd"]
    assert resolve_method("schedulefree-tuned", fake_spec, TUNED).lr == TUNED["schedulefree"]


def test_schedulefree_evaluates_at_the_averaged_weights_and_returns_to_training(
    fake_task, fake_spec
):
    instance = fake_task.build(0)
    driver = make_driver(resolve_method("schedulefree", fake_spec, TUNED), fake_spec, instance, 0)
    for _ in range(5):
        driver.prepare_step()
        instance.loss(instance.next_batch()).backward()
        driver.optimizer.step()
        driver.optimizer.zero_grad()
    before = [p.detach().clone() for p in instance.model.parameters()]
    driver.optimizer.eval()
    averaged = instance.val_loss()
    driver.optimizer.train()

    assert driver.evaluate() == pytest.approx(averaged)
    after = list(instance.model.parameters())
    assert all(torch.allclose(a, b) for a, b in zip(before, after, strict=True))
    assert driver.optimizer.param_groups[0]["train_mode"]


def test_schedulefree_recalibrates_batch_norm_and_charges_it(fake_task_with_norms, fake_spec):
    config = resolve_method("schedulefree-tuned", fake_spec, TUNED)
    record = run(fake_task_with_norms, config, 0, SETTINGS)
    per_evaluation = BN_RECALIBRATION_BATCHES * (10 / 3) / 10
    assert record.eval_cost == pytest.approx(len(record.curve) * per_evaluation)
    assert record.stop_reason == "budget"


def test_plateau_cuts_the_lr_when_the_loss_stalls(fake_task):
    # At this LR the validation loss rises between steps 20 and 30 (seed 0).
    config = MethodConfig("plateau", 0.1, {"factor": 0.1, "patience_evals": 0})
    record = run(fake_task, config, 0, SETTINGS)
    lrs = expand_segments(record.lr_segments)
    assert lrs[29] == pytest.approx(0.1)
    assert lrs[30] == pytest.approx(0.01)
    assert record.extras["reductions"][0] == [30, pytest.approx(0.01)]


def test_a_nonfinite_loss_ends_the_run_as_diverged(fake_task, fake_spec):
    record = run(fake_task, MethodConfig("constant", 1e6), 0, SETTINGS)
    assert record.stop_reason == "diverged"
    assert record.final_val_loss is None
    assert record.update_steps < fake_spec.budget


def test_prodigy_reports_its_effective_step_size(fake_task, fake_spec):
    record = run(fake_task, resolve_method("prodigy", fake_spec, TUNED), 0, SETTINGS)
    lrs = expand_segments(record.lr_segments)
    # d starts at Prodigy's d0 = 1e-6 and grows; the LR multiplier is 1.
    assert lrs[0] == pytest.approx(1e-6 * schedule_factor("cosine", 0, 80, 4), rel=1e-6)
    assert max(lrs) > 1e-5


def test_the_key_changes_with_anything_that_changes_the_run(fake_spec):
    config = resolve_method("cosine", fake_spec, TUNED)
    key = run_key(fake_spec, config, 0, SETTINGS)
    assert key == run_key(fake_spec, config, 0, RunSettings(threads=1))
    assert key.config_hash != run_key(fake_spec, config, 0, RunSettings(threads=2)).config_hash
    other = resolve_method("cosine", fake_spec, {"cosine": 0.1})
    assert run_key(fake_spec, other, 0, SETTINGS).lr == 0.1


def test_a_method_without_its_tuned_lr_says_how_to_get_it(fake_spec):
    with pytest.raises(ConfigError, match="--regrid"):
        resolve_method("plateau", fake_spec, {})
    with pytest.raises(ConfigError, match="method must be one of"):
        resolve_method("sgdr", fake_spec, TUNED)


class ScriptedDriver(ScheduleDriver):
    """Constant LR whose update count is rolled back from 30 to 20 once, as AutoLRS does
    when a stage diverges and restarts from its snapshot."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._update = 0
        self._total = 0
        self._rolled_back = False

    @property
    def update_steps(self) -> int:
        return self._update

    @property
    def total_steps(self) -> int:
        return self._total

    def finish_step(self, loss: torch.Tensor) -> None:
        self._total += 1
        self._steps += 1
        if self._update == 29 and not self._rolled_back:
            self._rolled_back = True
            self._update = 20
        else:
            self._update += 1


def test_points_of_a_rolled_back_stage_are_dropped_and_measured_again(fake_task, fake_spec):
    instance = fake_task.build(0)
    driver: Driver = ScriptedDriver(MethodConfig("constant", 0.01), fake_spec, instance)
    result = _Loop(fake_spec, driver, SETTINGS).train()

    steps = [point.update_steps for point in result["curve"]]
    assert steps == list(range(10, 81, 10))
    # The point at 20 was measured before the rollback, the one at 30 after it.
    by_step = {point.update_steps: point for point in result["curve"]}
    assert by_step[20].total_steps == 20
    assert by_step[30].total_steps == 30 + 10
    assert result["total_steps"] == 90
    assert len(expand_segments(result["lr_segments"])) == fake_spec.budget


def test_run_settings_reject_bad_values():
    with pytest.raises(ConfigError, match="threads"):
        RunSettings(threads=0)
    with pytest.raises(ConfigError, match="cap_factor"):
        RunSettings(cap_factor=True)


def test_evaluation_time_is_kept_apart_from_the_run(fake_task, monkeypatch, fake_spec):
    instance_type = type(fake_task.build(0))
    slow = instance_type.val_loss

    def slow_val_loss(self):
        import time

        time.sleep(0.05)
        return slow(self)

    monkeypatch.setattr(instance_type, "val_loss", slow_val_loss)
    record = run(fake_task, resolve_method("constant", fake_spec, TUNED), 0, SETTINGS)
    assert record.harness_eval_s >= 8 * 0.05
    assert record.wall_s < record.harness_eval_s
    assert math.isfinite(record.wall_s)


@pytest.mark.slow
def test_autolrs_is_measured_on_its_committed_trajectory_only(fake_task, fake_spec):
    # With the search on top of the budget, so that the budget's 80 steps are all kept.
    config = resolve_method("autolrs-update-budget", fake_spec, {})
    record = run(fake_task, config, seed=0, settings=RunSettings(threads=1))

    assert record.stop_reason == "budget"
    assert record.update_steps == fake_spec.budget
    assert [p.update_steps for p in record.curve] == list(range(10, 81, 10))
    # Every candidate trial was executed and rolled back: the search is in the cost.
    extras = record.extras
    assert record.total_steps == fake_spec.budget + extras["search_steps"]
    assert extras["search_steps"] > 0
    assert record.eval_cost == pytest.approx(extras["evaluations"] * 10 / 3)
    assert [p.total_steps for p in record.curve] == sorted(p.total_steps for p in record.curve)
    assert len(extras["history"]) == len(extras["forecast_errors"])
    # Stages that trained; one the controller opened as the budget ran out is not counted.
    trained = [stage for stage in extras["history"] if stage["candidates"] or stage["cooldown"]]
    assert extras["num_stages"] == len(trained)
    assert all(stage["chosen_lr"] is not None for stage in trained)
    assert all(
        stage["start_total_step"] >= record.total_steps
        for stage in extras["history"]
        if stage not in trained
    )
    assert extras["config"]["min_lr"] == min(fake_spec.lr_grid)
    assert extras["config"]["max_lr"] == max(fake_spec.lr_grid)
    lrs = expand_segments(record.lr_segments)
    assert len(lrs) == fake_spec.budget
    # Searched stages stay in the range; the final cooldown decays from a chosen LR to 0.
    (cooldown,) = [stage for stage in extras["history"] if stage["cooldown"]]
    start = cooldown["start_update_step"]
    assert all(min(fake_spec.lr_grid) <= lr <= max(fake_spec.lr_grid) for lr in lrs[4:start])
    decay = lrs[start:]
    assert decay[0] == cooldown["chosen_lr"] and decay[-1] == 0.0
    assert all(later <= earlier for earlier, later in zip(decay, decay[1:], strict=False))


@pytest.mark.slow
def test_autolrs_stops_at_the_cap_of_executed_steps(fake_task, fake_spec):
    # The paper's ten candidates of 10 steps outlast a cap of T = 80 executed steps.
    config = resolve_method("autolrs-paper", fake_spec, {})
    record = run(fake_task, config, seed=0, settings=RunSettings(threads=1, cap_factor=1))
    assert record.stop_reason == "cap"
    assert record.total_steps == fake_spec.budget
    # The cap struck during the first stage's search, after the warmup: the trials executed
    # reached update step 10 many times over, but none of them is committed progress.
    assert record.update_steps == fake_spec.warmup_steps
    assert record.curve == []


@pytest.mark.parametrize(
    ("method", "same"), [("autolrs", True), ("autolrs-no-same-batches", False)]
)
def test_the_candidates_of_a_stage_train_on_the_same_batches_unless_undone(
    fake_task, fake_spec, method, same
):
    config = resolve_method(method, fake_spec, TUNED)
    assert config.params.get("same_batches", False) is same
    record = run(fake_task, config, seed=0, settings=SETTINGS)

    stages = [s for s in record.extras["history"] if len(s["candidates"]) > 1]
    assert stages
    for stage in stages:
        # From one snapshot, the first step's loss depends only on the batch, not on the LR.
        firsts = {round(c["losses"][0], 12) for c in stage["candidates"] if c["losses"]}
        assert (len(firsts) == 1) is same, firsts


def test_the_paper_preset_draws_fresh_batches_for_every_candidate(fake_spec):
    assert "same_batches" not in resolve_method("autolrs-paper", fake_spec, TUNED).params


def test_a_budget_that_counts_the_search_ends_the_run_at_that_many_steps(fake_task, fake_spec):
    config = resolve_method("autolrs", fake_spec, TUNED)
    record = run(fake_task, config, seed=0, settings=SETTINGS)
    assert record.stop_reason == "budget"
    assert record.total_steps == fake_spec.budget > record.update_steps
    assert record.curve[-1].total_steps == fake_spec.budget
    old = run(fake_task, resolve_method("autolrs-update-budget", fake_spec, TUNED), 0, SETTINGS)
    assert old.update_steps == fake_spec.budget < old.total_steps
