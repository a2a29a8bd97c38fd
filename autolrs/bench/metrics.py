"""What a user judges a method by: steps and cost to reach the tuned baseline's loss.

Notation (docs/benchmark.md, "Protocol"):

==========  ==========================================================================
symbol      meaning
==========  ==========================================================================
T           the task's budget in update steps; runs are capped at 3T of cost
L*          the target: the tuned baseline's mean validation loss at T (final value)
cost        executed optimizer steps (rolled-back search steps and warmup included)
            plus the method's own validation passes, in step equivalents
mean curve  a method's curves averaged over seeds at each update step they share (loss,
            cost and wall time alike)
S_b         the tuned baseline's steps (or cost) to L*, read on its mean curve
S_m         method m's steps (or cost) to L*, read on its mean curve; ∞ if it never gets
            there within the cap
speedup     S_b / S_m; 0 when S_m = ∞
==========  ==========================================================================

Both sides are read the same way, on mean curves, because L* is itself a mean: on single seeds
about half of the baseline's own runs end above it. Steps to target are read only on the
committed trajectory (a run's curve holds nothing else), at the first point whose loss is at
most the threshold, so their resolution is the task's ``eval_every``. Intervals are percentile
bootstraps over the method's seeds (each resample's mean curve gives one S_m); S_b and L* are
fixed by the reference file, so an interval covers the method's seed variation only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from autolrs.bench.records import CurvePoint
from autolrs.errors import ConfigError

__all__ = [
    "SLACK",
    "Measure",
    "Reach",
    "Interval",
    "AlignedCurves",
    "slack_threshold",
    "steps_to_target",
    "quality_at",
    "bootstrap",
    "mean_interval",
    "speedup",
]

#: The slack variant's tolerance: a threshold of L*·(1 + 5%).
SLACK = 0.05

#: What a speedup counts: update steps (the paper's way), cost, or wall seconds.
Measure = Literal["update_steps", "cost", "wall_s"]


@dataclass(frozen=True)
class Reach:
    """Where a curve first reached a loss threshold, or that it never did within the cap.

    Attributes:
        reached: Whether some point within the cap is at or below the threshold.
        update_steps: Update steps at that point; ``inf`` when not reached.
        cost: Executed steps plus own evaluation cost at that point; ``inf`` when not
            reached.
        wall_s: Wall seconds at that point; ``inf`` when not reached.
    """

    reached: bool
    update_steps: float
    cost: float
    wall_s: float

    def of(self, measure: Measure) -> float:
        """The value of ``measure`` at the point."""
        return float(getattr(self, measure))


NOT_REACHED = Reach(False, math.inf, math.inf, math.inf)


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap interval over seeds.

    Attributes:
        estimate: The statistic on all seeds.
        low: Lower end of the interval (equal to ``estimate`` with one seed).
        high: Upper end of the interval.
        n: Seeds it was computed from.
    """

    estimate: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class AlignedCurves:
    """Curves of several seeds on the update steps they all share, as arrays.

    Attributes:
        update_steps: Shape ``(p,)``, ascending.
        cost: Shape ``(n, p)``: executed steps plus own evaluation cost, per seed and point.
        wall_s: Shape ``(n, p)``.
        loss: Shape ``(n, p)``; NaN where a loss was not finite.
    """

    update_steps: np.ndarray
    cost: np.ndarray
    wall_s: np.ndarray
    loss: np.ndarray

    @classmethod
    def of(cls, curves: Sequence[Sequence[CurvePoint]]) -> AlignedCurves:
        """Align ``curves`` (one per seed) on the update steps measured in any of them.

        At a step a curve did not measure, it holds its last point before that step: the
        model it had then, and what that had cost. So a run that ended (or was measured) a few
        update steps before another one counts with its last model, as trained, from there
        on. Steps before some curve's first point are left out. Curves measured at the same
        steps align point by point.
        """
        if not curves:
            raise ConfigError("at least one curve is needed, got none")
        ordered = [sorted(curve, key=lambda point: point.update_steps) for curve in curves]
        if any(not curve for curve in ordered):
            steps: list[int] = []
        else:
            start = max(curve[0].update_steps for curve in ordered)
            steps = sorted({p.update_steps for c in ordered for p in c if p.update_steps >= start})
        held = [_hold_last(curve, steps) for curve in ordered]

        def field(read: Callable[[CurvePoint], float | None]) -> np.ndarray:
            rows = [[read(point) for point in points] for points in held]
            return np.array(rows, dtype=float).reshape(len(curves), len(steps))

        return cls(
            update_steps=np.array(steps, dtype=float),
            cost=field(lambda point: point.cost),
            wall_s=field(lambda point: point.wall_s),
            loss=field(lambda point: math.nan if point.val_loss is None else point.val_loss),
        )

    @property
    def seeds(self) -> int:
        """Number of curves."""
        return int(self.loss.shape[0])

    def reach(self, threshold: float, cap: float) -> Reach:
        """Where the mean curve over all seeds first reaches ``threshold`` within ``cap``."""
        values = self.reach_resampled(np.arange(self.seeds)[None, :], threshold, cap)
        update, cost, wall = (float(v[0]) for v in values)
        return NOT_REACHED if math.isinf(cost) else Reach(True, update, cost, wall)

    def reach_resampled(
        self, rows: np.ndarray, threshold: float, cap: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Update steps, cost and wall time where each resample's mean curve first reaches.

        Args:
            rows: Shape ``(b, n)``, integer: each row the seed indices of one resample.
            threshold: The loss to reach.
            cap: Largest cost that still counts.

        Returns:
            Three arrays of shape ``(b,)``, ``inf`` where a mean curve never reaches.
        """
        if self.update_steps.size == 0:  # some seed measured nothing
            never = np.full(rows.shape[0], math.inf)
            return never, never.copy(), never.copy()
        loss = self.loss[rows].mean(axis=1)  # (b, p); NaN if any seed's loss was NaN
        cost = self.cost[rows].mean(axis=1)
        wall = self.wall_s[rows].mean(axis=1)
        # Cost grows along a curve, so the cap cuts each mean curve at one point.
        hit = (loss <= threshold) & (cost <= cap)
        first = hit.argmax(axis=1)
        found = hit.any(axis=1)
        pick = np.arange(rows.shape[0])

        def at_first(values: np.ndarray) -> np.ndarray:
            return np.where(found, values[pick, first], math.inf)

        updates = np.broadcast_to(self.update_steps, loss.shape)
        return at_first(updates), at_first(cost), at_first(wall)


def slack_threshold(target: float, slack: float = SLACK) -> float:
    """The threshold ``slack`` (relative) above ``target``: L* + slack·|L*|."""
    return target + slack * abs(target)


def steps_to_target(curve: Sequence[CurvePoint], threshold: float, cap: float) -> Reach:
    """First point of one ``curve`` at or below ``threshold`` whose cost is within ``cap``.

    Args:
        curve: A run's validation curve, in the order it was measured.
        threshold: The loss to reach (L*, or its slack variant).
        cap: Largest cost that still counts, in step equivalents (the protocol's 3T).
    """
    for point in curve:
        if point.cost > cap:
            break
        if point.val_loss is not None and point.val_loss <= threshold:
            return Reach(True, float(point.update_steps), point.cost, point.wall_s)
    return NOT_REACHED


def quality_at(curve: Sequence[CurvePoint], budget: float) -> float | None:
    """Loss of the last committed point whose cost is within ``budget`` (None: no such point).

    A run that ended before ``budget`` keeps its final value: what a user holds after paying
    that much.
    """
    within = [point for point in curve if point.cost <= budget]
    return within[-1].val_loss if within else None


def bootstrap(
    values: Sequence[float],
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap of ``statistic`` over resampled ``values``.

    Args:
        values: One value per seed.
        statistic: Maps an array of shape ``(b, n)`` (each row one resample) to shape ``(b,)``.
        n_boot: Resamples. ≥ 1.
        confidence: Coverage of the interval, in (0, 1).
        seed: Seeds the resampling, so a report is reproducible.
    """
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ConfigError(f"values must be a non-empty 1-D sequence, got shape {data.shape}")
    if not 0.0 < confidence < 1.0:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if n_boot < 1:
        raise ConfigError(f"n_boot must be >= 1, got {n_boot!r}")
    estimate = float(statistic(data[None, :])[0])
    rng = np.random.default_rng(seed)
    stats = statistic(data[rng.integers(0, data.size, size=(n_boot, data.size))])
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(stats, [tail, 100.0 - tail])
    return Interval(estimate, float(low), float(high), int(data.size))


def mean_interval(values: Sequence[float], *, n_boot: int = 2000, seed: int = 0) -> Interval:
    """Mean of ``values`` with a bootstrap interval over seeds."""
    return bootstrap(values, lambda rows: rows.mean(axis=1), n_boot=n_boot, seed=seed)


def speedup(
    baseline: float,
    curves: AlignedCurves,
    threshold: float,
    cap: float,
    measure: Measure,
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """S_b / S_m on the method's mean curve, with a bootstrap interval over its seeds.

    Args:
        baseline: S_b in ``measure``'s unit. Finite and > 0.
        curves: The method's curves, one per seed.
        threshold: The loss to reach.
        cap: Largest cost that still counts.
        measure: What is counted: ``"update_steps"``, ``"cost"`` or ``"wall_s"``.
        n_boot: Resamples.
        seed: Seeds the resampling.

    Returns:
        The speedup; 0 for the estimate or a resample whose mean curve never reaches the
        threshold.
    """
    if not (math.isfinite(baseline) and baseline > 0):
        raise ConfigError(f"baseline must be finite and > 0, got {baseline!r}")
    index = ("update_steps", "cost", "wall_s").index(measure)

    def ratio(rows: np.ndarray) -> np.ndarray:
        steps = curves.reach_resampled(rows.astype(int), threshold, cap)[index]
        return np.where(np.isfinite(steps), baseline / np.maximum(steps, 1e-300), 0.0)

    return bootstrap(range(curves.seeds), ratio, n_boot=n_boot, seed=seed)


def _hold_last(curve: Sequence[CurvePoint], steps: Sequence[int]) -> list[CurvePoint]:
    """For each of ``steps`` (ascending), the last point of ``curve`` at or before it."""
    held, index = [], 0
    for step in steps:
        while index + 1 < len(curve) and curve[index + 1].update_steps <= step:
            index += 1
        held.append(curve[index])
    return held
