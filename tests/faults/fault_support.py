"""A tiny seeded training run for the fault tests: model, SGD with momentum, data, scheduler."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSConfig

#: Optimizer steps from the start to the end of stage 0 under :func:`small_config`: three
#: trials of τ' = 8 steps, then τ = 16 steps of stage training.
STAGE_0_STEPS = 3 * 8 + 16


def small_config(**changes: Any) -> AutoLRSConfig:
    """Stages of 16 steps doubling to 32, three candidates of half a stage each: fast."""
    base: dict[str, Any] = dict(
        min_lr=1e-3,
        max_lr=0.1,
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


class Run:
    """A seeded regression problem trained under :class:`AutoLRS`, with a fixed data order.

    Args:
        build: Whether to build the scheduler now (False: set ``self.scheduler`` yourself).
        **scheduler_args: Keyword arguments of :class:`AutoLRS`; ``config`` defaults to
            :func:`small_config`.
    """

    def __init__(self, build: bool = True, **scheduler_args: Any) -> None:
        g = torch.Generator().manual_seed(0)
        w = torch.randn(8, 1, generator=g)
        self.x = torch.randn(512, 8, generator=g)
        self.y = self.x @ w + 0.1 * torch.randn(512, 1, generator=g)
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.steps_taken = 0  # optimizer steps; the data order follows them
        if "config" not in scheduler_args and "min_lr" not in scheduler_args:
            scheduler_args["config"] = small_config()
        self.scheduler_args = scheduler_args
        self.scheduler: AutoLRS | None = self.make_scheduler() if build else None

    def make_scheduler(self) -> AutoLRS:
        return AutoLRS(self.optimizer, self.model, **self.scheduler_args)

    def train_step(self) -> torch.Tensor:
        """One optimizer step on the next mini-batch of 16; returns its loss."""
        start = (self.steps_taken * 16) % 512
        x, y = self.x[start : start + 16], self.y[start : start + 16]
        loss = nn.functional.mse_loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.steps_taken += 1
        return loss.detach()

    def step(self) -> None:
        """A training step reported to the scheduler."""
        assert self.scheduler is not None
        self.scheduler.step(self.train_step())

    def steps(self, count: int) -> None:
        for _ in range(count):
            self.step()

    def state(self) -> dict[str, Any]:
        """A deep copy of the model's and the optimizer's state."""
        return copy.deepcopy(
            {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        )


def assert_same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Model and optimizer states equal bit for bit."""
    assert a["model"].keys() == b["model"].keys()
    for key, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][key]), key
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    for index, values in state_a.items():
        for name, value in values.items():
            other = state_b[index][name]
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, other), (index, name)
            else:
                assert value == other, (index, name)
    assert a["optimizer"]["param_groups"] == b["optimizer"]["param_groups"]
