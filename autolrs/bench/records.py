"""What one benchmark run leaves behind: its key, its validation curve and its totals.

Cost units: an *executed step* is one optimizer step (forward, backward, update), kept or
rolled back; *evaluation cost* is a method's own validation passes in the same unit, as the task
prices them (``val_cost``, ``probe_cost``). The harness's own full-validation passes, which only
measure, cost nothing here and their wall time is kept apart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "HARNESS_VERSION",
    "StopReason",
    "CurvePoint",
    "RunKey",
    "RunRecord",
    "config_hash",
    "json_safe",
    "finite_or_none",
    "trained_stages",
]

#: Bumped whenever a change to the harness would change what a stored record means.
HARNESS_VERSION = 1

#: ``"budget"``: T update steps done; ``"cap"``: 3T executed steps done first;
#: ``"diverged"``: a non-finite loss ended the run.
StopReason = Literal["budget", "cap", "diverged"]


@dataclass(frozen=True)
class CurvePoint:
    """The committed model's validation loss at one point of a run.

    Attributes:
        update_steps: Steps kept as progress when it was measured.
        total_steps: Every optimizer step executed by then, rolled-back search steps included.
        eval_cost: The method's own validation passes so far, in step equivalents.
        wall_s: Seconds the run had taken, excluding the harness's validation passes.
        val_loss: The task's full validation metric; None when it was not finite.
    """

    update_steps: int
    total_steps: int
    eval_cost: float
    wall_s: float
    val_loss: float | None

    @property
    def cost(self) -> float:
        """What the method had paid by then: executed steps plus its own evaluations."""
        return self.total_steps + self.eval_cost

    def to_list(self) -> list[Any]:
        """Compact JSON form, fields in declaration order."""
        return [self.update_steps, self.total_steps, self.eval_cost, self.wall_s, self.val_loss]

    @classmethod
    def from_list(cls, data: list[Any]) -> CurvePoint:
        """Inverse of :meth:`to_list`."""
        update, total, cost, wall, val = data
        return cls(int(update), int(total), float(cost), float(wall), finite_or_none(val))


@dataclass(frozen=True)
class RunKey:
    """What identifies a run in the results store; a finished key is never run again.

    Attributes:
        task: Task name.
        version: Task version.
        variant: ``"standard"`` or ``"smoke"``.
        method: Method name (a grid point's method is its family).
        lr: The method's LR (None for AutoLRS, which searches its own).
        seed: The run's seed.
        config_hash: Hash of everything else that decides the run (:func:`config_hash`).
    """

    task: str
    version: int
    variant: str
    method: str
    lr: float | None
    seed: int
    config_hash: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunKey:
        """Inverse of :meth:`to_dict`."""
        return cls(
            task=str(data["task"]),
            version=int(data["version"]),
            variant=str(data["variant"]),
            method=str(data["method"]),
            lr=None if data["lr"] is None else float(data["lr"]),
            seed=int(data["seed"]),
            config_hash=str(data["config_hash"]),
        )


@dataclass(frozen=True)
class RunRecord:
    """One finished run.

    Attributes:
        key: Its key in the store.
        config: The resolved method config and harness settings that ``key.config_hash``
            hashes.
        curve: Validation points every ``eval_every`` update steps of the committed
            trajectory, plus one at the end when the run ended on an update step.
        lr_segments: LR per update step of the committed trajectory, as piecewise-linear
            segments ``[first, last, lr_first, lr_last]`` (see
            :func:`~autolrs.bench.schedules.compress_lrs`).
        update_steps: Steps kept as progress at the end.
        total_steps: Steps executed in all.
        eval_cost: The method's own evaluation cost, in step equivalents.
        wall_s: The run's wall time, excluding the harness's validation passes.
        harness_eval_s: Wall time of the harness's validation passes.
        stop_reason: Why the run ended.
        extras: Method-specific results (AutoLRS: stages, search steps, forecast errors,
            history).
    """

    key: RunKey
    config: dict[str, Any]
    curve: list[CurvePoint]
    lr_segments: list[list[float]]
    update_steps: int
    total_steps: int
    eval_cost: float
    wall_s: float
    harness_eval_s: float
    stop_reason: StopReason
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def final_val_loss(self) -> float | None:
        """Validation loss at the end of the run; None if it diverged or has no point."""
        if self.stop_reason == "diverged" or not self.curve:
            return None
        return self.curve[-1].val_loss

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (one line of the results file)."""
        return {
            "key": self.key.to_dict(),
            "config": self.config,
            "curve": [point.to_list() for point in self.curve],
            "lr_segments": [list(segment) for segment in self.lr_segments],
            "update_steps": self.update_steps,
            "total_steps": self.total_steps,
            "eval_cost": self.eval_cost,
            "wall_s": self.wall_s,
            "harness_eval_s": self.harness_eval_s,
            "stop_reason": self.stop_reason,
            "final_val_loss": self.final_val_loss,
            "extras": json_safe(self.extras),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            key=RunKey.from_dict(data["key"]),
            config=dict(data["config"]),
            curve=[CurvePoint.from_list(point) for point in data["curve"]],
            lr_segments=[list(segment) for segment in data["lr_segments"]],
            update_steps=int(data["update_steps"]),
            total_steps=int(data["total_steps"]),
            eval_cost=float(data["eval_cost"]),
            wall_s=float(data["wall_s"]),
            harness_eval_s=float(data["harness_eval_s"]),
            stop_reason=data["stop_reason"],
            extras=dict(data.get("extras", {})),
        )


def config_hash(config: dict[str, Any]) -> str:
    """First 16 hex digits of the SHA-256 of ``config`` as canonical JSON."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (a diverged loss) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def finite_or_none(value: Any) -> float | None:
    """``float(value)``, or None when it is None or not finite (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def trained_stages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stages of an AutoLRS run's history (``StageRecord.to_dict`` form) that trained.

    The controller opens the next stage as soon as one ends, so a run whose budget ran out
    at a stage's end also holds a stage that tried no candidate and trained nothing. The
    stored form of :attr:`autolrs.core.history.StageRecord.trained`, read from the fields it
    needs alone.
    """
    return [
        stage
        for stage in history
        if stage.get("candidates") or stage.get("cooldown") or stage.get("settled")
    ]
