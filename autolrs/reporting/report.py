"""Build the report of a run from its event log: PNG figures and one self-contained HTML page."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from autolrs.plotting import plot_schedule
from autolrs.reporting.figures import require_matplotlib, schedule_figure, stage_figure
from autolrs.reporting.html import Figures, render_html
from autolrs.reporting.run import read_run, stage_posterior

__all__ = ["ReportFiles", "write_report"]

logger = logging.getLogger(__name__)

HTML_NAME = "report.html"
TIMELINE_NAME = "report.png"
SCHEDULE_NAME = "schedule.png"
STAGE_DIR = "stages"


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes:
        html: The self-contained page (every figure embedded).
        timeline: LR and loss against every executed step, search shaded: the run at a glance.
        schedule: LR against update steps.
        stages: One figure per stage that chose an LR: candidates, fits and the GP.
    """

    html: Path
    timeline: Path
    schedule: Path
    stages: tuple[Path, ...]


def write_report(log: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> ReportFiles:
    """Read an event log and write the run's report into ``out_dir``.

    Writes ``report.html`` (self-contained), ``report.png`` (the timeline of every executed
    step), ``schedule.png`` (LR against update steps) and ``stages/stage-NN.png``.

    Args:
        log: A JSON-lines event log written through ``AutoLRS(event_log=...)``.
        out_dir: Folder to write into; created if missing. Files of an earlier report there
            are overwritten.

    Returns:
        The paths written.

    Raises:
        AutoLRSError: The log cannot be read as a run, or matplotlib is not installed.
    """
    require_matplotlib()
    logger.info("rebuilding the run from %s", log)
    run = read_run(log)
    out = Path(out_dir)
    (out / STAGE_DIR).mkdir(parents=True, exist_ok=True)

    timeline = plot_schedule(
        run.steps, run.history, out / TIMELINE_NAME, val_points=run.val_points
    )
    schedule = out / SCHEDULE_NAME
    schedule.write_bytes(schedule_figure(run))
    stage_paths = []
    stage_pngs = []
    for stage in run.stages:
        png = stage_figure(run.config, stage, stage_posterior(run.config, stage))
        path = out / STAGE_DIR / f"stage-{stage.index:02d}.png"
        path.write_bytes(png)
        stage_paths.append(path)
        stage_pngs.append(png)

    figures = Figures(
        schedule=schedule.read_bytes(), timeline=timeline.read_bytes(), stages=stage_pngs
    )
    page = out / HTML_NAME
    page.write_text(render_html(run, figures), encoding="utf-8")
    logger.info("wrote %s and %d figures", page, 2 + len(stage_paths))
    return ReportFiles(html=page, timeline=timeline, schedule=schedule, stages=tuple(stage_paths))
