"""The event log: one JSON line per thing the search did, enough to rebuild its whole history.

A run's log starts with a ``start`` event holding the config, then records every finished
command as a ``report`` event carrying all its losses. Feeding those reports back into a fresh
:class:`~autolrs.core.controller.Controller` reproduces every decision exactly
(:func:`replay_history`), so the log is the run's complete record. Readable summary events sit
between them:

=============  ====================================================================
event          fields besides ``event``, ``time`` (s since start) and the counters
=============  ====================================================================
``start``      ``config`` (dict), ``validation`` (bool)
``snapshot``   —
``restore``    —
``report``     ``seq``, ``phase``, ``lr``, ``end_lr``, ``eval_every``, ``losses``,
               ``val_losses``
``candidate``  ``stage``, ``candidate`` (a CandidateRecord dict)
``choice``     ``stage``, ``lr``, ``predicted``, ``reason``
``restart``    ``stage``, ``restart`` (a StageRestart dict): stage training diverged
``stage_end``  ``stage`` (a StageRecord dict)
``resume``     ``controller`` (the controller state a checkpoint was resumed from)
=============  ====================================================================

Counters on every event: ``update_steps``, ``search_steps``, ``evaluations``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from autolrs.config import AutoLRSConfig
from autolrs.core.commands import Report
from autolrs.core.controller import Controller
from autolrs.core.history import StageRecord
from autolrs.errors import AutoLRSError

__all__ = ["EventLog", "read_events", "replay_history"]


class EventLog:
    """Appends events to a JSON-lines file, one flushed line per event.

    Non-finite floats are written as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``
    so every line is strict JSON; :func:`read_events` turns them back into floats.

    Args:
        path: File to append to; its folder is created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[str] | None = self.path.open("a", encoding="utf-8")

    def __call__(self, event: dict[str, Any]) -> None:
        """Write one event."""
        if self._handle is None:
            raise AutoLRSError(f"event log {str(self.path)!r} is closed")
        self._handle.write(json.dumps(_strict(event), allow_nan=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        """Close the file; later events are an error."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_events(path: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """The events of a log file, in order; a torn last line (a crash mid-write) is skipped."""
    with Path(path).open(encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield _loose(json.loads(line))
        except json.JSONDecodeError as exc:
            if number == len(lines) and not line.endswith("\n"):
                return
            raise AutoLRSError(f"{path}:{number} is not a JSON event line: {exc}") from exc


def replay_history(path: str | os.PathLike[str]) -> tuple[AutoLRSConfig, list[StageRecord]]:
    """Rebuild a run's config and history by feeding its logged reports to a new controller.

    Raises:
        AutoLRSError: The log has no ``start`` event, or its reports do not fit its config.
    """
    controller: Controller | None = None
    for event in read_events(path):
        if event["event"] == "start":
            config = AutoLRSConfig.from_dict(event["config"])
            controller = Controller(config, validation=bool(event["validation"]))
            controller.start()
        elif event["event"] == "resume":
            # A run resumed from a checkpoint redoes the steps after it: start over from there.
            controller = Controller.from_state_dict(event["controller"])
        elif event["event"] == "report":
            if controller is None:
                raise AutoLRSError(f"{path}: a report comes before the start event")
            report = Report(
                seq=event["seq"], losses=event["losses"], val_losses=event["val_losses"]
            )
            controller.report(report)
    if controller is None:
        raise AutoLRSError(f"{path}: no start event; is this an autolrs event log?")
    return controller.config, controller.history


_NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _strict(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def _loose(value: Any) -> Any:
    if isinstance(value, str) and value in _NON_FINITE:
        return _NON_FINITE[value]
    if isinstance(value, dict):
        return {key: _loose(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_loose(item) for item in value]
    return value
