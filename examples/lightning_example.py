"""AutoLRS in a PyTorch Lightning fit: one callback in the Trainer's list.

::

    pip install 'autolrs[lightning]'
    python examples/lightning_example.py --steps 300

A small MLP learns a synthetic regression task. ``configure_optimizers`` returns a bare
optimizer (no LR scheduler: AutoLRS sets the LR), ``validation_step`` returns its loss, and the
callback stops the fit after ``--steps`` optimizer steps, the search's trial steps included (the
default config for a budget pays for the search out of it). Prints the schedule found.
"""

from __future__ import annotations

import argparse
import logging

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autolrs.integrations.lightning import AutoLRSCallback


class Regression(pl.LightningModule):
    """An MLP fitting y = tanh(x·w) + noise."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        """Mean squared error of the batch; AutoLRS reads this returned loss."""
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        """Mean squared error of the batch, logged and returned (AutoLRS reads the latter)."""
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """A bare optimizer: no LR scheduler, since AutoLRS sets the LR."""
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def make_data(seed: int) -> tuple[DataLoader, DataLoader]:
    """Train and validation loaders of a fixed random regression task."""
    g = torch.Generator().manual_seed(seed)
    teacher = torch.randn(16, 1, generator=g)
    x = torch.randn(2304, 16, generator=g)
    y = torch.tanh(x @ teacher) + 0.05 * torch.randn(2304, 1, generator=g)
    train = TensorDataset(x[:2048], y[:2048])
    val = TensorDataset(x[2048:], y[2048:])
    return DataLoader(train, batch_size=32, shuffle=True), DataLoader(val, batch_size=32)


def main() -> None:
    """Fit with AutoLRS choosing the LR, then print the schedule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=300, help="optimizer steps to train, search included"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    pl.seed_everything(args.seed, verbose=False)
    torch.set_num_threads(1)  # tensors this small run slower on several threads
    train, val = make_data(args.seed)

    autolrs = AutoLRSCallback(min_lr=1e-3, max_lr=1.0, total_steps=args.steps)
    trainer = pl.Trainer(
        callbacks=[autolrs],  # the one line AutoLRS needs
        max_epochs=-1,  # the callback ends the fit when the budget is spent
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regression(), train, val)

    scheduler = autolrs.scheduler
    print(
        f"{scheduler.update_steps} update steps + {scheduler.search_steps} search steps "
        f"= {trainer.global_step} optimizer steps"
    )
    for start, lr in scheduler.schedule():
        print(f"  from update step {start:5d}: lr = {lr:.4g}")


if __name__ == "__main__":
    main()
