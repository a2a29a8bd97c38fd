"""Lightning DDP on CPU with AutoLRSCallback; each rank writes its search history as JSON.

Run as ``python lightning_ddp_worker.py OUT_DIR``: Lightning's ``strategy="ddp"`` starts the
second process itself by running this script again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from integration_support import small_config
from lightning_task import Regression, data, trainer_kwargs

from autolrs.integrations.lightning import AutoLRSCallback


def main() -> None:
    out = Path(sys.argv[1])
    torch.set_num_threads(1)
    callback = AutoLRSCallback(config=small_config(), total_steps=48, val_batches=2)
    trainer = pl.Trainer(
        **trainer_kwargs(strategy="ddp", devices=2, callbacks=[callback], max_epochs=1000)
    )
    train, val = data()
    trainer.fit(Regression(), train, val)

    scheduler = callback.scheduler
    record = {
        "rank": trainer.global_rank,
        "world_size": trainer.world_size,
        "update_steps": scheduler.update_steps,
        "search_steps": scheduler.search_steps,
        "global_step": trainer.global_step,
        "history": [stage.to_dict() for stage in scheduler.history],
        "weights": [p.detach().flatten().tolist() for p in trainer.lightning_module.parameters()],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main()
