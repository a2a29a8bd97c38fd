"""Pictures of a run: the LR and loss of every executed step, with the search made visible.

:func:`plot_schedule` draws what the run actually executed (update steps *and* search steps) on
one x axis, so the cost of the search is there to see; :func:`plot_found_schedule` draws only the
schedule that was found, against update steps, as a plain LR scheduler would replay it.

Matplotlib is an optional dependency (``pip install autolrs[plot]``) and is imported only when a
function here is called. Figures are drawn on the Agg canvas directly, so plotting never selects
or changes the pyplot backend of the program that calls it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from autolrs.core.commands import PHASES, Phase
from autolrs.core.history import StageRecord
from autolrs.errors import AutoLRSError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["StepRecord", "ValPoint", "plot_schedule", "plot_found_schedule"]

logger = logging.getLogger(__name__)

_SEARCH_SHADE = "#f2c14e"
_LR_COLOR = "#1f4e79"
_CHOSEN_COLOR = "#c0392b"
_LOSS_COLOR = "#5b7fa6"
_SMOOTH_COLOR = "#1f3b57"
_VAL_COLOR = "#c0392b"
_RESULT_COLOR = "#2e7d32"
_BOUNDARY_COLOR = "#555555"


@dataclass(frozen=True)
class StepRecord:
    """One executed step of a run, as the training loop saw it.

    Attributes:
        total_step: 1-based index among all executed steps (warmup, trial and stage).
        update_step: Update steps completed before this step ran (trial steps do not count,
            since they are rolled back).
        phase: ``"warmup"``, ``"trial"`` or ``"stage"``.
        lr: LR of the first param group during the step.
        loss: Training loss of the step's mini-batch.
    """

    total_step: int
    update_step: int
    phase: Phase
    lr: float
    loss: float

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise AutoLRSError(f"phase must be one of {PHASES}, got {self.phase!r}")


@dataclass(frozen=True)
class ValPoint:
    """A validation loss measured after executed step ``total_step``."""

    total_step: int
    loss: float


def plot_schedule(
    steps: Sequence[StepRecord],
    history: Sequence[StageRecord],
    path: str | Path,
    *,
    val_points: Sequence[ValPoint] = (),
    title: str | None = None,
) -> Path:
    """Draw the LR and the loss of every executed step, and save the figure.

    Two panels share the x axis of executed steps. The upper one shows the LR of every step
    (log scale) with each stage's chosen LR drawn bold. The lower one shows the training loss of
    every step (thin), its moving average, the validation points, and at the end of each stage
    the loss the search forecast for it beside the loss it reached. In both, the search windows
    (candidate trials, later rolled back) are shaded and stage starts are dotted lines labelled
    with the stage number.

    Args:
        steps: Every executed step in order, as recorded by the training loop. Not empty.
        history: The stage records of the run (``AutoLRS.history``); may be empty.
        path: Where to write the image; the format follows the suffix (``.png``, ``.svg``, …).
            Missing parent directories are created.
        val_points: Validation losses to mark in the loss panel.
        title: Figure title; by default one that counts stages and steps.

    Returns:
        The path written.

    Raises:
        AutoLRSError: When ``steps`` is empty or matplotlib is not installed.
    """
    if not steps:
        raise AutoLRSError("plot_schedule needs at least one step record, got an empty sequence")
    figure_class, canvas_class = _matplotlib()

    figure = figure_class(figsize=(11, 7), layout="constrained")
    canvas_class(figure)
    lr_axes, loss_axes = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.2))
    search_windows = _phase_windows(steps, "trial")
    for axes in (lr_axes, loss_axes):
        for start, end in search_windows:
            axes.axvspan(start - 0.5, end + 0.5, color=_SEARCH_SHADE, alpha=0.28, lw=0)
        for record in history:
            axes.axvline(record.start_total_step + 0.5, color=_BOUNDARY_COLOR, ls=":", lw=0.9)
        axes.grid(True, which="major", alpha=0.25)

    spans = _stage_training(steps, history)
    _draw_lr_panel(lr_axes, steps, spans)
    _label_stages(lr_axes, history)
    _draw_loss_panel(loss_axes, steps, val_points, spans)
    loss_axes.set_xlim(steps[0].total_step - 0.5, steps[-1].total_step + 0.5)

    _add_legend(figure, lr_axes, loss_axes, has_search=bool(search_windows))
    figure.suptitle(title or _default_title(steps, history), fontsize=12)
    return _save(figure, path)


def plot_found_schedule(
    history: Sequence[StageRecord],
    path: str | Path,
    *,
    title: str = "LR schedule found by AutoLRS (update steps only)",
) -> Path:
    """Draw the schedule that was found, LR against update steps, and save the figure.

    Each stage is a constant segment at its chosen LR from its first to its last update step;
    the search steps are left out, so this is the schedule a plain LR scheduler would replay.

    Args:
        history: The stage records of the run. At least one stage must have a chosen LR.
        path: Where to write the image; the format follows the suffix.
        title: Figure title.

    Returns:
        The path written.

    Raises:
        AutoLRSError: When no stage has a chosen LR or matplotlib is not installed.
    """
    stages = [r for r in history if r.chosen_lr is not None]
    if not stages:
        raise AutoLRSError(
            f"plot_found_schedule needs a stage with a chosen LR, got {len(history)} stage "
            "records and none has one"
        )
    figure_class, canvas_class = _matplotlib()

    figure = figure_class(figsize=(9, 3.6), layout="constrained")
    canvas_class(figure)
    axes = figure.subplots()
    xs: list[float] = []
    ys: list[float] = []
    for record in stages:
        start = record.start_update_step
        axes.axvline(start, color=_BOUNDARY_COLOR, ls=":", lw=0.9)
        if record.cooldown:
            continue
        xs += [start, start + record.stage_steps]
        ys += [record.chosen_lr, record.chosen_lr]  # type: ignore[list-item]
    if xs:
        axes.plot(xs, ys, color=_CHOSEN_COLOR, lw=2.0, drawstyle="steps-post")
    for record in stages:
        if record.cooldown and record.stage_steps > 1:
            lr = float(record.chosen_lr)  # type: ignore[arg-type]
            steps, lrs = _cooldown_curve(lr, record.start_update_step, record.stage_steps)
            axes.plot(steps, lrs, color=_CHOSEN_COLOR, lw=2.0)
    axes.set_yscale("log")
    axes.set_xlabel("update step")
    axes.set_ylabel("learning rate")
    axes.grid(True, alpha=0.25)
    axes.set_title(title, fontsize=11)
    return _save(figure, path)


def _draw_lr_panel(
    axes: Axes, steps: Sequence[StepRecord], spans: list[tuple[StageRecord, int, int]]
) -> None:
    """The LR actually used at each step, then the stage LRs drawn over it."""
    axes.plot(
        [s.total_step for s in steps],
        [s.lr for s in steps],
        color=_LR_COLOR,
        lw=0.9,
        drawstyle="steps-mid",
        label="LR of each step",
    )
    _draw_chosen_lrs(axes, spans)
    axes.set_yscale("log")
    axes.set_ylabel("learning rate")


def _draw_loss_panel(
    axes: Axes,
    steps: Sequence[StepRecord],
    val_points: Sequence[ValPoint],
    spans: list[tuple[StageRecord, int, int]],
) -> None:
    """Training loss, its moving average, validation points and each stage's outcome.

    The sawtooth during a search is each candidate starting again from the snapshot; the
    moving average restarts with each candidate so that it never mixes two of them.
    """
    axes.plot(
        [s.total_step for s in steps],
        [s.loss for s in steps],
        color=_LOSS_COLOR,
        lw=0.5,
        alpha=0.45,
        label="training loss",
    )
    window = max(1, len(steps) // 250)
    for segment in _segments(steps):
        axes.plot(
            [s.total_step for s in segment],
            _trailing_mean([s.loss for s in segment], window),
            color=_SMOOTH_COLOR,
            lw=1.1,
            label=f"moving average ({window} steps)" if segment[0] is steps[0] else None,
        )
    if val_points:
        axes.plot(
            [p.total_step for p in val_points],
            [p.loss for p in val_points],
            ls="none",
            marker="o",
            ms=2,
            alpha=0.7,
            color=_VAL_COLOR,
            label="validation loss",
        )
    _draw_stage_results(axes, spans)

    # Candidates that diverge run off the top instead of squashing the rest.
    limits = _loss_limits(steps, val_points)
    if limits is not None:
        axes.set_yscale("log")
        axes.set_ylim(*limits)
    axes.set_ylabel("loss")
    axes.set_xlabel("executed step (update and search)")


def _matplotlib() -> tuple[type[Figure], type]:
    """The Figure class and the Agg canvas, or an error that says how to install them."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise AutoLRSError(
            f"plotting needs matplotlib, which could not be imported ({error}); "
            "install it with: pip install autolrs[plot]"
        ) from error
    return Figure, FigureCanvasAgg


def _phase_windows(steps: Sequence[StepRecord], phase: Phase) -> list[tuple[int, int]]:
    """First and last ``total_step`` of each unbroken run of steps in ``phase``."""
    windows: list[tuple[int, int]] = []
    for step in steps:
        if step.phase != phase:
            continue
        if windows and windows[-1][1] == step.total_step - 1:
            windows[-1] = (windows[-1][0], step.total_step)
        else:
            windows.append((step.total_step, step.total_step))
    return windows


def _segments(steps: Sequence[StepRecord]) -> list[list[StepRecord]]:
    """Split the steps where training jumps: at a phase change and between two candidates."""
    segments: list[list[StepRecord]] = []
    for step in steps:
        previous = segments[-1][-1] if segments else None
        if (
            previous is None
            or step.phase != previous.phase
            or (step.phase == "trial" and step.lr != previous.lr)
        ):
            segments.append([step])
        else:
            segments[-1].append(step)
    return segments


def _trailing_mean(values: list[float], window: int) -> np.ndarray:
    """Mean of each value and up to ``window - 1`` values before it (fewer at the start)."""
    data = np.asarray(values, dtype=float)
    sums = np.cumsum(np.insert(data, 0, 0.0))
    ends = np.arange(1, data.size + 1)
    starts = np.maximum(ends - window, 0)
    return (sums[ends] - sums[starts]) / (ends - starts)


def _loss_limits(
    steps: Sequence[StepRecord], val_points: Sequence[ValPoint]
) -> tuple[float, float] | None:
    """Log-scale limits for the loss panel, or None when no loss is positive (linear scale).

    The top is twice the largest loss of a kept step (warmup or stage), so that the curve of
    the training itself fills the panel; the bottom is the 1st percentile of all positive
    losses, so that a few near-zero mini-batch losses do not stretch it over many decades.
    """
    losses = [s.loss for s in steps] + [p.loss for p in val_points]
    positive = np.array([v for v in losses if math.isfinite(v) and v > 0])
    if positive.size == 0:
        return None
    kept = [s.loss for s in steps if s.phase != "trial" and math.isfinite(s.loss) and s.loss > 0]
    top = 2.0 * (max(kept) if kept else float(np.percentile(positive, 99)))
    bottom = float(np.percentile(positive, 1)) / 1.5
    return min(bottom, top / 10), top


def _stage_training(
    steps: Sequence[StepRecord], history: Sequence[StageRecord]
) -> list[tuple[StageRecord, int, int]]:
    """Each stage with the first and last ``total_step`` it trained with its chosen LR."""
    boundaries = [r.start_total_step for r in history] + [steps[-1].total_step]
    spans = []
    for record, end in zip(history, boundaries[1:], strict=True):
        trained = [
            s.total_step
            for s in steps
            if s.phase == "stage" and record.start_total_step < s.total_step <= end
        ]
        if trained:
            spans.append((record, trained[0], trained[-1]))
    return spans


def _cooldown_curve(lr: float, first: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps and LRs of a cooldown: ``count`` steps from ``first`` decaying ``lr`` linearly to 0.

    The last step, at LR 0, is left out: the LR axes are logarithmic.
    """
    offsets = np.arange(count - 1)
    return first + offsets, lr * (1 - offsets / (count - 1))


def _draw_chosen_lrs(axes: Axes, spans: list[tuple[StageRecord, int, int]]) -> None:
    """Draw each stage's chosen LR over the steps that trained with it."""
    for number, (record, first, last) in enumerate(spans):
        if record.chosen_lr is None:
            continue
        label = "chosen LR of the stage" if number == 0 else None
        if record.cooldown and last > first:
            steps, lrs = _cooldown_curve(record.chosen_lr, first, last - first + 1)
            axes.plot(steps, lrs, color=_CHOSEN_COLOR, lw=2.4, label=label)
        else:
            axes.hlines(
                record.chosen_lr, first - 0.5, last + 0.5, color=_CHOSEN_COLOR, lw=2.4, label=label
            )


def _draw_stage_results(axes: Axes, spans: list[tuple[StageRecord, int, int]]) -> None:
    """Mark, at each stage's last step, the loss the search forecast for it and the one reached.

    Both are in the stage's metric: the training loss (mean of the last τ' steps) before the
    switch, the validation loss after it.
    """
    ends = [last for record, _, last in spans if record.final_loss is not None]
    reached = [record.final_loss for record, _, _ in spans if record.final_loss is not None]
    forecast_ends = [last for record, _, last in spans if record.chosen_forecast is not None]
    forecasts = [r.chosen_forecast for r, _, _ in spans if r.chosen_forecast is not None]
    axes.plot(
        forecast_ends,
        forecasts,
        ls="none",
        marker="D",
        ms=6,
        mfc="none",
        mec=_RESULT_COLOR,
        mew=1.3,
        label="forecast for the stage",
    )
    axes.plot(
        ends,
        reached,
        ls="none",
        marker="D",
        ms=4,
        color=_RESULT_COLOR,
        label="reached by the stage",
    )


def _label_stages(axes: Axes, history: Sequence[StageRecord]) -> None:
    """Write each stage's number just above the panel, right of its boundary."""
    transform = axes.get_xaxis_transform()  # x in data units, y in axes fraction
    for record in history:
        suffix = " val" if record.metric == "val" else ""
        axes.text(
            record.start_total_step + 0.5,
            1.01,
            f"S{record.index}{suffix}",
            transform=transform,
            ha="left",
            va="bottom",
            fontsize=8,
            color=_BOUNDARY_COLOR,
        )


def _add_legend(figure: Figure, lr_axes: Axes, loss_axes: Axes, *, has_search: bool) -> None:
    """One legend for both panels, in rows below them, so that it hides no data."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = lr_axes.get_legend_handles_labels()
    more_handles, more_labels = loss_axes.get_legend_handles_labels()
    handles += more_handles
    labels += more_labels
    if has_search:
        handles.append(Patch(color=_SEARCH_SHADE, alpha=0.5))
        labels.append("search (candidate trials, rolled back)")
    handles.append(Line2D([], [], color=_BOUNDARY_COLOR, ls=":", lw=0.9))
    labels.append("stage start (S2 val: stage 2, judged by validation loss)")
    figure.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)


def _default_title(steps: Sequence[StepRecord], history: Sequence[StageRecord]) -> str:
    updates = sum(1 for s in steps if s.phase != "trial")
    searches = len(steps) - updates
    return (
        f"AutoLRS: {len(history)} stages, {updates} update steps + {searches} search steps "
        f"= {len(steps)} executed"
    )


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=130)
    logger.debug("wrote %s", path)
    return path
