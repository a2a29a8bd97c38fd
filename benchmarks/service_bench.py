"""Throughput and latency of the AutoLRS service with many jobs at once.

Usage::

    python benchmarks/service_bench.py                  # 1, 10 and 50 concurrent jobs
    python benchmarks/service_bench.py --jobs 1,4 --reports 5 --out /tmp/bench

Starts ``python -m autolrs.service`` on a free loopback port with a fresh database (or uses
``--url``), then for each number N of concurrent jobs runs N client threads, each driving its own
job through a simulated training run with :class:`~autolrs.service.RemoteController`. Measured:

- ``report``: each ``start()``/``report()`` round trip, which includes the controller's own
  decision (a forecast fit and a GP fit on the server);
- ``replay``: the same report sent again, answered from the database without running the
  controller: the service's own cost per request (HTTP, validation, SQLite);
- ``controller``: the same decisions taken in-process, one job after another, for reference.

Both the GP with fixed kernel hyperparameters (``fixed``, a few ms per decision) and with
hyperparameters fitted by maximum likelihood (``fitted``, the library's default, ~100 ms) are
measured. Server and clients share this machine's cores, as they would on a training node.
Writes ``service.json`` (every number) and ``service.md`` (a summary) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from autolrs import AutoLRSConfig, __version__
from autolrs.core import Controller, Report, Restore, Snapshot, Train
from autolrs.service import RemoteController

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> int:
    """Run the benchmark; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1,10,50", help="concurrent jobs, comma-separated")
    parser.add_argument("--reports", type=int, default=20, help="reports per job (fixed GP)")
    parser.add_argument(
        "--fitted-reports", type=int, default=10, help="reports per job with the fitted GP"
    )
    parser.add_argument("--gp", default="fixed,fitted", help="GP settings: fixed, fitted")
    parser.add_argument("--url", default=None, help="use this running server instead")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for the results")
    args = parser.parse_args()
    job_counts = [int(n) for n in args.jobs.split(",")]
    settings = args.gp.split(",")
    # The simulated runs diverge on purpose; the controller's warnings about it are noise here.
    logging.getLogger("autolrs").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as folder, _server(args.url, Path(folder)) as url:
        results = []
        for gp in settings:
            reports = args.reports if gp == "fixed" else args.fitted_reports
            for jobs in job_counts:
                results.append(_measure(url, gp, jobs, reports))
                _print_row(results[-1])

    data = {"machine": _machine(), "autolrs": __version__, "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "service.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "service.md").write_text(_markdown(data))
    print(f"wrote {args.out / 'service.json'} and {args.out / 'service.md'}")
    return 0


# -- the workload ----------------------------------------------------------------------------


def _config(gp: str, seed: int) -> AutoLRSConfig:
    # Short stages so that every job crosses several stages in a few dozen reports.
    return AutoLRSConfig(
        min_lr=1e-3,
        max_lr=1.0,
        stage_steps=40,
        max_stage_steps=80,
        trial_fraction=0.25,
        num_candidates=4,
        val_every=4,
        gp_fit_hyperparameters=gp == "fitted",
        seed=seed,
    )


class _Trainee:
    """A one-number model: each step at LR η advances it; the loss decays with progress."""

    def __init__(self, offset: float) -> None:
        self.progress = 0.0
        self.saved = 0.0
        self.offset = offset

    def execute(self, commands: list) -> Report:
        for command in commands:
            if isinstance(command, Snapshot):
                self.saved = self.progress
            elif isinstance(command, Restore):
                self.progress = self.saved
        train: Train = commands[-1]
        losses, val_losses = [], []
        for step in range(train.steps):
            lr = train.lr_at(step)
            self.progress += lr * math.exp(-lr / 0.2)
            loss = (
                math.nan
                if lr > 0.7 and step >= 2
                else 0.2 + self.offset + 2.0 * math.exp(-self.progress / 5.0)
            )
            losses.append(loss)
            if train.should_abort(loss):
                break
            if train.evaluates_after(step):
                val_losses.append(1.1 * loss)
        return Report(seq=train.seq, losses=losses, val_losses=val_losses)


def _measure(url: str, gp: str, jobs: int, reports: int) -> dict[str, Any]:
    report_ms: list[list[float]] = [[] for _ in range(jobs)]
    replay_ms: list[list[float]] = [[] for _ in range(jobs)]
    barrier = threading.Barrier(jobs + 1)
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            remote = RemoteController(
                url, _config(gp, index), validation=index % 2 == 0, timeout=300
            )
            trainee = _Trainee(0.01 * index)
            barrier.wait()
            began = time.perf_counter()
            commands = remote.start()
            report_ms[index].append(1000 * (time.perf_counter() - began))
            report = None
            for _ in range(reports):
                report = trainee.execute(commands)
                began = time.perf_counter()
                commands = remote.report(report)
                report_ms[index].append(1000 * (time.perf_counter() - began))
            barrier.wait()
            for _ in range(reports):  # the last report again: answered from the database
                began = time.perf_counter()
                remote.report(report)
                replay_ms[index].append(1000 * (time.perf_counter() - began))
            remote.delete()
            remote.close()
        except BaseException as error:
            failures.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(jobs)]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    barrier.wait()
    report_wall = time.perf_counter() - began
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    replay_wall = time.perf_counter() - began
    if failures:
        raise failures[0]

    return {
        "gp": gp,
        "jobs": jobs,
        "reports_per_job": reports,
        "report": _summary(report_ms, report_wall),
        "replay": _summary(replay_ms, replay_wall),
        "controller_ms_per_decision": _controller_ms(gp, jobs, reports),
    }


def _controller_ms(gp: str, jobs: int, reports: int) -> float:
    """Mean time of one decision taken in-process, over the same jobs (at most ten of them)."""
    warmup = Controller(_config(gp, 0), validation=True)  # first calls pay for lazy imports
    warmup.report(_Trainee(0.0).execute(warmup.start()))
    took, count = 0.0, 0
    for index in range(min(jobs, 10)):
        controller = Controller(_config(gp, index), validation=index % 2 == 0)
        trainee = _Trainee(0.01 * index)
        began = time.perf_counter()
        commands = controller.start()
        took += time.perf_counter() - began
        for _ in range(reports):
            report = trainee.execute(commands)
            began = time.perf_counter()
            commands = controller.report(report)
            took += time.perf_counter() - began
        count += reports + 1
    return round(1000 * took / count, 3)


def _summary(samples: list[list[float]], wall: float) -> dict[str, Any]:
    every = np.concatenate([np.asarray(s) for s in samples])
    p50, p95, p99 = np.percentile(every, [50, 95, 99])
    return {
        "requests": int(every.size),
        "wall_s": round(wall, 3),
        "requests_per_s": round(every.size / wall, 1),
        "latency_ms": {
            "p50": round(float(p50), 2),
            "p95": round(float(p95), 2),
            "p99": round(float(p99), 2),
            "mean": round(float(every.mean()), 2),
            "max": round(float(every.max()), 2),
        },
    }


# -- the server and the report ---------------------------------------------------------------


class _server:  # noqa: N801 - used as a context manager, like open()
    """A server subprocess on a free loopback port, or the given URL."""

    def __init__(self, url: str | None, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> str:
        if self.url is not None:
            return self.url
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "autolrs.service", "--port", str(port)]
        command += ["--db", str(self.folder / "bench.db")]
        self.log = open(self.folder / "server.log", "wb")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2):
                    return url
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start: {(self.folder / 'server.log').read_text()}")

    def __exit__(self, *exc_info: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.log.close()


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        # Other work on the machine skews the numbers; this says how busy it was.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def _print_row(result: dict[str, Any]) -> None:
    report, replay = result["report"], result["replay"]
    print(
        f"gp={result['gp']:<6} jobs={result['jobs']:>3}  report: "
        f"{report['requests_per_s']:>7.1f} req/s, p50/p95/p99 "
        f"{report['latency_ms']['p50']:.1f}/{report['latency_ms']['p95']:.1f}/"
        f"{report['latency_ms']['p99']:.1f} ms  replay: {replay['requests_per_s']:>7.1f} req/s, "
        f"p50 {replay['latency_ms']['p50']:.1f} ms  (in-process decision "
        f"{result['controller_ms_per_decision']:.1f} ms)",
        flush=True,
    )


def _markdown(data: dict[str, Any]) -> str:
    machine = data["machine"]
    lines = [
        "# AutoLRS service benchmark",
        "",
        f"autolrs {data['autolrs']}, Python {machine['python']}, {machine['cpus']} CPUs "
        f"({machine['platform']}, load average {machine['load_average_1m_at_end']} at the "
        "end); server and clients on the same machine, over loopback.",
        "",
        "`report`: a start or report round trip, the server's decision included. `replay`: the "
        "same report again, answered from the database (the service's own cost). `decision`: "
        "the controller's decision alone, in-process.",
        "",
        "| GP | jobs | report req/s | p50 ms | p95 ms | p99 ms | replay req/s | replay p50 ms "
        "| replay p99 ms | decision ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["results"]:
        rep, rpl = r["report"], r["replay"]
        lines.append(
            f"| {r['gp']} | {r['jobs']} | {rep['requests_per_s']:.1f} | "
            f"{rep['latency_ms']['p50']:.1f} | {rep['latency_ms']['p95']:.1f} | "
            f"{rep['latency_ms']['p99']:.1f} | {rpl['requests_per_s']:.1f} | "
            f"{rpl['latency_ms']['p50']:.1f} | {rpl['latency_ms']['p99']:.1f} | "
            f"{r['controller_ms_per_decision']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
