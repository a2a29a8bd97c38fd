"""A run killed with SIGKILL anywhere and resumed from its last checkpoint decides as if never
killed: same history, same counters, same final weights."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("kill_worker.py")

pytestmark = pytest.mark.slow


def run(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(WORKER), "--ckpt", str(tmp / "ckpt.pt"), "--out"]
    command += [str(tmp / "result.json"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("reference")
    result = run(tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads((tmp / "result.json").read_text())


def phase_boundaries(reference: dict) -> list[int]:
    """Executed steps where the run changes phase: in and at the end of warmup, the first
    trial, a restore, the start of stage training, a validation trial and mid-stage."""
    first, second = reference["history"][:2]
    restore = first["start_total_step"] + first["candidates"][0]["steps"]
    stage_training = first["start_total_step"] + sum(c["steps"] for c in first["candidates"])
    return sorted(
        {
            3,
            first["start_total_step"] - 1,
            first["start_total_step"],
            restore,
            stage_training,
            stage_training + first["stage_steps"] // 2,
            second["start_total_step"] + 1,  # a trial judged by the validation loss
        }
    )


def kill_and_resume(tmp: Path, kill: list[str]) -> str | dict:
    tmp.mkdir()
    killed = run(tmp, *kill)
    if killed.returncode != -signal.SIGKILL:
        return f"{kill}: not killed (status {killed.returncode}): {killed.stderr[-500:]}"
    resumed = run(tmp)
    if resumed.returncode != 0:
        return f"{kill}: resume failed: {resumed.stderr[-500:]}"
    return json.loads((tmp / "result.json").read_text())


def test_the_reference_run_covers_warmup_trials_restores_and_validation(reference):
    assert len(reference["history"]) >= 3
    assert {s["metric"] for s in reference["history"]} == {"train", "val"}
    assert reference["counters"][1] > 0


def test_killed_anywhere_and_resumed_the_run_is_the_same(tmp_path, reference):
    executed = sum(reference["counters"])
    points = random.Random(1234).sample(range(1, executed), 20) + phase_boundaries(reference)
    scenarios = [["--kill-at", str(p)] for p in sorted(set(points))]
    scenarios += [["--kill-in-eval", str(n)] for n in (1, 5, 12)]

    # Two at a time: each scenario is two real processes, killed and restarted.
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(
            pool.map(
                lambda i: kill_and_resume(tmp_path / f"s{i}", scenarios[i]), range(len(scenarios))
            )
        )

    failures = []
    for scenario, result in zip(scenarios, results, strict=True):
        if isinstance(result, str):
            failures.append(result)
        elif result != reference:
            differing = [key for key in reference if result[key] != reference[key]]
            failures.append(f"{scenario}: {differing} differ from the uninterrupted run")
    assert len(scenarios) >= 20 + 3  # 20 random kill points at least, and the evaluations
    assert not failures, "\n".join(failures)
