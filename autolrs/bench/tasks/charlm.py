"""``charlm``: a small pre-LN transformer predicting the next byte of Python source.

Data: the stored standard-library snapshot (:mod:`autolrs.bench.tasks.corpus`), 2,983,134
bytes; the vocabulary is the 256 byte values. Split by position: the first 97.5% train, the last
2.5% (74,578 bytes: the end of ``poplib.py``, then ``posixpath.py``, ``pprint.py`` and
``profile.py``) validate. The validation part is kept this small because a full pass over it
costs as much as 24 training steps; 5% would add about half a run's time in validations.

Model (shapes for a batch of B windows of L = 64 bytes, width D = 128):

======================  =========  ==================================================
step                    shape      note
======================  =========  ==================================================
byte + position embed   (B, L, D)  learned positions
2 × pre-LN block        (B, L, D)  x + attn(LN x), then x + MLP(LN x); 4 heads, MLP 4D
final LN, linear head   (B, L, V)  V = 256 logits per position, head not tied
======================  =========  ==================================================

About 0.47 M parameters (470,528). Weights are N(0, 0.02²), the two residual output projections of
each block N(0, (0.02/√(2·layers))²), biases 0; no dropout.

Training: AdamW (betas 0.9/0.99, weight decay 0.1 on every parameter), batch 16, a fixed linear
warmup over the first 2% of the budget. The stream cuts the training part into consecutive
64-byte windows at a random phase per epoch and shuffles them (45,445 windows, so one
epoch is 2,840 steps and a standard run sees 70% of an epoch). Each window of 65 bytes predicts
its bytes 2..65 from bytes 1..64.

Metric: mean cross-entropy in nats per byte (= per character: the corpus is 99.999% ASCII)
over all 1,165 non-overlapping 64-byte windows of the validation part; every position counts,
so early positions with little context are included. The probe is the first 10 batches (160
windows). Costs: ``val_cost`` = 1,165 / 16 / 3 ≈ 24 steps, ``probe_cost`` = 10 / 3 (measured
on one CPU thread, a validation pass takes about as long as 27 training steps).

The smoke variant keeps the model but uses only the first 262,144 bytes of the corpus (the
same 97.5/2.5 split of that prefix, so 102 validation windows, which are also the probe)
and 20 steps.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from autolrs.bench.tasks.base import FORWARD_COST, Task, TaskInstance, TaskSpec
from autolrs.bench.tasks.common import (
    EpochBatches,
    check_seed,
    construct,
    derive_generator,
    evaluating,
    pick_variant,
)
from autolrs.bench.tasks.corpus import load_corpus

__all__ = ["CHARLM_SPECS", "CharTransformer", "CharLMInstance", "CharLMTask"]

_NAME = "charlm"
_VERSION = 1
_VOCAB = 256
_CONTEXT = 64
_WIDTH = 128
_HEADS = 4
_LAYERS = 2
_BATCH_SIZE = 16
_VAL_FRACTION = 0.025
_PROBE_BATCHES = 10
_EVAL_CHUNK = 64  # windows per validation forward pass; fixed, as sums round by chunk
_INIT_STD = 0.02
_SMOKE_BYTES = 262_144
_ADAMW = {"betas": (0.9, 0.99), "weight_decay": 0.1}
# The 1-3-10 series around cosine's best peak LR, 3e-3, in pilot runs.
_LR_GRID = (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)

CHARLM_SPECS: dict[str, TaskSpec] = {
    "standard": TaskSpec(
        name=_NAME,
        version=_VERSION,
        variant="standard",
        budget=2000,
        eval_every=100,
        lr_grid=_LR_GRID,
        warmup_steps=40,
        optimizer="adamw",
        optimizer_kwargs=_ADAMW,
        description="byte-level 2-layer pre-LN transformer (d 128, 4 heads, context 64), "
        "batch 16, Python stdlib snapshot 97.5/2.5 split; validation nats/char",
    ),
    "smoke": TaskSpec(
        name=_NAME,
        version=_VERSION,
        variant="smoke",
        budget=60,
        eval_every=10,
        lr_grid=_LR_GRID,
        warmup_steps=2,
        optimizer="adamw",
        optimizer_kwargs=_ADAMW,
        description="smoke: byte-level 2-layer transformer, batch 16, first 256 KiB of the "
        "stdlib snapshot; validation nats/char",
    ),
}


class _Block(torch.nn.Module):
    """Pre-LN transformer block: x + attention(LN x), then x + MLP(LN x)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attn_norm = torch.nn.LayerNorm(width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.attn_out = torch.nn.Linear(width, width)
        self.mlp_norm = torch.nn.LayerNorm(width)
        self.mlp_in = torch.nn.Linear(width, 4 * width)
        self.mlp_out = torch.nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        # (B, L, 3D) -> three (B, heads, L, D/heads) tensors.
        qkv = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.heads, -1)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(query, key, value, is_causal=True)
        x = x + self.attn_out(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))


class CharTransformer(torch.nn.Module):
    """Byte-level causal transformer: ``(B, L)`` int64 bytes to ``(B, L, 256)`` logits.

    Args:
        context: Longest window L the position embedding covers.
        width: Model width D; must be divisible by ``heads``.
        heads: Attention heads per block.
        layers: Number of blocks.
    """

    def __init__(
        self,
        context: int = _CONTEXT,
        width: int = _WIDTH,
        heads: int = _HEADS,
        layers: int = _LAYERS,
    ) -> None:
        super().__init__()
        self.token_embedding = torch.nn.Embedding(_VOCAB, width)
        self.position_embedding = torch.nn.Embedding(context, width)
        self.blocks = torch.nn.ModuleList(_Block(width, heads) for _ in range(layers))
        self.final_norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, _VOCAB, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, 256)`` of the next byte at every position of ``tokens`` ``(B, L)``."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token_embedding(tokens) + self.position_embedding(positions)
        for block in self.blocks:
            x = block(x)
        return self.head(self.final_norm(x))

    def initialise(self, generator: torch.Generator) -> None:
        """GPT-style init drawn from ``generator``: N(0, 0.02²) weights, 0 biases, LN at 1/0.

        The residual output projections are scaled by 1/√(2·layers) so the residual stream's
        variance at init does not grow with depth.
        """
        residual_std = _INIT_STD / math.sqrt(2 * len(self.blocks))
        residual_outputs = {id(b.attn_out.weight) for b in self.blocks}
        residual_outputs |= {id(b.mlp_out.weight) for b in self.blocks}
        with torch.no_grad():
            for name, parameter in self.named_parameters():
                if "norm" in name:
                    parameter.fill_(1.0 if name.endswith("weight") else 0.0)
                elif name.endswith("bias"):
                    parameter.zero_()
                else:
                    std = residual_std if id(parameter) in residual_outputs else _INIT_STD
                    parameter.normal_(0.0, std, generator=generator)


class CharLMInstance(TaskInstance):
    """One seeded charlm run: init, window phase and window order derive from the seed."""

    model: CharTransformer

    def __init__(self, spec: TaskSpec, seed: int, corpus: torch.Tensor) -> None:
        model = construct(CharTransformer)
        model.initialise(derive_generator(seed, "charlm/init"))

        split = len(corpus) - int(len(corpus) * _VAL_FRACTION)
        self._train = corpus[:split]
        # Non-overlapping windows of L+1 bytes sharing their end byte with the next one's start.
        val_starts = torch.arange(0, len(corpus) - split - _CONTEXT, _CONTEXT)
        self._val_windows = _windows(corpus[split:], val_starts)
        self._probe_windows = self._val_windows[: _PROBE_BATCHES * _BATCH_SIZE]
        val_batches = len(val_starts) / _BATCH_SIZE
        super().__init__(
            spec,
            seed,
            model,
            val_cost=val_batches * FORWARD_COST,
            probe_cost=min(_PROBE_BATCHES, val_batches) * FORWARD_COST,
        )

        # The window count is fixed (phase-independent) so every epoch has the same length.
        self._train_windows = (len(self._train) - _CONTEXT) // _CONTEXT
        self._order = EpochBatches(
            self._train_windows, _BATCH_SIZE, derive_generator(seed, "data")
        )
        self._phase_generator = derive_generator(seed, "charlm/phase")
        self._phase_epoch = -1
        self._phase = 0

    def next_batch(self) -> torch.Tensor:
        """16 windows of L+1 = 65 bytes, int64 ``(16, 65)``.

        Inputs are ``batch[:, :-1]``, targets ``batch[:, 1:]``.
        """
        index = self._order.next()
        if self._order.epoch != self._phase_epoch:
            # A new epoch: cut the windows at a new offset so their borders move.
            self._phase = int(torch.randint(_CONTEXT, (1,), generator=self._phase_generator))
            self._phase_epoch = self._order.epoch
        return _windows(self._train, self._phase + index * _CONTEXT)

    def stream_state_dict(self) -> dict[str, Any]:
        """The window order's state and the epoch's window offset."""
        return {
            "order": self._order.state_dict(),
            "phase_generator": self._phase_generator.get_state(),
            "phase": self._phase,
            "phase_epoch": self._phase_epoch,
        }

    def load_stream_state_dict(self, state: dict[str, Any]) -> None:
        """Set the window order and offset back to ``state``."""
        self._order.load_state_dict(state["order"])
        self._phase_generator.set_state(state["phase_generator"])
        self._phase = int(state["phase"])
        self._phase_epoch = int(state["phase_epoch"])

    def loss(self, batch: torch.Tensor) -> torch.Tensor:
        """Mean next-byte cross-entropy over every position of the batch, nats per byte."""
        logits = self.model(batch[:, :-1])
        return F.cross_entropy(logits.reshape(-1, _VOCAB), batch[:, 1:].reshape(-1))

    def val_loss(self) -> float:
        """Nats per character over the whole validation part."""
        return self._nats_per_byte(self._val_windows)

    def probe_loss(self) -> float:
        """Nats per character over the first 10 validation batches (160 windows)."""
        return self._nats_per_byte(self._probe_windows)

    def _nats_per_byte(self, windows: torch.Tensor) -> float:
        total = 0.0
        with evaluating(self.model):
            for start in range(0, len(windows), _EVAL_CHUNK):
                chunk = windows[start : start + _EVAL_CHUNK]
                logits = self.model(chunk[:, :-1])
                targets = chunk[:, 1:].reshape(-1)
                total += float(
                    F.cross_entropy(logits.reshape(-1, _VOCAB), targets, reduction="sum")
                )
        return total / (len(windows) * _CONTEXT)


class CharLMTask(Task):
    """``charlm``: the byte-level transformer on the stdlib snapshot; 2,000 steps (smoke: 60)."""

    def __init__(self, variant: str = "standard") -> None:
        super().__init__(pick_variant(CHARLM_SPECS, variant))

    def build(self, seed: int) -> CharLMInstance:
        """A freshly initialised transformer; init and data order derive from ``seed``.

        Raises:
            TaskDataError: The stored corpus is missing or fails its SHA-256 check.
        """
        seed = check_seed(seed)
        corpus = load_corpus()
        if self.spec.variant == "smoke":
            corpus = corpus[:_SMOKE_BYTES]
        return CharLMInstance(self.spec, seed, corpus)


def _windows(data: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Rows ``data[s : s + L + 1]`` for each start s, as int64 ``(len(starts), L + 1)``."""
    offsets = torch.arange(_CONTEXT + 1)
    return data[starts.unsqueeze(1) + offsets].long()
