"""The integration examples run to the end and print the schedule they found."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
EXAMPLES = REPO / "examples"

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("lightning_example.py", ["--steps", "100"]),
        ("hf_trainer_example.py", ["--steps", "100"]),
    ],
)
def test_example_trains_its_budget_and_prints_the_schedule(tmp_path, script, args):
    if script.startswith("hf"):
        args = [*args, "--out", str(tmp_path)]
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    found = re.search(r"^(\d+) update steps \+ (\d+) search steps", result.stdout, re.MULTILINE)
    assert found and int(found.group(1)) + int(found.group(2)) == 100
    assert int(found.group(2)) > 0
    assert re.search(r"from update step +0: lr = ", result.stdout)
