"""Snapshots of training state: taken before a stage's search, restored before each candidate.

A snapshot holds a nested structure of state dicts (model, optimizer, and any registered object
such as an AMP ``GradScaler`` or an EMA). :class:`MemorySnapshot` keeps a CPU copy, so no
accelerator memory is spent; :class:`DiskSnapshot` writes it to a file, for models whose state
does not fit twice in host memory.
"""

from __future__ import annotations

import logging
import os
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

from autolrs.errors import SnapshotError

__all__ = ["SnapshotStore", "MemorySnapshot", "DiskSnapshot", "cpu_copy", "state_nbytes"]

logger = logging.getLogger(__name__)


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


class SnapshotStore(ABC):
    """Holds at most one snapshot of training state."""

    @abstractmethod
    def save(self, state: dict[str, Any]) -> None:
        """Replace the held snapshot with a copy of ``state``."""

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
    """Keeps the snapshot as a CPU copy in host memory (the default)."""

    def __init__(self) -> None:
        self._state: dict[str, Any] | None = None

    def save(self, state: dict[str, Any]) -> None:
        """Copy ``state`` to host memory, replacing the previous snapshot."""
        self._state = None  # free the old copy before allocating the new one
        self._state = cpu_copy(state)

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
        """Write ``state`` to the snapshot file atomically."""
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=".autolrs-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(state, handle)
            os.replace(tmp, self._path)
        except Exception as exc:
            Path(tmp).unlink(missing_ok=True)
            raise SnapshotError(
                f"could not write the snapshot to {str(self._path)!r}: {exc}; training state "
                "is unchanged"
            ) from exc
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
