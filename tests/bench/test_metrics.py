import math

import numpy as np
import pytest

from autolrs.bench.metrics import (
    AlignedCurves,
    bootstrap,
    mean_interval,
    quality_at,
    slack_threshold,
    speedup,
    steps_to_target,
)
from autolrs.bench.records import CurvePoint
from autolrs.errors import ConfigError


def curve(updates, totals, losses, eval_cost=0.0, wall_per_step=0.01):
    return [
        CurvePoint(u, t, eval_cost * (i + 1), wall_per_step * t, loss)
        for i, (u, t, loss) in enumerate(zip(updates, totals, losses, strict=True))
    ]


BASELINE = curve([20, 40, 60, 80, 100], [20, 40, 60, 80, 100], [1.0, 0.8, 0.6, 0.5, 0.4])


def test_steps_to_target_is_the_first_point_at_or_below_the_threshold():
    reach = steps_to_target(BASELINE, 0.5, cap=300)
    assert reach.reached
    assert reach.update_steps == 80
    assert reach.cost == 80
    assert reach.wall_s == pytest.approx(0.8)


def test_steps_to_target_counts_search_steps_and_evaluation_cost():
    # Two executed steps per update step and 5 step-equivalents of evaluation per point.
    method = curve([20, 40, 60], [40, 80, 120], [0.9, 0.5, 0.3], eval_cost=5.0)
    reach = steps_to_target(method, 0.5, cap=300)
    assert (reach.update_steps, reach.cost) == (40, 80 + 10)


def test_steps_to_target_ignores_points_beyond_the_cap():
    method = curve([20, 40], [100, 320], [0.9, 0.1])
    assert not steps_to_target(method, 0.5, cap=300).reached
    assert steps_to_target(method, 0.5, cap=320).cost == 320


def test_steps_to_target_not_reached_is_infinite():
    reach = steps_to_target(BASELINE, 0.1, cap=300)
    assert not reach.reached
    assert math.isinf(reach.update_steps) and math.isinf(reach.cost)


def test_a_diverged_point_never_reaches():
    method = [CurvePoint(20, 20, 0.0, 0.1, None)]
    assert not steps_to_target(method, 0.5, cap=300).reached


def test_slack_threshold_is_five_percent_above_the_target():
    assert slack_threshold(0.4) == pytest.approx(0.42)
    assert slack_threshold(-2.0) == pytest.approx(-1.9)


def test_quality_at_is_the_last_point_within_the_budget():
    method = curve([10, 20, 30], [30, 60, 90], [0.9, 0.7, 0.5])
    assert quality_at(method, 50) == 0.9
    assert quality_at(method, 90) == 0.5
    assert quality_at(method, 1000) == 0.5  # a finished run keeps its final value
    assert quality_at(method, 10) is None


def test_aligned_curves_average_losses_and_costs_on_shared_steps():
    first = curve([10, 20, 30], [20, 40, 60], [1.0, 0.6, 0.5])
    second = curve([10, 20, 30], [30, 60, 90], [1.0, 0.4, 0.5])
    aligned = AlignedCurves.of([first, second])
    np.testing.assert_array_equal(aligned.update_steps, [10, 20, 30])
    reach = aligned.reach(0.5, cap=300)
    # Mean losses 1.0, 0.5, 0.5: reached at update step 20, mean cost (40 + 60) / 2.
    assert (reach.update_steps, reach.cost) == (20, 50)


def held_reference(curves, step):
    """Brute force: each curve's last point at or before ``step``."""
    return [
        max((p for p in c if p.update_steps <= step), key=lambda p: p.update_steps) for c in curves
    ]


def test_a_curve_holds_its_last_point_at_steps_only_another_one_measured():
    # Runs whose budget counts their search end at different update steps (here 30 and 27,
    # both at cost 90); one also measured at a step the other did not.
    first = curve([10, 20, 30], [30, 60, 90], [1.0, 0.6, 0.5])
    second = curve([10, 15, 20, 27], [35, 50, 65, 90], [0.9, 0.7, 0.5, 0.3])
    aligned = AlignedCurves.of([first, second])
    steps = [10, 15, 20, 27, 30]
    np.testing.assert_array_equal(aligned.update_steps, steps)
    for column, step in enumerate(steps):
        held = held_reference([first, second], step)
        np.testing.assert_allclose(aligned.loss[:, column], [p.val_loss for p in held])
        np.testing.assert_allclose(aligned.cost[:, column], [p.cost for p in held])
    # Mean losses 0.95, 0.85, 0.55, 0.45, 0.4: 0.45 first at step 27, mean cost (60 + 90) / 2.
    reach = aligned.reach(0.45, cap=300)
    assert (reach.update_steps, reach.cost) == (27, 75)
    # At step 30 both runs are done: the mean of their final losses, at their final costs.
    assert aligned.reach(0.4, cap=300).cost == 90


def test_steps_before_some_curve_began_are_left_out_and_an_empty_curve_never_reaches():
    late = curve([20, 30], [20, 30], [0.5, 0.4])
    early = curve([10, 20, 30], [10, 20, 30], [0.6, 0.5, 0.4])
    np.testing.assert_array_equal(AlignedCurves.of([late, early]).update_steps, [20, 30])
    assert not AlignedCurves.of([early, []]).reach(10.0, cap=100).reached


def test_a_diverged_seed_keeps_the_mean_curve_from_reaching():
    good = curve([10, 20], [10, 20], [0.5, 0.1])
    diverged = [CurvePoint(10, 10, 0.0, 0.1, 0.5), CurvePoint(20, 20, 0.0, 0.2, None)]
    reach = AlignedCurves.of([good, diverged]).reach(0.2, cap=100)
    assert not reach.reached


def test_speedup_is_baseline_over_the_method_mean_curve():
    # Seed 0 reaches 0.5 at cost 40, seed 1 at cost 20; their mean curve (losses 0.7, 0.5)
    # reaches at the second point, mean cost 30.
    seed0 = curve([10, 20], [20, 40], [0.9, 0.5])
    seed1 = curve([10, 20], [20, 40], [0.5, 0.5])
    aligned = AlignedCurves.of([seed0, seed1])
    result = speedup(120.0, aligned, 0.5, cap=300, measure="cost", n_boot=4000, seed=1)
    assert result.estimate == pytest.approx(120 / 40)
    # Resamples: (0, 0) reaches at 40 (speedup 3), (1, 1) at 20 (6), a mixed one at 40 (3);
    # so 3 with probability 3/4 and 6 with 1/4: the 2.5th percentile is 3, the 97.5th is 6.
    assert (result.low, result.high) == (pytest.approx(3.0), pytest.approx(6.0))
    assert result.n == 2


def test_speedup_in_update_steps_ignores_search_cost():
    method = curve([10, 20], [30, 60], [0.9, 0.5], eval_cost=5.0)
    aligned = AlignedCurves.of([method])
    assert speedup(80.0, aligned, 0.5, 300, "update_steps").estimate == pytest.approx(4.0)
    assert speedup(80.0, aligned, 0.5, 300, "cost").estimate == pytest.approx(80 / 70)


def test_speedup_is_zero_when_the_mean_curve_never_reaches():
    aligned = AlignedCurves.of([curve([10], [10], [0.9])])
    result = speedup(80.0, aligned, 0.5, 300, "cost")
    assert (result.estimate, result.low, result.high) == (0.0, 0.0, 0.0)


def test_speedup_rejects_a_baseline_that_never_reached():
    aligned = AlignedCurves.of([curve([10], [10], [0.1])])
    with pytest.raises(ConfigError, match="baseline"):
        speedup(math.inf, aligned, 0.5, 300, "cost")


def test_bootstrap_mean_interval_brackets_the_mean():
    result = mean_interval([1.0, 2.0, 3.0], n_boot=2000, seed=0)
    assert result.estimate == pytest.approx(2.0)
    assert 1.0 <= result.low < 2.0 < result.high <= 3.0


def test_bootstrap_is_reproducible_with_its_seed():
    values = [0.3, 0.1, 0.7, 0.2]
    first = mean_interval(values, seed=3)
    assert first == mean_interval(values, seed=3)


def test_bootstrap_of_one_seed_is_a_point():
    result = mean_interval([0.25])
    assert (result.estimate, result.low, result.high, result.n) == (0.25, 0.25, 0.25, 1)


@pytest.mark.parametrize(
    ("values", "options", "match"),
    [
        ([], {}, "non-empty"),
        ([1.0], {"confidence": 1.0}, "confidence"),
        ([1.0], {"n_boot": 0}, "n_boot"),
    ],
)
def test_bootstrap_rejects_bad_arguments(values, options, match):
    with pytest.raises(ConfigError, match=match):
        bootstrap(values, lambda rows: rows.mean(axis=1), **options)


def test_aligned_curves_need_a_curve():
    with pytest.raises(ConfigError, match="at least one curve"):
        AlignedCurves.of([])
