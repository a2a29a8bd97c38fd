"""A server killed with SIGKILL and restarted on the same database loses no job and no decision."""

from __future__ import annotations

import threading
import time

import pytest

from autolrs.core import Controller
from autolrs.service import RemoteController

JOBS = 4
REPORTS = 14  # three and a half stages per job
GATE = 3  # reports before the kill: the first stage's candidates are done, its training not


@pytest.mark.slow
def test_clients_carry_on_through_a_kill_and_restart_without_repeating_or_skipping(
    tmp_path, helpers
):
    server = helpers.ServerProcess(tmp_path / "jobs.db").start()
    setups = [(helpers.small_config(seed=20 + i), i % 2 == 1, 0.02 * i) for i in range(JOBS)]
    progress = [0] * JOBS  # reports answered per job
    results: list = [None] * JOBS
    failures: list[BaseException] = []
    # Every job pauses after GATE reports, so that all are mid-run when the server dies.
    waiting = threading.Barrier(JOBS + 1)
    go = threading.Event()

    class Counting(RemoteController):
        def report(self, report):
            commands = super().report(report)
            progress[self.index] += 1
            if progress[self.index] == GATE:
                waiting.wait(timeout=120)
                go.wait(timeout=120)
            return commands

    def run(index: int) -> None:
        config, validation, offset = setups[index]
        # Retries outlast the restart: up to about a minute of backoff.
        remote = Counting(server.url, config, validation=validation, retries=20, backoff=0.05)
        remote.index = index
        try:
            replies = helpers.drive(remote, REPORTS, helpers.Trainee(offset))
            results[index] = (replies, remote.state_dict())
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(JOBS)]
    try:
        for thread in threads:
            thread.start()
        waiting.wait(timeout=120)
        go.set()
        time.sleep(0.02)  # let the jobs send their next reports: kill with requests in flight
        server.kill()
        at_kill = list(progress)
        time.sleep(0.5)  # clients now meet a refused connection, and back off
        server.start()
        for thread in threads:
            thread.join(timeout=180)
    finally:
        server.stop()

    assert not failures, failures
    assert all(GATE <= n < REPORTS for n in at_kill), at_kill
    for (config, validation, offset), (replies, state) in zip(setups, results, strict=True):
        local = Controller(config, validation=validation)
        assert replies == helpers.drive(local, REPORTS, helpers.Trainee(offset))
        assert helpers.canonical(state) == helpers.canonical(local.state_dict())


@pytest.mark.slow
def test_a_restarted_server_replays_the_reply_committed_before_the_kill(tmp_path, helpers):
    server = helpers.ServerProcess(tmp_path / "jobs.db").start()
    try:
        remote = RemoteController(server.url, helpers.small_config(seed=30), validation=False)
        trainee = helpers.Trainee()
        helpers.drive(remote, 2, trainee)
        report = trainee.execute(remote.last_reply)
        body = {"seq": report.seq, "losses": list(report.losses), "val_losses": []}
        path = f"/jobs/{remote.job_id}/reports"
        before = helpers.call(server.url, "POST", path, body)

        server.kill()
        server.start()
        after = helpers.call(server.url, "POST", path, body)
    finally:
        server.stop()

    assert before[0] == after[0] == 200
    assert after[1]["autolrs-replayed"] == "true"
    assert after[2] == before[2]
