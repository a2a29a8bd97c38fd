"""Build the character corpus of the ``charlm`` benchmark task from Python's standard library.

The corpus is the concatenation, in sorted file-name order, of the top-level ``.py`` modules of
the running interpreter's standard library, each preceded by a one-line header naming it. Whole
modules are added until the next one would push the total past ``--max-bytes`` (3,000,000 by
default). The result is written gzip-compressed with a zero timestamp and no file name in the
header, so the same input always gives the same compressed bytes, and its SHA-256 (of the
uncompressed bytes, which is what the loader checks) is printed.

The committed snapshot was built with CPython 3.11.7; other releases ship different sources and
therefore give a different corpus and digest. The benchmark never rebuilds it: this script only
documents how the stored file was made. Run it from the repository root::

    python autolrs/bench/data/make_corpus.py

and, if a new snapshot is really wanted, update ``CORPUS_SHA256`` in
``autolrs/bench/tasks/corpus.py`` and bump the ``charlm`` task's version.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
import sysconfig
from pathlib import Path

DEFAULT_MAX_BYTES = 3_000_000
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "stdlib_corpus.txt.gz"


def build_corpus(stdlib_dir: Path, max_bytes: int) -> tuple[bytes, list[str]]:
    """Concatenate whole top-level modules of ``stdlib_dir`` up to ``max_bytes``.

    Args:
        stdlib_dir: Folder of the standard library (``sysconfig.get_paths()["stdlib"]``).
        max_bytes: Upper bound on the corpus size in bytes; the module that would cross it and
            every later one are left out.

    Returns:
        The corpus bytes and the names of the modules it holds, in order.
    """
    parts: list[bytes] = []
    names: list[str] = []
    size = 0
    for path in sorted(stdlib_dir.glob("*.py"), key=lambda p: p.name):
        body = path.read_bytes()
        if not body.endswith(b"\n"):
            body += b"\n"
        chunk = f"# ==== {path.name} ====\n".encode("ascii") + body
        if size + len(chunk) > max_bytes:
            break
        parts.append(chunk)
        names.append(path.name)
        size += len(chunk)
    return b"".join(parts), names


def main(argv: list[str] | None = None) -> int:
    """Build the corpus, write it gzip-compressed and print its size and SHA-256."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    stdlib_dir = Path(sysconfig.get_paths()["stdlib"])
    corpus, names = build_corpus(stdlib_dir, args.max_bytes)

    # mtime=0 and no file name in the gzip header make the compressed file reproducible.
    with (
        open(args.output, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as compressed,
    ):
        compressed.write(corpus)

    print(f"python {sys.version.split()[0]}, {len(names)} modules: {names[0]} .. {names[-1]}")
    print(f"{len(corpus)} bytes, {args.output.stat().st_size} compressed -> {args.output}")
    print(f"sha256 {hashlib.sha256(corpus).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
