"""Durable job state: one embedded SQLite database in WAL mode (standard library ``sqlite3``).

Layout. ``jobs`` holds one row per job: the controller state without its history (``core``: the
config, the counters and the last reply, a few hundred bytes), the last answered report (its
``seq`` and a digest of its content) and the exact reply body sent for it. ``stages`` holds the
history, one row per stage record. A report only ever changes the current stage and may begin the
next one, so each write touches the job row and one or two stage rows, and the cost of a report
does not grow with the length of the run.

Every write is one transaction (``BEGIN IMMEDIATE`` … ``COMMIT``) that also advances the job's
``revision``; a write names the revision it read and fails with :class:`StaleRevision` when
another writer got there first. With ``synchronous=FULL`` a committed reply survives the process
being killed and the machine losing power, so a server restarted on the same file answers a
retried report exactly as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from autolrs.errors import AutoLRSError

__all__ = ["JobRow", "SCHEMA_VERSION", "StaleRevision", "Store", "StoreError"]

#: Version of the table layout; a database written by another version is refused.
SCHEMA_VERSION = 1

_TABLES = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS jobs (
        job_id TEXT PRIMARY KEY,
        revision INTEGER NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        core TEXT NOT NULL,
        answered_seq INTEGER,
        answered_digest TEXT,
        reply TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS stages (
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (job_id, idx)
    ) WITHOUT ROWID""",
)


class StoreError(AutoLRSError):
    """The database cannot be opened or has an incompatible layout."""


class StaleRevision(AutoLRSError):
    """A write lost the race: the job changed (or vanished) since its revision was read."""


@dataclass(frozen=True)
class JobRow:
    """The small columns of a job's row.

    Attributes:
        job_id: The job's id.
        revision: Incremented by every write to the job.
        created_at: Unix time of creation, seconds.
        updated_at: Unix time of the last write, seconds.
        answered_seq: ``seq`` of the last report answered; None before the first one.
        answered_digest: Digest of that report's content (see :mod:`autolrs.service.jobs`).
    """

    job_id: str
    revision: int
    created_at: float
    updated_at: float
    answered_seq: int | None
    answered_digest: str | None


class Store:
    """Jobs' controller states in one SQLite file, safe to use from many threads.

    Each thread borrows a connection from a small pool for the duration of one call, so calls
    never share a connection; SQLite serialises the writers and WAL lets readers run beside them.

    Args:
        path: The database file; created with its tables when missing.
        busy_timeout: Seconds a write waits for another writer's lock before failing with
            ``sqlite3.OperationalError``. > 0.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if not busy_timeout > 0:
            raise StoreError(f"busy_timeout must be > 0 seconds, got {busy_timeout!r}")
        self._path = os.fspath(path)
        self._busy_timeout = float(busy_timeout)
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            self._prepare()
        except sqlite3.Error as error:
            self.close()
            raise StoreError(f"cannot use {self._path!r} as the job database: {error}") from error

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    def _prepare(self) -> None:
        with self._connection() as conn:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"{self._path!r} cannot use SQLite's WAL journal (got {mode!r}); give a "
                    "path to a file on a local disk"
                )
            with _transaction(conn):
                for statement in _TABLES:
                    conn.execute(statement)
                row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('schema', ?)",
                        (str(SCHEMA_VERSION),),
                    )
                elif row[0] != str(SCHEMA_VERSION):
                    raise StoreError(
                        f"{self._path!r} holds jobs in layout version {row[0]}; this autolrs "
                        f"reads version {SCHEMA_VERSION}"
                    )

    # -- reads -------------------------------------------------------------------------------

    def head(self, job_id: str) -> JobRow | None:
        """The job's small columns, or None when there is no such job."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT job_id, revision, created_at, updated_at, answered_seq, answered_digest "
                "FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
        return None if row is None else JobRow(*row)

    def load(self, job_id: str) -> tuple[JobRow, dict[str, Any]] | None:
        """The job's row and its whole controller state (``Controller.state_dict()`` layout)."""
        with self._connection() as conn, _transaction(conn, write=False):
            # One read transaction, so the job row and its stages come from the same commit.
            row = conn.execute(
                "SELECT job_id, revision, created_at, updated_at, answered_seq, answered_digest, "
                "core FROM jobs WHERE job_id = ?",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            records = conn.execute(
                "SELECT record FROM stages WHERE job_id = ? ORDER BY idx", (job_id,)
            ).fetchall()
        state = json.loads(row[6])
        state["history"] = [json.loads(record) for (record,) in records]
        return JobRow(*row[:6]), state

    def reply(self, job_id: str) -> str | None:
        """The body sent for the job's last answered report."""
        with self._connection() as conn:
            row = conn.execute("SELECT reply FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else row[0]

    # -- writes ------------------------------------------------------------------------------

    def insert(self, job_id: str, state: dict[str, Any]) -> JobRow:
        """Add a new job with this controller state; ``sqlite3.IntegrityError`` if it exists."""
        now = time.time()
        core, history = _split(state)
        with self._writing() as conn:
            conn.execute(
                "INSERT INTO jobs (job_id, revision, created_at, updated_at, core) "
                "VALUES (?, 1, ?, ?, ?)",
                (job_id, now, now, core),
            )
            _write_stages(conn, job_id, 0, history)
        return JobRow(job_id, 1, now, now, None, None)

    def replace(self, row: JobRow, state: dict[str, Any]) -> JobRow:
        """Overwrite the job's whole state; it then has no answered report to replay."""
        now = time.time()
        core, history = _split(state)
        with self._writing() as conn:
            _advance(conn, row, now, core, answered=(None, None, None))
            conn.execute("DELETE FROM stages WHERE job_id = ?", (row.job_id,))
            _write_stages(conn, row.job_id, 0, history)
        return JobRow(row.job_id, row.revision + 1, row.created_at, now, None, None)

    def answer(
        self,
        row: JobRow,
        *,
        core: dict[str, Any],
        history_from: int,
        records: Sequence[dict[str, Any]],
        seq: int,
        digest: str,
        reply: str,
    ) -> JobRow:
        """Record a report's outcome: new state and the reply, in one transaction.

        Args:
            row: The row as read before the report; its revision guards the write.
            core: The controller state without ``history``.
            history_from: Index of the first stage record that changed.
            records: The stage records from ``history_from`` on (the rest is unchanged).
            seq: The ``seq`` of the report answered.
            digest: Digest of the report's content, to recognise a retry.
            reply: The reply body, returned again verbatim to a retry.
        """
        now = time.time()
        with self._writing() as conn:
            _advance(conn, row, now, json.dumps(core), answered=(seq, digest, reply))
            _write_stages(conn, row.job_id, history_from, records)
        return JobRow(row.job_id, row.revision + 1, row.created_at, now, seq, digest)

    def delete(self, job_id: str) -> bool:
        """Remove the job and its history; False when there was no such job."""
        with self._writing() as conn:
            deleted = conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,)).rowcount
            conn.execute("DELETE FROM stages WHERE job_id = ?", (job_id,))
        return deleted > 0

    # -- connections -------------------------------------------------------------------------

    def close(self) -> None:
        """Close every pooled connection; connections still lent out close when returned."""
        with self._pool_lock:
            self._closed = True
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside a write transaction, one such transaction per process at a time.

        SQLite would serialise the writers anyway, but a writer that finds the lock taken
        sleeps in growing steps (up to 100 ms) and may lose the race again and again: with tens
        of jobs writing at once, a few replies waited seconds. Queuing on a lock here instead
        wakes the next writer the moment the previous one commits.
        """
        with self._write_lock, self._connection() as conn, _transaction(conn):
            yield conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._pool_lock:
            if self._closed:
                raise StoreError(f"the job database {self._path!r} is closed")
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        try:
            yield conn
        finally:
            with self._pool_lock:
                keep = not self._closed and not conn.in_transaction
                if keep:
                    self._pool.append(conn)
            if not keep:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are opened explicitly by _transaction().
        conn = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        # FULL: a commit is on disk before the reply leaves; NORMAL could lose the last replies
        # on power loss, leaving clients one command ahead of the server.
        conn.execute("PRAGMA synchronous=FULL")
        return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection, *, write: bool = True) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so two writers never deadlock upgrading a read.
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _split(state: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    core = {key: value for key, value in state.items() if key != "history"}
    return json.dumps(core), list(state["history"])


def _advance(
    conn: sqlite3.Connection,
    row: JobRow,
    now: float,
    core: str,
    *,
    answered: tuple[int | None, str | None, str | None],
) -> None:
    updated = conn.execute(
        "UPDATE jobs SET revision = revision + 1, updated_at = ?, core = ?, answered_seq = ?, "
        "answered_digest = ?, reply = ? WHERE job_id = ? AND revision = ?",
        (now, core, *answered, row.job_id, row.revision),
    ).rowcount
    if updated != 1:
        raise StaleRevision(
            f"job {row.job_id!r} changed since revision {row.revision} was read; read it again"
        )


def _write_stages(
    conn: sqlite3.Connection, job_id: str, first: int, records: Sequence[dict[str, Any]]
) -> None:
    # Python's json writes NaN and Infinity as bare tokens and reads them back exactly; this
    # JSON never leaves the server (responses are re-encoded strictly, see wire.py).
    conn.executemany(
        "INSERT OR REPLACE INTO stages (job_id, idx, record) VALUES (?, ?, ?)",
        [(job_id, first + offset, json.dumps(record)) for offset, record in enumerate(records)],
    )
