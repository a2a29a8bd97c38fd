"""The PyTorch adapter on real models and optimizers."""

from __future__ import annotations

import copy
import io
import math
import subprocess
import sys

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSConfig, AutoLRSError, ConfigError, DivergenceError

torch.set_num_threads(1)


def small_config(**changes) -> AutoLRSConfig:
    base = dict(
        min_lr=1e-3,
        max_lr=0.5,
        stage_steps=16,
        max_stage_steps=32,
        trial_fraction=0.5,
        num_candidates=3,
        val_every=2,
        gp_fit_hyperparameters=False,
        divergence_factor=None,
    )
    base.update(changes)
    return AutoLRSConfig(**base)


class Regression:
    """A tiny seeded regression problem with a fixed data order."""

    def __init__(self, seed: int = 0, batch: int = 16) -> None:
        g = torch.Generator().manual_seed(seed)
        self.w = torch.randn(8, 1, generator=g)
        self.x = torch.randn(512, 8, generator=g)
        self.y = self.x @ self.w + 0.1 * torch.randn(512, 1, generator=g)
        self.x_val = torch.randn(64, 8, generator=g)
        self.y_val = self.x_val @ self.w
        self.batch = batch
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def batch_at(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = (step * self.batch) % 512
        return self.x[start : start + self.batch], self.y[start : start + self.batch]

    def val_loss(self) -> float:
        return nn.functional.mse_loss(self.model(self.x_val), self.y_val).item()

    def train_step(self, optimizer: torch.optim.Optimizer, step: int) -> torch.Tensor:
        x, y = self.batch_at(step)
        loss = nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss


def state_copy(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return copy.deepcopy({"model": model.state_dict(), "optimizer": optimizer.state_dict()})


def assert_same_state(a: dict, b: dict) -> None:
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index in state_a:
        for name, value in state_a[index].items():
            other = state_b[index][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (index, name)
            else:
                assert value == other, (index, name)


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=1e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.01),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_candidate_starts_from_a_bit_identical_copy_of_the_stage_snapshot(name):
    task = Regression()
    optimizer = OPTIMIZERS[name](task.model.parameters())
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    stage_state = state_copy(task.model, optimizer)
    starts_checked = 0
    seen = (scheduler.stage, 0)

    step = 0
    while scheduler.stage < 2:
        scheduler.step(task.train_step(optimizer, step))
        step += 1
        now = (scheduler.stage, len(scheduler.history[-1].candidates))
        if now != seen and scheduler.phase == "trial":
            if now[0] == seen[0]:  # another candidate begins: the snapshot was restored
                assert_same_state(stage_state, state_copy(task.model, optimizer))
                starts_checked += 1
            else:  # a new stage begins: its snapshot is the state now
                stage_state = state_copy(task.model, optimizer)
        seen = now
    assert starts_checked >= 2 * (scheduler.config.num_candidates - 1)


def test_stage_training_starts_from_the_snapshot_with_the_chosen_lr():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1, momentum=0.9)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    snapshot = state_copy(task.model, optimizer)
    step = 0
    while scheduler.phase == "trial":
        scheduler.step(task.train_step(optimizer, step))
        step += 1
    assert_same_state(snapshot, state_copy(task.model, optimizer))
    chosen = scheduler.history[0].chosen_lr
    assert scheduler.get_last_lr() == [chosen]
    assert optimizer.param_groups[0]["lr"] == chosen


def test_other_param_groups_keep_their_ratio_to_the_first():
    task = Regression()
    first, second = task.model[0], task.model[2]
    optimizer = torch.optim.SGD(
        [{"params": first.parameters(), "lr": 0.1}, {"params": second.parameters(), "lr": 0.01}]
    )
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    for step in range(40):
        lrs = [group["lr"] for group in optimizer.param_groups]
        assert lrs == scheduler.get_last_lr()
        assert lrs[1] == pytest.approx(lrs[0] * 0.1, rel=1e-12)
        scheduler.step(task.train_step(optimizer, step))


def run_to(scheduler: AutoLRS, task: Regression, optimizer, update_steps: int) -> None:
    step = scheduler.total_steps
    while scheduler.update_steps < update_steps:
        scheduler.step(task.train_step(optimizer, step))
        step += 1


def test_end_to_end_the_loss_falls_and_every_chosen_lr_lies_in_bounds():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1, momentum=0.9)
    config = small_config(warmup_steps=8, warmup_lr=0.05)
    scheduler = AutoLRS(optimizer, task.model, val_fn=task.val_loss, config=config)
    initial = task.val_loss()

    run_to(scheduler, task, optimizer, 8 + 16 + 32 + 32 + 1)

    assert task.val_loss() < 0.5 * initial
    stages = scheduler.history
    assert len(stages) == 4
    assert [s.metric for s in stages] == ["train", "val", "val", "val"]
    for stage in stages[:3]:
        assert config.min_lr <= stage.chosen_lr <= config.max_lr
        assert len(stage.candidates) == config.num_candidates
        assert stage.final_loss is not None
    assert stages[0].start_update_step == 8
    # Stage 0 (τ=16, τ'=8) forecasts the training loss; stages 1-3 (τ=τ_max=32, τ'=16) the
    # validation loss, 8 evaluations per trial and one at each stage's end.
    assert scheduler.search_steps == 3 * 8 + 3 * (3 * 16)
    assert scheduler.evaluations == 3 * (3 * 8) + 2
    assert scheduler.total_steps == scheduler.update_steps + scheduler.search_steps


def test_warmup_sets_a_linear_ramp_of_lrs():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config(warmup_steps=4, warmup_lr=0.2))
    seen = []
    for step in range(4):
        assert scheduler.phase == "warmup"
        seen.append(optimizer.param_groups[0]["lr"])
        scheduler.step(task.train_step(optimizer, step))
    assert seen == pytest.approx([0.05, 0.1, 0.15, 0.2])
    assert scheduler.phase == "trial" and scheduler.update_steps == 4


def test_val_fn_runs_in_eval_mode_without_grad_and_train_mode_comes_back():
    task = Regression()
    task.model.append(nn.Dropout(0.1))
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    seen = []

    def val_fn() -> float:
        seen.append((task.model.training, torch.is_grad_enabled()))
        return task.val_loss()

    scheduler = AutoLRS(optimizer, task.model, val_fn=val_fn, config=small_config())
    run_to(scheduler, task, optimizer, 16 + 1)
    assert seen and set(seen) == {(False, False)}
    assert task.model.training


def test_a_nan_loss_in_a_trial_aborts_the_candidate_at_once_and_restores():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    snapshot = state_copy(task.model, optimizer)

    scheduler.step(task.train_step(optimizer, 0))
    scheduler.step(torch.tensor(float("nan")))

    candidate = scheduler.history[0].candidates[0]
    assert candidate.failed and candidate.steps == 2
    assert scheduler.search_steps == 2 and scheduler.phase == "trial"
    assert_same_state(snapshot, state_copy(task.model, optimizer))


def test_a_nan_loss_in_stage_training_restores_and_retrains():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    step = 0
    while scheduler.phase == "trial":
        scheduler.step(task.train_step(optimizer, step))
        step += 1
    snapshot = state_copy(task.model, optimizer)
    for _ in range(3):
        scheduler.step(task.train_step(optimizer, step))
        step += 1
    searched = scheduler.search_steps
    scheduler.step(math.inf)

    stage = scheduler.history[0]
    assert len(stage.restarts) == 1 and stage.restarts[0].steps == 4
    assert scheduler.phase == "stage" and scheduler.update_steps == 0
    assert scheduler.search_steps == searched + 4
    assert_same_state(snapshot, state_copy(task.model, optimizer))


def test_nan_everywhere_restores_the_snapshot_and_raises_divergence():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    snapshot = state_copy(task.model, optimizer)
    task.train_step(optimizer, 0)
    with pytest.raises(DivergenceError):
        for _ in range(10):
            scheduler.step(math.nan)
    assert_same_state(snapshot, state_copy(task.model, optimizer))


def make_run(seed: int = 0):
    task = Regression(seed)
    optimizer = torch.optim.Adam(task.model.parameters(), lr=0.01)
    scheduler = AutoLRS(optimizer, task.model, val_fn=task.val_loss, config=small_config())
    return task, optimizer, scheduler


@pytest.mark.parametrize("cut", [1, 5, 13, 20, 29, 47, 60])
def test_resuming_from_a_checkpoint_continues_with_the_same_decisions(cut):
    budget = 16 + 32 + 10
    task, optimizer, scheduler = make_run()
    run_to(scheduler, task, optimizer, budget)
    reference = (
        [s.to_dict() for s in scheduler.history],
        copy.deepcopy(task.model.state_dict()),
    )

    task, optimizer, scheduler = make_run()
    for step in range(cut):
        scheduler.step(task.train_step(optimizer, step))
    buffer = io.BytesIO()
    torch.save(
        {
            "model": task.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=False)

    task, optimizer, scheduler = make_run()
    task.model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    assert scheduler.total_steps == cut
    run_to(scheduler, task, optimizer, budget)

    assert [s.to_dict() for s in scheduler.history] == reference[0]
    for key, tensor in reference[1].items():
        assert torch.equal(task.model.state_dict()[key], tensor), key


def test_loading_a_checkpoint_of_another_config_names_the_difference():
    _, _, scheduler = make_run()
    state = scheduler.state_dict()
    task = Regression()
    optimizer = torch.optim.Adam(task.model.parameters(), lr=0.01)
    other = AutoLRS(optimizer, task.model, config=small_config(num_candidates=4))
    with pytest.raises(ConfigError, match=r"num_candidates \(3 vs 4\)"):
        other.load_state_dict(state)


def test_disk_snapshots_restore_exactly(tmp_path):
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1, momentum=0.9)
    scheduler = AutoLRS(
        optimizer, task.model, config=small_config(), snapshot="disk", snapshot_dir=tmp_path
    )
    snapshot = state_copy(task.model, optimizer)
    step = 0
    while scheduler.phase == "trial":
        scheduler.step(task.train_step(optimizer, step))
        step += 1
    assert_same_state(snapshot, state_copy(task.model, optimizer))
    assert (tmp_path / "autolrs-snapshot.pt").exists()


def test_registered_state_is_restored_with_the_model():
    class Counter:
        def __init__(self) -> None:
            self.count = 0

        def state_dict(self) -> dict:
            return {"count": self.count}

        def load_state_dict(self, state: dict) -> None:
            self.count = state["count"]

    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    counter = Counter()
    scheduler = AutoLRS(
        optimizer, task.model, config=small_config(), extra_state={"counter": counter}
    )
    trial_steps = scheduler.config.trial_length(16)
    for step in range(trial_steps):
        counter.count += 1
        scheduler.step(task.train_step(optimizer, step))
    assert scheduler.search_steps == trial_steps and counter.count == 0


def test_a_scalar_loss_of_any_kind_is_accepted_but_a_vector_is_refused():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    task.train_step(optimizer, 0)
    scheduler.step(torch.tensor([0.5]))
    scheduler.step(1)
    scheduler.step(0.25)
    with pytest.raises(ConfigError, match=r"shape \(2,\)"):
        scheduler.step(torch.tensor([0.5, 0.4]))
    with pytest.raises(ConfigError, match="got str"):
        scheduler.step("a lot")


def test_step_before_any_optimizer_step_is_refused():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, config=small_config())
    with pytest.raises(AutoLRSError, match="before any optimizer.step"):
        scheduler.step(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_lr": None, "max_lr": None}, "min_lr and max_lr are required"),
        ({"min_lr": 0.1, "max_lr": 0.01}, "min_lr must be smaller than max_lr"),
        ({"min_lr": 0.01, "max_lr": 0.1, "snapshot": "cloud"}, "snapshot must be"),
        ({"min_lr": 0.01, "max_lr": 0.1, "snapshot": "disk"}, "needs snapshot_dir"),
        ({"min_lr": 0.01, "max_lr": 0.1, "val_fn": 3}, "val_fn must be callable"),
        ({"config": small_config(), "total_steps": 100}, "total_steps cannot be combined"),
        ({"min_lr": 0.01, "max_lr": 0.1, "total_steps": 10}, "total_steps must be >= 40"),
    ],
)
def test_bad_arguments_are_refused_with_the_parameter_named(kwargs, message):
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match=message):
        AutoLRS(optimizer, task.model, **kwargs)


def test_non_optimizer_and_non_module_arguments_are_refused():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="optimizer must be"):
        AutoLRS(object(), task.model, 0.01, 0.1)
    with pytest.raises(ConfigError, match="model must be"):
        AutoLRS(optimizer, object(), 0.01, 0.1)


def test_total_steps_scales_the_stage_lengths():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    scheduler = AutoLRS(optimizer, task.model, 0.01, 0.1, total_steps=4000)
    assert scheduler.config.stage_steps == 100 and scheduler.config.max_stage_steps == 500


def test_importing_the_core_does_not_import_torch():
    code = (
        "import sys, autolrs, autolrs.core, autolrs.core.controller, autolrs.core.forecast, "
        "autolrs.core.search; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.state_dict().items()}


def test_a_budget_that_counts_the_search_ends_a_for_loop_of_that_many_steps():
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    config = small_config(total_steps=150, cooldown_fraction=0.2, budget_includes_search=True)
    scheduler = AutoLRS(optimizer, task.model, val_fn=task.val_loss, config=config)
    for step in range(150):
        assert not scheduler.finished
        scheduler.step(task.train_step(optimizer, step))
    assert scheduler.finished and scheduler.total_steps == 150 == scheduler.budget_used
    assert scheduler.update_steps < 150 and scheduler.get_last_lr()[0] == pytest.approx(0.0)
    with pytest.raises(AutoLRSError, match="150 optimizer steps"):
        scheduler.step(task.train_step(optimizer, 150))


def test_a_budget_spent_inside_a_trial_leaves_the_runs_own_weights_in_the_model():
    # Candidates above LR 0.05 report NaN and stop after one step: the steps they save are too
    # few for the next stage, inside whose first trial the budget then ends. The model must
    # end as the last stage left it, not as the trial did.
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    config = small_config(total_steps=60, budget_includes_search=True, seed=4)
    scheduler = AutoLRS(optimizer, task.model, config=config)
    committed, step = None, 0
    while not scheduler.finished:
        if committed is None and scheduler.stage == 1:
            committed = _weights(task.model)  # stage 0 trained: the snapshot of stage 1
        lr = scheduler.get_last_lr()[0]
        loss = task.train_step(optimizer, step)
        scheduler.step(math.nan if scheduler.phase == "trial" and lr > 0.05 else loss)
        step += 1
    assert step == 60 and committed is not None
    assert (
        scheduler.phase == "trial" and scheduler.update_steps == scheduler.history[0].stage_steps
    )
    after = _weights(task.model)
    assert all(torch.equal(committed[key], after[key]) for key in committed)


def test_a_stage_rolled_back_as_the_budget_ends_leaves_the_snapshot_in_the_model():
    # No cooldown: the last stage ends with the budget. It reports losses far above where it
    # started, so it is rolled back to be trained again, which the budget no longer allows:
    # the model must end as the snapshot, not as the rolled-back stage left it.
    task = Regression()
    optimizer = torch.optim.SGD(task.model.parameters(), lr=0.1)
    config = small_config(
        total_steps=60, budget_includes_search=True, restart_on_no_progress=True, seed=4
    )
    scheduler = AutoLRS(optimizer, task.model, config=config)
    snapshot, step = None, 0
    while not scheduler.finished:
        last_stage = scheduler.phase == "stage" and scheduler.budget_used >= 60 - 36
        if last_stage and snapshot is None:
            snapshot = _weights(task.model)
        loss = task.train_step(optimizer, step)
        scheduler.step(100.0 if last_stage else loss)
        step += 1
    stage = scheduler.history[0]
    assert step == 60 and snapshot is not None
    assert [(r.reason, r.steps) for r in stage.restarts] == [("no_progress", 36)]
    after = _weights(task.model)
    assert all(torch.equal(snapshot[key], after[key]) for key in snapshot)
