"""The stage controller: AutoLRS as a pure state machine.

The controller never sees a model. It is fed :class:`~autolrs.core.commands.Report` objects and
answers each with the commands the training loop must carry out next. One stage runs::

    Snapshot, Train(trial, η₁, τ')            -> report -> forecast y₁, GP observes (ln η₁, y₁)
    Restore,  Train(trial, η₂, τ')            -> report -> ...            (k candidates in all)
    Restore,  Train(stage, η*, τ)             -> report -> stage done, τ doubles up to τ_max

``η*`` is the explored candidate with the lowest GP posterior mean (or raw forecast). Candidates
are judged by the training loss until τ reaches τ_max, then by the validation loss measured every
``val_every`` trial steps, when the loop can evaluate one.

Step accounting: *update steps* are steps whose progress is kept (warmup and stage training);
*search steps* are executed steps that were rolled back (every candidate trial, and a stage
training that diverged). A diverged stage is rolled back to the stage's snapshot and trained
again with the next-best candidate, so its steps move to the search count.

The whole state (config, counters, history, the pending command and the last reply) converts to
plain JSON-able data and back exactly (:meth:`Controller.state_dict`), so a restored controller
makes the same decisions as one that never stopped.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from autolrs.config import AutoLRSConfig
from autolrs.core.commands import (
    Command,
    Phase,
    Report,
    Restore,
    Snapshot,
    Train,
    command_from_dict,
)
from autolrs.core.forecast import forecast
from autolrs.core.history import CandidateRecord, Metric, StageRecord, StageRestart
from autolrs.core.reports import (
    divergence,
    mean_and_error,
    tail_max,
    tail_mean,
    validate_report,
)
from autolrs.core.search import Choice, GPSearch, Observation
from autolrs.errors import ConfigError, DivergenceError, ProtocolError

__all__ = ["Controller", "STATE_VERSION", "budget_spent", "budget_used", "stage_observations"]

logger = logging.getLogger(__name__)

#: Version of the layout of :meth:`Controller.state_dict`; bumped on incompatible changes.
STATE_VERSION = 1

#: Share of a stage's starting loss by which its final loss must exceed it to count as lost
#: ground (``restart_on_no_progress``): a stage at its noise floor does not.
NO_PROGRESS_MARGIN = 0.1

#: Standard errors by which the mean of a stage's last training losses must exceed the mean of
#: the losses trained just before it to count as lost ground.
NO_PROGRESS_Z = 3.0

#: Training losses of the first trial that set the first stage's reference loss when no
#: warmup precedes it: their largest, as one mini-batch's loss alone may be far below the
#: others (and a divergence threshold ten times it too tight).
FIRST_REFERENCE_LOSSES = 5


class Controller:
    """Decides every LR of an AutoLRS run, one report at a time.

    Args:
        config: The algorithm's constants.
        validation: Whether the training loop can measure a validation loss. Without one the
            training loss is forecast in every stage.

    Example:
        >>> from autolrs import AutoLRSConfig
        >>> from autolrs.core import Controller, Report
        >>> config = AutoLRSConfig(min_lr=1e-3, max_lr=1.0, stage_steps=50)
        >>> ctl = Controller(config, validation=False)
        >>> cmds = ctl.start()
        >>> [type(c).__name__ for c in cmds]
        ['Snapshot', 'Train']
        >>> cmds[-1].phase, cmds[-1].steps
        ('trial', 5)
        >>> cmds = ctl.report(Report(seq=cmds[-1].seq, losses=[1.0, 0.9, 0.85, 0.82, 0.8]))
        >>> [type(c).__name__ for c in cmds]
        ['Restore', 'Train']
    """

    def __init__(self, config: AutoLRSConfig, *, validation: bool) -> None:
        if not isinstance(config, AutoLRSConfig):
            raise ConfigError(f"config must be an AutoLRSConfig, got {type(config).__name__}")
        if not isinstance(validation, bool):
            raise ConfigError(f"validation must be True or False, got {validation!r}")
        self._config = config
        self._validation = validation
        self._search = _make_search(config)
        self._seq = -1
        self._pending: Train | None = None
        self._last_reply: list[Command] = []
        self._stage_index = -1
        self._update_steps = 0
        self._search_steps = 0
        self._evaluations = 0
        self._history: list[StageRecord] = []
        # Largest training loss over the last steps of kept training: the next stage's
        # reference. The largest, not the mean, so that one noisy mini-batch is not taken for
        # divergence.
        self._recent_loss: float | None = None
        # Mean of those last losses and its standard error: where the next stage starts from.
        self._recent_mean: tuple[float, float] | None = None

    # -- read-only views ---------------------------------------------------------------------

    @property
    def config(self) -> AutoLRSConfig:
        """The algorithm's constants."""
        return self._config

    @property
    def validation(self) -> bool:
        """Whether the training loop can measure a validation loss."""
        return self._validation

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has been called."""
        return self._seq >= 0

    @property
    def pending(self) -> Train | None:
        """The :class:`Train` command awaiting its report; None before :meth:`start`."""
        return self._pending

    @property
    def last_reply(self) -> list[Command]:
        """The commands returned by the latest :meth:`start` or :meth:`report` call."""
        return list(self._last_reply)

    @property
    def phase(self) -> Phase | None:
        """Phase of the pending command (``"warmup"``, ``"trial"`` or ``"stage"``)."""
        return None if self._pending is None else self._pending.phase

    @property
    def stage_index(self) -> int:
        """0-based index of the current stage; -1 before the first stage (e.g. in warmup)."""
        return self._stage_index

    @property
    def update_steps(self) -> int:
        """Steps kept as progress (warmup and stage training) by reports received so far."""
        return self._update_steps

    @property
    def search_steps(self) -> int:
        """Executed steps rolled back (trials, diverged stages) by reports received so far."""
        return self._search_steps

    @property
    def evaluations(self) -> int:
        """Validation-loss measurements requested and reported so far."""
        return self._evaluations

    @property
    def budget_used(self) -> int:
        """Steps counted against ``config.total_steps`` by reports received so far.

        Every executed step when ``config.budget_includes_search``, else the update steps.
        """
        return budget_used(self._config, self._update_steps, self._search_steps)

    @property
    def finished(self) -> bool:
        """Whether the budget ``config.total_steps`` is spent; never, without a budget."""
        return budget_spent(self._config, self.budget_used)

    @property
    def history(self) -> list[StageRecord]:
        """One record per stage begun, the current one last. Do not mutate."""
        return self._history

    @property
    def metric(self) -> Metric:
        """Loss that judges the current stage's candidates."""
        return self._metric_for(max(self._stage_index, 0))

    def schedule(self) -> list[tuple[int, float]]:
        """The LR found so far as ``(first update step, lr)`` segments, warmup excluded."""
        return [
            (stage.start_update_step, stage.chosen_lr)
            for stage in self._history
            if stage.chosen_lr is not None
        ]

    # -- the protocol ------------------------------------------------------------------------

    def start(self) -> list[Command]:
        """First commands of the run: the warmup ramp, or the first stage's snapshot and trial."""
        if self.started:
            raise ProtocolError("start() was already called; feed reports with report()")
        if self._config.warmup_steps > 0:
            peak = float(self._config.warmup_lr)  # type: ignore[arg-type]  # checked by config
            steps = self._config.warmup_steps
            reply: list[Command] = [self._train("warmup", steps, peak / steps, end_lr=peak)]
            logger.info("warmup: %d steps ramping the LR linearly to %.4g", steps, peak)
        else:
            reply = self._begin_stage()
        return self._reply(reply)

    def report(self, report: Report) -> list[Command]:
        """Take the measurements for the pending command and return the next commands.

        Raises:
            ProtocolError: The report does not answer the pending command (wrong ``seq``,
                wrong number of losses, or stopped early without a reason).
            DivergenceError: The loss became non-finite during warmup, or during stage
                training at the fallback LR used when every candidate diverged. The loop
                should restore its snapshot (if any) and stop.
        """
        command = self._pending
        if command is None:
            raise ProtocolError("report() before start(): call start() first")
        losses, val_losses = validate_report(command, report)
        if command.phase == "warmup":
            reply = self._finish_warmup(command, losses)
        elif command.phase == "trial":
            reply = self._finish_trial(command, losses, val_losses)
        else:
            reply = self._finish_stage(command, losses, val_losses)
        return self._reply(reply)

    # -- phases ------------------------------------------------------------------------------

    def _finish_warmup(self, command: Train, losses: list[float]) -> list[Command]:
        if len(losses) < command.steps:
            raise DivergenceError(
                f"the loss became {losses[-1]} at warmup step {self._update_steps + len(losses)}"
                f" (warmup_lr={self._config.warmup_lr}); warmup is not searched, so lower "
                "warmup_lr or lengthen warmup_steps"
            )
        self._update_steps += len(losses)
        self._remember_tail(losses, max(1, len(losses) // 10))
        return self._begin_stage()

    def _remember_tail(self, losses: list[float], count: int) -> None:
        """Keep the last ``count`` kept losses' largest, mean and error for the next stage."""
        self._recent_loss = tail_max(losses, count)
        self._recent_mean = mean_and_error(losses[-count:])

    def _begin_stage(self) -> list[Command]:
        if self._cooldown_due():
            return self._begin_cooldown()
        settled = self._settled_lr()
        self._stage_index += 1
        index = self._stage_index
        nominal = self._config.stage_length(index)
        if settled is None:
            previous = self._history[-1] if self._history else None
            anchor, search_range = self._window(previous)
            stage_steps = self._stretch_to_budget(index, nominal)
        else:
            # The steps left before the cooldown, as one stage with no trials.
            end = self._search_end()
            assert end is not None  # settling needs a cooldown, and so a budget
            anchor, search_range, stage_steps = settled, None, end - self.budget_used
        stage = StageRecord(
            index=index,
            start_update_step=self._update_steps,
            start_total_step=self._update_steps + self._search_steps,
            stage_steps=stage_steps,
            trial_steps=self._config.trial_length(nominal),
            metric=self._metric_for(index),
            reference_loss=self._recent_loss,
            start_loss=None if self._recent_mean is None else self._recent_mean[0],
            start_loss_error=None if self._recent_mean is None else self._recent_mean[1],
            search_range=search_range,
            anchor_lr=anchor,
            chosen_lr=settled,
            settled=settled is not None,
        )
        self._history.append(stage)
        if settled is None:
            return [Snapshot(), self._next_trial()]

        logger.info(
            "stage %d: the search settled on lr=%.4g; training %d steps at it before the cooldown",
            index,
            settled,
            stage_steps,
        )
        eval_every = stage_steps if stage.metric == "val" else 0
        train = self._train(
            "stage", stage_steps, settled, eval_every, abort_above=self._abort_threshold(stage)
        )
        return [Snapshot(), train]

    def _settled_lr(self) -> float | None:
        """The LR the search settled on, when the next stage needs no search; else None.

        It has settled when the last stage's windowed search kept its anchor, the stage
        before's η*, with no fallback and no restart (``stop_search_when_settled``).
        """
        config = self._config
        if not (
            config.stop_search_when_settled
            and config.search_window is not None
            and config.cooldown_fraction > 0
            and self._history
        ):
            return None
        previous = self._history[-1]
        kept_anchor = previous.anchor_lr is not None and previous.chosen_lr == previous.anchor_lr
        if not kept_anchor or previous.settled or previous.choice_reason or previous.restarts:
            return None
        return previous.chosen_lr

    def _window(
        self, previous: StageRecord | None
    ) -> tuple[float | None, tuple[float, float] | None]:
        """The anchor LR and search range after ``previous``, when ``search_window`` is set."""
        factor = self._config.search_window
        if factor is None or previous is None or previous.chosen_lr is None:
            return None, None
        if previous.choice_reason:  # a fallback LR says nothing about where the best lies
            return None, None
        low = max(self._config.min_lr, previous.chosen_lr / factor)
        high = min(self._config.max_lr, previous.chosen_lr * factor)
        if not low < high:
            return None, None
        return previous.chosen_lr, (low, high)

    def _search_for(self, stage: StageRecord) -> GPSearch:
        if stage.search_range is None:
            return self._search
        return _make_search(self._config, *stage.search_range)

    def _search_end(self) -> int | None:
        """Budget used when the searched stages end: the budget less the cooldown."""
        total = self._config.total_steps
        return None if total is None else total - self._config.cooldown_steps

    def _cooldown_due(self) -> bool:
        """Whether the next stage is the cooldown: the searched stages are done, it is not."""
        end, total = self._search_end(), self._config.total_steps
        used = self.budget_used
        if end is None or total is None or not used < total:
            return False
        if not self._history or self._history[-1].chosen_lr is None:
            return False
        if used >= end:
            return True
        # A candidate stopped early leaves a remainder that the last stage did not absorb; too
        # small for a stage, it goes to the cooldown.
        return (
            self._config.budget_includes_search
            and self._config.cooldown_fraction > 0
            and end - used < self._smallest_stage_cost(self._stage_index + 1)
        )

    def _begin_cooldown(self) -> list[Command]:
        previous = self._history[-1]
        assert previous.chosen_lr is not None and self._config.total_steps is not None
        self._stage_index += 1
        index = self._stage_index
        steps = self._config.total_steps - self.budget_used
        stage = StageRecord(
            index=index,
            start_update_step=self._update_steps,
            start_total_step=self._update_steps + self._search_steps,
            stage_steps=steps,
            trial_steps=min(steps, previous.trial_steps),
            metric=self._metric_for(index),
            reference_loss=self._recent_loss,
            chosen_lr=previous.chosen_lr,
            cooldown=True,
        )
        self._history.append(stage)
        logger.info(
            "stage %d: cooldown, %d steps decaying the LR linearly from %.4g to 0",
            index,
            steps,
            previous.chosen_lr,
        )
        return [Snapshot(), self._cooldown_train(stage, previous.chosen_lr)]

    def _cooldown_train(self, stage: StageRecord, lr: float) -> Train:
        eval_every = stage.stage_steps if stage.metric == "val" else 0
        return self._train(
            "stage",
            stage.stage_steps,
            lr,
            eval_every,
            end_lr=0.0,
            abort_above=self._abort_threshold(stage),
        )

    def _stretch_to_budget(self, index: int, nominal: int) -> int:
        """τ of stage ``index``: stretched to the search's end rather than leave a stub after."""
        end = self._search_end()
        if end is None:
            return nominal
        trial = self._config.trial_length(nominal)
        search = self._trials_cost(trial)
        remaining = end - self.budget_used
        after = remaining - nominal - search
        if 0 < remaining and after < self._smallest_stage_cost(index + 1):
            return max(remaining - search, trial)
        return nominal

    def _smallest_stage_cost(self, index: int) -> float:
        """Least budget worth a stage ``index``: its trials and half its nominal length."""
        nominal = self._config.stage_length(index)
        return nominal / 2 + self._trials_cost(self._config.trial_length(nominal))

    def _trials_cost(self, trial_steps: int) -> int:
        """Budget the candidates of a stage with trials of ``trial_steps`` steps use up."""
        if not self._config.budget_includes_search:
            return 0
        return self._config.num_candidates * trial_steps

    def _abort_threshold(self, stage: StageRecord) -> float | None:
        """Training loss above which a command of ``stage`` counts as diverged."""
        factor = self._config.divergence_factor
        reference = stage.reference_loss
        if factor is None or reference is None or not reference > 0:
            return None
        return reference * factor

    def _next_trial(self) -> Train:
        stage = self._history[-1]
        seed = int(np.random.SeedSequence([self._config.seed, stage.index]).generate_state(1)[0])
        # The previous η*, the likeliest winner, is tried first; or last when the last
        # candidate's steps are kept, so that they count as progress whenever it wins again.
        anchor_last = self._config.keep_last_trial
        anchor_turn = self._config.num_candidates - 1 if anchor_last else 0
        if stage.anchor_lr is not None and len(stage.candidates) == anchor_turn:
            lr = stage.anchor_lr
        else:
            pending = [stage.anchor_lr] if anchor_last and stage.anchor_lr is not None else []
            lr = self._search_for(stage).propose(
                stage_observations(stage), seed=seed, pending=pending
            )
        eval_every = self._config.val_every if stage.metric == "val" else 0
        return self._train(
            "trial", stage.trial_steps, lr, eval_every, abort_above=self._abort_threshold(stage)
        )

    def _finish_trial(
        self, command: Train, losses: list[float], val_losses: list[float]
    ) -> list[Command]:
        stage = self._history[-1]
        self._search_steps += len(losses)
        self._evaluations += len(val_losses)
        if stage.reference_loss is None:
            first = [x for x in losses[:FIRST_REFERENCE_LOSSES] if math.isfinite(x)]
            stage.reference_loss = max(first) if first else None
            if first and stage.start_loss is None:
                stage.start_loss, stage.start_loss_error = mean_and_error(first)
        stage.candidates.append(self._judge(stage, command, losses, val_losses))

        if len(stage.candidates) < self._config.num_candidates:
            return [Restore(), self._next_trial()]
        return self._choose(stage)

    def _judge(
        self, stage: StageRecord, command: Train, losses: list[float], val_losses: list[float]
    ) -> CandidateRecord:
        """Forecast the loss a finished trial would reach at the end of the stage."""
        if stage.metric == "val":
            curve = val_losses
            steps = [command.eval_every * (i + 1) for i in range(len(val_losses))]
        else:
            curve = losses
            steps = list(range(1, len(losses) + 1))
        number = len(stage.candidates) + 1

        # Fit only curves that did not diverge: a diverged candidate's forecast is never used.
        reason = divergence(command, losses, curve)
        result = None
        if not reason:
            result = forecast(steps, curve, horizon=stage.stage_steps) if curve else None
            threshold = self._abort_threshold(stage)
            if result is None:
                reason = "no_points"
            elif not math.isfinite(result.value):
                reason = result.reason
            elif threshold is not None and result.value > threshold:
                reason = "diverged"  # finite, but forecast to explode
        if reason or result is None:
            logger.warning(
                "stage %d candidate %d/%d lr=%.4g failed after %d steps (%s, last loss %.4g); "
                "restoring the snapshot",
                stage.index,
                number,
                self._config.num_candidates,
                command.lr,
                len(losses),
                reason,
                losses[-1],
            )
            return CandidateRecord(
                lr=command.lr,
                steps=len(losses),
                loss_steps=steps,
                losses=curve,
                forecast=None,
                forecast_ok=False,
                reason=reason,
            )

        if not result.ok:
            logger.warning(
                "stage %d candidate %d lr=%.4g: no usable exponential fit (%s); forecasting "
                "%.4g, its loss without extrapolation",
                stage.index,
                number,
                command.lr,
                result.reason,
                result.value,
            )
        logger.debug(
            "stage %d candidate %d/%d lr=%.4g forecast=%.5g",
            stage.index,
            number,
            self._config.num_candidates,
            command.lr,
            result.value,
        )
        return CandidateRecord(
            lr=command.lr,
            steps=len(losses),
            loss_steps=steps,
            losses=curve,
            forecast=float(result.value),
            forecast_ok=result.ok,
            reason=result.reason,
            fit=(float(result.a), float(result.b), float(result.c)) if result.ok else None,
        )

    def _choose(self, stage: StageRecord) -> list[Command]:
        """Pick η* among the explored candidates and start the stage's training with it."""
        # The first stage starts from initialisation, where every candidate's fall is mostly
        # optimisation, not noise a later decay would remove: it takes the best candidate.
        tolerance = self._config.larger_lr_tolerance if stage.index > 0 else 0.0
        choice = self._search_for(stage).choose(
            stage_observations(stage),
            by=self._config.choose_by,
            larger_lr_tolerance=tolerance,
            start_value=stage_start_value(stage),
        )
        if choice.reason == "all_failed" and stage.search_range is not None:
            # The window's low end is no safe bet after divergence; the range's is.
            choice = Choice(self._config.min_lr, None, None, choice.reason)
        stage.chosen_lr = choice.lr
        stage.chosen_forecast = choice.predicted
        stage.choice_reason = choice.reason
        threshold = self._abort_threshold(stage)

        last = len(stage.candidates) - 1
        keep = (
            self._config.keep_last_trial
            and not stage.restarts
            and choice.index == last
            and stage.candidates[last].steps == stage.trial_steps
            and stage.trial_steps < stage.stage_steps
        )
        if keep:
            # The model already holds the chosen candidate's τ' steps: they become progress.
            self._search_steps -= stage.trial_steps
            self._update_steps += stage.trial_steps
            stage.kept_trial_steps = stage.trial_steps
            steps = stage.stage_steps - stage.trial_steps
            reply: list[Command] = []
        else:
            steps = stage.stage_steps
            reply = [Restore()]
        # In validation stages, one evaluation after the last step measures what was reached.
        eval_every = steps if stage.metric == "val" else 0
        reply.append(self._train("stage", steps, choice.lr, eval_every, abort_above=threshold))

        if choice.reason:
            logger.warning(
                "stage %d: no candidate gave a usable forecast (%s); training %d steps at lr=%.4g",
                stage.index,
                choice.reason,
                stage.stage_steps,
                choice.lr,
            )
        else:
            logger.info(
                "stage %d: chose lr=%.4g (predicted %s loss %.5g at step %d) among %d "
                "candidates; training %d steps%s",
                stage.index,
                choice.lr,
                stage.metric,
                choice.predicted,
                stage.stage_steps,
                len(stage.candidates),
                stage.stage_steps,
                " (kept the last trial's steps)" if keep else "",
            )
        return reply

    def _finish_stage(
        self, command: Train, losses: list[float], val_losses: list[float]
    ) -> list[Command]:
        stage = self._history[-1]
        self._evaluations += len(val_losses)
        if len(losses) < command.steps:
            return self._restart_stage(stage, command, losses)

        if stage.metric == "val":
            reached = val_losses[-1] if val_losses else math.nan
        else:
            reached = tail_mean(losses, stage.trial_steps)
            reached = math.nan if reached is None else reached
        if self._lost_ground(stage, reached, losses):
            return self._restart_stage(stage, command, losses, reason="no_progress")

        self._update_steps += len(losses)
        self._remember_tail(losses, stage.trial_steps)
        stage.final_loss = reached if math.isfinite(reached) else None
        logger.info(
            "stage %d done at update step %d: %s loss %.5g (predicted %s)",
            stage.index,
            self._update_steps,
            stage.metric,
            reached,
            "n/a" if stage.chosen_forecast is None else f"{stage.chosen_forecast:.5g}",
        )
        return self._begin_stage()

    def _lost_ground(self, stage: StageRecord, reached: float, losses: list[float]) -> bool:
        """Whether a searched stage ended clearly above where it started, the first time.

        Such a stage did harm that no later stage is sure to undo (a network whose units
        died at too large an LR stays at chance level), so it is trained again from its
        snapshot with the next-best LR, once: the second result stands either way.

        By the validation loss (measured on a fixed subset, so without mini-batch noise), the
        loss at the end is compared with the highest first validation loss of the candidates,
        or, in a settled stage, with the validation loss at the previous stage's end.
        By the training loss, the mean of the stage's last τ' losses with the mean of the
        losses trained just before it (:attr:`StageRecord.start_loss`), and the difference
        must also exceed :data:`NO_PROGRESS_Z` standard errors of two such means, at the
        noise the start showed: with noisy mini-batch losses they differ by chance. Either way
        it must exceed :data:`NO_PROGRESS_MARGIN` of the start.
        """
        if stage.cooldown or stage.choice_reason or not self._config.restart_on_no_progress:
            return False
        if any(restart.reason == "no_progress" for restart in stage.restarts):
            return False
        noise = 0.0
        if stage.metric == "train":
            start = stage.start_loss
            if start is None or stage.start_loss_error is None:
                return False
            # The noise of the two means, as the start measured it: a stage that went unstable
            # has a wide spread of its own, which must not excuse it.
            noise = NO_PROGRESS_Z * math.sqrt(2.0) * stage.start_loss_error
        elif stage.settled:
            # No candidate measured this stage's start: the previous stage's end did.
            previous = self._history[-2]
            start = previous.final_loss if previous.metric == "val" else None
        else:
            start = stage_start_value(stage)
        if start is None or not (math.isfinite(start) and math.isfinite(reached)):
            return False
        return reached - start > max(NO_PROGRESS_MARGIN * abs(start), noise)

    def _restart_stage(
        self, stage: StageRecord, command: Train, losses: list[float], reason: str = ""
    ) -> list[Command]:
        """Stage training diverged or lost ground: roll back to the snapshot, next-best LR."""
        self._search_steps += len(losses)
        if stage.kept_trial_steps:
            # The kept trial's steps are rolled back with the rest: they were search after all.
            self._update_steps -= stage.kept_trial_steps
            self._search_steps += stage.kept_trial_steps
            stage.kept_trial_steps = 0
        reason = reason or divergence(command, losses, losses) or "diverged"
        stage.restarts.append(StageRestart(lr=command.lr, steps=len(losses), reason=reason))
        if stage.settled:
            return self._search_after_all(stage, command, losses, reason)
        if stage.cooldown and stage.choice_reason != "all_failed":
            logger.warning(
                "stage %d: the cooldown from lr=%.4g diverged after %d steps (%s, loss %.4g); "
                "restoring the stage snapshot and cooling down from min_lr=%.4g",
                stage.index,
                command.lr,
                len(losses),
                reason,
                losses[-1],
                self._config.min_lr,
            )
            stage.chosen_lr = self._config.min_lr
            stage.choice_reason = "all_failed"
            total = self._config.total_steps
            assert total is not None  # a cooldown needs a budget
            # What the diverged steps used of the budget is gone; the cooldown gets the rest.
            stage.stage_steps = max(1, total - self.budget_used)
            return [Restore(), self._cooldown_train(stage, self._config.min_lr)]
        if stage.choice_reason == "all_failed":
            raise DivergenceError(
                f"stage {stage.index}: the loss became {losses[-1]} after {len(losses)} steps "
                f"even at min_lr={self._config.min_lr} after "
                f"{'the cooldown' if stage.cooldown else 'every candidate'} diverged; the "
                "model or data produce non-finite losses at any LR in the search range"
            )
        logger.warning(
            "stage %d: training at lr=%.4g %s after %d steps (%s, loss %.4g); restoring "
            "the stage snapshot and choosing again",
            stage.index,
            command.lr,
            "ended above its starting loss" if reason == "no_progress" else "diverged",
            len(losses),
            reason,
            losses[-1],
        )
        stage.chosen_lr = None
        stage.chosen_forecast = None
        end = self._search_end()
        if self._config.budget_includes_search and end is not None:
            # The diverged steps came out of the budget: shorten the stage to keep the rest.
            stage.stage_steps = max(
                stage.trial_steps, min(stage.stage_steps, end - self.budget_used)
            )
        return self._choose(stage)

    def _search_after_all(
        self, stage: StageRecord, command: Train, losses: list[float], reason: str
    ) -> list[Command]:
        """A settled stage failed: roll it back and search it like any other stage.

        The search covers the window around the settled LR, with no anchor: that LR has just
        failed at this stage's length, and a short trial would not show it.
        """
        logger.warning(
            "stage %d: training on at the settled lr=%.4g failed after %d steps (%s, loss "
            "%.4g); restoring the stage snapshot and searching again",
            stage.index,
            command.lr,
            len(losses),
            reason,
            losses[-1],
        )
        stage.settled = False
        stage.chosen_lr = None
        stage.anchor_lr = None
        _, stage.search_range = self._window(self._history[-2])  # settling needs a previous
        stage.stage_steps = self._stretch_to_budget(
            stage.index, self._config.stage_length(stage.index)
        )
        return [Restore(), self._next_trial()]

    # -- helpers -----------------------------------------------------------------------------

    def _metric_for(self, stage_index: int) -> Metric:
        at_max = self._config.stage_length(stage_index) >= self._config.max_stage_steps
        use_val = self._validation and self._config.use_val_loss and at_max
        return "val" if use_val else "train"

    def _train(
        self,
        phase: Phase,
        steps: int,
        lr: float,
        eval_every: int = 0,
        *,
        end_lr: float | None = None,
        abort_above: float | None = None,
    ) -> Train:
        self._seq += 1
        return Train(
            seq=self._seq,
            phase=phase,
            steps=steps,
            lr=float(lr),
            end_lr=float(lr if end_lr is None else end_lr),
            eval_every=eval_every,
            abort_above=abort_above,
        )

    def _reply(self, commands: list[Command]) -> list[Command]:
        last = commands[-1]
        assert isinstance(last, Train), "every reply must end with a Train command"
        self._pending = last
        self._last_reply = list(commands)
        return list(commands)

    # -- serialisation -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain JSON-able data (dicts, lists, str, int, float, bool, None)."""
        return {
            "version": STATE_VERSION,
            "config": self._config.to_dict(),
            "validation": self._validation,
            "seq": self._seq,
            "stage_index": self._stage_index,
            "update_steps": self._update_steps,
            "search_steps": self._search_steps,
            "evaluations": self._evaluations,
            "recent_loss": self._recent_loss,
            "recent_mean": None if self._recent_mean is None else list(self._recent_mean),
            "last_reply": [c.to_dict() for c in self._last_reply],
            "history": [s.to_dict() for s in self._history],
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> Controller:
        """Rebuild a controller from :meth:`state_dict`'s output."""
        if not isinstance(state, dict):
            raise ConfigError(f"state must be a dict, got {type(state).__name__}")
        version = state.get("version")
        if version != STATE_VERSION:
            raise ConfigError(
                f"controller state version {version!r} is not supported; this autolrs reads "
                f"version {STATE_VERSION}"
            )
        controller = cls(AutoLRSConfig.from_dict(state["config"]), validation=state["validation"])
        controller._seq = int(state["seq"])
        controller._stage_index = int(state["stage_index"])
        controller._update_steps = int(state["update_steps"])
        controller._search_steps = int(state["search_steps"])
        controller._evaluations = int(state["evaluations"])
        recent = state.get("recent_loss")
        controller._recent_loss = None if recent is None else float(recent)
        mean = state.get("recent_mean")
        controller._recent_mean = None if mean is None else (float(mean[0]), float(mean[1]))
        controller._history = [StageRecord.from_dict(s) for s in state["history"]]
        controller._last_reply = [command_from_dict(c) for c in state["last_reply"]]
        if controller._last_reply:
            last = controller._last_reply[-1]
            if not isinstance(last, Train):
                raise ConfigError("state's last_reply must end with a train command")
            controller._pending = last
        return controller


def budget_used(config: AutoLRSConfig, update_steps: int, search_steps: int) -> int:
    """Steps that count against ``config.total_steps``: all, or the update steps only."""
    return update_steps + search_steps if config.budget_includes_search else update_steps


def budget_spent(config: AutoLRSConfig, used: int) -> bool:
    """Whether ``used`` steps (see :func:`budget_used`) spend ``config.total_steps``."""
    return config.total_steps is not None and used >= config.total_steps


def _make_search(
    config: AutoLRSConfig, low: float | None = None, high: float | None = None
) -> GPSearch:
    return GPSearch(
        config.min_lr if low is None else low,
        config.max_lr if high is None else high,
        kappa=config.kappa,
        length_scale=config.gp_length_scale,
        fit_hyperparameters=config.gp_fit_hyperparameters,
        first_candidate=config.first_candidate,
    )


def stage_start_value(stage: StageRecord) -> float | None:
    """The stage's loss near its start, in its metric, or None when no candidate forecast.

    It is the highest first point of a candidate that gave a forecast.
    """
    firsts = [c.losses[0] for c in stage.candidates if c.forecast is not None and c.losses]
    finite = [x for x in firsts if math.isfinite(x)]
    return max(finite) if finite else None


def stage_observations(stage: StageRecord) -> list[Observation]:
    """The GP's data for ``stage``; an LR whose stage training diverged counts as failed."""
    diverged = {restart.lr for restart in stage.restarts}
    return [
        Observation(lr=c.lr, value=None if c.lr in diverged else c.forecast)
        for c in stage.candidates
    ]
