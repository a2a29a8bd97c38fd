"""The contract between a benchmark task and the harness that trains on it.

A :class:`Task` is a recipe (its :class:`TaskSpec` says how the baselines and AutoLRS may train
it); :meth:`Task.build` turns it into a :class:`TaskInstance`, one seeded model with its data
stream, its optimizer factory and its two validation measures. The harness only ever speaks this
interface, so every task can be driven by the same training loop::

    instance = task.build(seed=0)
    optimizer = instance.make_optimizer(lr)
    for step in range(task.spec.budget):
        optimizer.zero_grad()
        instance.loss(instance.next_batch()).backward()
        optimizer.step()
    final = instance.val_loss()

Cost unit: one optimizer step (forward + backward + update on one training batch). A forward
pass alone is counted as 1/3 of a step, so a validation pass over ``n`` batches of the training
batch size costs ``n / 3``.
"""

from __future__ import annotations

import math
import numbers
import types
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from autolrs.errors import AutoLRSError, ConfigError

__all__ = [
    "TaskDataError",
    "VARIANTS",
    "OPTIMIZERS",
    "FORWARD_COST",
    "TaskSpec",
    "TaskInstance",
    "Task",
]

VARIANTS = ("standard", "smoke")
OPTIMIZERS = ("sgd", "adamw")

# A forward pass costs about a third of a training step (the backward pass is about twice it).
FORWARD_COST = 1.0 / 3.0


class TaskDataError(AutoLRSError, RuntimeError):
    """A task's data is missing or is not what the task expects."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything the harness may know about a task, validated on construction.

    Every method benchmarked on a task gets exactly this information and nothing more: the
    tuned baselines sweep ``lr_grid``, AutoLRS searches ``[min(lr_grid), max(lr_grid)]``, and
    all of them use the same optimizer, non-LR settings and fixed warmup.

    Attributes:
        name: Registry name of the task, e.g. ``"nqm"`` or ``"fmnist-mlp"``.
        version: ≥ 1. Bumped whenever anything that changes results changes (model, data,
            split, settings), so stored reference curves can be matched to the code.
        variant: ``"standard"`` (the benchmark proper) or ``"smoke"`` (a run of a few seconds
            that keeps the harness working in CI; its numbers mean nothing).
        budget: T, the update steps of one run. ≥ 1.
        eval_every: Update steps between two full validations of a run (about 20 to 40
            points per run). In [1, ``budget``].
        lr_grid: Peak LRs of the tuned baselines, ascending, about 3× apart (the 1-3-10
            series), wide enough that both ends are clearly worse than the best point. At
            least 2 values, all > 0.
        warmup_steps: Linear warmup every method uses, in update steps, not searched; 0 means
            none. In [0, ``budget``).
        optimizer: ``"sgd"`` or ``"adamw"``; the harness builds Schedule-Free's matching
            variant from it.
        optimizer_kwargs: Non-LR constructor arguments of the optimizer, e.g.
            ``{"momentum": 0.9, "weight_decay": 5e-4}``. Stored read-only.
        description: One line: model, data, batch size and metric.
    """

    name: str
    version: int
    variant: str
    budget: int
    eval_every: int
    lr_grid: tuple[float, ...]
    warmup_steps: int
    optimizer: str
    optimizer_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name must be a non-empty string, got {self.name!r}")
        _check_int("version", self.version, minimum=1)
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        _check_int("budget", self.budget, minimum=1)
        _check_int("eval_every", self.eval_every, minimum=1)
        if self.eval_every > self.budget:
            raise ConfigError(
                f"eval_every must be <= budget={self.budget}, got {self.eval_every!r}"
            )
        grid = tuple(self.lr_grid)
        if len(grid) < 2 or not all(_is_positive_real(lr) for lr in grid):
            raise ConfigError(f"lr_grid must hold at least 2 finite LRs > 0, got {grid!r}")
        if any(low >= high for low, high in zip(grid[:-1], grid[1:], strict=True)):
            raise ConfigError(f"lr_grid must be strictly ascending, got {grid!r}")
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.warmup_steps >= self.budget:
            raise ConfigError(
                f"warmup_steps must be < budget={self.budget}, got {self.warmup_steps!r}"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not isinstance(self.optimizer_kwargs, Mapping):
            raise ConfigError(
                f"optimizer_kwargs must be a mapping, got {type(self.optimizer_kwargs).__name__}"
            )
        if "lr" in self.optimizer_kwargs:
            raise ConfigError(
                "optimizer_kwargs must not hold 'lr' (the LR comes from lr_grid or the search), "
                f"got {dict(self.optimizer_kwargs)!r}"
            )
        if not isinstance(self.description, str):
            raise ConfigError(f"description must be a string, got {self.description!r}")
        object.__setattr__(self, "lr_grid", tuple(float(lr) for lr in grid))
        object.__setattr__(
            self, "optimizer_kwargs", types.MappingProxyType(dict(self.optimizer_kwargs))
        )

    @property
    def lr_range(self) -> tuple[float, float]:
        """``(min(lr_grid), max(lr_grid))``: the search range AutoLRS is given."""
        return self.lr_grid[0], self.lr_grid[-1]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (tuples become lists)."""
        return {
            "name": self.name,
            "version": self.version,
            "variant": self.variant,
            "budget": self.budget,
            "eval_every": self.eval_every,
            "lr_grid": list(self.lr_grid),
            "warmup_steps": self.warmup_steps,
            "optimizer": self.optimizer,
            "optimizer_kwargs": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in self.optimizer_kwargs.items()
            },
            "description": self.description,
        }


class TaskInstance(ABC):
    """One seeded build of a task: a model in train mode, its data stream and its metrics.

    Subclasses set up the model and data, then call ``super().__init__``; they implement
    :meth:`next_batch`, :meth:`loss`, :meth:`val_loss` and :meth:`probe_loss`.

    Attributes:
        spec: The task's spec.
        seed: The seed this instance was built from.
        model: The network being trained; its parameters are what the optimizer updates.
        val_cost: Cost of one :meth:`val_loss` call, in optimizer-step equivalents.
        probe_cost: Cost of one :meth:`probe_loss` call, in optimizer-step equivalents.
    """

    def __init__(
        self,
        spec: TaskSpec,
        seed: int,
        model: torch.nn.Module,
        *,
        val_cost: float,
        probe_cost: float,
    ) -> None:
        for name, cost in (("val_cost", val_cost), ("probe_cost", probe_cost)):
            if not (_is_real(cost) and math.isfinite(cost) and cost >= 0):  # type: ignore[arg-type]
                raise ConfigError(f"{name} must be a finite number >= 0, got {cost!r}")
        self.spec = spec
        self.seed = seed
        self.model = model
        self.val_cost = float(val_cost)
        self.probe_cost = float(probe_cost)
        self.model.train()

    def make_optimizer(self, lr: float) -> torch.optim.Optimizer:
        """The spec's optimizer, with its non-LR settings, over all of ``self.model``'s params.

        Args:
            lr: Learning rate the optimizer starts with. Finite and > 0.
        """
        if not _is_positive_real(lr):
            raise ConfigError(f"lr must be a finite number > 0, got {lr!r}")
        params = self.model.parameters()
        kwargs = dict(self.spec.optimizer_kwargs)
        if self.spec.optimizer == "sgd":
            return torch.optim.SGD(params, lr=float(lr), **kwargs)
        return torch.optim.AdamW(params, lr=float(lr), **kwargs)

    @abstractmethod
    def next_batch(self) -> Any:
        """The next training batch of a seeded, infinite stream (reshuffled every epoch)."""

    @abstractmethod
    def stream_state_dict(self) -> dict[str, Any]:
        """Where the training stream stands: :meth:`load_stream_state_dict` replays from here."""

    @abstractmethod
    def load_stream_state_dict(self, state: dict[str, Any]) -> None:
        """Put the stream back where :meth:`stream_state_dict` found it."""

    @property
    def stream(self) -> DataStream:
        """The training stream as an object with ``state_dict``/``load_state_dict``.

        Given to AutoLRS as ``extra_state``, it is snapshotted and restored with the model, so
        that every candidate of a stage trains on the same batches.
        """
        return DataStream(self)

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:
        """Mean training loss of ``batch``: a 0-dim tensor with a graph to backpropagate."""

    @abstractmethod
    def val_loss(self) -> float:
        """The quality metric on the full validation set.

        Runs in eval mode without gradients and returns the model to the mode it was in;
        parameters and buffers are left untouched.
        """

    @abstractmethod
    def probe_loss(self) -> float:
        """The metric on a small fixed validation subset (AutoLRS's validation function).

        Same mode handling as :meth:`val_loss`; the subset never changes, so two calls on the
        same weights return the same value.
        """


class DataStream:
    """A task instance's training stream as a stateful object (``TaskInstance.stream``)."""

    def __init__(self, instance: TaskInstance) -> None:
        self.instance = instance

    def state_dict(self) -> dict[str, Any]:
        """The instance's :meth:`TaskInstance.stream_state_dict`."""
        return self.instance.stream_state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The instance's :meth:`TaskInstance.load_stream_state_dict`."""
        self.instance.load_stream_state_dict(state)


class Task(ABC):
    """A benchmark task: a spec and a way to build seeded instances of it.

    Attributes:
        spec: What the harness and the methods may know about the task.
    """

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    @abstractmethod
    def build(self, seed: int) -> TaskInstance:
        """A fresh instance whose every random source derives from ``seed``.

        Two builds with the same seed train bit-identically at a fixed torch thread count.

        Args:
            seed: Integer ≥ 0.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec.name!r}, variant={self.spec.variant!r})"


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_positive_real(value: object) -> bool:
    return _is_real(value) and math.isfinite(value) and value > 0  # type: ignore[arg-type]


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
