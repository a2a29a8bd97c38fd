"""The TensorBoard listener writes what the run did, read back from the event files."""

from __future__ import annotations

import math
import sys

import pytest
import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSConfig, AutoLRSError, ConfigError

pytest.importorskip(
    "tensorboard", reason="the tensorboard package is missing: pip install 'autolrs[tensorboard]'"
)

from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from autolrs.pytorch.tensorboard import TensorBoardLogger  # noqa: E402

torch.set_num_threads(1)

CONFIG = AutoLRSConfig(
    min_lr=1e-3,
    max_lr=0.5,
    stage_steps=16,
    max_stage_steps=32,
    trial_fraction=0.5,
    num_candidates=3,
    val_every=2,
    warmup_steps=6,
    warmup_lr=0.1,
    gp_fit_hyperparameters=False,
)


def train(update_steps: int, listeners=(), event_log=None, config=CONFIG):
    """A real seeded run; returns the scheduler and the (phase, lr, loss) of every step."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    model = nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = AutoLRS(
        optimizer,
        model,
        val_fn=lambda: nn.functional.mse_loss(model(x[:32]), y[:32]).item(),
        config=config,
        event_log=event_log,
    )
    for listener in listeners:
        scheduler.add_listener(listener)
    executed = []
    while scheduler.update_steps < update_steps:
        lr = optimizer.param_groups[0]["lr"]
        start = (len(executed) * 16) % 256
        loss = nn.functional.mse_loss(model(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        executed.append((scheduler.phase, lr, loss.item()))
        scheduler.step(loss)
    return scheduler, executed


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


@pytest.mark.parametrize("keep_last_trial", [False, True])
def test_the_logger_writes_every_step_forecast_and_stage_result(tmp_path, keep_last_trial):
    config = CONFIG.replace(keep_last_trial=keep_last_trial)
    with TensorBoardLogger(tmp_path / "tb") as listener:
        scheduler, executed = train(100, listeners=[listener], config=config)
    written = scalars(tmp_path / "tb")
    if keep_last_trial:  # the case where a trial's steps count as update steps
        assert any(s.chosen_lr == s.candidates[-1].lr for s in scheduler.history[:-1])

    # Every executed step of every finished command, at its 1-based executed-step number.
    logged = written["executed/loss"]
    assert [step for step, _ in logged] == list(range(1, len(logged) + 1))
    assert len(logged) == scheduler.controller.update_steps + scheduler.controller.search_steps
    assert [v for _, v in logged] == pytest.approx([e[2] for e in executed[: len(logged)]])
    assert [v for _, v in written["executed/lr"]] == pytest.approx(
        [e[1] for e in executed[: len(logged)]], rel=1e-6
    )

    # Update steps: the warmup ramp, then each stage's chosen LR over its τ steps.
    update_lr = dict(written["update/lr"])
    assert len(update_lr) == scheduler.controller.update_steps
    assert update_lr[1] == pytest.approx(0.1 / 6, rel=1e-6)
    assert update_lr[6] == pytest.approx(0.1, rel=1e-6)
    ended = scheduler.history[:-1]  # every stage but the one running when the loop stopped
    assert len(ended) >= 2
    for stage in ended:
        first, last = stage.start_update_step + 1, stage.start_update_step + stage.stage_steps
        assert update_lr[first] == update_lr[last] == pytest.approx(stage.chosen_lr, rel=1e-6)

    assert written["stage/chosen_lr"] == [
        (s.start_update_step + 1, pytest.approx(s.chosen_lr, rel=1e-6)) for s in ended
    ]
    ends = {s.index: s.start_update_step + s.stage_steps for s in ended}
    assert written["stage/predicted_loss"] == [
        (ends[s.index], pytest.approx(s.chosen_forecast, rel=1e-6)) for s in ended
    ]
    assert written["stage/reached_loss"] == [
        (ends[s.index], pytest.approx(s.final_loss, rel=1e-6))
        for s in ended
        if s.final_loss is not None
    ]

    candidates = [c for stage in scheduler.history for c in stage.candidates]
    assert [v for _, v in written["search/candidate_lr"]] == pytest.approx(
        [c.lr for c in candidates], rel=1e-6
    )
    forecasts = [c.forecast for c in candidates if c.forecast is not None]
    assert [v for _, v in written["search/forecast"]] == pytest.approx(forecasts, rel=1e-6)
    assert len(written["executed/val_loss"]) == scheduler.evaluations


def test_writing_a_finished_runs_log_gives_the_same_scalars_as_listening(tmp_path):
    log = tmp_path / "run.jsonl"
    with TensorBoardLogger(tmp_path / "live") as listener:
        train(60, listeners=[listener], event_log=log)
    with TensorBoardLogger(tmp_path / "offline") as offline:
        offline.write_log(log)
    assert scalars(tmp_path / "offline") == scalars(tmp_path / "live")


def test_non_finite_losses_are_left_out(tmp_path):
    with TensorBoardLogger(tmp_path / "tb") as listener:
        listener(
            {"event": "start", "config": CONFIG.to_dict(), "update_steps": 0, "search_steps": 0}
        )
        listener(
            {
                "event": "report",
                "seq": 1,
                "phase": "trial",
                "lr": 0.5,
                "end_lr": 0.5,
                "eval_every": 0,
                "losses": [1.0, math.inf, math.nan],
                "val_losses": [],
                "update_steps": 0,
                "search_steps": 3,
            }
        )
    assert scalars(tmp_path / "tb")["executed/loss"] == [(1, 1.0)]


def test_a_given_writer_is_used_with_the_prefix_and_left_open(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path / "tb"))
    listener = TensorBoardLogger(writer, prefix="autolrs/")
    train(30, listeners=[listener])
    listener.close()
    writer.add_scalar("mine", 1.0, 1)  # still open: the logger did not close it
    writer.close()
    tags = set(scalars(tmp_path / "tb"))
    assert "mine" in tags
    assert {"autolrs/update/lr", "autolrs/executed/loss"} <= tags


def test_a_missing_tensorboard_names_the_extra_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(AutoLRSError, match=r"pip install 'autolrs\[tensorboard\]'"):
        TensorBoardLogger(tmp_path / "tb")


def test_bad_arguments_are_rejected_with_what_was_given():
    with pytest.raises(ConfigError, match="writer must be a log folder or a SummaryWriter"):
        TensorBoardLogger(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prefix must be a string, got int"):
        TensorBoardLogger(SummaryWriter, prefix=3)  # type: ignore[arg-type]
