"""The methods the benchmark compares, each resolved per task and driven through one interface.

A method is first *resolved* for a task into a :class:`MethodConfig`: a plain record of every
setting that decides its runs except the seed (its hash is part of every result key). A
:class:`~autolrs.bench.drivers.Driver` then carries one seeded run out for the
:mod:`~autolrs.bench.runner`, which owns the training loop and the measurements, so every
method is timed and evaluated the same way.

Choices made where the literature leaves room (each recorded in the resolved config):

- ``constant``, ``cosine`` (to zero at T), ``step`` (×0.1 at 50% and 75% of T): the task's
  optimizer at a given peak LR after the task's linear warmup. In a suite the peak is the
  family's best LR of the tuning grid.
- ``schedulefree``: ``SGDScheduleFree`` or ``AdamWScheduleFree`` (matching the task's
  optimizer) at the package's published default LR (1.0 for SGD, 0.0025 for AdamW), its own
  warmup set to the task's, momentum / betas / eps / per-group weight decay from the task.
  ``schedulefree-tuned`` is the same at the best LR of its own grid sweep (the same grid as the
  baselines). Evaluation switches the optimizer to its averaged weights (``.eval()``) and back;
  models with batch norm first re-estimate their running statistics on training batches at
  those weights, as the package's documentation asks, and that forward cost is charged.
- ``prodigy``: ``prodigyopt.Prodigy`` with lr = 1.0 (its default), the task's per-group weight
  decay (coupled L2 for SGD tasks, decoupled for AdamW tasks, the form the task's own optimizer
  uses), betas / eps from AdamW tasks or Prodigy's defaults, and the cosine-to-zero annealing
  with the task's warmup that its authors recommend (``safeguard_warmup=True`` under warmup).
- ``plateau``: ``ReduceLROnPlateau`` (×0.1, patience = 5% of T in evaluations, torch's default
  threshold) on the task's full validation loss, measured every ``eval_every`` update steps
  after warmup, starting from the best constant LR of the grid; each such validation pass is
  charged to the method. It therefore also inherits the cost of tuning the constant family.
- ``autolrs`` and ``autolrs-paper``: the library's scheduler with its default config for a
  budget (``AutoLRSConfig.for_budget``) and with the paper's algorithm scaled to T
  (``AutoLRSConfig.paper_for_budget``), given only what the baselines had: search range = the
  grid's [min, max], the task's warmup (ramping to the geometric mean of that range, so no
  tuned LR leaks in), and the probe loss as validation function.
- The ablations (:data:`ABLATIONS`): the default with one of its changes to the paper's
  algorithm undone, so each change's contribution is measured beside it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from autolrs.bench.schedules import FAMILIES
from autolrs.bench.tasks.base import TaskSpec
from autolrs.config import AutoLRSConfig
from autolrs.errors import ConfigError

__all__ = [
    "METHODS",
    "AUTOLRS_METHODS",
    "ABLATIONS",
    "SAME_BATCHES",
    "TUNED_FAMILIES",
    "MethodConfig",
    "resolve_method",
    "family_config",
    "autolrs_config",
]

#: Every method the suite can run, in report order.
METHODS: tuple[str, ...] = (
    "constant",
    "cosine",
    "step",
    "schedulefree",
    "schedulefree-tuned",
    "prodigy",
    "plateau",
    "autolrs",
    "autolrs-paper",
    "autolrs-update-budget",
    "autolrs-no-same-batches",
    "autolrs-no-progress-restart",
    "autolrs-no-cooldown",
    "autolrs-no-tolerance",
    "autolrs-no-window",
    "autolrs-no-fewer-candidates",
    "autolrs-no-settling",
)

#: Families swept over the LR grid: the three baselines, and schedule-free for its tuned row.
TUNED_FAMILIES: tuple[str, ...] = (*FAMILIES, "schedulefree")

#: The method that runs each swept family at its best LR.
_FAMILY_METHODS: dict[str, str] = {
    **{family: family for family in FAMILIES},
    "schedulefree": "schedulefree-tuned",
}

#: Published default LRs of the schedule-free optimizers, by the task's optimizer family.
SCHEDULEFREE_DEFAULT_LR: dict[str, float] = {"sgd": 1.0, "adamw": 0.0025}

PRODIGY_LR = 1.0
PLATEAU_FACTOR = 0.1
PLATEAU_PATIENCE_FRACTION = 0.05
#: Each ablation: the default's fields set back to the paper's values.
ABLATIONS: dict[str, dict[str, Any]] = {
    "autolrs-update-budget": {"budget_includes_search": False},
    "autolrs-no-same-batches": {"same_batches": False},
    "autolrs-no-progress-restart": {"restart_on_no_progress": False},
    "autolrs-no-cooldown": {"cooldown_fraction": 0.0},
    "autolrs-no-tolerance": {"larger_lr_tolerance": 0.0},
    "autolrs-no-window": {"search_window": None},
    "autolrs-no-fewer-candidates": {"num_candidates": AutoLRSConfig.num_candidates},
    "autolrs-no-settling": {"stop_search_when_settled": False},
}

#: AutoLRSConfig fields newer than the stored results: left out of a method's params (and so
#: of its runs' keys) at their default, so that adding them kept earlier runs valid.
_KEYLESS_AT_DEFAULT: dict[str, Any] = {
    "budget_includes_search": False,
    "restart_on_no_progress": False,
    "stop_search_when_settled": False,
}

#: A setting of the AutoLRS rows that belongs to the training loop, not to AutoLRSConfig: the
#: task's data stream is given to the scheduler as ``extra_state``, so it is snapshotted and
#: restored with the model and every candidate of a stage trains on the same batches (common
#: random numbers), as a loop with a stateful data loader can do. The default rows do it; the
#: paper's preset and ``autolrs-no-same-batches`` do not.
SAME_BATCHES = "same_batches"

#: How each AutoLRS row builds its config for a budget T.
_AUTOLRS_PRESETS: dict[str, Callable[..., AutoLRSConfig]] = {
    "autolrs": AutoLRSConfig.for_budget,
    "autolrs-paper": AutoLRSConfig.paper_for_budget,
    **{
        name: functools.partial(
            AutoLRSConfig.for_budget, **{k: v for k, v in undo.items() if k != SAME_BATCHES}
        )
        for name, undo in ABLATIONS.items()
    },
}
AUTOLRS_METHODS: tuple[str, ...] = tuple(_AUTOLRS_PRESETS)


@dataclass(frozen=True)
class MethodConfig:
    """A method resolved for one task: every setting of its runs except the seed.

    Attributes:
        method: One of :data:`METHODS`.
        lr: The peak LR (baseline families, plateau), the base LR (schedule-free), the LR
            multiplier (Prodigy), or None (AutoLRS searches its own).
        params: JSON-able settings specific to the method (for AutoLRS, its config without
            the seed, which every run sets from its own seed).
    """

    method: str
    lr: float | None
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"method": self.method, "lr": self.lr, "params": dict(self.params)}


def family_config(family: str, spec: TaskSpec, lr: float) -> MethodConfig:
    """The config of one grid point: a tuned family at peak ``lr``.

    It is the very config its method resolves to once ``lr`` is the family's best, so the
    sweep's run at the best LR is reused, not rerun, as that method's first seed.
    """
    if family not in TUNED_FAMILIES:
        raise ConfigError(f"family must be one of {TUNED_FAMILIES}, got {family!r}")
    return resolve_method(_FAMILY_METHODS[family], spec, {family: lr})


def resolve_method(method: str, spec: TaskSpec, tuned_lrs: Mapping[str, float]) -> MethodConfig:
    """Resolve ``method`` for the task ``spec``.

    Args:
        method: One of :data:`METHODS`.
        spec: The task's spec.
        tuned_lrs: Best peak LR of each swept family (``"constant"``, ``"cosine"``, ``"step"``,
            ``"schedulefree"``), from the task's reference file; methods that need none
            ignore it.

    Raises:
        ConfigError: An unknown method, or a tuned LR the reference does not hold.
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    if method in FAMILIES:
        return MethodConfig(method, _tuned(method, method, tuned_lrs))
    if method == "schedulefree":
        default = SCHEDULEFREE_DEFAULT_LR[spec.optimizer]
        return MethodConfig(method, default, {"lr_source": "default"})
    if method == "schedulefree-tuned":
        chosen = _tuned(method, "schedulefree", tuned_lrs)
        return MethodConfig(method, chosen, {"lr_source": "grid"})
    if method == "prodigy":
        params = {"schedule": "cosine", "safeguard_warmup": spec.warmup_steps > 0}
        return MethodConfig(method, PRODIGY_LR, params)
    if method == "plateau":
        patience = max(1, round(PLATEAU_PATIENCE_FRACTION * spec.budget / spec.eval_every))
        params = {"factor": PLATEAU_FACTOR, "patience_evals": patience, "lr_source": "constant"}
        return MethodConfig(method, _tuned(method, "constant", tuned_lrs), params)
    config = _autolrs_config(method, spec, seed=0).to_dict()
    del config["seed"]
    for name, default in _KEYLESS_AT_DEFAULT.items():
        if config[name] == default:
            del config[name]  # read back as the default by AutoLRSConfig.from_dict
    if method != "autolrs-paper":
        config[SAME_BATCHES] = ABLATIONS.get(method, {}).get(SAME_BATCHES, True)
    return MethodConfig(method, None, config)


def autolrs_config(config: MethodConfig, seed: int) -> AutoLRSConfig:
    """The AutoLRS config of one run of a resolved AutoLRS method: its params and ``seed``."""
    fields = {k: v for k, v in config.params.items() if k != SAME_BATCHES}
    return AutoLRSConfig.from_dict({**fields, "seed": seed})


def _tuned(method: str, family: str, tuned_lrs: Mapping[str, float]) -> float:
    if family not in tuned_lrs:
        raise ConfigError(
            f"method {method!r} needs the best {family!r} LR of the tuning grid, but the "
            f"reference holds only {sorted(tuned_lrs)}; rerun the grid with --regrid"
        )
    return float(tuned_lrs[family])


def _autolrs_config(method: str, spec: TaskSpec, seed: int) -> AutoLRSConfig:
    low, high = spec.lr_range
    warmup: dict[str, Any] = {"warmup_steps": spec.warmup_steps}
    if spec.warmup_steps > 0:
        warmup["warmup_lr"] = math.sqrt(low * high)
    return _AUTOLRS_PRESETS[method](spec.budget, low, high, seed=seed, **warmup)
