"""Imports of optional dependencies, failing with the extra that installs them."""

from __future__ import annotations

import importlib
from types import ModuleType

from autolrs.errors import MissingDependencyError

__all__ = ["require"]


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    Args:
        module: Dotted name of the module, e.g. ``"lightning.pytorch"``.
        extra: The autolrs extra that installs it, e.g. ``"lightning"``.
        purpose: What needs it, for the message, e.g. ``"autolrs.integrations.lightning"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs {module!r}, which cannot be imported ({exc}): "
            f"pip install 'autolrs[{extra}]'"
        ) from exc
