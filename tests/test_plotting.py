import math
import sys
from pathlib import Path

import numpy as np
import pytest

from autolrs.core.history import CandidateRecord, StageRecord
from autolrs.errors import AutoLRSError
from autolrs.plotting import StepRecord, ValPoint, plot_found_schedule, plot_schedule

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fake_run(
    stage_lengths: tuple[int, ...] = (20, 40, 80, 80, 80), num_candidates: int = 3
) -> tuple[list[StepRecord], list[StageRecord], list[ValPoint]]:
    """A self-consistent run: k candidates of τ/10 steps, then τ stage steps, per stage.

    Stages at the longest length are judged by validation loss, measured every 2 trial steps.
    """
    rng = np.random.default_rng(0)
    steps: list[StepRecord] = []
    history: list[StageRecord] = []
    val_points: list[ValPoint] = []
    update_step = 0
    level = 2.3

    def execute(phase: str, lr: float, loss: float) -> None:
        steps.append(StepRecord(len(steps) + 1, update_step, phase, lr, loss))  # type: ignore[arg-type]

    for index, stage_steps in enumerate(stage_lengths):
        trial_steps = stage_steps // 10
        metric = "val" if stage_steps == max(stage_lengths) else "train"
        record = StageRecord(index, update_step, len(steps), stage_steps, trial_steps, metric)
        lrs = np.exp(rng.uniform(math.log(1e-3), math.log(1.0), size=num_candidates))
        for lr in lrs:
            curve = []
            for t in range(1, trial_steps + 1):
                loss = level * math.exp(-0.02 * t * lr) + 0.01 * rng.standard_normal()
                execute("trial", float(lr), loss)
                curve.append(loss)
                if metric == "val" and t % 2 == 0:
                    val_points.append(ValPoint(len(steps), loss + 0.05))
            forecast = curve[-1] * 0.9
            record.candidates.append(
                CandidateRecord(
                    float(lr), trial_steps, list(range(1, trial_steps + 1)), curve, forecast, True
                )
            )
        best = min(record.candidates, key=lambda c: c.forecast or math.inf)
        record.chosen_lr = best.lr
        record.chosen_forecast = best.forecast
        for _ in range(stage_steps):
            level *= 0.995
            execute("stage", best.lr, level + 0.02 * rng.standard_normal())
            update_step += 1
        record.final_loss = level
        val_points.append(ValPoint(len(steps), level + 0.05))
        history.append(record)
    return steps, history, val_points


def test_plot_schedule_writes_a_png(tmp_path: Path) -> None:
    steps, history, val_points = fake_run()

    path = plot_schedule(steps, history, tmp_path / "sub" / "schedule.png", val_points=val_points)

    assert path == tmp_path / "sub" / "schedule.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000  # two panels with curves, not an empty canvas


def test_plot_schedule_works_without_history_or_val_points(tmp_path: Path) -> None:
    steps = [StepRecord(i, i - 1, "warmup", 0.01 * i, 1.0 / i) for i in range(1, 30)]

    path = plot_schedule(steps, [], tmp_path / "warmup.png")

    assert path.read_bytes().startswith(PNG_SIGNATURE)


def test_plot_schedule_handles_non_positive_loss(tmp_path: Path) -> None:
    steps = [StepRecord(i, i - 1, "stage", 0.1, 1.0 - 0.1 * i) for i in range(1, 20)]

    path = plot_schedule(steps, [], tmp_path / "negative.png")

    assert path.stat().st_size > 0


def test_plot_schedule_rejects_no_steps(tmp_path: Path) -> None:
    with pytest.raises(AutoLRSError, match="at least one step record"):
        plot_schedule([], [], tmp_path / "empty.png")


def test_step_record_rejects_unknown_phase() -> None:
    with pytest.raises(AutoLRSError, match="phase must be one of"):
        StepRecord(1, 0, "explore", 0.1, 1.0)  # type: ignore[arg-type]


def test_plot_found_schedule_writes_a_png(tmp_path: Path) -> None:
    _, history, _ = fake_run()

    path = plot_found_schedule(history, tmp_path / "found.png")

    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 10_000


def test_plot_found_schedule_draws_a_cooldown_as_a_decay(tmp_path: Path) -> None:
    stage = StageRecord(0, 0, 0, 100, 10, "train", chosen_lr=0.1)
    cooldown = StageRecord(1, 100, 140, 50, 10, "train", chosen_lr=0.1, cooldown=True)
    drawn: list[tuple[list[float], list[float]]] = []
    from matplotlib.axes import Axes

    real_plot = Axes.plot

    def spy(self, xs, ys, *args, **kwargs):
        drawn.append((list(xs), list(ys)))
        return real_plot(self, xs, ys, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Axes, "plot", spy)
        path = plot_found_schedule([stage, cooldown], tmp_path / "found.png")

    assert path.read_bytes().startswith(PNG_SIGNATURE)
    flat, decay = drawn
    assert flat == ([0, 100], [0.1, 0.1])
    assert decay[0][0] == 100 and len(decay[0]) == 49
    assert decay[1][0] == pytest.approx(0.1) and decay[1][-1] == pytest.approx(0.1 / 49)


def test_plot_found_schedule_rejects_history_without_chosen_lr(tmp_path: Path) -> None:
    record = StageRecord(0, 0, 0, 10, 1, "train")

    with pytest.raises(AutoLRSError, match="none has one"):
        plot_found_schedule([record], tmp_path / "found.png")


@pytest.mark.parametrize("plot", ["schedule", "found"])
def test_missing_matplotlib_names_the_extra(
    plot: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    steps, history, _ = fake_run()
    # A None entry in sys.modules makes every import of matplotlib raise ImportError.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)

    with pytest.raises(AutoLRSError, match=r"pip install autolrs\[plot\]"):
        if plot == "schedule":
            plot_schedule(steps, history, tmp_path / "x.png")
        else:
            plot_found_schedule(history, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
