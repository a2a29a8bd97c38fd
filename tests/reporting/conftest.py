"""A real AutoLRS run with an event log, shared by the report tests (it takes a few seconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autolrs import AutoLRSConfig

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


@dataclass(frozen=True)
class RecordedRun:
    """The log of a run and what its training loop saw."""

    log: Path
    scheduler: Any  # the AutoLRS scheduler that wrote the log
    executed: list[tuple[str, float, float]]  # (phase, lr, loss) of every executed step


def record_run(log: Path, update_steps: int = 110) -> RecordedRun:
    """Train a seeded regression; one candidate and one stage's training get a NaN loss."""
    torch = pytest.importorskip("torch", reason="the report tests record a real PyTorch run")
    from autolrs import AutoLRS

    torch.manual_seed(0)
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=generator)
    y = x.sum(dim=1, keepdim=True) + 0.05 * torch.randn(256, 1, generator=generator)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def val_fn() -> float:
        return torch.nn.functional.mse_loss(model(x[:32]), y[:32]).item()

    scheduler = AutoLRS(optimizer, model, val_fn=val_fn, config=CONFIG, event_log=log)
    executed: list[tuple[str, float, float]] = []
    nan_left = {"trial": 1, "stage": 1}  # a failed candidate, then a restarted stage
    while scheduler.update_steps < update_steps:
        phase, lr = scheduler.phase, optimizer.param_groups[0]["lr"]
        start = (len(executed) * 16) % 256
        loss = torch.nn.functional.mse_loss(model(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        value = loss.item()
        if scheduler.stage == 1 and nan_left.get(phase, 0) > 0:
            nan_left[phase] -= 1
            value = math.nan
        executed.append((phase, lr, value))
        scheduler.step(value)
    return RecordedRun(log=log, scheduler=scheduler, executed=executed)


@pytest.fixture(scope="session")
def recorded_run(tmp_path_factory: pytest.TempPathFactory) -> RecordedRun:
    return record_run(tmp_path_factory.mktemp("run") / "run.jsonl")
