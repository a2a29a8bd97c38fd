"""AutoLRS's overheads on the fake task (slow: each GP decision takes ~0.1 s)."""

import dataclasses

import pytest

from autolrs.bench.overhead import loop_steps, measure
from autolrs.config import AutoLRSConfig

pytestmark = pytest.mark.slow


def test_overheads_are_measured_side_by_side(fake_spec, make_fake_task):
    # A budget long enough for two whole stages within the 3T cap.
    spec = dataclasses.replace(fake_spec, budget=800, eval_every=100)
    result = measure(make_fake_task(spec), threads=1, repeats=1)
    config = AutoLRSConfig.from_dict({**result["config"]})

    stages = config.stage_length(0) + config.stage_length(1)
    assert result["steps"] == loop_steps(config, cap=3 * spec.budget)
    trials = 2 * config.num_candidates * config.trial_length(100)
    assert result["steps"] == spec.warmup_steps + stages + trials
    step = result["step"]
    assert step["bare_s_per_step"] > 0
    assert step["ratio"] == pytest.approx(step["autolrs_s_per_step"] / step["bare_s_per_step"])
    assert step["ratio"] > 1.0
    snapshot = result["snapshot"]
    assert snapshot["library_s"] > 0 and snapshot["raw_copy_s"] > 0
    # The model's 8 weights and bias, and as many momentum buffers, in float32.
    assert snapshot["nbytes"] == 2 * 9 * 4
    # One decision per candidate of the first two stages.
    assert result["decision"]["count"] == 2 * config.num_candidates
    assert result["decision"]["mean_s"] > 0
