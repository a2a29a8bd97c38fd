"""One benchmark run: a (task, method, LR, seed) trained to its budget and measured.

Every method goes through the same loop: prepare the step (the method sets its LR), forward,
backward, ``optimizer.step()``, let the method account for the step (AutoLRS may roll back and
change the LR here), and, when the *committed* trajectory has just crossed a multiple of the
task's ``eval_every`` update steps, measure the full validation loss. A trial step of AutoLRS
never triggers a measurement, so a rolled-back candidate that touches the target does not
count; and when a diverged stage is rolled back, the points measured on it are dropped.

A run ends after T update steps, or once it has executed 3T steps (the protocol's cap), or when
a method that cannot recover sees a non-finite loss.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autolrs.bench.drivers import Driver, make_driver
from autolrs.bench.methods import MethodConfig
from autolrs.bench.records import (
    HARNESS_VERSION,
    CurvePoint,
    RunKey,
    RunRecord,
    StopReason,
    config_hash,
    finite_or_none,
)
from autolrs.bench.schedules import compress_lrs
from autolrs.bench.tasks.base import Task, TaskSpec
from autolrs.errors import ConfigError, DivergenceError

__all__ = ["RunSettings", "run_config", "run_key", "run"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Harness settings shared by every run of a suite.

    Args:
        threads: ``torch.set_num_threads`` during a run; results are bit-identical only at a
            fixed thread count, on the same kind of CPU. ≥ 1.
        cap_factor: A run stops after ``cap_factor · T`` executed steps. ≥ 1.
    """

    threads: int = 2
    cap_factor: int = 3

    def __post_init__(self) -> None:
        for name in ("threads", "cap_factor"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def run_config(spec: TaskSpec, method: MethodConfig, settings: RunSettings) -> dict[str, Any]:
    """Everything that decides a run except its seed: what the key's hash covers."""
    return {
        "harness_version": HARNESS_VERSION,
        "task": spec.to_dict(),
        "method": method.to_dict(),
        "threads": settings.threads,
        "cap_factor": settings.cap_factor,
    }


def run_key(spec: TaskSpec, method: MethodConfig, seed: int, settings: RunSettings) -> RunKey:
    """The store key of running ``method`` on ``spec``'s task with ``seed``."""
    return RunKey(
        task=spec.name,
        version=spec.version,
        variant=spec.variant,
        method=method.method,
        lr=method.lr,
        seed=seed,
        config_hash=config_hash(run_config(spec, method, settings)),
    )


def run(task: Task, method: MethodConfig, seed: int, settings: RunSettings) -> RunRecord:
    """Train ``task`` with ``method`` from ``seed`` and measure it.

    Args:
        task: The task.
        method: The method resolved for this task.
        seed: Seeds the task's build, the global RNGs and AutoLRS's search. ≥ 0.
        settings: Thread count and step cap.

    Returns:
        The run's record, with its validation curve every ``eval_every`` committed update
        steps.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        _seed_everything(seed)
        instance = task.build(seed)
        driver = make_driver(method, task.spec, instance, seed)
        record = _Loop(task.spec, driver, settings).train()
    finally:
        torch.set_num_threads(previous_threads)

    key = run_key(task.spec, method, seed, settings)
    result = RunRecord(
        key=key,
        config=run_config(task.spec, method, settings),
        extras=driver.extras(),
        **record,
    )
    logger.info(
        "%s %s lr=%s seed=%d: %s after %d update / %d total steps, final val %s, %.1f s",
        key.task,
        key.method,
        key.lr,
        seed,
        result.stop_reason,
        result.update_steps,
        result.total_steps,
        result.final_val_loss,
        result.wall_s,
    )
    return result


def _seed_everything(seed: int) -> None:
    # Tasks draw from their own generators; this pins anything else that reaches for the
    # global ones (e.g. dropout in a model, or a library's default RNG).
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _Loop:
    """The training loop of one run, with its measurements."""

    def __init__(self, spec: TaskSpec, driver: Driver, settings: RunSettings) -> None:
        self.spec = spec
        self.driver = driver
        self.instance = driver.instance
        self.cap = settings.cap_factor * spec.budget
        self.curve: list[CurvePoint] = []
        self.lrs: list[float] = []
        self.harness_eval_s = 0.0
        self.start = 0.0

    def train(self) -> dict[str, Any]:
        driver, optimizer = self.driver, self.driver.optimizer
        stop: StopReason = "budget"
        last_kept = False
        self.start = time.perf_counter()
        while not driver.finished:
            if driver.total_steps >= self.cap:
                stop = "cap"
                break
            lr = driver.prepare_step()
            before = driver.update_steps

            loss = self.instance.loss(self.instance.next_batch())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            try:
                driver.finish_step(loss)
            except DivergenceError as exc:
                logger.warning("%s diverged and could not recover: %s", self.spec.name, exc)
                stop = "diverged"
                break
            if driver.stops_on_nonfinite and not math.isfinite(float(loss.detach())):
                stop = "diverged"
                break

            after = driver.update_steps
            last_kept = after > before
            if after < len(self.lrs):
                self._roll_back(after)
            elif last_kept:
                self.lrs.extend([lr] * (after - before))
            if last_kept and after // self.spec.eval_every > self._last_mark():
                if not self._measure() and driver.stops_on_nonfinite:
                    stop = "diverged"
                    break

        ends_unmeasured = not self.curve or self.curve[-1].update_steps != driver.update_steps
        if stop != "diverged" and last_kept and ends_unmeasured:
            self._measure()
        return {
            "curve": self.curve,
            "lr_segments": [list(segment) for segment in compress_lrs(self.lrs)],
            "update_steps": driver.update_steps,
            "total_steps": driver.total_steps,
            "eval_cost": driver.eval_cost,
            "wall_s": self._wall(),
            "harness_eval_s": self.harness_eval_s,
            "stop_reason": stop,
        }

    def _last_mark(self) -> int:
        return self.curve[-1].update_steps // self.spec.eval_every if self.curve else 0

    def _roll_back(self, update_steps: int) -> None:
        # A diverged stage was rolled back to its snapshot: what it measured is no longer on
        # the committed trajectory.
        dropped = [point for point in self.curve if point.update_steps > update_steps]
        if dropped:
            logger.info(
                "dropping %d curve points measured on a stage that was rolled back to update "
                "step %d",
                len(dropped),
                update_steps,
            )
        self.curve = [point for point in self.curve if point.update_steps <= update_steps]
        del self.lrs[update_steps:]

    def _measure(self) -> bool:
        """Append a curve point for the committed model; False if its loss is not finite."""
        began, own_before = time.perf_counter(), self.driver.own_seconds
        value = finite_or_none(self.driver.evaluate())
        elapsed = time.perf_counter() - began
        # What the method spent on its own evaluation is its time, the rest is the harness's.
        self.harness_eval_s += elapsed - (self.driver.own_seconds - own_before)
        self.curve.append(
            CurvePoint(
                update_steps=self.driver.update_steps,
                total_steps=self.driver.total_steps,
                eval_cost=self.driver.eval_cost,
                wall_s=self._wall(),
                val_loss=value,
            )
        )
        return value is not None

    def _wall(self) -> float:
        return time.perf_counter() - self.start - self.harness_eval_s
