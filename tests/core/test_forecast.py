"""Tests of autolrs.core.forecast: known answers, robustness, guards and every error path.

Curves are L(t) = a·exp(b·t) + c over a 100-step window (t = 1..100) forecast at τ = 1000, the
paper's τ = 10·τ', unless a test says otherwise. Every random draw is seeded.
"""

from __future__ import annotations

import ast
import doctest
import logging
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import autolrs.core.forecast as forecast_module
from autolrs.core.forecast import REASONS, Forecast, forecast
from autolrs.errors import ConfigError

STEPS = np.arange(1, 101, dtype=np.float64)
HORIZON = 1000.0
VAL_STEPS = np.arange(50, 801, 50, dtype=np.float64)  # 16 validation points
VAL_HORIZON = 8000.0


def exponential(t: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    return a * np.exp(b * np.asarray(t, dtype=np.float64)) + c


def reference_fit(
    steps: np.ndarray, losses: np.ndarray, horizon: float
) -> tuple[float, float, float, float]:
    """Slow, obviously correct least squares of L = a·exp(b·t) + c: returns (a, b, c, L(τ)).

    No de-noising and no normalisation: for every decay rate of a 401-point grid over the
    range the forecaster searches (time constant from 1% to 10 windows, log-spaced), solve
    (a, c) with ``np.linalg.lstsq`` and keep the best; then grid again between the best
    point's neighbours, four levels in all (final spacing about 4e-10 in log rate).
    """
    t = np.asarray(steps, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    t0, span = t[0], t[-1] - t[0]

    def residual(log_kappa: float) -> tuple[float, np.ndarray]:
        design = np.column_stack([np.exp(-np.exp(log_kappa) * (t - t0) / span), np.ones_like(t)])
        coef = np.linalg.lstsq(design, y, rcond=None)[0]
        return float(np.sum((design @ coef - y) ** 2)), coef

    low, high = math.log(0.1), math.log(100.0)
    for _ in range(4):
        grid = np.linspace(low, high, 401)
        errors = [residual(x)[0] for x in grid]
        best = int(np.argmin(errors))
        low, high = grid[max(best - 1, 0)], grid[min(best + 1, grid.size - 1)]
    log_kappa = grid[best]
    coef = residual(log_kappa)[1]
    b = -math.exp(log_kappa) / span
    a = coef[0] * math.exp(-b * t0)
    c = coef[1]
    return a, b, c, a * math.exp(b * horizon) + c


# -- known answers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "c"),
    [
        (1.0, -0.03, 2.0),
        (5.0, -0.005, 0.1),  # time constant two windows: still far from flat at τ
        (0.3, -0.2, 1.0),  # over within the first quarter of the window
        (1e-6, -0.03, 2e-6),  # tiny losses
        (1e6, -0.01, 3e6),  # huge losses
        (2.0, -0.05, -7.0),  # negative losses
    ],
)
def test_recovers_noise_free_exponential(a: float, b: float, c: float) -> None:
    f = forecast(STEPS, exponential(STEPS, a, b, c), HORIZON)

    scale = abs(a) + abs(c)
    assert f.ok and f.reason == ""
    assert f.a == pytest.approx(a, rel=1e-5)
    assert f.b == pytest.approx(b, rel=1e-5)
    assert f.c == pytest.approx(c, abs=1e-6 * scale)
    assert f.value == pytest.approx(exponential(HORIZON, a, b, c), abs=1e-6 * scale)
    assert not f.rising
    assert f.last_smoothed == pytest.approx(exponential(100.0, a, b, c), abs=1e-6 * scale)


@pytest.mark.parametrize(
    ("steps", "horizon", "a", "b", "c", "rel"),
    [
        (STEPS, HORIZON, 1.0, -0.03, 2.0, 1e-6),
        (STEPS, HORIZON, 5.0, -0.005, 0.1, 1e-6),
        (STEPS, HORIZON, 0.3, -0.2, 1.0, 1e-5),
        (STEPS, HORIZON, 1e-6, -0.04, 0.0, 1e-6),
        # Sparse validation points: the noise estimate sees some of the curvature as noise,
        # so the spline smooths a little even without noise.
        (VAL_STEPS, VAL_HORIZON, 1.0, -0.003, 2.0, 1e-3),
    ],
)
def test_fast_fit_agrees_with_slow_reference_on_clean_curves(
    steps: np.ndarray, horizon: float, a: float, b: float, c: float, rel: float
) -> None:
    losses = exponential(steps, a, b, c)
    ref_a, ref_b, ref_c, ref_value = reference_fit(steps, losses, horizon)

    f = forecast(steps, losses, horizon)

    scale = abs(a) + abs(c)
    assert f.ok
    assert f.a == pytest.approx(ref_a, rel=rel)
    assert f.b == pytest.approx(ref_b, rel=rel)
    assert f.c == pytest.approx(ref_c, abs=rel * scale)
    assert f.value == pytest.approx(ref_value, abs=rel * scale)


def test_noisy_fit_recovers_parameters_and_bounds_error_at_ten_windows() -> None:
    # Noise σ = 2% of the amplitude; over the window the curve falls by 95% of it.
    a, b, c, sigma = 1.0, -0.03, 2.0, 0.02
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        f = forecast(
            STEPS, exponential(STEPS, a, b, c) + sigma * rng.standard_normal(100), HORIZON
        )

        assert f.ok
        assert f.a == pytest.approx(a, abs=0.05)
        assert f.b == pytest.approx(b, rel=0.1)
        assert f.c == pytest.approx(c, abs=0.03)
        errors.append(f.value - exponential(HORIZON, a, b, c))

    errors = np.array(errors)
    assert np.max(np.abs(errors)) < 0.03  # 1.5σ at ten times the window
    assert np.sqrt(np.mean(errors**2)) < 0.012
    assert abs(np.mean(errors)) < 0.006  # no systematic bias


def test_validation_style_sparse_points_forecast_within_tolerance() -> None:
    a, b, c, sigma = 1.0, -0.004, 2.0, 0.01
    errors = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        losses = exponential(VAL_STEPS, a, b, c) + sigma * rng.standard_normal(VAL_STEPS.size)
        f = forecast(VAL_STEPS, losses, VAL_HORIZON)

        assert f.ok
        errors.append(f.value - exponential(VAL_HORIZON, a, b, c))

    assert np.max(np.abs(errors)) < 0.035
    assert np.sqrt(np.mean(np.square(errors))) < 0.015


# -- robustness -----------------------------------------------------------------------------


def test_spikes_in_first_half_barely_move_forecast() -> None:
    shift_with_dropping, shift_without = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        clean = exponential(STEPS, 1.0, -0.03, 2.0) + 0.02 * rng.standard_normal(100)
        spiked = clean.copy()
        spiked[rng.choice(np.arange(3, 48), 3, replace=False)] += rng.uniform(0.5, 1.5, 3)
        reference = forecast(STEPS, clean, HORIZON).value

        shift_with_dropping.append(abs(forecast(STEPS, spiked, HORIZON).value - reference))
        shift_without.append(abs(forecast(STEPS, spiked, HORIZON, repeats=0).value - reference))

    assert max(shift_with_dropping) < 0.02
    # Without dropping, the same spikes move some forecasts by a lot: the dropping matters.
    assert max(shift_without) > 0.1


def test_bump_after_lr_change_is_fitted_from_its_peak() -> None:
    # The loss starts 0.6 low, climbs for 12 steps, then follows the exponential exactly.
    a, b, c = 1.0, -0.03, 2.0
    deficit = 0.6 * np.clip(1.0 - STEPS / 12.0, 0.0, None)
    truth = exponential(HORIZON, a, b, c)
    errors = []
    for seed in range(10):
        rng = np.random.default_rng(seed)
        losses = exponential(STEPS, a, b, c) - deficit + 0.01 * rng.standard_normal(100)
        f = forecast(STEPS, losses, HORIZON)

        assert f.ok and not f.rising
        errors.append(abs(f.value - truth))

    assert max(errors) < 0.03
    # Fitting every point instead misses by far more.
    assert abs(reference_fit(STEPS, losses, HORIZON)[3] - truth) > 0.1


def test_flat_curve_forecasts_flat_value() -> None:
    for seed in range(10):
        rng = np.random.default_rng(seed)
        losses = 2.0 + 0.01 * rng.standard_normal(100)

        f = forecast(STEPS, losses, HORIZON)

        # Noise alone would extrapolate to about ±0.02 (twice σ) at ten windows.
        assert f.ok and f.a == 0.0 and not f.rising
        # The mean of the points kept: an outlier beyond 3σ may have been dropped.
        assert f.value == pytest.approx(np.mean(losses), abs=0.002)
        assert f.value == pytest.approx(2.0, abs=0.003)


def test_trend_within_noise_is_not_extrapolated_but_clear_trend_is() -> None:
    rng = np.random.default_rng(4)
    noise = 0.01 * rng.standard_normal(100)
    ramp = (STEPS - 1.0) / 99.0

    faint = forecast(STEPS, 2.0 - 0.002 * ramp + noise, HORIZON)
    clear = forecast(STEPS, 2.0 - 0.05 * ramp + noise, HORIZON)

    assert faint.a == 0.0 and faint.value == pytest.approx(1.999, abs=0.003)
    assert clear.a > 0.0 and clear.value < 2.0 - 0.05 - 0.1


def test_constant_curve_is_fitted_exactly() -> None:
    f = forecast(STEPS, np.full(100, 3.25), HORIZON)

    assert f.ok
    assert (f.value, f.a, f.c, f.last_smoothed) == (3.25, 0.0, 3.25, 3.25)
    assert f.b < 0.0 and not f.rising


@pytest.mark.parametrize(
    "curve",
    [
        lambda t: 2.0 - np.exp(-0.02 * t),  # rises and levels off
        lambda t: 2.0 + 0.1 * np.exp(0.02 * t),  # diverges
        lambda t: 2.0 + 0.004 * t,  # straight up
    ],
    ids=["saturating", "diverging", "linear"],
)
def test_rising_curve_is_flagged_and_not_forecast_below_last_value(
    curve: Callable[[np.ndarray | float], np.ndarray],
) -> None:
    rng = np.random.default_rng(3)
    losses = curve(STEPS) + 0.01 * rng.standard_normal(100)

    f = forecast(STEPS, losses, HORIZON)

    assert f.ok and f.rising and f.a < 0.0
    assert f.value >= f.last_smoothed
    assert f.last_smoothed == pytest.approx(curve(100.0), abs=0.02)


def test_rising_guard_lifts_forecast_to_last_smoothed_value() -> None:
    # Saturated before the window ends: noise leaves the spline's end above the fitted level.
    rng = np.random.default_rng(0)
    losses = 2.0 - np.exp(-0.2 * STEPS) + 0.01 * rng.standard_normal(100)
    losses[-3:] += 0.03

    f = forecast(STEPS, losses, HORIZON)

    assert f.ok and f.rising
    assert f.curve(HORIZON) < f.last_smoothed
    assert f.value == f.last_smoothed


def test_fit_below_zero_for_nonnegative_losses_falls_back_to_last_smoothed() -> None:
    # A straight fall from 2 to 1: even the slowest allowed decay extrapolates below 0.
    losses = np.linspace(2.0, 1.0, 100)

    f = forecast(STEPS, losses, HORIZON)

    assert not f.ok and f.reason == "below_zero"
    assert f.value == f.last_smoothed == pytest.approx(1.0, abs=1e-6)
    assert math.isnan(f.curve(HORIZON))


def test_spiking_trial_that_recovers_is_not_extrapolated_below_zero() -> None:
    # An LR too large: the loss jumps from 2.8 to 3.5, then falls back steeply. Extrapolated,
    # that fall would go far below 0 and rank this trial above every stable one.
    rng = np.random.default_rng(5)
    steps = np.arange(1.0, 11.0)
    losses = np.array([2.8, 3.46, 3.57, 3.58, 3.4, 3.3, 3.26, 3.42, 2.93, 2.93])
    stable = 2.75 + 0.1 * rng.standard_normal(10)

    spiked = forecast(steps, losses, 100.0)
    calm = forecast(steps, stable, 100.0)

    assert spiked.reason == "below_zero"
    assert spiked.value == pytest.approx(spiked.last_smoothed)
    assert spiked.value > calm.value


def test_fit_that_tends_to_zero_is_clipped_not_rejected() -> None:
    # c = 0 exactly: rounding may leave the fit a hair below 0 at the horizon.
    losses = exponential(STEPS, 1e-3, -0.04, 0.0)

    f = forecast(STEPS, losses, HORIZON)

    assert f.ok and f.reason == ""
    assert 0.0 <= f.value < 1e-6


def test_negative_losses_are_not_clipped() -> None:
    f = forecast(STEPS, np.linspace(-1.0, -2.0, 100), HORIZON)

    assert f.ok
    assert f.value == pytest.approx(float(f.curve(HORIZON)), rel=1e-12)
    assert f.value < -2.0


@pytest.mark.parametrize("factor", [1e-4, 1e4, 3.7])
def test_scaling_losses_scales_forecast(factor: float) -> None:
    rng = np.random.default_rng(11)
    losses = exponential(STEPS, 1.0, -0.03, 2.0) + 0.02 * rng.standard_normal(100)
    losses[[7, 20]] += 1.0

    base = forecast(STEPS, losses, HORIZON)
    scaled = forecast(STEPS, losses * factor, HORIZON)

    assert scaled.ok and scaled.rising == base.rising
    assert scaled.value == pytest.approx(base.value * factor, rel=1e-8)
    assert scaled.a == pytest.approx(base.a * factor, rel=1e-7)
    assert scaled.b == pytest.approx(base.b, rel=1e-7)
    assert scaled.c == pytest.approx(base.c * factor, rel=1e-8)
    assert scaled.last_smoothed == pytest.approx(base.last_smoothed * factor, rel=1e-8)


@pytest.mark.parametrize("shift", [-0.5, 3.0, 100.0])
def test_shifting_losses_shifts_forecast(shift: float) -> None:
    rng = np.random.default_rng(12)
    losses = exponential(STEPS, 1.0, -0.03, 2.0) + 0.02 * rng.standard_normal(100)
    losses[[7, 20]] += 1.0

    base = forecast(STEPS, losses, HORIZON)
    shifted = forecast(STEPS, losses + shift, HORIZON)

    assert shifted.ok and shifted.rising == base.rising
    assert shifted.value == pytest.approx(base.value + shift, abs=1e-8 * (1.0 + abs(shift)))
    assert shifted.a == pytest.approx(base.a, rel=1e-6)
    assert shifted.b == pytest.approx(base.b, rel=1e-6)
    assert shifted.c == pytest.approx(base.c + shift, abs=1e-8 * (1.0 + abs(shift)))


def test_same_input_gives_identical_forecast() -> None:
    rng = np.random.default_rng(5)
    losses = exponential(STEPS, 1.0, -0.03, 2.0) + 0.02 * rng.standard_normal(100)

    assert forecast(STEPS, losses, HORIZON) == forecast(STEPS, losses, HORIZON)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    losses=st.lists(
        st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False),
        min_size=0,
        max_size=40,
    ),
    horizon_factor=st.floats(min_value=1.0, max_value=100.0),
)
def test_any_finite_losses_give_a_finite_forecast_without_raising(
    losses: list[float], horizon_factor: float
) -> None:
    steps = np.arange(1, len(losses) + 1)

    f = forecast(steps, losses, horizon_factor * max(len(losses), 1))

    if not losses:
        assert f.reason == "no_points" and math.isnan(f.value)
        return
    assert math.isfinite(f.value)
    assert f.reason == "" if f.ok else f.reason in REASONS
    if f.ok:
        assert all(math.isfinite(x) for x in (f.a, f.b, f.c, f.last_smoothed)) and f.b < 0.0
    else:
        assert math.isnan(f.a) and math.isnan(f.b) and math.isnan(f.c)


def test_coarsely_quantised_losses_still_fit() -> None:
    # Logged in steps of 1/64, as bfloat16 rounds a loss near 2: most differences are 0.
    rng = np.random.default_rng(2)
    truth = exponential(STEPS, 1.0, -0.03, 2.0)
    losses = np.round((truth + 0.003 * rng.standard_normal(100)) * 64.0) / 64.0

    f = forecast(STEPS, losses, HORIZON)

    assert f.ok
    assert f.value == pytest.approx(2.0, abs=0.01)


# -- results that are not ok ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("where", [0, 50, 99])
def test_non_finite_loss_gives_nan_forecast(bad: float, where: int) -> None:
    losses = exponential(STEPS, 1.0, -0.03, 2.0)
    losses[where] = bad

    f = forecast(STEPS, losses, HORIZON)

    assert not f.ok and f.reason == "non_finite"
    assert math.isnan(f.value) and math.isnan(f.last_smoothed)
    assert np.all(np.isnan(f.curve(STEPS)))


def test_too_few_points_fall_back_to_their_mean() -> None:
    f = forecast([1, 2, 3, 4], [4.0, 3.0, 2.5, 2.5], 40, min_points=5)

    assert not f.ok and f.reason == "too_few_points"
    assert f.value == pytest.approx(3.0, rel=1e-12)
    assert f.last_smoothed == f.value
    assert not f.rising
    assert math.isnan(f.a) and math.isnan(f.b) and math.isnan(f.c)


def test_too_few_rising_points_are_flagged_rising() -> None:
    f = forecast([10, 20], [1.0, 1.5], 100)

    assert f.reason == "too_few_points" and f.rising and f.value == 1.25


def test_min_points_many_points_are_fitted_from_raw_losses() -> None:
    # Five points: below 2·min_points, so no spline, and still an exact fit.
    steps = np.array([1.0, 2.0, 3.0, 4.0, 5.0])

    f = forecast(steps, exponential(steps, 1.0, -0.3, 1.0), 50)

    assert f.ok
    assert f.b == pytest.approx(-0.3, rel=1e-6)
    assert f.value == pytest.approx(exponential(50.0, 1.0, -0.3, 1.0), abs=1e-6)


def test_too_few_zero_losses_give_zero() -> None:
    f = forecast([1, 2, 3], [0.0, 0.0, 0.0], 30)

    assert f.reason == "too_few_points" and f.value == 0.0 and not f.rising


def test_empty_window_reports_no_points() -> None:
    f = forecast([], [], 10)

    assert not f.ok and f.reason == "no_points" and math.isnan(f.value)


def test_fit_overflowing_in_caller_units_falls_back_to_last_smoothed() -> None:
    # Steps far from 0, against the contract: a = A·exp(−b·t_first) overflows.
    steps = STEPS + 1e6
    losses = exponential(STEPS, 1.0, -0.03, 2.0)

    f = forecast(steps, losses, steps[-1] + 900)

    assert not f.ok and f.reason == "fit_failed"
    assert f.value == f.last_smoothed
    assert f.value == pytest.approx(losses[-1], abs=1e-3)


def test_fit_raising_falls_back_to_a_late_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise ValueError("no fit")

    monkeypatch.setattr(forecast_module, "_fit_exponential", broken)
    losses = exponential(STEPS, 1.0, -0.03, 2.0)

    f = forecast(STEPS, losses, HORIZON)

    assert not f.ok and f.reason == "fit_failed"
    assert f.value in losses[75:]


def test_every_reason_code_is_documented() -> None:
    assert set(REASONS) == {
        "non_finite",
        "no_points",
        "too_few_points",
        "fit_failed",
        "below_zero",
    }


# -- Forecast.curve -------------------------------------------------------------------------


def test_curve_evaluates_fit_in_caller_units() -> None:
    f = forecast(STEPS, exponential(STEPS, 1.0, -0.03, 2.0), HORIZON)
    t = np.array([[0.0, 50.0], [100.0, 1000.0]])

    curve = f.curve(t)

    assert curve.shape == (2, 2) and curve.dtype == np.float64
    np.testing.assert_allclose(curve, exponential(t, 1.0, -0.03, 2.0), rtol=1e-7)
    assert f.curve(HORIZON) == pytest.approx(f.value, rel=1e-12)


def test_curve_is_nan_when_not_ok() -> None:
    f = Forecast(2.0, False, "too_few_points", math.nan, math.nan, math.nan, False, 2.0)

    assert np.all(np.isnan(f.curve([1.0, 2.0, 3.0])))


# -- programming errors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"steps": [1, 2, 3], "losses": [1.0, 2.0]}, r"same length.*3 steps.*2 losses"),
        ({"steps": [1, 2, 2, 3]}, r"steps must be strictly increasing.*steps\[1\]=2.0"),
        ({"steps": [1, 3, 2, 4]}, r"steps must be strictly increasing.*steps\[1\]=3.0"),
        ({"steps": [1, 2, math.nan, 4]}, r"steps must be finite"),
        ({"steps": [[1, 2], [3, 4]]}, r"steps must be 1-D.*\(2, 2\)"),
        ({"losses": ["a", "b", "c", "d"]}, r"losses must be a 1-D sequence of real numbers"),
        ({"horizon": 3.5}, r"horizon must be >= the last step 4.0, got 3.5"),
        ({"horizon": math.inf}, r"horizon must be finite, got inf"),
        ({"horizon": "10"}, r"horizon must be a real number, got '10'"),
        ({"drop_fraction": -0.01}, r"drop_fraction must be in \[0, 0.5\), got -0.01"),
        ({"drop_fraction": 0.5}, r"drop_fraction must be in \[0, 0.5\), got 0.5"),
        ({"drop_fraction": None}, r"drop_fraction must be a real number.*got None"),
        ({"repeats": -1}, r"repeats must be an integer >= 0, got -1"),
        ({"repeats": 2.0}, r"repeats must be an integer >= 0, got 2.0"),
        ({"min_points": 3}, r"min_points must be >= 4, got 3"),
        ({"min_points": True}, r"min_points must be an integer >= 4, got True"),
    ],
)
def test_programming_errors_raise_config_error(kwargs: dict, match: str) -> None:
    call = {"steps": [1, 2, 3, 4], "losses": [4.0, 3.0, 2.5, 2.4], "horizon": 40}
    call.update(kwargs)
    if "losses" not in kwargs and len(call["losses"]) != np.size(call["steps"]):
        call["losses"] = np.ones(np.shape(call["steps"]))

    with pytest.raises(ConfigError, match=match):
        forecast(call.pop("steps"), call.pop("losses"), call.pop("horizon"), **call)


def test_horizon_equal_to_last_step_is_allowed() -> None:
    f = forecast(STEPS, exponential(STEPS, 1.0, -0.03, 2.0), 100)

    assert f.ok and f.value == pytest.approx(exponential(100.0, 1.0, -0.03, 2.0), abs=1e-8)


# -- house rules ----------------------------------------------------------------------------


def test_logs_debug_only(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    inputs = [
        exponential(STEPS, 1.0, -0.03, 2.0) + 0.02 * rng.standard_normal(100),
        np.full(100, math.nan),
        2.0 + 0.01 * STEPS,
    ]
    with caplog.at_level(logging.DEBUG, logger="autolrs.core.forecast"):
        for losses in inputs:
            forecast(STEPS, losses, HORIZON)
        forecast([1, 2], [1.0, 2.0], 10)

    records = [r for r in caplog.records if r.name == "autolrs.core.forecast"]
    assert len(records) >= 4
    assert all(r.levelno == logging.DEBUG for r in records)


def test_docstring_example_runs() -> None:
    result = doctest.testmod(forecast_module, raise_on_error=False)

    assert result.attempted > 0 and result.failed == 0


def test_module_imports_only_numpy_scipy_and_the_standard_library() -> None:
    # Read the source rather than import in a fresh interpreter: cheaper, and blind to
    # whatever the rest of autolrs.core imports.
    tree = ast.parse(Path(forecast_module.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}

    standard = {"__future__", "dataclasses", "logging", "math", "numbers", "warnings"}
    assert {name.split(".")[0] for name in imported} <= standard | {"numpy", "scipy", "autolrs"}
    assert {name for name in imported if name.startswith("autolrs")} == {"autolrs.errors"}
