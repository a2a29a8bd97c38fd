"""Reuse a schedule AutoLRS found: replay it as a plain PyTorch LR scheduler, with no search.

A run's schedule is a list of segments of update steps, each at a constant LR chosen by a
stage's search, after an optional linear warmup. :class:`FoundSchedule` holds it (from
``AutoLRS.history``, an event log, or a small JSON file); :class:`ReplaySchedule` is a
``torch.optim.lr_scheduler.LRScheduler`` that sets, at each update step, exactly the LR the run
used there::

    schedule = FoundSchedule.from_event_log("runs/run.jsonl")
    schedule.save("runs/schedule.json")                  # a few hundred bytes
    ...
    scheduler = ReplaySchedule(optimizer, FoundSchedule.load("runs/schedule.json"))
    for batch in batches:
        loss_fn(model(batch)).backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step()

Only update steps count: the search's rolled-back steps are not replayed, so update step ``u``
of the replay gets the LR of the run's ``u``-th kept step. As in :class:`~autolrs.AutoLRS`, the
LRs refer to the first param group and the other groups keep the ratio of their initial LR to
the first group's.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler

from autolrs.config import AutoLRSConfig
from autolrs.core.history import StageRecord
from autolrs.errors import AutoLRSError, ConfigError
from autolrs.events import replay_history

if TYPE_CHECKING:
    from autolrs.pytorch.scheduler import AutoLRS

__all__ = ["Segment", "FoundSchedule", "ReplaySchedule", "SCHEDULE_FORMAT"]

#: Value of the ``format`` field of a saved schedule file.
SCHEDULE_FORMAT = "autolrs-schedule/1"


@dataclass(frozen=True)
class Segment:
    """Update steps ``start`` to ``start + steps - 1``, the LR moving linearly ``lr`` → ``end_lr``.

    Attributes:
        start: First update step of the segment (0-based: update steps completed before it).
            ≥ 0.
        steps: Update steps in the segment. ≥ 1.
        lr: LR of the first param group at the segment's first step. Finite, ≥ 0.
        end_lr: LR at its last step; equal to ``lr`` for a constant segment. Finite, ≥ 0.
    """

    start: int
    steps: int
    lr: float
    end_lr: float

    def __post_init__(self) -> None:
        _check_int("start", self.start, minimum=0)
        _check_int("steps", self.steps, minimum=1)
        for name in ("lr", "end_lr"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"segment {name} must be a real number, got {value!r}")
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"segment {name} must be finite and >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        object.__setattr__(self, "start", int(self.start))
        object.__setattr__(self, "steps", int(self.steps))

    def lr_at(self, step: int) -> float:
        """LR at update step ``step``; before the segment its first LR, past its end its last."""
        offset = min(max(step - self.start, 0), self.steps - 1)
        # The arithmetic of Train.lr_at, so a replayed ramp equals the run's bit for bit.
        if self.steps == 1 or self.lr == self.end_lr:
            return self.lr
        return self.lr + (self.end_lr - self.lr) * offset / (self.steps - 1)


@dataclass(frozen=True)
class FoundSchedule:
    """The LR at every update step of a run, as segments in order of their start.

    Before the first segment's start the first LR applies; between and after segments the LR
    of the latest segment holds (its last value), so a schedule replayed past the end of the
    recorded run keeps its final LR.

    Attributes:
        segments: At least one segment, with strictly increasing ``start``.
    """

    segments: tuple[Segment, ...]

    def __post_init__(self) -> None:
        segments = tuple(self.segments)
        if not segments:
            raise ConfigError("a schedule needs at least one segment, got none")
        if not all(isinstance(s, Segment) for s in segments):
            raise ConfigError("schedule segments must be Segment objects")
        starts = [s.start for s in segments]
        if any(b <= a for a, b in itertools.pairwise(starts)):
            raise ConfigError(f"segment starts must increase strictly, got {starts}")
        object.__setattr__(self, "segments", segments)

    def lr_at(self, update_step: int) -> float:
        """LR of the first param group at 0-based ``update_step`` (≥ 0)."""
        _check_int("update_step", update_step, minimum=0)
        starts = [s.start for s in self.segments]
        index = max(bisect.bisect_right(starts, update_step) - 1, 0)
        return self.segments[index].lr_at(update_step)

    # -- building --------------------------------------------------------------------------

    @classmethod
    def from_history(
        cls, history: Sequence[StageRecord], config: AutoLRSConfig | None = None
    ) -> FoundSchedule:
        """The schedule of a run's stage records, with the warmup of ``config`` if any.

        Args:
            history: ``AutoLRS.history`` or the history of :func:`autolrs.events.replay_history`.
                Stages still searching (no chosen LR) are left out.
            config: The run's config; its ``warmup_steps``/``warmup_lr`` give the warmup ramp.
                None: no warmup.

        Raises:
            ConfigError: Neither a warmup nor a stage with a chosen LR: nothing was found yet.
        """
        segments = []
        if config is not None and config.warmup_steps > 0:
            # The ramp the controller commands: warmup_lr/steps up to warmup_lr.
            peak = float(config.warmup_lr)  # type: ignore[arg-type]  # set with warmup_steps
            segments.append(Segment(0, config.warmup_steps, peak / config.warmup_steps, peak))
        for stage in history:
            if stage.chosen_lr is not None:
                lr = stage.chosen_lr
                end = 0.0 if stage.cooldown else lr  # the cooldown decays linearly to 0
                segments.append(Segment(stage.start_update_step, stage.stage_steps, lr, end))
        if not segments:
            raise ConfigError(
                f"no schedule to replay: the history has {len(history)} stages and none chose "
                "an LR yet, and there is no warmup"
            )
        return cls(tuple(segments))

    @classmethod
    def from_autolrs(cls, scheduler: AutoLRS) -> FoundSchedule:
        """The schedule found so far by an :class:`~autolrs.AutoLRS` scheduler."""
        return cls.from_history(scheduler.history, scheduler.config)

    @classmethod
    def from_event_log(cls, path: str | os.PathLike[str]) -> FoundSchedule:
        """The schedule of a run's event log (``AutoLRS(event_log=...)``)."""
        config, history = replay_history(path)
        return cls.from_history(history, config)

    # -- saving ----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form; floats round-trip exactly through JSON."""
        return {
            "format": SCHEDULE_FORMAT,
            "segments": [
                {"start": s.start, "steps": s.steps, "lr": s.lr, "end_lr": s.end_lr}
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, data: Any) -> FoundSchedule:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"not an autolrs schedule: expected format {SCHEDULE_FORMAT!r}, got {found!r}"
            )
        try:
            segments = tuple(
                Segment(s["start"], s["steps"], s["lr"], s["end_lr"]) for s in data["segments"]
            )
        except (KeyError, TypeError) as error:
            raise ConfigError(f"malformed schedule segments: {error!r}") from error
        return cls(segments)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the schedule as a small JSON file; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FoundSchedule:
        """Read a file written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise AutoLRSError(f"cannot read schedule file {str(path)!r}: {error}") from error
        return cls.from_dict(data)


class ReplaySchedule(LRScheduler):
    """Sets, at each update step, the LR a finished AutoLRS run used there.

    Call :meth:`step` once after every ``optimizer.step()``, as with any PyTorch scheduler.
    After construction the optimizer holds the LR of update step 0; after the ``u``-th call of
    :meth:`step`, that of update step ``u``.

    Args:
        optimizer: The optimizer to drive. Its param groups' initial LRs (``initial_lr`` if
            set, else ``lr``) fix each group's ratio to the first group, as in AutoLRS; build
            it as the searched run did to get the same LRs in every group.
        schedule: The schedule to replay.
        last_epoch: Index of the last update step taken, as in every torch scheduler: -1 for
            a fresh run (the default); a resumed run should use :meth:`load_state_dict`.

    Example:
        >>> import torch
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> found = FoundSchedule((Segment(0, 2, 0.05, 0.1), Segment(2, 3, 0.3, 0.3)))
        >>> scheduler = ReplaySchedule(optimizer, found)
        >>> lrs = []
        >>> for _ in range(6):
        ...     lrs.append(scheduler.get_last_lr()[0])
        ...     optimizer.step()
        ...     scheduler.step()
        >>> lrs
        [0.05, 0.1, 0.3, 0.3, 0.3, 0.3]
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, schedule: FoundSchedule, last_epoch: int = -1
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not isinstance(schedule, FoundSchedule):
            raise ConfigError(
                f"schedule must be a FoundSchedule, got {type(schedule).__name__}; build one "
                "with FoundSchedule.from_event_log, .from_autolrs or .load"
            )
        self.schedule = schedule
        self._ratios = _group_ratios(optimizer)
        super().__init__(optimizer, last_epoch)

    @classmethod
    def from_autolrs(cls, optimizer: torch.optim.Optimizer, scheduler: AutoLRS) -> ReplaySchedule:
        """Replay what an :class:`~autolrs.AutoLRS` scheduler has found so far."""
        return cls(optimizer, FoundSchedule.from_autolrs(scheduler))

    @classmethod
    def from_event_log(
        cls, optimizer: torch.optim.Optimizer, path: str | os.PathLike[str]
    ) -> ReplaySchedule:
        """Replay the run recorded in an event log."""
        return cls(optimizer, FoundSchedule.from_event_log(path))

    @classmethod
    def load(
        cls, optimizer: torch.optim.Optimizer, path: str | os.PathLike[str]
    ) -> ReplaySchedule:
        """Replay a schedule file written by :meth:`save` or :meth:`FoundSchedule.save`."""
        return cls(optimizer, FoundSchedule.load(path))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the replayed schedule as a small JSON file (not the position in it)."""
        return self.schedule.save(path)

    def get_lr(self) -> list[float]:  # type: ignore[override]
        """LRs of the param groups at update step ``last_epoch``."""
        lr = self.schedule.lr_at(max(self.last_epoch, 0))
        return [lr * ratio for ratio in self._ratios]

    def _get_closed_form_lr(self) -> list[float]:
        return self.get_lr()

    def state_dict(self) -> dict[str, Any]:
        """Position in the schedule and the schedule itself, as plain data.

        Like every torch scheduler's: everything but the optimizer. The schedule is stored as
        its :meth:`FoundSchedule.to_dict`, so ``torch.load(..., weights_only=True)`` reads it.
        """
        state = super().state_dict()
        state["schedule"] = self.schedule.to_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output."""
        state = dict(state_dict)
        state["schedule"] = FoundSchedule.from_dict(state["schedule"])
        super().load_state_dict(state)


def _group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's initial LR over the first group's, computed as AutoLRS computes it."""
    initial = [_lr_value(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    if initial[0] <= 0:
        return [1.0] * len(initial)
    return [lr / initial[0] for lr in initial]


def _lr_value(lr: float | torch.Tensor) -> float:
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
