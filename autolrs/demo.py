"""``autolrs demo``: AutoLRS on a small network, from data to schedule plot, as a tutorial.

A two-layer MLP learns scikit-learn's bundled 8×8 digits (1797 images, no download) with SGD,
momentum 0.9 and weight decay, while AutoLRS picks the learning rate of every stage. The run is
seeded and uses a fixed number of CPU threads, so the same command gives the same schedule on the
same machine.

This module is part of the command-line program: it prints its results. Everything it uses
(:class:`~autolrs.AutoLRS`, :mod:`autolrs.plotting`) is the public API, so it doubles as an
example of a complete training loop.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from autolrs.config import AutoLRSConfig
from autolrs.core.history import StageRecord
from autolrs.errors import AutoLRSError
from autolrs.plotting import StepRecord, ValPoint, plot_schedule
from autolrs.pytorch import AutoLRS

__all__ = ["DemoRun", "run", "train", "format_schedule", "write_results"]

logger = logging.getLogger(__name__)

# The range the search may choose from. With momentum 0.9, LRs above about 0.2 let this network
# train well for the 10%-of-a-stage trials and then diverge hundreds of steps into the stage:
# a drift no short trial can see, so the range stops below it.
MIN_LR = 1e-3
MAX_LR = 0.1
BATCH_SIZE = 32
HIDDEN_UNITS = 128
# Without weight decay the network fits the 1437 training images exactly within a few epochs,
# after which the training loss is ~0 and there is nothing left for a schedule to choose.
WEIGHT_DECAY = 1e-3
VAL_FRACTION = 0.2
SPLIT_SEED = 0  # the train/validation split stays the same whatever --seed says


@dataclass(frozen=True)
class DemoRun:
    """What one demo run produced.

    Attributes:
        config: The AutoLRS constants used.
        history: One record per stage.
        steps: Every executed step, search steps included.
        val_points: Every validation loss AutoLRS asked for, with the step it followed.
        update_steps: Steps whose progress was kept.
        search_steps: Steps that were rolled back.
        val_loss: Cross-entropy on the whole validation set after training.
        val_accuracy: Share of validation images classified correctly, in [0, 1].
        seconds: Wall-clock time of the training loop.
    """

    config: AutoLRSConfig
    history: list[StageRecord]
    steps: list[StepRecord]
    val_points: list[ValPoint]
    update_steps: int
    search_steps: int
    val_loss: float
    val_accuracy: float
    seconds: float


def run(*, steps: int, seed: int, out: Path, threads: int, quiet: bool) -> int:
    """Train, print the schedule found, write the results into ``out``; return the exit status.

    Args:
        steps: Optimizer steps to train, the search's included. ≥ 40.
        seed: Seeds the weights, the mini-batch order and the search.
        out: Directory for ``schedule.png``, ``history.json`` and ``steps.csv``.
        threads: CPU threads PyTorch may use.
        quiet: Hide the progress bar.
    """
    try:
        result = train(steps=steps, seed=seed, threads=threads, progress=not quiet)
        paths = write_results(result, out)
    except AutoLRSError as error:
        print(f"autolrs demo: {error}", file=sys.stderr)
        return 1

    print()
    print(format_schedule(result.history))
    print()
    executed = result.update_steps + result.search_steps
    print(
        f"{result.update_steps} update steps + {result.search_steps} search steps = "
        f"{executed} executed, {len(result.val_points)} validation evaluations, "
        f"{result.seconds:.0f} s"
    )
    print(
        f"final validation loss {result.val_loss:.4f}, accuracy {100 * result.val_accuracy:.1f}%"
    )
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def train(*, steps: int, seed: int, threads: int, progress: bool) -> DemoRun:
    """Train the MLP for ``steps`` optimizer steps with AutoLRS and record everything it did."""
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    x_train, y_train, x_val, y_val = load_data()
    model = torch.nn.Sequential(
        torch.nn.Linear(x_train.shape[1], HIDDEN_UNITS),
        torch.nn.ReLU(),
        torch.nn.Linear(HIDDEN_UNITS, 10),
    )
    # The LR given here is overwritten by AutoLRS before the first step.
    optimizer = torch.optim.SGD(
        model.parameters(), lr=MIN_LR, momentum=0.9, weight_decay=WEIGHT_DECAY
    )

    records: list[StepRecord] = []
    val_points: list[ValPoint] = []

    def evaluate() -> float:
        # AutoLRS calls this right after a step, in eval mode and under torch.no_grad().
        loss = F.cross_entropy(model(x_val), y_val).item()
        val_points.append(ValPoint(len(records), loss))
        return loss

    # τ₀ = steps/40 (at least 100) doubling to τ_max = steps/8, the last stages judged by the
    # validation loss, then a cooldown; the search is paid for out of `steps`.
    config = AutoLRSConfig.for_budget(steps, min_lr=MIN_LR, max_lr=MAX_LR, seed=seed)
    scheduler = AutoLRS(optimizer, model, val_fn=evaluate, config=config)
    logger.info(
        "training %d steps, search included, with LRs in [%g, %g]: stages of %d steps "
        "doubling to %d, %d candidates each",
        steps,
        MIN_LR,
        MAX_LR,
        config.stage_steps,
        config.max_stage_steps,
        config.num_candidates,
    )
    batches = _batches(len(x_train), torch.Generator().manual_seed(seed))

    started = time.perf_counter()
    with (
        logging_redirect_tqdm(),
        tqdm(total=steps, unit="step", desc="steps", disable=not progress) as bar,
    ):
        while not scheduler.finished:
            phase = scheduler.phase  # what this step is: "trial" or "stage"
            lr = scheduler.get_last_lr()[0]
            update_step = scheduler.update_steps
            batch = next(batches)
            loss = F.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            records.append(StepRecord(len(records) + 1, update_step, phase, lr, loss.item()))

            # May restore the model and optimizer from the stage snapshot and change the LR.
            scheduler.step(loss)

            bar.update(1)
            if len(records) % 20 == 0:  # a refresh per step would slow the loop down
                bar.set_postfix(
                    stage=scheduler.stage, phase=phase, lr=f"{lr:.3g}", loss=f"{loss.item():.3f}"
                )
    seconds = time.perf_counter() - started

    model.eval()
    with torch.no_grad():
        logits = model(x_val)
        val_loss = F.cross_entropy(logits, y_val).item()
        val_accuracy = (logits.argmax(dim=1) == y_val).float().mean().item()
    # When the budget runs out, the scheduler has already begun the next stage's search (a
    # snapshot, no step yet): leave that stage out.
    history = [record for record in scheduler.history if record.trained]
    return DemoRun(
        config=config,
        history=history,
        steps=records,
        val_points=val_points,
        update_steps=scheduler.update_steps,
        search_steps=scheduler.search_steps,
        val_loss=val_loss,
        val_accuracy=val_accuracy,
        seconds=seconds,
    )


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The digits as ``(x_train, y_train, x_val, y_val)``, pixels standardised per feature.

    Shapes: x is (n, 64) float32, y is (n,) int64; 80% train, 20% validation, stratified.
    """
    digits = load_digits()
    x_train, x_val, y_train, y_val = train_test_split(
        digits.data,
        digits.target,
        test_size=VAL_FRACTION,
        random_state=SPLIT_SEED,
        stratify=digits.target,
    )
    # Statistics of the training part only; corner pixels are always 0, so their std is 0.
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return (
        torch.tensor((x_train - mean) / std, dtype=torch.float32),
        torch.tensor(y_train, dtype=torch.int64),
        torch.tensor((x_val - mean) / std, dtype=torch.float32),
        torch.tensor(y_val, dtype=torch.int64),
    )


def _batches(size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Indices of mini-batches of ``BATCH_SIZE``, reshuffled every epoch, endlessly."""
    while True:
        order = torch.randperm(size, generator=generator)
        for start in range(0, size - BATCH_SIZE + 1, BATCH_SIZE):
            yield order[start : start + BATCH_SIZE]


def format_schedule(history: list[StageRecord]) -> str:
    """The schedule as a text table: one row per stage, with its search and outcome."""
    lines = [
        "Schedule found (start and τ in update steps; losses in the stage's metric):",
        f"{'stage':>5}  {'start':>6}  {'τ':>5}  {'metric':<6}  {'tried':>5}  {'failed':>6}  "
        f"{'chosen LR':>9}  {'forecast':>9}  {'reached':>9}",
    ]
    for record in history:
        failed = sum(candidate.failed for candidate in record.candidates)
        lines.append(
            f"{record.index:>5}  {record.start_update_step:>6}  {record.stage_steps:>5}  "
            f"{record.metric:<6}  {len(record.candidates):>5}  {failed:>6}  "
            f"{_stage_lr(record):>9}  {_number(record.chosen_forecast, '.4g'):>9}  "
            f"{_number(record.final_loss, '.4g'):>9}"
        )
    return "\n".join(lines)


def _stage_lr(record: StageRecord) -> str:
    lr = _number(record.chosen_lr, ".3g")
    return f"{lr}→0" if record.cooldown and record.chosen_lr is not None else lr


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def write_results(result: DemoRun, out: Path) -> list[Path]:
    """Write ``schedule.png``, ``history.json`` and ``steps.csv`` into ``out``; return them.

    ``steps.csv`` has one row per executed step; its ``val_loss`` column is empty except after
    the steps that AutoLRS followed with a validation.
    """
    out.mkdir(parents=True, exist_ok=True)

    plot = plot_schedule(
        result.steps, result.history, out / "schedule.png", val_points=result.val_points
    )

    history = out / "history.json"
    summary = {
        "config": result.config.to_dict(),
        "update_steps": result.update_steps,
        "search_steps": result.search_steps,
        "val_loss": result.val_loss,
        "val_accuracy": result.val_accuracy,
        "stages": [record.to_dict() for record in result.history],
    }
    history.write_text(json.dumps(summary, indent=1) + "\n")

    steps = out / "steps.csv"
    with steps.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["total_step", "update_step", "phase", "lr", "loss", "val_loss"])
        val_after = {point.total_step: point.loss for point in result.val_points}
        for s in result.steps:
            val = val_after.get(s.total_step)
            writer.writerow(
                [s.total_step, s.update_step, s.phase, s.lr, s.loss, "" if val is None else val]
            )
    logger.debug("wrote %s, %s and %s", plot, history, steps)
    return [plot, history, steps]
