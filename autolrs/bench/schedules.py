"""Hand-written LR schedules of the baselines, and a compact form of any LR trajectory.

Every schedule is a pure function of the 0-based index ``step`` of the update step about to run
and returns a multiplier of the peak LR. Warmup is the same for every method: a linear ramp
whose first step runs at ``peak / warmup_steps`` and whose last (step ``warmup_steps - 1``) runs
at the peak, as :class:`~autolrs.config.AutoLRSConfig` ramps its own warmup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from autolrs.errors import ConfigError

__all__ = [
    "Family",
    "FAMILIES",
    "Segment",
    "warmup_factor",
    "schedule_factor",
    "compress_lrs",
    "expand_segments",
]

Family = str
#: The hand-tuned baseline families of the protocol (docs/benchmark.md).
FAMILIES: tuple[Family, ...] = ("constant", "cosine", "step")

#: Milestones of the step family, as fractions of the budget T, and its decay per milestone.
STEP_MILESTONES: tuple[float, ...] = (0.5, 0.75)
STEP_DECAY = 0.1

#: ``(first_step, last_step, lr_at_first, lr_at_last)``, steps 0-based and inclusive; the LR
#: moves linearly in between.
Segment = tuple[int, int, float, float]


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the peak LR during warmup; 1.0 once ``step >= warmup_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return 1.0


def _constant(step: int, total_steps: int, warmup_steps: int) -> float:
    return 1.0


def _cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    # Anneals over the steps after warmup, reaching zero at step T (one past the last step).
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress))))


def _step(step: int, total_steps: int, warmup_steps: int) -> float:
    passed = sum(1 for fraction in STEP_MILESTONES if step >= fraction * total_steps)
    return STEP_DECAY**passed


_DECAYS: dict[Family, Callable[[int, int, int], float]] = {
    "constant": _constant,
    "cosine": _cosine,
    "step": _step,
}


def schedule_factor(family: Family, step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the peak LR at update step ``step`` of a ``total_steps`` run.

    Args:
        family: ``"constant"``, ``"cosine"`` (to zero at T) or ``"step"`` (×0.1 at 50% and
            at 75% of T).
        step: 0-based index of the update step about to run.
        total_steps: T, the run's budget in update steps. ≥ 1.
        warmup_steps: Linear warmup steps before the family's own shape applies. ≥ 0.

    Returns:
        The warmup ramp times the family's decay, in [0, 1].
    """
    if family not in _DECAYS:
        raise ConfigError(f"family must be one of {sorted(_DECAYS)}, got {family!r}")
    if step < warmup_steps:
        return warmup_factor(step, warmup_steps)
    return _DECAYS[family](step, total_steps, warmup_steps)


def compress_lrs(lrs: Sequence[float], rtol: float = 1e-3) -> list[Segment]:
    """Piecewise-linear segments that reproduce ``lrs`` (one LR per update step).

    Each segment is a line from the exact LR at its first step; it grows while some slope keeps
    every LR inside it within ``rtol`` (relative) of the line, so constant stages and linear
    warmups come out exact and a cosine takes a few dozen segments instead of T numbers. One
    pass, O(len(lrs)): the feasible slopes narrow to an interval as the segment grows.

    Args:
        lrs: LR of update steps 0, 1, 2, ...
        rtol: Largest relative deviation from the segment's line that is tolerated. ≥ 0.
    """
    segments: list[Segment] = []
    start = 0
    while start < len(lrs):
        origin = float(lrs[start])
        low, high = -math.inf, math.inf
        end = start
        while end + 1 < len(lrs):
            distance = end + 1 - start
            value = float(lrs[end + 1])
            tolerance = rtol * abs(value)
            new_low = max(low, (value - tolerance - origin) / distance)
            new_high = min(high, (value + tolerance - origin) / distance)
            if new_low > new_high:
                break
            low, high, end = new_low, new_high, end + 1
        segments.append((start, end, origin, _end_value(lrs, start, end, low, high)))
        start = end + 1
    return segments


def _end_value(lrs: Sequence[float], start: int, end: int, low: float, high: float) -> float:
    # Prefer the line through the exact last LR (exact for constants and ramps); otherwise the
    # middle of the feasible slopes, whose bounds are finite once a segment holds two points.
    if end == start:
        return float(lrs[start])
    exact = (float(lrs[end]) - float(lrs[start])) / (end - start)
    slope = exact if low <= exact <= high else 0.5 * (low + high)
    return float(lrs[start]) + slope * (end - start)


def expand_segments(segments: Sequence[Sequence[float]]) -> list[float]:
    """Inverse of :func:`compress_lrs` (exact up to its tolerance)."""
    lrs: list[float] = []
    for first, last, lr_first, lr_last in segments:
        length = int(last) - int(first)
        for index in range(length + 1):
            fraction = index / length if length else 0.0
            lrs.append(lr_first + (lr_last - lr_first) * fraction)
    return lrs
