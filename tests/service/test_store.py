"""The SQLite store: WAL mode, exact round trips, guarded writes, refusals of foreign files."""

from __future__ import annotations

import math
import sqlite3

import pytest

from autolrs.core import Controller
from autolrs.service import RemoteController
from autolrs.service.store import SCHEMA_VERSION, StaleRevision, Store, StoreError


def started_state(helpers, reports: int) -> dict:
    controller = Controller(helpers.small_config(seed=7), validation=False)
    helpers.drive(controller, reports)
    return controller.state_dict()


def test_the_database_is_in_wal_mode(tmp_path):
    Store(tmp_path / "jobs.db").close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_state_round_trips_exactly_nan_included(tmp_path, helpers):
    store = Store(tmp_path / "jobs.db")
    state = started_state(helpers, 4)
    losses = [c["losses"] for s in state["history"] for c in s["candidates"]]
    assert any(math.isnan(x) for curve in losses for x in curve), "want a diverged candidate"

    row = store.insert("a", state)
    loaded_row, loaded = store.load("a")

    assert loaded_row == row and row.revision == 1 and row.answered_seq is None
    assert helpers.canonical(loaded) == helpers.canonical(state)
    assert Controller.from_state_dict(loaded).state_dict().keys() == state.keys()
    store.close()


def test_a_write_from_a_stale_revision_is_refused_and_changes_nothing(tmp_path, helpers):
    store = Store(tmp_path / "jobs.db")
    state = started_state(helpers, 2)
    core = {k: v for k, v in state.items() if k != "history"}
    row = store.insert("a", state)
    newer = store.answer(row, core=core, history_from=0, records=[], seq=0, digest="d", reply="r")

    with pytest.raises(StaleRevision, match="revision 1"):
        store.answer(row, core=core, history_from=0, records=[], seq=1, digest="e", reply="s")
    assert store.head("a") == newer and store.reply("a") == "r"
    store.close()


def test_replacing_a_state_forgets_the_answered_report(tmp_path, helpers):
    store = Store(tmp_path / "jobs.db")
    state = started_state(helpers, 2)
    core = {k: v for k, v in state.items() if k != "history"}
    row = store.insert("a", state)
    row = store.answer(row, core=core, history_from=0, records=[], seq=1, digest="d", reply="r")

    row = store.replace(row, started_state(helpers, 5))

    assert row.answered_seq is None and store.reply("a") is None
    assert helpers.canonical(store.load("a")[1]) == helpers.canonical(started_state(helpers, 5))
    store.close()


def test_deleting_removes_the_job_and_its_stages(tmp_path, helpers):
    store = Store(tmp_path / "jobs.db")
    store.insert("a", started_state(helpers, 5))
    assert store.delete("a") is True
    assert store.delete("a") is False
    assert store.head("a") is None and store.load("a") is None
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM stages").fetchone()[0] == 0
    store.close()


def test_a_database_of_another_layout_version_is_refused(tmp_path):
    Store(tmp_path / "jobs.db").close()
    with sqlite3.connect(tmp_path / "jobs.db") as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    with pytest.raises(
        StoreError, match=f"layout version 99; this autolrs reads version {SCHEMA_VERSION}"
    ):
        Store(tmp_path / "jobs.db")


def test_a_file_that_is_not_a_database_is_refused(tmp_path):
    (tmp_path / "jobs.db").write_bytes(b"not a database, " * 100)
    with pytest.raises(StoreError, match="cannot use .* as the job database"):
        Store(tmp_path / "jobs.db")


def test_a_closed_store_and_a_bad_timeout_are_refused(tmp_path):
    store = Store(tmp_path / "jobs.db")
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.head("a")
    with pytest.raises(StoreError, match="busy_timeout"):
        Store(tmp_path / "other.db", busy_timeout=0)


def test_jobs_evicted_from_the_cache_are_reloaded_from_the_database_exactly(
    make_thread_server, helpers
):
    setups = [(helpers.small_config(seed=s), s == 1) for s in (0, 1)]
    with make_thread_server(cache_size=1) as url:
        remotes = [RemoteController(url, c, validation=v) for c, v in setups]
        trainees = [helpers.Trainee(), helpers.Trainee(0.05)]
        commands = [remote.start() for remote in remotes]
        for _ in range(6):  # alternate, so every report finds the other job in the cache
            for i, remote in enumerate(remotes):
                commands[i] = remote.report(trainees[i].execute(commands[i]))

    for (config, validation), remote, offset in zip(setups, remotes, (0.0, 0.05), strict=True):
        local = Controller(config, validation=validation)
        helpers.drive(local, 6, helpers.Trainee(offset))
        assert helpers.canonical(remote.state_dict()) == helpers.canonical(local.state_dict())
