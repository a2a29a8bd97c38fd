"""AutoLRS inside ``lightning.pytorch``: one callback runs the search within ``trainer.fit``.

::

    trainer = Trainer(callbacks=[AutoLRSCallback(1e-4, 1e-1, total_steps=5_000)])
    trainer.fit(module, datamodule)

The callback builds :class:`~autolrs.AutoLRS` on the module's optimizer when training starts
and reports each training batch's loss from ``on_train_batch_end``. Between two batches the
search may restore the module and optimizer from its snapshot and change the LR; Lightning keeps
no copy of either that could go stale (its ``LightningOptimizer`` forwards to the real
optimizer), so the next batch simply trains from the restored state.

Requirements, checked when ``fit`` starts: one optimizer, no LR scheduler from
``configure_optimizers`` (AutoLRS owns the LR), ``accumulate_grad_batches=1``, and, in manual
optimization, one ``optimizer.step()`` per ``training_step`` that returns the loss. A batch
that trained nothing (``training_step`` returned None in automatic optimization, or AMP skipped
the optimizer step) is not reported. :class:`AutoLRSCallback` describes the budget, the
validation loss, checkpoints and logging.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from autolrs._optional import require
from autolrs.config import AutoLRSConfig
from autolrs.errors import AutoLRSError, ConfigError
from autolrs.integrations._common import (
    METRIC_PREFIX,
    DecisionMetrics,
    check_total_steps,
    check_val_batches,
    resolve_config,
    warn_if_step_cap_too_low,
)
from autolrs.pytorch import AutoLRS, Stateful

pl = require("lightning.pytorch", "lightning", "autolrs.integrations.lightning")

__all__ = ["AutoLRSCallback"]

logger = logging.getLogger(__name__)

#: Version of the layout of :meth:`AutoLRSCallback.state_dict`.
STATE_FORMAT = 1


class AutoLRSCallback(pl.Callback):
    """Searches the LR schedule while ``trainer.fit`` trains, as AutoLRS (Jin et al., 2021).

    **Budget.** Lightning's ``global_step`` and ``max_steps`` count every optimizer step,
    including the candidate trials that are rolled back. When it is given, the callback sets
    ``trainer.should_stop`` once :attr:`AutoLRS.budget_used` reaches ``total_steps``: with the
    default config (:meth:`AutoLRSConfig.for_budget`) the budget counts every optimizer step
    too, so ``max_steps=total_steps`` is the same limit. A ``config`` whose budget counts update
    steps only (``budget_includes_search=False``, the paper's) takes up to about twice as many
    optimizer steps: leave ``max_steps`` unlimited (or above ``3 * total_steps``) then. Either
    way ``max_epochs`` must be large enough; the first limit reached ends the run.

    **Validation loss.** Once stages reach their longest length (τ_max) candidates are judged by
    the validation loss, measured on a fixed slice: the first ``val_batches`` mini-batches of the
    first validation dataloader of the fit, fetched once and kept on the device. Each batch runs
    the module's ``validation_step`` in eval mode under ``torch.no_grad()``, with ``self.log``
    and ``self.log_dict`` captured instead of reaching Lightning (no metric, checkpoint monitor
    or progress bar sees these calls). The loss of a batch is what ``validation_step`` returns:
    a scalar tensor, or the ``"loss"`` (else ``val_key``) item of a returned dict; when it
    returns None, the value it logged as ``val_key``. The slice's loss is the mean over its
    batches. Alternatively give ``val_fn``. Without validation data the training loss is
    forecast throughout.

    **Checkpoints.** The search state (including its snapshot unless ``checkpoint_snapshot`` is
    False) is saved with every Lightning checkpoint under this callback's ``state_key``;
    ``trainer.fit(module, ckpt_path=...)`` with an ``AutoLRSCallback`` of the same config
    continues the search where it was. Each ``fit`` that does not resume starts a new search.

    **Logging.** Every reported step logs ``autolrs/lr`` (the LR that step trained with),
    ``autolrs/update_steps`` and ``autolrs/search_steps`` through ``pl_module.log`` (so
    ``log_every_n_steps`` applies). Each decision is written once to every logger of the
    trainer: ``autolrs/chosen_lr``, ``autolrs/predicted_loss`` and ``autolrs/stage`` when a
    stage's LR is chosen, ``autolrs/stage_final_loss`` when a stage ends, with the counters.

    Args:
        min_lr: Smallest LR the search may choose (first param group). Required without
            ``config``; replaces ``config.min_lr`` when both are given.
        max_lr: Largest LR the search may choose. Same rules as ``min_lr``.
        total_steps: Update steps to train; the trainer is stopped when they are done. Without
            ``config`` it also scales the stage lengths (:meth:`AutoLRSConfig.for_budget`).
            None: no budget stop.
        config: The algorithm's constants. Default: ``for_budget(total_steps, ...)`` when
            ``total_steps`` is given, else the paper's constants.
        val_batches: Mini-batches in the fixed validation slice. 0 turns validation off.
        val_fn: Instead of the slice, ``val_fn(pl_module)`` returns the validation loss as a
            float; it runs in eval mode under ``torch.no_grad()`` with logging captured.
        val_key: Name under which ``validation_step`` logs its loss, used when it returns
            nothing.
        snapshot: ``"memory"`` (a CPU copy) or ``"disk"``; None (default): disk when
            ``snapshot_dir`` is given, else memory. See :class:`AutoLRS`.
        snapshot_dir: Folder for disk snapshots; giving it selects them.
        extra_state: Further objects to snapshot and restore with the module, by name. An AMP
            ``GradScaler`` of the precision plugin is added as ``"grad_scaler"``.
        sync_timeout: Seconds each loss average across ranks may wait (distributed runs).
        event_log: JSON-lines file for every event of the search, written by global rank 0.
        checkpoint_snapshot: Save the stage snapshot in checkpoints, so a run resumed in the
            middle of a stage's search rolls back to the right state. Costs one more copy of
            the module and optimizer state per checkpoint.
        log_metrics: Log the metrics above.
    """

    def __init__(
        self,
        min_lr: float | None = None,
        max_lr: float | None = None,
        *,
        total_steps: int | None = None,
        config: AutoLRSConfig | None = None,
        val_batches: int = 10,
        val_fn: Callable[[pl.LightningModule], float] | None = None,
        val_key: str = "val_loss",
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
        if not isinstance(val_key, str) or not val_key:
            raise ConfigError(f"val_key must be a non-empty string, got {val_key!r}")
        self.val_fn = val_fn
        self.val_key = val_key
        self.snapshot = snapshot
        self.snapshot_dir = snapshot_dir
        self.extra_state = dict(extra_state or {})
        self.sync_timeout = sync_timeout
        self.event_log = event_log
        self.checkpoint_snapshot = bool(checkpoint_snapshot)
        self.log_metrics = bool(log_metrics)

        #: The :class:`AutoLRS` driving the current fit; None before the first fit starts. It
        #: stays available after ``fit`` returns, for its ``history`` and ``schedule()``.
        self.scheduler: AutoLRS | None = None
        self._loaded_state: dict[str, Any] | None = None
        self._decisions = DecisionMetrics()
        self._step_hook: Any = None
        self._unreported_steps = 0

    # -- fit lifecycle -----------------------------------------------------------------------

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Refuse settings that would fight the search, before any step is taken."""
        if len(trainer.optimizers) != 1:
            raise ConfigError(
                f"AutoLRSCallback drives exactly one optimizer, got {len(trainer.optimizers)} "
                "from configure_optimizers"
            )
        if trainer.lr_scheduler_configs:
            names = [type(c.scheduler).__name__ for c in trainer.lr_scheduler_configs]
            raise ConfigError(
                f"configure_optimizers returned LR scheduler(s) {names}, but AutoLRS sets the LR "
                "itself: return only the optimizer (use AutoLRSConfig(warmup_steps=..., "
                "warmup_lr=...) for a warmup)"
            )
        if trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                "AutoLRSCallback needs one optimizer step per training batch, got "
                f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}); use 1 and "
                "a larger batch instead"
            )
        warn_if_step_cap_too_low(trainer.max_steps, self.total_steps, "max_steps", self.config)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Build the scheduler on the optimizer, after Lightning restored any checkpoint."""
        optimizer = trainer.optimizers[0]
        extra = dict(self.extra_state)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            extra.setdefault("grad_scaler", scaler)

        self._decisions = DecisionMetrics()
        self.scheduler = AutoLRS(
            optimizer,
            pl_module,
            val_fn=self._make_val_fn(trainer, pl_module),
            config=self.config,
            snapshot=self.snapshot,
            snapshot_dir=self.snapshot_dir,
            extra_state=extra,
            sync_timeout=self.sync_timeout,
            event_log=self.event_log if trainer.is_global_zero else None,
        )
        self.scheduler.add_listener(self._decisions)
        if self._loaded_state is not None:
            self.scheduler.load_state_dict(self._loaded_state)
            self._loaded_state = None
            logger.info(
                "resumed the AutoLRS search at update step %d (stage %d, %s)",
                self.scheduler.update_steps,
                self.scheduler.stage,
                self.scheduler.phase,
            )

        self._unreported_steps = 0
        self._step_hook = optimizer.register_step_post_hook(self._count_optimizer_step)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Report the batch's loss; the scheduler may restore a snapshot and set a new LR."""
        scheduler = self.scheduler
        assert scheduler is not None  # built in on_train_start
        steps, self._unreported_steps = self._unreported_steps, 0
        if steps == 0:
            logger.debug("batch %d took no optimizer step; nothing to report", batch_idx)
            return
        if steps > 1:
            raise AutoLRSError(
                f"batch {batch_idx} took {steps} optimizer steps; AutoLRSCallback needs exactly "
                "one optimizer step per training batch"
            )
        loss = _training_loss(outputs)
        if loss is None and pl_module.automatic_optimization:
            # training_step returned None: Lightning still calls optimizer.step, but with no
            # gradients, so nothing was trained.
            logger.debug("batch %d returned no loss; nothing to report", batch_idx)
            return
        if loss is None:
            raise AutoLRSError(
                "training_step must return its loss (a tensor, or a dict with a 'loss' item) "
                f"for AutoLRS to see it; batch {batch_idx} returned {type(outputs).__name__}"
            )

        trained_lr = scheduler.get_last_lr()[0]
        scheduler.step(loss)

        if self.log_metrics:
            self._log_step(pl_module, trained_lr)
            # A decision is logged once, straight to the loggers: through pl_module.log it
            # would be repeated at every later step of the epoch. Steps are 0-based there.
            for metrics in self._decisions.drain():
                for experiment_logger in trainer.loggers:
                    experiment_logger.log_metrics(metrics, step=trainer.global_step - 1)

        if (
            self.total_steps is not None
            and scheduler.budget_used >= self.total_steps
            and not trainer.should_stop
        ):
            logger.info(
                "AutoLRS budget reached: %d update steps (plus %d search steps); stopping",
                scheduler.update_steps,
                scheduler.search_steps,
            )
            trainer.should_stop = True

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Stop counting optimizer steps; the scheduler stays readable."""
        if self._step_hook is not None:
            self._step_hook.remove()
            self._step_hook = None

    # -- checkpointing -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The search state, saved by Lightning in every checkpoint under ``state_key``."""
        if self.scheduler is not None:
            state = self.scheduler.state_dict(include_snapshot=self.checkpoint_snapshot)
        elif self._loaded_state is not None:
            state = self._loaded_state
        else:
            return {}
        return {"format": STATE_FORMAT, "autolrs": state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's search state; it is applied when training starts."""
        if not state_dict:
            return  # saved before any fit had started
        if state_dict.get("format") != STATE_FORMAT:
            raise ConfigError(
                f"AutoLRSCallback checkpoint state format {state_dict.get('format')!r} is not "
                f"supported; expected {STATE_FORMAT}"
            )
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state_dict["autolrs"])
        else:
            self._loaded_state = state_dict["autolrs"]

    # -- internals ---------------------------------------------------------------------------

    def _count_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kw: Any) -> None:
        self._unreported_steps += 1

    def _log_step(self, pl_module: pl.LightningModule, trained_lr: float) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        metrics = {
            "lr": trained_lr,
            "update_steps": scheduler.update_steps,
            "search_steps": scheduler.search_steps,
        }
        for name, value in metrics.items():
            pl_module.log(
                METRIC_PREFIX + name, float(value), on_step=True, on_epoch=False, batch_size=1
            )

    def _make_val_fn(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule
    ) -> Callable[[], float] | None:
        if self.val_batches == 0:
            return None
        if self.val_fn is not None:
            user_fn = self.val_fn

            def evaluate() -> float:
                with _captured_logging(pl_module):
                    return user_fn(pl_module)

            return evaluate

        loader = _first_val_dataloader(trainer)
        if loader is None:
            logger.info(
                "no validation dataloader (or no validation_step) in this fit: AutoLRS forecasts "
                "the training loss throughout"
            )
            return None
        return _ValidationSlice(trainer, pl_module, loader, self.val_batches, self.val_key)


class _ValidationSlice:
    """Validation loss on a fixed slice: the first ``count`` batches of ``loader``.

    The batches are fetched on the first call and then kept, already moved to the device, so
    every evaluation sees the same data. AutoLRS calls this in eval mode under no_grad.
    """

    def __init__(
        self,
        trainer: pl.Trainer,
        module: pl.LightningModule,
        loader: Any,
        count: int,
        val_key: str,
    ) -> None:
        self._trainer = trainer
        self._module = module
        self._loader = loader
        self._count = count
        self._val_key = val_key
        self._batches: list[Any] | None = None
        parameters = inspect.signature(module.validation_step).parameters
        self._step_kwargs = {"dataloader_idx": 0} if "dataloader_idx" in parameters else {}

    def __call__(self) -> float:
        if self._batches is None:
            self._batches = self._fetch()
        losses = []
        with (
            _captured_logging(self._module) as logged,
            self._trainer.precision_plugin.val_step_context(),
        ):
            for index, batch in enumerate(self._batches):
                logged.clear()
                output = self._module.validation_step(batch, index, **self._step_kwargs)
                losses.append(_validation_loss(output, logged, self._val_key))
        return math.fsum(losses) / len(losses)

    def _fetch(self) -> list[Any]:
        """The slice's batches, prepared as Lightning's loops prepare theirs."""
        trainer, module = self._trainer, self._module
        # Lightning's private helper picks the module's or the datamodule's hook, as its own
        # loops do; older or newer versions without it fall back to the module's public hook.
        before_transfer = getattr(module, "_on_before_batch_transfer", None)
        batches = []
        for batch in itertools.islice(self._loader, self._count):
            batch = trainer.precision_plugin.convert_input(batch)
            if before_transfer is not None:
                batch = before_transfer(batch, dataloader_idx=0)
            else:
                batch = module.on_before_batch_transfer(batch, 0)
            batches.append(trainer.strategy.batch_to_device(batch, dataloader_idx=0))
        if not batches:
            raise AutoLRSError("the validation dataloader yielded no batch for AutoLRS")
        if len(batches) < self._count:
            logger.info(
                "the validation dataloader has %d batches, fewer than val_batches=%d; AutoLRS "
                "validates on all of them",
                len(batches),
                self._count,
            )
        return batches


def _first_val_dataloader(trainer: pl.Trainer) -> Any:
    """The fit's first validation dataloader (set up now if Lightning has not yet), or None."""
    if trainer.val_dataloaders is None and trainer.enable_validation:
        # Lightning loads validation data lazily, at the first epoch that validates; load it the
        # way its fit loop does, so it gets the distributed sampler and the user's settings.
        trainer.validating = True
        try:
            trainer.fit_loop.epoch_loop.val_loop.setup_data()
        finally:
            trainer.training = True
    loaders = trainer.val_dataloaders
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    if isinstance(loaders, (list, tuple)):
        if len(loaders) > 1:
            logger.info("%d validation dataloaders: AutoLRS validates on the first", len(loaders))
        loaders = loaders[0] if loaders else None
    return loaders


@contextlib.contextmanager
def _captured_logging(module: pl.LightningModule) -> Iterator[dict[str, Any]]:
    """Route ``module.log``/``log_dict`` into a dict for the duration, away from Lightning.

    Called from a training hook, ``self.log`` in ``validation_step`` would record a training
    metric under the validation name, where checkpoint monitors and loggers would see it.
    """
    logged: dict[str, Any] = {}

    def log(name: str, value: Any, *args: Any, **kwargs: Any) -> None:
        logged[name] = value

    def log_dict(dictionary: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        logged.update(dictionary)

    # Instance attributes shadow the methods; deleting them brings the methods back.
    module.log = log
    module.log_dict = log_dict
    try:
        yield logged
    finally:
        del module.log
        del module.log_dict


def _training_loss(outputs: Any) -> Any:
    """The loss in ``on_train_batch_end``'s outputs (a tensor or a dict with ``"loss"``)."""
    if isinstance(outputs, Mapping):
        return outputs.get("loss")
    return outputs


def _validation_loss(output: Any, logged: Mapping[str, Any], val_key: str) -> float:
    """One batch's validation loss from what ``validation_step`` returned or logged."""
    if output is None:
        value = logged.get(val_key)
    elif isinstance(output, Mapping):
        value = output.get("loss", output.get(val_key))
    else:
        value = output
    if value is None:
        raise AutoLRSError(
            f"validation_step returned {type(output).__name__} and logged {sorted(logged)}, "
            f"none of which is the validation loss: return it (a tensor, or a dict with a "
            f"'loss' item), log it as {val_key!r} (or set AutoLRSCallback(val_key=...)), or "
            "pass AutoLRSCallback(val_fn=...)"
        )
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise AutoLRSError(
                f"the validation loss must be a scalar, got a tensor of shape {tuple(value.shape)}"
            )
        return float(value.item())
    return float(value)
