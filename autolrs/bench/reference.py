"""The tuned baseline of a task and its reference file.

Protocol (docs/benchmark.md): sweep each family's peak LR over the task's grid with one seed; run
each family's best LR with more seeds; the *tuned baseline* is the family and LR with the
lowest mean final validation loss, and the *target* L* is that mean. The reference file keeps
the result (the grid's finals, every seed run of each family's best LR with its curve, the
choice and the target) so that later suites and CI read it instead of rerunning the grid.

Schedule-free is swept over the same grid for its tuned row but is never the baseline: the
baseline is what a user would do by hand with the task's own optimizer.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autolrs.bench.records import RunRecord
from autolrs.bench.schedules import FAMILIES
from autolrs.bench.tasks.base import TaskSpec
from autolrs.errors import ConfigError

__all__ = [
    "REFERENCE_FORMAT",
    "SWEEP_SEED",
    "GridPoint",
    "Reference",
    "swept_grid",
    "best_lr",
    "build_reference",
    "reference_path",
]

logger = logging.getLogger(__name__)

#: Version of the reference file's layout.
REFERENCE_FORMAT = 1

#: The seed of the one-seed sweep; the extra seeds of each family's best LR follow it.
SWEEP_SEED = 0

#: Points of the grid a smoke suite sweeps: the middle ones, enough to exercise the protocol.
SMOKE_GRID_POINTS = 2


@dataclass(frozen=True)
class GridPoint:
    """One point of the one-seed sweep.

    Attributes:
        family: The swept family.
        lr: Its peak LR.
        final_val_loss: Validation loss at T; None when the run diverged.
        stop_reason: Why the run ended.
        cost: What the run cost, in step equivalents.
        wall_s: Its wall time.
    """

    family: str
    lr: float
    final_val_loss: float | None
    stop_reason: str
    cost: float
    wall_s: float

    @classmethod
    def of(cls, family: str, record: RunRecord) -> GridPoint:
        """The summary of a finished grid run."""
        assert record.key.lr is not None  # grid runs always have an LR
        return cls(
            family=family,
            lr=record.key.lr,
            final_val_loss=record.final_val_loss,
            stop_reason=record.stop_reason,
            cost=record.total_steps + record.eval_cost,
            wall_s=record.wall_s,
        )


@dataclass(frozen=True)
class Reference:
    """A task's tuned baselines, as stored in its reference file.

    Attributes:
        spec: The task's spec as a dict (matched on load).
        grid: The swept LRs.
        sweep: Every grid point, one seed each.
        best: Best peak LR of each swept family.
        seed_runs: Each family's runs at its best LR, one per seed.
        baseline_family: The tuned baseline's family.
        target: L*, the tuned baseline's mean final validation loss.
        target_std: Sample standard deviation of those finals (0 with one seed).
    """

    spec: dict[str, Any]
    grid: tuple[float, ...]
    sweep: tuple[GridPoint, ...]
    best: dict[str, float]
    seed_runs: dict[str, list[RunRecord]]
    baseline_family: str
    target: float
    target_std: float

    @property
    def baseline_lr(self) -> float:
        """The tuned baseline's peak LR."""
        return self.best[self.baseline_family]

    @property
    def baseline_runs(self) -> list[RunRecord]:
        """The tuned baseline's seed runs."""
        return self.seed_runs[self.baseline_family]

    @property
    def sweep_cost(self) -> float:
        """Cost of the one-seed sweep over every family and LR: what tuning by hand costs."""
        return float(sum(point.cost for point in self.sweep))

    @property
    def protocol_cost(self) -> float:
        """The sweep plus the extra seeds of each family's best LR."""
        extra = [
            run.total_steps + run.eval_cost
            for runs in self.seed_runs.values()
            for run in runs
            if run.key.seed != SWEEP_SEED
        ]
        return self.sweep_cost + float(sum(extra))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: the reference file's content."""
        return {
            "format": REFERENCE_FORMAT,
            "spec": self.spec,
            "grid": list(self.grid),
            "sweep": [vars(point) for point in self.sweep],
            "best": dict(self.best),
            "baseline": {
                "family": self.baseline_family,
                "lr": self.baseline_lr,
                "target": self.target,
                "target_std": self.target_std,
                "seeds": len(self.baseline_runs),
            },
            "sweep_cost": self.sweep_cost,
            "protocol_cost": self.protocol_cost,
            "seed_runs": {
                family: [run.to_dict() for run in runs] for family, runs in self.seed_runs.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        """Inverse of :meth:`to_dict`."""
        if data.get("format") != REFERENCE_FORMAT:
            raise ConfigError(
                f"reference format {data.get('format')!r} is not supported; expected "
                f"{REFERENCE_FORMAT} (rerun the grid with --regrid)"
            )
        baseline = data["baseline"]
        return cls(
            spec=dict(data["spec"]),
            grid=tuple(float(lr) for lr in data["grid"]),
            sweep=tuple(GridPoint(**point) for point in data["sweep"]),
            best={family: float(lr) for family, lr in data["best"].items()},
            seed_runs={
                family: [RunRecord.from_dict(run) for run in runs]
                for family, runs in data["seed_runs"].items()
            },
            baseline_family=str(baseline["family"]),
            target=float(baseline["target"]),
            target_std=float(baseline["target_std"]),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the reference file (indented, so that a diff of it can be read)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike[str], spec: TaskSpec) -> Reference:
        """Read ``path``, checking that it was made for exactly ``spec``."""
        reference = cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        current = json.loads(json.dumps(spec.to_dict()))
        if reference.spec != current:
            changed = sorted(k for k in current if reference.spec.get(k) != current[k])
            raise ConfigError(
                f"reference {str(path)!r} was made for a different {spec.name} "
                f"v{spec.version} spec (fields {changed} differ): bump the task's version or "
                "rerun the grid with --regrid"
            )
        return reference


def swept_grid(spec: TaskSpec, *, smoke: bool) -> tuple[float, ...]:
    """The LRs the sweep runs: the task's whole grid, or its middle points for a smoke suite."""
    grid = tuple(spec.lr_grid)
    if not smoke or len(grid) <= SMOKE_GRID_POINTS:
        return grid
    start = (len(grid) - SMOKE_GRID_POINTS) // 2
    return grid[start : start + SMOKE_GRID_POINTS]


def best_lr(points: Sequence[GridPoint]) -> float:
    """LR of the point with the lowest final loss (diverged runs rank last; ties: smaller LR)."""
    if not points:
        raise ConfigError("best_lr needs at least one grid point, got none")

    def rank(point: GridPoint) -> tuple[float, float]:
        loss = point.final_val_loss
        return (math.inf if loss is None else loss, point.lr)

    return min(points, key=rank).lr


def build_reference(
    spec: TaskSpec,
    grid: Sequence[float],
    sweep: Sequence[GridPoint],
    seed_runs: Mapping[str, Sequence[RunRecord]],
) -> Reference:
    """Pick the tuned baseline among the baseline families and fix the target.

    Args:
        spec: The task's spec.
        grid: The swept LRs.
        sweep: Every one-seed grid point.
        seed_runs: For each swept family, its runs at its best LR (one per seed).

    Raises:
        ConfigError: No baseline family has a run that finished without diverging.
    """
    best = {
        family: best_lr([point for point in sweep if point.family == family])
        for family in seed_runs
    }
    means: dict[str, float] = {}
    for family in FAMILIES:
        finals = [run.final_val_loss for run in seed_runs.get(family, [])]
        if finals and None not in finals:
            means[family] = float(np.mean(finals))
    if not means:
        raise ConfigError(
            f"{spec.name}: every baseline family diverged at its best LR; the grid "
            f"{tuple(grid)} is not wide enough downwards"
        )
    family = min(means, key=means.__getitem__)
    finals = [float(run.final_val_loss) for run in seed_runs[family]]  # type: ignore[arg-type]
    std = float(np.std(finals, ddof=1)) if len(finals) > 1 else 0.0
    _warn_if_grid_edge(spec, family, best[family])
    logger.info(
        "%s: tuned baseline %s at lr=%.4g, target %.5g ± %.2g over %d seeds",
        spec.name,
        family,
        best[family],
        means[family],
        std,
        len(finals),
    )
    return Reference(
        spec=json.loads(json.dumps(spec.to_dict())),
        grid=tuple(float(lr) for lr in grid),
        sweep=tuple(sweep),
        best=best,
        seed_runs={name: list(runs) for name, runs in seed_runs.items()},
        baseline_family=family,
        target=means[family],
        target_std=std,
    )


def _warn_if_grid_edge(spec: TaskSpec, family: str, lr: float) -> None:
    # The protocol wants both ends of the task's grid clearly worse; a best LR on an edge
    # means the true optimum may lie outside and the baseline is under-tuned. (A smoke
    # suite's shortened grid says nothing about this, so only the task's own ends count.)
    if lr in (min(spec.lr_grid), max(spec.lr_grid)):
        logger.warning(
            "%s: the tuned %s LR %.4g is at the edge of the task's grid %s; the grid may be "
            "too narrow",
            spec.name,
            family,
            lr,
            tuple(spec.lr_grid),
        )


def reference_path(directory: str | os.PathLike[str], spec: TaskSpec) -> Path:
    """``<directory>/<task>-v<version>.json``, with ``-smoke`` for the smoke variant."""
    suffix = "" if spec.variant == "standard" else f"-{spec.variant}"
    return Path(directory) / f"{spec.name}-v{spec.version}{suffix}.json"
