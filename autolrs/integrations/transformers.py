"""AutoLRS for the Hugging Face ``Trainer``: a callback attached in one line.

::

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val)
    autolrs = AutoLRSCallback(1e-5, 1e-3, total_steps=5_000).attach(trainer)
    trainer.train()

Why ``attach`` and not ``callbacks=[...]``: the Trainer hands its callbacks neither the loss
of a step nor itself, and it steps an LR scheduler of its own after every optimizer step. So
``attach(trainer)``

- makes :class:`HeldLRScheduler` the Trainer's LR scheduler: its ``step()`` leaves the LR to
  AutoLRS, and its ``get_last_lr()`` reports the optimizer's actual LR, which the Trainer logs
  as ``learning_rate``;
- wraps ``trainer.training_step`` on this instance (not the class, so any Trainer subclass
  works) to add up the losses it returns. The Trainer itself sums exactly these values,
  already scaled for gradient accumulation, into the ``loss`` it logs, so the sum over one
  optimizer step's micro-batches is that step's loss by the Trainer's own definition; reading
  them costs one host sync per optimizer step. Reading ``state.log_history`` instead would need
  ``logging_steps=1`` (a sync, a log record and every logging integration called at each step),
  and a forward hook on the model would miss losses computed outside the model (label
  smoothing, ``compute_loss_func``) and the ``num_items_in_batch`` scaling;
- wraps ``trainer.train`` to learn ``resume_from_checkpoint``, so a resumed run reloads the
  search state saved in that checkpoint folder;
- registers the callback.

The callback builds :class:`~autolrs.AutoLRS` in ``on_train_begin`` (after the Trainer loaded
any checkpoint) and calls its ``step`` in ``on_step_end``, after the optimizer step and
``zero_grad``, so a restore lands between two steps. ``on_save`` writes the search state to
``autolrs_state.pt`` in each checkpoint folder. Decisions are logged through ``trainer.log``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from autolrs._optional import require
from autolrs.config import AutoLRSConfig
from autolrs.errors import AutoLRSError, ConfigError
from autolrs.integrations._common import (
    DecisionMetrics,
    check_total_steps,
    check_val_batches,
    resolve_config,
    warn_if_step_cap_too_low,
)
from autolrs.pytorch import AutoLRS, Stateful

transformers = require("transformers", "transformers", "autolrs.integrations.transformers")
trainer_utils = require(
    "transformers.trainer_utils", "transformers", "autolrs.integrations.transformers"
)

__all__ = ["AutoLRSCallback", "HeldLRScheduler", "STATE_FILE"]

logger = logging.getLogger(__name__)

#: File the search state is written to inside each Trainer checkpoint folder.
STATE_FILE = "autolrs_state.pt"

#: Version of the layout of :data:`STATE_FILE`.
STATE_FORMAT = 1


class HeldLRScheduler:
    """The Trainer's LR scheduler while AutoLRS is attached: it leaves the LR to AutoLRS.

    The Trainer calls ``step()`` after every optimizer step and logs ``get_last_lr()[0]`` as
    ``learning_rate``. Here ``step()`` changes nothing and ``get_last_lr()`` reports the LR of
    each param group of the Trainer's optimizer as it stands, i.e. the one AutoLRS set. It has
    no state of its own (the search state is saved separately, see :data:`STATE_FILE`).

    Args:
        trainer: The Trainer whose optimizer it reports on.
    """

    def __init__(self, trainer: Any) -> None:
        self._trainer = trainer

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Leave the LR as AutoLRS set it."""

    def get_last_lr(self) -> list[float]:
        """LR of each param group of the Trainer's optimizer."""
        optimizer = self._trainer.optimizer
        if optimizer is None:
            raise AutoLRSError(
                "the Trainer has no optimizer yet: the LR exists once training starts"
            )
        return [float(group["lr"]) for group in optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """Empty: nothing to save."""
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Nothing to load."""


class AutoLRSCallback(transformers.TrainerCallback):
    """Searches the LR schedule while ``Trainer.train`` runs, as AutoLRS (Jin et al., 2021).

    Use it through :meth:`attach`; passing it in ``callbacks=[...]`` alone is an error, for
    the reasons in this module's docstring.

    **Budget.** The Trainer's ``global_step`` and ``max_steps`` count every optimizer step,
    including the candidate trials that are rolled back. When it is given, training stops
    (``control.should_training_stop``) once :attr:`AutoLRS.budget_used` reaches
    ``total_steps``: with the default config (:meth:`AutoLRSConfig.for_budget`) the budget
    counts every optimizer step too, so ``max_steps=total_steps`` is the same limit. A
    ``config`` whose budget counts update steps only (``budget_includes_search=False``, the
    paper's) takes up to about twice as many optimizer steps: set ``max_steps`` to at least
    ``3 * total_steps`` then, or leave it at -1 with enough ``num_train_epochs``. The first
    limit reached ends the run.

    **Validation loss.** Once stages reach their longest length (τ_max) candidates are judged by
    the validation loss on a fixed slice: the first ``val_batches`` batches of the Trainer's
    eval dataloader (of the first eval dataset when there are several), fetched once, each
    scored by ``trainer.prediction_step(..., prediction_loss_only=True)`` in eval mode under
    ``torch.no_grad()``; the slice's loss is the mean over its batches, i.e. the ``eval_loss``
    that ``trainer.evaluate()`` would report on those batches. In a distributed run each
    process scores its own shard and AutoLRS averages them. Alternatively give ``val_fn``.
    Without an ``eval_dataset`` the training loss is forecast throughout.

    **Checkpoints.** ``on_save`` writes the search state (with its snapshot unless
    ``checkpoint_snapshot`` is False) to :data:`STATE_FILE` in the checkpoint folder the
    Trainer just wrote; ``trainer.train(resume_from_checkpoint=...)`` on a trainer attached to
    a callback of the same config loads it and continues the search.

    **Logging.** Each decision is logged through ``trainer.log`` as ``autolrs/chosen_lr``,
    ``autolrs/predicted_loss``, ``autolrs/stage``, ``autolrs/update_steps`` and
    ``autolrs/search_steps`` (and ``autolrs/stage_final_loss`` when a stage ends). The
    Trainer's ``learning_rate`` shows the LR of every logged step.

    Args:
        min_lr: Smallest LR the search may choose (first param group). Required without
            ``config``; replaces ``config.min_lr`` when both are given.
        max_lr: Largest LR the search may choose. Same rules as ``min_lr``.
        total_steps: Update steps to train; training stops when they are done. Without
            ``config`` it also scales the stage lengths (:meth:`AutoLRSConfig.for_budget`).
            None: no budget stop.
        config: The algorithm's constants. Default: ``for_budget(total_steps, ...)`` when
            ``total_steps`` is given, else the paper's constants.
        val_batches: Batches in the fixed validation slice. 0 turns validation off.
        val_fn: Instead of the slice, ``val_fn(model)`` returns the validation loss as a float;
            it runs in eval mode under ``torch.no_grad()``.
        snapshot: ``"memory"`` (a CPU copy) or ``"disk"``; None (default): disk when
            ``snapshot_dir`` is given, else memory. See :class:`AutoLRS`.
        snapshot_dir: Folder for disk snapshots; giving it selects them.
        extra_state: Further objects to snapshot and restore with the model, by name. The
            accelerator's AMP ``GradScaler``, when there is one, is added as ``"grad_scaler"``.
        sync_timeout: Seconds each loss average across processes may wait.
        event_log: JSON-lines file for every event of the search, written by the main process.
        checkpoint_snapshot: Save the stage snapshot with checkpoints, so a run resumed in the
            middle of a stage's search rolls back to the right state. Costs one more copy of
            the model and optimizer state per checkpoint.
        log_metrics: Log decisions through ``trainer.log``.
    """

    def __init__(
        self,
        min_lr: float | None = None,
        max_lr: float | None = None,
        *,
        total_steps: int | None = None,
        config: AutoLRSConfig | None = None,
        val_batches: int = 10,
        val_fn: Callable[[torch.nn.Module], float] | None = None,
        snapshot: str | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        extra_state: Mapping[str, Stateful] | None = None,
        sync_timeout: float = 600.0,
        event_log: str | os.PathLike[str] | None = None,
        checkpoint_snapshot: bool = True,
        log_metrics: bool = True,
    ) -> None:
        self.total_steps = check_total_steps(total_steps)
        self.config = resolve_config(min_lr, max_lr, self.total_steps, config)
        self.val_batches = check_val_batches(val_batches)
        if val_fn is not None and not callable(val_fn):
            raise ConfigError(f"val_fn must be callable or None, got {type(val_fn).__name__}")
        self.val_fn = val_fn
        self.snapshot = snapshot
        self.snapshot_dir = snapshot_dir
        self.extra_state = dict(extra_state or {})
        self.sync_timeout = sync_timeout
        self.event_log = event_log
        self.checkpoint_snapshot = bool(checkpoint_snapshot)
        self.log_metrics = bool(log_metrics)

        #: The :class:`AutoLRS` driving the current ``train``; None before training starts. It
        #: stays available afterwards, for its ``history`` and ``schedule()``.
        self.scheduler: AutoLRS | None = None
        #: The scheduler :meth:`attach` gives the Trainer; None until then.
        self.lr_scheduler: HeldLRScheduler | None = None
        self._trainer: Any = None
        self._resume_from: Path | None = None
        self._decisions = DecisionMetrics()
        self._step_loss: torch.Tensor | None = None
        self._unreported_steps = 0
        self._step_hook: Any = None

    def attach(self, trainer: Any) -> AutoLRSCallback:
        """Wire this callback into ``trainer``; returns the callback.

        Raises:
            ConfigError: ``trainer`` is not a ``transformers.Trainer``, already has AutoLRS
                attached, was given an LR scheduler, or asks for a schedule or warmup of its
                own (``lr_scheduler_type`` other than the default, ``warmup_steps`` > 0), or
                uses DeepSpeed or FSDP (whose sharded state AutoLRS cannot snapshot).
        """
        if not isinstance(trainer, transformers.Trainer):
            raise ConfigError(f"attach needs a transformers.Trainer, got {type(trainer).__name__}")
        if self._trainer is not None:
            raise ConfigError("this AutoLRSCallback is already attached to a Trainer")
        if isinstance(trainer.lr_scheduler, HeldLRScheduler):
            raise ConfigError("this Trainer already has an AutoLRSCallback attached")
        _check_no_schedule(trainer)
        if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
            raise ConfigError(
                "AutoLRSCallback does not support DeepSpeed or FSDP: their sharded model and "
                "optimizer state cannot be snapshotted and restored by AutoLRS"
            )
        warn_if_step_cap_too_low(
            trainer.args.max_steps, self.total_steps, "max_steps", self.config
        )

        self._trainer = trainer
        self.lr_scheduler = HeldLRScheduler(trainer)
        trainer.lr_scheduler = self.lr_scheduler

        measured_step = trainer.training_step

        @functools.wraps(measured_step)
        def training_step(*args: Any, **kwargs: Any) -> torch.Tensor:
            loss = measured_step(*args, **kwargs)
            self._add_loss(loss)
            return loss

        trainer.training_step = training_step

        train = trainer.train

        @functools.wraps(train)
        def train_and_resume(*args: Any, **kwargs: Any) -> Any:
            resume = kwargs.get("resume_from_checkpoint", args[0] if args else None)
            self._resume_from = _checkpoint_folder(resume, trainer.args.output_dir)
            return train(*args, **kwargs)

        trainer.train = train_and_resume
        trainer.add_callback(self)
        return self

    # -- training lifecycle ------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Build the scheduler; the Trainer has created its optimizer and loaded any checkpoint."""
        trainer = self._trainer
        if trainer is None:
            raise AutoLRSError(
                "AutoLRSCallback was added without attach(): call "
                "AutoLRSCallback(...).attach(trainer) instead of passing it in callbacks=[...], "
                "so that it can read each step's loss and own the LR"
            )
        if trainer.lr_scheduler is not self.lr_scheduler:
            raise AutoLRSError(
                f"the Trainer's LR scheduler was replaced by {type(trainer.lr_scheduler).__name__}"
                " after attach(); AutoLRS must own the LR"
            )
        optimizer = _unwrap_optimizer(trainer.optimizer)
        extra = dict(self.extra_state)
        scaler = getattr(trainer.accelerator, "scaler", None)
        if scaler is not None:
            extra.setdefault("grad_scaler", scaler)

        self._decisions = DecisionMetrics()
        self.scheduler = AutoLRS(
            optimizer,
            trainer.model,
            val_fn=self._make_val_fn(trainer),
            config=self.config,
            snapshot=self.snapshot,
            snapshot_dir=self.snapshot_dir,
            extra_state=extra,
            sync_timeout=self.sync_timeout,
            event_log=self.event_log if state.is_world_process_zero else None,
        )
        self.scheduler.add_listener(self._decisions)
        if self._resume_from is not None:
            self._load(self._resume_from)

        self._step_loss = None
        self._unreported_steps = 0
        if self._step_hook is not None:
            self._step_hook.remove()
        self._step_hook = optimizer.register_step_post_hook(self._count_optimizer_step)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        """Report the step's loss; the scheduler may restore a snapshot and set a new LR."""
        scheduler = self.scheduler
        assert scheduler is not None  # built in on_train_begin
        loss, self._step_loss = self._step_loss, None
        steps, self._unreported_steps = self._unreported_steps, 0
        if steps == 0:
            # The accelerator skipped the update (AMP found inf/NaN gradients): no step to count.
            logger.debug(
                "global step %d took no optimizer step; nothing to report", state.global_step
            )
            return control
        if loss is None:
            raise AutoLRSError(
                "no training loss was measured for this optimizer step: trainer.training_step "
                "was replaced after attach(); attach AutoLRS last"
            )
        scheduler.step(loss)

        if self.log_metrics:
            for metrics in self._decisions.drain():
                self._trainer.log(metrics)
        if self.total_steps is not None and scheduler.budget_used >= self.total_steps:
            if not control.should_training_stop:
                logger.info(
                    "AutoLRS budget reached: %d update steps (plus %d search steps); stopping",
                    scheduler.update_steps,
                    scheduler.search_steps,
                )
            control.should_training_stop = True
        return control

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Write the search state into the checkpoint folder the Trainer just saved."""
        if self.scheduler is None or not args.should_save:
            return
        folder = (
            Path(args.output_dir) / f"{trainer_utils.PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        )
        if not folder.is_dir():
            logger.warning(
                "checkpoint folder %s not found; the AutoLRS state of step %d is not saved",
                folder,
                state.global_step,
            )
            return
        state_dict = self.scheduler.state_dict(include_snapshot=self.checkpoint_snapshot)
        _atomic_save({"format": STATE_FORMAT, "autolrs": state_dict}, folder / STATE_FILE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Stop counting optimizer steps; the scheduler stays readable."""
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None

    # -- internals ---------------------------------------------------------------------------

    def _add_loss(self, loss: torch.Tensor) -> None:
        loss = loss.detach()
        self._step_loss = loss if self._step_loss is None else self._step_loss + loss

    def _count_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kw: Any) -> None:
        self._unreported_steps += 1

    def _load(self, folder: Path) -> None:
        path = folder / STATE_FILE
        if not path.is_file():
            raise AutoLRSError(
                f"resuming from {str(folder)!r}, which holds no {STATE_FILE}: that checkpoint "
                "was not saved with AutoLRS attached"
            )
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data.get("format") != STATE_FORMAT:
            raise ConfigError(
                f"{path} has state format {data.get('format')!r}; expected {STATE_FORMAT}"
            )
        scheduler = self.scheduler
        assert scheduler is not None
        scheduler.load_state_dict(data["autolrs"])
        logger.info(
            "resumed the AutoLRS search from %s at update step %d (stage %d, %s)",
            folder,
            scheduler.update_steps,
            scheduler.stage,
            scheduler.phase,
        )

    def _make_val_fn(self, trainer: Any) -> Callable[[], float] | None:
        if self.val_batches == 0:
            return None
        if self.val_fn is not None:
            user_fn, model = self.val_fn, trainer.model
            return lambda: user_fn(model)
        if trainer.eval_dataset is None:
            logger.info("no eval_dataset: AutoLRS forecasts the training loss throughout")
            return None
        return _ValidationSlice(trainer, self.val_batches)


class _ValidationSlice:
    """Mean eval loss over the first ``count`` batches of the Trainer's eval dataloader."""

    def __init__(self, trainer: Any, count: int) -> None:
        self._trainer = trainer
        self._count = count
        self._batches: list[Any] | None = None

    def __call__(self) -> float:
        if self._batches is None:
            self._batches = self._fetch()
        trainer = self._trainer
        losses = []
        for inputs in self._batches:
            # A shallow copy: the Trainer's loss code may pop the labels from the dict.
            loss, _, _ = trainer.prediction_step(trainer.model, dict(inputs), True)
            if loss is None:
                raise AutoLRSError(
                    "the eval batches give no loss (no labels?); AutoLRS needs the eval loss, or "
                    "AutoLRSCallback(val_fn=...) or val_batches=0"
                )
            losses.append(float(loss.mean().item()))
        return math.fsum(losses) / len(losses)

    def _fetch(self) -> list[Any]:
        eval_dataset = self._trainer.eval_dataset
        name = next(iter(eval_dataset)) if isinstance(eval_dataset, dict) else None
        loader = self._trainer.get_eval_dataloader(name)
        # Accelerate's wrapper registers itself as the active dataloader until it is exhausted
        # and syncs RNG states when iterated; its base loader keeps the sharding without either.
        loader = getattr(loader, "base_dataloader", loader)
        # Starting a DataLoader iterator draws a seed from the global RNG; keep training's
        # random stream as it would be without this fetch.
        with torch.random.fork_rng(devices=[]):
            batches = list(itertools.islice(loader, self._count))
        if not batches:
            raise AutoLRSError("the eval dataloader yielded no batch for AutoLRS")
        return batches


def _check_no_schedule(trainer: Any) -> None:
    """Refuse a Trainer set up to schedule the LR itself: its schedule would be ignored."""
    if trainer.lr_scheduler is not None:
        raise ConfigError(
            f"the Trainer was given an LR scheduler ({type(trainer.lr_scheduler).__name__}), but "
            "AutoLRS sets the LR itself: pass optimizers=(optimizer, None)"
        )
    args = trainer.args
    default_type = type(args).__dataclass_fields__["lr_scheduler_type"].default
    if _enum_value(args.lr_scheduler_type) != _enum_value(default_type):
        raise ConfigError(
            f"TrainingArguments(lr_scheduler_type={_enum_value(args.lr_scheduler_type)!r}) asks "
            "for a schedule, but AutoLRS sets the LR itself: leave lr_scheduler_type at its "
            "default"
        )
    warmup = max(float(args.warmup_steps or 0), float(getattr(args, "warmup_ratio", 0) or 0))
    if warmup > 0:
        raise ConfigError(
            f"TrainingArguments asks for a warmup (warmup_steps={args.warmup_steps!r}), which "
            "AutoLRS would ignore: use AutoLRSConfig(warmup_steps=..., warmup_lr=...) instead"
        )


def _enum_value(value: Any) -> str:
    return str(getattr(value, "value", value))


def _checkpoint_folder(resume: Any, output_dir: str) -> Path | None:
    """The folder ``Trainer.train(resume_from_checkpoint=resume)`` resumes from, or None."""
    if resume is None or resume is False:
        return None
    if resume is True:
        last = trainer_utils.get_last_checkpoint(output_dir)
        return None if last is None else Path(last)  # the Trainer reports the missing folder
    return Path(resume)


def _unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The ``torch.optim.Optimizer`` inside Accelerate's wrapper (which forwards to it)."""
    inner = getattr(optimizer, "optimizer", None)
    while isinstance(inner, torch.optim.Optimizer):
        optimizer, inner = inner, getattr(inner, "optimizer", None)
    return optimizer


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file renamed into place: never a half-written state."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".autolrs-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
