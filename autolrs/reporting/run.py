"""Read a run back from its event log: every executed step, the stage history and the totals.

The event log (:mod:`autolrs.events`) is the run's complete record. Its ``report`` events carry
the loss of every executed step and the counters after the command, so the timeline of steps
follows from them alone: a command whose steps raised the update-step counter was kept as
progress (warmup, stage training, or a candidate's trial kept by ``keep_last_trial``); any other
was search (a candidate's trial, or a stage training that diverged and was rolled back). The
stage records come from :func:`~autolrs.events.replay_history`, which rebuilds them exactly.

Step numbering follows :class:`~autolrs.plotting.StepRecord`: ``total_step`` counts executed
steps from 1, ``update_step`` counts the update steps completed before a step ran.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autolrs.config import AutoLRSConfig
from autolrs.core.commands import Train
from autolrs.core.controller import stage_observations
from autolrs.core.history import StageRecord
from autolrs.core.search import GPSearch
from autolrs.errors import AutoLRSError
from autolrs.events import read_events, replay_history
from autolrs.plotting import StepRecord, ValPoint

__all__ = ["RunRecord", "Totals", "StagePosterior", "read_run", "stage_posterior"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Totals:
    """What the whole run cost.

    Attributes:
        update_steps: Steps kept as progress (warmup and stage training).
        search_steps: Executed steps that were rolled back (candidate trials, diverged stages).
        evaluations: Validation-loss measurements.
        wall_seconds: Time from the scheduler's creation to its last event, summed over the
            processes of a resumed run.
        search_seconds: Part of ``wall_seconds`` spent on commands whose steps were rolled back
            (each command is charged the time since the event before its report).
        resumes: How often the run was resumed from a checkpoint.
    """

    update_steps: int
    search_steps: int
    evaluations: int
    wall_seconds: float
    search_seconds: float
    resumes: int

    @property
    def executed_steps(self) -> int:
        """Every executed step: ``update_steps + search_steps``."""
        return self.update_steps + self.search_steps


@dataclass(frozen=True)
class RunRecord:
    """A run as its event log tells it.

    Attributes:
        source: The event log it was read from.
        config: The run's AutoLRS config.
        validation: Whether the run had a validation function.
        history: One record per stage begun, rebuilt exactly from the logged reports.
        steps: Every executed step in order (steps redone after a resume appear once).
        val_points: Every validation loss, at the executed step it followed.
        totals: Step counts, evaluations and wall time.
    """

    source: Path
    config: AutoLRSConfig
    validation: bool
    history: list[StageRecord]
    steps: list[StepRecord]
    val_points: list[ValPoint]
    totals: Totals

    @property
    def stages(self) -> list[StageRecord]:
        """The stages that began training, i.e. whose search picked an LR."""
        return [stage for stage in self.history if stage.chosen_lr is not None]


@dataclass
class _Timeline:
    """What the walk over the events has gathered so far."""

    steps: list[StepRecord] = field(default_factory=list)
    val_points: list[ValPoint] = field(default_factory=list)
    update_steps: int = 0
    search_steps: int = 0
    evaluations: int = 0
    time_offset: float = 0.0
    last_time: float = 0.0
    search_seconds: float = 0.0
    resumes: int = 0

    def jump_to(self, event: dict[str, Any]) -> None:
        """A resume: the counters go back to the checkpoint; later steps were redone."""
        self.time_offset += self.last_time
        self.last_time = float(event["time"])
        self.update_steps = int(event["update_steps"])
        self.search_steps = int(event["search_steps"])
        self.evaluations = int(event["evaluations"])
        executed = self.update_steps + self.search_steps
        self.steps = [s for s in self.steps if s.total_step <= executed]
        self.val_points = [p for p in self.val_points if p.total_step <= executed]
        self.resumes += 1


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read a run from its event log.

    A log appended to by several runs (the same ``event_log`` path used twice) holds several
    ``start`` events; the last run is read, as :func:`~autolrs.events.replay_history` does.

    Args:
        path: A JSON-lines event log written through ``AutoLRS(event_log=...)``.

    Returns:
        The run's config, history, steps, validation points and totals.

    Raises:
        AutoLRSError: The file is missing, is not an event log, or records no finished
            command yet.
    """
    path = Path(path)
    if not path.is_file():
        raise AutoLRSError(f"event log {str(path)!r} does not exist or is not a file")
    config, history = replay_history(path)
    validation = False
    timeline = _Timeline()
    for event in read_events(path):
        kind = event["event"]
        if kind == "start":
            validation = bool(event["validation"])
            timeline = _Timeline()
        elif kind == "resume":
            timeline.jump_to(event)
        elif kind == "report":
            _add_report(timeline, event)
        timeline.last_time = float(event["time"])

    if not timeline.steps:
        raise AutoLRSError(
            f"{path}: the log records no finished command yet, so there is nothing to report"
        )
    totals = Totals(
        update_steps=timeline.update_steps,
        search_steps=timeline.search_steps,
        evaluations=timeline.evaluations,
        wall_seconds=timeline.time_offset + timeline.last_time,
        search_seconds=timeline.search_seconds,
        resumes=timeline.resumes,
    )
    return RunRecord(
        source=path,
        config=config,
        validation=validation,
        history=history,
        steps=timeline.steps,
        val_points=timeline.val_points,
        totals=totals,
    )


def _add_report(timeline: _Timeline, event: dict[str, Any]) -> None:
    """Append the steps of one finished command to the timeline."""
    losses = [float(x) for x in event["losses"]]
    kept = int(event["update_steps"]) > timeline.update_steps
    if event["phase"] == "trial" and kept:
        phase = "stage"  # a kept trial (keep_last_trial) trained at the stage's chosen LR
    else:
        phase = event["phase"] if kept else "trial"
    # Only the warmup ramps the LR, and its report is logged only when the ramp completed (a
    # diverged warmup ends the run), so the reported steps are the ramp's.
    command = Train(
        seq=int(event["seq"]),
        phase=event["phase"],
        steps=len(losses),
        lr=float(event["lr"]),
        end_lr=float(event["end_lr"]),
    )

    first_total = len(timeline.steps) + 1
    for index, loss in enumerate(losses):
        timeline.steps.append(
            StepRecord(
                total_step=first_total + index,
                update_step=timeline.update_steps + (index if kept else 0),
                phase=phase,
                lr=command.lr_at(index),
                loss=loss,
            )
        )
    every = int(event["eval_every"])
    for number, value in enumerate(event["val_losses"], start=1):
        timeline.val_points.append(ValPoint(first_total - 1 + every * number, float(value)))

    if not kept:
        timeline.search_seconds += float(event["time"]) - timeline.last_time
    timeline.update_steps = int(event["update_steps"])
    timeline.search_steps = int(event["search_steps"])
    timeline.evaluations = int(event["evaluations"])


@dataclass(frozen=True)
class StagePosterior:
    """The GP of one stage's search, evaluated on a grid of LRs.

    Attributes:
        lrs: Grid of LRs from ``min_lr`` to ``max_lr``, log-spaced. Shape (G,).
        mean: Posterior mean μ at each grid LR, in loss units; NaN when the GP had no data.
        std: Posterior standard deviation σ of the latent loss (noise excluded). Shape (G,).
        penalty: The value failed candidates stand for inside the GP; None when none failed
            or no candidate succeeded.
    """

    lrs: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    penalty: float | None

    @property
    def ok(self) -> bool:
        """Whether the GP could be evaluated (some candidate gave a finite forecast)."""
        return bool(np.all(np.isfinite(self.mean)))


def stage_posterior(
    config: AutoLRSConfig, stage: StageRecord, *, points: int = 200
) -> StagePosterior:
    """Evaluate the GP the search fitted at the end of ``stage``'s search.

    It is the same GP (same kernel, hyperparameter fit and observations) the controller used
    to pick the stage's LR, so the chosen LR sits at the lowest posterior mean among the
    candidates when ``choose_by="posterior_mean"``.

    Args:
        config: The run's config.
        stage: A stage record with at least one candidate.
        points: Grid size over [min_lr, max_lr]. ≥ 2.

    Returns:
        Mean and standard deviation on the grid, and the failed candidates' value.
    """
    if points < 2:
        raise AutoLRSError(f"points must be >= 2, got {points!r}")
    search = GPSearch(
        config.min_lr,
        config.max_lr,
        kappa=config.kappa,
        length_scale=config.gp_length_scale,
        fit_hyperparameters=config.gp_fit_hyperparameters,
        first_candidate=config.first_candidate,
    )
    observations = stage_observations(stage)
    lrs = np.geomspace(config.min_lr, config.max_lr, points)
    mean, std = search.posterior(observations, lrs)
    penalty = search.penalty(observations) if any(o.failed for o in observations) else None
    return StagePosterior(lrs=lrs, mean=mean, std=std, penalty=penalty)


def finite(values: Iterable[float | None]) -> list[float]:
    """The values that are numbers and finite, in order."""
    return [float(v) for v in values if v is not None and math.isfinite(v)]
