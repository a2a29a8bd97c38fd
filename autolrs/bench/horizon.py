"""How far each stage objective gets on the NQM with perfect forecasts and a free search.

AutoLRS picks each stage's LR by the loss it forecasts at the end of that stage. On the noisy
quadratic model the expected loss under SGD has a closed form, so the choice can be made with
perfect forecasts and no search cost at all, which isolates the objective from the forecaster:
whatever gap to a tuned schedule remains here is the objective's own. Compared:

- ``greedy``: the LR whose loss at the end of the stage is lowest (the paper's objective);
- ``tolerant``: from the second stage on, the largest LR whose loss at the end of the stage
  is within ``tolerance`` of the best one's improvement from the stage's start, and of the
  best loss itself (the library's ``larger_lr_tolerance``); the first stage is greedy;
- ``decay-after``: the LR whose loss is lowest after the stage *followed by a linear decay
  from that LR to 0* over ``decay_factor``·τ further steps: a look past the stage's end that
  a search could estimate with a short decay at the end of each trial;
- ``decay-to-end``: the same with the decay lasting the whole rest of the budget (a receding
  horizon: the best LR if the run were to be annealed from here).

Each objective runs with the stage lengths of :meth:`AutoLRSConfig.for_budget` (τ₀ = T/40
doubling to T/8), with and without its final cooldown (a linear decay to 0 over the last
``cooldown_fraction`` of the update steps), beside the tuned cosine and a constant-then-linear
(WSD) schedule at their best peak LRs, all over the same grid of LRs.

Notation (the NQM of :mod:`autolrs.bench.tasks.nqm`; shapes for G candidate LRs):

======  =======  ===========================================================================
symbol  shape    meaning
======  =======  ===========================================================================
h       (d,)     Hessian diagonal, hᵢ = 1/i
B       ()       batch size; the gradient noise covariance is H/B
v       (d,)     E θᵢ², the second moments; v₀ = 1 (θ₀ ~ N(0, I))
L       ()       expected loss ½ Σ hᵢvᵢ
η       (G,)     candidate LRs, log-spaced over the task's search range
======  =======  ===========================================================================

One SGD step at LR η maps v to (1 − ηh)²·v + η²h/B; τ steps at a constant η have the closed
form rᵗv + q(1 − rᵗ)/(1 − r) with r = (1 − ηh)², q = η²h/B.

Usage::

    python -m autolrs.bench.horizon --out benchmarks/results/nqm-horizon

writes ``horizon.json`` (every number, each run's LRs per stage) and ``horizon.md``.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from autolrs.config import AutoLRSConfig
from autolrs.errors import ConfigError

__all__ = [
    "NQMMoments",
    "StageRun",
    "OBJECTIVES",
    "run_objective",
    "run_schedule",
    "cosine_lrs",
    "wsd_lrs",
    "main",
]

logger = logging.getLogger(__name__)

OBJECTIVES = ("greedy", "tolerant", "decay-after", "decay-to-end")

#: A loss this large stands for divergence (SGD on the NQM diverges for η > 2 / max h = 2).
_DIVERGED = 1e30


class NQMMoments:
    """Exact second moments of SGD on the NQM, for many LRs at once.

    Args:
        dimension: d. ≥ 1.
        batch_size: B. ≥ 1.
    """

    def __init__(self, dimension: int = 10_000, batch_size: int = 1) -> None:
        if dimension < 1 or batch_size < 1:
            raise ConfigError(
                f"dimension and batch_size must be >= 1, got {dimension!r}, {batch_size!r}"
            )
        self.h = 1.0 / np.arange(1, dimension + 1, dtype=float)
        self.batch_size = batch_size

    def initial(self) -> np.ndarray:
        """v₀ = 1 everywhere, shape (d,)."""
        return np.ones_like(self.h)

    def loss(self, v: np.ndarray) -> np.ndarray:
        """½ Σ hᵢvᵢ over the last axis; diverged rows (non-finite or huge) give ``_DIVERGED``."""
        with np.errstate(over="ignore", invalid="ignore"):
            value = 0.5 * (v * self.h).sum(axis=-1)
        return np.where(np.isfinite(value) & (value < _DIVERGED), value, _DIVERGED)

    def constant(self, v: np.ndarray, lrs: np.ndarray, steps: int) -> np.ndarray:
        """The moments after ``steps`` steps at each LR, in closed form: shape (G, d)."""
        lrs = np.asarray(lrs, dtype=float)[:, None]
        r = (1.0 - lrs * self.h) ** 2
        q = lrs**2 * self.h / self.batch_size
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            rt = r**steps
            # (1 − rᵗ)/(1 − r) → t where r = 1 (η·h = 0 or 2): sum of t ones.
            geometric = np.where(np.isclose(r, 1.0), float(steps), (1.0 - rt) / (1.0 - r))
            return rt * v + q * geometric

    def ramp(self, v: np.ndarray, starts: np.ndarray, steps: int) -> np.ndarray:
        """The moments after a linear decay from each start LR to 0 over ``steps`` steps: (G, d).

        The LR at step i is start·(steps − i)/steps, as in :func:`wsd_lrs`'s decay.
        ``v`` is (d,) or (G, d).
        """
        starts = np.asarray(starts, dtype=float)[:, None]
        v = np.broadcast_to(v, (starts.shape[0], self.h.size))
        for i in range(steps):
            v = self.step(v, starts * (steps - i) / steps)
        return v

    def schedule(self, lrs: Sequence[float]) -> float:
        """Expected loss after SGD with the given per-step LRs, from v₀."""
        v = self.initial()
        for lr in lrs:
            v = self.step(v, lr)
        return float(self.loss(v))

    def step(self, v: np.ndarray, lr: float | np.ndarray) -> np.ndarray:
        """The moments after one SGD step at ``lr`` (a number, or a (G, 1) column per row)."""
        with np.errstate(over="ignore", invalid="ignore"):
            return (1.0 - lr * self.h) ** 2 * v + lr**2 * self.h / self.batch_size


@dataclass(frozen=True)
class StageRun:
    """One run of a stage objective.

    Attributes:
        objective: One of :data:`OBJECTIVES`.
        cooldown_fraction: Share of the update steps decayed linearly to 0 at the end.
        final_loss: Expected loss after all update steps.
        stage_lrs: The LR chosen for each searched stage.
        stage_steps: Each searched stage's length τ.
    """

    objective: str
    cooldown_fraction: float
    final_loss: float
    stage_lrs: list[float]
    stage_steps: list[int]


def stage_lengths(config: AutoLRSConfig, update_steps: int) -> list[int]:
    """The searched stages' lengths for ``update_steps`` update steps and no search cost.

    Stages follow ``config.stage_length``; a remainder shorter than half the next stage is
    added to the last stage, as the controller does, and the cooldown is left out.
    """
    searched = update_steps - round(update_steps * config.cooldown_fraction)
    lengths: list[int] = []
    while searched > 0:
        tau = min(config.stage_length(len(lengths)), searched)
        if lengths and searched - tau < config.stage_length(len(lengths) + 1) / 2:
            tau = searched
        lengths.append(tau)
        searched -= tau
    return lengths


def run_objective(
    nqm: NQMMoments,
    objective: str,
    lrs: np.ndarray,
    config: AutoLRSConfig,
    *,
    update_steps: int,
    tolerance: float = 0.5,
    decay_factor: float = 1.0,
) -> StageRun:
    """Choose each stage's LR among ``lrs`` by ``objective`` with exact losses, then train.

    Args:
        nqm: The model.
        objective: One of :data:`OBJECTIVES`.
        lrs: Candidate LRs, shape (G,).
        config: Gives the stage lengths and the cooldown fraction.
        update_steps: T, all of it update steps (the search is free here).
        tolerance: For ``tolerant``: the share of the best's improvement a larger LR may lose.
        decay_factor: For ``decay-after``: the decay lasts this many stage lengths.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    lrs = np.asarray(lrs, dtype=float)
    lengths = stage_lengths(config, update_steps)
    v = nqm.initial()
    done, chosen = 0, []
    for index, tau in enumerate(lengths):
        start = float(nqm.loss(v))
        ends = nqm.constant(v, lrs, tau)
        at_end = nqm.loss(ends)
        # The library's tolerance applies from the second stage on.
        if objective == "greedy" or (objective == "tolerant" and index == 0):
            pick = int(np.argmin(at_end))
        elif objective == "tolerant":
            best = float(at_end.min())
            bound = best + tolerance * min(max(start - best, 0.0), best)
            pick = int(np.flatnonzero(at_end <= bound).max())
        else:
            after = (
                max(1, round(decay_factor * tau))
                if objective == "decay-after"
                else max(1, update_steps - done - tau)
            )
            pick = int(np.argmin(_decayed_losses(nqm, ends, lrs, after)))
        chosen.append(float(lrs[pick]))
        v = ends[pick]
        done += tau
    cooldown = update_steps - done
    if cooldown > 0:
        v = nqm.ramp(v, np.array([chosen[-1]]), cooldown)[0]
    return StageRun(
        objective=objective,
        cooldown_fraction=config.cooldown_fraction,
        final_loss=float(nqm.loss(v)),
        stage_lrs=chosen,
        stage_steps=lengths,
    )


def _decayed_losses(nqm: NQMMoments, ends: np.ndarray, lrs: np.ndarray, steps: int) -> np.ndarray:
    """Loss of each row of ``ends`` after decaying from its LR to 0 over ``steps`` steps."""
    finite = nqm.loss(ends) < _DIVERGED
    out = np.full(lrs.shape, _DIVERGED)
    if finite.any():
        out[finite] = nqm.loss(nqm.ramp(ends[finite], lrs[finite], steps))
    return out


def cosine_lrs(peak: float, steps: int) -> list[float]:
    """Cosine from ``peak`` to 0 over ``steps`` steps."""
    return [0.5 * peak * (1.0 + math.cos(math.pi * i / steps)) for i in range(steps)]


def wsd_lrs(peak: float, steps: int, decay_fraction: float) -> list[float]:
    """Constant ``peak``, then a linear decay to 0 over the last ``decay_fraction`` of steps."""
    decay = round(steps * decay_fraction)
    flat = steps - decay
    return [peak] * flat + [peak * (decay - i) / decay for i in range(decay)]


def run_schedule(
    nqm: NQMMoments, make: Callable[[float], list[float]], peaks: np.ndarray
) -> tuple[float, float]:
    """(best peak, its final loss) of a schedule family over ``peaks``."""
    losses = [nqm.schedule(make(float(peak))) for peak in peaks]
    best = int(np.argmin(losses))
    return float(peaks[best]), float(losses[best])


def study(
    *,
    dimension: int = 10_000,
    budget: int = 4000,
    min_lr: float = 0.03,
    max_lr: float = 3.0,
    grid_size: int = 41,
    update_shares: Sequence[float] = (1.0, 0.92, 0.875),
    tolerances: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
    cooldowns: Sequence[float] = (0.3, 0.4, 0.5, 0.6),
) -> dict:
    """Every objective, with and without the default's cooldown, and the tuned references.

    ``update_shares``: the runs are repeated with this share of ``budget`` as update steps
    (0.92 is about what the default keeps on this task when its search is paid from the
    budget, 0.875 when the search takes an eighth).
    ``tolerances`` × ``cooldowns``: a sweep of the ``tolerant`` objective's two constants.
    """
    nqm = NQMMoments(dimension)
    lrs = np.geomspace(min_lr, max_lr, grid_size)
    default = AutoLRSConfig.for_budget(budget, min_lr, max_lr)
    rows: list[dict] = []
    sweep: list[dict] = []
    for share in update_shares:
        steps = round(budget * share)
        references = {
            "cosine": run_schedule(nqm, functools.partial(cosine_lrs, steps=steps), lrs),
            f"wsd {default.cooldown_fraction:g}": run_schedule(
                nqm,
                functools.partial(wsd_lrs, steps=steps, decay_fraction=default.cooldown_fraction),
                lrs,
            ),
        }
        for name, (peak, loss) in references.items():
            rows.append(
                {
                    "update_steps": steps,
                    "method": name,
                    "cooldown_fraction": None,
                    "final_loss": loss,
                    "stage_lrs": [peak],
                    "stage_steps": [steps],
                }
            )
        for cooldown in (0.0, default.cooldown_fraction):
            config = default.replace(cooldown_fraction=cooldown)
            for objective in OBJECTIVES:
                result = run_objective(
                    nqm,
                    objective,
                    lrs,
                    config,
                    update_steps=steps,
                    tolerance=default.larger_lr_tolerance,
                )
                logger.info(
                    "%d updates, %s, cooldown %g: %.4f",
                    steps,
                    objective,
                    cooldown,
                    result.final_loss,
                )
                rows.append({"update_steps": steps, "method": objective, **asdict(result)})
        for tolerance in tolerances:
            for cooldown in cooldowns:
                result = run_objective(
                    nqm,
                    "tolerant",
                    lrs,
                    default.replace(cooldown_fraction=cooldown),
                    update_steps=steps,
                    tolerance=tolerance,
                )
                sweep.append({"update_steps": steps, "tolerance": tolerance, **asdict(result)})
    return {
        "dimension": dimension,
        "budget": budget,
        "lr_grid": [float(x) for x in lrs],
        "tolerance": default.larger_lr_tolerance,
        "rows": rows,
        "sweep": sweep,
    }


def to_markdown(results: dict) -> str:
    """A table per update budget: final expected loss and the LRs chosen."""
    lines = [
        "# Stage objectives on the NQM with perfect forecasts and a free search",
        "",
        f"d = {results['dimension']}, T = {results['budget']}, B = 1, plain SGD; candidate "
        f"LRs: {len(results['lr_grid'])} log-spaced in [{results['lr_grid'][0]:g}, "
        f"{results['lr_grid'][-1]:g}]; tolerance {results['tolerance']:g}. Losses are exact "
        "expected losses (no seeds). Generated by `python -m autolrs.bench.horizon`.",
    ]
    for steps in sorted({row["update_steps"] for row in results["rows"]}, reverse=True):
        lines += [
            "",
            f"## {steps} update steps",
            "",
            "| objective | final cooldown | final expected loss | LR per stage |",
            "|---|---|---|---|",
        ]
        for row in results["rows"]:
            if row["update_steps"] != steps:
                continue
            cooldown = "—" if row["cooldown_fraction"] is None else f"{row['cooldown_fraction']:g}"
            schedule = " → ".join(f"{lr:.3g}" for lr in row["stage_lrs"])
            lines.append(
                f"| {row['method']} | {cooldown} | {row['final_loss']:.4f} | {schedule} |"
            )
    lines += _sweep_markdown(results["sweep"])
    return "\n".join(lines) + "\n"


def _sweep_markdown(sweep: list[dict]) -> list[str]:
    """The tolerance × cooldown sweep: one table per update budget, tolerances as rows."""
    lines: list[str] = []
    for steps in sorted({row["update_steps"] for row in sweep}, reverse=True):
        rows = [row for row in sweep if row["update_steps"] == steps]
        tolerances = sorted({row["tolerance"] for row in rows})
        cooldowns = sorted({row["cooldown_fraction"] for row in rows})
        losses = {(row["tolerance"], row["cooldown_fraction"]): row["final_loss"] for row in rows}
        lines += [
            "",
            f"## `tolerant` at {steps} update steps: tolerance × final cooldown",
            "",
            "| tolerance | " + " | ".join(f"cooldown {c:g}" for c in cooldowns) + " |",
            "|---|" + "---|" * len(cooldowns),
        ]
        for tolerance in tolerances:
            cells = " | ".join(f"{losses[(tolerance, c)]:.4f}" for c in cooldowns)
            lines.append(f"| {tolerance:g} | {cells} |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Run the study and write ``horizon.json`` and ``horizon.md`` into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/nqm-horizon"))
    parser.add_argument("--dimension", type=int, default=10_000)
    parser.add_argument("--budget", type=int, default=4000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    results = study(dimension=args.dimension, budget=args.budget)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "horizon.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "horizon.md").write_text(to_markdown(results))
    print(to_markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
