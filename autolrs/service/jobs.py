"""The jobs a server holds: one controller each, persisted, serialised and replayable.

:class:`JobManager` is the service without HTTP: every public method takes validated request
data and returns the response body as bytes, or raises :class:`ServiceError` with the status and
error code to answer with. Per job it guarantees:

- **serial decisions.** A per-job lock spans read, decide and write, and every write names the
  revision it read (see :mod:`autolrs.service.store`), so no decision is taken twice or skipped,
  whatever the concurrency;
- **durability.** A reply is returned only after the state it came from is committed;
- **replay.** A report for the last answered ``seq`` with the same content gets the stored reply
  byte for byte, without running the controller again.

Live controllers are cached (least recently used first out), tagged with the revision they were
loaded at; a controller that raised, or whose write failed, is dropped and reloaded from the
database, because a failed call may have changed it half-way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import sqlite3
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from autolrs.config import AutoLRSConfig
from autolrs.core.commands import Report
from autolrs.core.controller import Controller
from autolrs.errors import DivergenceError, ProtocolError
from autolrs.service import wire
from autolrs.service.schema import JOB_ID_PATTERN, CreateJob
from autolrs.service.store import JobRow, StaleRevision, Store, StoreError

__all__ = ["JobManager", "ServiceError"]

logger = logging.getLogger(__name__)

#: Longest error message sent back; a message quoting a huge bad value is cut here.
MAX_MESSAGE_CHARS = 2000

_JOB_ID = re.compile(JOB_ID_PATTERN)


class ServiceError(Exception):
    """An error answer: HTTP status, a code from :data:`wire.ERROR_STATUS`, and a message.

    Args:
        code: The error code; its status comes from :data:`wire.ERROR_STATUS`.
        message: What went wrong, for people.
        **details: Further JSON-able fields of the error object (e.g. ``expected_seq``).
    """

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = wire.ERROR_STATUS[code]
        self.code = code
        self.message = _clip(message)
        self.details = details

    def body(self) -> bytes:
        """The JSON error body."""
        return wire.encode({"error": {"code": self.code, "message": self.message, **self.details}})


class JobManager:
    """Creates, advances, shows and deletes jobs stored in ``store``.

    Thread-safe: FastAPI calls it from its worker threads.

    Args:
        store: Where the jobs live.
        cache_size: Live controllers kept in memory; others are rebuilt from the database on
            their next report. ≥ 1.
    """

    def __init__(self, store: Store, *, cache_size: int = 256) -> None:
        if cache_size < 1:
            raise ValueError(f"cache_size must be >= 1, got {cache_size!r}")
        self._store = store
        self._locks = _JobLocks()
        self._cache = _ControllerCache(cache_size)

    def create(self, body: CreateJob) -> tuple[bool, bytes]:
        """Start a job; return whether it was created (False: it existed) and the job view.

        A taken ``job_id`` with the same config and ``validation`` returns that job as it is now
        (so retrying a create is safe); with a different one it is a ``job_exists`` error.
        """
        config = _parse_config(body.config)
        job_id = body.job_id if body.job_id is not None else uuid.uuid4().hex
        with self._locks.hold(job_id), _storage_errors():
            if self._store.head(job_id) is not None:
                _, controller = self._current(job_id)
                _check_same_job(job_id, controller, config, body.validation)
                return False, self._view(job_id, controller, 0, created=False)

            controller = Controller(config, validation=body.validation)
            try:
                controller.start()
            except (ValueError, ArithmeticError) as error:
                message = f"the controller refused the config: {error}"
                raise ServiceError("invalid_config", message) from error
            state = controller.state_dict()
            try:
                row = self._store.insert(job_id, state)
            except sqlite3.IntegrityError:
                # Only another process sharing the file can get here first: ask for a retry.
                raise StaleRevision(f"job {job_id!r} was created concurrently") from None
            self._cache.put(job_id, row.revision, controller)
            view = self._view(job_id, controller, 0, created=True)
        logger.info(
            "job %s created (lr in [%.3g, %.3g], validation=%s)",
            job_id,
            config.min_lr,
            config.max_lr,
            body.validation,
        )
        return True, view

    def report(self, job_id: str, report: Report) -> tuple[bool, bytes]:
        """Feed a report to the job; return whether the reply is a replay, and the reply."""
        digest = _digest(report)
        with self._locks.hold(job_id), _storage_errors():
            row, controller = self._current(job_id)
            if row.answered_seq == report.seq:
                if row.answered_digest != digest:
                    raise ServiceError(
                        "report_conflict",
                        f"job {job_id!r} already answered the report for seq={report.seq} and "
                        "this one carries different losses; a retry must resend the same report",
                    )
                reply = self._store.reply(job_id)
                assert reply is not None  # answered_seq and reply are written together
                logger.debug("job %s: replayed the reply to seq=%d", job_id, report.seq)
                return True, reply.encode("utf-8")

            pending = controller.pending
            assert pending is not None  # a stored job has always been started
            if report.seq != pending.seq:
                when = "was already answered" if report.seq < pending.seq else "was never issued"
                raise ServiceError(
                    "seq_mismatch",
                    f"job {job_id!r} waits for the report on seq={pending.seq} (its pending "
                    f"{pending.phase} command); seq={report.seq} {when}",
                    expected_seq=pending.seq,
                )

            # A report changes only the current stage and may begin the next one.
            history_from = max(len(controller.history) - 1, 0)
            try:
                self._decide(job_id, controller, report)
                core = _core_state(controller)
                records = [record.to_dict() for record in controller.history[history_from:]]
                reply = self._reply(job_id, controller, core, history_from, records)
                row = self._store.answer(
                    row,
                    core=core,
                    history_from=history_from,
                    records=records,
                    seq=report.seq,
                    digest=digest,
                    reply=reply.decode("utf-8"),
                )
            except BaseException:
                self._cache.drop(job_id)
                raise
            self._cache.put(job_id, row.revision, controller)
        logger.debug("job %s: answered seq=%d", job_id, report.seq)
        return False, reply

    def view(self, job_id: str) -> bytes:
        """The job with its whole history, the pending command and the schedule so far."""
        with self._locks.hold(job_id), _storage_errors():
            row, controller = self._current(job_id)
            pending = controller.pending
            assert pending is not None
            return self._view(
                job_id,
                controller,
                0,
                phase=controller.phase,
                pending=pending.to_dict(),
                schedule=controller.schedule(),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )

    def state(self, job_id: str) -> bytes:
        """The job's ``Controller.state_dict()``, exactly."""
        with self._locks.hold(job_id), _storage_errors():
            _, controller = self._current(job_id)
            return wire.encode(controller.state_dict())

    def put_state(self, job_id: str, state: dict[str, Any]) -> tuple[bool, bytes]:
        """Create or overwrite a job from a controller state; return (created, job view).

        This is how a client resumes from its own checkpoint, whose state may lie behind or
        ahead of the server's. Putting the state the job already has changes nothing.
        """
        if not _JOB_ID.match(job_id):
            raise ServiceError(
                "invalid_request",
                f"job id must be 1 to 128 characters from A-Z a-z 0-9 . _ - starting with a "
                f"letter or digit, got {job_id!r}",
            )
        controller = _load_state(state)
        canonical = controller.state_dict()
        with self._locks.hold(job_id), _storage_errors():
            row = self._store.head(job_id)
            if row is None:
                row = self._store.insert(job_id, canonical)
                created = True
            else:
                row, current = self._current(job_id)
                if _canonical(current.state_dict()) == _canonical(canonical):
                    return False, self._view(job_id, current, 0, created=False)
                row = self._store.replace(row, canonical)
                created = False
            self._cache.put(job_id, row.revision, controller)
            view = self._view(job_id, controller, 0, created=created)
        action = "created from a state" if created else "state replaced"
        logger.info("job %s %s at seq=%d", job_id, action, canonical["seq"])
        return created, view

    def delete(self, job_id: str) -> bytes:
        """Remove the job for good."""
        with self._locks.hold(job_id), _storage_errors():
            deleted = self._store.delete(job_id)
            self._cache.drop(job_id)
        if not deleted:
            raise _not_found(job_id)
        logger.info("job %s deleted", job_id)
        return wire.encode({"job_id": job_id, "deleted": True})

    # -- helpers -----------------------------------------------------------------------------

    def _current(self, job_id: str) -> tuple[JobRow, Controller]:
        """The job's row and live controller, from the cache when it is up to date."""
        row = self._store.head(job_id)
        if row is None:
            raise _not_found(job_id)
        cached = self._cache.get(job_id, row.revision)
        if cached is not None:
            return row, cached
        loaded = self._store.load(job_id)
        if loaded is None:
            raise _not_found(job_id)
        row, state = loaded
        controller = Controller.from_state_dict(state)
        self._cache.put(job_id, row.revision, controller)
        return row, controller

    def _decide(self, job_id: str, controller: Controller, report: Report) -> None:
        try:
            controller.report(report)
        except DivergenceError as error:
            logger.warning("job %s: %s", job_id, error)
            raise ServiceError("diverged", str(error)) from error
        except ProtocolError as error:
            raise ServiceError("invalid_report", str(error)) from error

    def _view(self, job_id: str, controller: Controller, history_from: int, **extra: Any) -> bytes:
        records = [record.to_dict() for record in controller.history[history_from:]]
        return self._reply(
            job_id, controller, _core_state(controller), history_from, records, **extra
        )

    @staticmethod
    def _reply(
        job_id: str,
        controller: Controller,
        core: dict[str, Any],
        history_from: int,
        records: list[dict[str, Any]],
        **extra: Any,
    ) -> bytes:
        return wire.encode(
            {
                "job_id": job_id,
                "commands": core["last_reply"],
                "metric": controller.metric,
                "state": core,
                "history_from": history_from,
                "history": records,
                **extra,
            }
        )


class _JobLock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self) -> None:
        self.lock = threading.Lock()


class _JobLocks:
    """One lock per job id, forgotten once no thread holds or waits for it."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, _JobLock] = weakref.WeakValueDictionary()
        self._guard = threading.Lock()

    @contextlib.contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        with self._guard:
            entry = self._locks.get(job_id)
            if entry is None:
                entry = _JobLock()
                self._locks[job_id] = entry
        # ``entry`` stays referenced, hence in the dictionary, while this thread waits or holds.
        with entry.lock:
            yield


class _ControllerCache:
    """Least-recently-used live controllers, each tagged with its revision."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[str, tuple[int, Controller]] = OrderedDict()
        self._guard = threading.Lock()

    def get(self, job_id: str, revision: int) -> Controller | None:
        with self._guard:
            entry = self._entries.get(job_id)
            if entry is None or entry[0] != revision:
                return None
            self._entries.move_to_end(job_id)
            return entry[1]

    def put(self, job_id: str, revision: int, controller: Controller) -> None:
        with self._guard:
            self._entries[job_id] = (revision, controller)
            self._entries.move_to_end(job_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def drop(self, job_id: str) -> None:
        with self._guard:
            self._entries.pop(job_id, None)


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    """Turn database trouble into a 503, which clients retry."""
    try:
        yield
    except StaleRevision as error:
        raise ServiceError("storage_unavailable", f"{error}; retry the request") from error
    except (sqlite3.OperationalError, StoreError) as error:
        logger.warning("job database unavailable: %s", error)
        raise ServiceError(
            "storage_unavailable", f"the job database is unavailable ({error}); retry later"
        ) from error


def _core_state(controller: Controller) -> dict[str, Any]:
    """``controller.state_dict()`` without its ``history``, at a cost independent of the run.

    ``state_dict()`` converts every stage record of the run (about 1.5 s for twenty paper-sized
    stages), while a report changes only the last one or two. So the records are lifted out of
    the history list for the call and put back at once; the caller holds the job's lock, so no
    other thread sees the list meanwhile. Should ``history`` ever return a copy, this still
    gives the right answer, only slower.
    """
    history = controller.history
    records = list(history)
    history.clear()
    try:
        state = controller.state_dict()
    finally:
        history[:] = records
    state.pop("history", None)
    return state


def _parse_config(data: dict[str, Any]) -> AutoLRSConfig:
    try:
        wire.check_int64(data, "config")
        return AutoLRSConfig.from_dict(data)
    except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
        raise ServiceError("invalid_config", str(error)) from error


def _load_state(state: dict[str, Any]) -> Controller:
    try:
        wire.check_int64(state, "state")
        controller = Controller.from_state_dict(state)
    except KeyError as error:
        raise ServiceError("invalid_state", f"the state lacks the field {error}") from error
    except (ValueError, TypeError, ArithmeticError, RecursionError) as error:
        raise ServiceError("invalid_state", f"the state cannot be loaded: {error}") from error
    if controller.pending is None:
        raise ServiceError(
            "invalid_state",
            "the state is of a controller that was never started; create the job with "
            "POST /jobs instead",
        )
    return controller


def _check_same_job(
    job_id: str, controller: Controller, config: AutoLRSConfig, validation: bool
) -> None:
    differences = [
        f"{name}: {getattr(controller.config, name)!r} there, {getattr(config, name)!r} here"
        for name in config.to_dict()
        if getattr(controller.config, name) != getattr(config, name)
    ]
    if controller.validation != validation:
        differences.append(f"validation: {controller.validation!r} there, {validation!r} here")
    if differences:
        raise ServiceError(
            "job_exists",
            f"job {job_id!r} already exists with a different setup ({'; '.join(differences)}); "
            "choose another job_id or delete the job first",
        )


def _digest(report: Report) -> str:
    """Digest of a report's content; repr-exact floats, so NaN and -0.0 compare as written."""
    content = [
        report.seq,
        [float(x) for x in report.losses],
        [float(x) for x in report.val_losses],
    ]
    return hashlib.sha256(json.dumps(content).encode("utf-8")).hexdigest()


def _canonical(state: dict[str, Any]) -> str:
    return json.dumps(state, sort_keys=True)


def _not_found(job_id: str) -> ServiceError:
    return ServiceError("job_not_found", f"no job with id {job_id!r}")


def _clip(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 20] + " … (message cut)"
