"""The event log rebuilds the whole history, across NaN losses and a resume."""

from __future__ import annotations

import json
import math

import torch

from autolrs import AutoLRS, AutoLRSConfig
from autolrs.events import read_events, replay_history

torch.set_num_threads(1)

CONFIG = AutoLRSConfig(
    min_lr=1e-3,
    max_lr=0.5,
    stage_steps=16,
    max_stage_steps=32,
    trial_fraction=0.5,
    num_candidates=3,
    val_every=2,
    gp_fit_hyperparameters=False,
)


def build(log=None):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = x.sum(dim=1, keepdim=True)

    def val_fn() -> float:
        return torch.nn.functional.mse_loss(model(x[:32]), y[:32]).item()

    scheduler = AutoLRS(optimizer, model, val_fn=val_fn, config=CONFIG, event_log=log)
    return model, optimizer, scheduler, x, y


def train(model, optimizer, scheduler, x, y, steps, nan_at=()):
    for _ in range(steps):
        step = scheduler.total_steps
        start = (step * 16) % 256
        loss = torch.nn.functional.mse_loss(model(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step(math.nan if step in nan_at else loss)


def test_replaying_the_log_rebuilds_the_history_exactly(tmp_path):
    log = tmp_path / "run.jsonl"
    run = build(log)
    train(*run, steps=150, nan_at={3, 60})
    scheduler = run[2]

    config, history = replay_history(log)
    assert config == CONFIG
    assert [s.to_dict() for s in history] == [s.to_dict() for s in scheduler.history]
    events = list(read_events(log))
    kinds = {e["event"] for e in events}
    assert {"start", "snapshot", "restore", "report", "candidate", "choice", "stage_end"} <= kinds
    for line in log.read_text().splitlines():  # strict JSON: no bare NaN
        json.loads(line, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    failed = [
        e for e in events if e["event"] == "candidate" and e["candidate"]["forecast"] is None
    ]
    assert failed, "the NaN losses show up as failed candidates"
    times = [e["time"] for e in events]
    assert times == sorted(times)


def test_a_resumed_run_appends_to_the_log_and_replay_follows_the_resume(tmp_path):
    reference = build()
    train(*reference, steps=150)

    log = tmp_path / "run.jsonl"
    model, optimizer, scheduler, x, y = build(log)
    train(model, optimizer, scheduler, x, y, steps=50)
    checkpoint = {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    train(model, optimizer, scheduler, x, y, steps=30)  # lost when the process dies

    model, optimizer, scheduler, x, y = build(log)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    train(model, optimizer, scheduler, x, y, steps=100)

    _, history = replay_history(log)
    assert [s.to_dict() for s in history] == [s.to_dict() for s in reference[2].history]
