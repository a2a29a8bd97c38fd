"""AutoLRSCallback inside real ``lightning.pytorch`` Trainers: fit, logging, resume, DDP."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from integration_support import small_config
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins import MixedPrecision
from lightning_task import Regression, data, trainer_kwargs
from torch import nn

from autolrs import AutoLRS, AutoLRSError, ConfigError
from autolrs.integrations.lightning import AutoLRSCallback

WORKER = Path(__file__).with_name("lightning_ddp_worker.py")
REPO = Path(__file__).parents[2]

#: Update steps of the runs below: stage 0 (16) and stage 1 (32) complete, stage 2 begun.
BUDGET = 60


def fit(callback: AutoLRSCallback, module: pl.LightningModule | None = None, **kwargs):
    settings = {"callbacks": [callback], **kwargs.pop("trainer", {})}
    trainer = pl.Trainer(**trainer_kwargs(**settings))
    train, val = data()
    trainer.fit(module or Regression(), train, val, **kwargs)
    return trainer


def assert_same_history(a, b):
    assert len(a) == len(b)
    for stage_a, stage_b in zip(a, b, strict=True):
        da, db = stage_a.to_dict(), stage_b.to_dict()
        for key in ("index", "start_update_step", "start_total_step", "metric"):
            assert da[key] == db[key], key
        assert [c["lr"] for c in da["candidates"]] == pytest.approx(
            [c["lr"] for c in db["candidates"]], rel=1e-9
        )
        for ca, cb in zip(da["candidates"], db["candidates"], strict=True):
            assert ca["losses"] == pytest.approx(cb["losses"], rel=1e-5)
        assert da["chosen_lr"] == pytest.approx(db["chosen_lr"], rel=1e-9)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted fit with a CSV logger and a checkpoint at the end of every epoch."""
    root = tmp_path_factory.mktemp("lightning")
    callback = AutoLRSCallback(config=small_config(), total_steps=BUDGET, val_batches=2)
    checkpoints = ModelCheckpoint(
        dirpath=root / "ckpt", every_n_epochs=1, save_top_k=-1, save_on_train_epoch_end=True
    )
    trainer = fit(
        callback,
        trainer=dict(
            logger=CSVLogger(root, name="logs"),
            log_every_n_steps=1,
            enable_checkpointing=True,
            callbacks=[callback, checkpoints],
        ),
    )
    return trainer, callback, root


def test_fit_searches_two_stages_and_stops_at_the_budget(full_run):
    trainer, callback, _ = full_run
    scheduler = callback.scheduler
    assert scheduler.update_steps == BUDGET
    assert trainer.global_step == scheduler.total_steps  # every optimizer step was reported
    assert scheduler.search_steps > 0

    finished = [stage for stage in scheduler.history if stage.final_loss is not None]
    assert len(finished) >= 2
    assert [stage.metric for stage in finished[:2]] == ["train", "val"]  # validation at τ_max
    assert scheduler.evaluations > 0
    for stage in scheduler.history:
        assert stage.chosen_lr is not None
        assert 1e-3 <= stage.chosen_lr <= 0.5
        for candidate in stage.candidates:
            assert 1e-3 <= candidate.lr <= 0.5


def test_the_search_matches_a_plain_training_loop_step_for_step(full_run):
    # The same model, data order, optimizer and validation slice driven by AutoLRS directly:
    # any loss reported late, or state Lightning kept across a restore, would show here.
    _, callback, _ = full_run
    module = Regression()
    optimizer = module.configure_optimizers()
    train, val = data()
    val_batches = [batch for _, batch in zip(range(2), val, strict=False)]

    def val_loss() -> float:
        return sum(nn.functional.mse_loss(module.net(x), y).item() for x, y in val_batches) / 2

    scheduler = AutoLRS(optimizer, module, val_fn=val_loss, config=small_config())
    while scheduler.update_steps < BUDGET:
        for x, y in train:
            loss = nn.functional.mse_loss(module.net(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step(loss)
            if scheduler.update_steps == BUDGET:
                break

    assert scheduler.total_steps == callback.scheduler.total_steps
    assert_same_history(callback.scheduler.history, scheduler.history)


def test_lr_and_decisions_reach_the_logger_and_validation_leaks_no_metric(full_run):
    trainer, callback, root = full_run
    with open(root / "logs" / "version_0" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    logged_lrs = [float(r["autolrs/lr"]) for r in rows if r.get("autolrs/lr")]
    chosen = [float(r["autolrs/chosen_lr"]) for r in rows if r.get("autolrs/chosen_lr")]
    assert len(logged_lrs) == trainer.global_step
    assert chosen == pytest.approx([stage.chosen_lr for stage in callback.scheduler.history])
    # validation_step logs "val_loss"; run by AutoLRS, that call must not reach Lightning.
    assert "val_loss" not in trainer.callback_metrics
    assert all("val_loss" not in row or not row["val_loss"] for row in rows)


def test_validation_loss_is_the_mean_over_the_fixed_slice(full_run):
    _, callback, _ = full_run
    module = callback.scheduler.model
    _, val = data()
    batches = [batch for _, batch in zip(range(2), val, strict=False)]
    module.eval()
    with torch.no_grad():
        expected = sum(nn.functional.mse_loss(module.net(x), y).item() for x, y in batches) / 2
        assert callback.scheduler.val_fn() == pytest.approx(expected, rel=1e-6)
    module.train()


def test_resume_from_checkpoint_continues_the_search_exactly(full_run):
    _, uninterrupted, root = full_run
    # Global step 70 is the end of epoch 7, in the middle of stage 1's candidate trials.
    checkpoint = root / "ckpt" / "epoch=6-step=70.ckpt"
    saved = torch.load(checkpoint, weights_only=False)["callbacks"]["AutoLRSCallback"]
    assert saved["autolrs"]["controller"]["stage_index"] == 1
    assert saved["autolrs"]["snapshot"] is not None

    callback = AutoLRSCallback(config=small_config(), total_steps=BUDGET, val_batches=2)
    trainer = fit(callback, Regression(seed=1), ckpt_path=checkpoint)

    assert callback.scheduler.update_steps == BUDGET
    assert trainer.global_step == uninterrupted.scheduler.total_steps
    assert_same_history(callback.scheduler.history, uninterrupted.scheduler.history)


def test_validation_loss_returned_by_validation_step_is_used():
    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_batches=2)
    fit(callback, Regression(val_returns_loss=True))
    assert callback.scheduler.evaluations > 0
    assert callback.scheduler.history[1].metric == "val"


def test_val_fn_replaces_the_slice_and_runs_in_eval_mode_without_grad():
    seen = []

    def val_fn(module: pl.LightningModule) -> float:
        seen.append((module.training, torch.is_grad_enabled()))
        return 1.0 / (1 + len(seen))

    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_fn=val_fn)
    fit(callback)
    assert len(seen) == callback.scheduler.evaluations > 0
    assert set(seen) == {(False, False)}


def test_validation_step_without_a_loss_is_an_error_naming_the_fixes():
    class NoLoss(Regression):
        def validation_step(self, batch, batch_idx):
            self.log("mse", torch.tensor(1.0))

    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_batches=2)
    with pytest.raises(AutoLRSError, match="val_key") as info:
        fit(callback, NoLoss())
    assert "mse" in str(info.value)


def test_manual_optimization_is_supported():
    class Manual(Regression):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            optimizer = self.optimizers()
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            return loss

    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_batches=2)
    trainer = fit(callback, Manual())
    assert callback.scheduler.update_steps == 48
    assert trainer.global_step == callback.scheduler.total_steps
    assert [stage.final_loss is not None for stage in callback.scheduler.history] == [
        True,
        True,
        False,  # stage 2 had just begun its search when the budget was reached
    ]


def test_a_step_without_a_returned_loss_is_an_error():
    class Silent(Regression):
        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False

        def training_step(self, batch, batch_idx):
            x, y = batch
            self.manual_backward(nn.functional.mse_loss(self.net(x), y))
            self.optimizers().step()

    with pytest.raises(AutoLRSError, match="must return its loss"):
        fit(AutoLRSCallback(config=small_config()), Silent())


def test_batches_without_an_optimizer_step_are_not_reported():
    class SkipsOdd(Regression):
        trained = 0

        def training_step(self, batch, batch_idx):
            if batch_idx % 2:
                return None  # Lightning skips the backward pass of this batch
            self.trained += 1
            return super().training_step(batch, batch_idx)

    module = SkipsOdd()
    callback = AutoLRSCallback(config=small_config(), total_steps=20, val_batches=2)
    fit(callback, module)
    assert callback.scheduler.total_steps == module.trained


def test_amp_skipped_steps_are_not_reported_and_the_grad_scaler_is_snapshotted():
    # fp16 autocast on the CPU with a scale so large that the first steps overflow and are
    # skipped by the GradScaler; after every restore the scaler starts over from its snapshot.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_batches=2)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    trainer = fit(callback, trainer=dict(plugins=[plugin]))

    scheduler = callback.scheduler
    assert set(scheduler.state_dict()["snapshot"]["extra"]) == {"grad_scaler"}
    assert scheduler.update_steps == 48
    assert scheduler.total_steps < trainer.global_step  # skipped steps were not reported
    assert scaler.get_scale() < 2.0**24


def test_an_lr_scheduler_from_configure_optimizers_is_refused():
    class Scheduled(Regression):
        def configure_optimizers(self):
            optimizer = super().configure_optimizers()
            return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, 10)]

    with pytest.raises(ConfigError, match="StepLR"):
        fit(AutoLRSCallback(config=small_config()), Scheduled())


def test_gradient_accumulation_is_refused():
    with pytest.raises(ConfigError, match="accumulate_grad_batches=2"):
        fit(AutoLRSCallback(config=small_config()), trainer=dict(accumulate_grad_batches=2))


def test_a_low_max_steps_is_warned_about(caplog):
    callback = AutoLRSCallback(config=small_config(), total_steps=48)
    with caplog.at_level("WARNING", logger="autolrs.integrations._common"):
        fit(callback, trainer=dict(max_steps=50))
    assert "max_steps=50" in caplog.text
    assert callback.scheduler.total_steps == 50  # Lightning's own cap ended the run


def test_without_validation_data_the_training_loss_is_forecast():
    callback = AutoLRSCallback(config=small_config(), total_steps=48)
    trainer = pl.Trainer(**trainer_kwargs(callbacks=[callback]))
    train, _ = data()
    trainer.fit(Regression(), train)
    assert callback.scheduler.evaluations == 0
    assert {stage.metric for stage in callback.scheduler.history} == {"train"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(), "min_lr and max_lr are required"),
        (dict(min_lr=1e-3, max_lr=0.1, val_batches=-1), "val_batches must be >= 0"),
        (dict(min_lr=1e-3, max_lr=0.1, total_steps=0), "total_steps must be >= 1"),
        (dict(min_lr=1e-3, max_lr=0.1, val_fn=3), "val_fn must be callable"),
        (dict(min_lr=1e-3, max_lr=0.1, val_key=""), "val_key must be a non-empty string"),
        (dict(min_lr=0.1, max_lr=1e-3), "min_lr must be smaller than max_lr"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AutoLRSCallback(**kwargs)


def test_config_and_total_steps_combine_as_algorithm_and_budget():
    callback = AutoLRSCallback(min_lr=2e-3, config=small_config(), total_steps=1000)
    assert callback.config == small_config(min_lr=2e-3)  # not rescaled by the budget
    assert callback.total_steps == 1000


def test_state_of_a_callback_that_never_trained_is_empty_and_loads_as_nothing():
    callback = AutoLRSCallback(config=small_config())
    assert callback.state_dict() == {}
    callback.load_state_dict({})
    with pytest.raises(ConfigError, match="format"):
        callback.load_state_dict({"format": 99, "autolrs": {}})


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_gives_every_rank_the_same_history(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("MASTER_PORT", None)
    result = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path)],
        env=env,
        cwd=WORKER.parent,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    records = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["rank"] for r in records] == [0, 1]
    assert all(r["world_size"] == 2 for r in records)
    assert records[0]["history"] == records[1]["history"]
    assert records[0]["weights"] == records[1]["weights"]
    assert records[0]["update_steps"] == 48
    assert records[0]["global_step"] == 48 + records[0]["search_steps"]
    history = records[0]["history"]
    assert [stage["metric"] for stage in history[:2]] == ["train", "val"]
    assert all(s["final_loss"] is not None and math.isfinite(s["final_loss"]) for s in history[:2])
    assert all(1e-3 <= s["chosen_lr"] <= 0.5 for s in history if s["chosen_lr"] is not None)


def test_with_the_default_config_the_budget_is_lightnings_max_steps(caplog):
    # total_steps and no config: AutoLRSConfig.for_budget, whose budget counts every
    # optimizer step, the search's too; max_steps=total_steps is then the same limit.
    callback = AutoLRSCallback(1e-3, 0.5, total_steps=80, val_batches=2)
    assert callback.config.budget_includes_search
    with caplog.at_level("WARNING", logger="autolrs.integrations._common"):
        trainer = fit(callback, trainer=dict(max_steps=80))
    assert "max_steps" not in caplog.text
    scheduler = callback.scheduler
    assert scheduler.finished and trainer.global_step == 80 == scheduler.total_steps
    assert 0 < scheduler.search_steps and scheduler.update_steps < 80
    assert scheduler.history[-1].cooldown or scheduler.history[-2].cooldown
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0)
