"""What the framework integrations share: config, budget, decision metrics."""

from __future__ import annotations

import logging
import math
import numbers
from typing import Any

from autolrs.config import AutoLRSConfig
from autolrs.config import resolve_config as shared_resolve_config
from autolrs.errors import ConfigError

__all__ = [
    "DecisionMetrics",
    "check_total_steps",
    "check_val_batches",
    "resolve_config",
    "warn_if_step_cap_too_low",
]

logger = logging.getLogger(__name__)

#: Prefix of every metric the integrations log, so they group together in a dashboard.
METRIC_PREFIX = "autolrs/"


def resolve_config(
    min_lr: float | None,
    max_lr: float | None,
    total_steps: int | None,
    config: AutoLRSConfig | None,
) -> AutoLRSConfig:
    """The search's config, built when the callback is created so bad values fail at once.

    As :func:`autolrs.config.resolve_config`: with ``config``, ``total_steps`` only sets the
    callback's budget.
    """
    return shared_resolve_config(
        config=config, min_lr=min_lr, max_lr=max_lr, total_steps=total_steps
    )


def check_total_steps(total_steps: object) -> int | None:
    """``total_steps`` as an int ≥ 1, or None."""
    if total_steps is None:
        return None
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral):
        raise ConfigError(f"total_steps must be an integer >= 1 or None, got {total_steps!r}")
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps!r}")
    return int(total_steps)


def check_val_batches(val_batches: object) -> int:
    """``val_batches`` as an int ≥ 0 (0 turns validation off)."""
    if isinstance(val_batches, bool) or not isinstance(val_batches, numbers.Integral):
        raise ConfigError(f"val_batches must be an integer >= 0, got {val_batches!r}")
    if val_batches < 0:
        raise ConfigError(f"val_batches must be >= 0, got {val_batches!r}")
    return int(val_batches)


def warn_if_step_cap_too_low(
    cap: int, total_steps: int | None, setting: str, config: AutoLRSConfig
) -> None:
    """Warn when the framework's own step limit will likely end the run before the budget.

    The framework counts every optimizer step, search steps included. A budget that counts
    them too (``config.budget_includes_search``) needs a limit of ``total_steps``; one of update
    steps only costs up to about twice as many (the paper's k candidates of a stage train
    k·τ' = τ steps in all).
    """
    if total_steps is None or cap <= 0:
        return
    if config.budget_includes_search and config.total_steps == total_steps:
        if cap < total_steps:
            logger.warning(
                "%s=%d will stop training before the budget total_steps=%d (every optimizer "
                "step, search included) is spent, in the middle of the search or the "
                "cooldown; set %s to %d (or leave it unlimited)",
                setting,
                cap,
                total_steps,
                setting,
                total_steps,
            )
        return
    if cap >= 2 * total_steps:
        return
    logger.warning(
        "%s=%d counts every optimizer step, candidate trials included, and will likely stop "
        "training before total_steps=%d update steps; a search costs about as many steps as "
        "it keeps, so set %s to at least %d (or leave it unlimited)",
        setting,
        cap,
        total_steps,
        setting,
        3 * total_steps,
    )


class DecisionMetrics:
    """A scheduler listener that turns the search's decisions into metrics for a logger.

    Framework loggers can only be written from certain hooks, so decisions are queued as they
    happen (inside ``AutoLRS.step``) and :meth:`drain` hands them to the hook that logs them.
    Each entry is a dict of metric name to float.
    """

    def __init__(self) -> None:
        self._pending: list[dict[str, float]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        """Queue the metrics of one AutoLRS event, if it is a decision."""
        kind = event["event"]
        if kind == "choice":
            metrics = {"stage": event["stage"], "chosen_lr": event["lr"]}
            if event["predicted"] is not None:
                metrics["predicted_loss"] = event["predicted"]
        elif kind == "stage_end":
            stage = event["stage"]
            metrics = {"stage": stage["index"]}
            if stage["final_loss"] is not None:
                metrics["stage_final_loss"] = stage["final_loss"]
        elif kind == "restart":
            metrics = {"stage": event["stage"], "restarted_lr": event["restart"]["lr"]}
        else:
            return
        metrics["update_steps"] = event["update_steps"]
        metrics["search_steps"] = event["search_steps"]
        self._pending.append(
            {
                METRIC_PREFIX + name: float(value)
                for name, value in metrics.items()
                if math.isfinite(float(value))
            }
        )

    def drain(self) -> list[dict[str, float]]:
        """The queued metrics, oldest first; the queue is emptied."""
        pending, self._pending = self._pending, []
        return pending
