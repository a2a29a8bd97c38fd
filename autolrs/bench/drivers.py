"""Drivers: each carries one seeded run of a resolved method out, one step at a time.

The :mod:`~autolrs.bench.runner` owns the training loop and every measurement; a driver only
builds the method's optimizer, sets the LR before each step, accounts for the step after it,
and evaluates the committed model (switching schedule-free to its averaged weights, or feeding
the plateau scheduler). The choices behind each method are listed in
:mod:`~autolrs.bench.methods`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from abc import ABC, abstractmethod
from typing import Any

import torch

from autolrs._optional import require
from autolrs.bench.methods import (
    AUTOLRS_METHODS,
    METHODS,
    SAME_BATCHES,
    MethodConfig,
    autolrs_config,
)
from autolrs.bench.records import trained_stages
from autolrs.bench.schedules import FAMILIES, schedule_factor, warmup_factor
from autolrs.bench.tasks.base import TaskInstance, TaskSpec
from autolrs.errors import ConfigError

__all__ = ["BN_RECALIBRATION_BATCHES", "Driver", "make_driver"]

logger = logging.getLogger(__name__)

#: Forward-only batches that re-estimate batch-norm statistics at schedule-free's averaged
#: weights before each evaluation; each costs about a tenth of a probe (10 batches).
BN_RECALIBRATION_BATCHES = 10


class Driver(ABC):
    """Carries one seeded run of a method out, one training step at a time.

    The runner calls :meth:`prepare_step`, runs forward, backward and ``optimizer.step()``,
    then :meth:`finish_step`, and evaluates the committed model through :meth:`evaluate`.
    A step counts as progress when it raises :attr:`update_steps`.

    Args:
        config: The method resolved for the task.
        spec: The task's spec.
        instance: The seeded instance to train.

    Attributes:
        optimizer: The optimizer the runner steps.
        stops_on_nonfinite: Whether a non-finite training loss ends the run as diverged (False
            for AutoLRS, which rolls a diverging candidate back itself).
        own_seconds: Wall seconds the method itself spent inside :meth:`evaluate` (a
            validation pass it needs for its decisions); the runner counts them as the run's
            time rather than the harness's.
    """

    stops_on_nonfinite = True

    def __init__(self, config: MethodConfig, spec: TaskSpec, instance: TaskInstance):
        self.config = config
        self.spec = spec
        self.instance = instance
        self.optimizer: torch.optim.Optimizer = self._build_optimizer()
        self.own_seconds = 0.0
        self._steps = 0
        self._own_evaluations = 0.0

    @abstractmethod
    def _build_optimizer(self) -> torch.optim.Optimizer:
        """The run's optimizer over the instance's model."""

    @property
    def update_steps(self) -> int:
        """Steps kept as progress so far."""
        return self._steps

    @property
    def total_steps(self) -> int:
        """Every optimizer step executed so far, rolled-back ones included."""
        return self._steps

    @property
    def eval_cost(self) -> float:
        """The method's own validation passes so far, in optimizer-step equivalents."""
        return self._own_evaluations

    @property
    def finished(self) -> bool:
        """Whether the run has spent its budget: ``spec.budget`` update steps."""
        return self.update_steps >= self.spec.budget

    def prepare_step(self) -> float:
        """Set the LR of the step about to run; return it (first param group)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def finish_step(self, loss: torch.Tensor) -> None:
        """Account for the step just run, whose training loss was ``loss``."""
        self._steps += 1

    def evaluate(self) -> float:
        """Full validation loss of the committed model, leaving training state unchanged."""
        return float(self.instance.val_loss())

    def extras(self) -> dict[str, Any]:
        """Method-specific results to store with the run (JSON-able)."""
        return {}


def _task_groups(instance: TaskInstance, lr: float) -> tuple[list[dict[str, Any]], float]:
    """The task's param groups (params and weight decay) and its default weight decay.

    Built from the task's own optimizer so that a task exempting, say, biases and norms from
    weight decay keeps that split under every other optimizer.
    """
    reference = instance.make_optimizer(lr)
    default_decay = float(reference.defaults.get("weight_decay", 0.0))
    groups = [
        {"params": group["params"], "weight_decay": float(group.get("weight_decay", 0.0))}
        for group in reference.param_groups
    ]
    return groups, default_decay


class ScheduleDriver(Driver):
    """The task's optimizer under a hand-written schedule: constant, cosine or step."""

    def _build_optimizer(self) -> torch.optim.Optimizer:
        optimizer = self.instance.make_optimizer(self._peak())
        # Each group keeps its own peak, so a task with per-group LRs keeps their ratios.
        self._peaks = [float(group["lr"]) for group in optimizer.param_groups]
        return optimizer

    def _peak(self) -> float:
        assert self.config.lr is not None  # every family resolves to a peak LR
        return self.config.lr

    def _family(self) -> str:
        return self.config.method

    def prepare_step(self) -> float:
        """Set every group's LR to its peak times the schedule's factor at this step."""
        factor = schedule_factor(
            self._family(), self._steps, self.spec.budget, self.spec.warmup_steps
        )
        for group, peak in zip(self.optimizer.param_groups, self._peaks, strict=True):
            group["lr"] = peak * factor
        return self._effective_lr()

    def _effective_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class ProdigyDriver(ScheduleDriver):
    """Prodigy (lr = multiplier of its estimated step size d) under warmup and cosine."""

    def _build_optimizer(self) -> torch.optim.Optimizer:
        Prodigy = require("prodigyopt", "bench", "the prodigy method").Prodigy

        groups, default_decay = _task_groups(self.instance, self._peak())
        kwargs = dict(self.spec.optimizer_kwargs)
        options: dict[str, Any] = {
            "lr": self._peak(),
            "weight_decay": default_decay,
            "decouple": self.spec.optimizer == "adamw",
            "safeguard_warmup": bool(self.config.params["safeguard_warmup"]),
        }
        if self.spec.optimizer == "adamw":
            options.update({k: kwargs[k] for k in ("betas", "eps") if k in kwargs})
        # Prodigy announces decoupled weight decay on stdout; the harness keeps stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            optimizer = Prodigy(groups, **options)
        self._peaks = [float(group["lr"]) for group in optimizer.param_groups]
        return optimizer

    def _family(self) -> str:
        return "cosine"

    def _effective_lr(self) -> float:
        # The step size Prodigy applies is d·lr; d is its running estimate.
        group = self.optimizer.param_groups[0]
        return float(group["d"] * group["lr"])


class PlateauDriver(ScheduleDriver):
    """Constant LR after warmup, cut by ``ReduceLROnPlateau`` on the validation loss."""

    def _build_optimizer(self) -> torch.optim.Optimizer:
        optimizer = super()._build_optimizer()
        self._plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=float(self.config.params["factor"]),
            patience=int(self.config.params["patience_evals"]),
        )
        self._reductions: list[tuple[int, float]] = []
        return optimizer

    def prepare_step(self) -> float:
        """Ramp during warmup; afterwards the plateau scheduler owns the LR."""
        if self._steps <= self.spec.warmup_steps:
            factor = warmup_factor(self._steps, self.spec.warmup_steps)
            for group, peak in zip(self.optimizer.param_groups, self._peaks, strict=True):
                group["lr"] = peak * factor
        return self._effective_lr()

    def evaluate(self) -> float:
        """Validation loss; after warmup it also drives the plateau scheduler."""
        start = time.perf_counter()
        value = super().evaluate()
        if self._steps >= self.spec.warmup_steps:
            # The method needs this pass for its decision, so its cost and time are its own.
            self._own_evaluations += self.instance.val_cost
            self.own_seconds += time.perf_counter() - start
            before = self._effective_lr()
            self._plateau.step(value)
            if self._effective_lr() < before:
                logger.info(
                    "plateau: val loss %.5g did not improve for %d evaluations at step %d; "
                    "LR %.3g -> %.3g",
                    value,
                    self._plateau.patience + 1,
                    self._steps,
                    before,
                    self._effective_lr(),
                )
                self._reductions.append((self._steps, self._effective_lr()))
        return value

    def extras(self) -> dict[str, Any]:
        """The LR cuts as ``[update_step, new_lr]`` pairs."""
        return {"reductions": [list(cut) for cut in self._reductions]}


class ScheduleFreeDriver(Driver):
    """Schedule-free SGD or AdamW; evaluation happens at its averaged weights."""

    def _build_optimizer(self) -> torch.optim.Optimizer:
        schedulefree = require("schedulefree", "bench", "the schedule-free methods")

        assert self.config.lr is not None  # schedule-free always resolves to an LR
        groups, default_decay = _task_groups(self.instance, self.config.lr)
        kwargs = dict(self.spec.optimizer_kwargs)
        options: dict[str, Any] = {
            "lr": self.config.lr,
            "weight_decay": default_decay,
            "warmup_steps": self.spec.warmup_steps,
        }
        if self.spec.optimizer == "sgd":
            if "momentum" in kwargs:
                options["momentum"] = kwargs["momentum"]
            optimizer = schedulefree.SGDScheduleFree(groups, **options)
        else:
            options.update({k: kwargs[k] for k in ("betas", "eps") if k in kwargs})
            optimizer = schedulefree.AdamWScheduleFree(groups, **options)
        optimizer.train()
        self._norms = [
            module
            for module in self.instance.model.modules()
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        ]
        return optimizer

    def prepare_step(self) -> float:
        """Schedule-free sets no LR; report its warmup-scaled base LR."""
        factor = warmup_factor(self._steps, self.spec.warmup_steps)
        return float(self.optimizer.param_groups[0]["lr"]) * factor

    def evaluate(self) -> float:
        """Validation loss at the averaged weights x, then back to the training point y."""
        self.optimizer.eval()  # type: ignore[attr-defined]
        try:
            if self._norms:
                self._recalibrate_norms()
            return float(self.instance.val_loss())
        finally:
            self.optimizer.train()  # type: ignore[attr-defined]

    def _recalibrate_norms(self) -> None:
        # Running statistics were gathered at y; re-estimate them at x with a cumulative
        # average over a few training batches (forward only), as schedulefree's README asks.
        start = time.perf_counter()
        model = self.instance.model
        was_training = model.training
        momenta = [module.momentum for module in self._norms]
        for module in self._norms:
            module.reset_running_stats()
            module.momentum = None
        model.train()
        with torch.no_grad():
            for _ in range(BN_RECALIBRATION_BATCHES):
                self.instance.loss(self.instance.next_batch())
        for module, momentum in zip(self._norms, momenta, strict=True):
            module.momentum = momentum
        model.train(was_training)
        self._own_evaluations += BN_RECALIBRATION_BATCHES * self.instance.probe_cost / 10
        self.own_seconds += time.perf_counter() - start


class AutoLRSDriver(Driver):
    """The library's AutoLRS scheduler; it sets every LR and rolls trials back itself."""

    stops_on_nonfinite = False

    def __init__(
        self,
        config: MethodConfig,
        spec: TaskSpec,
        instance: TaskInstance,
        seed: int,
    ):
        self._config_with_seed = autolrs_config(config, seed)
        super().__init__(config, spec, instance)

    def _build_optimizer(self) -> torch.optim.Optimizer:
        from autolrs import AutoLRS

        config = self._config_with_seed
        optimizer = self.instance.make_optimizer(config.warmup_lr or config.min_lr)
        same_batches = bool(self.config.params.get(SAME_BATCHES, False))
        self.scheduler = AutoLRS(
            optimizer,
            self.instance.model,
            val_fn=self.instance.probe_loss,
            config=config,
            extra_state={"stream": self.instance.stream} if same_batches else None,
        )
        return optimizer

    @property
    def update_steps(self) -> int:
        """Warmup and stage steps kept as progress."""
        return int(self.scheduler.update_steps)

    @property
    def total_steps(self) -> int:
        """Update steps plus rolled-back search steps."""
        return int(self.scheduler.total_steps)

    @property
    def eval_cost(self) -> float:
        """The scheduler's probe-loss evaluations, in step equivalents."""
        return float(self.scheduler.evaluations) * self.instance.probe_cost

    @property
    def finished(self) -> bool:
        """Whether the scheduler has spent ``spec.budget``, counted as its config says."""
        return bool(self.scheduler.finished)

    def prepare_step(self) -> float:
        """The scheduler already set the LR; report it."""
        return float(self.scheduler.get_last_lr()[0])

    def finish_step(self, loss: torch.Tensor) -> None:
        """Hand the loss to the scheduler, which may restore a snapshot and change the LR."""
        self.scheduler.step(loss)

    def extras(self) -> dict[str, Any]:
        """Stages, search steps, per-stage forecast errors and the full search history."""
        history = list(self.scheduler.history)
        stages = [stage.to_dict() for stage in history]
        return {
            "config": self._config_with_seed.to_dict(),
            "num_stages": len(trained_stages(stages)),
            "search_steps": int(self.scheduler.search_steps),
            "evaluations": int(self.scheduler.evaluations),
            "forecast_errors": [_forecast_error(stage) for stage in history],
            "history": stages,
        }


def _forecast_error(stage: Any) -> dict[str, Any]:
    """Chosen forecast against the loss the stage actually ended at."""
    forecast, final = stage.chosen_forecast, stage.final_loss
    error = None if forecast is None or final is None else float(forecast) - float(final)
    return {
        "stage": int(stage.index),
        "metric": stage.metric,
        "chosen_lr": stage.chosen_lr,
        "chosen_forecast": forecast,
        "final_loss": final,
        "error": error,
        "relative_error": None if error is None or not final else error / abs(float(final)),
    }


def make_driver(config: MethodConfig, spec: TaskSpec, instance: TaskInstance, seed: int) -> Driver:
    """A fresh driver of ``config`` for one seeded instance."""
    if config.method in FAMILIES:
        return ScheduleDriver(config, spec, instance)
    if config.method in ("schedulefree", "schedulefree-tuned"):
        return ScheduleFreeDriver(config, spec, instance)
    if config.method == "prodigy":
        return ProdigyDriver(config, spec, instance)
    if config.method == "plateau":
        return PlateauDriver(config, spec, instance)
    if config.method in AUTOLRS_METHODS:
        return AutoLRSDriver(config, spec, instance, seed)
    raise ConfigError(f"method must be one of {METHODS}, got {config.method!r}")
