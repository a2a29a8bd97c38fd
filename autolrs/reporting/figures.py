"""The report's figures, drawn with matplotlib on the Agg canvas and returned as PNG bytes.

Matplotlib is optional (``pip install 'autolrs[plot]'``) and imported only when a figure is
drawn; figures are drawn on their own Agg canvas, never through pyplot, so the caller's
backend is left alone. The timeline of every executed step is drawn by
:func:`autolrs.plotting.plot_schedule`; this module adds the schedule against update steps and
one figure per stage showing its search.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from autolrs.config import AutoLRSConfig
from autolrs.core.history import CandidateRecord, StageRecord
from autolrs.errors import AutoLRSError
from autolrs.reporting.run import RunRecord, StagePosterior, finite

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["require_matplotlib", "schedule_figure", "stage_figure"]

DPI = 110
_LR_COLOR = "#1f4e79"
_WARMUP_COLOR = "#7f8c8d"
_CHOSEN_COLOR = "#c0392b"
_BAND_COLOR = "#5b7fa6"
_REACHED_COLOR = "#2e7d32"
_BOUNDARY_COLOR = "#555555"
_TRIAL_SHADE = "#f2c14e"


def require_matplotlib() -> tuple[Any, Any]:
    """The Figure class and the Agg canvas class.

    Raises:
        AutoLRSError: matplotlib cannot be imported; the message says how to install it.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise AutoLRSError(
            f"the report needs matplotlib, which could not be imported ({error}); install it "
            "with: pip install 'autolrs[plot]'"
        ) from error
    return Figure, FigureCanvasAgg


def schedule_figure(run: RunRecord) -> bytes:
    """LR of the first param group against update steps: the schedule as training saw it.

    Only kept steps appear (warmup, stage training), so this is the schedule a plain LR
    scheduler would replay; stage starts are marked and labelled.
    """
    figure, axes = _new_figure((11, 3.4))
    kept = [s for s in run.steps if s.phase != "trial"]
    warmup = [s for s in kept if s.phase == "warmup"]
    trained = [s for s in kept if s.phase != "warmup"]
    if warmup:
        axes.plot(
            [s.update_step for s in warmup],
            [s.lr for s in warmup],
            color=_WARMUP_COLOR,
            lw=1.8,
            label="warmup (not searched)",
        )
    if trained:
        # One point per step, drawn as a staircase; a gap means a stage not logged yet.
        axes.plot(
            [s.update_step for s in trained],
            [s.lr for s in trained],
            color=_CHOSEN_COLOR,
            lw=2.0,
            drawstyle="steps-post",
            label="chosen LR of each stage",
        )
    for stage in run.stages:
        axes.axvline(stage.start_update_step, color=_BOUNDARY_COLOR, ls=":", lw=0.9)
    _label_stages(axes, [(s.start_update_step, s) for s in run.stages])
    config = run.config
    axes.axhspan(config.min_lr, config.max_lr, color=_BAND_COLOR, alpha=0.06, lw=0)
    axes.set_yscale("log")
    axes.set_xlabel("update step (search steps excluded)")
    axes.set_ylabel("learning rate")
    axes.grid(True, which="major", alpha=0.25)
    axes.legend(loc="upper right", fontsize=8, frameon=False)
    return _png(figure)


def stage_figure(config: AutoLRSConfig, stage: StageRecord, posterior: StagePosterior) -> bytes:
    """One stage's search: the candidates' trials and forecasts, and the GP over log LR.

    Left: each candidate's measured loss against the step since the snapshot (log scale), its
    fitted exponential L(t) = a·exp(b·t) + c continued to the end of the stage (dashed), and its
    forecast at step τ (a dot). Right: the GP's posterior mean with a ±2σ band over the search
    range, the candidates' forecasts, the chosen LR and the loss the stage reached.
    """
    figure, (curves, gp) = _new_figure((11, 4.1), columns=2)
    colors = _candidate_colors(config, stage.candidates)
    _draw_candidates(curves, stage, colors)
    _draw_posterior(gp, config, stage, posterior, colors)
    _stage_legend(figure, stage)
    return _png(figure)


def _draw_candidates(axes: Axes, stage: StageRecord, colors: list[Any]) -> None:
    tau = stage.stage_steps
    chosen = _chosen_index(stage)
    axes.axvspan(0.8, stage.trial_steps, color=_TRIAL_SHADE, alpha=0.18, lw=0)
    for number, (candidate, color) in enumerate(zip(stage.candidates, colors, strict=True)):
        width = 2.2 if number == chosen else 1.0
        steps = np.asarray(candidate.loss_steps, dtype=float)
        losses = np.asarray(candidate.losses, dtype=float)
        axes.plot(steps, losses, color=color, lw=width, alpha=0.85)
        if candidate.failed:
            last = np.flatnonzero(np.isfinite(losses))
            if last.size:
                axes.plot(steps[last[-1]], losses[last[-1]], "x", color=color, ms=8, mew=2)
            continue
        if candidate.fit is not None:
            a, b, c = candidate.fit
            t = np.geomspace(max(steps[0], 1.0), tau, 120)
            axes.plot(t, a * np.exp(b * t) + c, color=color, lw=width * 0.8, ls="--", alpha=0.8)
        axes.plot(tau, candidate.forecast, "o", color=color, ms=7 if number == chosen else 4.5)

    axes.axvline(tau, color=_BOUNDARY_COLOR, ls=":", lw=0.9)
    axes.text(tau, 1.01, "τ", transform=axes.get_xaxis_transform(), ha="center", va="bottom")
    axes.set_xscale("log")
    axes.set_xlim(0.8, tau * 1.25)
    limits = _loss_limits(stage)
    if limits is not None:
        axes.set_ylim(*limits)
    metric = "validation" if stage.metric == "val" else "training"
    axes.set_xlabel("step since the stage's snapshot (shaded: the τ' trial steps)")
    axes.set_ylabel(f"{metric} loss")
    axes.set_title("each candidate's trial, coloured by its LR", fontsize=9)
    axes.grid(True, which="major", alpha=0.25)


def _draw_posterior(
    axes: Axes,
    config: AutoLRSConfig,
    stage: StageRecord,
    posterior: StagePosterior,
    colors: list[Any],
) -> None:
    if posterior.ok:
        lrs, mean, std = posterior.lrs, posterior.mean, posterior.std
        axes.fill_between(lrs, mean - 2 * std, mean + 2 * std, color=_BAND_COLOR, alpha=0.2, lw=0)
        axes.plot(lrs, mean, color=_BAND_COLOR, lw=1.6)
    else:
        axes.text(0.5, 0.5, "no finite forecast: no GP", ha="center", transform=axes.transAxes)

    # The GP counts a candidate whose stage training diverged as failed, forecast or not.
    diverged = {restart.lr for restart in stage.restarts}
    for candidate, color in zip(stage.candidates, colors, strict=True):
        failed = candidate.failed or candidate.lr in diverged
        if candidate.forecast is not None:
            style = {"mfc": "white", "mec": color, "mew": 1.5} if failed else {"mec": "black"}
            axes.plot(candidate.lr, candidate.forecast, "o", color=color, ms=6, **style)
        if failed and posterior.penalty is not None:
            axes.plot(candidate.lr, posterior.penalty, "x", color=color, ms=8, mew=2)

    if stage.chosen_lr is not None:
        axes.axvline(stage.chosen_lr, color=_CHOSEN_COLOR, lw=1.2, ls="--")
        if stage.chosen_forecast is not None:
            axes.plot(
                stage.chosen_lr,
                stage.chosen_forecast,
                "*",
                color=_CHOSEN_COLOR,
                ms=14,
                mec="black",
                mew=0.6,
            )
    if stage.final_loss is not None:
        axes.axhline(stage.final_loss, color=_REACHED_COLOR, lw=1.2, ls="-.")
    axes.axvspan(config.min_lr, config.max_lr, color=_BAND_COLOR, alpha=0.05, lw=0)
    axes.set_xscale("log")
    # A little room beyond the search range, so candidates at its ends are drawn whole.
    axes.set_xlim(config.min_lr / 1.25, config.max_lr * 1.25)
    limits = _posterior_limits(stage, posterior)
    if limits is not None:
        axes.set_ylim(*limits)
    axes.set_xlabel("learning rate (log scale)")
    axes.set_ylabel(f"forecast {'validation' if stage.metric == 'val' else 'training'} loss at τ")
    axes.set_title("the GP over log LR after the last candidate", fontsize=9)
    axes.grid(True, which="major", alpha=0.25)


def _stage_legend(figure: Figure, stage: StageRecord) -> None:
    """One legend below both panels, so that it hides no data."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    grey = "#444444"
    entries = [
        (Line2D([], [], color=grey, lw=1.0), "measured loss"),
        (Line2D([], [], color=grey, lw=2.2), "chosen candidate"),
        (Line2D([], [], color=grey, lw=0.9, ls="--"), "fitted a·exp(b·t)+c"),
        (Line2D([], [], color=grey, ls="none", marker="o", ms=5), "forecast at τ"),
        (
            Line2D([], [], color=grey, ls="none", marker="x", ms=7, mew=2),
            "failed candidate, at the value the GP gave it",
        ),
        (
            Line2D([], [], color=grey, ls="none", marker="o", mfc="white", mew=1.5),
            "forecast of an LR whose stage training diverged",
        ),
        (Line2D([], [], color=_BAND_COLOR, lw=1.6), "GP posterior mean"),
        (Patch(color=_BAND_COLOR, alpha=0.3), "±2σ"),
        (Line2D([], [], color=_CHOSEN_COLOR, lw=1.2, ls="--"), "chosen LR"),
        (
            Line2D([], [], color=_CHOSEN_COLOR, ls="none", marker="*", ms=11, mec="black"),
            "predicted for the stage",
        ),
        (Line2D([], [], color=_REACHED_COLOR, lw=1.2, ls="-."), "reached by the stage"),
    ]
    if not any(c.failed for c in stage.candidates) and not stage.restarts:
        entries = [entry for entry in entries if not entry[1].startswith("failed")]
    if not stage.restarts:
        entries = [entry for entry in entries if "diverged" not in entry[1]]
    if stage.final_loss is None:
        entries = [entry for entry in entries if entry[1] != "reached by the stage"]
    handles, labels = zip(*entries, strict=True)
    figure.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8, frameon=False)


def _chosen_index(stage: StageRecord) -> int | None:
    """Index of the candidate whose LR the stage trained with, if any."""
    for number, candidate in enumerate(stage.candidates):
        if candidate.lr == stage.chosen_lr:
            return number
    return None


def _candidate_colors(config: AutoLRSConfig, candidates: Sequence[CandidateRecord]) -> list[Any]:
    """A colour per candidate from its place in the log-LR range, the same in both panels."""
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    low, high = math.log(config.min_lr), math.log(config.max_lr)
    return [cmap(0.9 * (math.log(c.lr) - low) / (high - low)) for c in candidates]


def _loss_limits(stage: StageRecord) -> tuple[float, float] | None:
    """Y range for the candidate curves: all forecasts and most losses, not a divergence."""
    usable = [c for c in stage.candidates if not c.failed]
    losses = finite(x for c in usable for x in c.losses)
    forecasts = finite(c.forecast for c in usable)
    if not losses:
        return None
    low = min(losses + forecasts)
    high = max(float(np.percentile(losses, 99)), *forecasts) if forecasts else max(losses)
    pad = 0.06 * (high - low) or 0.05 * abs(high) or 1.0
    return low - pad, high + pad


def _posterior_limits(stage: StageRecord, posterior: StagePosterior) -> tuple[float, float] | None:
    """Y range that shows every observation and the band near them."""
    values = finite(c.forecast for c in stage.candidates)
    values += finite([stage.final_loss, posterior.penalty])
    if posterior.ok:
        values += [float(np.min(posterior.mean)), float(np.max(posterior.mean))]
    if not values:
        return None
    low, high = min(values), max(values)
    pad = 0.15 * (high - low) or 0.05 * abs(high) or 1.0
    return low - pad, high + pad


def _label_stages(axes: Axes, starts: Sequence[tuple[float, StageRecord]]) -> None:
    """Write each stage's number just above the panel, right of its start."""
    transform = axes.get_xaxis_transform()  # x in data units, y in axes fraction
    for x, stage in starts:
        suffix = " val" if stage.metric == "val" else ""
        axes.text(x, 1.01, f"S{stage.index}{suffix}", transform=transform, fontsize=8, va="bottom")


def _new_figure(size: tuple[float, float], columns: int = 1) -> tuple[Figure, Any]:
    figure_class, canvas_class = require_matplotlib()
    figure = figure_class(figsize=size, layout="constrained")
    canvas_class(figure)
    return figure, figure.subplots(1, columns)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()
