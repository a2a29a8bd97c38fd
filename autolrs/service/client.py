"""The client: :class:`RemoteController`, the in-process controller's stand-in over HTTP.

It has the interface of :class:`~autolrs.core.controller.Controller` (``start``, ``report``, the
read-only properties, ``schedule``, ``state_dict``/``from_state_dict``), so code written for one
drives the other. Each reply carries the controller state without its history plus the stage
records that changed, and the client keeps a mirror of the whole state from them: reading a
property never costs a request, and ``start``/``report`` cost one each.

Transport is the standard library's ``http.client`` over one kept-alive connection. Failures to
reach the server (refused, reset, timed out) and 502/503/504 answers are retried with
exponential backoff; this is safe because the server recognises a repeated request (the job id
is chosen here, and a report for the last answered ``seq`` is answered again, identically). Not
thread-safe: one training loop drives one instance.
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import random
import time
import urllib.parse
import uuid
from typing import Any

from autolrs import __version__
from autolrs.config import AutoLRSConfig
from autolrs.core.commands import Command, Phase, Report, Train, command_from_dict
from autolrs.core.controller import Controller, budget_spent, budget_used
from autolrs.core.history import Metric, StageRecord
from autolrs.errors import AutoLRSError, ConfigError, DivergenceError, ProtocolError
from autolrs.service import wire

__all__ = ["RemoteController", "RemoteControllerFactory"]

logger = logging.getLogger(__name__)

#: Largest pause between two attempts, seconds.
MAX_BACKOFF = 5.0

# Error codes that mean "your arguments are wrong" rather than "your call is out of order".
_CONFIG_CODES = frozenset({"invalid_config", "invalid_state", "unauthorized"})
_RETRY_STATUSES = frozenset({502, 503, 504})


class RemoteController:
    """A :class:`~autolrs.core.controller.Controller` that runs in an AutoLRS server.

    Creating one sends nothing; :meth:`start` creates the job on the server.

    Args:
        url: The server, e.g. ``"http://127.0.0.1:8765"`` (a path prefix is kept).
        config: The algorithm's constants.
        validation: Whether the training loop can measure a validation loss.
        job_id: The job's id on the server. Default: a fresh random id. Naming an existing job
            whose config matches makes :meth:`start` return its first commands again, as long
            as no report was answered yet (use :meth:`attach` to continue a job that moved on).
        token: Bearer token of a server that requires one. Default: the environment variable
            ``AUTOLRS_SERVICE_TOKEN``, else none.
        timeout: Seconds to wait for one answer before retrying. > 0.
        retries: Further attempts after a failure to reach the server or a 502/503/504. ≥ 0.
        backoff: Pause before the first retry, seconds, doubling with each further one (with
            jitter, at most 5 s). ≥ 0.

    Raises:
        ConfigError: An argument is out of range.

    Example:
        Against a running server (``autolrs serve``)::

            ctl = RemoteController("http://127.0.0.1:8765", config, validation=False)
            commands = ctl.start()
            while ...:
                ...carry out commands, measuring the losses of the Train command...
                commands = ctl.report(Report(seq=commands[-1].seq, losses=losses))
    """

    def __init__(
        self,
        url: str,
        config: AutoLRSConfig,
        *,
        validation: bool,
        job_id: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 8,
        backoff: float = 0.25,
    ) -> None:
        if not isinstance(config, AutoLRSConfig):
            raise ConfigError(f"config must be an AutoLRSConfig, got {type(config).__name__}")
        if not isinstance(validation, bool):
            raise ConfigError(f"validation must be True or False, got {validation!r}")
        if job_id is not None and not (isinstance(job_id, str) and job_id):
            raise ConfigError(f"job_id must be a non-empty string or None, got {job_id!r}")
        http = _Http(url, token=token, timeout=timeout, retries=retries, backoff=backoff)
        self._setup(http, job_id if job_id is not None else uuid.uuid4().hex, config, validation)

    def _setup(self, http: _Http, job_id: str, config: AutoLRSConfig, validation: bool) -> None:
        self._http = http
        self._job_id = job_id
        self._config = config
        self._validation = validation
        # The mirror: the controller state without history, the history, and derived views.
        self._core: dict[str, Any] | None = None
        self._history: list[StageRecord] = []
        self._last_reply: list[Command] = []
        self._pending: Train | None = None
        self._metric: Metric | None = None

    # -- reattaching -------------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        url: str,
        job_id: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 8,
        backoff: float = 0.25,
    ) -> RemoteController:
        """Continue the job ``job_id`` from where the server has it.

        Its :attr:`last_reply` holds the commands to carry out; the pending Train command is to
        be run from its start.

        Raises:
            ProtocolError: The server has no such job.
        """
        http = _Http(url, token=token, timeout=timeout, retries=retries, backoff=backoff)
        view = http.call("GET", _job_path(job_id))
        controller = cls._from_view(http, job_id, view)
        logger.info("attached to job %s at %s (pending seq=%d)", job_id, url, view["state"]["seq"])
        return controller

    @classmethod
    def from_state_dict(
        cls,
        state: dict[str, Any],
        *,
        url: str | None = None,
        job_id: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 8,
        backoff: float = 0.25,
    ) -> RemoteController:
        """Rebuild from :meth:`state_dict`, putting that state back on the server.

        The state wins over whatever the server holds for the job (it may be ahead, after the
        training loop crashed past its last checkpoint, or gone), exactly as an in-process
        controller restored from a checkpoint continues from the checkpoint. A plain
        ``Controller.state_dict()`` works too, with ``url`` given: that moves an in-process run
        onto the server.

        Args:
            state: :meth:`state_dict`'s output, or a ``Controller.state_dict()``.
            url: The server; default: the one recorded in ``state``.
            job_id: The job's id; default: the one recorded in ``state``, else a fresh one.
            token: See the class.
            timeout: See the class.
            retries: See the class.
            backoff: See the class.

        Raises:
            ConfigError: The state is malformed or names no server.
        """
        if not isinstance(state, dict):
            raise ConfigError(f"state must be a dict, got {type(state).__name__}")
        service = state.get("service") or {}
        url = url if url is not None else service.get("url")
        if url is None:
            raise ConfigError("the state names no server: pass url=")
        job_id = job_id if job_id is not None else service.get("job_id")
        controller_state = {key: value for key, value in state.items() if key != "service"}
        local = Controller.from_state_dict(controller_state)  # checks it before sending it

        remote = cls(
            url,
            local.config,
            validation=local.validation,
            job_id=job_id,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
        )
        if local.started:
            view = remote._http.call(
                "PUT", _job_path(remote.job_id) + "/state", local.state_dict()
            )
            remote._mirror(view)
        return remote

    @classmethod
    def _from_view(cls, http: _Http, job_id: str, view: dict[str, Any]) -> RemoteController:
        try:
            config = AutoLRSConfig.from_dict(view["state"]["config"])
            validation = bool(view["state"]["validation"])
        except (KeyError, TypeError) as error:
            raise AutoLRSError(f"the AutoLRS service at {http.url} sent no job state") from error
        remote = cls.__new__(cls)
        remote._setup(http, job_id, config, validation)
        remote._mirror(view)
        return remote

    # -- read-only views, from the mirror ----------------------------------------------------

    @property
    def url(self) -> str:
        """The server's URL."""
        return self._http.url

    @property
    def job_id(self) -> str:
        """The job's id on the server."""
        return self._job_id

    @property
    def config(self) -> AutoLRSConfig:
        """The algorithm's constants."""
        return self._config

    @property
    def validation(self) -> bool:
        """Whether the training loop can measure a validation loss."""
        return self._validation

    @property
    def started(self) -> bool:
        """Whether :meth:`start` has been called (or the job was attached)."""
        return self._pending is not None

    @property
    def pending(self) -> Train | None:
        """The :class:`Train` command awaiting its report; None before :meth:`start`."""
        return self._pending

    @property
    def last_reply(self) -> list[Command]:
        """The commands returned by the latest :meth:`start` or :meth:`report` call."""
        return list(self._last_reply)

    @property
    def phase(self) -> Phase | None:
        """Phase of the pending command (``"warmup"``, ``"trial"`` or ``"stage"``)."""
        return None if self._pending is None else self._pending.phase

    @property
    def stage_index(self) -> int:
        """0-based index of the current stage; -1 before the first stage (e.g. in warmup)."""
        return -1 if self._core is None else int(self._core["stage_index"])

    @property
    def update_steps(self) -> int:
        """Steps kept as progress (warmup and stage training) by reports received so far."""
        return 0 if self._core is None else int(self._core["update_steps"])

    @property
    def search_steps(self) -> int:
        """Executed steps rolled back (trials, diverged stages) by reports received so far."""
        return 0 if self._core is None else int(self._core["search_steps"])

    @property
    def evaluations(self) -> int:
        """Validation-loss measurements requested and reported so far."""
        return 0 if self._core is None else int(self._core["evaluations"])

    @property
    def budget_used(self) -> int:
        """Steps counted against ``config.total_steps`` by reports received so far."""
        return budget_used(self._config, self.update_steps, self.search_steps)

    @property
    def finished(self) -> bool:
        """Whether the budget ``config.total_steps`` is spent; never, without a budget."""
        return budget_spent(self._config, self.budget_used)

    @property
    def history(self) -> list[StageRecord]:
        """One record per stage begun, the current one last. Do not mutate."""
        return self._history

    @property
    def metric(self) -> Metric:
        """Loss that judges the current stage's candidates."""
        if self._metric is None:
            # Before start(): what a fresh controller says, without asking the server.
            self._metric = Controller(self._config, validation=self._validation).metric
        return self._metric

    def schedule(self) -> list[tuple[int, float]]:
        """The LR found so far as ``(first update step, lr)`` segments, warmup excluded."""
        return [
            (stage.start_update_step, stage.chosen_lr)
            for stage in self._history
            if stage.chosen_lr is not None
        ]

    # -- the protocol ------------------------------------------------------------------------

    def start(self) -> list[Command]:
        """Create the job on the server; return its first commands.

        Raises:
            ProtocolError: Already started, or the job id is taken by a job that has moved past
                its start (continue that one with :meth:`attach`).
            ConfigError: The server refused the config, or another job holds the id with a
                different config.
            AutoLRSError: The server could not be reached within the retry budget.
        """
        if self.started:
            raise ProtocolError("start() was already called; feed reports with report()")
        body = {
            "config": self._config.to_dict(),
            "validation": self._validation,
            "job_id": self._job_id,
        }
        view = self._http.call("POST", "/jobs", body)
        if not view.get("created", True) and view["state"]["seq"] > 0:
            raise ProtocolError(
                f"job {self._job_id!r} on {self.url} has moved past its start (pending "
                f"seq={view['state']['seq']}); continue it with RemoteController.attach()"
            )
        self._mirror(view)
        return self.last_reply

    def report(self, report: Report) -> list[Command]:
        """Send the measurements for the pending command; return the next commands.

        Raises:
            ProtocolError: The report does not answer the pending command (wrong ``seq``, wrong
                number of losses, stopped early without a reason), or the job is gone.
            DivergenceError: The loss became non-finite where no other LR is left to try.
            AutoLRSError: The server could not be reached within the retry budget.
        """
        if self._pending is None:
            raise ProtocolError("report() before start(): call start() first")
        if not isinstance(report, Report):
            raise ProtocolError(f"report must be a Report, got {type(report).__name__}")
        body = {
            "seq": int(report.seq),
            "losses": [float(x) for x in report.losses],
            "val_losses": [float(x) for x in report.val_losses],
        }
        view = self._http.call("POST", _job_path(self._job_id) + "/reports", body)
        self._mirror(view)
        return self.last_reply

    # -- serialisation and lifetime ----------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """``Controller.state_dict()`` of the job, plus ``"service": {"url", "job_id"}``.

        ``Controller.from_state_dict`` reads it as it is (the extra key is ignored), and
        :meth:`from_state_dict` reattaches to the server with it.
        """
        if self._core is None:
            state = Controller(self._config, validation=self._validation).state_dict()
        else:
            state = {**self._core, "history": [record.to_dict() for record in self._history]}
        state["service"] = {"url": self.url, "job_id": self._job_id}
        return state

    def delete(self) -> None:
        """Delete the job on the server; this instance can no longer report."""
        self._http.call("DELETE", _job_path(self._job_id))

    def close(self) -> None:
        """Close the connection to the server (a later call opens a new one)."""
        self._http.close()

    def __enter__(self) -> RemoteController:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"RemoteController(url={self.url!r}, job_id={self._job_id!r}, "
            f"seq={None if self._pending is None else self._pending.seq})"
        )

    # -- the mirror --------------------------------------------------------------------------

    def _mirror(self, view: dict[str, Any]) -> None:
        """Bring the mirror up to the server's reply (absolute values: applying twice is fine)."""
        try:
            start = int(view["history_from"])
            if start > len(self._history):
                # A reply was skipped (cannot happen with one caller); fetch the whole job.
                logger.warning("job %s: mirror out of step; reloading it", self._job_id)
                view = self._http.call("GET", _job_path(self._job_id))
                start = 0
            records = [StageRecord.from_dict(r) for r in wire.decode_non_finite(view["history"])]
            commands = [command_from_dict(c) for c in view["commands"]]
            core = dict(view["state"])
            metric = view["metric"]
        except (KeyError, TypeError, ValueError) as error:
            raise AutoLRSError(
                f"the AutoLRS service at {self.url} sent a reply this client cannot read "
                f"({type(error).__name__}: {error}); are client and server the same version?"
            ) from error
        if not commands or not isinstance(commands[-1], Train):
            raise AutoLRSError(f"the AutoLRS service at {self.url} sent no Train command last")
        self._history[start:] = records
        self._core = core
        self._last_reply = commands
        self._pending = commands[-1]
        self._metric = metric


class RemoteControllerFactory:
    """Stands in for the :class:`~autolrs.core.controller.Controller` class itself.

    Code that builds its controller as ``Controller(config, validation=...)`` and restores it
    with ``Controller.from_state_dict(state)`` gets remote controllers on one server from this
    object, called the same way.

    Args:
        url: The server.
        **options: ``token``, ``timeout``, ``retries``, ``backoff`` for every controller (see
            :class:`RemoteController`).
    """

    def __init__(self, url: str, **options: Any) -> None:
        self._url = url
        self._options = options

    def __call__(self, config: AutoLRSConfig, *, validation: bool) -> RemoteController:
        """A new job's controller (the job is created by its ``start()``)."""
        return RemoteController(self._url, config, validation=validation, **self._options)

    def from_state_dict(self, state: dict[str, Any]) -> RemoteController:
        """Reattach with a state from ``state_dict()``, on this factory's server."""
        return RemoteController.from_state_dict(state, url=self._url, **self._options)


class _Http:
    """Requests to one server over a kept-alive connection, retried when it cannot be reached."""

    def __init__(
        self, url: str, *, token: str | None, timeout: float, retries: int, backoff: float
    ) -> None:
        if not isinstance(url, str):
            raise ConfigError(f"url must be a string like 'http://127.0.0.1:8765', got {url!r}")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"url must be http://HOST[:PORT] or https://…, got {url!r}")
        if isinstance(timeout, bool) or not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be an integer >= 0, got {retries!r}")
        if isinstance(backoff, bool) or not (
            isinstance(backoff, int | float) and math.isfinite(backoff) and backoff >= 0
        ):
            raise ConfigError(f"backoff must be a number of seconds >= 0, got {backoff!r}")
        self.url = url.rstrip("/")
        self._scheme = parts.scheme
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        token = token if token is not None else os.environ.get(wire.TOKEN_ENV)
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": f"autolrs/{__version__}",
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout = float(timeout)
        self._retries = retries
        self._backoff = float(backoff)
        self._conn: http.client.HTTPConnection | None = None
        self._used = False  # whether the open connection has carried a request already

    def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """Send one request, retrying as documented; return the decoded 2xx body.

        Raises:
            ProtocolError, ConfigError, DivergenceError: The server refused the request (4xx).
            AutoLRSError: The server failed (5xx), or could not be reached in time.
        """
        payload = None if body is None else wire.encode(body)
        attempts = self._retries + 1
        failure = ""
        for attempt in range(attempts):
            if attempt:
                pause = min(MAX_BACKOFF, self._backoff * 2 ** (attempt - 1))
                time.sleep(pause * random.uniform(0.5, 1.0))
            try:
                status, text = self._exchange(method, path, payload)
            except (OSError, http.client.HTTPException) as error:
                failure = f"{type(error).__name__}: {error}"
                logger.debug("%s %s%s failed (%s)", method, self.url, path, failure)
                continue
            if status in _RETRY_STATUSES:
                failure = f"HTTP {status}: {_message(text)}"
                logger.debug("%s %s%s answered %s", method, self.url, path, failure)
                continue
            return self._decode(method, path, status, text)
        raise AutoLRSError(
            f"the AutoLRS service at {self.url} did not answer {method} {path} after "
            f"{attempts} attempt{'s' if attempts > 1 else ''} (last: {failure}); is the server "
            "running there?"
        )

    def close(self) -> None:
        """Close the connection, if open."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _exchange(self, method: str, path: str, payload: bytes | None) -> tuple[int, str]:
        try:
            return self._send(method, path, payload)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not self._used:
                raise
            # The server closed the kept-alive connection while it was idle: not a failure of
            # the server, so retry at once on a fresh connection, outside the retry budget.
            self.close()
            return self._send(method, path, payload)

    def _send(self, method: str, path: str, payload: bytes | None) -> tuple[int, str]:
        if self._conn is None:
            factory = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            self._conn = factory(self._host, self._port, timeout=self._timeout)
            self._used = False
        try:
            self._conn.request(method, self._prefix + path, body=payload, headers=self._headers)
            response = self._conn.getresponse()
            text = response.read().decode("utf-8", errors="replace")
        except BaseException:
            self.close()
            raise
        self._used = True
        if response.will_close:
            self.close()
        return response.status, text

    def _decode(self, method: str, path: str, status: int, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if 200 <= status < 300 and isinstance(data, dict):
            return data
        error = data.get("error") if isinstance(data, dict) else None
        code = error.get("code", "") if isinstance(error, dict) else ""
        message = error.get("message", "") if isinstance(error, dict) else _message(text)
        where = f"{method} {self.url}{path} → {status} {code}".rstrip()
        if 400 <= status < 500:
            if code in _CONFIG_CODES:
                raise ConfigError(f"{message} ({where})")
            if code == "diverged":
                raise DivergenceError(f"{message} ({where})")
            raise ProtocolError(f"{message} ({where})")
        raise AutoLRSError(f"the AutoLRS service failed: {message or _message(text)} ({where})")


def _job_path(job_id: str) -> str:
    return "/jobs/" + urllib.parse.quote(job_id, safe="")


def _message(text: str) -> str:
    """The error message inside a body, or the start of a body that is not ours."""
    try:
        return str(json.loads(text)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return text[:200]
