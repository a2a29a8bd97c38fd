from types import SimpleNamespace

import pytest

from autolrs.bench.summary import _autolrs_details


def autolrs_run(errors: list[tuple[str, float | None]]) -> SimpleNamespace:
    """A finished AutoLRS run whose stages missed their forecasts by these relative errors."""
    stages = [
        {"stage": i, "metric": metric, "relative_error": error}
        for i, (metric, error) in enumerate(errors)
    ]
    extras = {"num_stages": len(stages), "search_steps": 10, "forecast_errors": stages}
    return SimpleNamespace(extras=extras, eval_cost=0.0, total_steps=100)


def test_forecast_errors_are_summarised_by_size_and_by_sign_per_metric():
    runs = [
        autolrs_run([("train", 0.5), ("train", -0.1), ("val", 0.2), ("val", None)]),
        autolrs_run([("train", -0.3), ("val", 0.1), ("val", 0.4)]),
    ]

    details = _autolrs_details(runs)

    assert details["forecast_abs_rel_error_median"] == pytest.approx(0.25)  # of 0.1 … 0.5
    assert details["forecast_abs_rel_error_max"] == pytest.approx(0.5)
    # train: −0.3, −0.1, 0.5; val: 0.1, 0.2, 0.4 (the stage without an error is left out).
    assert details["forecast_rel_error_median_by_metric"] == pytest.approx(
        {"train": -0.1, "val": 0.2}
    )


def test_a_metric_no_stage_was_judged_by_is_left_out():
    details = _autolrs_details([autolrs_run([("train", 0.2)])])
    assert details["forecast_rel_error_median_by_metric"] == {"train": pytest.approx(0.2)}
    assert _autolrs_details([SimpleNamespace(extras={})]) is None


def test_stages_are_counted_from_the_history_without_one_opened_as_the_budget_ran_out():
    trained = [
        {"index": 0, "candidates": [{"lr": 0.1}], "cooldown": False},
        {"index": 1, "candidates": [], "cooldown": True},
    ]
    opened_at_the_end = {"index": 2, "candidates": [], "cooldown": False}
    run = autolrs_run([("train", 0.1), ("train", None), ("train", None)])
    run.extras["history"] = [*trained, opened_at_the_end]
    older = autolrs_run([("train", 0.1)])  # stored before histories: its own count stands

    assert _autolrs_details([run])["stages"] == 2
    assert _autolrs_details([older])["stages"] == 1
    assert _autolrs_details([run, older])["stages"] == pytest.approx(1.5)
