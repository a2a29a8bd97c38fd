"""Forecast the loss a candidate LR would reach at the end of a stage from its short trial.

A candidate trains only τ' steps; its loss curve is de-noised and fitted with
L(t) = a·exp(b·t) + c, b < 0, and the fit is read off at step τ (SPEC section 3).

Notation:

==========  ==================  ========================================================  =====
symbol      name                meaning                                                   shape
==========  ==================  ========================================================  =====
t           ``steps``           step of each observed loss, counted from the window start  (n,)
L           ``losses``          observed loss at each step                                (n,)
τ           ``horizon``         step at which the loss is predicted                       ()
t₀, Δ                           first observed step and window span t_last − t₀           ()
v                               normalised time (t − t₀)/Δ, in [0, 1]; τ maps to v_τ       (n,)
m, o, s                         pre-scale max|L|, offset median(L/m), spread ptp(L/m)      ()
y                               normalised loss (L/m − o)/s, a scale- and shift-free copy (n,)
σ̂                               robust noise standard deviation of y                      ()
z                               de-noised y: spline values at the kept steps              (n_k,)
β, κ                            κ = exp(β) is the decay rate in window units, so the      ()
                                time constant is Δ/κ steps
A, C                            amplitude at the fit window's start and floor, in y units  ()
a, b, c                         the same curve in the caller's units: b = −κ/Δ            ()
==========  ==================  ========================================================  =====

Everything numeric happens on (v, y), so multiplying the losses by a constant or adding one to
them scales or shifts the forecast by exactly that (up to rounding), and every threshold below
is free of the loss's units. The steps are assumed to count from the candidate's window start
(1..τ' or 50, 100, …, τ'); steps far from 0 still forecast correctly, but ``a`` may then
overflow.
"""

from __future__ import annotations

import logging
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.interpolate import UnivariateSpline
from scipy.optimize import minimize_scalar

from autolrs.errors import ConfigError

__all__ = ["Forecast", "forecast", "REASONS"]

logger = logging.getLogger(__name__)

# Why a forecast is not ok; "" means it is.
REASONS: dict[str, str] = {
    "non_finite": "a loss is NaN or infinite; value is NaN",
    "no_points": "no loss was observed at all; value is NaN",
    "too_few_points": "fewer than min_points losses; value is their mean",
    "fit_failed": "the smoothing or the exponential fit broke down numerically; value is the "
    "de-noised loss at the last observed step",
}

# Decay rate κ in window units, searched as β = ln κ. κ ≥ 0.1 keeps the time constant at most
# ten windows: beyond that a window sees a straight line, (a, c) become huge and cancelling,
# and extrapolating τ = 10·τ' ahead would follow that line. At the bound the further drop
# predicted past the window is at most about 1/κ = 10 times the final slope. κ ≤ 100 (a time
# constant of 1% of the window) still resolves a drop that is over within a couple of steps.
_BETA_MIN = math.log(0.1)
_BETA_MAX = math.log(100.0)
_BETA_GRID_POINTS = 64
_BETA_XATOL = 1e-10

# σ̂ comes from third divided differences, which cancel any quadratic trend (what the k = 2
# spline can follow) and leave mostly noise; 1.4826·median|·| is the normal-consistent MAD.
_DIFF_ORDER = 3
_MAD_TO_SIGMA = 1.4826

# A point in the fit is "in the first half" of the window when v < 0.5.
_FIRST_HALF = 0.5
_S_FACTOR = 1.0
_RAW = False
_THRESH = 0.0


@dataclass(frozen=True)
class Forecast:
    """The predicted loss at the horizon, and how it was obtained.

    Attributes:
        value: Predicted loss at ``horizon``. When ``ok`` it is the exponential fit at the
            horizon after the guards (never below the last de-noised value for a rising curve;
            never below 0 when no observed loss is negative). When not ok it is a fallback:
            the mean of the losses for ``"too_few_points"``, else ``last_smoothed`` (no
            extrapolation), clipped at 0 likewise. Always finite except for the reasons
            ``"non_finite"`` and ``"no_points"``, where it is NaN.
        ok: True when ``value`` comes from a successful exponential fit.
        reason: ``""`` when ok, else one of the codes of :data:`REASONS`.
        a: Amplitude of the fitted L(t) = a·exp(b·t) + c, in loss units, with t in the
            caller's steps. 0 for an exactly constant curve, < 0 for a rising one. NaN when
            not ok.
        b: Decay rate, per step, < 0. NaN when not ok.
        c: Floor the fitted curve tends to, in loss units. NaN when not ok.
        rising: The de-noised curve goes up over the (fitted part of the) window: ``a < 0``
            when ok. A noisy flat curve may come out either way, with a tiny ``a``.
        last_smoothed: De-noised loss at the last observed step (the mean of the losses for
            ``"too_few_points"``). NaN for ``"non_finite"`` and ``"no_points"``.
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
        """The fitted curve a·exp(b·t) + c at steps ``t``, as float64 of ``t``'s shape.

        All NaN when the forecast is not ok. Unlike :attr:`value`, no guard is applied.
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

    Steps, in the order they run:

    1. Normalise losses to y = (L/m − o)/s and steps to v ∈ [0, 1] (see the module notation).
    2. De-noise. With at least ``2·min_points`` points: fit a quadratic smoothing spline with
       smoothing factor n_kept·σ̂², drop the ``drop_fraction`` of kept points farthest from it
       (at least one, and only from the first half of the window, which always keeps
       ``min_points``), ``repeats`` times, and fit the exponential to the final spline's values
       at the kept steps. With fewer points a spline and a noise estimate are not trustworthy:
       nothing is dropped, the exponential is fitted to the raw losses, and a least-squares
       quadratic stands in for the spline where a de-noised curve is needed.
    3. If the de-noised curve peaks inside the first half of the window (a bump after an LR
       change), fit only from the peak on, provided ``min_points`` points remain.
    4. Fit y = A·exp(−κ·w) + C, w the normalised time since the fit's first point: (A, C) by
       linear least squares for each κ, and β = ln κ by a 64-point grid over
       [ln 0.1, ln 100] refined by bounded Brent between the best point's neighbours.
    5. Read the fit at the horizon, map back to loss units and apply the guards listed under
       :attr:`Forecast.value`.

    Bad numeric content never raises; the returned :class:`Forecast` says what happened.

    Args:
        steps: Step t of each loss, strictly increasing, counted from the candidate's window
            start (1..τ' for per-step training losses, 50, 100, …, τ' for validation losses).
        losses: Loss at each step; same length as ``steps``.
        horizon: τ, the step at which to predict. ≥ the last step.
        drop_fraction: Share of the kept points dropped per de-noising round. In [0, 0.5);
            0 drops nothing.
        repeats: De-noising rounds. ≥ 0; 0 drops nothing.
        min_points: Fewest losses an exponential fit is attempted on. ≥ 4.

    Returns:
        The forecast; see :class:`Forecast`.

    Raises:
        ConfigError: ``steps`` and ``losses`` are not 1-D of equal length, ``steps`` are not
            finite and strictly increasing, ``horizon`` is not finite or is below the last
            step, or a keyword argument is out of range.

    Example:
        >>> import numpy as np
        >>> t = np.arange(1, 101)
        >>> f = forecast(t, 2.0 + np.exp(-0.03 * t), horizon=1000)
        >>> f.ok, round(f.value, 4), round(f.b, 4)
        (True, 2.0, -0.03)
    """
    t, loss, tau = _validated(steps, losses, horizon, drop_fraction, repeats, min_points)
    n = t.size
    if n == 0:
        logger.debug("forecast: no points")
        return _not_ok(math.nan, "no_points", rising=False, last_smoothed=math.nan)
    if not np.all(np.isfinite(loss)):
        logger.debug("forecast: non-finite loss among %d points", n)
        return _not_ok(math.nan, "non_finite", rising=False, last_smoothed=math.nan)
    if n < min_points:
        level = _safe_mean(loss)
        rising = n >= 2 and bool(np.polyfit(t - t[0], loss / np.max(np.abs(loss)), 1)[0] > 0)
        logger.debug("forecast: %d points < min_points=%d, mean %.6g", n, min_points, level)
        return _not_ok(level, "too_few_points", rising=rising, last_smoothed=level)

    with np.errstate(all="ignore"):
        try:
            return _forecast_finite(t, loss, tau, drop_fraction, repeats, min_points)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            level = _tail_median(loss)
            logger.debug("forecast: fit raised %r; falling back to %.6g", exc, level)
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
        # Exactly constant: a = 0 fits exactly; b is reported at the slow bound.
        level = float(loss[0])
        logger.debug("forecast: %d points, constant %.6g", n, level)
        b = -math.exp(_BETA_MIN) / span
        return Forecast(level, True, "", 0.0, b, level, False, level)

    # Pre-scaling by max|L| keeps the offset and spread below from overflowing.
    m = float(np.max(np.abs(loss)))
    u = loss / m
    o = float(np.median(u))
    s = float(np.ptp(u))
    y = (u - o) / s
    v = (t - t0) / span
    v_tau = (tau - t0) / span

    kept, z, smooth, last_y = _denoise(v, y, drop_fraction, repeats, min_points)
    last_smoothed = m * (o + s * last_y)
    v_kept = v[kept]

    # A bump up then down after an LR change: the exponential only describes the decay.
    start = int(np.argmax(smooth))
    if not (0 < start and v_kept[start] < _FIRST_HALF and v_kept.size - start >= min_points):
        start = 0
    v_s = v_kept[start]
    kappa, amp, floor = _fit_exponential(v_kept[start:] - v_s, z[start:])

    y_tau = amp * math.exp(-kappa * (v_tau - v_s)) + floor
    value = m * (o + s * y_tau)
    # A·exp(−κ·(v − v_s)) = A·exp(κ·t_s/Δ)·exp(−κ·t/Δ), t_s the fit's first step.
    a = m * s * amp * math.exp(kappa * t[kept][start] / span)
    b = -kappa / span
    c = m * (o + s * floor)
    if not all(math.isfinite(x) for x in (value, a, b, c, last_smoothed)):
        fallback = last_smoothed if math.isfinite(last_smoothed) else _tail_median(loss)
        logger.debug("forecast: fit gave non-finite numbers; falling back to %.6g", fallback)
        rising = bool(smooth[-1] > smooth[start])
        return _not_ok(
            _clip_nonnegative(fallback, loss), "fit_failed", rising=rising, last_smoothed=fallback
        )

    rising = bool(amp < 0)
    fitted = value
    if rising:
        value = max(value, last_smoothed)
    value = _clip_nonnegative(value, loss)
    logger.debug(
        "forecast: %d points, %d kept, fit from step %g, kappa=%.4g (beta=%.4f), A=%.4g, "
        "C=%.4g; L(%g)=%.6g, guarded %.6g, last smoothed %.6g",
        n,
        int(kept.sum()),
        t[kept][start],
        kappa,
        math.log(kappa),
        amp,
        floor,
        tau,
        fitted,
        value,
        last_smoothed,
    )
    return Forecast(value, True, "", a, b, c, rising, last_smoothed)


def _denoise(
    v: np.ndarray, y: np.ndarray, drop_fraction: float, repeats: int, min_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """De-noise (v, y) for the exponential fit.

    Returns:
        ``kept`` (n,) bool mask of the points kept; ``z`` (n_k,) the values the exponential is
        fitted to at the kept steps; ``smooth`` (n_k,) the de-noised curve there (for peak
        detection); and the de-noised value at the last step, v = 1, in y units.
    """
    n = v.size
    kept = np.ones(n, dtype=bool)
    if n < 2 * min_points:
        # Too few points for a spline with a data-driven smoothing factor: fit the raw points
        # (three parameters already smooth them) and use a least-squares quadratic as the
        # de-noised curve.
        quadratic = np.polynomial.Polynomial.fit(v, y, 2)
        return kept, y, quadratic(v), float(quadratic(1.0))

    sigma = _noise_sigma(v, y)
    first_half = v < _FIRST_HALF
    for _ in range(repeats if drop_fraction > 0.0 else 0):
        spline = _spline(v[kept], y[kept], _S_FACTOR * kept.sum() * sigma**2)
        candidates = np.flatnonzero(kept & first_half)
        n_drop = min(max(1, int(drop_fraction * kept.sum())), candidates.size - min_points)
        if n_drop <= 0:
            break
        distance = np.abs(y[candidates] - spline(v[candidates]))
        n_drop = min(n_drop, int(np.sum(distance > _THRESH * sigma)))
        if n_drop <= 0:
            break
        kept[candidates[np.argsort(-distance, kind="stable")[:n_drop]]] = False

    spline = _spline(v[kept], y[kept], _S_FACTOR * kept.sum() * sigma**2)
    z = spline(v[kept])
    return kept, (y[kept] if _RAW else z), z, float(spline(1.0))


def _noise_sigma(v: np.ndarray, y: np.ndarray) -> float:
    """Robust noise standard deviation of y, in y units.

    Each run of ``_DIFF_ORDER + 1`` consecutive points gives its divided difference, which is
    zero for any polynomial of degree < ``_DIFF_ORDER`` and, divided by the norm of its
    weights, has the noise's standard deviation for i.i.d. noise whatever the spacing.
    """
    width = _DIFF_ORDER + 1
    windows = np.lib.stride_tricks.sliding_window_view(v, width)  # (n - 3, 4)
    gaps = windows[:, :, None] - windows[:, None, :]
    gaps[:, np.arange(width), np.arange(width)] = 1.0
    weights = 1.0 / np.prod(gaps, axis=2)
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    values = np.sum(weights * np.lib.stride_tricks.sliding_window_view(y, width), axis=1)
    return _MAD_TO_SIGMA * float(np.median(np.abs(values)))


def _spline(v: np.ndarray, y: np.ndarray, smoothing: float) -> UnivariateSpline:
    """Quadratic smoothing spline; FITPACK's warnings go to the DEBUG log, not the user."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spline = UnivariateSpline(v, y, k=2, s=smoothing)
    for warning in caught:
        logger.debug("forecast: smoothing spline: %s", warning.message)
    return spline


def _fit_exponential(w: np.ndarray, z: np.ndarray) -> tuple[float, float, float]:
    """Least-squares z ≈ A·exp(−κ·w) + C with κ = exp(β), β in [_BETA_MIN, _BETA_MAX].

    Args:
        w: (n_f,) normalised time since the fit's first point, starting at 0.
        z: (n_f,) values to fit.

    Returns:
        ``(κ, A, C)``.
    """
    betas = np.linspace(_BETA_MIN, _BETA_MAX, _BETA_GRID_POINTS)
    rss = _profile_rss(w, z, np.exp(betas))
    best = int(np.argmin(rss))
    beta, best_rss = float(betas[best]), float(rss[best])

    # The grid brackets the minimum; Brent's bounded search pins it between the neighbours.
    low = betas[max(best - 1, 0)]
    high = betas[min(best + 1, betas.size - 1)]
    refined = minimize_scalar(
        lambda x: float(_profile_rss(w, z, np.exp(np.array([x])))[0]),
        bounds=(low, high),
        method="bounded",
        options={"xatol": _BETA_XATOL},
    )
    if np.isfinite(refined.fun) and refined.fun <= best_rss:
        beta = float(refined.x)

    kappa = math.exp(beta)
    amp, floor = _linear_part(w, z, kappa)
    return kappa, amp, floor


def _profile_rss(w: np.ndarray, z: np.ndarray, kappas: np.ndarray) -> np.ndarray:
    """Residual sum of squares of the best (A, C) for each κ; shape (len(kappas),)."""
    basis = np.exp(-np.outer(kappas, w))  # (G, n_f)
    basis_c = basis - basis.mean(axis=1, keepdims=True)
    z_c = z - z.mean()
    norm2 = np.einsum("gi,gi->g", basis_c, basis_c)
    amp = np.where(norm2 > 0.0, (basis_c @ z_c) / np.where(norm2 > 0.0, norm2, 1.0), 0.0)
    # Summing the residuals themselves, not ‖z‖² − (projection)², keeps precision near a
    # perfect fit, where the minimum over β must still be sharp.
    residual = z_c[None, :] - amp[:, None] * basis_c
    return np.einsum("gi,gi->g", residual, residual)


def _linear_part(w: np.ndarray, z: np.ndarray, kappa: float) -> tuple[float, float]:
    """(A, C) of the least-squares fit z ≈ A·exp(−κ·w) + C for one κ."""
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
    if (
        isinstance(min_points, bool)
        or not isinstance(min_points, numbers.Integral)
        or min_points < 4
    ):
        raise ConfigError(f"min_points must be an integer >= 4, got {min_points!r}")
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
    if t.size > 1 and not np.all(np.diff(t) > 0):
        bad = int(np.flatnonzero(np.diff(t) <= 0)[0])
        raise ConfigError(
            f"steps must be strictly increasing, got steps[{bad}]={t[bad]!r} followed by "
            f"steps[{bad + 1}]={t[bad + 1]!r}"
        )
    if t.size > 0 and horizon < t[-1]:
        raise ConfigError(f"horizon must be >= the last step ({t[-1]!r}), got {horizon!r}")
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
    """A forecast that did not come from a fit."""
    nan = math.nan
    return Forecast(float(value), False, reason, nan, nan, nan, bool(rising), float(last_smoothed))


def _clip_nonnegative(value: float, loss: np.ndarray) -> float:
    """``value`` raised to 0 when no observed loss is negative (a loss that cannot go below 0)."""
    return max(value, 0.0) if np.min(loss) >= 0.0 else value


def _safe_mean(loss: np.ndarray) -> float:
    """Mean of finite losses that cannot overflow, however large they are."""
    m = float(np.max(np.abs(loss)))
    return m * float(np.mean(loss / m)) if m > 0.0 else 0.0


def _tail_median(loss: np.ndarray) -> float:
    """A loss value from the last quarter of the window, the middle one in size.

    The fallback level when even the de-noising failed; always one of the observed values, so
    it is finite.
    """
    tail = np.sort(loss[-max(1, loss.size // 4) :])
    return float(tail[(tail.size - 1) // 2])
