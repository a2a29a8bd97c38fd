"""A training script that checkpoints as a user would, for the SIGKILL resume tests.

Every ``--every`` steps it saves model, optimizer and ``scheduler.state_dict()`` atomically
(written to a temporary file, then renamed). On start it resumes from that checkpoint when one
exists. ``--kill-at N`` sends itself SIGKILL just before its N-th executed step;
``--kill-in-eval N`` does so inside the N-th validation evaluation. At the end it writes the
history and the final weights as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from pathlib import Path

import torch
from torch import nn

from autolrs import AutoLRS, AutoLRSConfig

BUDGET = 70


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--kill-at", type=int, default=-1)
    parser.add_argument("--kill-in-eval", type=int, default=-1)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(512, 6, generator=g)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.05 * torch.randn(512, 1, generator=g)
    evaluations = 0

    def val_fn() -> float:
        nonlocal evaluations
        evaluations += 1
        if evaluations == args.kill_in_eval:
            os.kill(os.getpid(), signal.SIGKILL)
        return nn.functional.mse_loss(model(x[:64]), y[:64]).item()

    config = AutoLRSConfig(
        min_lr=1e-4,
        max_lr=0.3,
        stage_steps=16,
        max_stage_steps=32,
        trial_fraction=0.5,
        num_candidates=3,
        val_every=2,
        warmup_steps=6,
        warmup_lr=0.01,
        gp_fit_hyperparameters=False,
    )
    scheduler = AutoLRS(optimizer, model, val_fn=val_fn, config=config)
    if args.ckpt.exists():
        state = torch.load(args.ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        evaluations = state["evaluations"]

    while scheduler.update_steps < BUDGET:
        step = scheduler.total_steps
        if step == args.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        start = (step * 16) % 512  # the data order follows the executed steps
        loss = nn.functional.mse_loss(model(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step(loss)
        if scheduler.total_steps % args.every == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "evaluations": evaluations,
            }
            tmp = args.ckpt.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, args.ckpt)

    record = {
        "history": [stage.to_dict() for stage in scheduler.history],
        "counters": [scheduler.update_steps, scheduler.search_steps],
        "params": [p.detach().flatten().tolist() for p in model.parameters()],
    }
    args.out.write_text(json.dumps(record))


if __name__ == "__main__":
    main()
