"""Fashion-MNIST, read once per process from the idx files of Debian's ``dataset-fashion-mnist``.

Split: the first 50,000 images of the official 60,000-image training file train; the last
10,000 are the validation set every metric is measured on. The official 10,000-image test file
is never read, so nothing here can tune on it. (The training file's classes are shuffled: the
last 10,000 hold 955 to 1,050 images of each class.)

Pixels are scaled to [0, 1] and then standardised with the mean and standard deviation of the
50,000 training images (one scalar each), and kept in memory as float32 tensors of shape
``(N, 1, 28, 28)`` (about 190 MB for all 60,000).

Where the files are: ``$AUTOLRS_FASHION_MNIST_DIR`` when set, else
``/usr/share/datasets/fashion-mnist``. Each file may be gzip-compressed (``.gz``, as Debian ships
them) or raw.
"""

from __future__ import annotations

import functools
import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from autolrs.bench.tasks.base import TaskDataError

__all__ = [
    "DEFAULT_DIR",
    "ENV_VAR",
    "TRAIN_SIZE",
    "VAL_SIZE",
    "FashionMNIST",
    "data_dir",
    "load_fashion_mnist",
]

logger = logging.getLogger(__name__)

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV_VAR = "AUTOLRS_FASHION_MNIST_DIR"
TRAIN_SIZE = 50_000
VAL_SIZE = 10_000

_IMAGES = "train-images-idx3-ubyte"
_LABELS = "train-labels-idx1-ubyte"
_UBYTE = 0x08  # idx type code of unsigned bytes


@dataclass(frozen=True)
class FashionMNIST:
    """The training and validation split, standardised, in memory. Treat as read-only.

    Attributes:
        train_images: float32, ``(50000, 1, 28, 28)``.
        train_labels: int64, ``(50000,)``, classes 0 to 9.
        val_images: float32, ``(10000, 1, 28, 28)``.
        val_labels: int64, ``(10000,)``.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor


def data_dir() -> Path:
    """The folder the idx files are read from: ``$AUTOLRS_FASHION_MNIST_DIR`` or the default."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_DIR)


def load_fashion_mnist() -> FashionMNIST:
    """The split, loaded from :func:`data_dir` on the first call and cached per folder.

    Raises:
        TaskDataError: A file is missing or is not a well-formed idx file of the expected shape.
    """
    return _load(data_dir().resolve())


@functools.lru_cache(maxsize=2)
def _load(directory: Path) -> FashionMNIST:
    images = _read_idx(_find(directory, _IMAGES), expected_shape=(60_000, 28, 28))
    labels = _read_idx(_find(directory, _LABELS), expected_shape=(60_000,))
    logger.debug("read Fashion-MNIST training file from %s", directory)

    # Standardise with the statistics of the training part only.
    scaled = images.astype(np.float32) / np.float32(255.0)
    train = scaled[:TRAIN_SIZE]
    mean = np.float32(train.mean(dtype=np.float64))
    std = np.float32(train.std(dtype=np.float64))
    standardised = torch.from_numpy((scaled - mean) / std).unsqueeze(1)
    targets = torch.from_numpy(labels.astype(np.int64))

    return FashionMNIST(
        train_images=standardised[:TRAIN_SIZE],
        train_labels=targets[:TRAIN_SIZE],
        val_images=standardised[TRAIN_SIZE:],
        val_labels=targets[TRAIN_SIZE:],
    )


def _find(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise TaskDataError(
        f"Fashion-MNIST file {stem}[.gz] not found in {directory} (set by {ENV_VAR}, default "
        f"{DEFAULT_DIR}). Install Debian's dataset-fashion-mnist package with "
        "`apt-get update && apt-get install -y dataset-fashion-mnist`, or point "
        f"{ENV_VAR} at a folder holding the original idx files."
    )


def _read_idx(path: Path, expected_shape: tuple[int, ...]) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as file:
            raw = file.read()
    except (OSError, EOFError) as error:
        raise TaskDataError(f"cannot read Fashion-MNIST file {path}: {error}") from error

    # idx header: two zero bytes, a type code, the number of dimensions, then each size as a
    # big-endian int32.
    ndim = raw[3] if len(raw) >= 4 else -1
    header = 4 + 4 * max(ndim, 0)
    if len(raw) < header or raw[:2] != b"\x00\x00" or raw[2] != _UBYTE:
        raise TaskDataError(
            f"Fashion-MNIST file {path} is not an idx file of unsigned bytes "
            f"(header {raw[:4].hex()!r})"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    if shape != expected_shape or len(raw) != header + int(np.prod(shape)):
        raise TaskDataError(
            f"Fashion-MNIST file {path} must hold shape {expected_shape} "
            f"({header + int(np.prod(expected_shape))} bytes), got shape {shape} "
            f"in {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)
