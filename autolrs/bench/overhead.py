"""What AutoLRS's machinery costs in time, measured side by side in one process.

Three numbers per task, each against the cheapest thing that does the same job:

- **per-step overhead**: wall time per executed step of a training loop that calls
  ``scheduler.step(loss)`` after every optimizer step, against the same loop without it, over the
  warmup and the first two stages (so snapshots, restores, forecasts and GP decisions are all
  included, but not yet the validation-judged stages at τ_max, whose probe passes the suite's
  runs price as evaluation cost). The two loops alternate ``repeats`` times; medians are kept.
- **snapshot + restore**: one save and one restore through the scheduler's own snapshot path,
  against copying the same tensors into preallocated buffers and back.
- **decision time per candidate**: wall time of the controller's answer to each finished trial
  (forecast of its loss curve, GP update and the next proposal or the stage's choice).

Timings on a shared 2-core machine drift; only ratios within one call of :func:`measure` are
meant to be compared.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from autolrs.bench.methods import autolrs_config, resolve_method
from autolrs.bench.records import HARNESS_VERSION
from autolrs.bench.tasks.base import Task, TaskInstance
from autolrs.config import AutoLRSConfig
from autolrs.pytorch.snapshot import state_nbytes

__all__ = ["measure", "loop_steps"]

logger = logging.getLogger(__name__)


def loop_steps(config: AutoLRSConfig, cap: int) -> int:
    """Executed steps of warmup and the first two stages (k trials of τ' plus τ each)."""
    steps = config.warmup_steps
    for index in range(2):
        stage = config.stage_length(index)
        steps += config.num_candidates * config.trial_length(stage) + stage
    return min(steps, cap)


def measure(task: Task, *, threads: int = 2, repeats: int = 2, seed: int = 0) -> dict[str, Any]:
    """Measure the three overheads of AutoLRS on ``task``.

    Args:
        task: The task; its default AutoLRS config (as the suite resolves it) is used.
        threads: ``torch.set_num_threads`` during the measurement.
        repeats: Alternations of the bare and the AutoLRS loop. ≥ 1.
        seed: Seed of the instances and the search.

    Returns:
        A JSON-able record: the three measurements with their raw timings.
    """
    from autolrs import AutoLRS

    spec = task.spec
    config = autolrs_config(resolve_method("autolrs", spec, {}), seed)
    steps = loop_steps(config, cap=3 * spec.budget)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        bare_times: list[float] = []
        autolrs_times: list[float] = []
        step_call_times: list[float] = []
        decisions: list[float] = []
        snapshot: dict[str, float] = {}
        for _ in range(repeats):
            torch.manual_seed(seed)
            bare_times.append(_bare_loop(task.build(seed), config, steps))

            torch.manual_seed(seed)
            instance = task.build(seed)
            optimizer = instance.make_optimizer(config.warmup_lr or config.min_lr)
            scheduler = AutoLRS(
                optimizer, instance.model, val_fn=instance.probe_loss, config=config
            )
            timed_decisions = _time_trial_decisions(scheduler)
            elapsed, in_step, taken = _autolrs_loop(instance, scheduler, steps)
            autolrs_times.append(elapsed / taken)
            step_call_times.append(in_step / taken)
            decisions.extend(timed_decisions)
            snapshot = _snapshot_vs_copy(scheduler)
    finally:
        torch.set_num_threads(previous_threads)

    bare = statistics.median(bare_times) / steps
    with_scheduler = statistics.median(autolrs_times)
    result = {
        "task": spec.name,
        "version": spec.version,
        "variant": spec.variant,
        "harness_version": HARNESS_VERSION,
        "threads": threads,
        "config": config.to_dict(),
        "steps": steps,
        "repeats": repeats,
        "step": {
            "bare_s_per_step": bare,
            "autolrs_s_per_step": with_scheduler,
            "ratio": with_scheduler / bare,
            "scheduler_step_s_per_call": statistics.median(step_call_times),
            "bare_s": bare_times,
            "autolrs_s_per_step_runs": autolrs_times,
        },
        "snapshot": snapshot,
        "decision": {
            "count": len(decisions),
            "mean_s": statistics.fmean(decisions) if decisions else None,
            "median_s": statistics.median(decisions) if decisions else None,
            "max_s": max(decisions) if decisions else None,
        },
    }
    logger.info(
        "%s overheads: step ×%.2f, snapshot+restore ×%.1f vs raw copy, %.3f s per decision",
        spec.name,
        result["step"]["ratio"],
        snapshot.get("ratio", float("nan")),
        result["decision"]["mean_s"] or float("nan"),
    )
    return result


def _train_step(instance: TaskInstance, optimizer: torch.optim.Optimizer) -> torch.Tensor:
    loss = instance.loss(instance.next_batch())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


def _bare_loop(instance: TaskInstance, config: AutoLRSConfig, steps: int) -> float:
    optimizer = instance.make_optimizer(config.warmup_lr or config.min_lr)
    start = time.perf_counter()
    for _ in range(steps):
        _train_step(instance, optimizer)
    return time.perf_counter() - start


def _autolrs_loop(instance: TaskInstance, scheduler: Any, steps: int) -> tuple[float, float, int]:
    """Total seconds of the loop, seconds spent inside ``scheduler.step``, and steps taken.

    The loop ends early when the scheduler's budget is spent.
    """
    in_step = 0.0
    taken = 0
    start = time.perf_counter()
    for _ in range(steps):
        if scheduler.finished:
            break
        loss = _train_step(instance, scheduler.optimizer)
        began = time.perf_counter()
        scheduler.step(loss)
        in_step += time.perf_counter() - began
        taken += 1
    return time.perf_counter() - start, in_step, taken


def _time_trial_decisions(scheduler: Any) -> list[float]:
    """Record the wall time of every controller answer to a finished trial, into the list.

    The scheduler calls ``self.controller.report``; wrapping it on the instance times exactly
    the framework-free decision, with no model work inside.
    """
    controller = scheduler.controller
    original: Callable[..., Any] = controller.report
    times: list[float] = []

    def timed(report: Any) -> Any:
        is_trial = controller.phase == "trial"
        start = time.perf_counter()
        commands = original(report)
        if is_trial:
            times.append(time.perf_counter() - start)
        return commands

    controller.report = timed
    return times


def _snapshot_vs_copy(scheduler: Any, repeats: int = 20) -> dict[str, float]:
    """Median seconds of the scheduler's snapshot + restore, and of a raw tensor copy."""
    # The scheduler's own path (its private methods): exactly what a stage's search pays.
    library: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        scheduler._store.save(scheduler._gather_state())
        scheduler._restore()
        library.append(time.perf_counter() - start)

    tensors = _tensors(scheduler._gather_state())
    buffers = [tensor.detach().clone() for tensor in tensors]
    raw: list[float] = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for tensor, buffer in zip(tensors, buffers, strict=True):
                buffer.copy_(tensor)
            for tensor, buffer in zip(tensors, buffers, strict=True):
                tensor.copy_(buffer)
            raw.append(time.perf_counter() - start)

    library_s, raw_s = statistics.median(library), statistics.median(raw)
    return {
        "library_s": library_s,
        "raw_copy_s": raw_s,
        "ratio": library_s / raw_s if raw_s > 0 else float("inf"),
        "nbytes": float(state_nbytes(tensors)),
    }


def _tensors(state: Any) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for value in state.values() for t in _tensors(value)]
    if isinstance(state, (list, tuple)):
        return [t for value in state for t in _tensors(value)]
    return []
