import math

import pytest

from autolrs.bench.metrics import Interval, Reach
from autolrs.bench.report import _verdicts
from autolrs.bench.summary import BaselineSummary, MethodSummary, TaskSummary


def point(value: float) -> Interval:
    return Interval(value, value, value, 3)


def method(
    name: str,
    *,
    final: float,
    cost: float = math.inf,
    speedup_cost: float = 0.0,
    speedup_update: float = 0.0,
    search_steps: int | None = None,
) -> MethodSummary:
    details = None
    if search_steps is not None:
        details = {"total_steps": 1000 + search_steps, "search_steps": search_steps}
    return MethodSummary(
        method=name,
        lr=None,
        seeds=3,
        reached=3 if math.isfinite(cost) else 0,
        update_steps=cost,
        cost=cost,
        speedup_update=point(speedup_update),
        speedup_cost=point(speedup_cost),
        speedup_slack=None,
        speedup_wall=None,
        final=point(final),
        quality_t=point(final),
        quality_2t=point(final),
        wall_s=1.0,
        autolrs=details,
    )


def task(name: str, target: float, *methods: MethodSummary) -> TaskSummary:
    baseline = BaselineSummary(
        family="cosine",
        lr=0.1,
        seeds=3,
        target=target,
        target_std=0.01,
        reach=Reach(True, 1000, 1000, 1.0),
        slack_reach=Reach(True, 900, 900, 0.9),
        sweep_cost=10_000,
        protocol_cost=15_000,
    )
    return TaskSummary(task=name, budget=1000, baseline=baseline, methods=list(methods))


def beating(name: str) -> TaskSummary:
    """A task on which the default reaches L* sooner than the baseline and the LR-free rivals."""
    return task(
        name,
        1.0,
        method(
            "autolrs", final=0.9, cost=800, speedup_cost=1.25, speedup_update=1.5, search_steps=80
        ),
        method("autolrs-paper", final=1.2, search_steps=900),
        method("schedulefree", final=1.1),
        method("prodigy", final=0.95, cost=900),
    )


def missing(name: str, final: float) -> TaskSummary:
    """A task on which the default ends at ``final``, above L* = 1, never reaching it."""
    return task(
        name,
        1.0,
        method("autolrs", final=final, search_steps=120),
        method("autolrs-paper", final=1.3, search_steps=1000),
        method("schedulefree", final=0.98, cost=700),
        method("prodigy", final=1.2),
    )


def test_goals_met_on_four_tasks_of_five_are_met():
    summaries = {s.task: s for s in [*(beating(f"t{i}") for i in range(4)), missing("t4", 1.1)]}

    lines = "\n".join(_verdicts(summaries))

    assert "at equal or better final quality: **met**; median 8.0%" in lines
    assert "on 5 of 5 tasks" in lines
    assert "Cost speedup ≥ 1 on at least 4 of 5 tasks: **met**; on 4 (t0, t1, t2, t3)" in lines
    assert "against L* on the others: t4 +10.0%" in lines
    assert "Median update-step speedup ≥ 1.3: **met**; 1.50" in lines
    assert "on at least 3 of 5 tasks: **met**; on 4 (t0, t1, t2, t3)" in lines


def test_goals_missed_say_by_how_much():
    summaries = {
        "a": beating("a"),
        "b": missing("b", 1.05),
        "c": missing("c", 1.4),  # above the paper's algorithm too
    }

    lines = _verdicts(summaries)
    text = "\n".join(lines)

    # 8%, 12%, 12% of the update steps; the median passes, the quality on c does not.
    assert "final quality: **not met**; median 12.0%" in text
    assert "on 2 of 3 tasks (above it on c)" in text
    assert "on at least 3 of 3 tasks: **not met**; on 1 (a)" in text
    assert "against L* on the others: b +5.0%, c +40.0%" in text
    # The median of 1.5, 0 and 0.
    assert "Median update-step speedup ≥ 1.3: **not met**; 0.00" in text
    # Schedule-Free reaches L* on b and c, the default does not.
    assert "on at least 2 of 3 tasks: **not met**; on 1 (a)" in text
    assert len([line for line in lines if line.startswith("- ")]) == 4


def test_no_verdict_without_the_default_on_every_task():
    summaries = {"a": beating("a"), "b": task("b", 1.0, method("cosine", final=1.0))}

    assert _verdicts(summaries) == []


@pytest.mark.parametrize(
    ("count", "fast", "beaten"), [(1, 1, 1), (2, 2, 2), (5, 4, 3), (10, 8, 6)]
)
def test_the_tasks_needed_are_the_goals_shares_rounded_up(count, fast, beaten):
    summaries = {f"t{i}": missing(f"t{i}", 1.1) for i in range(count)}

    text = "\n".join(_verdicts(summaries))

    assert f"Cost speedup ≥ 1 on at least {fast} of {count} tasks" in text
    assert f"schedulefree and prodigy on at least {beaten} of {count} tasks" in text
