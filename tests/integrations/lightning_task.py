"""A tiny Lightning regression task shared by the Lightning tests and their DDP worker."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

#: Training samples and batch size: 10 batches per epoch, so epoch e ends at global step 10(e+1).
TRAIN_SIZE = 160
BATCH = 16


class Regression(pl.LightningModule):
    """A two-layer MLP on a fixed linear teacher; ``validation_step`` only logs its loss."""

    def __init__(self, seed: int = 0, val_returns_loss: bool = False) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))
        self.val_returns_loss = val_returns_loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("val_loss", loss)
        return loss if self.val_returns_loss else None

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def data(seed: int = 0) -> tuple[DataLoader, DataLoader]:
    """Fixed-order train and validation loaders (64 validation samples, batches of 16)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 1, generator=g)
    x = torch.randn(TRAIN_SIZE, 8, generator=g)
    y = x @ w + 0.1 * torch.randn(TRAIN_SIZE, 1, generator=g)
    x_val = torch.randn(64, 8, generator=g)
    y_val = x_val @ w
    return (
        DataLoader(TensorDataset(x, y), batch_size=BATCH),
        DataLoader(TensorDataset(x_val, y_val), batch_size=BATCH),
    )


def trainer_kwargs(**changes) -> dict:
    """A quiet CPU Trainer whose own validation loop never runs (AutoLRS validates itself)."""
    kwargs = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=100,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        check_val_every_n_epoch=10_000,
    )
    kwargs.update(changes)
    return kwargs
