import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from autolrs.cli import main  # noqa: E402
from autolrs.core.history import CandidateRecord, StageRecord  # noqa: E402
from autolrs.demo import format_schedule, load_data  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def restore_torch_threads():
    # The demo sets the thread count of the whole process; give the other tests theirs back.
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_short_demo_writes_a_schedule_that_trains_the_network(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "demo"

    # 2400 steps, search included: τ grows from 100 to τ_max = 300, whose 30-step trials give
    # 6 validation points, enough for candidates to be judged on validation; then a cooldown.
    status = main(["demo", "--steps", "2400", "--seed", "0", "--out", str(out), "--quiet"])

    printed = capsys.readouterr().out
    assert status == 0
    assert "Schedule found" in printed
    assert f"wrote {out / 'schedule.png'}" in printed
    assert (out / "schedule.png").read_bytes().startswith(b"\x89PNG")

    summary = json.loads((out / "history.json").read_text())
    stages = [StageRecord.from_dict(s) for s in summary["stages"]]
    config = summary["config"]
    assert summary["update_steps"] + summary["search_steps"] == 2400
    assert len(stages) >= 3 and stages[-1].cooldown and not stages[-2].cooldown
    # The stage length doubles up to τ_max, after which candidates are judged on validation.
    assert stages[0].metric == "train"
    assert stages[-2].metric == "val"
    chosen = [s.chosen_lr for s in stages]
    assert all(config["min_lr"] <= lr <= config["max_lr"] for lr in chosen)

    with (out / "steps.csv").open() as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == summary["update_steps"] + summary["search_steps"]
    assert [int(r["total_step"]) for r in rows] == list(range(1, len(rows) + 1))
    assert {r["phase"] for r in rows} == {"trial", "stage"}
    stage_losses = [float(r["loss"]) for r in rows if r["phase"] == "stage"]
    assert np.mean(stage_losses[-40:]) < 0.5 * np.mean(stage_losses[:10])

    accuracy = float(re.search(r"accuracy (\d+\.\d)%", printed).group(1))
    assert accuracy > 80.0


@pytest.mark.slow
def test_readme_example_runs() -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    loop_example = blocks[0]  # the plain training loop; later blocks are one-line snippets
    budget_line = "total_steps = 2000\n"
    assert budget_line in loop_example
    # Same code on a smaller budget, to keep the test short.
    code = loop_example.replace(budget_line, "total_steps = 400\n")
    torch.set_num_threads(1)
    namespace: dict[str, object] = {}

    exec(compile(code, str(README), "exec"), namespace)

    scheduler = namespace["scheduler"]
    assert scheduler.finished and scheduler.total_steps == 400
    assert 0 < scheduler.search_steps < scheduler.update_steps
    assert any(stage.cooldown for stage in scheduler.history)


def test_data_split_is_fixed_and_standardised() -> None:
    x_train, y_train, x_val, y_val = load_data()
    again = load_data()

    assert x_train.shape == (1437, 64) and x_val.shape == (360, 64)
    assert y_train.dtype == torch.int64 and set(y_val.tolist()) == set(range(10))
    assert torch.equal(x_val, again[2]) and torch.equal(y_train, again[1])
    # Standardised with the training statistics; constant pixels stay at 0.
    assert torch.allclose(x_train.mean(dim=0), torch.zeros(64), atol=1e-5)
    assert x_train.std(dim=0).max().item() == pytest.approx(1.0, abs=1e-3)


def test_schedule_table_has_a_row_per_stage_and_dashes_for_missing_values() -> None:
    finished = StageRecord(0, 0, 0, 10, 1, "train", chosen_lr=0.05, chosen_forecast=0.5)
    finished.final_loss = 0.4321
    finished.candidates = [
        CandidateRecord(0.05, 1, [1], [0.6], 0.5, True),
        CandidateRecord(1.0, 1, [1], [float("nan")], None, False, reason="non_finite"),
    ]
    running = StageRecord(1, 10, 12, 20, 2, "val")
    cooldown = StageRecord(2, 30, 40, 10, 2, "val", chosen_lr=0.05, cooldown=True)

    lines = format_schedule([finished, running, cooldown]).splitlines()

    assert len(lines) == 5
    assert lines[2].split() == ["0", "0", "10", "train", "2", "1", "0.05", "0.5", "0.4321"]
    assert lines[3].split() == ["1", "10", "20", "val", "0", "0", "-", "-", "-"]
    assert lines[4].split() == ["2", "30", "10", "val", "0", "0", "0.05→0", "-", "-"]
