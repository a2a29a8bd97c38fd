import json

import pytest

from autolrs.bench.methods import family_config, resolve_method
from autolrs.bench.records import CurvePoint, RunKey, RunRecord
from autolrs.bench.reference import (
    GridPoint,
    Reference,
    best_lr,
    build_reference,
    reference_path,
    swept_grid,
)
from autolrs.errors import ConfigError


def record(method, lr, seed, final, stop="budget", total=80):
    key = RunKey("fake", 1, "smoke", method, lr, seed, "h")
    curve = [CurvePoint(40, 40, 0.0, 0.1, final + 0.1), CurvePoint(80, 80, 0.0, 0.2, final)]
    if stop == "diverged":
        curve = curve[:1]
    return RunRecord(key, {}, curve, [[0, 79, lr, lr]], 80, total, 0.0, 0.2, 0.01, stop)


def point(family, lr, final):
    return GridPoint(family, lr, final, "budget" if final is not None else "diverged", 80, 0.1)


def test_smoke_sweeps_the_two_middle_points_and_standard_the_whole_grid(fake_spec):
    assert swept_grid(fake_spec, smoke=False) == (0.003, 0.01, 0.03, 0.1)
    assert swept_grid(fake_spec, smoke=True) == (0.01, 0.03)


def test_best_lr_ranks_diverged_runs_last_and_breaks_ties_downwards():
    points = [point("cosine", 0.1, None), point("cosine", 0.03, 0.5), point("cosine", 0.01, 0.5)]
    assert best_lr(points) == 0.01
    assert best_lr([point("cosine", 0.3, None), point("cosine", 0.1, 2.0)]) == 0.1


def test_the_baseline_is_the_family_with_the_lowest_mean_final_loss(fake_spec):
    sweep = [point(f, lr, 1.0 - lr) for f in ("constant", "cosine", "step") for lr in (0.01, 0.03)]
    sweep += [point("schedulefree", 0.03, 0.1)]
    runs = {
        "constant": [record("constant", 0.03, s, v) for s, v in enumerate((0.50, 0.60, 0.55))],
        "cosine": [record("cosine", 0.03, s, v) for s, v in enumerate((0.40, 0.44, 0.42))],
        "step": [record("step", 0.03, s, v) for s, v in enumerate((0.41, 0.45, 0.46))],
        # Schedule-free is better still, but it is not a hand-tuned schedule.
        "schedulefree": [record("schedulefree-tuned", 0.03, s, 0.1) for s in range(3)],
    }
    reference = build_reference(fake_spec, (0.01, 0.03), sweep, runs)

    assert reference.baseline_family == "cosine"
    assert reference.baseline_lr == 0.03
    assert reference.target == pytest.approx(0.42)
    assert reference.target_std == pytest.approx(0.02)
    assert reference.best == {"constant": 0.03, "cosine": 0.03, "step": 0.03, "schedulefree": 0.03}
    # Seven one-seed runs of 80 steps; the extra seeds are 2 per family.
    assert reference.sweep_cost == 7 * 80
    assert reference.protocol_cost == 7 * 80 + 4 * 2 * 80


def test_a_family_that_diverged_in_some_seed_cannot_be_the_baseline(fake_spec):
    runs = {
        "constant": [record("constant", 0.01, 0, 0.5)],
        "cosine": [record("cosine", 0.1, 0, 0.1), record("cosine", 0.1, 1, 0.1, "diverged")],
    }
    sweep = [point("constant", 0.01, 0.5), point("cosine", 0.1, 0.1)]
    assert build_reference(fake_spec, (0.01, 0.1), sweep, runs).baseline_family == "constant"


def test_no_usable_baseline_is_an_error(fake_spec):
    runs = {"cosine": [record("cosine", 0.1, 0, 0.1, "diverged")]}
    with pytest.raises(ConfigError, match="diverged"):
        build_reference(fake_spec, (0.1,), [point("cosine", 0.1, None)], runs)


def test_the_reference_file_round_trips_and_checks_the_spec(fake_spec, tmp_path):
    runs = {"cosine": [record("cosine", 0.03, s, 0.4 + s / 100) for s in range(2)]}
    reference = build_reference(fake_spec, (0.03,), [point("cosine", 0.03, 0.4)], runs)
    path = reference_path(tmp_path, fake_spec)
    assert path.name == "fake-v1-smoke.json"
    reference.save(path)

    loaded = Reference.load(path, fake_spec)
    assert loaded == reference
    assert loaded.baseline_runs[1].curve == runs["cosine"][1].curve

    data = json.loads(path.read_text())
    data["spec"]["budget"] = 160
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"budget.*--regrid"):
        Reference.load(path, fake_spec)

    data["format"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="format"):
        Reference.load(path, fake_spec)


def test_a_grid_point_resolves_to_the_same_config_as_its_method_at_the_best_lr(fake_spec):
    for family, method in [("cosine", "cosine"), ("schedulefree", "schedulefree-tuned")]:
        tuned = {family: 0.03}
        assert family_config(family, fake_spec, 0.03) == resolve_method(method, fake_spec, tuned)
    with pytest.raises(ConfigError, match="family"):
        family_config("prodigy", fake_spec, 0.03)
