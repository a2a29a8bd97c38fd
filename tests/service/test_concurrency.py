"""Many jobs at once stay isolated; many copies of one request make one decision."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

from autolrs.core import Controller
from autolrs.service import RemoteController

JOBS = 50
REPORTS = 5  # one stage of 3 candidates and its training, and the next stage's first trial


def test_fifty_concurrent_jobs_each_get_their_own_correct_history(service, helpers):
    # Every job differs: its own seed, validation or not, and its own loss curves.
    setups = [(helpers.small_config(seed=i), i % 2 == 0, 0.01 * i) for i in range(JOBS)]
    barrier = threading.Barrier(JOBS)

    def run_remote(setup):
        config, validation, offset = setup
        remote = RemoteController(service.url, config, validation=validation, timeout=120)
        barrier.wait(timeout=60)  # all jobs start together, so their requests interleave
        replies = helpers.drive(remote, REPORTS, helpers.Trainee(offset))
        remote.close()
        return replies, remote.state_dict()

    with ThreadPoolExecutor(max_workers=JOBS) as pool:
        results = list(pool.map(run_remote, setups))

    job_ids = {state["service"]["job_id"] for _, state in results}
    assert len(job_ids) == JOBS
    for (config, validation, offset), (replies, state) in zip(setups, results, strict=True):
        local = Controller(config, validation=validation)
        assert replies == helpers.drive(local, REPORTS, helpers.Trainee(offset))
        assert helpers.canonical(state) == helpers.canonical(local.state_dict())


def test_one_report_sent_by_many_threads_at_once_is_decided_once(service, helpers):
    config = helpers.small_config(seed=11)
    job_id = uuid.uuid4().hex
    body = {"config": config.to_dict(), "validation": False, "job_id": job_id}
    _, _, view = helpers.call(service.url, "POST", "/jobs", body)
    local = Controller(config, validation=False)
    report = helpers.Trainee().execute(local.start())
    payload = {"seq": report.seq, "losses": list(report.losses), "val_losses": []}
    copies = 16
    barrier = threading.Barrier(copies)

    def send(_):
        barrier.wait(timeout=60)
        return helpers.call(service.url, "POST", f"/jobs/{job_id}/reports", payload)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        answers = list(pool.map(send, range(copies)))

    assert {status for status, _, _ in answers} == {200}
    assert sorted(h["autolrs-replayed"] for _, h, _ in answers) == ["false"] + ["true"] * 15
    assert all(reply == answers[0][2] for _, _, reply in answers)
    expected = [c.to_dict() for c in local.report(report)]
    assert answers[0][2]["commands"] == expected
    _, _, state = helpers.call(service.url, "GET", f"/jobs/{job_id}/state")
    assert state["search_steps"] == local.search_steps  # counted once, not sixteen times


def test_racing_creates_of_one_job_id_make_one_job(service, helpers):
    config = helpers.small_config(seed=12)
    job_id = uuid.uuid4().hex
    body = {"config": config.to_dict(), "validation": True, "job_id": job_id}
    copies = 8
    barrier = threading.Barrier(copies)

    def create(_):
        barrier.wait(timeout=60)
        return helpers.call(service.url, "POST", "/jobs", body)

    with ThreadPoolExecutor(max_workers=copies) as pool:
        answers = list(pool.map(create, range(copies)))

    assert sorted(status for status, _, _ in answers) == [200] * 7 + [201]
    commands = {str(reply["commands"]) for _, _, reply in answers}
    assert len(commands) == 1
