"""Snapshots that cannot be taken: a full disk, a read-only folder, too little host memory.

Each fails with a :class:`SnapshotError` that names the cause before anything is lost: the
previous snapshot is intact, no temporary file is left behind, the model and optimizer are as
they were, and once the cause is gone the run carries on as if nothing had happened.

Tests run as root here, which ignores permission bits, so most faults are injected where the
operating system would report them (creating the temporary file, writing it, flushing it to
the disk, renaming it); a real ``chmod`` test runs for other users, and a real write error
comes from a file size limit (``RLIMIT_FSIZE``), which binds root too.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from fault_support import STAGE_0_STEPS, Run, assert_same_state

from autolrs import SnapshotError
from autolrs.pytorch import snapshot as snapshot_module
from autolrs.pytorch.snapshot import (
    MemorySnapshot,
    available_host_memory,
    format_bytes,
    state_nbytes,
)

SNAPSHOT_FILE = "autolrs-snapshot.pt"


# -- injected faults -------------------------------------------------------------------------


def raise_os_error(code: int) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    return fail


class ModuleWith:
    """A module with some of its functions replaced; every other name is the module's."""

    def __init__(self, module: Any, **replaced: Any) -> None:
        self._module = module
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class FillingDisk:
    """A binary file on a disk with ``room`` bytes left: the write that overflows it writes
    what fits, as a real disk does, then fails with ENOSPC."""

    def __init__(self, handle: Any, room: int) -> None:
        self._handle = handle
        self._room = room

    def write(self, data: bytes) -> int:
        if len(data) > self._room:
            self._handle.write(bytes(data[: self._room]))
            self._handle.flush()
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._room -= len(data)
        return self._handle.write(data)

    def __enter__(self) -> FillingDisk:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def filling_fdopen(room: int) -> Callable[..., Any]:
    def fdopen(fd: int, *args: Any, **kwargs: Any) -> FillingDisk:
        return FillingDisk(os.fdopen(fd, *args, **kwargs), room)

    return fdopen


@dataclass
class Fault:
    """How to break snapshots, which store suffers it, and what the error must say."""

    name: str
    store: str  # "disk" or "memory"
    install: Callable[[pytest.MonkeyPatch], None]
    says: list[str]  # besides the folder, for disk faults

    def scheduler_args(self, folder: Path) -> dict[str, Any]:
        return {"snapshot_dir": folder} if self.store == "disk" else {}


FAULTS = [
    Fault(
        "read-only folder",
        "disk",
        lambda patch: patch.setattr(
            snapshot_module,
            "tempfile",
            ModuleWith(tempfile, mkstemp=raise_os_error(errno.EROFS)),
        ),
        ["Read-only file system", f"[Errno {errno.EROFS}]"],
    ),
    Fault(
        "disk full while writing",
        "disk",
        lambda patch: patch.setattr(
            snapshot_module, "os", ModuleWith(os, fdopen=filling_fdopen(900))
        ),
        ["No space left on device", f"[Errno {errno.ENOSPC}]"],
    ),
    Fault(
        "disk full when flushed",
        "disk",
        lambda patch: patch.setattr(
            snapshot_module, "os", ModuleWith(os, fsync=raise_os_error(errno.ENOSPC))
        ),
        ["No space left on device"],
    ),
    Fault(
        "folder read-only by the rename",
        "disk",
        lambda patch: patch.setattr(
            snapshot_module, "os", ModuleWith(os, replace=raise_os_error(errno.EROFS))
        ),
        ["Read-only file system"],
    ),
    Fault(
        "host memory too small",
        "memory",
        lambda patch: patch.setattr(snapshot_module, "available_host_memory", lambda: 0),
        ["of host memory", "B available", "snapshot_dir="],
    ),
]


def held_snapshot(run: Run) -> dict[str, Any]:
    """The snapshot the scheduler holds, read back the way a restore reads it."""
    return run.scheduler._store.load()


def start_run(fault: Fault, folder: Path) -> tuple[Run, dict[str, Any]]:
    """A run at the last step of stage 0, and the state stage 0 began from."""
    run = Run(build=False, **fault.scheduler_args(folder))
    stage_start = run.state()
    run.scheduler = run.make_scheduler()
    run.steps(STAGE_0_STEPS - 1)
    return run, stage_start


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    """An uninterrupted run two trials into stage 1: its history and final weights."""
    run = Run()
    run.steps(STAGE_0_STEPS + 12)
    return {"history": [s.to_dict() for s in run.scheduler.history], "state": run.state()}


# -- the scheduler under each fault ----------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_a_failed_stage_snapshot_loses_nothing_and_a_retry_carries_on(
    fault, tmp_path, monkeypatch, reference
):
    folder = tmp_path / "snapshots"
    run, stage_start = start_run(fault, folder)
    file_before = (folder / SNAPSHOT_FILE).read_bytes() if fault.store == "disk" else b""
    loss = run.train_step()  # the last step of stage 0: its report begins stage 1
    after_step = run.state()

    with monkeypatch.context() as patch:
        fault.install(patch)
        with pytest.raises(SnapshotError) as failure:
            run.scheduler.step(loss)

    message = str(failure.value)
    expected = fault.says + ([str(folder), "snapshot_dir"] if fault.store == "disk" else [])
    assert [s for s in expected if s not in message] == [], message
    assert "unexpected pos" not in message  # torch's own wording of a failed write
    assert_same_state(run.state(), after_step)  # nothing was restored or changed
    assert_same_state(held_snapshot(run), stage_start)  # the previous snapshot is intact
    if fault.store == "disk":
        assert sorted(os.listdir(folder)) == [SNAPSHOT_FILE]  # no temporary file is left
        assert (folder / SNAPSHOT_FILE).read_bytes() == file_before

    run.scheduler.step(loss)  # the cause is gone: the same call again takes the snapshot
    assert (run.scheduler.stage, run.scheduler.phase) == (1, "trial")
    assert_same_state(held_snapshot(run), after_step)
    run.steps(12)
    assert [s.to_dict() for s in run.scheduler.history] == reference["history"]
    assert_same_state(run.state(), reference["state"])


def test_training_on_after_a_failed_snapshot_takes_it_at_the_next_step(
    tmp_path, monkeypatch, caplog
):
    fault = FAULTS[1]  # disk full while writing
    folder = tmp_path / "snapshots"
    run, _ = start_run(fault, folder)
    with monkeypatch.context() as patch:
        fault.install(patch)
        with pytest.raises(SnapshotError):
            run.step()

    # The loop ignores the error and trains on: this step happens before the stage begins.
    loss = run.train_step()
    stage_start = run.state()
    with caplog.at_level(logging.WARNING, logger="autolrs.pytorch.scheduler"):
        run.scheduler.step(loss)

    assert "1 optimizer step(s)" in caplog.text
    scheduler = run.scheduler
    assert (scheduler.stage, scheduler.phase) == (1, "trial")
    assert (scheduler.update_steps, scheduler.search_steps) == (16, 24)
    assert_same_state(held_snapshot(run), stage_start)
    trial_steps = scheduler.history[1].trial_steps
    run.steps(trial_steps)  # the first candidate, then the restore for the second
    assert len(scheduler.history[1].candidates) == 1
    assert_same_state(run.state(), _with_lr(stage_start, run))


def _with_lr(state: dict[str, Any], run: Run) -> dict[str, Any]:
    """``state`` with the param groups' LR the scheduler set since (a restore keeps it)."""
    groups = [dict(g) for g in state["optimizer"]["param_groups"]]
    for group, lr in zip(groups, run.scheduler.get_last_lr(), strict=True):
        group["lr"] = lr
    return {**state, "optimizer": {**state["optimizer"], "param_groups": groups}}


def test_a_checkpoint_taken_after_a_failed_snapshot_resumes_and_retakes_it(
    tmp_path, monkeypatch, reference
):
    fault = FAULTS[1]
    run, _ = start_run(fault, tmp_path / "first")
    loss = run.train_step()
    with monkeypatch.context() as patch:
        fault.install(patch)
        with pytest.raises(SnapshotError):
            run.scheduler.step(loss)
    checkpoint = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
    }
    # The held snapshot is of stage 0's start; it must not pass for stage 1's.
    assert checkpoint["scheduler"]["snapshot"] is None

    resumed = Run(build=False, snapshot_dir=tmp_path / "second")
    resumed.scheduler = resumed.make_scheduler()
    resumed.model.load_state_dict(checkpoint["model"])
    resumed.optimizer.load_state_dict(checkpoint["optimizer"])
    resumed.scheduler.load_state_dict(checkpoint["scheduler"])
    resumed.steps_taken = run.steps_taken
    resumed.scheduler.step(loss)  # the retry, in the new process
    resumed.steps(12)

    assert [s.to_dict() for s in resumed.scheduler.history] == reference["history"]
    assert_same_state(resumed.state(), reference["state"])


# -- real operating-system errors ------------------------------------------------------------


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0,
    reason="root writes into read-only folders anyway; the injected EROFS cases cover it",
)
def test_a_folder_made_read_only_with_chmod_fails_cleanly_and_recovers(tmp_path):
    folder = tmp_path / "snapshots"
    run, stage_start = start_run(FAULTS[0], folder)
    loss = run.train_step()
    folder.chmod(0o555)
    try:
        with pytest.raises(SnapshotError) as failure:
            run.scheduler.step(loss)
    finally:
        folder.chmod(0o755)

    assert str(folder) in str(failure.value) and "Permission denied" in str(failure.value)
    assert sorted(os.listdir(folder)) == [SNAPSHOT_FILE]
    assert_same_state(held_snapshot(run), stage_start)
    run.scheduler.step(loss)
    assert (run.scheduler.stage, run.scheduler.phase) == (1, "trial")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE and SIGXFSZ as Linux has them")
def test_a_real_write_error_is_named_instead_of_torchs_opaque_message(tmp_path):
    import resource

    folder = tmp_path / "snapshots"
    run, stage_start = start_run(FAULTS[1], folder)
    loss = run.train_step()
    file_before = (folder / SNAPSHOT_FILE).read_bytes()

    # Files may not grow past 1 KiB: the write fails with EFBIG instead of killing us.
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, limits[1]))
    try:
        with pytest.raises(SnapshotError) as failure:
            run.scheduler.step(loss)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)

    assert "File too large" in str(failure.value) and str(folder) in str(failure.value)
    assert sorted(os.listdir(folder)) == [SNAPSHOT_FILE]
    assert (folder / SNAPSHOT_FILE).read_bytes() == file_before
    assert_same_state(held_snapshot(run), stage_start)
    run.scheduler.step(loss)
    assert (run.scheduler.stage, run.scheduler.phase) == (1, "trial")


# -- memory snapshots that do not fit --------------------------------------------------------


def test_a_memory_snapshot_too_large_is_refused_before_copying_with_both_sizes(monkeypatch):
    store = MemorySnapshot(available_memory=lambda: int(1.1 * 2**30))
    small = {"model": {"w": torch.arange(4.0)}}
    store.save(small)
    # 3.2 GiB of float32 on the meta device: a size without the memory.
    huge = {"model": {"w": torch.empty(int(3.2 * 2**30) // 4, device="meta")}}

    def no_copy(obj: Any) -> Any:
        raise AssertionError("the state was copied before the size check")

    monkeypatch.setattr(snapshot_module, "cpu_copy", no_copy)
    with pytest.raises(SnapshotError) as failure:
        store.save(huge)

    message = str(failure.value)
    assert "needs 3.2 GiB" in message and "1.1 GiB available" in message
    assert "snapshot_dir=" in message
    assert torch.equal(store.load()["model"]["w"], torch.arange(4.0))  # the held one is kept


def test_the_scheduler_refuses_a_first_snapshot_that_does_not_fit(monkeypatch):
    monkeypatch.setattr(snapshot_module, "available_host_memory", lambda: 100)
    run = Run(build=False)
    needed = sum(t.numel() * t.element_size() for t in run.model.state_dict().values())

    with pytest.raises(SnapshotError) as failure:
        run.make_scheduler()

    assert f"needs {format_bytes(needed)}" in str(failure.value)
    assert "100 B available" in str(failure.value)


def test_the_snapshot_being_replaced_counts_as_available():
    state = {"w": torch.zeros(256)}  # 1 KiB
    store = MemorySnapshot(available_memory=lambda: 512)
    with pytest.raises(SnapshotError):
        store.save(state)  # nothing held: 1 KiB needed, 512 B available
    store = MemorySnapshot(available_memory=lambda: 2048)
    store.save(state)
    store._available_memory = lambda: 512
    store.save({"w": torch.ones(256)})  # 512 B free plus the 1 KiB freed first
    assert torch.equal(store.load()["w"], torch.ones(256))
    with pytest.raises(SnapshotError, match=r"needs 2\.0 KiB of host memory, 1\.5 KiB"):
        store.save({"w": torch.ones(512)})


def test_an_unknown_amount_of_memory_skips_the_check():
    state = {"w": torch.zeros(256)}
    with pytest.raises(SnapshotError):
        MemorySnapshot(available_memory=lambda: 0).save(state)
    store = MemorySnapshot(available_memory=lambda: None)
    store.save(state)
    assert torch.equal(store.load()["w"], state["w"])


def test_a_small_model_is_not_refused_with_the_real_memory_reading():
    run = Run()
    run.steps(STAGE_0_STEPS + 1)  # two snapshots taken
    assert run.scheduler.stage == 1
    available = available_host_memory()
    if sys.platform == "linux":
        assert available is not None
    if available is not None:
        assert available > state_nbytes(run.state())


def test_available_memory_reads_meminfo_then_sysconf_then_gives_up(tmp_path, monkeypatch):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8000 kB\nMemFree:  1000 kB\nMemAvailable:  4000 kB\n")
    monkeypatch.setattr(snapshot_module, "_MEMINFO", str(meminfo))
    assert available_host_memory() == 4000 * 1024

    sizes = {"SC_AVPHYS_PAGES": 300, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(snapshot_module, "_MEMINFO", str(tmp_path / "missing"))
    monkeypatch.setattr(snapshot_module, "os", ModuleWith(os, sysconf=sizes.__getitem__))
    assert available_host_memory() == 300 * 4096

    meminfo.write_text("MemTotal:  8000 kB\n")  # an old kernel: no MemAvailable line
    monkeypatch.setattr(snapshot_module, "_MEMINFO", str(meminfo))
    assert available_host_memory() == 300 * 4096

    def unknown(name: str) -> int:
        raise ValueError(f"unrecognized configuration name {name}")

    monkeypatch.setattr(snapshot_module, "os", ModuleWith(os, sysconf=unknown))
    assert available_host_memory() is None


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"),
     (5 * 2**20, "5.0 MiB"), (int(3.2 * 2**30), "3.2 GiB"), (3 * 2**40, "3.0 TiB")],
)  # fmt: skip
def test_byte_counts_read_in_binary_units(count, text):
    assert format_bytes(count) == text
