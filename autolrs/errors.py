"""Exceptions raised by autolrs.

Every error the library raises on purpose derives from :class:`AutoLRSError`, so a training
script can catch the library's complaints without also swallowing its own bugs.
"""

from __future__ import annotations

__all__ = [
    "AutoLRSError",
    "ConfigError",
    "ProtocolError",
    "DivergenceError",
    "SnapshotError",
    "MissingDependencyError",
]


class AutoLRSError(Exception):
    """Base class of every exception autolrs raises on purpose."""


class ConfigError(AutoLRSError, ValueError):
    """A configuration value or constructor argument is out of its valid range."""


class ProtocolError(AutoLRSError, RuntimeError):
    """A controller was fed a report that does not answer the command it issued."""


class DivergenceError(AutoLRSError, RuntimeError):
    """Training diverged even at the smallest learning rate the search may use."""


class SnapshotError(AutoLRSError, RuntimeError):
    """A snapshot could not be taken or restored."""


class MissingDependencyError(AutoLRSError, ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""
