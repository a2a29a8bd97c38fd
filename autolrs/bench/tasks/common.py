"""Small pieces the tasks share: seeded generators and init, epoch-shuffled batches, eval mode.

Every random number a task draws comes from a ``torch.Generator`` derived from the build seed
and a purpose name (:func:`derive_generator`), never from the global RNG, so building a task
neither depends on nor disturbs whatever seeding the caller did.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import zlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import torch

from autolrs.bench.tasks.base import VARIANTS, TaskSpec
from autolrs.errors import ConfigError

__all__ = [
    "check_seed",
    "pick_variant",
    "derive_generator",
    "construct",
    "init_default",
    "EpochBatches",
    "evaluating",
]


def check_seed(seed: object) -> int:
    """``seed`` as a plain int; ConfigError unless it is an integer ≥ 0."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def pick_variant(specs: Mapping[str, TaskSpec], variant: str) -> TaskSpec:
    """``specs[variant]``; ConfigError listing the valid variants when there is none."""
    if not isinstance(variant, str) or variant not in specs:
        raise ConfigError(f"task variant must be one of {VARIANTS}, got {variant!r}")
    return specs[variant]


def derive_generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for one purpose (``"init"``, ``"data"``...) of one seed.

    Separate purposes get unrelated streams, so e.g. a change in how many numbers the
    initialisation draws does not shift the data order. The purpose is hashed with CRC-32,
    which (unlike ``hash``) is the same in every process.
    """
    mixed = (seed * 0x9E3779B1 + zlib.crc32(purpose.encode("utf-8"))) % 2**63
    return torch.Generator().manual_seed(mixed)


ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)


def construct(factory: Callable[[], ModuleT]) -> ModuleT:
    """Call ``factory`` without consuming the global RNG.

    Constructors of ``torch.nn`` layers draw their default initialisation from the global RNG;
    the tasks overwrite those values from their own generators anyway, and this keeps the
    caller's global RNG state exactly as it was.
    """
    with torch.random.fork_rng(devices=[]):
        return factory()


def init_default(model: torch.nn.Module, generator: torch.Generator) -> None:
    """Re-initialise ``model`` like PyTorch's defaults, drawing from ``generator``.

    ``Linear`` and ``Conv2d`` weights and biases are uniform in ±1/√fan_in (what PyTorch's
    ``kaiming_uniform_(a=√5)`` default amounts to); normalisation layers get weight 1 and bias
    0 and fresh running statistics.

    Raises:
        TypeError: A module with parameters of a kind this function does not know.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            bound = 1.0 / math.sqrt(module.weight[0].numel())
            with torch.no_grad():
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
        elif isinstance(module, torch.nn.BatchNorm2d | torch.nn.LayerNorm):
            module.reset_parameters()
        elif any(True for _ in module.parameters(recurse=False)):
            raise TypeError(f"init_default does not know how to initialise {module!r}")


class EpochBatches:
    """Seeded stream of index batches: a fresh permutation every epoch, partial batch dropped.

    Args:
        num_items: Size of the data set. ≥ ``batch_size``.
        batch_size: Indices per batch. ≥ 1.
        generator: Source of the permutations; the stream is a function of its seed.
    """

    def __init__(self, num_items: int, batch_size: int, generator: torch.Generator) -> None:
        if batch_size < 1 or num_items < batch_size:
            raise ConfigError(
                f"batch_size must be in [1, num_items={num_items}], got {batch_size!r}"
            )
        self.num_items = num_items
        self.batch_size = batch_size
        self.batches_per_epoch = num_items // batch_size
        self.epoch = 0
        self._generator = generator
        self._order = torch.empty(0, dtype=torch.long)
        self._position = self.batches_per_epoch

    def next(self) -> torch.Tensor:
        """Indices of the next batch, shape ``(batch_size,)``, dtype int64."""
        if self._position == self.batches_per_epoch:
            self._order = torch.randperm(self.num_items, generator=self._generator)
            self._position = 0
            self.epoch += 1
        start = self._position * self.batch_size
        self._position += 1
        return self._order[start : start + self.batch_size]

    def state_dict(self) -> dict[str, Any]:
        """Where the stream stands: the generator, the epoch's permutation and the position."""
        return {
            "generator": self._generator.get_state(),
            "order": self._order.clone(),
            "position": self._position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rewind (or advance) the stream to a :meth:`state_dict`: the same batches follow."""
        self._generator.set_state(state["generator"])
        self._order = state["order"].clone()
        self._position = int(state["position"])
        self.epoch = int(state["epoch"])


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Run the body in eval mode without gradients, then restore the model's previous mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
