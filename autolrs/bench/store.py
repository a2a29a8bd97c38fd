"""The results store: one JSON line per finished run, so an interrupted suite resumes.

A line is appended and flushed only once its run has finished, so a killed suite loses at most
the run in progress; on the next invocation every key already in the file is skipped. A torn
last line (the process died mid-write) is ignored with a warning and its run is done again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from autolrs.bench.records import RunKey, RunRecord

__all__ = ["ResultStore", "RESULTS_FILE", "append_json_line"]

logger = logging.getLogger(__name__)

RESULTS_FILE = "runs.jsonl"


class ResultStore:
    """Append-only store of :class:`RunRecord`, keyed by :class:`RunKey`.

    Args:
        directory: Output folder; created if missing. Records live in ``runs.jsonl`` there.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / RESULTS_FILE
        self._records: dict[RunKey, RunRecord] = {}
        self._load()

    def _load(self) -> None:
        self._offset = 0  # bytes of the file parsed so far
        self._lines = 0
        if not self.path.exists():
            return
        self._read_new(final=True)
        logger.info("%s: %d finished runs", self.path, len(self._records))

    def refresh(self) -> int:
        """Read the records another process appended since; return how many were new.

        Two suites writing one folder (e.g. one of them with ``reverse=True``) thereby share
        the work: each skips the runs the other has finished. A line still being written is
        left for the next call.
        """
        if not self.path.exists():
            return 0
        before = len(self._records)
        self._read_new(final=False)
        return len(self._records) - before

    def _read_new(self, *, final: bool) -> None:
        """Parse the file from the last offset; ``final``: a torn last line is skipped too."""
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        lines = data.split(b"\n")
        tail = lines.pop()  # after the last newline: empty, or a line still being written
        consumed = len(data) - len(tail)
        if final and tail.strip():
            lines.append(tail)
            consumed = len(data)
        for number, raw in enumerate(lines, start=self._lines + 1):
            line = raw.decode("utf-8", errors="replace")
            if not line.strip():
                continue
            try:
                record = RunRecord.from_dict(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                logger.warning(
                    "%s line %d is not a complete record (%s); its run will be redone",
                    self.path,
                    number,
                    exc,
                )
                continue
            self._records[record.key] = record
        self._offset += consumed
        self._lines += len(lines)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[RunRecord]:
        return iter(self._records.values())

    def get(self, key: RunKey) -> RunRecord | None:
        """The record of ``key``, or None when that run has not finished."""
        return self._records.get(key)

    def add(self, record: RunRecord) -> None:
        """Append ``record`` to the file (flushed and synced) and index it."""
        append_json_line(self.path, record.to_dict())
        self._records[record.key] = record


def append_json_line(path: Path, data: Any) -> None:
    """Append ``data`` as one JSON line to ``path``, flushed and synced to disk.

    A process killed mid-write leaves a line without its newline; it is closed first, so the
    new record starts on a line of its own and only the torn one is lost.
    """
    line = json.dumps(data, separators=(",", ":"), allow_nan=False)
    with path.open("ab") as handle:
        if handle.tell() > 0:
            with path.open("rb") as reader:
                reader.seek(-1, os.SEEK_END)
                torn = reader.read(1) != b"\n"
            if torn:
                handle.write(b"\n")
        handle.write(line.encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
