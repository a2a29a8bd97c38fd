"""AutoLRS with the Hugging Face Trainer: one ``attach`` line on the Trainer you already have.

::

    pip install 'autolrs[transformers]'
    python examples/hf_trainer_example.py --steps 200

A two-layer GPT-2 built from a config (nothing is downloaded) learns to continue arithmetic
sequences of tokens. ``attach`` makes AutoLRS own the LR, report each step's loss and save its
state in every checkpoint; ``--resume`` continues from the last checkpoint in ``--out``.
``--steps`` counts every optimizer step, the search's trial steps included (the default config
for a budget pays for the search out of it), so it is the Trainer's ``max_steps`` too. Prints
the schedule found.
"""

from __future__ import annotations

import argparse
import logging
import tempfile

import torch
from torch.utils.data import Dataset
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

from autolrs.integrations.transformers import AutoLRSCallback


class ArithmeticSequences(Dataset):
    """Token sequences a, a+d, a+2d, ... modulo the vocabulary size."""

    def __init__(self, count: int, seed: int, vocab: int = 64, length: int = 32) -> None:
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab, (count, 1), generator=g)
        stride = torch.randint(1, 5, (count, 1), generator=g)
        self.ids = (start + stride * torch.arange(length)) % vocab

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # A causal LM shifts the labels itself: labels are the inputs.
        return {"input_ids": self.ids[index], "labels": self.ids[index]}


def main() -> None:
    """Train with AutoLRS choosing the LR, then print the schedule."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps", type=int, default=200, help="optimizer steps to train, search included"
    )
    parser.add_argument("--out", default=None, help="checkpoint folder (default: a temp dir)")
    parser.add_argument("--resume", action="store_true", help="resume from the last checkpoint")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("transformers").setLevel(logging.WARNING)
    torch.set_num_threads(1)  # tensors this small run slower on several threads
    torch.manual_seed(args.seed)
    config = GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=2, n_head=2)
    model = GPT2LMHeadModel(config)

    training_args = TrainingArguments(
        output_dir=args.out or tempfile.mkdtemp(prefix="autolrs-hf-"),
        per_device_train_batch_size=32,
        max_steps=args.steps,  # the same budget as AutoLRS's, search included
        save_steps=100,
        logging_steps=50,
        report_to=[],
        use_cpu=True,
        seed=args.seed,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=ArithmeticSequences(2048, seed=args.seed),
        eval_dataset=ArithmeticSequences(256, seed=args.seed + 1),
    )
    autolrs = AutoLRSCallback(min_lr=1e-4, max_lr=1e-1, total_steps=args.steps).attach(trainer)
    trainer.train(resume_from_checkpoint=True if args.resume else None)

    scheduler = autolrs.scheduler
    print(
        f"{scheduler.update_steps} update steps + {scheduler.search_steps} search steps "
        f"= {trainer.state.global_step} optimizer steps; checkpoints in {training_args.output_dir}"
    )
    for start, lr in scheduler.schedule():
        print(f"  from update step {start:5d}: lr = {lr:.4g}")


if __name__ == "__main__":
    main()
