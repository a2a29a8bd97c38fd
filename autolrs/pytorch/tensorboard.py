"""Watch an AutoLRS run in TensorBoard: a listener that turns its events into scalars.

Attach it with ``scheduler.add_listener(TensorBoardLogger("runs/autolrs"))``, or feed it a
finished run's event log with :meth:`TensorBoardLogger.write_log`. Scalars, by tag:

=========================  ================  ==============================================
tag                        x axis            value
=========================  ================  ==============================================
``update/lr``              update steps      LR of the first param group at each kept step
``update/loss``            update steps      training loss of each kept step
``executed/lr``            executed steps    LR of every executed step, search included
``executed/loss``          executed steps    training loss of every executed step
``executed/val_loss``      executed steps    each validation loss, after the step it followed
``search/candidate_lr``    executed steps    each candidate's LR, at the end of its trial
``search/forecast``        executed steps    its forecast loss at τ (none when it failed)
``stage/chosen_lr``        update steps      each stage's LR, at its first update step
``stage/predicted_loss``   update steps      the search's prediction, at the stage's last step
``stage/reached_loss``     update steps      the stage metric reached there
=========================  ================  ==============================================

Every x is a count of steps done including the one plotted, from 1: update steps count kept
steps only (warmup and stage training), executed steps count every optimizer step. Losses
arrive when a command finishes (a candidate's trial, a stage), so the curves advance in those
bursts. Non-finite losses (a diverging candidate) are left out so they do not wreck the axes.

Needs the ``tensorboard`` package: ``pip install 'autolrs[tensorboard]'``.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Protocol

from autolrs.core.commands import Train
from autolrs.core.history import StageRecord
from autolrs.errors import AutoLRSError, ConfigError
from autolrs.events import read_events

__all__ = ["TensorBoardLogger", "ScalarWriter"]

logger = logging.getLogger(__name__)


class ScalarWriter(Protocol):
    """What the logger needs of a writer; ``torch.utils.tensorboard.SummaryWriter`` fits."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> Any: ...  # noqa: D102

    def flush(self) -> Any: ...  # noqa: D102

    def close(self) -> Any: ...  # noqa: D102


class TensorBoardLogger:
    """Writes an AutoLRS run's LRs, losses, forecasts and stage results to TensorBoard.

    Args:
        writer: A log folder (a ``SummaryWriter`` is opened on it and closed by
            :meth:`close`), or a ``SummaryWriter`` (or any object with ``add_scalar`` and
            ``flush``) that stays yours to close.
        prefix: Put before every tag, e.g. ``"autolrs/"``; empty by default.

    Raises:
        AutoLRSError: A folder was given and TensorBoard is not installed.

    Example:
        >>> scheduler.add_listener(TensorBoardLogger("runs/autolrs"))  # doctest: +SKIP
    """

    def __init__(self, writer: str | os.PathLike[str] | ScalarWriter, *, prefix: str = "") -> None:
        if not isinstance(prefix, str):
            raise ConfigError(f"prefix must be a string, got {type(prefix).__name__}")
        if isinstance(writer, (str, os.PathLike)):
            self._writer: ScalarWriter = _summary_writer(writer)
            self._owns_writer = True
        elif all(callable(getattr(writer, name, None)) for name in ("add_scalar", "flush")):
            self._writer = writer
            self._owns_writer = False
        else:
            raise ConfigError(
                "writer must be a log folder or a SummaryWriter (an object with add_scalar and "
                f"flush), got {type(writer).__name__}"
            )
        self._prefix = prefix
        self._update_steps = 0
        self._search_steps = 0

    def __call__(self, event: dict[str, Any]) -> None:
        """Write the scalars of one event (see :mod:`autolrs.events`)."""
        kind = event.get("event")
        if kind in ("start", "resume"):
            self._move_to(event)
        elif kind == "report":
            self._report(event)
        elif kind == "candidate":
            self._candidate(event)
        elif kind == "stage_end":
            self._stage_end(StageRecord.from_dict(event["stage"]))

    def write_log(self, path: str | os.PathLike[str]) -> None:
        """Write every event of an event log file, e.g. of a run that has finished."""
        for event in read_events(path):
            self(event)
        self.flush()

    def flush(self) -> None:
        """Push written scalars to disk."""
        self._writer.flush()

    def close(self) -> None:
        """Flush, and close the writer if this logger opened it."""
        self.flush()
        if self._owns_writer:
            self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- events ----------------------------------------------------------------------------

    def _report(self, event: dict[str, Any]) -> None:
        losses = [float(x) for x in event["losses"]]
        kept = int(event["update_steps"]) > self._update_steps
        # Only the warmup ramps the LR, and its report is logged only when the ramp completed
        # (a diverged warmup ends the run), so the reported steps are the ramp's.
        command = Train(
            seq=int(event["seq"]),
            phase=event["phase"],
            steps=len(losses),
            lr=float(event["lr"]),
            end_lr=float(event["end_lr"]),
        )
        executed = self._update_steps + self._search_steps
        for index, loss in enumerate(losses):
            lr = command.lr_at(index)
            self._scalar("executed/lr", lr, executed + index + 1)
            self._scalar("executed/loss", loss, executed + index + 1)
            if kept:
                self._scalar("update/lr", lr, self._update_steps + index + 1)
                self._scalar("update/loss", loss, self._update_steps + index + 1)
        every = int(event["eval_every"])
        for number, value in enumerate(event["val_losses"], start=1):
            self._scalar("executed/val_loss", float(value), executed + every * number)
        self._move_to(event)

    def _candidate(self, event: dict[str, Any]) -> None:
        candidate = event["candidate"]
        executed = int(event["update_steps"]) + int(event["search_steps"])
        self._scalar("search/candidate_lr", float(candidate["lr"]), executed)
        if candidate["forecast"] is not None:
            self._scalar("search/forecast", float(candidate["forecast"]), executed)

    def _stage_end(self, stage: StageRecord) -> None:
        last = stage.start_update_step + stage.stage_steps
        if stage.chosen_lr is not None:
            self._scalar("stage/chosen_lr", stage.chosen_lr, stage.start_update_step + 1)
        if stage.chosen_forecast is not None:
            self._scalar("stage/predicted_loss", stage.chosen_forecast, last)
        if stage.final_loss is not None:
            self._scalar("stage/reached_loss", stage.final_loss, last)

    def _move_to(self, event: dict[str, Any]) -> None:
        self._update_steps = int(event["update_steps"])
        self._search_steps = int(event["search_steps"])

    def _scalar(self, tag: str, value: float, step: int) -> None:
        if math.isfinite(value):
            self._writer.add_scalar(self._prefix + tag, value, step)


def _summary_writer(log_dir: str | os.PathLike[str]) -> ScalarWriter:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise AutoLRSError(
            f"TensorBoard logging needs the tensorboard package, which could not be imported "
            f"({error}); install it with: pip install 'autolrs[tensorboard]'"
        ) from error
    return SummaryWriter(log_dir=os.fspath(log_dir))
