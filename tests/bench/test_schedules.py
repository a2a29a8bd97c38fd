import math

import pytest

from autolrs.bench.schedules import (
    compress_lrs,
    expand_segments,
    schedule_factor,
    warmup_factor,
)
from autolrs.errors import ConfigError


def test_warmup_ramps_linearly_to_the_peak_at_its_last_step():
    assert [warmup_factor(step, 4) for step in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0


def test_cosine_starts_at_the_peak_after_warmup_and_halves_midway():
    assert schedule_factor("cosine", 10, total_steps=110, warmup_steps=10) == 1.0
    assert schedule_factor("cosine", 60, total_steps=110, warmup_steps=10) == pytest.approx(0.5)
    last = schedule_factor("cosine", 109, total_steps=110, warmup_steps=10)
    assert last == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))


def test_step_decays_tenfold_at_half_and_three_quarters_of_the_budget():
    factors = [
        schedule_factor("step", s, total_steps=100, warmup_steps=0) for s in (49, 50, 74, 75)
    ]
    assert factors == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_every_family_ramps_during_warmup():
    for family in ("constant", "cosine", "step"):
        assert schedule_factor(family, 1, total_steps=100, warmup_steps=4) == 0.5


def test_unknown_family_names_the_choices():
    with pytest.raises(ConfigError, match="constant"):
        schedule_factor("linear", 0, 10, 0)


def test_compress_is_exact_for_constant_stages_and_ramps():
    lrs = [0.1 * (i + 1) / 4 for i in range(4)] + [0.3] * 5 + [0.01] * 3
    segments = compress_lrs(lrs)
    assert segments == [(0, 3, 0.025, 0.1), (4, 8, 0.3, 0.3), (9, 11, 0.01, 0.01)]
    assert expand_segments(segments) == pytest.approx(lrs, rel=1e-12)


def test_compress_keeps_a_cosine_within_tolerance_in_few_segments():
    lrs = [0.03 * schedule_factor("cosine", s, 2000, 40) for s in range(2000)]
    segments = compress_lrs(lrs, rtol=1e-3)
    assert len(segments) < 100
    restored = expand_segments(segments)
    assert len(restored) == len(lrs)
    worst = max(abs(a - b) / b for a, b in zip(restored, lrs, strict=True) if b > 0)
    assert worst <= 1e-3 + 1e-12


def test_compress_of_nothing_is_nothing():
    assert compress_lrs([]) == []
