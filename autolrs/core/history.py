"""What the search did: one record per stage, one per candidate inside it.

Records are plain dataclasses of numbers, strings and lists, so a whole history converts to
JSON-able dicts and back without loss (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Metric", "CandidateRecord", "StageRecord", "StageRestart"]

Metric = Literal["train", "val"]


@dataclass
class CandidateRecord:
    """One candidate LR tried at the start of a stage.

    Attributes:
        lr: The candidate's LR (first param group).
        steps: Trial steps it trained before being rolled back (fewer than the stage's
            ``trial_steps`` when it was stopped early).
        loss_steps: Step of each value in ``losses``, counted from the snapshot (1 = after the
            first trial step).
        losses: The measured curve the forecast was fitted to: training loss per step, or
            validation loss at each evaluation.
        forecast: Predicted loss at the end of the stage (step τ); None when the candidate failed.
        forecast_ok: Whether ``forecast`` came from a successful exponential fit (False: a
            fallback value or no value, see ``reason``).
        reason: Empty when all went well; otherwise why the forecast fell back or the
            candidate failed (e.g. ``"non_finite"``).
        fit: ``(a, b, c)`` of the fitted curve L(t) = a·exp(b·t) + c, or None.
    """

    lr: float
    steps: int
    loss_steps: list[int]
    losses: list[float]
    forecast: float | None
    forecast_ok: bool
    reason: str = ""
    fit: tuple[float, float, float] | None = None

    @property
    def failed(self) -> bool:
        """True when the candidate produced no usable forecast (it diverged)."""
        return self.forecast is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        data = dataclasses.asdict(self)
        data["fit"] = None if self.fit is None else list(self.fit)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateRecord:
        """Inverse of :meth:`to_dict`."""
        fit = data.get("fit")
        return cls(
            lr=float(data["lr"]),
            steps=int(data["steps"]),
            loss_steps=[int(x) for x in data["loss_steps"]],
            losses=[float(x) for x in data["losses"]],
            forecast=None if data["forecast"] is None else float(data["forecast"]),
            forecast_ok=bool(data["forecast_ok"]),
            reason=str(data.get("reason", "")),
            fit=None if fit is None else (float(fit[0]), float(fit[1]), float(fit[2])),
        )


@dataclass
class StageRestart:
    """Stage training at ``lr`` failed after ``steps`` steps and was restarted.

    ``reason`` says how: a divergence (``"nonfinite"``, ``"diverged"``...) or
    ``"no_progress"`` (the stage ended above the loss it started from).
    """

    lr: float
    steps: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRestart:
        """Inverse of :meth:`to_dict`."""
        return cls(lr=float(data["lr"]), steps=int(data["steps"]), reason=str(data["reason"]))


@dataclass
class StageRecord:
    """One stage: the search at its start and the training with the chosen LR.

    Attributes:
        index: 0-based stage number.
        start_update_step: Update steps completed before the stage began.
        start_total_step: All executed steps (update, warmup and search) before it began.
        stage_steps: τ, update steps trained with the chosen LR.
        trial_steps: τ', steps each candidate trains.
        metric: Which loss the candidates were judged by: ``"train"`` or ``"val"``.
        candidates: The candidates, in the order they were tried.
        chosen_lr: η*, the LR the stage trains with; None while the search is running.
        chosen_forecast: The search's prediction for η* (GP posterior mean or raw forecast,
            by ``choose_by``); None while the search is running.
        choice_reason: Empty, or why η* was picked by a fallback rule (e.g. every candidate
            diverged).
        restarts: Stage trainings that diverged and were restarted from the snapshot.
        final_loss: The metric measured at the end of the stage (validation loss, or the mean
            training loss of the stage's last τ' steps); None until the stage ends.
        reference_loss: Training loss when the stage began: the largest over the last steps
            trained before it (or the first trial step's loss, when nothing was trained yet);
            the divergence threshold scales it.
        start_loss: Mean training loss just before the stage (over the last τ' steps trained,
            or the first trial's first steps when nothing was trained yet), and
            ``start_loss_error`` its standard error; the lost-ground test compares the stage's
            end with them. None when unknown.
        start_loss_error: See ``start_loss``.
        kept_trial_steps: Trial steps of the chosen candidate kept as the stage's first steps
            (``keep_last_trial``); 0 when the stage trained from the snapshot.
        cooldown: Whether this is the final cooldown: no candidates, the LR decaying linearly
            from ``chosen_lr`` to 0 over ``stage_steps``.
        search_range: ``(low, high)`` LRs the stage's search covered, when narrower than
            [min_lr, max_lr] (``search_window``); None for the whole range.
        anchor_lr: The previous stage's η*, tried first in a windowed search; None otherwise.
        settled: Whether the stage trained on at the previous stage's η* with no search, the
            search having settled (``stop_search_when_settled``).
    """

    index: int
    start_update_step: int
    start_total_step: int
    stage_steps: int
    trial_steps: int
    metric: Metric
    candidates: list[CandidateRecord] = field(default_factory=list)
    chosen_lr: float | None = None
    chosen_forecast: float | None = None
    choice_reason: str = ""
    restarts: list[StageRestart] = field(default_factory=list)
    final_loss: float | None = None
    reference_loss: float | None = None
    start_loss: float | None = None
    start_loss_error: float | None = None
    kept_trial_steps: int = 0
    cooldown: bool = False
    search_range: tuple[float, float] | None = None
    anchor_lr: float | None = None
    settled: bool = False

    @property
    def trained(self) -> bool:
        """Whether the stage trained: it tried candidates, or it is the cooldown or settled.

        The controller opens the next stage as soon as one ends, so a run that ended at a
        stage's end also holds a stage that neither searched nor trained.
        """
        return bool(self.candidates) or self.cooldown or self.settled

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["candidates"] = [c.to_dict() for c in self.candidates]
        data["restarts"] = [r.to_dict() for r in self.restarts]
        if self.search_range is not None:
            data["search_range"] = list(self.search_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageRecord:
        """Inverse of :meth:`to_dict`."""
        return cls(
            index=int(data["index"]),
            start_update_step=int(data["start_update_step"]),
            start_total_step=int(data["start_total_step"]),
            stage_steps=int(data["stage_steps"]),
            trial_steps=int(data["trial_steps"]),
            metric=data["metric"],
            candidates=[CandidateRecord.from_dict(c) for c in data["candidates"]],
            chosen_lr=None if data["chosen_lr"] is None else float(data["chosen_lr"]),
            chosen_forecast=(
                None if data["chosen_forecast"] is None else float(data["chosen_forecast"])
            ),
            choice_reason=str(data.get("choice_reason", "")),
            restarts=[StageRestart.from_dict(r) for r in data.get("restarts", [])],
            final_loss=None if data.get("final_loss") is None else float(data["final_loss"]),
            reference_loss=(
                None if data.get("reference_loss") is None else float(data["reference_loss"])
            ),
            start_loss=_optional_float(data.get("start_loss")),
            start_loss_error=_optional_float(data.get("start_loss_error")),
            kept_trial_steps=int(data.get("kept_trial_steps", 0)),
            cooldown=bool(data.get("cooldown", False)),
            search_range=(
                None
                if data.get("search_range") is None
                else (float(data["search_range"][0]), float(data["search_range"][1]))
            ),
            anchor_lr=None if data.get("anchor_lr") is None else float(data["anchor_lr"]),
            settled=bool(data.get("settled", False)),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
