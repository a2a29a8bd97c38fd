"""Checking and reading the losses a training loop reports for one Train command."""

from __future__ import annotations

import math

import numpy as np

from autolrs.core.commands import Report, Train
from autolrs.errors import ProtocolError

__all__ = ["divergence", "mean_and_error", "tail_max", "tail_mean", "validate_report"]


def validate_report(command: Train, report: Report) -> tuple[list[float], list[float]]:
    """Check that ``report`` answers ``command``; return its losses as lists of floats."""
    if not isinstance(report, Report):
        raise ProtocolError(f"report must be a Report, got {type(report).__name__}")
    if report.seq != command.seq:
        raise ProtocolError(
            f"report answers command seq={report.seq}, but the pending command is "
            f"seq={command.seq}"
        )
    losses = [float(x) for x in report.losses]
    val_losses = [float(x) for x in report.val_losses]
    executed = len(losses)
    if executed == 0 or executed > command.steps:
        raise ProtocolError(
            f"report seq={command.seq} must carry between 1 and {command.steps} losses, "
            f"got {executed}"
        )

    stopped_by_loss = command.should_abort(losses[-1])
    stopped_by_val = bool(val_losses) and not math.isfinite(val_losses[-1])
    if executed < command.steps and not (stopped_by_loss or stopped_by_val):
        raise ProtocolError(
            f"report seq={command.seq} stopped after {executed} of {command.steps} steps, "
            "but its last loss gives no reason to stop early"
        )

    # No evaluation follows a step whose loss stopped the command.
    evaluated_steps = executed - 1 if stopped_by_loss else executed
    expected = evaluated_steps // command.eval_every if command.eval_every else 0
    if len(val_losses) != expected:
        raise ProtocolError(
            f"report seq={command.seq} must carry {expected} validation losses for "
            f"{executed} executed steps with eval_every={command.eval_every}, "
            f"got {len(val_losses)}"
        )
    return losses, val_losses


def divergence(command: Train, losses: list[float], curve: list[float]) -> str:
    """Why a finished command's losses count as diverged: "non_finite", "diverged" or ""."""
    if not all(math.isfinite(x) for x in curve) or not math.isfinite(losses[-1]):
        return "non_finite"
    if len(losses) < command.steps:
        return "diverged"  # stopped by abort_above
    return ""


def tail_max(losses: list[float], count: int) -> float | None:
    """Largest of the last ``count`` losses, or None when it is not finite."""
    value = float(np.max(losses[-count:]))
    return value if math.isfinite(value) else None


def tail_mean(losses: list[float], count: int) -> float | None:
    """Mean of the last ``count`` losses, or None when it is not finite."""
    value = float(np.mean(losses[-count:]))
    return value if math.isfinite(value) else None


def mean_and_error(losses: list[float]) -> tuple[float, float] | None:
    """Mean of ``losses`` and its standard error (0 for one loss); None if any is not finite."""
    values = np.asarray(losses, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        return None
    error = float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0
    return float(values.mean()), error
