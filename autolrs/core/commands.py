"""The commands a controller issues and the report that answers them.

A controller never touches a model. It answers each report with a short list of commands for the
training loop to carry out, in order:

- :class:`Snapshot`: save the model, optimizer and registered state;
- :class:`Restore`: load the last snapshot back;
- :class:`Train`: train ``steps`` update steps with the given LR (constant, or a linear ramp),
  record the loss of every step, evaluate the validation loss every ``eval_every`` steps, then
  send a :class:`Report` quoting the command's ``seq``.

Every list ends with exactly one :class:`Train`, the only command that needs an answer, so one
round trip covers a whole candidate trial or a whole stage. All three serialise to plain dicts
(``to_dict`` / :func:`command_from_dict`) for the wire.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from autolrs.errors import ProtocolError

__all__ = [
    "Phase",
    "Snapshot",
    "Restore",
    "Train",
    "Command",
    "Report",
    "command_from_dict",
]

Phase = Literal["warmup", "trial", "stage"]
PHASES: tuple[Phase, ...] = ("warmup", "trial", "stage")


@dataclass(frozen=True)
class Snapshot:
    """Save model, optimizer and every registered stateful object."""

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {"op": "snapshot"}


@dataclass(frozen=True)
class Restore:
    """Load the last snapshot back, bit for bit."""

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {"op": "restore"}


@dataclass(frozen=True)
class Train:
    """Train ``steps`` update steps and report every loss.

    Attributes:
        seq: Number of this command, increasing by one per :class:`Train`; its report quotes it.
        phase: ``"warmup"`` (fixed ramp, not searched), ``"trial"`` (a candidate LR, rolled
            back afterwards) or ``"stage"`` (the chosen LR, kept as progress).
        steps: Update steps to train. ≥ 1.
        lr: LR of the first param group at the first of these steps.
        end_lr: LR at the last step; between the two the LR moves linearly. Equal to ``lr``
            for a constant LR.
        eval_every: Evaluate the validation loss after every ``eval_every``-th step of this
            command; 0 means never.
        abort_above: Stop early and report as soon as a loss exceeds this value; a non-finite
            loss always stops the command early. None: no threshold.
    """

    seq: int
    phase: Phase
    steps: int
    lr: float
    end_lr: float
    eval_every: int = 0
    abort_above: float | None = None

    def lr_at(self, step: int) -> float:
        """LR of the first param group at 0-based ``step`` of this command."""
        if self.steps == 1 or self.lr == self.end_lr:
            return self.lr
        return self.lr + (self.end_lr - self.lr) * step / (self.steps - 1)

    def evaluates_after(self, step: int) -> bool:
        """Whether the validation loss is measured after 0-based ``step``."""
        return self.eval_every > 0 and (step + 1) % self.eval_every == 0

    def should_abort(self, loss: float) -> bool:
        """Whether ``loss`` ends this command early."""
        if not math.isfinite(loss):
            return True
        return self.abort_above is not None and loss > self.abort_above

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {
            "op": "train",
            "seq": self.seq,
            "phase": self.phase,
            "steps": self.steps,
            "lr": self.lr,
            "end_lr": self.end_lr,
            "eval_every": self.eval_every,
            "abort_above": self.abort_above,
        }


Command = Snapshot | Restore | Train


def command_from_dict(data: dict[str, Any]) -> Command:
    """Inverse of the commands' ``to_dict``."""
    op = data.get("op")
    if op == "snapshot":
        return Snapshot()
    if op == "restore":
        return Restore()
    if op == "train":
        return Train(
            seq=int(data["seq"]),
            phase=data["phase"],
            steps=int(data["steps"]),
            lr=float(data["lr"]),
            end_lr=float(data["end_lr"]),
            eval_every=int(data.get("eval_every", 0)),
            abort_above=None if data.get("abort_above") is None else float(data["abort_above"]),
        )
    raise ProtocolError(f"unknown command op {op!r}; expected 'snapshot', 'restore' or 'train'")


@dataclass(frozen=True)
class Report:
    """What the training loop measured while carrying out one :class:`Train`.

    Attributes:
        seq: The ``seq`` of the command this answers.
        losses: Training loss of each executed step, in order. Shorter than the command's
            ``steps`` only when the command stopped early (see :meth:`Train.should_abort`).
        val_losses: Validation losses measured after steps ``eval_every``, ``2·eval_every``, …
            of the executed steps.
    """

    seq: int
    losses: Sequence[float]
    val_losses: Sequence[float] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """Wire form."""
        return {"seq": self.seq, "losses": list(self.losses), "val_losses": list(self.val_losses)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """Inverse of :meth:`to_dict`."""
        return cls(
            seq=int(data["seq"]),
            losses=[float(x) for x in data["losses"]],
            val_losses=[float(x) for x in data.get("val_losses", ())],
        )
