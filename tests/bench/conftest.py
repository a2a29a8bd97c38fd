"""A tiny fake task (noisy linear regression) that every harness test can train in moments."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from autolrs.bench.tasks.base import Task, TaskInstance, TaskSpec

FAKE_SPEC = TaskSpec(
    name="fake",
    version=1,
    variant="smoke",
    budget=80,
    eval_every=10,
    lr_grid=(0.003, 0.01, 0.03, 0.1),
    warmup_steps=4,
    optimizer="sgd",
    optimizer_kwargs={"momentum": 0.9, "weight_decay": 1e-4},
    description="noisy linear regression, 8 features, batch 16",
)


class FakeInstance(TaskInstance):
    """y = x·w* + noise; the model is one linear layer; losses are mean squared errors."""

    def __init__(self, spec: TaskSpec, seed: int, batch_norm: bool = False) -> None:
        generator = torch.Generator().manual_seed(1000 + seed)
        layers: list[torch.nn.Module] = [torch.nn.Linear(8, 1)]
        if batch_norm:
            layers.insert(0, torch.nn.BatchNorm1d(8))
        model = torch.nn.Sequential(*layers)
        with torch.no_grad():
            for param in model.parameters():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
        true_w = torch.randn(8, 1, generator=generator)
        self._x = torch.randn(512, 8, generator=generator)
        self._y = self._x @ true_w + 0.3 * torch.randn(512, 1, generator=generator)
        self._val_x = torch.randn(256, 8, generator=generator)
        self._val_y = self._val_x @ true_w + 0.3 * torch.randn(256, 1, generator=generator)
        self._generator = generator
        super().__init__(spec, seed, model, val_cost=16 / 3, probe_cost=10 / 3)

    def next_batch(self) -> Any:
        index = torch.randint(0, 512, (16,), generator=self._generator)
        return self._x[index], self._y[index]

    def stream_state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_stream_state_dict(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])

    def loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def _loss_on(self, x: torch.Tensor, y: torch.Tensor) -> float:
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            value = float(torch.nn.functional.mse_loss(self.model(x), y))
        self.model.train(was_training)
        return value

    def val_loss(self) -> float:
        return self._loss_on(self._val_x, self._val_y)

    def probe_loss(self) -> float:
        return self._loss_on(self._val_x[:160], self._val_y[:160])


class FakeTask(Task):
    def __init__(self, spec: TaskSpec = FAKE_SPEC, batch_norm: bool = False) -> None:
        super().__init__(spec)
        self.batch_norm = batch_norm

    def build(self, seed: int) -> FakeInstance:
        return FakeInstance(self.spec, seed, batch_norm=self.batch_norm)


@pytest.fixture
def fake_task() -> FakeTask:
    return FakeTask()


@pytest.fixture
def fake_task_with_norms() -> FakeTask:
    return FakeTask(batch_norm=True)


@pytest.fixture
def fake_spec() -> TaskSpec:
    return FAKE_SPEC


@pytest.fixture
def make_fake_task() -> type[FakeTask]:
    """The fake task's class, for tests that need it with another spec."""
    return FakeTask
