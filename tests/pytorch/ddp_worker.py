"""One rank of a small DDP job for the distributed tests, with optional fault injection.

Started once per rank with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set (by torchrun or by
the test itself). ``--fault die|stall`` makes rank 1 exit or hang at ``--fault-step``;
``--fault seed`` gives rank 1 a config with another seed, so its decisions differ.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autolrs import AutoLRS, AutoLRSConfig


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fault", choices=["none", "die", "stall", "seed"], default="none")
    parser.add_argument("--fault-step", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(100 + rank)  # each rank its own data shard
    x = torch.randn(256, 4, generator=g)
    y = x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(256, 1, generator=g)

    def val_loss() -> float:
        return nn.functional.mse_loss(ddp(x[:64]), y[:64]).item()

    config = AutoLRSConfig(
        min_lr=1e-3,
        max_lr=0.5,
        stage_steps=20,
        max_stage_steps=40,
        trial_fraction=0.25,
        num_candidates=3,
        val_every=2,
        gp_fit_hyperparameters=False,
        seed=1 if rank == 1 and args.fault == "seed" else 0,
    )
    scheduler = AutoLRS(optimizer, ddp, val_fn=val_loss, config=config, sync_timeout=args.timeout)
    restored_params = []
    step = 0
    while scheduler.update_steps < args.steps:
        start = (step * 16) % 256
        loss = nn.functional.mse_loss(ddp(x[start : start + 16]), y[start : start + 16])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        # Faults strike between the optimizer step and scheduler.step, so that the next
        # collective the healthy ranks enter is the scheduler's loss average.
        if rank == 1 and step == args.fault_step:
            if args.fault == "die":
                os._exit(3)
            if args.fault == "stall":
                time.sleep(120)
        candidates = len(scheduler.history[-1].candidates)
        scheduler.step(loss)
        if len(scheduler.history[-1].candidates) != candidates:  # a restore happened
            restored_params.append([p.detach().flatten().tolist() for p in model.parameters()])
        step += 1

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "history": [stage.to_dict() for stage in scheduler.history],
        "counters": [scheduler.update_steps, scheduler.search_steps, scheduler.evaluations],
        "restored_params": restored_params,
        # Parameters only: BatchNorm's running statistics follow each rank's last local batch
        # until DDP broadcasts rank 0's buffers at the next forward pass.
        "state": {k: v.tolist() for k, v in model.named_parameters()},
    }
    (args.out / f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
