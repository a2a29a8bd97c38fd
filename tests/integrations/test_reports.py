"""Lightning, the Hugging Face Trainer and a plain loop all give the same kind of report."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from integration_support import small_config
from lightning_task import Regression, data, trainer_kwargs

from autolrs import AutoLRS
from autolrs.events import replay_history
from autolrs.integrations.lightning import AutoLRSCallback as LightningCallback
from autolrs.reporting.report import write_report

BUDGET = 60


def check_report(log, out, history) -> None:
    """The log replays into ``history`` exactly, and the report's files are all written."""
    _, replayed = replay_history(log)
    assert [s.to_dict() for s in replayed] == [s.to_dict() for s in history]
    files = write_report(log, out)
    assert files.html.stat().st_size > 10_000
    for figure in (files.timeline, files.schedule, *files.stages):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(files.stages) >= 2


def test_a_lightning_fit_writes_a_log_that_reports(tmp_path):
    log = tmp_path / "lightning.jsonl"
    callback = LightningCallback(
        config=small_config(), total_steps=BUDGET, val_batches=2, event_log=log
    )
    trainer = pl.Trainer(**trainer_kwargs(callbacks=[callback]))
    train, val = data()
    trainer.fit(Regression(), train, val)
    check_report(log, tmp_path / "lightning-report", callback.scheduler.history)


def test_a_hugging_face_run_writes_a_log_that_reports(tmp_path):
    from test_transformers import callback, make_trainer

    log = tmp_path / "hf.jsonl"
    trainer = make_trainer(tmp_path / "out")
    autolrs = callback(event_log=log).attach(trainer)
    trainer.train()
    check_report(log, tmp_path / "hf-report", autolrs.scheduler.history)


def test_a_plain_loop_writes_a_log_that_reports(tmp_path):
    log = tmp_path / "plain.jsonl"
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(256, 4)
    y = x.sum(dim=1, keepdim=True)

    def val_fn() -> float:
        return torch.nn.functional.mse_loss(model(x[:32]), y[:32]).item()

    scheduler = AutoLRS(optimizer, model, val_fn=val_fn, config=small_config(), event_log=log)
    while scheduler.update_steps < BUDGET:
        start = (scheduler.total_steps * 16) % 256
        loss = torch.nn.functional.mse_loss(model(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step(loss)
    scheduler.close()
    check_report(log, tmp_path / "plain-report", scheduler.history)
