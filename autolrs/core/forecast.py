"""Forecast the loss a candidate LR would reach at the end of a stage from its short trial.

A candidate trains only τ' steps; its loss curve is de-noised, fitted with
L(t) = a·exp(b·t) + c, b < 0, and the fit is read off at step τ (SPEC section 3).

Notation:

=======  ==========  ==========================================================  =====
symbol   name        meaning                                                     shape
=======  ==========  ==========================================================  =====
t        ``steps``   step of each observed loss, counted from the window start    (n,)
L        ``losses``  observed loss at each step                                  (n,)
τ        ``horizon`` step at which the loss is predicted                         ()
t₀, Δ                first observed step, and the window span t_last − t₀         ()
v                    normalised time (t − t₀)/Δ, from 0 to 1; τ maps to v_τ       (n,)
m, o, s              pre-scale max|L|, offset median(L/m), spread ptp(L/m)        ()
y                    normalised loss (L/m − o)/s: free of the loss's units        (n,)
σ̂                    robust standard deviation of the noise in y                 ()
z                    de-noised y at the kept steps, what the exponential fits     (n_k,)
κ = e^β              decay rate per window: the time constant is Δ/κ steps        ()
A, C                 amplitude at the fit's first step, and floor, in y units     ()
a, b, c              the fitted curve in the caller's units; b = −κ/Δ             ()
=======  ==========  ==========================================================  =====

All the numerics run on (v, y), so multiplying the losses by a constant or adding one to them
scales or shifts the forecast by exactly that (up to rounding), and every threshold below is
unit-free. Steps must count from the candidate's window start (1..τ' or 50, 100, …, τ'): a
is the curve's amplitude at t = 0, and with steps far from 0 it can overflow, which is then
reported as ``"fit_failed"``.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import LSQUnivariateSpline, UnivariateSpline
from scipy.optimize import minimize_scalar

from autolrs.errors import ConfigError

__all__ = ["Forecast", "forecast", "REASONS"]

logger = logging.getLogger(__name__)

REASONS: dict[str, str] = {
    "non_finite": "a loss is NaN or infinite; value is NaN",
    "no_points": "no loss was given at all; value is NaN",
    "too_few_points": "fewer than min_points losses; value is their mean",
    "fit_failed": "the de-noising or the fit broke down numerically; value is the de-noised "
    "loss at the last observed step",
    "below_zero": "no observed loss is negative, but the fitted curve is below 0 at the horizon: "
    "an extrapolation the data cannot support; value is the de-noised loss at the last "
    "observed step",
}
"""Why a forecast is not ok, by the code in :attr:`Forecast.reason`."""

# κ ≥ 0.1 caps the time constant at ten windows, the paper's horizon τ = 10·τ': beyond that a
# window sees a straight line, (A, C) become huge and cancelling, and the forecast would follow
# that line. The drop an exponential still has to go after the window is 1/κ times its final
# slope per window, so the cap also bounds the extrapolation to 10 such slopes. κ ≤ 100 (a
# time constant of 1% of the window) still resolves a drop over within a couple of steps of a
# 100-step window.
_BETA_MIN = math.log(0.1)
_BETA_MAX = math.log(100.0)
_BETA_GRID_POINTS = 64
_BETA_XATOL = 1e-10

# σ̂ is the normal-consistent MAD of third divided differences: they cancel any quadratic trend
# (what a k = 2 spline follows locally) and leave mostly noise.
_DIFF_ORDER = 3
_MAD_TO_SIGMA = 1.4826
_MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2.0)

# Outliers and peaks must stand out by more than 3σ̂; the floor keeps rounding error in
# noise-free data (σ̂ = 0) from counting.
_OUTLIER_SIGMAS = 3.0
_THRESHOLD_FLOOR = 1e-9
_FIRST_HALF = 0.5  # v below this is the first half of the window
_SIGNIFICANCE = 9.21  # 99% quantile of χ² with 2 degrees of freedom

# A fit below 0 by more than this share of max|L| is no rounding error of a curve that tends
# to 0: its extrapolation is not trusted.
_BELOW_ZERO = 1e-6

# The spline that spots outliers has a piece per ten points: too stiff to bend onto a spike.
_POINTS_PER_PIECE = 10

# Smoothing factor s = ½·n_k·σ̂². FITPACK makes the residual sum of squares equal s, and n·σ̂²
# (the expected sum for the true curve) over-smooths: on seeded noisy exponentials it biased
# the exponential fitted to the spline's values and doubled the forecast error at τ = 10·τ'.
_SMOOTHING = 0.5


@dataclass(frozen=True)
class Forecast:
    """The predicted loss at the horizon, and how it was obtained.

    Attributes:
        value: Predicted loss at the horizon. When ``ok``: the fitted curve there, raised to
            ``last_smoothed`` if the curve is rising and to 0 if no observed loss is negative
            (a curve that tends to 0 may undershoot it by rounding; one clearly below 0 is
            not ok, ``"below_zero"``). Otherwise a fallback without extrapolation: the mean
            of the losses for ``"too_few_points"``, else ``last_smoothed`` (raised to 0
            likewise). Finite except for the reasons ``"non_finite"`` and ``"no_points"``,
            where it is NaN.
        ok: True when ``value`` comes from a successful exponential fit.
        reason: ``""`` when ok, else one of the codes in :data:`REASONS`.
        a: Amplitude of the fitted L(t) = a·exp(b·t) + c in loss units, t in the caller's
            steps; < 0 for a rising curve; exactly 0 for a flat one (constant, or a trend
            that the noise could explain), which is then forecast at its mean. NaN when not
            ok.
        b: Decay rate per step, < 0; −0.1/(t_last − t_first) when ``a`` is 0. NaN when not
            ok.
        c: Level the fitted curve tends to, in loss units. NaN when not ok.
        rising: The de-noised curve goes up over the fitted part of the window (``a < 0``
            when ok; for ``"too_few_points"``, a positive least-squares slope).
        last_smoothed: De-noised loss at the last observed step; the mean of the losses for
            ``"too_few_points"``; NaN for ``"non_finite"`` and ``"no_points"``.
    """

    value: float
    ok: bool
    reason: str
    a: float
    b: float
    c: float
    rising: bool
    last_smoothed: float

    def curve(self, t: ArrayLike) -> np.ndarray:
        """The fitted a·exp(b·t) + c at steps ``t``: float64 of ``t``'s shape, NaN if not ok.

        Unlike :attr:`value`, no guard is applied.
        """
        t_arr = np.asarray(t, dtype=np.float64)
        if not self.ok:
            return np.full(t_arr.shape, np.nan)
        with np.errstate(over="ignore", invalid="ignore"):
            return self.a * np.exp(self.b * t_arr) + self.c


def forecast(
    steps: ArrayLike,
    losses: ArrayLike,
    horizon: float,
    *,
    drop_fraction: float = 0.03,
    repeats: int = 10,
    min_points: int = 5,
) -> Forecast:
    """Predict the loss at step ``horizon`` from losses observed at ``steps``.

    1. Normalise losses to y and steps to v (see the module's notation).
    2. De-noise. With at least ``2·min_points`` points, ``repeats`` rounds each fit a stiff
       quadratic spline (a piece per ten points) and drop the ``drop_fraction`` of the kept
       points farthest from it (at least one), but only points of the first half of the
       window, only those more than 3σ̂ away, and never below ``min_points`` in the first
       half. The exponential is then fitted to the values, at the kept steps, of a quadratic
       smoothing spline with s = ½·n_k·σ̂². With fewer points neither σ̂ nor a spline is
       trustworthy: nothing is dropped, the exponential is fitted to the raw losses, and a
       least-squares quadratic serves as the de-noised curve.
    3. If the de-noised curve peaks in the first half of the window, more than 3σ̂ above its
       start (a bump after an LR change), fit only from the peak on, if ``min_points`` remain.
    4. Fit z ≈ A·exp(−κ·(v − v_first)) + C: (A, C) by linear least squares for each κ, and
       β = ln κ in [ln 0.1, ln 100] by a 64-point grid refined by bounded Brent between the
       best point's neighbours (deterministic). If, on the raw kept points, the fit beats the
       best constant by no more than 9.21·σ̂² (what two extra parameters gain on pure noise
       in 99% of cases), the curve is taken as flat: A = 0 and C that constant.
    5. Map the fit back to loss units and apply the guards listed under
       :attr:`Forecast.value`.

    Bad numeric content never raises; the returned :class:`Forecast` says what happened.
    Each call logs one DEBUG line.

    Args:
        steps: Step t of each loss, strictly increasing, counted from the candidate's window
            start (1..τ' for per-step training losses, 50, 100, …, τ' for validation losses).
        losses: Loss at each step; as many as ``steps``.
        horizon: τ, the step at which to predict. ≥ the last step.
        drop_fraction: Share of the kept points dropped per de-noising round. In [0, 0.5);
            0 drops nothing.
        repeats: De-noising rounds. ≥ 0; 0 drops nothing.
        min_points: Fewest losses an exponential is fitted to. ≥ 4.

    Returns:
        The forecast; see :class:`Forecast`.

    Raises:
        ConfigError: ``steps`` or ``losses`` is not a 1-D sequence of numbers, their lengths
            differ, ``steps`` is not finite and strictly increasing, ``horizon`` is not finite
            or is below the last step, or a keyword argument is out of range.

    Example:
        >>> import numpy as np
        >>> t = np.arange(1, 101)
        >>> f = forecast(t, 2.0 + np.exp(-0.03 * t), horizon=1000)
        >>> f.ok, round(f.value, 6), round(f.b, 6)
        (True, 2.0, -0.03)
    """
    t, loss, tau = _validated(steps, losses, horizon, drop_fraction, repeats, min_points)
    n = t.size
    if n == 0:
        logger.debug("forecast: no points")
        return _not_ok(math.nan, "no_points", rising=False, last_smoothed=math.nan)
    if not np.all(np.isfinite(loss)):
        logger.debug("forecast: %d of %d losses not finite", np.sum(~np.isfinite(loss)), n)
        return _not_ok(math.nan, "non_finite", rising=False, last_smoothed=math.nan)
    if n < min_points:
        level = _safe_mean(loss)
        m = float(np.max(np.abs(loss)))
        rising = n >= 2 and m > 0.0 and bool(np.polyfit(t - t[0], loss / m, 1)[0] > 0.0)
        logger.debug("forecast: %d points < min_points=%d; mean %.6g", n, min_points, level)
        return _not_ok(level, "too_few_points", rising=rising, last_smoothed=level)

    with np.errstate(all="ignore"):
        try:
            return _forecast_finite(t, loss, tau, drop_fraction, repeats, min_points)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            level = _tail_median(loss)
            logger.debug("forecast: %d points, fit raised %r; falling back to %.6g", n, exc, level)
            return _not_ok(
                _clip_nonnegative(level, loss), "fit_failed", rising=False, last_smoothed=level
            )


def _forecast_finite(
    t: np.ndarray,
    loss: np.ndarray,
    tau: float,
    drop_fraction: float,
    repeats: int,
    min_points: int,
) -> Forecast:
    """:func:`forecast` for at least ``min_points`` finite losses."""
    n = t.size
    t0, span = float(t[0]), float(t[-1] - t[0])
    if np.ptp(loss) == 0.0:
        # a = 0 fits a constant exactly, whatever b; report b at the slow bound.
        level = float(loss[0])
        logger.debug("forecast: %d points, constant %.6g", n, level)
        return Forecast(level, True, "", 0.0, -math.exp(_BETA_MIN) / span, level, False, level)

    # Dividing by max|L| first keeps the offset and the spread from overflowing.
    m = float(np.max(np.abs(loss)))
    o = float(np.median(loss / m))
    s = float(np.ptp(loss / m))
    y = (loss / m - o) / s
    v = (t - t0) / span

    den = _denoise(v, y, drop_fraction, repeats, min_points)
    last_smoothed = m * (o + s * den.last)
    t_kept, v_kept = t[den.kept], v[den.kept]

    first = _fit_start(den, v_kept, min_points)
    w = v_kept[first:] - v_kept[first]
    kappa, amp, floor = _fit_exponential(w, den.z[first:])

    # A decay the data cannot tell from noise is not extrapolated: flat stays flat.
    y_fit = y[den.kept][first:]
    significant = _beats_constant(w, y_fit, kappa, amp, floor, den.sigma)
    if not significant:
        kappa, amp, floor = math.exp(_BETA_MIN), 0.0, float(y_fit.mean())

    value = m * (o + s * (amp * math.exp(-kappa * ((tau - t0) / span - v_kept[first])) + floor))
    # A·exp(−κ·(v − v_first)) = A·exp(κ·t_first/Δ)·exp(−κ·t/Δ); inf if steps are far from 0.
    a = m * s * amp * float(np.exp(kappa * t_kept[first] / span))
    b = -kappa / span
    c = m * (o + s * floor)
    if not all(math.isfinite(x) for x in (value, a, c, last_smoothed)):
        fallback = last_smoothed if math.isfinite(last_smoothed) else _tail_median(loss)
        logger.debug("forecast: %d points, fit not finite; falling back to %.6g", n, fallback)
        return _not_ok(
            _clip_nonnegative(fallback, loss),
            "fit_failed",
            rising=bool(den.smooth[-1] > den.smooth[first]),
            last_smoothed=fallback,
        )

    rising = bool(amp < 0.0)
    if not rising and value < -_BELOW_ZERO * m and float(np.min(loss)) >= 0.0:
        # Typically a trial that spiked and is recovering fast: the steep fall it ends with,
        # extrapolated, would rank it first on a value it cannot reach.
        logger.debug(
            "forecast: %d points, fit below zero at the horizon (%.6g); falling back to %.6g",
            n,
            value,
            last_smoothed,
        )
        return _not_ok(
            _clip_nonnegative(last_smoothed, loss),
            "below_zero",
            rising=False,
            last_smoothed=last_smoothed,
        )
    guarded = _clip_nonnegative(max(value, last_smoothed) if rising else value, loss)
    logger.debug(
        "forecast: %d points, %d kept, fit from step %g: kappa=%.4g%s A=%.4g C=%.4g; "
        "L(%g)=%.6g, guarded %.6g, last smoothed %.6g",
        n,
        v_kept.size,
        t_kept[first],
        kappa,
        "" if significant else " (flat: no significant decay)",
        amp,
        floor,
        tau,
        value,
        guarded,
        last_smoothed,
    )
    return Forecast(guarded, True, "", a, b, c, rising, last_smoothed)


@dataclass(frozen=True)
class _Denoised:
    """What :func:`_denoise` makes of (v, y), all in y units.

    Attributes:
        kept: (n,) bool, the points not dropped as outliers.
        z: (n_k,) values the exponential is fitted to, at the kept steps.
        smooth: (n_k,) the de-noised curve at the kept steps, searched for a peak.
        last: The de-noised curve at the last step, v = 1.
        sigma: σ̂, the noise's standard deviation.
        threshold: How far a point or a peak must stand out to count: max(3σ̂, 1e-9).
    """

    kept: np.ndarray
    z: np.ndarray
    smooth: np.ndarray
    last: float
    sigma: float
    threshold: float


def _denoise(
    v: np.ndarray, y: np.ndarray, drop_fraction: float, repeats: int, min_points: int
) -> _Denoised:
    """Drop outliers from the first half of the window and smooth the rest (step 2)."""
    kept = np.ones(v.size, dtype=bool)
    sigma = _noise_sigma(v, y)
    threshold = max(_OUTLIER_SIGMAS * sigma, _THRESHOLD_FLOOR)
    if v.size < 2 * min_points:
        quadratic = np.polynomial.Polynomial.fit(v, y, 2)
        return _Denoised(kept, y, quadratic(v), float(quadratic(1.0)), sigma, threshold)

    first_half = v < _FIRST_HALF
    for _ in range(repeats if drop_fraction > 0.0 else 0):
        candidates = np.flatnonzero(kept & first_half)
        distance = np.abs(y[candidates] - _stiff_spline(v[kept], y[kept])(v[candidates]))
        n_drop = min(
            max(1, int(drop_fraction * kept.sum())),
            candidates.size - min_points,
            int(np.sum(distance > threshold)),
        )
        if n_drop <= 0:
            break
        kept[candidates[np.argsort(-distance, kind="stable")[:n_drop]]] = False

    spline = _smoothing_spline(v[kept], y[kept], _SMOOTHING * kept.sum() * sigma**2)
    z = spline(v[kept])
    return _Denoised(kept, z, z, float(spline(1.0)), sigma, threshold)


def _fit_start(den: _Denoised, v_kept: np.ndarray, min_points: int) -> int:
    """Index among the kept points from which to fit (step 3).

    A bump up then down after an LR change is not an exponential decay: when the de-noised
    curve peaks in the first half more than the threshold above its start, only the decay
    from the peak on is fitted, provided ``min_points`` points remain.
    """
    peak = int(np.argmax(den.smooth))
    bump = den.smooth[peak] - den.smooth[0] > den.threshold
    if bump and v_kept[peak] < _FIRST_HALF and v_kept.size - peak >= min_points:
        return peak
    return 0


def _beats_constant(
    w: np.ndarray, y: np.ndarray, kappa: float, amp: float, floor: float, sigma: float
) -> bool:
    """Whether the fit explains more of the raw kept points y than noise could.

    Against the best constant, two extra free parameters reduce the residual sum of squares
    of pure Gaussian noise by σ²·χ²₂; the fit must beat the 99% quantile of that.
    """
    constant_rss = float(np.sum((y - y.mean()) ** 2))
    fit_rss = float(np.sum((y - amp * np.exp(-kappa * w) - floor) ** 2))
    return constant_rss - fit_rss > _SIGNIFICANCE * sigma**2


def _noise_sigma(v: np.ndarray, y: np.ndarray) -> float:
    """Robust standard deviation of the noise in y; needs at least 4 points.

    Each run of four consecutive points gives a third divided difference, which is zero for
    any quadratic and, divided by the norm of its weights, has the noise's standard deviation
    for i.i.d. noise whatever the spacing of the steps.
    """
    width = _DIFF_ORDER + 1
    windows = np.lib.stride_tricks.sliding_window_view(v, width)  # (n − 3, 4)
    gaps = windows[:, :, None] - windows[:, None, :]  # (n − 3, 4, 4)
    gaps[:, np.arange(width), np.arange(width)] = 1.0
    weights = 1.0 / np.prod(gaps, axis=2)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    values = np.abs(np.sum(weights * np.lib.stride_tricks.sliding_window_view(y, width), axis=1))
    sigma = _MAD_TO_SIGMA * float(np.median(values))
    if sigma == 0.0:
        # Coarsely quantised losses (say, logged in bfloat16) can make most differences exactly
        # zero; the normal-consistent mean absolute value still sees the others.
        sigma = _MEAN_ABS_TO_SIGMA * float(np.mean(values))
    return sigma


def _stiff_spline(v: np.ndarray, y: np.ndarray) -> LSQUnivariateSpline:
    """Least-squares quadratic spline with a piece per ten points, to spot outliers.

    A smoothing spline whose s is set by σ̂ would put knots around a spike and bend onto it,
    so that the spike's neighbours, not the spike, end up farthest from it.
    """
    pieces = max(2, v.size // _POINTS_PER_PIECE)
    knots = np.quantile(v, np.linspace(0.0, 1.0, pieces + 1)[1:-1])
    return LSQUnivariateSpline(v, y, knots, k=2)


def _smoothing_spline(v: np.ndarray, y: np.ndarray, smoothing: float) -> UnivariateSpline:
    """Quadratic smoothing spline; FITPACK's warnings go to the DEBUG log, not the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spline = UnivariateSpline(v, y, k=2, s=smoothing)
    for warning in caught:
        logger.debug("forecast: smoothing spline: %s", warning.message)
    return spline


def _fit_exponential(w: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """Least-squares z ≈ A·exp(−κ·w) + C with κ = e^β and β in [_BETA_MIN, _BETA_MAX].

    Args:
        w: (n_f,) normalised time since the fit's first point.
        z: (n_f,) values to fit.

    Returns:
        ``(κ, A, C)``.
    """
    betas = np.linspace(_BETA_MIN, _BETA_MAX, _BETA_GRID_POINTS)
    rss = _profile_rss(w, z, np.exp(betas))
    best = int(np.argmin(rss))

    # The residual can have several local minima in β; the grid picks the basin and bounded
    # Brent pins its minimum down between the best grid point's neighbours.
    refined = minimize_scalar(
        lambda beta: float(_profile_rss(w, z, np.exp(np.array([beta])))[0]),
        bounds=(betas[max(best - 1, 0)], betas[min(best + 1, betas.size - 1)]),
        method="bounded",
        options={"xatol": _BETA_XATOL},
    )
    beta = float(refined.x) if refined.fun <= rss[best] else float(betas[best])

    kappa = math.exp(beta)
    amp, floor = _linear_part(w, z, kappa)
    return kappa, amp, floor


def _profile_rss(w: np.ndarray, z: np.ndarray, kappas: np.ndarray) -> np.ndarray:
    """Residual sum of squares of the best (A, C) for each κ: shape (len(kappas),)."""
    basis = np.exp(-np.outer(kappas, w))  # (G, n_f)
    basis_c = basis - basis.mean(axis=1, keepdims=True)
    z_c = z - z.mean()
    norm2 = np.einsum("gi,gi->g", basis_c, basis_c)
    safe_norm2 = np.where(norm2 > 0.0, norm2, 1.0)
    amp = np.where(norm2 > 0.0, (basis_c @ z_c) / safe_norm2, 0.0)
    # Summing squared residuals, rather than ‖z_c‖² minus the explained part, keeps the
    # minimum sharp when the fit is nearly perfect.
    residual = z_c[None, :] - amp[:, None] * basis_c
    return np.einsum("gi,gi->g", residual, residual)


def _linear_part(w: np.ndarray, z: np.ndarray, kappa: float) -> tuple[float, float]:
    """(A, C) of the least-squares z ≈ A·exp(−κ·w) + C for one κ."""
    basis = np.exp(-kappa * w)
    basis_c = basis - basis.mean()
    norm2 = float(basis_c @ basis_c)
    amp = float(basis_c @ (z - z.mean())) / norm2 if norm2 > 0.0 else 0.0
    return amp, float(z.mean() - amp * basis.mean())


def _validated(
    steps: ArrayLike,
    losses: ArrayLike,
    horizon: float,
    drop_fraction: float,
    repeats: int,
    min_points: int,
) -> tuple[np.ndarray, np.ndarray, float]:
    """Check every argument of :func:`forecast`; return steps, losses and horizon as floats."""
    if isinstance(drop_fraction, bool) or not isinstance(drop_fraction, numbers.Real):
        raise ConfigError(
            f"drop_fraction must be a real number in [0, 0.5), got {drop_fraction!r}"
        )
    if not 0.0 <= drop_fraction < 0.5:
        raise ConfigError(f"drop_fraction must be in [0, 0.5), got {drop_fraction!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, numbers.Integral) or repeats < 0:
        raise ConfigError(f"repeats must be an integer >= 0, got {repeats!r}")
    if isinstance(min_points, bool) or not isinstance(min_points, numbers.Integral):
        raise ConfigError(f"min_points must be an integer >= 4, got {min_points!r}")
    if min_points < 4:
        raise ConfigError(f"min_points must be >= 4, got {min_points!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, numbers.Real):
        raise ConfigError(f"horizon must be a real number, got {horizon!r}")
    if not math.isfinite(horizon):
        raise ConfigError(f"horizon must be finite, got {horizon!r}")

    t = _as_vector("steps", steps)
    loss = _as_vector("losses", losses)
    if t.size != loss.size:
        raise ConfigError(
            f"steps and losses must have the same length, got {t.size} steps and "
            f"{loss.size} losses"
        )
    if not np.all(np.isfinite(t)):
        raise ConfigError(f"steps must be finite, got {steps!r}")
    if np.any(np.diff(t) <= 0):
        i = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ConfigError(
            f"steps must be strictly increasing, got steps[{i}]={float(t[i])!r} followed by "
            f"steps[{i + 1}]={float(t[i + 1])!r}"
        )
    if t.size > 0 and horizon < t[-1]:
        raise ConfigError(f"horizon must be >= the last step {float(t[-1])!r}, got {horizon!r}")
    return t, loss, float(horizon)


def _as_vector(name: str, values: ArrayLike) -> np.ndarray:
    """``values`` as a 1-D float64 array, or a ConfigError naming ``name``."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name} must be a 1-D sequence of real numbers, got {values!r}"
        ) from exc
    if array.ndim != 1:
        raise ConfigError(f"{name} must be 1-D, got an array of shape {array.shape}")
    return array


def _not_ok(value: float, reason: str, *, rising: bool, last_smoothed: float) -> Forecast:
    """A forecast that does not come from a fit."""
    nan = math.nan
    return Forecast(float(value), False, reason, nan, nan, nan, bool(rising), float(last_smoothed))


def _clip_nonnegative(value: float, loss: np.ndarray) -> float:
    """``value`` raised to 0 when no observed loss is negative."""
    return max(value, 0.0) if float(np.min(loss)) >= 0.0 else value


def _safe_mean(loss: np.ndarray) -> float:
    """Mean of finite losses, without overflow however large they are."""
    m = float(np.max(np.abs(loss)))
    return m * float(np.mean(loss / m)) if m > 0.0 else 0.0


def _tail_median(loss: np.ndarray) -> float:
    """The median (the lower one for an even count) of the last quarter of the losses.

    The fallback level when even the de-noising failed: always one of the observed values,
    so it is finite.
    """
    tail = np.sort(loss[-max(1, loss.size // 4) :])
    return float(tail[(tail.size - 1) // 2])
