"""Bayesian optimization of one stage's learning rate: a GP over log LR and an LCB acquisition.

At the start of a stage the controller asks :meth:`GPSearch.propose` for each of the k candidate
LRs in turn, trains each for τ' steps, and once all are tried asks :meth:`GPSearch.choose` for
the stage LR η*. The search keeps no state: every answer is a deterministic function of the
observations so far (and, for the first candidate, a seed), so a controller restored from its
list of observations makes exactly the proposals it would have made.

Notation (Jin et al., ICLR 2021, section 4; shapes for N observations in the GP and G grid
points):

======  =====  ==========================================================================
symbol  shape  meaning
======  =====  ==========================================================================
η       ()     a learning rate, in [η_min, η_max]
x       ()     ln η, the GP's input; the search space is [ln η_min, ln η_max]
X       (N,)   x of every observation that enters the GP
y       (N,)   forecast loss of each candidate at step τ; a failed one gets the penalty
μ(x)    (G,)   GP posterior mean, in loss units
σ(x)    (G,)   GP posterior standard deviation of the latent loss (noise excluded), loss units
κ       ()     exploration weight of the lower confidence bound μ − κσ
a       ()     kernel amplitude: prior variance of the normalised targets
ℓ       ()     Matérn length scale, in units of x (natural-log LR)
s²      ()     white-noise variance of the normalised targets
======  =====  ==========================================================================

The GP is the one of the paper and of the authors' code: y is standardised to zero mean and
unit variance (scikit-learn's ``normalize_y``), then modelled with the kernel

    k(x, x') = a·M(|x − x'| / ℓ) + s²·[x = x'],   M(r) = (1 + √5·r + 5r²/3)·exp(−√5·r),

M being the Matérn kernel with ν = 5/2 (Rasmussen & Williams, 2006, eq. 4.17). σ leaves the
noise term out, as the authors' code did: it is the uncertainty about the loss curve itself,
which is what more exploration can reduce.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import numbers
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Kernel, Matern, WhiteKernel
from threadpoolctl import ThreadpoolController

from autolrs.errors import ConfigError

__all__ = ["Observation", "Choice", "GPSearch"]

logger = logging.getLogger(__name__)

_FIRST_CANDIDATE_CHOICES = ("random", "center")
_CHOOSE_BY_CHOICES = ("posterior_mean", "forecast")

# Hyperparameters on the normalised targets. Fixed values are used as given when
# ``fit_hyperparameters=False`` and as the optimizer's starting point otherwise.
FIXED_AMPLITUDE = 1.0
"""a when not fitted: the targets are standardised, so a prior variance of one matches them."""
FIXED_NOISE = 1e-2
"""s² when not fitted: a noise standard deviation of 10% of the targets' spread. Forecasts from
a τ' window are noisy, so the posterior mean should smooth them a little, not interpolate."""
JITTER = 1e-10
"""Added to the diagonal of the kernel matrix on top of s², for a stable Cholesky factor."""
AMPLITUDE_BOUNDS = (1e-2, 1e2)
"""Range of a searched by maximum likelihood."""
LENGTH_SCALE_BOUNDS = (0.5, 10.0)
"""ℓ is searched in [0.5·ℓ₀, 10·ℓ₀] around the configured length scale ℓ₀. Shorter scales,
which a fit on two or three points likes, make σ saturate close to the data, so μ rather than
σ places the next candidates and they bunch up: over 12 seeds the closest pair among the first
five proposals was at worst 12 % of the range apart with ℓ ≥ ℓ₀/10 against 19 % with ℓ ≥ ℓ₀/2,
for the same accuracy on test bowls."""
NOISE_BOUNDS = (1e-6, 1.0)
"""Range of s² searched by maximum likelihood; at 1 the noise explains all of the spread."""
N_RESTARTS = 2
"""Extra starts of the likelihood optimizer, drawn from a fixed random state."""
GP_RANDOM_STATE = 0
"""Seed of those restarts. Fixed, and independent of the proposal seed, so that ``propose`` and
``choose`` see the very same GP."""

# An observed LR may lie this far (relative) outside [min_lr, max_lr]: float round trips such
# as exp(log(lr)) must not turn a valid LR into an error.
_BOUND_RTOL = 1e-9

# Penalty of a failed candidate: the worst finite value plus a margin of the larger of the
# spread of the finite values, this fraction of the worst's magnitude, and this floor.
_PENALTY_FRACTION = 0.1
_PENALTY_FLOOR = 1e-8

# Distances in log LR closer than this fraction of the search space's width count as equal.
_TIE_RTOL = 1e-9


@dataclass(frozen=True)
class Observation:
    """One candidate LR tried in the current stage, and how it did.

    Attributes:
        lr: The candidate's learning rate. Finite and > 0.
        value: Its forecast loss at the end of the stage (step τ). None when the candidate
            failed (it diverged or produced no usable forecast). Never NaN or infinite: the
            controller turns those into None before they get here.
    """

    lr: float
    value: float | None

    def __post_init__(self) -> None:
        _check_positive_finite("Observation.lr", self.lr)
        object.__setattr__(self, "lr", float(self.lr))
        if self.value is not None:
            _check_finite("Observation.value", self.value)
            object.__setattr__(self, "value", float(self.value))

    @property
    def failed(self) -> bool:
        """True when the candidate has no forecast."""
        return self.value is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {"lr": self.lr, "value": self.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Observation:
        """Inverse of :meth:`to_dict`."""
        return cls(lr=data["lr"], value=data["value"])


@dataclass(frozen=True)
class Choice:
    """The stage LR η* picked by :meth:`GPSearch.choose`.

    Attributes:
        lr: The chosen learning rate.
        index: Position in the observations of the chosen candidate; None for a fallback.
        predicted: The GP posterior mean at ``lr`` (``by="posterior_mean"``) or the raw
            forecast (``by="forecast"``), in loss units; None for a fallback.
        reason: Empty normally; ``"all_failed"`` when no candidate has a finite value, in which
            case ``lr`` is ``min_lr``.
    """

    lr: float
    index: int | None
    predicted: float | None
    reason: str = ""


class GPSearch:
    """Proposes candidate LRs by GP-LCB and picks the stage LR, as a pure function of the data.

    Args:
        min_lr: η_min, smallest LR the search proposes. Finite and > 0.
        max_lr: η_max, largest LR the search proposes. Finite and > ``min_lr``.
        kappa: κ of the acquisition μ − κσ, minimised over the grid. ≥ 0; the paper's 1000
            makes it close to pure variance reduction, i.e. space filling; 0 is pure
            exploitation of the posterior mean.
        length_scale: ℓ of the Matérn-5/2 kernel, in natural-log LR (1 = a factor e). > 0.
            With ``fit_hyperparameters`` it is the starting point of the fit, which keeps ℓ
            within [0.5·length_scale, 10·length_scale].
        fit_hyperparameters: Fit a, ℓ and s² by maximum likelihood on every call (the authors'
            code); when False they stay at a = 1, ℓ = ``length_scale`` and s² = 0.01.
        first_candidate: What :meth:`propose` returns with no observations: ``"random"``, a
            point drawn uniformly in log LR from the seed; ``"center"``, the geometric mean of
            ``min_lr`` and ``max_lr``.
        grid_size: G, the number of points, evenly spaced in log LR from η_min to η_max, over
            which the acquisition is minimised. ≥ 16.

    Raises:
        ConfigError: An argument is out of its range.

    Example:
        >>> import math
        >>> from autolrs.core.search import GPSearch, Observation
        >>> search = GPSearch(1e-4, 1.0, first_candidate="center")
        >>> observations = []
        >>> for _ in range(4):
        ...     lr = search.propose(observations, seed=0)
        ...     observations.append(Observation(lr, (math.log10(lr) + 2.0) ** 2))
        >>> [round(math.log10(o.lr), 2) for o in observations]
        [-2.0, -4.0, -0.95, 0.0]
        >>> search.choose(observations).index
        0
    """

    def __init__(
        self,
        min_lr: float,
        max_lr: float,
        *,
        kappa: float = 1000.0,
        length_scale: float = 1.0,
        fit_hyperparameters: bool = True,
        first_candidate: str = "random",
        grid_size: int = 1024,
    ) -> None:
        _check_positive_finite("min_lr", min_lr)
        _check_positive_finite("max_lr", max_lr)
        if not min_lr < max_lr:
            raise ConfigError(
                f"min_lr must be smaller than max_lr, got min_lr={min_lr!r} and max_lr={max_lr!r}"
            )
        _check_finite("kappa", kappa)
        if kappa < 0:
            raise ConfigError(f"kappa must be >= 0, got {kappa!r}")
        _check_positive_finite("length_scale", length_scale)
        if not isinstance(fit_hyperparameters, bool):
            raise ConfigError(
                f"fit_hyperparameters must be True or False, got {fit_hyperparameters!r}"
            )
        if first_candidate not in _FIRST_CANDIDATE_CHOICES:
            raise ConfigError(
                f"first_candidate must be one of {_FIRST_CANDIDATE_CHOICES}, "
                f"got {first_candidate!r}"
            )
        if isinstance(grid_size, bool) or not isinstance(grid_size, numbers.Integral):
            raise ConfigError(f"grid_size must be an integer >= 16, got {grid_size!r}")
        if grid_size < 16:
            raise ConfigError(f"grid_size must be >= 16, got {grid_size!r}")

        self.min_lr = float(min_lr)
        self.max_lr = float(max_lr)
        self.kappa = float(kappa)
        self.length_scale = float(length_scale)
        self.fit_hyperparameters = fit_hyperparameters
        self.first_candidate = first_candidate
        self.grid_size = int(grid_size)
        self._x_min = math.log(self.min_lr)
        self._x_max = math.log(self.max_lr)
        self._grid = np.linspace(self._x_min, self._x_max, self.grid_size)  # (G,)
        self._half_spacing = 0.5 * (self._x_max - self._x_min) / (self.grid_size - 1)

    def __repr__(self) -> str:
        return (
            f"GPSearch(min_lr={self.min_lr!r}, max_lr={self.max_lr!r}, kappa={self.kappa!r}, "
            f"length_scale={self.length_scale!r}, "
            f"fit_hyperparameters={self.fit_hyperparameters!r}, "
            f"first_candidate={self.first_candidate!r}, grid_size={self.grid_size!r})"
        )

    # -- public API ------------------------------------------------------------------------

    def propose(
        self, observations: Sequence[Observation], *, seed: int, pending: Sequence[float] = ()
    ) -> float:
        """The next candidate LR: the grid point of lowest μ − κσ not yet tried.

        With no observations the answer is set by ``first_candidate``. Failed observations
        enter the GP at :meth:`penalty` (left out while no finite value exists) and, like every
        tried LR, are never proposed again: grid points within half a grid spacing of a tried
        log LR are excluded, and ties go to the smallest LR. When the GP has no data or cannot
        be fitted, or every grid point is excluded, the answer is the point of [η_min, η_max]
        farthest in log LR from every tried one.

        LRs in ``pending`` will be tried later in the stage. They count as tried: with no
        observations the answer is the point farthest from them, and otherwise each enters
        the GP at the posterior mean the observations give it (the "kriging believer" of
        batch Bayesian optimization), so σ, and with it the proposal, already allows for it.

        Args:
            observations: Every candidate tried so far in this stage, in order.
            seed: Seeds the random first candidate; unused once there are observations or
                pending LRs. ≥ 0.
            pending: LRs to be tried later in this stage, each in [min_lr, max_lr].

        Returns:
            An LR in [min_lr, max_lr] different from every observed one.

        Raises:
            ConfigError: ``seed`` is not a non-negative integer, or an observation's LR lies
                outside [min_lr, max_lr].
        """
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        observations = self._checked(observations)
        for i, lr in enumerate(pending):
            _check_positive_finite(f"pending[{i}]", lr)
            self._check_in_bounds(f"pending[{i}]", lr)
        pending = [float(lr) for lr in pending]
        if pending:
            if not observations:
                return self._space_filling(np.array([self._x(lr) for lr in pending]))
            observations = observations + self._believed(observations, pending)
        elif not observations:
            return self._first(int(seed))

        tried = np.array([self._x(o.lr) for o in observations])  # (N_tried,)
        distance = np.abs(self._grid[:, None] - tried[None, :]).min(axis=1)  # (G,)
        allowed = distance > self._half_spacing
        if not allowed.any():
            logger.debug("every grid point is within half a spacing of a tried LR")
            return self._space_filling(tried)

        gp = self._fit(observations)
        posterior = None if gp is None else _latent_posterior(gp, self._grid)
        if posterior is None:
            return self._space_filling(tried)
        mean, std = posterior

        lcb = np.where(allowed, mean - self.kappa * std, np.inf)
        best = int(np.argmin(lcb))  # first minimum: ties go to the smallest LR
        lr = self._lr(self._grid[best])
        logger.debug(
            "proposal %d: lr=%.4g (mu=%.4g, sigma=%.4g, kappa=%g)",
            len(observations) + 1,
            lr,
            mean[best],
            std[best],
            self.kappa,
        )
        return lr

    def choose(
        self,
        observations: Sequence[Observation],
        *,
        by: str = "posterior_mean",
        larger_lr_tolerance: float = 0.0,
        start_value: float | None = None,
    ) -> Choice:
        """The stage LR η*, picked among the candidates that did not fail.

        Args:
            observations: Every candidate tried in this stage.
            by: ``"posterior_mean"``: the candidate of lowest GP posterior mean at its own LR
                (the paper; it smooths noisy forecasts). ``"forecast"``: the candidate of
                lowest raw forecast (the authors' code). Ties go to the earlier candidate.
                Should the GP fail, ``"posterior_mean"`` falls back to ``"forecast"`` and logs
                a warning.
            larger_lr_tolerance: With ``start_value`` above the best score, the choice is the
                largest LR whose score is within this share of ``start_value − best`` of the
                best score, and whose own forecast is within the same share of
                ``start_value`` − the best forecast of that forecast; a positive best caps
                either distance at the best value itself. In [0, 1); 0 keeps the best.
            start_value: The loss at the start of the stage, in the scores' units; None
                disables the tolerance.

        Returns:
            The choice; ``Choice(min_lr, None, None, "all_failed")`` when no candidate has a
            finite value (no observations included), since a smaller LR is the safest bet
            after divergence.

        Raises:
            ConfigError: ``by`` is not a valid choice, or an observation's LR lies outside
                [min_lr, max_lr].
        """
        if by not in _CHOOSE_BY_CHOICES:
            raise ConfigError(f"by must be one of {_CHOOSE_BY_CHOICES}, got {by!r}")
        _check_finite("larger_lr_tolerance", larger_lr_tolerance)
        if not 0.0 <= larger_lr_tolerance < 1.0:
            raise ConfigError(
                f"larger_lr_tolerance must be in [0, 1), got {larger_lr_tolerance!r}"
            )
        if start_value is not None:
            _check_finite("start_value", start_value)
        margin = _Margin(larger_lr_tolerance, start_value)
        observations = self._checked(observations)
        finite = [i for i, o in enumerate(observations) if o.value is not None]
        if not finite:
            return Choice(lr=self.min_lr, index=None, predicted=None, reason="all_failed")

        if by == "posterior_mean":
            gp = self._fit(observations)
            x = np.array([self._x(observations[i].lr) for i in finite])
            posterior = None if gp is None else _latent_posterior(gp, x)
            if posterior is not None:
                return self._choice(observations, finite, posterior[0], by, margin)
            logger.warning("GP posterior unavailable; choosing the stage LR by raw forecast")
            by = "forecast"

        values = np.array([observations[i].value for i in finite])
        return self._choice(observations, finite, values, by, margin)

    def posterior(
        self, observations: Sequence[Observation], lrs: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior mean μ and standard deviation σ (noise excluded) at the given LRs.

        This is the GP that :meth:`propose` and :meth:`choose` use, failed candidates included
        at :meth:`penalty`. LRs outside [min_lr, max_lr] are allowed; the GP extrapolates.

        Args:
            observations: Every candidate tried so far in this stage.
            lrs: Learning rates to evaluate at, any shape. Finite and > 0.

        Returns:
            ``(mean, std)``, each of the shape of ``lrs``, in loss units. Both are NaN
            everywhere when the GP has no data (no finite value observed) or could not be
            fitted.

        Raises:
            ConfigError: An LR in ``lrs`` is not finite and positive, or an observation's LR
                lies outside [min_lr, max_lr].
        """
        observations = self._checked(observations)
        lrs = np.asarray(lrs, dtype=float)
        if not (np.all(np.isfinite(lrs)) and np.all(lrs > 0)):
            raise ConfigError(f"lrs must all be finite and > 0, got {lrs!r}")

        if lrs.size == 0:
            return np.empty(lrs.shape), np.empty(lrs.shape)

        gp = self._fit(observations)
        posterior = None if gp is None else _latent_posterior(gp, np.log(lrs).ravel())
        if posterior is None:
            nan = np.full(lrs.shape, np.nan)
            return nan, nan.copy()
        return posterior[0].reshape(lrs.shape), posterior[1].reshape(lrs.shape)

    def _believed(
        self, observations: list[Observation], pending: list[float]
    ) -> list[Observation]:
        """Pending LRs as observations of the posterior mean the real observations give them.

        Where the GP has no finite data or cannot be fitted, they stand in at the mean of the
        finite values, or as failed when there are none.
        """
        gp = self._fit(observations)
        x = np.array([self._x(lr) for lr in pending])
        posterior = None if gp is None else _latent_posterior(gp, x)
        if posterior is not None:
            return [
                Observation(lr, float(mu)) for lr, mu in zip(pending, posterior[0], strict=True)
            ]
        values = [o.value for o in observations if o.value is not None]
        fill = float(np.mean(values)) if values else None
        return [Observation(lr, fill) for lr in pending]

    def penalty(self, observations: Sequence[Observation]) -> float | None:
        """The finite value a failed candidate stands for inside the GP.

        It is the worst finite value plus a margin: the larger of the spread of the finite
        values, a tenth of the worst's magnitude, and 1e-8. So a failure looks clearly worse
        than any candidate that trained, yet stays within about one spread of the others and
        leaves the normalised targets well scaled (a huge stand-in such as the authors' 1e6
        would squash every real difference to nothing).

        Args:
            observations: Every candidate tried so far in this stage.

        Returns:
            The penalty, or None while no candidate has a finite value.
        """
        values = [o.value for o in self._checked(observations) if o.value is not None]
        if not values:
            return None
        worst, best = max(values), min(values)
        return worst + max(worst - best, _PENALTY_FRACTION * abs(worst), _PENALTY_FLOOR)

    # -- internals -------------------------------------------------------------------------

    def _checked(self, observations: Sequence[Observation]) -> list[Observation]:
        checked = list(observations)
        for i, o in enumerate(checked):
            if not isinstance(o, Observation):
                raise ConfigError(
                    f"observations[{i}] must be an Observation, got {type(o).__name__}"
                )
            self._check_in_bounds(f"observations[{i}].lr", o.lr)
        return checked

    def _check_in_bounds(self, name: str, lr: float) -> None:
        """Refuse an LR outside [min_lr, max_lr], allowing float round-off at either end."""
        if not self.min_lr * (1.0 - _BOUND_RTOL) <= lr <= self.max_lr * (1.0 + _BOUND_RTOL):
            raise ConfigError(
                f"{name} must be in [min_lr, max_lr] = "
                f"[{self.min_lr!r}, {self.max_lr!r}], got {lr!r}"
            )

    def _choice(
        self,
        observations: list[Observation],
        finite: list[int],
        scores: np.ndarray,
        by: str,
        margin: _Margin,
    ) -> Choice:
        """The candidate ``finite[j]`` of lowest ``scores[j]``, or the largest LR near it.

        Ties go to the first candidate; ``margin`` says how near a larger LR must be.
        """
        best = int(np.argmin(scores))
        bound = margin.bound(float(scores[best]))
        if bound is not None:
            # A larger LR must be near the best by its own forecast too: where the GP explains
            # the candidates' differences as noise its posterior is nearly flat, and every LR
            # would pass on the posterior alone.
            values = np.array([observations[i].value for i in finite], dtype=float)
            raw_bound = margin.bound(float(values.min()))
            within = [
                j
                for j in range(len(finite))
                if scores[j] <= bound and (raw_bound is None or values[j] <= raw_bound)
            ]
            if within:
                best = max(within, key=lambda j: (observations[finite[j]].lr, -j))
        index = finite[best]
        logger.debug(
            "chose candidate %d of %d by %s: lr=%.4g, predicted %.4g",
            index + 1,
            len(observations),
            by,
            observations[index].lr,
            scores[best],
        )
        return Choice(lr=observations[index].lr, index=index, predicted=float(scores[best]))

    def _x(self, lr: float) -> float:
        """Natural log of ``lr`` clipped into the search space (``_checked`` allows a hair out)."""
        return min(max(math.log(lr), self._x_min), self._x_max)

    def _lr(self, x: float) -> float:
        """The LR at log LR ``x``: the bounds exactly at the ends, never outside them by an ulp."""
        if x <= self._x_min:
            return self.min_lr
        if x >= self._x_max:
            return self.max_lr
        return min(max(math.exp(x), self.min_lr), self.max_lr)

    def _first(self, seed: int) -> float:
        if self.first_candidate == "center":
            return self._lr(0.5 * (self._x_min + self._x_max))
        x = np.random.default_rng(seed).uniform(self._x_min, self._x_max)
        return self._lr(float(x))

    def _space_filling(self, tried: np.ndarray) -> float:
        """The point of the search space farthest in log LR from every tried one.

        Candidates are both ends and the midpoint of every gap between tried points; ties go
        to the smallest LR.
        """
        inner = np.unique(tried)  # sorted
        candidates = np.concatenate(([self._x_min], 0.5 * (inner[:-1] + inner[1:]), [self._x_max]))
        candidates.sort()
        distance = np.abs(candidates[:, None] - tried[None, :]).min(axis=1)
        # Equal gaps differ by round-off; treat distances within a hair as ties.
        tie = _TIE_RTOL * (self._x_max - self._x_min)
        best = int(np.flatnonzero(distance >= distance.max() - tie)[0])
        lr = self._lr(float(candidates[best]))
        logger.debug("space-filling proposal: lr=%.4g", lr)
        return lr

    def _gp_data(self, observations: list[Observation]) -> tuple[np.ndarray, np.ndarray]:
        """X and y of the GP: finite observations as they are, failed ones at the penalty."""
        penalty = self.penalty(observations)
        if penalty is None:
            return np.empty(0), np.empty(0)
        x = np.array([self._x(o.lr) for o in observations])
        y = np.array([penalty if o.value is None else o.value for o in observations])
        return x, y

    def _kernel(self, fit: bool) -> Kernel:
        if fit:
            amplitude_bounds: Any = AMPLITUDE_BOUNDS
            length_bounds: Any = (
                self.length_scale * LENGTH_SCALE_BOUNDS[0],
                self.length_scale * LENGTH_SCALE_BOUNDS[1],
            )
            noise_bounds: Any = NOISE_BOUNDS
        else:
            amplitude_bounds = length_bounds = noise_bounds = "fixed"
        return ConstantKernel(FIXED_AMPLITUDE, amplitude_bounds) * Matern(
            length_scale=self.length_scale, length_scale_bounds=length_bounds, nu=2.5
        ) + WhiteKernel(FIXED_NOISE, noise_bounds)

    def _fit(self, observations: list[Observation]) -> GaussianProcessRegressor | None:
        """The GP on these observations, or None when it has no data or every fit failed.

        A fit with free hyperparameters that fails is retried with fixed ones. The returned
        regressor predicts the latent loss: its white-noise term is dropped after fitting.
        """
        x, y = self._gp_data(observations)
        if x.size == 0:
            return None

        for fit in (True, False) if self.fit_hyperparameters else (False,):
            gp = GaussianProcessRegressor(
                kernel=self._kernel(fit),
                alpha=JITTER,
                optimizer="fmin_l_bfgs_b" if fit else None,
                n_restarts_optimizer=N_RESTARTS if fit else 0,
                normalize_y=True,
                random_state=GP_RANDOM_STATE,
            )
            try:
                # With a handful of points the likelihood is flat and scikit-learn warns that
                # a hyperparameter sits at its bound; that is expected, not news for the user.
                with _single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    gp.fit(x[:, None], y)
            except (ValueError, ArithmeticError) as error:  # LinAlgError is a ValueError
                logger.warning(
                    "GP fit failed on %d points (fit_hyperparameters=%s): %s",
                    x.size,
                    fit,
                    error,
                )
                continue
            for warning in caught:
                logger.debug("GP fit on %d points: %s", x.size, warning.message)
            logger.debug("GP fitted on %d points: %s", x.size, gp.kernel_)
            # Keep amplitude × Matérn only: the cross-covariances are unchanged (white noise
            # is zero between distinct inputs) and the prior variance loses the noise term, so
            # predict() returns the latent σ while the Cholesky factor still includes s².
            gp.kernel_ = gp.kernel_.k1
            return gp

        logger.warning("no GP could be fitted on %d points; falling back without it", x.size)
        return None


@dataclass(frozen=True)
class _Margin:
    """How far above the best score a larger LR may still be chosen."""

    tolerance: float
    start_value: float | None

    def bound(self, best: float) -> float | None:
        """Highest score still acceptable, or None when only the best is.

        The band is ``tolerance`` times the best's improvement on the start, but never more
        than ``tolerance`` times the best score itself when that is positive. A larger LR is
        worth a higher loss as far as the excess is noise that a later decay of the LR takes
        away, and that is a share of the loss, not of the distance fallen: a stage that
        starts far above every forecast (from initialisation, or after a stage that went
        wrong) would otherwise let through LRs that are simply worse.
        """
        if self.tolerance <= 0 or self.start_value is None or not self.start_value > best:
            return None
        improvement = self.start_value - best
        if best > 0:
            improvement = min(improvement, best)
        return best + self.tolerance * improvement


def _latent_posterior(
    gp: GaussianProcessRegressor, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """μ and σ at log LRs ``x`` of shape (M,), or None (with a warning) if not finite."""
    # At observed points round-off can make the variance slightly negative; sklearn clips it
    # to zero and warns.
    with _single_threaded_blas(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mean, std = gp.predict(x[:, None], return_std=True)
    for warning in caught:
        logger.debug("GP predict: %s", warning.message)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
        logger.warning("GP posterior is not finite; falling back")
        return None
    return mean, std


@functools.cache
def _blas_controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: our matrices are at most (G, N), far too small to gain from more.

    On a machine busy with training, OpenBLAS threads waking for such tiny products made a
    search several times slower in wall time (measured 23 s against 3 s for 30 fits on two
    shared cores). The limit is process-wide while it lasts: the tens of milliseconds of a fit.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _check_finite(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")


def _check_positive_finite(name: str, value: object) -> None:
    _check_finite(name, value)
    if value <= 0:  # type: ignore[operator]
        raise ConfigError(f"{name} must be > 0, got {value!r}")
