"""AutoLRS under torch.distributed: real processes, gloo on CPU, DDP-wrapped models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")
EXAMPLE = Path(__file__).parents[2] / "examples" / "ddp_train.py"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(world_size: int, *args: str, timeout: float = 240) -> list[subprocess.CompletedProcess]:
    """Start one process per rank, as torchrun would, and wait for all of them."""
    port = free_port()
    procs = []
    for rank in range(world_size):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), *args],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    # Rank 0 is the healthy rank under test; a faulty rank may linger, so it gets 20 s more.
    results = []
    for rank, proc in enumerate(procs):
        try:
            out, err = proc.communicate(timeout=timeout if rank == 0 else 20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return results


def read_ranks(out: Path, world_size: int) -> list[dict]:
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world_size)]


@pytest.mark.parametrize("world_size", [2, 3])
def test_every_rank_takes_identical_decisions_and_keeps_identical_replicas(tmp_path, world_size):
    results = launch(world_size, "--steps", "70", "--out", str(tmp_path))
    for result in results:
        assert result.returncode == 0, result.stderr[-3000:]

    ranks = read_ranks(tmp_path, world_size)
    reference = ranks[0]
    assert len(reference["history"]) >= 3, "at least two whole stages and a third begun"
    assert {s["metric"] for s in reference["history"]} == {"train", "val"}
    assert reference["restored_params"], "restores happened"
    for other in ranks[1:]:
        assert other["history"] == reference["history"]
        assert other["counters"] == reference["counters"]
        # After every restore, and at the end, the replicas agree exactly.
        assert other["restored_params"] == reference["restored_params"]
        assert other["state"] == reference["state"]


def run_fault(
    tmp_path: Path, fault: str, *extra: str
) -> tuple[list[subprocess.CompletedProcess], float]:
    start = time.monotonic()
    args = ["--steps", "70", "--out", str(tmp_path), "--fault", fault, "--timeout", "5", *extra]
    results = launch(2, *args, timeout=120)
    return results, time.monotonic() - start


def test_a_rank_that_dies_ends_the_others_with_a_clear_error(tmp_path):
    results, elapsed = run_fault(tmp_path, "die")
    assert results[1].returncode == 3
    assert results[0].returncode != 0
    assert "another rank has probably died" in results[0].stderr
    assert elapsed < 90


def test_a_rank_that_hangs_ends_the_others_within_the_timeout(tmp_path):
    start = time.monotonic()
    results, _ = run_fault(tmp_path, "stall")
    assert results[0].returncode == 1
    assert "another rank has probably died or stopped calling scheduler.step" in results[0].stderr
    assert "this process exits in 5 s" in results[0].stderr
    # The stalled rank sleeps 120 s; rank 0 gives up after 5 s and exits 5 s later, well before.
    assert time.monotonic() - start < 100


def test_ranks_whose_decisions_differ_stop_with_a_clear_error(tmp_path):
    results, elapsed = run_fault(tmp_path, "seed")
    for result in results:
        assert result.returncode != 0
        assert "ranks took different decisions" in result.stderr
        assert "same config" in result.stderr
    assert elapsed < 90


def test_the_torchrun_example_runs_on_two_processes(tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(EXAMPLE),
        "--steps",
        "300",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "from update step" in result.stdout
    ranks = read_ranks(tmp_path, 2)
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["params"] == ranks[1]["params"]
