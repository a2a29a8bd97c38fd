"""Snapshots of training state: taken before a stage's search, restored before each candidate.

A snapshot holds a nested structure of state dicts (model, optimizer, and any registered object
such as an AMP ``GradScaler`` or an EMA). :class:`MemorySnapshot` keeps a CPU copy, so no
accelerator memory is spent; :class:`DiskSnapshot` writes it to a file, for models whose state
does not fit twice in host memory.

Either store fails with :class:`~autolrs.errors.SnapshotError` before it gives up the snapshot it
holds: a memory snapshot that would not fit is refused before anything is copied, and a disk
snapshot that cannot be written leaves the previous file in place.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autolrs.errors import ConfigError, SnapshotError

__all__ = [
    "SnapshotStore",
    "MemorySnapshot",
    "DiskSnapshot",
    "available_host_memory",
    "cpu_copy",
    "format_bytes",
    "state_nbytes",
]

logger = logging.getLogger(__name__)

#: Where Linux reports the host's memory.
_MEMINFO = "/proc/meminfo"


def cpu_copy(obj: Any) -> Any:
    """Deep copy of a nested state structure with every tensor copied to host memory.

    Containers (dict, list, tuple) are rebuilt; tensors are detached and copied; any other leaf
    (numbers, strings, None) is shared, as it is immutable.
    """
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((key, cpu_copy(value)) for key, value in obj.items())
    if isinstance(obj, list):
        return [cpu_copy(value) for value in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_copy(value) for value in obj)
    return obj


def state_nbytes(obj: Any) -> int:
    """Bytes held by the tensors of a nested state structure."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_nbytes(value) for value in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(state_nbytes(value) for value in obj)
    return 0


def available_host_memory() -> int | None:
    """Bytes of host memory that new allocations can take now, or None when unknown.

    On Linux this is ``MemAvailable`` from ``/proc/meminfo`` (free memory plus the caches the
    kernel can reclaim); elsewhere, the free physical pages reported by ``os.sysconf``. The
    memory limit of a container's cgroup is not consulted, so inside a container limited below
    the host's memory this can overstate what is available.
    """
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(_MEMINFO, encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file counts in kB, meaning KiB
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows) or no such name
        return None
    if pages < 0 or page_size <= 0:
        return None
    return pages * page_size


def format_bytes(count: int) -> str:
    """``count`` bytes in binary units for people: ``"512 B"``, ``"1.5 KiB"``, ``"3.2 GiB"``."""
    if count < 1024:
        return f"{count} B"
    value, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"


class SnapshotStore(ABC):
    """Holds at most one snapshot of training state."""

    @abstractmethod
    def save(self, state: dict[str, Any]) -> None:
        """Replace the held snapshot with a copy of ``state``.

        Raises:
            SnapshotError: The copy could not be made; the held snapshot, if any, is kept
                unless the message says otherwise.
        """

    @abstractmethod
    def load(self) -> dict[str, Any]:
        """The held snapshot. Callers must not mutate it: it is restored again later."""

    @property
    @abstractmethod
    def empty(self) -> bool:
        """Whether no snapshot is held."""

    @abstractmethod
    def clear(self) -> None:
        """Drop the held snapshot."""


class MemorySnapshot(SnapshotStore):
    """Keeps the snapshot as a CPU copy in host memory (the default).

    Every tensor is copied to host memory, wherever it lives, so a snapshot needs
    :func:`state_nbytes` of the state in host memory. :meth:`save` compares that with the memory
    available before it copies anything and refuses a snapshot that would not fit, keeping the
    one it holds.

    Args:
        available_memory: Zero-argument callable returning the bytes of host memory available
            now, or None when unknown (the check is then skipped). Default:
            :func:`available_host_memory`.
    """

    def __init__(self, available_memory: Callable[[], int | None] | None = None) -> None:
        if available_memory is not None and not callable(available_memory):
            raise ConfigError(
                "available_memory must be a callable returning bytes or None, got "
                f"{type(available_memory).__name__}"
            )
        self._available_memory = available_memory
        self._state: dict[str, Any] | None = None

    def save(self, state: dict[str, Any]) -> None:
        """Copy ``state`` to host memory, replacing the previous snapshot.

        Raises:
            SnapshotError: The copy would need more host memory than is available. Nothing was
                copied and the previous snapshot is still held.
        """
        needed = state_nbytes(state)
        self._check_fits(needed)
        self._state = None  # free the old copy before allocating the new one
        try:
            self._state = cpu_copy(state)
        except MemoryError as exc:
            raise SnapshotError(
                f"ran out of host memory while copying the snapshot ({format_bytes(needed)}); "
                "the previous snapshot was already freed. Pass snapshot_dir=<folder> to AutoLRS "
                "to keep snapshots on disk instead"
            ) from exc

    def _check_fits(self, needed: int) -> None:
        # Looked up at each call, so that a replaced module function takes effect too.
        probe = self._available_memory or available_host_memory
        available = probe()
        if available is None:
            return
        # The held copy is freed before the new one is made: its bytes are available too.
        held = 0 if self._state is None else state_nbytes(self._state)
        if needed > available + held:
            raise SnapshotError(
                f"a memory snapshot of the training state needs {format_bytes(needed)} of host "
                f"memory, {format_bytes(available + held)} available; pass "
                "snapshot_dir=<folder> to AutoLRS to keep snapshots on disk instead. Nothing "
                "was copied and the previous snapshot, if any, is kept"
            )

    def load(self) -> dict[str, Any]:
        """The held snapshot."""
        if self._state is None:
            raise SnapshotError("no snapshot has been taken yet: nothing to restore")
        return self._state

    @property
    def empty(self) -> bool:
        """Whether no snapshot is held."""
        return self._state is None

    def clear(self) -> None:
        """Drop the held snapshot."""
        self._state = None


class DiskSnapshot(SnapshotStore):
    """Writes the snapshot to ``directory`` with ``torch.save``; only the path stays in memory.

    The file is written to a temporary name and renamed into place, so a crash or a full disk
    while writing never leaves a half-written snapshot in place of a good one.

    Args:
        directory: Folder for the snapshot file; created if missing. Must be writable.
        name: File name inside ``directory``.
    """

    def __init__(self, directory: str | os.PathLike[str], name: str = "autolrs-snapshot.pt"):
        self._dir = Path(directory)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SnapshotError(
                f"snapshot_dir {str(self._dir)!r} cannot be created: {exc}"
            ) from exc
        if not os.access(self._dir, os.W_OK):
            raise SnapshotError(f"snapshot_dir {str(self._dir)!r} is not writable")
        self._path = self._dir / name
        self._saved = False

    @property
    def path(self) -> Path:
        """Where the snapshot file lives."""
        return self._path

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` to the snapshot file atomically.

        The state goes to a temporary file in the same folder, is flushed to the disk, and only
        then renamed over the snapshot file.

        Raises:
            SnapshotError: The file could not be written (a full disk, a folder that became
                read-only, ...). The message names the folder and the operating system's error;
                the temporary file is removed and the previous snapshot is still in place.
        """
        tmp: str | None = None
        writer: _RecordingWriter | None = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".autolrs-", suffix=".tmp")
            with os.fdopen(fd, "wb") as handle:
                writer = _RecordingWriter(handle)
                torch.save(state, writer)
                handle.flush()
                os.fsync(handle.fileno())  # a late write error (quota, network disk) shows here
            os.replace(tmp, self._path)
        except Exception as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            # torch.save reports a failed write as an opaque RuntimeError; name the real cause.
            cause = writer.error if writer is not None and writer.error is not None else exc
            kept = "the previous snapshot is kept" if self._saved else "no snapshot was held"
            raise SnapshotError(
                f"could not write the snapshot into snapshot_dir {str(self._dir)!r} "
                f"({type(cause).__name__}: {cause}); {kept}, and the model and optimizer are "
                "unchanged. Free space or make the folder writable, then try again"
            ) from cause
        self._saved = True

    def load(self) -> dict[str, Any]:
        """Read the snapshot file back (tensors land on the CPU)."""
        if not self._saved:
            raise SnapshotError("no snapshot has been taken yet: nothing to restore")
        try:
            return torch.load(self._path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise SnapshotError(f"could not read the snapshot {str(self._path)!r}: {exc}") from exc

    @property
    def empty(self) -> bool:
        """Whether no snapshot is held."""
        return not self._saved

    def clear(self) -> None:
        """Delete the snapshot file."""
        self._path.unlink(missing_ok=True)
        self._saved = False


class _RecordingWriter:
    """A binary file wrapper that remembers the first ``OSError`` its ``write`` raised."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._handle.write(data)
        except OSError as exc:
            if self.error is None:
                self.error = exc
            raise

    def flush(self) -> None:
        self._handle.flush()
