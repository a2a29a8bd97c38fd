"""The numbers a report shows, computed from a suite's runs and the task's reference.

Every figure here follows :mod:`~autolrs.bench.metrics`: the target L* and the baseline's steps
to it S_b come from the reference file; each method is read on the mean of its committed curves
over seeds. Wall-clock speedups compare against this suite's own runs of the tuned baseline,
the only ones interleaved with the method's (docs/benchmark.md: wall time drifts between jobs).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autolrs.bench.metrics import (
    NOT_REACHED,
    AlignedCurves,
    Interval,
    Measure,
    Reach,
    mean_interval,
    quality_at,
    slack_threshold,
    speedup,
    steps_to_target,
)
from autolrs.bench.records import RunRecord, trained_stages
from autolrs.bench.reference import Reference

__all__ = ["BaselineSummary", "MethodSummary", "TaskSummary", "summarise_task"]


@dataclass(frozen=True)
class BaselineSummary:
    """The tuned baseline of a task and what beating it means.

    Attributes:
        family: Its schedule family.
        lr: Its peak LR.
        seeds: Seeds behind the target.
        target: L*.
        target_std: Seed standard deviation of its final losses.
        reach: Where its mean curve reaches L* (S_b).
        slack_reach: Where its mean curve reaches L*·(1 + 5%).
        sweep_cost: Cost of the one-seed grid sweep, every swept family (step equivalents).
        protocol_cost: The sweep plus the extra seeds of each family's best LR.
    """

    family: str
    lr: float
    seeds: int
    target: float
    target_std: float
    reach: Reach
    slack_reach: Reach
    sweep_cost: float
    protocol_cost: float


@dataclass(frozen=True)
class MethodSummary:
    """One method on one task, over its seeds.

    Attributes:
        method: Method name.
        lr: Its LR (None for AutoLRS).
        seeds: Finished runs.
        reached: Seeds whose own curve reached L* within the 3T cap.
        update_steps: Update steps at which the mean curve over seeds reaches L* (``inf``:
            never, within the cap).
        cost: Cost at that point, search and evaluations included (``inf`` likewise).
        speedup_update: S_b / S_m in update steps (the paper's way).
        speedup_cost: S_b / S_m in cost.
        speedup_slack: The same with the 5%-slack threshold.
        speedup_wall: This suite's tuned-baseline wall time to L* over the method's; None
            when this suite did not run the tuned baseline.
        final: Validation loss at the end of the run.
        quality_t: Loss held after a cost of T.
        quality_2t: Loss held after a cost of 2T.
        wall_s: Mean wall seconds of a run (harness validation excluded).
        autolrs: For AutoLRS: stages, search steps, evaluation cost and forecast errors.
    """

    method: str
    lr: float | None
    seeds: int
    reached: int
    update_steps: float
    cost: float
    speedup_update: Interval | None
    speedup_cost: Interval | None
    speedup_slack: Interval | None
    speedup_wall: Interval | None
    final: Interval | None
    quality_t: Interval | None
    quality_2t: Interval | None
    wall_s: float
    autolrs: dict[str, Any] | None


@dataclass(frozen=True)
class TaskSummary:
    """A task's baseline and every method's summary, in the suite's method order."""

    task: str
    budget: int
    baseline: BaselineSummary
    methods: list[MethodSummary]


def summarise_task(
    reference: Reference,
    runs: Mapping[str, Sequence[RunRecord]],
    lrs: Mapping[str, float | None],
    *,
    budget: int,
    cap_factor: int = 3,
    n_boot: int = 2000,
) -> TaskSummary:
    """Summarise every method's runs on one task against its reference.

    Args:
        reference: The task's tuned baselines.
        runs: Each method's finished runs, by method name.
        lrs: Each method's LR, by method name.
        budget: T.
        cap_factor: Steps to target count only within ``cap_factor · T`` of cost.
        n_boot: Bootstrap resamples of each interval.
    """
    cap = cap_factor * budget
    baseline_curves = AlignedCurves.of([run.curve for run in reference.baseline_runs])
    slack = slack_threshold(reference.target)
    baseline = BaselineSummary(
        family=reference.baseline_family,
        lr=reference.baseline_lr,
        seeds=len(reference.baseline_runs),
        target=reference.target,
        target_std=reference.target_std,
        reach=baseline_curves.reach(reference.target, cap),
        slack_reach=baseline_curves.reach(slack, cap),
        sweep_cost=reference.sweep_cost,
        protocol_cost=reference.protocol_cost,
    )
    baseline_wall = _baseline_wall(reference, runs, cap)
    methods = [
        _summarise_method(
            method,
            lrs.get(method),
            list(records),
            reference=reference,
            baseline=baseline,
            baseline_wall=baseline_wall,
            budget=budget,
            cap=cap,
            n_boot=n_boot,
        )
        for method, records in runs.items()
    ]
    return TaskSummary(reference.spec["name"], budget, baseline, methods)


def _baseline_wall(
    reference: Reference, runs: Mapping[str, Sequence[RunRecord]], cap: float
) -> float | None:
    # The suite's own runs of the tuned baseline: the tuned family at its best LR.
    own = [
        run
        for run in runs.get(reference.baseline_family, [])
        if run.key.lr == reference.baseline_lr
    ]
    if not own:
        return None
    reach = AlignedCurves.of([run.curve for run in own]).reach(reference.target, cap)
    return reach.wall_s if reach.reached else None


def _summarise_method(
    method: str,
    lr: float | None,
    records: list[RunRecord],
    *,
    reference: Reference,
    baseline: BaselineSummary,
    baseline_wall: float | None,
    budget: int,
    cap: float,
    n_boot: int,
) -> MethodSummary:
    target, slack = reference.target, slack_threshold(reference.target)
    curves = AlignedCurves.of([run.curve for run in records]) if records else None
    reach = curves.reach(target, cap) if curves else NOT_REACHED

    def ratio(base: float | None, threshold: float, measure: Measure) -> Interval | None:
        # No speedup without runs, or when the baseline itself never reached the threshold.
        if curves is None or base is None or not math.isfinite(base):
            return None
        return speedup(base, curves, threshold, cap, measure, n_boot=n_boot)

    return MethodSummary(
        method=method,
        lr=lr,
        seeds=len(records),
        reached=sum(steps_to_target(run.curve, target, cap).reached for run in records),
        update_steps=reach.update_steps,
        cost=reach.cost,
        speedup_update=ratio(baseline.reach.update_steps, target, "update_steps"),
        speedup_cost=ratio(baseline.reach.cost, target, "cost"),
        speedup_slack=ratio(baseline.slack_reach.cost, slack, "cost"),
        speedup_wall=ratio(baseline_wall, target, "wall_s"),
        final=_interval([run.final_val_loss for run in records], n_boot),
        quality_t=_interval([quality_at(run.curve, budget) for run in records], n_boot),
        quality_2t=_interval([quality_at(run.curve, 2 * budget) for run in records], n_boot),
        wall_s=_mean([run.wall_s for run in records]),
        autolrs=_autolrs_details(records),
    )


def _mean(values: Sequence[float]) -> float:
    return statistics.fmean(values) if values else math.nan


def _interval(values: Sequence[float | None], n_boot: int) -> Interval | None:
    present = [value for value in values if value is not None]
    return mean_interval(present, n_boot=n_boot) if present else None


def _stage_count(extras: Mapping[str, Any]) -> int:
    """Stages that trained, counted from the history.

    Runs stored earlier also counted a last stage opened as the budget ran out.
    """
    if "history" in extras:
        return len(trained_stages(extras["history"]))
    return int(extras["num_stages"])


def _autolrs_details(records: Sequence[RunRecord]) -> dict[str, Any] | None:
    with_history = [run for run in records if "num_stages" in run.extras]
    if not with_history:
        return None
    stages = [
        stage
        for run in with_history
        for stage in run.extras["forecast_errors"]
        if stage["relative_error"] is not None
    ]
    errors = [abs(stage["relative_error"]) for stage in stages]
    # The signed error by the metric judged: > 0 when forecasts lay above what stages reached.
    bias = {
        metric: statistics.median(signed)
        for metric in ("train", "val")
        if (signed := [st["relative_error"] for st in stages if st["metric"] == metric])
    }
    return {
        "stages": _mean([_stage_count(run.extras) for run in with_history]),
        "search_steps": _mean([run.extras["search_steps"] for run in with_history]),
        "eval_cost": _mean([run.eval_cost for run in with_history]),
        "total_steps": _mean([run.total_steps for run in with_history]),
        "forecast_abs_rel_error_median": statistics.median(errors) if errors else None,
        "forecast_abs_rel_error_max": max(errors) if errors else None,
        "forecast_rel_error_median_by_metric": bias,
    }
