"""The published schema: pydantic models of every request and response body.

The request models validate what the server accepts (strict types: no string where a number is
due, no float where an integer is, no unknown fields), and FastAPI turns all of them into the
OpenAPI document served at ``/openapi.json``, so the schema cannot drift from the checks. The
config and the history records are described by the core's own dataclasses; their values are
checked by the core (``AutoLRSConfig``, ``Controller.from_state_dict``), not duplicated here.

Response models only document: the server writes responses itself (see
:func:`autolrs.service.wire.encode`), so a non-finite loss in a recorded curve appears as the
string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` where the schema says number.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

from autolrs.config import AutoLRSConfig
from autolrs.core.commands import Report
from autolrs.core.history import StageRecord
from autolrs.service.wire import INT64_MAX, loss_from_wire

__all__ = [
    "Command",
    "CreateJob",
    "CreatedJob",
    "Deleted",
    "ErrorBody",
    "JOB_ID_PATTERN",
    "JobDetail",
    "JobView",
    "ReportBody",
]

#: A client-chosen job id: 1 to 128 characters, letters, digits, ``.``, ``_`` and ``-``.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"

JobId = Annotated[
    str,
    Field(
        pattern=JOB_ID_PATTERN,
        description="1 to 128 characters from A-Z a-z 0-9 . _ -, starting alphanumeric.",
    ),
]
Seq = Annotated[int, Field(ge=0, le=INT64_MAX, description="A Train command's number.")]
WireLoss = Annotated[
    float | None | Literal["NaN", "Infinity", "-Infinity"],
    Field(description="A loss; null or one of the three strings for a non-finite value."),
]
ConfigBody = Annotated[
    dict[str, Any],
    WithJsonSchema(TypeAdapter(AutoLRSConfig).json_schema()),
    Field(description="AutoLRSConfig.to_dict(); missing fields take their defaults."),
]
StateDict = Annotated[
    dict[str, Any],
    Field(
        description="Controller.state_dict() without 'history'; its 'version' names the layout."
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


# -- requests --------------------------------------------------------------------------------


class CreateJob(_Strict):
    """Body of ``POST /jobs``."""

    config: ConfigBody
    validation: bool = Field(description="Whether the training loop can measure a val loss.")
    job_id: JobId | None = Field(
        default=None,
        description="Client-chosen id, which makes the request safe to retry; default: random.",
    )


class ReportBody(_Strict):
    """Body of ``POST /jobs/{job_id}/reports``: what one Train command measured."""

    seq: Seq
    losses: list[WireLoss] = Field(description="Training loss of every executed step, in order.")
    val_losses: list[WireLoss] = Field(
        default_factory=list,
        description="Validation losses after steps eval_every, 2·eval_every, … of those steps.",
    )

    def to_report(self) -> Report:
        """The core's :class:`~autolrs.core.commands.Report`, losses as floats."""
        return Report(
            seq=self.seq,
            losses=[loss_from_wire(x) for x in self.losses],
            val_losses=[loss_from_wire(x) for x in self.val_losses],
        )


# -- responses (documentation only) ----------------------------------------------------------


class SnapshotCommand(_Strict):
    """Save model, optimizer and every other piece of training state."""

    op: Literal["snapshot"]


class RestoreCommand(_Strict):
    """Load the last snapshot back, bit for bit."""

    op: Literal["restore"]


class TrainCommand(_Strict):
    """Train ``steps`` steps, record every loss, then report quoting ``seq``."""

    op: Literal["train"]
    seq: Seq
    phase: Literal["warmup", "trial", "stage"]
    steps: int = Field(ge=1)
    lr: float = Field(description="LR of the first param group at the first step.")
    end_lr: float = Field(description="LR at the last step; linear in between.")
    eval_every: int = Field(ge=0, description="Measure the val loss every this many; 0: never.")
    abort_above: float | None = Field(description="Stop early once a loss exceeds this.")


Command = Annotated[SnapshotCommand | RestoreCommand | TrainCommand, Field(discriminator="op")]


class JobView(_Strict):
    """A job as the reply to a report: what to do next, and what changed."""

    job_id: str
    commands: list[Command] = Field(description="Carry these out in order; the last is Train.")
    metric: Literal["train", "val"] = Field(description="Loss judging the current stage.")
    state: StateDict
    history_from: int = Field(ge=0, description="Index of the first record in 'history'.")
    history: list[StageRecord] = Field(
        description="Stage records from history_from on; earlier ones did not change."
    )


class CreatedJob(JobView):
    """Reply to ``POST /jobs``: the job with its whole history."""

    created: bool = Field(description="False when the job_id existed with the same config.")


class JobDetail(JobView):
    """Reply to ``GET /jobs/{job_id}``: the job with its whole history and derived views."""

    phase: Literal["warmup", "trial", "stage"]
    pending: TrainCommand
    schedule: list[tuple[int, float]] = Field(description="(first update step, lr) segments.")
    created_at: float = Field(description="Unix time, seconds.")
    updated_at: float = Field(description="Unix time, seconds.")


class Deleted(_Strict):
    """Reply to ``DELETE /jobs/{job_id}``."""

    job_id: str
    deleted: Literal[True]


class ErrorDetail(_Strict):
    """What went wrong."""

    code: str = Field(description="Stable, machine-readable; see docs/service.md.")
    message: str = Field(description="For people: names the field, the rule and the value.")
    expected_seq: int | None = Field(
        default=None, description="With seq_mismatch: the seq the job waits for."
    )


class ErrorBody(_Strict):
    """Every error response."""

    error: ErrorDetail
