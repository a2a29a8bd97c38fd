"""The service benchmark script runs end to end (a tiny run; the numbers are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "service_bench.py"


def test_the_benchmark_writes_its_json_and_markdown(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--jobs",
            "1,2",
            "--reports",
            "2",
            "--gp",
            "fixed",
            "--out",
            str(tmp_path),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr

    data = json.loads((tmp_path / "service.json").read_text())
    assert [(r["gp"], r["jobs"]) for r in data["results"]] == [("fixed", 1), ("fixed", 2)]
    for result in data["results"]:
        assert result["report"]["requests"] == result["jobs"] * 3  # start and two reports
        assert set(result["report"]["latency_ms"]) == {"p50", "p95", "p99", "mean", "max"}
    assert "| fixed | 2 |" in (tmp_path / "service.md").read_text()
