"""AutoLRSCallback on a real Hugging Face ``Trainer`` with a tiny GPT-2 built from a config."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from integration_support import small_config
from torch.utils.data import Dataset, Subset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from autolrs import AutoLRSError, ConfigError
from autolrs.integrations.transformers import (
    STATE_FILE,
    AutoLRSCallback,
    HeldLRScheduler,
    _checkpoint_folder,
)

#: Update steps of the runs below: stage 0 (16) and stage 1 (32) complete, stage 2 begun.
BUDGET = 60
MIN_LR, MAX_LR = 1e-4, 3e-2


class Sequences(Dataset):
    """Arithmetic sequences modulo 32: next-token prediction a tiny GPT-2 learns quickly."""

    def __init__(self, count: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, 32, (count, 1), generator=g)
        stride = torch.randint(1, 4, (count, 1), generator=g)
        self.ids = (start + stride * torch.arange(16)) % 32

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def tiny_gpt2(seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=32,
        n_positions=16,
        n_embd=32,
        n_layer=1,
        n_head=2,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def make_trainer(output_dir: Path, *, model_seed: int = 0, **changes) -> Trainer:
    """160 training sequences in batches of 16: 10 steps per epoch."""
    settings = dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=16,
        per_device_eval_batch_size=16,
        max_steps=1000,
        save_strategy="no",
        logging_steps=10,
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(changes)
    optimizers = settings.pop("optimizers", (None, None))
    return Trainer(
        model=tiny_gpt2(model_seed),
        args=TrainingArguments(**settings),
        train_dataset=Sequences(160, seed=0),
        eval_dataset=Sequences(64, seed=1),
        optimizers=optimizers,
    )


def callback(**changes) -> AutoLRSCallback:
    settings = dict(
        config=small_config(min_lr=MIN_LR, max_lr=MAX_LR), total_steps=BUDGET, val_batches=2
    )
    settings.update(changes)
    return AutoLRSCallback(**settings)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """One uninterrupted run, checkpointed every 10 steps."""
    out = tmp_path_factory.mktemp("hf")
    trainer = make_trainer(out, save_strategy="steps", save_steps=10)
    autolrs = callback().attach(trainer)
    trainer.train()
    return trainer, autolrs, out


def test_train_searches_two_stages_and_stops_at_the_budget(full_run):
    trainer, autolrs, _ = full_run
    scheduler = autolrs.scheduler
    assert scheduler.update_steps == BUDGET
    assert trainer.state.global_step == scheduler.total_steps
    finished = [stage for stage in scheduler.history if stage.final_loss is not None]
    assert len(finished) >= 2
    assert [stage.metric for stage in finished[:2]] == ["train", "val"]
    for stage in scheduler.history:
        assert MIN_LR <= stage.chosen_lr <= MAX_LR
        assert all(MIN_LR <= c.lr <= MAX_LR for c in stage.candidates)


def test_the_trainer_logs_the_searched_lr_and_each_decision(full_run):
    trainer, autolrs, _ = full_run
    history = autolrs.scheduler.history
    log = trainer.state.log_history
    chosen = [entry["autolrs/chosen_lr"] for entry in log if "autolrs/chosen_lr" in entry]
    assert chosen == pytest.approx([stage.chosen_lr for stage in history])
    # Every LR the Trainer logged is one AutoLRS set, not its own linear decay.
    searched = {c.lr for stage in history for c in stage.candidates}
    logged = [entry["learning_rate"] for entry in log if "learning_rate" in entry]
    assert logged
    assert all(any(lr == pytest.approx(s, rel=1e-9) for s in searched) for lr in logged)


def test_every_checkpoint_holds_the_search_state(full_run):
    _, _, out = full_run
    folders = sorted(out.glob("checkpoint-*"))
    assert len(folders) == 18
    assert all((folder / STATE_FILE).is_file() for folder in folders)
    saved = torch.load(out / "checkpoint-70" / STATE_FILE, weights_only=True)
    assert saved["autolrs"]["controller"]["stage_index"] == 1  # mid-search of stage 1
    assert saved["autolrs"]["snapshot"] is not None


def test_resume_from_checkpoint_continues_the_search_exactly(full_run, tmp_path):
    trainer, uninterrupted, out = full_run
    resumed_trainer = make_trainer(tmp_path, model_seed=1)
    resumed = callback().attach(resumed_trainer)
    resumed_trainer.train(resume_from_checkpoint=str(out / "checkpoint-70"))

    assert resumed.scheduler.update_steps == BUDGET
    assert resumed_trainer.state.global_step == trainer.state.global_step
    expected, actual = uninterrupted.scheduler.history, resumed.scheduler.history
    assert len(actual) == len(expected)
    for a, b in zip(actual, expected, strict=True):
        assert a.chosen_lr == pytest.approx(b.chosen_lr, rel=1e-9)
        assert [c.lr for c in a.candidates] == pytest.approx([c.lr for c in b.candidates])
        for ca, cb in zip(a.candidates, b.candidates, strict=True):
            assert ca.losses == pytest.approx(cb.losses, rel=1e-5)


def test_resuming_from_a_checkpoint_without_search_state_is_an_error(full_run, tmp_path):
    _, _, out = full_run
    checkpoint = tmp_path / "checkpoint-70"
    shutil.copytree(out / "checkpoint-70", checkpoint)
    (checkpoint / STATE_FILE).unlink()
    trainer = make_trainer(tmp_path / "run")
    callback().attach(trainer)
    with pytest.raises(AutoLRSError, match=f"holds no {STATE_FILE}"):
        trainer.train(resume_from_checkpoint=str(checkpoint))


def test_validation_loss_is_the_trainers_eval_loss_on_the_fixed_slice(full_run):
    trainer, autolrs, _ = full_run
    first_two_batches = Subset(Sequences(64, seed=1), range(32))
    expected = trainer.evaluate(eval_dataset=first_two_batches)["eval_loss"]
    trainer.model.eval()
    with torch.no_grad():
        assert autolrs.scheduler.val_fn() == pytest.approx(expected, rel=1e-5)
    trainer.model.train()


def test_with_gradient_accumulation_a_step_loss_is_the_sum_over_micro_batches(tmp_path):
    # Two micro-batches of 8 make the same optimizer step as one batch of 16, so AutoLRS must
    # see the same per-step losses (the first candidate's 8 trial steps).
    runs = []
    for batch, accumulation in ((16, 1), (8, 2)):
        trainer = make_trainer(
            tmp_path / str(batch),
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=accumulation,
            max_steps=8,
        )
        runs.append(callback(total_steps=None).attach(trainer))
        trainer.train()
    single, accumulated = (run.scheduler.history[0].candidates[0].losses for run in runs)
    assert len(single) == 8
    assert accumulated == pytest.approx(single, rel=1e-4)


def test_a_callback_passed_without_attach_is_an_error(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.add_callback(callback())
    with pytest.raises(AutoLRSError, match=r"attach\(trainer\)"):
        trainer.train()


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(lr_scheduler_type="cosine"), "lr_scheduler_type='cosine'"),
        (dict(warmup_steps=5), "warmup_steps=5"),
    ],
)
def test_a_trainer_that_schedules_the_lr_itself_is_refused(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        callback().attach(make_trainer(tmp_path, **changes))


def test_a_trainer_given_an_lr_scheduler_is_refused(tmp_path):
    model_params = [torch.nn.Parameter(torch.zeros(1))]
    optimizer = torch.optim.SGD(model_params, lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 10)
    trainer = make_trainer(tmp_path, optimizers=(optimizer, scheduler))
    with pytest.raises(ConfigError, match=r"StepLR.*optimizers=\(optimizer, None\)"):
        callback().attach(trainer)


def test_attaching_twice_or_to_something_else_is_refused(tmp_path):
    trainer = make_trainer(tmp_path)
    first = callback().attach(trainer)
    with pytest.raises(ConfigError, match="already has an AutoLRSCallback"):
        callback().attach(trainer)
    with pytest.raises(ConfigError, match="already attached"):
        first.attach(make_trainer(tmp_path))
    with pytest.raises(ConfigError, match="needs a transformers.Trainer"):
        callback().attach(object())


def test_the_held_scheduler_reports_the_optimizer_lr_and_never_changes_it(tmp_path):
    trainer = make_trainer(tmp_path)
    held = HeldLRScheduler(trainer)
    with pytest.raises(AutoLRSError, match="no optimizer yet"):
        held.get_last_lr()
    trainer.create_optimizer()
    for group in trainer.optimizer.param_groups:
        group["lr"] = 0.25
    held.step()
    assert held.get_last_lr() == [0.25] * len(trainer.optimizer.param_groups)
    assert held.state_dict() == {}


def test_resume_argument_resolves_like_the_trainer(tmp_path):
    assert _checkpoint_folder(None, str(tmp_path)) is None
    assert _checkpoint_folder(False, str(tmp_path)) is None
    assert _checkpoint_folder("elsewhere/checkpoint-5", str(tmp_path)) == Path(
        "elsewhere/checkpoint-5"
    )
    assert _checkpoint_folder(True, str(tmp_path)) is None
    for step in (5, 40):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert _checkpoint_folder(True, str(tmp_path)) == tmp_path / "checkpoint-40"


def test_with_the_default_config_the_budget_is_the_trainers_max_steps(tmp_path, caplog):
    # total_steps and no config: AutoLRSConfig.for_budget, whose budget counts every
    # optimizer step, the search's too; max_steps=total_steps is then the same limit.
    trainer = make_trainer(tmp_path, max_steps=80)
    autolrs = AutoLRSCallback(MIN_LR, MAX_LR, total_steps=80, val_batches=2).attach(trainer)
    assert autolrs.config.budget_includes_search
    with caplog.at_level("WARNING", logger="autolrs.integrations._common"):
        trainer.train()
    assert "max_steps" not in caplog.text
    scheduler = autolrs.scheduler
    assert scheduler.finished and trainer.state.global_step == 80 == scheduler.total_steps
    assert 0 < scheduler.search_steps and scheduler.update_steps < 80
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0)
