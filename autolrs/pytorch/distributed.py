"""Keeping every rank of a torch.distributed job on the same decisions.

Each rank runs its own :class:`~autolrs.core.controller.Controller`. The controller is
deterministic, so ranks that feed it the same numbers take the same decisions; this module makes
the numbers the same: every reported loss and validation loss is averaged over the ranks with one
all-reduce of a small tensor, and each decision is cross-checked with one more. A rank that died,
or that calls ``step`` a different number of times than the others, ends the job with an error
within ``timeout`` seconds instead of hanging it.

A collective that timed out stays pending inside the gloo backend, and a process holding one
cannot exit until its peer joins. So after such a failure, as PyTorch's NCCL watchdog does, the
process is ended with exit status 1 a short grace period after the error is raised (the grace
lets the caller's exception handlers log or save what they need).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import threading

import torch
import torch.distributed as dist

from autolrs.errors import AutoLRSError

__all__ = ["RankSync", "default_sync"]

logger = logging.getLogger(__name__)


class RankSync:
    """Averages losses over the ranks of the default process group and checks agreement.

    Args:
        timeout: Seconds a collective may wait for the other ranks before the job is ended
            with an error. > 0.
        exit_grace: Seconds between a failed collective's error and the forced exit of the
            process; None never forces it. Default: ``min(timeout, 30)``.
    """

    def __init__(self, timeout: float = 600.0, exit_grace: float | None = -1.0) -> None:
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise AutoLRSError(
                f"sync timeout must be a positive number of seconds, got {timeout!r}"
            )
        if not (dist.is_available() and dist.is_initialized()):
            raise AutoLRSError(
                "RankSync needs an initialised torch.distributed process group: call "
                "torch.distributed.init_process_group() before building AutoLRS"
            )
        self.timeout = float(timeout)
        self.exit_grace = min(self.timeout, 30.0) if exit_grace == -1.0 else exit_grace
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        backend = dist.get_backend()
        self._device = (
            torch.device("cuda", torch.cuda.current_device())
            if backend == "nccl"
            else torch.device("cpu")
        )

    def mean(self, value: float, *, seq: int, index: int, what: str) -> float:
        """Mean of ``value`` over the ranks, all of which must be at step ``index`` of ``seq``.

        A non-finite value on any rank makes the mean non-finite, so every rank stops a
        diverging candidate at the same step.
        """
        packed = torch.tensor(
            [value, float(seq), float(index)], dtype=torch.float64, device=self._device
        )
        self._all_reduce(packed, dist.ReduceOp.SUM, what)
        total, seq_sum, index_sum = packed.tolist()
        if seq_sum != seq * self.world_size or index_sum != index * self.world_size:
            self._fail(
                f"rank {self.rank}: ranks are out of step while averaging the {what} "
                f"(this rank is at command {seq} step {index}; the ranks' sums are "
                f"{seq_sum:g} and {index_sum:g}, expected {seq * self.world_size} and "
                f"{index * self.world_size}); every rank must call scheduler.step once per "
                "optimizer step"
            )
        return total / self.world_size

    def check_agreement(self, seq: int, lr: float) -> None:
        """Verify that every rank's controller issued command ``seq`` with the same ``lr``."""
        packed = torch.tensor([seq, lr, -seq, -lr], dtype=torch.float64, device=self._device)
        self._all_reduce(packed, dist.ReduceOp.MAX, "decision")
        high_seq, high_lr, low_seq, low_lr = packed.tolist()
        if high_seq != -low_seq or high_lr != -low_lr:
            self._fail(
                f"rank {self.rank}: ranks took different decisions (command {seq} at lr={lr!r};"
                f" across ranks seq in [{-low_seq:g}, {high_seq:g}], lr in [{-low_lr!r}, "
                f"{high_lr!r}]); check that every rank builds AutoLRS with the same config"
            )

    def _all_reduce(self, tensor: torch.Tensor, op: dist.ReduceOp, what: str) -> None:
        try:
            work = dist.all_reduce(tensor, op=op, async_op=True)
            finished = work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as exc:
            self._fail(
                f"rank {self.rank}: averaging the {what} across {self.world_size} ranks failed "
                f"({exc}); another rank has probably died or stopped calling scheduler.step",
                cause=exc,
            )
        if finished is False:
            self._fail(
                f"rank {self.rank}: averaging the {what} across {self.world_size} ranks timed "
                f"out after {self.timeout:g} s; another rank has probably died or stopped "
                "calling scheduler.step"
            )

    def _fail(self, message: str, cause: BaseException | None = None) -> None:
        """Raise ``message``; then end the process after the grace period if it still runs."""
        if self.exit_grace is not None:
            logger.critical("%s; this process exits in %g s", message, self.exit_grace)
            # Not a daemon: interpreter shutdown waits for it, and it fires before the pending
            # collective blocks the final teardown of the process group.
            timer = threading.Timer(self.exit_grace, os._exit, args=(1,))
            timer.start()
        raise AutoLRSError(message) from cause


def default_sync(timeout: float) -> RankSync | None:
    """A :class:`RankSync` when a process group of more than one rank exists, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return RankSync(timeout)
    return None
