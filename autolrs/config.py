"""The one configuration object that holds every constant of the AutoLRS algorithm.

Notation (Jin et al., ICLR 2021):

=========  ===================  =========================================================
symbol     field                meaning
=========  ===================  =========================================================
τ₀         ``stage_steps``      update steps trained with the chosen LR in the first stage
τ_max      ``max_stage_steps``  cap on τ; τ doubles after every stage until it reaches it
τ'/τ       ``trial_fraction``   share of a stage's length that each candidate trains for
k          ``num_candidates``   candidate LRs tried per stage
κ          ``kappa``            exploration weight of the lower confidence bound μ − κσ
=========  ===================  =========================================================

A config is frozen and validated on construction, so a bad value fails where it is written and
not thousands of steps into a run.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

from autolrs.errors import ConfigError

__all__ = ["AutoLRSConfig", "BUDGET_DEFAULTS", "FirstCandidate", "ChooseBy", "resolve_config"]

FirstCandidate = Literal["random", "center"]
ChooseBy = Literal["posterior_mean", "forecast"]

#: What :meth:`AutoLRSConfig.for_budget` changes in :meth:`AutoLRSConfig.paper_for_budget`.
BUDGET_DEFAULTS: dict[str, Any] = {
    "num_candidates": 4,
    "search_window": 3.0,
    "larger_lr_tolerance": 0.75,
    "cooldown_fraction": 0.5,
    "budget_includes_search": True,
    "restart_on_no_progress": True,
    "stop_search_when_settled": True,
}

#: Fewest loss values a trial must yield for its exponential forecast (three parameters + 2).
MIN_TRIAL_POINTS = 5

_FIRST_CANDIDATE_CHOICES = ("random", "center")
_CHOOSE_BY_CHOICES = ("posterior_mean", "forecast")


@dataclass(frozen=True)
class AutoLRSConfig:
    """Every constant of the search, validated on construction.

    The defaults are the paper's constants (``stage_steps=1000`` doubling to
    ``max_stage_steps=8000``, ten candidates, each trained for a tenth of the stage, κ = 1000).
    They assume runs of about 10⁵ update steps; :meth:`for_budget` scales the stage lengths to a
    run of known length.

    Args:
        min_lr: Smallest learning rate the search may choose, for the first param group. > 0.
        max_lr: Largest learning rate the search may choose. > ``min_lr``.
        stage_steps: τ₀, the update steps of the first stage. ≥ 1.
        max_stage_steps: τ_max. τ doubles after each stage and is then clipped to this value.
            ≥ ``stage_steps``.
        trial_fraction: τ'/τ, each candidate trains for ``round(τ * trial_fraction)`` steps
            (at least 1). In (0, 1].
        num_candidates: k, candidates tried per stage. ≥ 2.
        kappa: κ of the lower confidence bound μ − κσ that picks the next candidate. ≥ 0; the
            paper's 1000 makes the acquisition close to pure variance reduction.
        val_every: Once stages reach ``max_stage_steps`` and a validation function is given,
            candidates are judged by the validation loss measured after every ``val_every``
            trial steps. ≥ 1.
        use_val_loss: Whether to switch to the validation loss at τ_max at all. When False, or
            when no validation function is given, the training loss is forecast throughout.
        warmup_steps: Update steps of linear warmup before the first stage; not searched. ≥ 0.
        warmup_lr: LR reached at the end of warmup; the ramp starts at
            ``warmup_lr / warmup_steps``. Required when ``warmup_steps > 0``.
        seed: Seeds every random choice of the search (the first candidate of each stage).
        first_candidate: ``"random"``: each stage's first candidate is drawn uniformly in log LR
            (seeded); ``"center"``: the geometric mean of ``min_lr`` and ``max_lr``.
        choose_by: How the stage LR η* is picked among the explored candidates:
            ``"posterior_mean"`` (lowest GP posterior mean, the paper) or ``"forecast"``
            (lowest raw forecast, the authors' code).
        gp_length_scale: Length scale of the Matérn-5/2 kernel over natural-log LR. > 0.
        gp_fit_hyperparameters: Fit the kernel's amplitude, length scale and noise by maximum
            likelihood on normalised targets (the authors' code); when False they stay fixed.
        keep_last_trial: When the chosen LR is the last candidate tried, keep its trial steps
            as progress instead of restoring the snapshot and training them again. With a
            ``search_window``, the previous stage's η* is then tried last instead of first,
            and the candidates before it are placed knowing it will come.
        divergence_factor: A candidate or a stage training whose training loss exceeds this
            many times the stage's reference loss (the largest training loss over the last
            steps trained before the stage) is stopped at once and treated like a non-finite
            loss. > 1, or None to stop only on
            non-finite losses. Guards the GP against finite but exploding losses.
        total_steps: The run's budget, when known: update steps, or every optimizer step when
            ``budget_includes_search``. The stage that would leave less than half of the next
            stage's cost before the budget ends (or before the cooldown) is stretched to that
            end instead. None: stages follow the doubling rule only.
        budget_includes_search: Count the search's rolled-back steps against ``total_steps``
            too, so that the run ends after exactly ``total_steps`` optimizer steps, as a loop
            ``for step in range(total_steps)`` or a framework's step limit expects, and the
            search is paid for out of the budget rather than on top of it. Stages are planned
            with their trials' cost; a stage that diverges and is trained again is shortened to
            keep the cooldown's share. False: the budget counts update steps only and the
            search's steps come on top.
        cooldown_fraction: Share of ``total_steps`` trained last, with no search, while the
            LR decays linearly from the last stage's LR to 0. Stage-by-stage search is greedy:
            each stage's winner is the LR that lowers the loss most within τ steps, which
            favours small LRs early; a final decay removes the noise floor that a larger LR
            leaves, as in warmup-stable-decay schedules. In [0, 1); > 0 needs ``total_steps``.
        larger_lr_tolerance: From the second stage on, η* is the largest explored LR whose
            predicted loss lies within this share of the best candidate's predicted
            improvement (from the stage's starting loss) of the best, by the GP's posterior
            mean and by its own forecast alike; the improvement counts at most as much as the
            best predicted loss itself when that is positive, so a stage that starts far
            above every forecast does not take an LR whose loss is a multiple of the best's.
            The first stage, from initialisation, takes the best candidate: there a fall is
            mostly progress, not noise that a later decay removes. 0 picks the best candidate
            in every stage. In [0, 1).
        search_window: From the second stage on, search only LRs within this factor of the
            previous stage's η* (clipped to [min_lr, max_lr]), η* itself among them: the
            best LR drifts smoothly, so a few candidates near it beat many spread over the
            whole range. > 1, or None to search the whole range in every stage.
        restart_on_no_progress: A searched stage whose loss at its end (the stage's metric)
            lies above the loss it started from is trained again from its snapshot with the
            next-best candidate, as a diverged one is; once per stage, the second result
            stands. It catches the harm a too-large LR does without exploding, such as a
            network whose units die and stay at chance level.
        stop_search_when_settled: Once a stage's windowed search keeps the previous stage's
            η* (its anchor), the search has settled: the steps left before the cooldown are
            trained as one stage at that LR, with no trials, so the steps the trials would
            have cost train instead. Should that stage diverge or lose ground
            (``restart_on_no_progress``), it is rolled back and searched after all. Takes
            effect only with a ``search_window``, which supplies the anchor, and a cooldown
            (``cooldown_fraction`` > 0): without one, the search's falling LRs are the run's
            only decay, and it goes on.
    """

    min_lr: float
    max_lr: float
    stage_steps: int = 1000
    max_stage_steps: int = 8000
    trial_fraction: float = 0.1
    num_candidates: int = 10
    kappa: float = 1000.0
    val_every: int = 50
    use_val_loss: bool = True
    warmup_steps: int = 0
    warmup_lr: float | None = None
    seed: int = 0
    first_candidate: FirstCandidate = "random"
    choose_by: ChooseBy = "posterior_mean"
    gp_length_scale: float = 1.0
    gp_fit_hyperparameters: bool = True
    keep_last_trial: bool = False
    divergence_factor: float | None = 10.0
    total_steps: int | None = None
    budget_includes_search: bool = False
    cooldown_fraction: float = 0.0
    larger_lr_tolerance: float = 0.0
    search_window: float | None = None
    restart_on_no_progress: bool = False
    stop_search_when_settled: bool = False

    def __post_init__(self) -> None:
        _check_positive_float("min_lr", self.min_lr)
        _check_positive_float("max_lr", self.max_lr)
        if not self.min_lr < self.max_lr:
            raise ConfigError(
                f"min_lr must be smaller than max_lr, got min_lr={self.min_lr!r} and "
                f"max_lr={self.max_lr!r}"
            )
        _check_int("stage_steps", self.stage_steps, minimum=1)
        _check_int("max_stage_steps", self.max_stage_steps, minimum=1)
        if self.max_stage_steps < self.stage_steps:
            raise ConfigError(
                f"max_stage_steps must be >= stage_steps={self.stage_steps}, "
                f"got {self.max_stage_steps!r}"
            )
        _check_float("trial_fraction", self.trial_fraction)
        if not 0.0 < self.trial_fraction <= 1.0:
            raise ConfigError(f"trial_fraction must be in (0, 1], got {self.trial_fraction!r}")
        _check_int("num_candidates", self.num_candidates, minimum=2)
        _check_float("kappa", self.kappa)
        if self.kappa < 0:
            raise ConfigError(f"kappa must be >= 0, got {self.kappa!r}")
        _check_int("val_every", self.val_every, minimum=1)
        first_trial = self.trial_length(self.stage_steps)
        if first_trial < MIN_TRIAL_POINTS:
            raise ConfigError(
                f"stage_steps={self.stage_steps} with trial_fraction={self.trial_fraction} gives "
                f"trials of {first_trial} steps; the forecast needs at least {MIN_TRIAL_POINTS} "
                "losses, so raise stage_steps or trial_fraction"
            )
        val_points = self.trial_length(self.max_stage_steps) // self.val_every
        if self.use_val_loss and val_points < MIN_TRIAL_POINTS:
            raise ConfigError(
                f"val_every={self.val_every} gives {val_points} validation losses per trial of "
                f"{self.trial_length(self.max_stage_steps)} steps at max_stage_steps; the "
                f"forecast needs at least {MIN_TRIAL_POINTS}, so lower val_every (or set "
                "use_val_loss=False)"
            )
        _check_bool("use_val_loss", self.use_val_loss)
        _check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.warmup_steps > 0:
            if self.warmup_lr is None:
                raise ConfigError(
                    f"warmup_lr is required when warmup_steps > 0 (warmup_steps="
                    f"{self.warmup_steps}), got None"
                )
            _check_positive_float("warmup_lr", self.warmup_lr)
        elif self.warmup_lr is not None:
            _check_positive_float("warmup_lr", self.warmup_lr)
        _check_int("seed", self.seed, minimum=0)
        if self.first_candidate not in _FIRST_CANDIDATE_CHOICES:
            raise ConfigError(
                f"first_candidate must be one of {_FIRST_CANDIDATE_CHOICES}, "
                f"got {self.first_candidate!r}"
            )
        if self.choose_by not in _CHOOSE_BY_CHOICES:
            raise ConfigError(
                f"choose_by must be one of {_CHOOSE_BY_CHOICES}, got {self.choose_by!r}"
            )
        _check_positive_float("gp_length_scale", self.gp_length_scale)
        _check_bool("gp_fit_hyperparameters", self.gp_fit_hyperparameters)
        _check_bool("keep_last_trial", self.keep_last_trial)
        if self.divergence_factor is not None:
            _check_float("divergence_factor", self.divergence_factor)
            if self.divergence_factor <= 1:
                raise ConfigError(
                    f"divergence_factor must be > 1 or None, got {self.divergence_factor!r}"
                )
        if self.total_steps is not None:
            _check_int("total_steps", self.total_steps, minimum=1)
        _check_bool("budget_includes_search", self.budget_includes_search)
        if self.budget_includes_search and self.total_steps is not None:
            # The warmup, the first stage's trials and a stage as long as one of them must
            # fit, or the budget ends before anything is trained.
            trial = self.trial_length(self.stage_steps)
            least = self.warmup_steps + (self.num_candidates + 1) * trial
            if self.total_steps < least:
                raise ConfigError(
                    f"total_steps must be >= {least} when budget_includes_search=True: the "
                    f"warmup's {self.warmup_steps} steps, the first stage's "
                    f"{self.num_candidates} trials of {trial} steps and a stage as long as one "
                    f"of them come out of the budget; got total_steps={self.total_steps}"
                )
        _check_float("cooldown_fraction", self.cooldown_fraction)
        if not 0.0 <= self.cooldown_fraction < 1.0:
            raise ConfigError(
                f"cooldown_fraction must be in [0, 1), got {self.cooldown_fraction!r}"
            )
        if self.cooldown_fraction > 0 and self.total_steps is None:
            raise ConfigError(
                f"cooldown_fraction={self.cooldown_fraction} needs total_steps (the cooldown "
                "is the last share of the budget), got total_steps=None"
            )
        _check_float("larger_lr_tolerance", self.larger_lr_tolerance)
        if not 0.0 <= self.larger_lr_tolerance < 1.0:
            raise ConfigError(
                f"larger_lr_tolerance must be in [0, 1), got {self.larger_lr_tolerance!r}"
            )
        if self.search_window is not None:
            _check_float("search_window", self.search_window)
            if self.search_window <= 1:
                raise ConfigError(f"search_window must be > 1 or None, got {self.search_window!r}")
        _check_bool("restart_on_no_progress", self.restart_on_no_progress)
        _check_bool("stop_search_when_settled", self.stop_search_when_settled)
        # Store plain Python numbers (a NumPy scalar passed in must not leak into JSON).
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, field.name, int(value))
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                object.__setattr__(self, field.name, float(value))

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def paper(cls, min_lr: float, max_lr: float, **overrides: Any) -> AutoLRSConfig:
        """The paper's algorithm and constants, with the fixes this library makes to it.

        τ₀ = 1000 doubling to τ_max = 8000, k = 10, τ' = τ/10, κ = 1000, validation every
        50 steps once τ = τ_max, η* by lowest posterior mean, a seeded random first candidate,
        and no shortcuts (every candidate's trial steps are rolled back).
        """
        return cls(min_lr=min_lr, max_lr=max_lr, **overrides)

    @classmethod
    def for_budget(
        cls, total_steps: int, min_lr: float, max_lr: float, **overrides: Any
    ) -> AutoLRSConfig:
        """The library's default for a run of ``total_steps`` optimizer steps, search included.

        :meth:`paper_for_budget`'s stage lengths and validation cadence, with the search made
        cheaper and less greedy (:data:`BUDGET_DEFAULTS`): four candidates per stage, searched
        from the second stage on within a factor 3 of the previous stage's LR, the largest LR
        within three quarters of the best's predicted improvement (and of its predicted loss)
        chosen from the second stage on, the search stopped once a stage keeps the previous
        stage's LR (that LR then trains on until the cooldown), and the last half of the
        budget spent decaying the LR linearly to 0 with no search. The search costs a tenth
        of the budget or less (the paper's algorithm: about as many steps as it keeps), and
        it is paid out of the budget: the run ends after ``total_steps`` optimizer steps in
        all.

        Args:
            total_steps: T, the number of optimizer steps the run will take. ≥ 40, and large
                enough for the first stage's trials and a stage as long as one (≥ 50 with
                the default four candidates).
            min_lr: See the class.
            max_lr: See the class.
            **overrides: Any other field, taking precedence over these values.
        """
        return cls.paper_for_budget(
            total_steps, min_lr, max_lr, **{**BUDGET_DEFAULTS, **overrides}
        )

    @classmethod
    def paper_for_budget(
        cls, total_steps: int, min_lr: float, max_lr: float, **overrides: Any
    ) -> AutoLRSConfig:
        """The paper's algorithm with stage lengths scaled to a run of ``total_steps`` updates.

        This is the faithful baseline of :meth:`for_budget`, which adds the library's changes.

        The paper's τ₀ = 1000 → τ_max = 8000 suits runs of about 10⁵ steps. For a budget of
        T update steps this uses τ₀ = T/40 and τ_max = T/8, so a run has about ten stages
        whatever its length, and validates often enough that a trial at τ_max yields 16
        validation points (``val_every = τ'_max / 16``, but at least 5; with trials too short
        for 5 such points the training loss is forecast throughout). Stages never get so short
        that a trial has fewer than 10 steps: short budgets get τ₀ = ⌈10 / trial_fraction⌉.

        Args:
            total_steps: T, the number of update steps the run will train. ≥ 40.
            min_lr: See the class.
            max_lr: See the class.
            **overrides: Any other field, taking precedence over the scaled values.
        """
        _check_int("total_steps", total_steps, minimum=40)
        fraction = overrides.get("trial_fraction", cls.trial_fraction)
        _check_float("trial_fraction", fraction)
        stage_steps = max(total_steps // 40, math.ceil(10 / fraction))
        max_stage_steps = max(total_steps // 8, stage_steps)
        max_trial = max(1, round(max_stage_steps * fraction))
        # 16 validation points per trial at τ_max, as the paper's 800 / 50, but never a
        # validation pass more often than every 5 steps; when that leaves a trial fewer than
        # MIN_TRIAL_POINTS points, candidates are judged by the training loss throughout.
        val_every = max(5, max_trial // 16)
        scaled: dict[str, Any] = {
            "total_steps": total_steps,
            "stage_steps": stage_steps,
            "max_stage_steps": max_stage_steps,
            "val_every": val_every,
            "use_val_loss": max_trial // val_every >= MIN_TRIAL_POINTS,
        }
        scaled.update(overrides)
        return cls(min_lr=min_lr, max_lr=max_lr, **scaled)

    # -- derived quantities ----------------------------------------------------------------

    def stage_length(self, stage_index: int) -> int:
        """τ of stage ``stage_index`` (0-based): τ₀·2^i clipped to τ_max."""
        if stage_index < 0:
            raise ConfigError(f"stage_index must be >= 0, got {stage_index!r}")
        # Doubling saturates long before 2**64; cap the exponent to keep ints small.
        return min(self.stage_steps * 2 ** min(stage_index, 62), self.max_stage_steps)

    @property
    def cooldown_steps(self) -> int:
        """Update steps of the final cooldown: ``round(total_steps · cooldown_fraction)``."""
        if self.total_steps is None:
            return 0
        return round(self.total_steps * self.cooldown_fraction)

    def trial_length(self, stage_steps: int) -> int:
        """τ' for a stage of ``stage_steps`` update steps: ``round(τ·trial_fraction)``, ≥ 1."""
        return max(1, min(stage_steps, round(stage_steps * self.trial_fraction)))

    def replace(self, **changes: Any) -> AutoLRSConfig:
        """A copy with some fields changed, validated like a new config."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoLRSConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        if not isinstance(data, dict):
            raise ConfigError(f"config data must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; valid fields are {sorted(known)}")
        return cls(**data)


def resolve_config(
    *,
    config: AutoLRSConfig | None,
    min_lr: float | None,
    max_lr: float | None,
    total_steps: int | None,
) -> AutoLRSConfig:
    """The config a scheduler or callback runs with, from the arguments its user gave.

    With ``config``: that config, with ``min_lr``/``max_lr`` replaced where given
    (``total_steps`` is not used). Without: the paper's constants for these bounds, with the
    stage lengths scaled to ``total_steps`` (:meth:`AutoLRSConfig.for_budget`) when given.
    """
    if config is not None:
        if not isinstance(config, AutoLRSConfig):
            raise ConfigError(f"config must be an AutoLRSConfig, got {type(config).__name__}")
        changes = {k: v for k, v in (("min_lr", min_lr), ("max_lr", max_lr)) if v is not None}
        return config.replace(**changes) if changes else config
    if min_lr is None or max_lr is None:
        raise ConfigError(
            f"min_lr and max_lr are required when no config is given, got min_lr={min_lr!r}, "
            f"max_lr={max_lr!r}"
        )
    if total_steps is not None:
        return AutoLRSConfig.for_budget(total_steps, min_lr, max_lr)
    return AutoLRSConfig(min_lr=min_lr, max_lr=max_lr)


def _check_float(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")


def _check_positive_float(name: str, value: object) -> None:
    _check_float(name, value)
    if value <= 0:  # type: ignore[operator]
        raise ConfigError(f"{name} must be > 0, got {value!r}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be True or False, got {value!r}")
