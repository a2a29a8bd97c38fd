"""The PyTorch adapter: :class:`AutoLRS` drives a plain training loop."""

from autolrs.pytorch.scheduler import AutoLRS, Stateful
from autolrs.pytorch.snapshot import DiskSnapshot, MemorySnapshot, SnapshotStore

__all__ = ["AutoLRS", "DiskSnapshot", "MemorySnapshot", "SnapshotStore", "Stateful"]
