"""The suite's report: markdown tables, plots and a machine-readable summary.

Writes, into the suite's output folder:

- ``report.md``: an overall table (cost speedup of each method on each task) and, per task,
  the tuned baseline, a table of every method, AutoLRS's search details and overheads, and the
  plots;
- ``summary.json``: the same numbers, for scripts;
- ``plots/<task>-loss.png``: validation loss against cost (executed steps, search included,
  plus own evaluations) for every method and seed, with the target;
- ``plots/<task>-lr.png``: LR against update steps for AutoLRS's runs and the tuned baseline.

Matplotlib draws on an Agg canvas created here, so no pyplot backend is ever selected.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import Any

from autolrs.bench.machine import describe
from autolrs.bench.methods import ABLATIONS
from autolrs.bench.metrics import Interval
from autolrs.bench.records import RunRecord, json_safe
from autolrs.bench.schedules import expand_segments
from autolrs.bench.suite import SuiteResult
from autolrs.bench.summary import MethodSummary, TaskSummary, summarise_task

__all__ = ["write_report", "summarise"]

logger = logging.getLogger(__name__)

REPORT_FILE = "report.md"
#: A speedup is claimed (✓) only from at least this many seeds (docs/benchmark.md's development
#: minimum), and only when its interval's lower bound exceeds 1.
MIN_SEEDS_TO_CLAIM = 3
SUMMARY_FILE = "summary.json"


def summarise(result: SuiteResult, *, n_boot: int = 2000) -> dict[str, TaskSummary]:
    """Every task's summary, in the suite's task order."""
    summaries = {}
    for name, by_method in result.methods.items():
        summaries[name] = summarise_task(
            result.references[name],
            {method: runs.runs for method, runs in by_method.items()},
            {method: runs.config.lr for method, runs in by_method.items()},
            budget=result.tasks[name].spec.budget,
            cap_factor=result.settings.run.cap_factor,
            n_boot=n_boot,
        )
    return summaries


def write_report(result: SuiteResult, *, n_boot: int = 2000) -> Path:
    """Write the report, plots and summary of ``result``; return the report's path."""
    out = result.settings.out_dir
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    summaries = summarise(result, n_boot=n_boot)
    machine = describe(result.settings.run.threads)

    for name in summaries:
        _plot_losses(result, name, plots / f"{name}-loss.png")
        _plot_lrs(result, name, plots / f"{name}-lr.png")

    lines = _header(result, machine)
    lines += _overall(summaries, result.settings.methods)
    lines += _goals(summaries)
    lines += _ablations(summaries)
    for name, summary in summaries.items():
        lines += _task_section(result, name, summary)
    if result.failures:
        lines += ["## Failed runs", "", *[f"- {failure}" for failure in result.failures], ""]
    path = out / REPORT_FILE
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    summary_data = {
        "suite": result.settings.suite,
        "machine": machine,
        "tasks": {name: dataclasses.asdict(summary) for name, summary in summaries.items()},
        "overheads": result.overheads,
        "failures": result.failures,
    }
    (out / SUMMARY_FILE).write_text(
        json.dumps(json_safe(summary_data), indent=1, allow_nan=False) + "\n", encoding="utf-8"
    )
    logger.info("report written to %s", path)
    return path


# -- markdown ------------------------------------------------------------------------------


def _header(result: SuiteResult, machine: dict[str, Any]) -> list[str]:
    settings = result.settings
    packages = ", ".join(f"{name} {version}" for name, version in machine["packages"].items())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"# AutoLRS benchmark: {settings.suite} suite",
        "",
        f"Generated {stamp}. {settings.seeds} seed(s) per method; each task's tuned baseline "
        "below gives its own seed count.",
        "",
        f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores "
        f"({machine['usable_cores']} usable), {machine['memory_gib']} GiB, "
        f"{machine['platform']}; Python {machine['python']}; {packages}; "
        f"torch threads {machine['torch_threads']}.",
        "",
        "Cost = every executed optimizer step (rolled-back search steps and warmup included) plus "
        "the method's own validation passes in step equivalents. Steps to target L* are read "
        "on the committed trajectory, at the first validation point of the mean curve over seeds "
        f"at or below L*, within a cost of {settings.run.cap_factor}T; the baseline is read the "
        "same way on its own mean curve. Speedup = baseline ÷ method; ✗ when the mean curve "
        "never reaches L*. Intervals: 95% percentile bootstrap over the method's seeds; ✓ marks "
        f"a speedup from at least {MIN_SEEDS_TO_CLAIM} seeds whose lower bound exceeds 1. "
        "'Val at cost T' is the loss of the last committed point within that cost (— when "
        "none was measured by then). Wall times exclude the harness's own "
        "validation passes and compare only runs of this suite (interleaved).",
        "",
    ]


def _overall(summaries: dict[str, TaskSummary], methods: Sequence[str]) -> list[str]:
    names = list(summaries)
    lines = [
        "## Overall: cost speedup over the tuned baseline",
        "",
        "| method | " + " | ".join(names) + " | tasks where the mean curve reaches L* |",
        "|---|" + "---|" * len(names) + "---|",
    ]
    for method in methods:
        cells, reached = [], 0
        for name in names:
            summary = _find(summaries[name], method)
            if summary is None:
                cells.append("—")
                continue
            reached += math.isfinite(summary.cost)
            cells.append(_speedup_cell(summary.speedup_cost))
        lines.append(f"| {method} | " + " | ".join(cells) + f" | {reached}/{len(names)} |")
    return [*lines, ""]


#: What the default AutoLRS is measured against, beside the paper's algorithm.
SEARCH_SHARE_GOAL = 0.25
COST_SPEEDUP_GOAL = 1.0
UPDATE_SPEEDUP_GOAL = 1.3
LR_FREE_METHODS = ("schedulefree", "prodigy")
#: Shares of the tasks on which the default must reach the cost speedup goal and must reach
#: L* at a lower cost than every LR-free method (4 and 3 of the standard suite's 5).
COST_SPEEDUP_TASKS = Fraction(4, 5)
LR_FREE_TASKS = Fraction(3, 5)


def _search_share(method: MethodSummary | None) -> float | None:
    """Search steps per update step of a method's runs, or None for a method without search."""
    if method is None or not method.autolrs:
        return None
    total, search = method.autolrs.get("total_steps"), method.autolrs.get("search_steps")
    if total is None or search is None or total <= search:
        return None
    return search / (total - search)


def _estimate(interval: Interval | None) -> float:
    return 0.0 if interval is None else interval.estimate


def _goals(summaries: dict[str, TaskSummary]) -> list[str]:
    """Whether ``autolrs`` meets its goals, task by task, with ``autolrs-paper`` beside it."""
    names = list(summaries)
    rows: dict[str, dict[str, MethodSummary | None]] = {
        method: {name: _find(summaries[name], method) for name in names}
        for method in ("autolrs", "autolrs-paper")
    }
    if not any(m is not None for per_task in rows.values() for m in per_task.values()):
        return []
    lines = [
        "## AutoLRS against its goals",
        "",
        f"Goals of the default: search steps ≤ {SEARCH_SHARE_GOAL:.0%} of update steps at "
        "equal or better final quality than the paper's algorithm; cost speedup ≥ "
        f"{COST_SPEEDUP_GOAL:g} over the tuned baseline on at least "
        f"{float(COST_SPEEDUP_TASKS):.0%} of the tasks; median update-step speedup ≥ "
        f"{UPDATE_SPEEDUP_GOAL:g}; fewer total steps to L* than Schedule-Free and Prodigy at "
        f"their defaults on at least {float(LR_FREE_TASKS):.0%} of the tasks. A method that "
        "never reaches L* has speedup 0 here.",
        "",
        "| measure | method | " + " | ".join(names) + " | overall |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for method, per_task in rows.items():
        shares = [_search_share(per_task[name]) for name in names]
        known = [share for share in shares if share is not None]
        lines.append(
            f"| search / update steps | {method} | "
            + " | ".join(_percent(share) for share in shares)
            + f" | median {_percent(statistics.median(known)) if known else '—'} |"
        )
    for method, per_task in rows.items():
        finals = [per_task[name] for name in names]
        cells = [_loss_cell(m.final if m else None, missing="—") for m in finals]
        lines.append(f"| final val | {method} | " + " | ".join(cells) + " | |")
    for method, per_task in rows.items():
        at_t = [per_task[name] for name in names]
        cells = [_loss_cell(m.quality_t if m else None, missing="—") for m in at_t]
        lines.append(f"| val at cost T | {method} | " + " | ".join(cells) + " | |")
    targets = [f"{summaries[name].baseline.target:.4g}" for name in names]
    lines.append("| target L* | tuned baseline | " + " | ".join(targets) + " | |")
    for method, per_task in rows.items():
        speedups = [_estimate(m.speedup_cost if m else None) for m in per_task.values()]
        met = sum(value >= COST_SPEEDUP_GOAL for value in speedups)
        lines.append(
            f"| cost speedup | {method} | "
            + " | ".join(f"{value:.2f}" for value in speedups)
            + f" | ≥ {COST_SPEEDUP_GOAL:g} on {met}/{len(names)} |"
        )
    for method, per_task in rows.items():
        speedups = [_estimate(m.speedup_update if m else None) for m in per_task.values()]
        lines.append(
            f"| update-step speedup | {method} | "
            + " | ".join(f"{value:.2f}" for value in speedups)
            + f" | median {statistics.median(speedups):.2f} |"
        )
    for method, per_task in rows.items():
        cells, wins = [], 0
        for name in names:
            own = per_task[name]
            rivals = [_find(summaries[name], rival) for rival in LR_FREE_METHODS]
            own_cost = own.cost if own else math.inf
            wins += _beats_lr_free(summaries[name], own)
            rival_costs = "/".join(_num(r.cost) if r else "—" for r in rivals)
            cells.append(f"{_num(own_cost)} vs {rival_costs}")
        lines.append(
            f"| cost to L* vs Schedule-Free/Prodigy | {method} | "
            + " | ".join(cells)
            + f" | fewer on {wins}/{len(names)} |"
        )
    return [*lines, "", *_verdicts(summaries), ""]


def _beats_lr_free(summary: TaskSummary, method: MethodSummary | None) -> bool:
    """Whether ``method`` reaches L* at a lower cost than every LR-free method of the task.

    Reaching L* at all beats a rival that never does.
    """
    if method is None or not math.isfinite(method.cost):
        return False
    rivals = [_find(summary, rival) for rival in LR_FREE_METHODS]
    return all(rival is None or method.cost < rival.cost for rival in rivals)


def _verdicts(summaries: dict[str, TaskSummary]) -> list[str]:
    """Each goal of the default, met or not, with the figures that decide it.

    Empty unless ``autolrs`` ran on every task: a goal over the tasks needs them all.
    """
    default = {name: _find(summary, "autolrs") for name, summary in summaries.items()}
    if any(method is None for method in default.values()):
        return []
    names, count = list(summaries), len(summaries)

    # Search share, at final quality no worse than the paper's algorithm's.
    known = [s for s in (_search_share(default[name]) for name in names) if s is not None]
    share = statistics.median(known) if known else None
    finals = {}
    for name in names:
        paper = _find(summaries[name], "autolrs-paper")
        if default[name].final and paper and paper.final:
            finals[name] = (default[name].final.estimate, paper.final.estimate)
    worse = [name for name, (own, paper) in finals.items() if own > paper]
    if finals:
        quality = (
            f"final validation loss at or below the paper's algorithm's on "
            f"{len(finals) - len(worse)} of {len(finals)} tasks"
        )
        quality += f" (above it on {_listed(worse)})" if worse else ""
    else:
        quality = "no run of the paper's algorithm to compare final losses with"
    search_met = share is not None and share <= SEARCH_SHARE_GOAL and bool(finals) and not worse

    # Cost speedup, and how far the final loss stays from L* where it falls short.
    fast = [n for n in names if _estimate(default[n].speedup_cost) >= COST_SPEEDUP_GOAL]
    fast_needed = math.ceil(COST_SPEEDUP_TASKS * count)
    gaps = [
        f"{name} {_signed_percent(final.estimate / summaries[name].baseline.target - 1)}"
        for name in names
        if name not in fast and (final := default[name].final) is not None
    ]
    shortfall = f" Mean final validation loss against L* on the others: {', '.join(gaps)}."

    update = statistics.median(_estimate(default[name].speedup_update) for name in names)
    beaten = [name for name in names if _beats_lr_free(summaries[name], default[name])]
    beaten_needed = math.ceil(LR_FREE_TASKS * count)
    return [
        "Verdict on the default (`autolrs`):",
        "",
        f"- Search steps ≤ {SEARCH_SHARE_GOAL:.0%} of update steps at equal or better final "
        f"quality: {_verdict(search_met)}; median {_percent(share)}, {quality}.",
        f"- Cost speedup ≥ {COST_SPEEDUP_GOAL:g} on at least {fast_needed} of {count} tasks: "
        f"{_verdict(len(fast) >= fast_needed)}; on {len(fast)} ({_listed(fast)})."
        + (shortfall if gaps else ""),
        f"- Median update-step speedup ≥ {UPDATE_SPEEDUP_GOAL:g}: "
        f"{_verdict(update >= UPDATE_SPEEDUP_GOAL)}; {update:.2f}.",
        f"- Fewer total steps to L* than {' and '.join(LR_FREE_METHODS)} on at least "
        f"{beaten_needed} of {count} tasks: {_verdict(len(beaten) >= beaten_needed)}; on "
        f"{len(beaten)} ({_listed(beaten)}).",
    ]


def _verdict(met: bool) -> str:
    return "**met**" if met else "**not met**"


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names) if names else "none"


def _ablations(summaries: dict[str, TaskSummary]) -> list[str]:
    """Each change of the default to the paper's algorithm undone, one at a time."""
    tasks = [
        name
        for name, summary in summaries.items()
        if any(_find(summary, method) for method in ABLATIONS)
    ]
    if not tasks:
        return []
    methods = ["autolrs", *ABLATIONS, "autolrs-paper"]
    lines = [
        "## Ablations: the default with one change undone",
        "",
        "Final validation loss and validation loss at cost T (means over seeds [95% "
        "interval]), and search steps per update step, on " + ", ".join(tasks) + ".",
        "",
        "| method | undoes | "
        + " | ".join(f"{t} final | {t} at cost T | {t} search" for t in tasks)
        + " |",
        "|---|---|" + "---|---|---|" * len(tasks),
    ]
    for method in methods:
        undo = ABLATIONS.get(method)
        described = (
            ", ".join(f"{key}={value}" for key, value in undo.items())
            if undo
            else ("every change" if method == "autolrs-paper" else "nothing")
        )
        cells = []
        for name in tasks:
            found = _find(summaries[name], method)
            cells.append(_loss_cell(found.final if found else None, missing="—"))
            cells.append(_loss_cell(found.quality_t if found else None, missing="—"))
            cells.append(_percent(_search_share(found)))
        lines.append(f"| {method} | {described} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _task_section(result: SuiteResult, name: str, summary: TaskSummary) -> list[str]:
    spec = result.tasks[name].spec
    base = summary.baseline
    budget = summary.budget
    lines = [
        f"## {name} (v{spec.version}, {spec.variant}): {spec.description}",
        "",
        f"T = {budget} update steps, validation every {spec.eval_every}, warmup "
        f"{spec.warmup_steps}, optimizer {spec.optimizer} {dict(spec.optimizer_kwargs)}.",
        "",
        f"Tuned baseline: **{base.family}** at peak LR {base.lr:.4g}; target L* = "
        f"{base.target:.5g} ± {base.target_std:.2g} (mean ± sd over {base.seeds} seeds). Its mean "
        f"curve reaches L* at {_num(base.reach.update_steps)} steps (5% slack: "
        f"{_num(base.slack_reach.update_steps)}). Tuning it by hand cost "
        f"{_num(base.sweep_cost)} steps for the one-seed sweep ({base.sweep_cost / budget:.1f}T) "
        f"and {_num(base.protocol_cost)} with the extra seeds "
        f"({base.protocol_cost / budget:.1f}T).",
        "",
        "| method | LR | seeds reaching L* | update steps to L* | cost to L* "
        "| speedup (update steps) | speedup (cost) | speedup (cost, 5% slack) | speedup (wall) "
        "| final val | val at cost T | val at cost 2T | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in summary.methods:
        lines.append(
            "| "
            + " | ".join(
                [
                    method.method,
                    "search" if method.lr is None else f"{method.lr:.4g}",
                    f"{method.reached}/{method.seeds}",
                    _num(method.update_steps),
                    _num(method.cost),
                    _speedup_cell(method.speedup_update),
                    _speedup_cell(method.speedup_cost),
                    _speedup_cell(method.speedup_slack),
                    _speedup_cell(method.speedup_wall),
                    _loss_cell(method.final, missing="diverged"),
                    _loss_cell(method.quality_t, missing="—"),
                    _loss_cell(method.quality_2t, missing="—"),
                    _num(method.wall_s, digits=3),
                ]
            )
            + " |"
        )
    lines += ["", *_autolrs_lines(summary, result.overheads.get(name))]
    lines += [f"![loss vs cost](plots/{name}-loss.png)", f"![LR vs steps](plots/{name}-lr.png)"]
    return [*lines, ""]


def _autolrs_lines(summary: TaskSummary, overheads: dict[str, Any] | None) -> list[str]:
    lines = []
    for method in summary.methods:
        details = method.autolrs
        if details is None:
            continue
        error = details["forecast_abs_rel_error_median"]
        bias = details.get("forecast_rel_error_median_by_metric") or {}
        signed = "; ".join(
            f"by the {_METRIC_WORDS[metric]} {_signed_percent(value)}"
            for metric, value in bias.items()
        )
        lines.append(
            f"- {method.method}: {details['stages']:.1f} stages, {details['search_steps']:.0f} "
            f"search steps of {details['total_steps']:.0f} executed, evaluation cost "
            f"{details['eval_cost']:.0f} step equivalents; median |forecast error| of the chosen "
            f"LR {_percent(error)} of the stage's final loss (max "
            f"{_percent(details['forecast_abs_rel_error_max'])})"
            + (f"; median signed error (forecast − reached) {signed}." if signed else ".")
        )
    if overheads:
        step, snapshot, decision = (
            overheads["step"],
            overheads["snapshot"],
            overheads["decision"],
        )
        lines.append(
            f"- Overheads (first two stages, {overheads['steps']} steps): a step with "
            f"`scheduler.step()` takes {step['ratio']:.2f}× a bare step "
            f"({step['autolrs_s_per_step'] * 1e3:.2f} vs {step['bare_s_per_step'] * 1e3:.2f} ms); "
            f"snapshot + restore {snapshot['library_s'] * 1e3:.2f} ms, {snapshot['ratio']:.1f}× "
            f"a raw copy of the same {snapshot['nbytes'] / 2**20:.2f} MiB; decision per candidate "
            f"{_num(decision['mean_s'], digits=3)} s mean, {_num(decision['max_s'], digits=3)} s "
            "max (forecast + GP)."
        )
    return [*lines, ""] if lines else []


def _find(summary: TaskSummary, method: str) -> MethodSummary | None:
    return next((m for m in summary.methods if m.method == method), None)


def _speedup_cell(interval: Interval | None) -> str:
    if interval is None:
        return "—"
    if interval.estimate == 0.0:
        return "✗ not reached"
    mark = " ✓" if interval.low > 1.0 and interval.n >= MIN_SEEDS_TO_CLAIM else ""
    if interval.n == 1:
        return f"{interval.estimate:.2f}{mark}"
    return f"{interval.estimate:.2f} [{interval.low:.2f}, {interval.high:.2f}]{mark}"


def _loss_cell(interval: Interval | None, *, missing: str) -> str:
    if interval is None:
        return missing
    if interval.n == 1:
        return f"{interval.estimate:.4g}"
    return f"{interval.estimate:.4g} [{interval.low:.4g}, {interval.high:.4g}]"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f}" if digits else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _signed_percent(value: float) -> str:
    return f"{100 * value:+.1f}%"


_METRIC_WORDS = {"train": "training loss", "val": "validation loss"}


# -- plots ---------------------------------------------------------------------------------


def _figure(title: str, panels: int = 1) -> tuple[Any, list[Any]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8 * panels, 4.5), dpi=100)
    FigureCanvasAgg(figure)
    figure.suptitle(title)
    axes = [figure.add_subplot(1, panels, index + 1) for index in range(panels)]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return figure, axes


def _plot_losses(result: SuiteResult, name: str, path: Path) -> None:
    # Left: against executed steps (search included); right: against cost, which adds each
    # method's own validation passes. Dotted lines mark T, 2T and 3T.
    budget = result.tasks[name].spec.budget
    figure, (by_steps, by_cost) = _figure(f"{name}: validation loss", panels=2)
    by_steps.set_xlabel("executed optimizer steps (search included)")
    by_cost.set_xlabel("cost (executed steps + own evaluations)")
    colors = _colors(len(result.methods[name]))
    for color, (method, runs) in zip(colors, result.methods[name].items(), strict=True):
        for index, run in enumerate(runs.runs):
            points = [p for p in run.curve if p.val_loss is not None]
            style = {
                "color": color,
                "ls": _line_style(method),
                "lw": 1.2,
                "alpha": 0.8,
                "label": method if index == 0 else None,
            }
            by_steps.plot([p.total_steps for p in points], [p.val_loss for p in points], **style)
            by_cost.plot([p.cost for p in points], [p.val_loss for p in points], **style)
    target = result.references[name].target
    for axes in (by_steps, by_cost):
        axes.axhline(target, color="black", ls="--", lw=1, label="target L*")
        for multiple in (1, 2, 3):
            axes.axvline(multiple * budget, color="grey", ls=":", lw=0.8)
        axes.set_ylabel("validation loss")
        axes.set_yscale("log")
    by_cost.legend(fontsize=7, ncol=2)
    figure.savefig(path)


def _plot_lrs(result: SuiteResult, name: str, path: Path) -> None:
    figure, (axes,) = _figure(f"{name}: learning rate against update steps")
    axes.set_xlabel("update step")
    axes.set_ylabel("LR")
    reference = result.references[name]
    baseline: RunRecord = reference.baseline_runs[0]
    axes.plot(
        expand_segments(baseline.lr_segments),
        color="black",
        lw=1.5,
        drawstyle="steps-post",
        label=f"tuned {reference.baseline_family}",
    )
    autolrs = {m: r for m, r in result.methods[name].items() if m.startswith("autolrs")}
    for color, (method, runs) in zip(_colors(len(autolrs)), autolrs.items(), strict=True):
        for index, run in enumerate(runs.runs):
            axes.plot(
                expand_segments(run.lr_segments),
                color=color,
                ls=_line_style(method),
                drawstyle="steps-post",
                lw=1,
                alpha=0.8,
                label=method if index == 0 else None,
            )
    axes.set_yscale("log")
    # Schedules that decay to 0 would stretch the log axis over decades nobody reads.
    low, high = result.tasks[name].spec.lr_range
    axes.set_ylim(low / 100, high * 3)
    axes.legend(fontsize=7)
    figure.savefig(path)


def _line_style(method: str) -> str:
    # The AutoLRS presets may resolve to the same config; dashes keep both visible.
    return "--" if method == "autolrs-paper" else "-"


def _colors(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(index % 10) for index in range(count)]
