"""AutoLRS for a plain PyTorch training loop.

:class:`AutoLRS` speaks the ``torch.optim.lr_scheduler`` dialect (``step``, ``get_last_lr``,
``state_dict``/``load_state_dict``) and carries out the commands of the framework-free
:class:`~autolrs.core.controller.Controller`: it snapshots and restores the model and optimizer,
sets the LR, records every loss, and evaluates the validation function when asked.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import torch

from autolrs.config import AutoLRSConfig, resolve_config
from autolrs.core.commands import (
    Command,
    Phase,
    Report,
    Restore,
    Snapshot,
    Train,
    command_from_dict,
)
from autolrs.core.controller import Controller, budget_spent, budget_used
from autolrs.core.history import StageRecord
from autolrs.errors import (
    AutoLRSError,
    ConfigError,
    DivergenceError,
    ProtocolError,
    SnapshotError,
)
from autolrs.events import EventLog
from autolrs.pytorch.distributed import RankSync, default_sync
from autolrs.pytorch.snapshot import DiskSnapshot, MemorySnapshot, SnapshotStore, cpu_copy

__all__ = ["AutoLRS", "Stateful"]

logger = logging.getLogger(__name__)

#: Version of the layout of :meth:`AutoLRS.state_dict`.
STATE_FORMAT = 1


class Stateful(Protocol):
    """Anything with ``state_dict`` / ``load_state_dict``, e.g. a ``GradScaler`` or an EMA."""

    def state_dict(self) -> dict[str, Any]: ...  # noqa: D102

    def load_state_dict(self, state_dict: dict[str, Any]) -> Any: ...  # noqa: D102


class AutoLRS:
    """Searches the learning-rate schedule while the model trains.

    Call :meth:`step` once after every ``optimizer.step()`` with that step's loss. Between two
    calls, :meth:`step` may restore the model and optimizer from a snapshot and change the LR;
    the training loop just keeps going. Given ``total_steps``, the run takes that many optimizer
    steps, the search's rolled-back ones included, and :attr:`finished` turns true after the
    last::

        scheduler = AutoLRS(optimizer, model, min_lr=1e-3, max_lr=1e-1, val_fn=evaluate,
                            total_steps=20_000)
        for _ in range(20_000):
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            scheduler.step(loss)

    ``min_lr``, ``max_lr`` and every chosen LR refer to the first param group; the other groups
    keep the ratio of their initial LR to the first group's.

    Args:
        optimizer: Any ``torch.optim.Optimizer``; its LRs are overwritten from now on.
        model: The module being trained; its ``state_dict`` is snapshotted and restored.
        min_lr: Smallest LR the search may choose (> 0). Required unless ``config`` is given.
        max_lr: Largest LR the search may choose (> ``min_lr``). Required unless ``config``
            is given.
        val_fn: Zero-argument callable returning a validation loss as a float, measured on a
            small fixed subset (the paper uses 10 mini-batches). It is called in eval mode
            under ``torch.no_grad()``. Without it the training loss is forecast throughout.
        config: The algorithm's constants. Default: :meth:`AutoLRSConfig.for_budget` when
            ``total_steps`` is given, else the paper's constants.
        total_steps: Optimizer steps the run will take, search included; scales the stage
            lengths (see :meth:`AutoLRSConfig.for_budget`). Not allowed together with
            ``config``.
        snapshot: ``"memory"`` (a CPU copy) or ``"disk"``. None (default): ``"disk"`` when
            ``snapshot_dir`` is given, else ``"memory"``. A memory snapshot that would not fit
            in the available host memory is refused with :class:`SnapshotError`.
        snapshot_dir: Folder for disk snapshots; giving it selects them.
        extra_state: Further objects to snapshot and restore with the model, by name.
        distributed: Average every loss over the ranks of the default torch.distributed
            process group so that all ranks take identical decisions. None (default): do so
            whenever a process group of more than one rank is initialised.
        sync_timeout: Seconds to wait for the other ranks at each loss average before ending
            the job with an error (a rank died or stopped calling :meth:`step`).
        event_log: JSON-lines file to append every event of the search to (see
            :mod:`autolrs.events`); enough to rebuild the whole history. In a distributed job,
            give each rank its own file or pass it on rank 0 only.
        server: URL of an AutoLRS service (``autolrs serve``) to run the search in, instead of
            in this process; the decisions are the same. None: search in process.
        server_token: Bearer token for a server that requires one.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        model: torch.nn.Module,
        min_lr: float | None = None,
        max_lr: float | None = None,
        val_fn: Callable[[], float] | None = None,
        *,
        config: AutoLRSConfig | None = None,
        total_steps: int | None = None,
        snapshot: str | None = None,
        snapshot_dir: str | os.PathLike[str] | None = None,
        extra_state: Mapping[str, Stateful] | None = None,
        distributed: bool | None = None,
        sync_timeout: float = 600.0,
        event_log: str | os.PathLike[str] | None = None,
        server: str | None = None,
        server_token: str | None = None,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if not optimizer.param_groups:
            raise ConfigError(
                "optimizer must have at least one param group, got "
                f"{type(optimizer).__name__} with param_groups=[]: give it the model's parameters"
            )
        if not isinstance(model, torch.nn.Module):
            raise ConfigError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if val_fn is not None and not callable(val_fn):
            raise ConfigError(f"val_fn must be callable or None, got {type(val_fn).__name__}")

        self.optimizer = optimizer
        self.model = model
        self.val_fn = val_fn
        self._config = _resolve_config(config, min_lr, max_lr, total_steps)
        self._store = _make_store(snapshot, snapshot_dir)
        self._extra: dict[str, Stateful] = {}
        for name, obj in (extra_state or {}).items():
            self.register_state(name, obj)
        self._ratios = _group_ratios(optimizer)
        self._last_lr = [float(_lr_value(group["lr"])) for group in optimizer.param_groups]

        if distributed is None:
            self._sync = default_sync(sync_timeout)
        elif distributed:
            self._sync = RankSync(sync_timeout)
        else:
            self._sync = None

        self._optimizer_steps = 0
        optimizer.register_step_post_hook(self._count_optimizer_step)
        self._val_calls = 0

        # Progress through the pending Train command.
        self._done = 0
        self._losses: list[float] = []
        self._val_losses: list[float] = []
        # Commands of the latest reply not carried out yet, because a snapshot or restore
        # failed or the budget was spent, and the optimizer steps counted then (see _resume).
        self._unfinished: list[Command] = []
        self._unfinished_at = 0

        self._listeners: list[Callable[[dict[str, Any]], None]] = []
        self._started_at = time.monotonic()
        self._event_log = EventLog(event_log) if event_log is not None else None
        if self._event_log is not None:
            self._listeners.append(self._event_log)

        if server is None:
            self._controllers: Any = Controller
        else:
            from autolrs.service.client import RemoteControllerFactory

            self._controllers = RemoteControllerFactory(server, token=server_token)
        self.controller = self._controllers(self._config, validation=val_fn is not None)
        self._emit("start", config=self._config.to_dict(), validation=val_fn is not None)
        self._execute(self.controller.start())

    # -- the scheduler protocol --------------------------------------------------------------

    def step(self, loss: float | torch.Tensor) -> None:
        """Record the loss of the optimizer step just taken, then act on the search's commands.

        Args:
            loss: That step's training loss: a float or a one-element tensor.

        Raises:
            ConfigError: ``loss`` is not a number or a one-element tensor.
            AutoLRSError: No ``optimizer.step()`` was taken yet, or the budget
                (``config.total_steps``) is spent: training has ended.
            SnapshotError: The snapshot or restore the search asked for failed (a full disk, a
                read-only ``snapshot_dir``, too little host memory). The loss was recorded and
                the model and optimizer are as they were; once the cause is fixed, call
                :meth:`step` again (with any loss: it is not recorded) to carry the snapshot
                or restore out, then train on.
            DivergenceError: Training produced non-finite losses where no other LR is left to
                try (during warmup, or at ``min_lr`` after every candidate diverged). The model
                has been restored to the last snapshot when one exists.
        """
        value = _loss_value(loss)
        self._check_not_ended()
        if self._optimizer_steps == 0:
            raise AutoLRSError(
                "scheduler.step(loss) was called before any optimizer.step() (optimizer steps "
                "so far: 0): call it after each optimizer step"
            )
        if self._unfinished:
            self._resume()
            return
        command = self.controller.pending
        assert command is not None  # start() was called in __init__
        if self._sync is not None:
            value = self._sync.mean(value, seq=command.seq, index=self._done, what="loss")

        index = self._done
        self._losses.append(value)
        self._done += 1
        if self._done < command.steps and self._budget_spent():
            # A budget that counts the search can end inside a command. Inside a trial, the
            # model holds a candidate's weights: the restore puts the run's own back.
            if command.phase == "trial":
                self._restore()
                self._emit("restore")
            return
        stop = command.should_abort(value)
        if not stop and command.evaluates_after(index):
            val = self._evaluate()
            self._val_losses.append(val)
            stop = not math.isfinite(val)

        if stop or self._done == command.steps:
            report = Report(seq=command.seq, losses=self._losses, val_losses=self._val_losses)
            try:
                commands = self.controller.report(report)
            except DivergenceError:
                if not self._store.empty:
                    self._restore()
                raise
            self._clear_progress()  # the report holds them now
            if self._listeners:
                self._emit_outcome(command, report)
            if self._budget_spent():
                # Training ends here. A reply that begins with a restore (a trial ended, or a
                # stage was rolled back, with the budget) would leave weights that are not the
                # run's in the model: carry the restore out. No snapshot for a stage that
                # would begin after the end.
                restores = 1 if isinstance(commands[0], Restore) else 0
                self._execute(commands[:restores])
                self._unfinished, self._unfinished_at = commands[restores:], self._optimizer_steps
                return
            self._execute(commands)
        elif command.lr != command.end_lr:  # only a ramp changes the LR inside a command
            self._set_lr(command.lr_at(self._done))

    def get_last_lr(self) -> list[float]:
        """LR of each param group for the next optimizer step."""
        return list(self._last_lr)

    def close(self) -> None:
        """Close the event log file, if any; later events are not written to it."""
        if self._event_log is not None:
            self._event_log.close()
            self._listeners.remove(self._event_log)
            self._event_log = None

    def add_listener(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call ``listener(event)`` for every later event (see :mod:`autolrs.events`)."""
        if not callable(listener):
            raise ConfigError(f"listener must be callable, got {type(listener).__name__}")
        self._listeners.append(listener)

    def register_state(self, name: str, obj: Stateful) -> None:
        """Snapshot and restore ``obj`` (anything with ``state_dict``) along with the model.

        Takes effect from the next snapshot, i.e. the next stage.
        """
        if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
            raise ConfigError(
                f"extra state {name!r} must have state_dict() and load_state_dict(), got "
                f"{type(obj).__name__}"
            )
        if name in ("model", "optimizer") or name in self._extra:
            raise ConfigError(f"extra state name {name!r} is already taken")
        self._extra[name] = obj

    # -- what the user can read --------------------------------------------------------------

    @property
    def config(self) -> AutoLRSConfig:
        """The algorithm's constants in use."""
        return self._config

    @property
    def phase(self) -> Phase:
        """Kind of the next step: ``"warmup"``, ``"trial"`` or ``"stage"``.

        A trial step trains a candidate LR and is rolled back afterwards; a stage step trains
        with the chosen LR and is kept.
        """
        phase = self.controller.phase
        assert phase is not None
        return phase

    @property
    def update_steps(self) -> int:
        """Steps whose progress is kept: warmup and stage training."""
        in_progress = self._done if self.phase != "trial" else 0
        return self.controller.update_steps + in_progress

    @property
    def search_steps(self) -> int:
        """Executed steps that were, or will be, rolled back: candidate trials, diverged stages."""
        in_progress = self._done if self.phase == "trial" else 0
        return self.controller.search_steps + in_progress

    @property
    def total_steps(self) -> int:
        """Every optimizer step reported so far: ``update_steps + search_steps``."""
        return self.update_steps + self.search_steps

    @property
    def finished(self) -> bool:
        """True once the budget ``config.total_steps`` is spent; ``step()`` then refuses.

        The budget counts every optimizer step when ``config.budget_includes_search`` (the
        default for a known budget), else update steps only (see :attr:`budget_used`).
        """
        return self._budget_spent()

    @property
    def budget_used(self) -> int:
        """Steps counted against ``config.total_steps``: all of them, or update steps only."""
        return budget_used(self._config, self.update_steps, self.search_steps)

    @property
    def evaluations(self) -> int:
        """Calls of ``val_fn`` so far."""
        return self._val_calls

    @property
    def stage(self) -> int:
        """0-based index of the current stage; -1 during warmup."""
        return self.controller.stage_index

    @property
    def history(self) -> list[StageRecord]:
        """One record per stage begun, the current one last: candidates, forecasts, choice."""
        return self.controller.history

    def schedule(self) -> list[tuple[int, float]]:
        """The LR found so far as ``(first update step, lr)`` segments, warmup excluded."""
        return self.controller.schedule()

    # -- checkpointing -----------------------------------------------------------------------

    def state_dict(self, *, include_snapshot: bool = True) -> dict[str, Any]:
        """Everything needed to continue the search exactly where it is.

        Args:
            include_snapshot: Include the stage snapshot (a copy of model and optimizer state).
                Without it, a run resumed in the middle of a stage's search cannot roll back to
                the stage start; :meth:`load_state_dict` then starts a new stage from the
                loaded weights.
        """
        snapshot = None
        # An unfinished Snapshot command means the held snapshot is of the previous stage.
        stale = any(isinstance(command, Snapshot) for command in self._unfinished)
        if include_snapshot and not self._store.empty and not stale:
            snapshot = cpu_copy(self._store.load())
        return {
            "format": STATE_FORMAT,
            "controller": self.controller.state_dict(),
            "progress": {
                "done": self._done,
                "losses": list(self._losses),
                "val_losses": list(self._val_losses),
                "unfinished": [command.to_dict() for command in self._unfinished],
            },
            "ratios": list(self._ratios),
            "val_calls": self._val_calls,
            "optimizer_steps": self._optimizer_steps,
            "snapshot": snapshot,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output. Load the model and optimizer yourself.

        Raises:
            ConfigError: ``state_dict`` is not a scheduler state of this format, or holds
                another config. The scheduler is then unchanged.
            SnapshotError: The snapshot could not be stored (see :meth:`step`).
        """
        if not isinstance(state_dict, Mapping):
            raise ConfigError(
                "state_dict must be a mapping from AutoLRS.state_dict(), got "
                f"{type(state_dict).__name__}"
            )
        if state_dict.get("format") != STATE_FORMAT:
            raise ConfigError(
                f"scheduler state format {state_dict.get('format')!r} is not supported; "
                f"expected {STATE_FORMAT}"
            )
        try:
            controller = self._controllers.from_state_dict(state_dict["controller"])
            progress = state_dict["progress"]
            done = int(progress["done"])
            losses = [float(x) for x in progress["losses"]]
            val_losses = [float(x) for x in progress["val_losses"]]
            unfinished = [command_from_dict(c) for c in progress.get("unfinished", [])]
            ratios = [float(r) for r in state_dict["ratios"]]
            val_calls = int(state_dict["val_calls"])
            optimizer_steps = int(state_dict["optimizer_steps"])
            snapshot = state_dict["snapshot"]
        except ConfigError as error:
            raise ConfigError(f"state_dict cannot be loaded: {error}") from error
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ConfigError(
                "state_dict is not a scheduler state from AutoLRS.state_dict() (format "
                f"{STATE_FORMAT}): {type(error).__name__}: {error}"
            ) from error
        if controller.config != self._config:
            raise ConfigError(
                "the checkpoint's AutoLRS config differs from this scheduler's in "
                f"{_config_diff(controller.config, self._config)}; build the scheduler with "
                "the same config to resume"
            )
        if len(ratios) != len(self.optimizer.param_groups):
            raise ConfigError(
                f"state_dict was saved with {len(ratios)} param groups, this optimizer has "
                f"{len(self.optimizer.param_groups)}"
            )

        if snapshot is not None:
            self._store.save(snapshot)
        self.controller = controller
        self._done, self._losses, self._val_losses = done, losses, val_losses
        self._ratios = ratios
        self._val_calls = val_calls
        self._optimizer_steps = max(self._optimizer_steps, optimizer_steps)
        self._unfinished, self._unfinished_at = unfinished, self._optimizer_steps
        if snapshot is None and not any(isinstance(c, Snapshot) for c in unfinished):
            self._recover_without_snapshot()
        command = self.controller.pending
        assert command is not None
        self._set_lr(command.lr_at(self._done))
        self._emit("resume", controller=self.controller.state_dict())

    # -- carrying out commands ---------------------------------------------------------------

    def _execute(self, commands: list[Command]) -> None:
        for index, command in enumerate(commands):
            try:
                self._carry_out(command)
            except SnapshotError:
                # The report was taken: keep the rest for the next step() (see _resume).
                self._unfinished, self._unfinished_at = commands[index:], self._optimizer_steps
                raise

    def _carry_out(self, command: Command) -> None:
        if isinstance(command, Snapshot):
            self._store.save(self._gather_state())
            self._emit("snapshot")
        elif isinstance(command, Restore):
            self._restore()
            self._emit("restore")
        elif isinstance(command, Train):
            if self._sync is not None:
                self._sync.check_agreement(command.seq, command.lr)
            self._clear_progress()
            self._set_lr(command.lr_at(0))
        else:  # pragma: no cover - the controller only issues the three kinds above
            raise ProtocolError(f"unknown command {command!r}")

    def _resume(self) -> None:
        """Carry out the commands a failed snapshot or restore left undone.

        The call's loss is not recorded: either it repeats the call that failed, whose loss
        was recorded then, or it comes from steps taken before the snapshot or restore that
        begins the pending command, so it belongs to no command.
        """
        commands, failed_at = self._unfinished, self._unfinished_at
        self._unfinished = []
        self._execute(commands)
        skipped = self._optimizer_steps - failed_at
        if skipped:
            logger.warning(
                "%d optimizer step(s) were taken after a failed snapshot or restore and before "
                "it succeeded; they count neither as update nor as search steps",
                skipped,
            )

    def _budget_spent(self) -> bool:
        return budget_spent(self._config, self.budget_used)

    def _check_not_ended(self) -> None:
        if self._budget_spent():
            counted = "optimizer" if self._config.budget_includes_search else "update"
            raise AutoLRSError(
                f"training ended after {self.budget_used} {counted} steps (the budget "
                f"config.total_steps={self._config.total_steps} is spent); step() was called "
                "again. Stop the loop once scheduler.finished is true"
            )

    def _clear_progress(self) -> None:
        self._done = 0
        self._losses = []
        self._val_losses = []

    def _emit(self, event: str, **fields: Any) -> None:
        if not self._listeners:
            return
        record = {
            "event": event,
            "time": time.monotonic() - self._started_at,
            "update_steps": self.controller.update_steps,
            "search_steps": self.controller.search_steps,
            "evaluations": self.controller.evaluations,
            **fields,
        }
        for listener in self._listeners:
            listener(record)

    def _emit_outcome(self, command: Train, report: Report) -> None:
        """Events for a finished command: its report, then what the search made of it."""
        self._emit(
            "report",
            seq=command.seq,
            phase=command.phase,
            lr=command.lr,
            end_lr=command.end_lr,
            eval_every=command.eval_every,
            losses=list(report.losses),
            val_losses=list(report.val_losses),
        )
        history = self.controller.history
        if command.phase == "trial":
            stage = history[-1]
            self._emit("candidate", stage=stage.index, candidate=stage.candidates[-1].to_dict())
        elif command.phase == "stage" and len(report.losses) < command.steps:
            stage = history[-1]
            self._emit("restart", stage=stage.index, restart=stage.restarts[-1].to_dict())
        elif command.phase == "stage":
            self._emit("stage_end", stage=history[-2].to_dict())
            return
        else:
            return
        if stage.chosen_lr is not None:
            self._emit(
                "choice",
                stage=stage.index,
                lr=stage.chosen_lr,
                predicted=stage.chosen_forecast,
                reason=stage.choice_reason,
            )

    def _gather_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "extra": {name: obj.state_dict() for name, obj in self._extra.items()},
        }

    def _restore(self) -> None:
        state = self._store.load()
        # Module.load_state_dict copies into the parameters, but Optimizer.load_state_dict (and
        # arbitrary registered objects) may keep the given tensors, which later steps update in
        # place: hand those a copy so the snapshot stays intact for the next restore.
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(cpu_copy(state["optimizer"]))
        for name, obj in self._extra.items():
            if name in state["extra"]:
                obj.load_state_dict(cpu_copy(state["extra"][name]))

    def _recover_without_snapshot(self) -> None:
        """A checkpoint without snapshot: the weights as loaded become the snapshot."""
        if self.controller.phase == "trial":
            logger.warning(
                "the checkpoint holds no snapshot while stage %d is mid-search; the remaining "
                "candidates start from the weights as loaded, not from the stage start",
                self.controller.stage_index,
            )
        self._store.save(self._gather_state())

    def _evaluate(self) -> float:
        assert self.val_fn is not None  # the controller only asks when validation is possible
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                value = self.val_fn()
        except Exception:
            if self._val_calls == 0:
                raise  # the first call failing is a bug in the caller's code, not bad luck
            logger.warning("val_fn raised; treating this evaluation as non-finite", exc_info=True)
            value = math.nan
        finally:
            self.model.train(was_training)
            self._val_calls += 1
        value = _loss_value(value, name="val_fn's return value")
        if self._sync is not None:
            # A negative index keeps a validation average from pairing with a loss average.
            command = self.controller.pending
            assert command is not None
            value = self._sync.mean(
                value, seq=command.seq, index=-self._done, what="validation loss"
            )
        return value

    def _set_lr(self, lr: float) -> None:
        for group, ratio in zip(self.optimizer.param_groups, self._ratios, strict=True):
            value = lr * ratio
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(value)
            else:
                group["lr"] = value
        self._last_lr = [lr * ratio for ratio in self._ratios]

    def _count_optimizer_step(self, optimizer: torch.optim.Optimizer, args: Any, kw: Any) -> None:
        self._optimizer_steps += 1


def _resolve_config(
    config: AutoLRSConfig | None,
    min_lr: float | None,
    max_lr: float | None,
    total_steps: int | None,
) -> AutoLRSConfig:
    if config is not None and total_steps is not None:
        raise ConfigError(
            f"total_steps cannot be combined with config, got total_steps={total_steps!r} and "
            "a config: build the config with AutoLRSConfig.for_budget(total_steps, ...) instead"
        )
    return resolve_config(config=config, min_lr=min_lr, max_lr=max_lr, total_steps=total_steps)


def _make_store(kind: str | None, directory: str | os.PathLike[str] | None) -> SnapshotStore:
    if kind is None:
        kind = "memory" if directory is None else "disk"
    if kind == "memory":
        if directory is not None:
            raise ConfigError(
                f'snapshot="memory" keeps snapshots in host memory, so snapshot_dir must be '
                f'None, got {str(directory)!r}; leave snapshot out (or pass "disk") to use it'
            )
        return MemorySnapshot()
    if kind == "disk":
        if directory is None:
            raise ConfigError('snapshot="disk" needs snapshot_dir, got None')
        return DiskSnapshot(directory)
    raise ConfigError(f"snapshot must be 'memory', 'disk' or None, got {kind!r}")


def _lr_value(lr: float | torch.Tensor) -> float:
    return float(lr.item()) if isinstance(lr, torch.Tensor) else float(lr)


def _group_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each group's initial LR relative to the first group's (1.0 when that one is 0)."""
    initial = [_lr_value(g.get("initial_lr", g["lr"])) for g in optimizer.param_groups]
    if initial[0] <= 0:
        return [1.0] * len(initial)
    return [lr / initial[0] for lr in initial]


def _loss_value(loss: Any, name: str = "loss") -> float:
    """A Python float from a float, an int, a NumPy scalar or a one-element tensor."""
    if isinstance(loss, torch.Tensor):
        if loss.numel() != 1:
            raise ConfigError(
                f"{name} must be a float or a one-element tensor, got a tensor of shape "
                f"{tuple(loss.shape)}; reduce it (e.g. .mean()) first"
            )
        return float(loss.detach().item())
    if isinstance(loss, (int, float)) and not isinstance(loss, bool):
        return float(loss)
    refused = f"{name} must be a float or a one-element tensor, got {type(loss).__name__} "
    refused += _short_repr(loss)
    # float() would also read a string such as "0.5" or a bool: both are mistakes here.
    if isinstance(loss, (str, bytes, bool)):
        raise ConfigError(refused)
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise ConfigError(refused) from None


def _short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _config_diff(a: AutoLRSConfig, b: AutoLRSConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k} ({da[k]!r} vs {db[k]!r})" for k in da if da[k] != db[k])
