"""The character corpus of the ``charlm`` task: a fixed snapshot of Python's standard library.

The snapshot (``autolrs/bench/data/stdlib_corpus.txt.gz``, built by ``make_corpus.py`` beside
it; see the README there) is 2,983,134 bytes of CPython 3.11.7 source: the top-level modules
``__future__.py`` to ``profile.py`` in sorted order. Its SHA-256 is checked on every load, so
an edited or truncated file fails loudly instead of silently changing every result.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import zlib
from pathlib import Path

import torch

from autolrs.bench.tasks.base import TaskDataError

__all__ = ["CORPUS_PATH", "CORPUS_SHA256", "load_corpus"]

logger = logging.getLogger(__name__)

CORPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "stdlib_corpus.txt.gz"
# SHA-256 of the uncompressed bytes (the gzip container itself is not hashed).
CORPUS_SHA256 = "63d5abfa5405ccb1f5ef7db9cabd0d77f2f76daf131ce4ee941b57139b5a70a8"


def load_corpus(path: Path = CORPUS_PATH, expected_sha256: str = CORPUS_SHA256) -> torch.Tensor:
    """The corpus as a uint8 tensor of byte values, read and checked once per process.

    Args:
        path: The gzip-compressed corpus.
        expected_sha256: Hex SHA-256 the uncompressed bytes must have.

    Returns:
        A 1-D uint8 tensor, one element per byte (the vocabulary is the 256 byte values).
        Shared between callers: treat it as read-only.

    Raises:
        TaskDataError: The file is missing, is not gzip data, or its digest differs.
    """
    return _load(Path(path).resolve(), expected_sha256)


@functools.lru_cache(maxsize=4)
def _load(path: Path, expected_sha256: str) -> torch.Tensor:
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError as error:
        raise TaskDataError(
            f"charlm corpus not found at {path}; it ships with autolrs "
            "(autolrs/bench/data/stdlib_corpus.txt.gz): reinstall, or rebuild it with "
            "autolrs/bench/data/make_corpus.py under CPython 3.11.7"
        ) from error
    except (OSError, EOFError, zlib.error) as error:
        raise TaskDataError(f"charlm corpus {path} is not readable gzip data: {error}") from error

    digest = hashlib.sha256(data).hexdigest()
    if digest != expected_sha256:
        raise TaskDataError(
            f"charlm corpus {path} must have SHA-256 {expected_sha256}, got {digest} "
            f"({len(data)} bytes): the file was changed or rebuilt; restore the committed one"
        )
    logger.debug("loaded charlm corpus %s: %d bytes, sha256 ok", path, len(data))
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)
