"""autolrs: learning-rate schedules found by Bayesian optimization while the network trains.

``import autolrs`` does not import torch: the framework-free core (:mod:`autolrs.core`) and the
config load without it, and :class:`AutoLRS`, the PyTorch adapter, is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autolrs.config import AutoLRSConfig
from autolrs.errors import (
    AutoLRSError,
    ConfigError,
    DivergenceError,
    ProtocolError,
    SnapshotError,
)

if TYPE_CHECKING:
    from autolrs.pytorch import AutoLRS

__version__ = "0.1.0"

__all__ = [
    "AutoLRS",
    "AutoLRSConfig",
    "AutoLRSError",
    "ConfigError",
    "DivergenceError",
    "ProtocolError",
    "SnapshotError",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name == "AutoLRS":
        try:
            from autolrs.pytorch import AutoLRS
        except ImportError as exc:
            if exc.name == "torch":
                raise AutoLRSError(
                    "autolrs.AutoLRS needs PyTorch: pip install 'autolrs[torch]'"
                ) from exc
            raise
        return AutoLRS
    raise AttributeError(f"module 'autolrs' has no attribute {name!r}")
