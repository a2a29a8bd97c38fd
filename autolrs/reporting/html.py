"""The report as one self-contained HTML page: inline CSS, figures as base64 PNG, no script.

The page needs nothing but itself: no web font, stylesheet, script or image is fetched, so it
can be mailed, archived or opened offline. Every string from the log is escaped.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass

from autolrs import __version__
from autolrs.core.history import StageRecord
from autolrs.reporting.run import RunRecord

__all__ = ["Figures", "render_html"]


@dataclass(frozen=True)
class Figures:
    """The report's images, as PNG bytes.

    Attributes:
        schedule: LR against update steps.
        timeline: LR and loss against every executed step, search shaded.
        stages: One figure per stage that chose an LR, in stage order.
    """

    schedule: bytes
    timeline: bytes
    stages: Sequence[bytes]


_CSS = """
:root { --ink: #1d2733; --muted: #5d6b7a; --line: #dde3ea; --accent: #1f4e79;
        --search: #f2c14e; --bad: #c0392b; --good: #2e7d32; }
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 48px; }
header h1 { margin: 0; font-size: 26px; }
header p { margin: 4px 0 0; color: var(--muted); }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
h2 { margin: 36px 0 8px; font-size: 19px; border-bottom: 2px solid var(--line);
     padding-bottom: 4px; }
h3 { margin: 0 0 4px; font-size: 16px; }
p.lead { margin: 0 0 12px; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(130px, 1fr));
         gap: 12px; margin-top: 20px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px;
        padding: 12px 14px; }
.card .value { font-size: 22px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .label { color: var(--muted); font-size: 12.5px; }
.note { background: #fff8e1; border-left: 4px solid var(--search); padding: 8px 12px;
        margin-top: 16px; border-radius: 4px; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
         padding: 8px; }
figure img { display: block; width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 13.5px;
        border: 1px solid var(--line); border-radius: 8px; overflow: hidden; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: right;
         font-variant-numeric: tabular-nums; white-space: nowrap; }
th { background: #eef2f6; font-weight: 600; color: var(--ink); }
td.text, th.text { text-align: left; }
tr:last-child td { border-bottom: none; }
.bad { color: var(--bad); } .good { color: var(--good); } .muted { color: var(--muted); }
.stage { margin-top: 22px; }
details { margin-top: 8px; } summary { cursor: pointer; color: var(--accent); }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
"""


def render_html(run: RunRecord, figures: Figures) -> str:
    """The whole report page for ``run`` with its ``figures`` embedded."""
    name = html.escape(run.source.name)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>AutoLRS report: {name}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        "<header><h1>AutoLRS run report</h1>",
        f"<p>Event log <code>{html.escape(str(run.source))}</code>. "
        f"{html.escape(_setup(run))}</p>",
        "</header>",
        _cards(run),
        _notes(run),
        "<h2>Schedule found</h2>",
        '<p class="lead">LR of the first param group at each update step (search steps left '
        "out): what a replay of this run would set. The shaded band is the search range "
        "[min_lr, max_lr].</p>",
        _image(figures.schedule, "LR against update steps"),
        "<h2>Every executed step</h2>",
        '<p class="lead">LR and training loss of every step the run executed, search '
        "included; shaded spans are the candidates' trials, rolled back afterwards.</p>",
        _image(figures.timeline, "LR and loss against executed steps"),
        "<h2>Stages</h2>",
        '<p class="lead">Predicted: the search\'s forecast of the stage metric at the end of '
        "the stage; reached: that metric measured there (the mean training loss of the "
        "stage's last τ′ steps, or the validation loss); error: (reached − predicted) / "
        "predicted.</p>",
        _stage_table(run.history),
        *(
            _stage_section(stage, png)
            for stage, png in zip(run.stages, figures.stages, strict=True)
        ),
        "<h2>Config</h2>",
        _config_table(run),
        f"<footer>Written by autolrs {html.escape(__version__)} from the event log alone.",
        "</footer></main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _setup(run: RunRecord) -> str:
    """The config in one sentence."""
    config = run.config
    judged = "validation loss at τ_max" if run.validation and config.use_val_loss else "none"
    text = (
        f"LRs searched in [{config.min_lr:.3g}, {config.max_lr:.3g}], "
        f"{config.num_candidates} candidates per stage, τ from {config.stage_steps:,} doubling "
        f"to {config.max_stage_steps:,} update steps, τ′ = {config.trial_fraction:g}·τ, "
        f"validation: {judged}"
    )
    if config.warmup_steps:
        text += f", warmup of {config.warmup_steps:,} steps to {config.warmup_lr:.3g}"
    return text + "."


def _cards(run: RunRecord) -> str:
    totals = run.totals
    executed = max(totals.executed_steps, 1)
    wall = max(totals.wall_seconds, 1e-9)
    cards = [
        (f"{totals.update_steps:,}", "update steps (kept)"),
        (
            f"{totals.search_steps:,}",
            f"search steps ({100 * totals.search_steps / executed:.0f}% of executed)",
        ),
        (f"{totals.executed_steps:,}", "executed steps"),
        (f"{totals.evaluations:,}", "validation evaluations"),
        (_duration(totals.wall_seconds), "wall time"),
        (
            _duration(totals.search_seconds),
            f"wall time in search ({100 * totals.search_seconds / wall:.0f}%)",
        ),
        (f"{len(run.stages)}", "stages trained"),
    ]
    body = "".join(
        f'<div class="card"><div class="value">{value}</div>'
        f'<div class="label">{html.escape(label)}</div></div>'
        for value, label in cards
    )
    return f'<section class="cards">{body}</section>'


def _notes(run: RunRecord) -> str:
    notes = []
    unfinished = [s for s in run.history if s.final_loss is None]
    if unfinished:
        last = unfinished[-1]
        state = "training" if last.chosen_lr is not None else "searching"
        notes.append(
            f"The log ends while stage {last.index} was {state}; a command's steps are "
            "logged only once it finishes, so the last steps of the run are not shown."
        )
    if run.totals.resumes:
        notes.append(
            f"The run was resumed from a checkpoint {run.totals.resumes} time(s); steps "
            "redone after a resume are shown once."
        )
    return "".join(f'<p class="note">{html.escape(note)}</p>' for note in notes)


def _stage_table(history: Sequence[StageRecord]) -> str:
    head = (
        "<tr><th>stage</th><th>start update step</th><th>τ</th><th>τ′</th>"
        '<th class="text">metric</th><th>candidates</th><th>chosen LR</th>'
        "<th>predicted</th><th>reached</th><th>error</th><th>restarts</th></tr>"
    )
    rows = []
    for stage in history:
        failed = sum(c.failed for c in stage.candidates)
        candidates = f"{len(stage.candidates)}" + (f" ({failed} failed)" if failed else "")
        rows.append(
            "<tr>"
            f"<td>{stage.index}</td><td>{stage.start_update_step:,}</td>"
            f"<td>{stage.stage_steps:,}</td><td>{stage.trial_steps:,}</td>"
            f'<td class="text">{"validation" if stage.metric == "val" else "training"}</td>'
            f"<td>{candidates}</td><td>{_number(stage.chosen_lr)}</td>"
            f"<td>{_number(stage.chosen_forecast)}</td><td>{_number(stage.final_loss)}</td>"
            f"<td>{_error(stage)}</td><td>{len(stage.restarts) or ''}</td>"
            "</tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"


def _stage_section(stage: StageRecord, png: bytes) -> str:
    facts = [
        f"τ = {stage.stage_steps:,} update steps from step {stage.start_update_step:,}",
        f"{len(stage.candidates)} candidates of τ′ = {stage.trial_steps:,} steps",
        f"chose LR {_number(stage.chosen_lr)}",
    ]
    if stage.choice_reason:
        facts.append(f"by fallback ({stage.choice_reason})")
    for restart in stage.restarts:
        steps = f"{restart.steps} step" + ("s" if restart.steps != 1 else "")
        facts.append(f"LR {restart.lr:.4g} diverged after {steps} and the stage restarted")
    return (
        f'<section class="stage"><h3>Stage {stage.index}</h3>'
        f'<p class="lead">{html.escape("; ".join(facts))}.</p>'
        f"{_image(png, f'stage {stage.index} search')}</section>"
    )


def _config_table(run: RunRecord) -> str:
    rows = "".join(
        f'<tr><td class="text"><code>{html.escape(key)}</code></td>'
        f'<td class="text">{html.escape(repr(value))}</td></tr>'
        for key, value in run.config.to_dict().items()
    )
    rows += (
        '<tr><td class="text"><code>validation</code></td>'
        f'<td class="text">{run.validation}</td></tr>'
    )
    return (
        "<details><summary>AutoLRSConfig of the run</summary>"
        f'<table style="width:auto"><tbody>{rows}</tbody></table></details>'
    )


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _number(value: float | None) -> str:
    return '<span class="muted">—</span>' if value is None else f"{value:.4g}"


def _error(stage: StageRecord) -> str:
    """Reached minus predicted, relative to the prediction; red when worse than predicted."""
    predicted, reached = stage.chosen_forecast, stage.final_loss
    if predicted is None or reached is None or predicted == 0:
        return '<span class="muted">—</span>'
    error = (reached - predicted) / abs(predicted)
    css = "bad" if error > 0.05 else ("good" if error < -0.05 else "")
    return f'<span class="{css}">{100 * error:+.1f}%</span>'


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
