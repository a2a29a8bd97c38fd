"""The benchmark tasks, by name: each a spec and a seeded builder of model, data and metrics.

===============  ================================================  =========  =====  ==========
name             model and data                                    optimizer  T      metric
===============  ================================================  =========  =====  ==========
nqm              noisy quadratic, d = 10⁴, hᵢ = 1/i, B = 1         SGD        4000   E loss
fmnist-mlp       784-256-256-10 MLP, Fashion-MNIST, batch 128      SGD+mom.   8000   val CE
fmnist-cnn       conv16-conv32 (BN, pool), FC 128, Fashion-MNIST   SGD+mom.   2000   val CE
charlm           2-layer pre-LN transformer, Python stdlib bytes   AdamW      2000   nats/char
teacher-student  32-256-256-1 tanh MLP regressing a fixed teacher  Adam(W)    6000   excess MSE
===============  ================================================  =========  =====  ==========

Each exists as a ``"standard"`` variant (the benchmark) and a ``"smoke"`` variant (same model
family, a run of a few seconds, for CI). Example::

    task = get_task("nqm", "smoke")
    instance = task.build(seed=0)
    optimizer = instance.make_optimizer(task.spec.lr_grid[2])

Importing this package imports torch but reads no data; data is read on the first ``build``.
"""

from __future__ import annotations

from collections.abc import Callable

from autolrs.bench.tasks.base import VARIANTS, Task, TaskDataError, TaskInstance, TaskSpec
from autolrs.bench.tasks.charlm import CharLMTask
from autolrs.bench.tasks.fmnist import FashionCNNTask, FashionMLPTask
from autolrs.bench.tasks.nqm import NQMTask
from autolrs.bench.tasks.teacher_student import TeacherStudentTask
from autolrs.errors import ConfigError

__all__ = [
    "TASK_NAMES",
    "VARIANTS",
    "Task",
    "TaskDataError",
    "TaskInstance",
    "TaskSpec",
    "get_task",
]

_REGISTRY: dict[str, Callable[[str], Task]] = {
    "nqm": NQMTask,
    "fmnist-mlp": FashionMLPTask,
    "fmnist-cnn": FashionCNNTask,
    "charlm": CharLMTask,
    "teacher-student": TeacherStudentTask,
}

TASK_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def get_task(name: str, variant: str = "standard") -> Task:
    """The task called ``name`` in the given variant.

    Args:
        name: One of :data:`TASK_NAMES`.
        variant: ``"standard"`` or ``"smoke"``.

    Raises:
        ConfigError: ``name`` or ``variant`` is not a valid choice; the message lists them.
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"task name must be one of {TASK_NAMES}, got {name!r}")
    if not isinstance(variant, str) or variant not in VARIANTS:
        raise ConfigError(f"task variant must be one of {VARIANTS}, got {variant!r}")
    return _REGISTRY[name](variant)
