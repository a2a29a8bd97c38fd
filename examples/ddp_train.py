"""AutoLRS with DistributedDataParallel, launched by torchrun.

Every rank builds the same AutoLRS object; losses are averaged over the ranks, so all ranks take
identical decisions at identical steps. On CPU (gloo backend)::

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --steps 600

On GPUs use ``--backend nccl``. Each rank trains on its own shard of a synthetic regression
task; rank 0 prints the schedule found and every rank can write its history with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from autolrs import AutoLRS, AutoLRSConfig


def make_data(seed: int, rank: int, n: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """A shard of a fixed random regression task: the teacher is shared, the inputs per rank."""
    teacher = torch.randn(16, 1, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 1 + rank)
    x = torch.randn(n, 16, generator=g)
    y = torch.tanh(x @ teacher) + 0.05 * torch.randn(n, 1, generator=g)
    return x, y


def main() -> None:
    """Train on every rank with AutoLRS deciding the LR."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="update steps to train")
    parser.add_argument("--backend", default="gloo", help="torch.distributed backend")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for each rank's history JSON")
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(1)
    dist.init_process_group(backend=args.backend)
    rank = dist.get_rank()
    device = (
        torch.device("cuda", int(os.environ["LOCAL_RANK"])) if args.backend == "nccl" else None
    )

    # Same initial weights on every rank (DDP also broadcasts them from rank 0).
    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 1)).to(device)
    ddp = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    x, y = (t.to(device) for t in make_data(args.seed, rank))
    x_val, y_val = (t.to(device) for t in make_data(args.seed + 100, rank, n=256))

    def val_loss() -> float:
        return nn.functional.mse_loss(ddp(x_val), y_val).item()

    config = AutoLRSConfig.for_budget(args.steps, min_lr=1e-3, max_lr=1.0, seed=args.seed)
    scheduler = AutoLRS(optimizer, ddp, val_fn=val_loss, config=config)

    step = 0
    while not scheduler.finished:
        start = (step * 32) % x.shape[0]
        loss = nn.functional.mse_loss(ddp(x[start : start + 32]), y[start : start + 32])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        scheduler.step(loss)
        step += 1

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        record = {
            "history": [stage.to_dict() for stage in scheduler.history],
            "update_steps": scheduler.update_steps,
            "search_steps": scheduler.search_steps,
            "params": [p.detach().cpu().flatten().tolist() for p in model.parameters()],
        }
        (args.out / f"rank{rank}.json").write_text(json.dumps(record))
    if rank == 0:
        for start, lr in scheduler.schedule():
            print(f"from update step {start:5d}: lr = {lr:.4g}")
        print(f"validation loss {val_loss():.4f} after {scheduler.total_steps} steps")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
