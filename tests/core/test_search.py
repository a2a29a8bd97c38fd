"""Tests of the GP search: proposals, the choice of the stage LR, the posterior and validation."""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autolrs.core import search as search_module
from autolrs.core.search import (
    FIXED_AMPLITUDE,
    FIXED_NOISE,
    JITTER,
    Choice,
    GPSearch,
    Observation,
)
from autolrs.errors import ConfigError

MIN_LR, MAX_LR = 1e-4, 1.0
WIDTH = math.log(MAX_LR / MIN_LR)  # width of the search space in natural-log LR


def _bowl(center_log10: float) -> Callable[[float], float]:
    """A quadratic in log10 LR with its minimum at lr = 10**center_log10."""
    return lambda lr: (math.log10(lr) - center_log10) ** 2


def _search_loop(
    search: GPSearch, objective: Callable[[float], float], *, seed: int, k: int = 10
) -> list[Observation]:
    """Propose, evaluate and record k candidates, as the controller does within one stage."""
    observations: list[Observation] = []
    for _ in range(k):
        lr = search.propose(observations, seed=seed)
        observations.append(Observation(lr, objective(lr)))
    return observations


# -- finding known minima ------------------------------------------------------------------


@pytest.mark.parametrize("fit", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_lands_near_interior_minimum_of_a_bowl(seed: int, fit: bool) -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=fit)
    observations = _search_loop(search, _bowl(-2.0), seed=seed)

    for by in ("posterior_mean", "forecast"):
        choice = search.choose(observations, by=by)

        # Ten space-filling points over four decades are about 0.44 decades apart, so the best
        # one explored lies within about half of that; 0.35 allows for an uneven spread.
        assert abs(math.log10(choice.lr) - (-2.0)) < 0.35, by
        assert choice.reason == ""
        assert observations[choice.index].lr == choice.lr


@pytest.mark.parametrize(
    ("center_log10", "expected_lr", "seed"),
    [(-5.0, MIN_LR, 0), (-5.0, MIN_LR, 1), (1.0, MAX_LR, 2)],
    ids=["low-0", "low-1", "high-2"],
)
def test_choose_lands_on_the_boundary_when_the_minimum_lies_beyond_it(
    center_log10: float, expected_lr: float, seed: int
) -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = _search_loop(search, _bowl(center_log10), seed=seed)

    choice = search.choose(observations)

    assert abs(math.log10(choice.lr) - math.log10(expected_lr)) < 0.1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_choose_lands_near_the_minimum_of_a_noisy_bowl(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    bowl = _bowl(-2.0)
    search = GPSearch(MIN_LR, MAX_LR)
    observations = _search_loop(search, lambda lr: bowl(lr) + 0.1 * float(rng.normal()), seed=seed)

    choice = search.choose(observations)

    # Noise of 0.1 equals the bowl's rise 0.3 decades from its minimum, hence the wider band.
    assert abs(math.log10(choice.lr) - (-2.0)) < 0.5


# -- proposals: never repeated, always in bounds ---------------------------------------------

_PROPERTY_GRID = 64
_grid_lrs = np.exp(np.linspace(math.log(MIN_LR), math.log(MAX_LR), _PROPERTY_GRID))

# LRs anywhere in the bounds, exactly on grid points (the exclusion's edge case), and the ends
# (including exp(log(min_lr)), which may undershoot min_lr by an ulp).
_lrs = st.one_of(
    st.floats(math.log(MIN_LR), math.log(MAX_LR)).map(math.exp),
    st.integers(0, _PROPERTY_GRID - 1).map(lambda i: float(_grid_lrs[i])),
    st.sampled_from([MIN_LR, MAX_LR]),
)
_values = st.one_of(st.none(), st.floats(-1e3, 1e3), st.sampled_from([0.0, 1.0]))
_observations = st.lists(st.builds(Observation, lr=_lrs, value=_values), max_size=12)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    observations=_observations,
    seed=st.integers(0, 2**32 - 1),
    fit=st.booleans(),
    kappa=st.sampled_from([0.0, 1.0, 1000.0]),
)
def test_propose_never_repeats_a_tried_lr_and_stays_in_bounds(
    observations: list[Observation], seed: int, fit: bool, kappa: float
) -> None:
    search = GPSearch(
        MIN_LR, MAX_LR, kappa=kappa, fit_hyperparameters=fit, grid_size=_PROPERTY_GRID
    )

    lr = search.propose(observations, seed=seed)

    assert MIN_LR <= lr <= MAX_LR
    assert all(abs(math.log(lr) - math.log(o.lr)) > 1e-9 for o in observations)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(
    observations=_observations,
    fit=st.booleans(),
    by=st.sampled_from(["posterior_mean", "forecast"]),
)
def test_choose_never_picks_a_failed_candidate(
    observations: list[Observation], fit: bool, by: str
) -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=fit)

    choice = search.choose(observations, by=by)

    if all(o.value is None for o in observations):
        assert choice == Choice(lr=MIN_LR, index=None, predicted=None, reason="all_failed")
    else:
        assert observations[choice.index].value is not None
        assert choice.lr == observations[choice.index].lr
        assert math.isfinite(choice.predicted)
        assert choice.reason == ""


def test_propose_finds_an_untried_lr_when_every_grid_point_is_taken() -> None:
    search = GPSearch(MIN_LR, MAX_LR, grid_size=16)
    grid = np.linspace(math.log(MIN_LR), math.log(MAX_LR), 16)
    observations = [Observation(math.exp(x), float(i % 3)) for i, x in enumerate(grid)]

    lr = search.propose(observations, seed=0)

    # Every gap is equally wide; the tie goes to the smallest LR, the middle of the first gap.
    assert lr == pytest.approx(math.exp(0.5 * (grid[0] + grid[1])), rel=1e-12)


def test_propose_after_only_failures_moves_away_from_them() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(MAX_LR, None)]

    assert search.propose(observations, seed=0) == MIN_LR

    observations.append(Observation(MIN_LR, None))
    assert search.propose(observations, seed=0) == pytest.approx(math.sqrt(MIN_LR * MAX_LR))


# -- determinism and the first candidate -----------------------------------------------------


def test_same_observations_and_seed_give_identical_proposals() -> None:
    def run() -> list[float]:
        observations = _search_loop(GPSearch(MIN_LR, MAX_LR), _bowl(-2.0), seed=7, k=5)
        return [o.lr for o in observations]

    assert run() == run()


def test_proposals_after_the_first_do_not_depend_on_the_seed() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(1e-3, 1.0), Observation(0.3, None)]

    assert search.propose(observations, seed=0) == search.propose(observations, seed=12345)


def test_different_seeds_give_different_random_first_candidates() -> None:
    search = GPSearch(MIN_LR, MAX_LR, first_candidate="random")

    firsts = [search.propose([], seed=seed) for seed in range(8)]

    assert len(set(firsts)) == 8
    assert all(MIN_LR <= lr <= MAX_LR for lr in firsts)


def test_center_first_candidate_is_the_geometric_mean_of_the_bounds() -> None:
    search = GPSearch(MIN_LR, MAX_LR, first_candidate="center")

    assert search.propose([], seed=0) == pytest.approx(1e-2, rel=1e-12)
    assert search.propose([], seed=99) == search.propose([], seed=0)


# -- exploration with a large kappa -----------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_second_proposal_is_the_bound_farther_from_the_first(seed: int) -> None:
    search = GPSearch(MIN_LR, MAX_LR, kappa=1000.0)
    first = search.propose([], seed=seed)
    farther = MIN_LR if math.log(first / MIN_LR) > math.log(MAX_LR / first) else MAX_LR

    second = search.propose([Observation(first, 1.0)], seed=seed)

    assert second == pytest.approx(farther, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_five_proposals_fill_the_space(seed: int) -> None:
    search = GPSearch(MIN_LR, MAX_LR, kappa=1000.0)
    observations = _search_loop(search, _bowl(-2.0), seed=seed, k=5)

    x = [math.log(o.lr) for o in observations]
    closest = min(abs(a - b) for a, b in itertools.combinations(x, 2))

    # Evenly spread, five points are WIDTH/4 apart; five uniform draws are typically ~WIDTH/25.
    assert closest > WIDTH / 7


# -- failed candidates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0, None], 3.0),  # worst + spread
        ([2.0, None], 2.2),  # worst + a tenth of its magnitude
        ([-3.0, -1.0], 1.0),  # negative values: the spread still dominates
        ([0.0, 0.0, None], 1e-8),  # all equal to zero: the floor
    ],
)
def test_penalty_is_finite_and_worse_than_every_finite_value(
    values: list[float | None], expected: float
) -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    lrs = np.geomspace(MIN_LR, MAX_LR, len(values))
    observations = [Observation(float(lr), v) for lr, v in zip(lrs, values, strict=True)]

    penalty = search.penalty(observations)

    assert penalty == pytest.approx(expected, rel=1e-12)
    assert penalty > max(v for v in values if v is not None)


def test_penalty_is_none_without_a_finite_value() -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    assert search.penalty([]) is None
    assert search.penalty([Observation(0.5, None), Observation(0.1, None)]) is None


@pytest.mark.parametrize("fit", [True, False])
def test_gp_fits_with_failed_candidates_and_ranks_them_worst(fit: bool) -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=fit)
    observations = [
        Observation(1e-4, 2.0),
        Observation(1e-3, 1.2),
        Observation(1e-2, 1.0),
        Observation(1e-1, 1.5),
        Observation(1.0, None),
    ]

    mean, std = search.posterior(observations, [o.lr for o in observations])

    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(std))
    assert mean[-1] > mean[:-1].max()
    assert search.choose(observations).index == 2


def test_choose_skips_a_failed_candidate_even_beside_the_best_ones() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [
        Observation(1e-3, 1.0),
        Observation(2e-3, None),
        Observation(4e-3, 1.0),
        Observation(1.0, 3.0),
    ]

    for by in ("posterior_mean", "forecast"):
        assert search.choose(observations, by=by).index in (0, 2)


@pytest.mark.parametrize("observations", [[], [Observation(0.1, None), Observation(0.01, None)]])
def test_choose_falls_back_to_min_lr_when_every_candidate_failed(
    observations: list[Observation],
) -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    for by in ("posterior_mean", "forecast"):
        assert search.choose(observations, by=by) == Choice(
            lr=MIN_LR, index=None, predicted=None, reason="all_failed"
        )


def test_choose_by_forecast_takes_the_first_of_tied_lowest_values() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(1e-3, 2.0), Observation(1e-2, 1.0), Observation(1e-1, 1.0)]

    assert search.choose(observations, by="forecast") == Choice(lr=1e-2, index=1, predicted=1.0)


# -- the posterior against a slow reference ---------------------------------------------------


def _reference_posterior(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, length_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Textbook GP regression (Rasmussen & Williams, Algorithm 2.1) on standardised targets."""

    def matern52(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = np.abs(a[:, None] - b[None, :]) / length_scale
        return FIXED_AMPLITUDE * (1 + math.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-math.sqrt(5) * r)

    y_mean, y_std = y_train.mean(), y_train.std()
    z = (y_train - y_mean) / y_std
    k = matern52(x_train, x_train) + (FIXED_NOISE + JITTER) * np.eye(x_train.size)
    lower = np.linalg.cholesky(k)
    alpha = np.linalg.solve(lower.T, np.linalg.solve(lower, z))
    k_star = matern52(x_test, x_train)  # (M, N)
    v = np.linalg.solve(lower, k_star.T)  # (N, M)
    mean = y_mean + y_std * (k_star @ alpha)
    var = y_std**2 * (FIXED_AMPLITUDE - np.sum(v**2, axis=0))
    return mean, np.sqrt(np.clip(var, 0.0, None))


@pytest.mark.parametrize("length_scale", [0.5, 1.0, 3.0])
def test_posterior_matches_a_hand_written_gp(length_scale: float) -> None:
    search = GPSearch(MIN_LR, MAX_LR, length_scale=length_scale, fit_hyperparameters=False)
    observations = [
        Observation(2e-4, 2.3),
        Observation(3e-3, 1.1),
        Observation(1.5e-2, 0.9),
        Observation(0.2, 1.7),
        Observation(0.9, None),
    ]
    penalty = search.penalty(observations)
    x_train = np.log([o.lr for o in observations])
    y_train = np.array([penalty if o.value is None else o.value for o in observations])
    lrs = np.concatenate([np.geomspace(MIN_LR, MAX_LR, 41), [o.lr for o in observations]])

    mean, std = search.posterior(observations, lrs)
    expected_mean, expected_std = _reference_posterior(x_train, y_train, np.log(lrs), length_scale)

    np.testing.assert_allclose(mean, expected_mean, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(std, expected_std, rtol=1e-7, atol=1e-7)


def test_posterior_keeps_the_shape_of_lrs_and_is_nan_without_data() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    lrs = np.geomspace(MIN_LR, MAX_LR, 6).reshape(2, 3)

    mean, std = search.posterior([Observation(1e-3, 1.0), Observation(1e-1, 2.0)], lrs)
    assert mean.shape == std.shape == (2, 3)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)

    mean, std = search.posterior([Observation(1e-1, None)], lrs)
    assert mean.shape == std.shape == (2, 3)
    assert np.all(np.isnan(mean)) and np.all(np.isnan(std))

    mean, std = search.posterior([Observation(1e-3, 1.0)], [])
    assert mean.shape == std.shape == (0,)


def test_posterior_std_shrinks_to_the_noise_floor_at_data_and_is_the_prior_far_from_it() -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=False)
    observations = [Observation(1e-4, 1.0), Observation(1.0, 2.0)]

    _, std = search.posterior(observations, [1e-4, 1e-2, 1.0])

    # Targets 1 and 2 standardise with a scale of 0.5. The two points are 9.2 length scales
    # apart, so each is alone: σ² = a·s²/(a + s²) at a point, and the prior a midway.
    scale = 0.5
    at_point = scale * math.sqrt(FIXED_AMPLITUDE * FIXED_NOISE / (FIXED_AMPLITUDE + FIXED_NOISE))
    np.testing.assert_allclose(std, [at_point, scale * FIXED_AMPLITUDE**0.5, at_point], rtol=1e-4)


# -- robustness of the GP fit -----------------------------------------------------------------


def test_fitting_few_points_lets_no_warning_escape() -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=True)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        observations = _search_loop(search, _bowl(-2.0), seed=0, k=3)
        search.choose(observations)
        search.posterior(observations, [1e-3])


def test_failed_hyperparameter_fit_retries_with_fixed_hyperparameters(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    regressor = search_module.GaussianProcessRegressor
    original_fit = regressor.fit

    def fit_failing_when_optimising(self, x, y):  # type: ignore[no-untyped-def]
        if self.optimizer is not None:
            raise np.linalg.LinAlgError("kernel matrix is not positive definite")
        return original_fit(self, x, y)

    observations = [Observation(1e-3, 1.0), Observation(1e-2, 0.5), Observation(0.3, None)]
    lrs = np.geomspace(MIN_LR, MAX_LR, 9)
    expected = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=False).posterior(observations, lrs)
    monkeypatch.setattr(regressor, "fit", fit_failing_when_optimising)

    with caplog.at_level(logging.WARNING, logger="autolrs.core.search"):
        mean, std = GPSearch(MIN_LR, MAX_LR).posterior(observations, lrs)

    np.testing.assert_allclose(mean, expected[0], rtol=1e-12)
    np.testing.assert_allclose(std, expected[1], rtol=1e-12)
    assert any("GP fit failed" in r.getMessage() for r in caplog.records)


def test_unusable_gp_falls_back_to_space_filling_and_raw_forecasts(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_fit(self, x, y):  # type: ignore[no-untyped-def]
        raise np.linalg.LinAlgError("kernel matrix is not positive definite")

    monkeypatch.setattr(search_module.GaussianProcessRegressor, "fit", broken_fit)
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(1e-3, 1.0), Observation(3e-3, 0.5)]

    with caplog.at_level(logging.WARNING, logger="autolrs.core.search"):
        lr = search.propose(observations, seed=0)
        choice = search.choose(observations)
        mean, std = search.posterior(observations, [1e-2])

    assert lr == MAX_LR  # the point farthest in log LR from both tried ones
    assert choice == Choice(lr=3e-3, index=1, predicted=0.5)
    assert np.isnan(mean).all() and np.isnan(std).all()
    assert sum(r.levelno == logging.WARNING for r in caplog.records) >= 3


# -- serialisation ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1.25, None])
def test_observation_round_trips_through_a_dict(value: float | None) -> None:
    observation = Observation(np.float64(0.01), value)

    data = observation.to_dict()

    assert type(data["lr"]) is float
    assert Observation.from_dict(data) == observation
    assert observation.failed is (value is None)


# -- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"min_lr": 0.0}, "min_lr must be > 0, got 0.0"),
        ({"min_lr": -1e-3}, "min_lr must be > 0, got -0.001"),
        ({"min_lr": math.nan}, "min_lr must be finite, got nan"),
        ({"min_lr": "1e-3"}, "min_lr must be a real number, got '1e-3'"),
        ({"min_lr": True}, "min_lr must be a real number, got True"),
        ({"max_lr": math.inf}, "max_lr must be finite, got inf"),
        ({"max_lr": 1e-4}, "min_lr must be smaller than max_lr"),
        ({"max_lr": 1e-5}, "min_lr must be smaller than max_lr"),
        ({"kappa": -1.0}, "kappa must be >= 0, got -1.0"),
        ({"kappa": math.inf}, "kappa must be finite, got inf"),
        ({"length_scale": 0.0}, "length_scale must be > 0, got 0.0"),
        ({"length_scale": math.nan}, "length_scale must be finite, got nan"),
        ({"fit_hyperparameters": 1}, "fit_hyperparameters must be True or False, got 1"),
        ({"first_candidate": "grid"}, "first_candidate must be one of ('random', 'center')"),
        ({"grid_size": 15}, "grid_size must be >= 16, got 15"),
        ({"grid_size": 64.0}, "grid_size must be an integer >= 16, got 64.0"),
        ({"grid_size": True}, "grid_size must be an integer >= 16, got True"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"min_lr": MIN_LR, "max_lr": MAX_LR, **kwargs}

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GPSearch(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("lr", "value", "message"),
    [
        (0.0, 1.0, "Observation.lr must be > 0, got 0.0"),
        (math.inf, 1.0, "Observation.lr must be finite, got inf"),
        (math.nan, 1.0, "Observation.lr must be finite, got nan"),
        (1e-3, math.nan, "Observation.value must be finite, got nan"),
        (1e-3, -math.inf, "Observation.value must be finite, got -inf"),
        (1e-3, "1.0", "Observation.value must be a real number, got '1.0'"),
    ],
)
def test_observation_rejects_non_finite_numbers(lr: float, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Observation(lr, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("lr", [MIN_LR * 0.99, MAX_LR * 1.01])
@pytest.mark.parametrize("method", ["propose", "choose", "posterior", "penalty"])
def test_every_method_rejects_an_observation_outside_the_bounds(lr: float, method: str) -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(1e-2, 1.0), Observation(lr, 2.0)]
    calls = {
        "propose": lambda: search.propose(observations, seed=0),
        "choose": lambda: search.choose(observations),
        "posterior": lambda: search.posterior(observations, [1e-2]),
        "penalty": lambda: search.penalty(observations),
    }

    with pytest.raises(ConfigError, match=r"observations\[1\]\.lr must be in \[min_lr, max_lr\]"):
        calls[method]()


def test_observations_within_rounding_of_the_bounds_are_accepted() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(MIN_LR * (1 - 1e-10), 1.0), Observation(MAX_LR * (1 + 1e-10), 2.0)]

    lr = search.propose(observations, seed=0)

    assert MIN_LR < lr < MAX_LR
    assert search.choose(observations).index == 0


def test_observations_must_be_observation_objects() -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    with pytest.raises(ConfigError, match=r"observations\[0\] must be an Observation, got tuple"):
        search.propose([(1e-3, 1.0)], seed=0)  # type: ignore[list-item]


def test_choose_rejects_an_unknown_criterion() -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    with pytest.raises(ConfigError, match=r"by must be one of \('posterior_mean', 'forecast'\)"):
        search.choose([Observation(1e-3, 1.0)], by="lowest")


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_propose_rejects_a_bad_seed(seed: object) -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    with pytest.raises(ConfigError, match="seed must be an integer >= 0"):
        search.propose([], seed=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("lrs", [[1e-3, math.nan], [0.0], [-1e-3], [math.inf]])
def test_posterior_rejects_lrs_that_are_not_finite_and_positive(lrs: list[float]) -> None:
    search = GPSearch(MIN_LR, MAX_LR)

    with pytest.raises(ConfigError, match="lrs must all be finite and > 0"):
        search.posterior([Observation(1e-3, 1.0)], lrs)


@given(
    values=st.lists(st.floats(0.5, 2.0), min_size=2, max_size=8),
    tolerance=st.floats(0.0, 0.95),
    start=st.floats(0.4, 3.0),
)
@settings(max_examples=200, deadline=None)
def test_larger_lr_tolerance_matches_a_brute_force_pick(values, tolerance, start) -> None:
    search = GPSearch(1e-3, 1.0)
    lrs = np.geomspace(1e-3, 1.0, len(values))
    observations = [Observation(lr=float(lr), value=v) for lr, v in zip(lrs, values, strict=True)]
    choice = search.choose(
        observations, by="forecast", larger_lr_tolerance=tolerance, start_value=start
    )
    best = min(values)
    if tolerance > 0 and start > best:
        bound = best + tolerance * min(start - best, best)  # best > 0 caps the distance
        expected = max(i for i, v in enumerate(values) if v <= bound)
    else:
        expected = values.index(best)
    assert choice.index == expected and choice.lr == observations[expected].lr
    assert choice.predicted == values[expected]


def test_a_flat_posterior_does_not_let_a_clearly_worse_larger_lr_through() -> None:
    # Four candidates from a first stage: the GP explains their spread as noise, and its
    # posterior is flat to 1%. The largest LR would pass on the posterior alone.
    search = GPSearch(0.003, 0.3)
    observations = [
        Observation(0.0031, 1.881),
        Observation(0.3, 2.142),
        Observation(0.0279, 0.997),
        Observation(0.089, 2.005),
    ]
    mean, _ = search.posterior(observations, [o.lr for o in observations])
    assert np.ptp(mean) < 0.02 * mean.min()

    choice = search.choose(observations, larger_lr_tolerance=0.5, start_value=2.3)

    assert choice.lr == 0.0279


@given(
    values=st.lists(st.floats(0.5, 2.0), min_size=2, max_size=6),
    tolerance=st.floats(0.05, 0.95),
    start=st.floats(0.4, 3.0),
)
@settings(max_examples=60, deadline=None)
def test_tolerance_by_posterior_mean_matches_a_brute_force_pick(values, tolerance, start) -> None:
    search = GPSearch(1e-3, 1.0)
    lrs = np.geomspace(1e-3, 1.0, len(values))
    observations = [Observation(lr=float(lr), value=v) for lr, v in zip(lrs, values, strict=True)]
    mean, _ = search.posterior(observations, lrs)

    choice = search.choose(observations, larger_lr_tolerance=tolerance, start_value=start)

    best = int(np.argmin(mean))
    expected = best
    if start > mean[best]:
        bound = mean[best] + tolerance * min(start - mean[best], mean[best])
        raw_bound = min(values) + tolerance * min(start - min(values), min(values))
        within = [
            i
            for i in range(len(values))
            if mean[i] <= bound and (start <= min(values) or values[i] <= raw_bound)
        ]
        expected = max(within) if within else best
    assert choice.index == expected


def test_a_stage_starting_far_above_every_forecast_does_not_widen_the_band_past_the_best() -> None:
    # A first stage from initialisation: the best candidate promises 2.19 → 0.60, and 75% of
    # that fall would let the top of the range through at 1.35, more than twice the best.
    search = GPSearch(0.003, 0.3)
    observations = [
        Observation(0.0094, 1.395),
        Observation(0.3, 1.352),
        Observation(0.0537, 0.604),
        Observation(0.1, 0.9),
        Observation(0.003, 1.906),
    ]
    choice = search.choose(
        observations, by="forecast", larger_lr_tolerance=0.75, start_value=2.194
    )
    # The band is 0.75 × 0.604 above the best: 0.1 at 0.9 is in it, 0.3 at 1.352 is not.
    assert choice.lr == 0.1


def test_losses_below_zero_keep_the_band_of_the_whole_fall() -> None:
    search = GPSearch(1e-3, 1.0)
    observations = [Observation(0.01, -2.0), Observation(0.1, -1.0), Observation(0.5, 0.5)]
    choice = search.choose(observations, by="forecast", larger_lr_tolerance=0.5, start_value=2.0)
    # Best −2 from a start of 2: the band is 0.5 × 4 = 2 wide, up to 0: 0.1 is in it.
    assert choice.lr == 0.1


def test_larger_lr_tolerance_out_of_range_is_refused() -> None:
    search = GPSearch(1e-3, 1.0)
    observations = [Observation(lr=0.01, value=1.0), Observation(lr=0.1, value=0.9)]
    with pytest.raises(ConfigError, match=r"larger_lr_tolerance must be in \[0, 1\), got 1.5"):
        search.choose(observations, larger_lr_tolerance=1.5, start_value=2.0)
    with pytest.raises(ConfigError, match="start_value must be finite"):
        search.choose(observations, larger_lr_tolerance=0.5, start_value=math.nan)


# -- pending LRs ---------------------------------------------------------------------------


def test_with_only_a_pending_lr_the_first_proposal_is_the_bound_farther_from_it() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    pending = 10**-1.5  # nearer the upper bound in log LR
    for seed in (0, 1, 2):  # no random first candidate: the seed plays no part
        assert search.propose([], seed=seed, pending=[pending]) == pytest.approx(MIN_LR)


@pytest.mark.parametrize("fit", [True, False])
def test_a_pending_lr_enters_the_gp_at_its_posterior_mean(fit: bool) -> None:
    search = GPSearch(MIN_LR, MAX_LR, fit_hyperparameters=fit)
    objective = _bowl(-2.0)
    observations = [Observation(lr, objective(lr)) for lr in (MIN_LR, MAX_LR, 1e-3)]
    pending = 0.05
    mean, _ = search.posterior(observations, [pending])

    proposed = search.propose(observations, seed=0, pending=[pending])

    # Reference: the same proposal from the observations plus the believed one.
    believed = [*observations, Observation(pending, float(mean[0]))]
    assert proposed == search.propose(believed, seed=0)
    assert abs(math.log(proposed / pending)) > WIDTH / (search.grid_size - 1) / 2


def test_pending_lrs_keep_every_proposal_of_a_stage_clear_of_them() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    objective = _bowl(-2.0)
    pending = [1e-2, 0.3]
    observations: list[Observation] = []
    for _ in range(5):
        lr = search.propose(observations, seed=0, pending=pending)
        observations.append(Observation(lr, objective(lr)))
    tried = [o.lr for o in observations]
    spacing = WIDTH / (search.grid_size - 1)
    assert len(set(tried)) == len(tried)
    assert all(abs(math.log(lr / p)) > spacing / 2 for lr in tried for p in pending)


def test_pending_lrs_after_failures_only_stand_in_as_failed() -> None:
    search = GPSearch(MIN_LR, MAX_LR)
    observations = [Observation(1.0, None)]  # diverged at the top of the range
    lr = search.propose(observations, seed=0, pending=[1e-2])
    assert MIN_LR <= lr < 1.0 and abs(math.log(lr / 1e-2)) > WIDTH / (search.grid_size - 1) / 2


@pytest.mark.parametrize(
    ("pending", "message"),
    [
        ([2.0], r"pending\[0\] must be in \[min_lr, max_lr\] = \[0.0001, 1.0\], got 2.0"),
        ([math.nan], r"pending\[0\] must be finite, got nan"),
        ([0.1, -1.0], r"pending\[1\] must be > 0, got -1.0"),
    ],
)
def test_propose_rejects_a_bad_pending_lr_naming_it(pending: list[float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GPSearch(MIN_LR, MAX_LR).propose([], seed=0, pending=pending)
