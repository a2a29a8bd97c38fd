"""The HTTP face of the service: a FastAPI application over :class:`~.jobs.JobManager`.

Why FastAPI (on Starlette, served by uvicorn): the request models in :mod:`.schema` both
validate the bodies and produce the OpenAPI document at ``/openapi.json`` that clients in other
languages can generate code from, and all three libraries are widely used and actively kept.
Endpoints are plain functions, which FastAPI runs in its worker threads, so one job's controller
computing (tens of milliseconds) never stalls the requests of other jobs.

Before routing, :class:`RequestGuard` checks the bearer token (constant-time), caps the body
size and insists on a JSON body; every error, from any layer, leaves as
``{"error": {"code": ..., "message": ...}}`` with the status listed in
:data:`autolrs.service.wire.ERROR_STATUS`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from autolrs import __version__
from autolrs.service import wire
from autolrs.service.jobs import JobManager, ServiceError
from autolrs.service.schema import (
    CreatedJob,
    CreateJob,
    Deleted,
    ErrorBody,
    JobDetail,
    JobView,
    ReportBody,
)
from autolrs.service.store import Store

__all__ = ["DEFAULT_MAX_BODY_BYTES", "RequestGuard", "create_app"]

logger = logging.getLogger(__name__)

#: Default cap on a request body: 4 MiB holds a report of half a million losses.
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

_JSON = "application/json"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def create_app(
    db_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    cache_size: int = 256,
    busy_timeout: float = 30.0,
) -> FastAPI:
    """The service as an ASGI application, its jobs kept in the SQLite file ``db_path``.

    Args:
        db_path: The job database; created when missing.
        token: When given, every request must carry ``Authorization: Bearer <token>``.
        max_body_bytes: Larger request bodies are refused with 413. ≥ 1.
        cache_size: Live controllers kept in memory. ≥ 1.
        busy_timeout: Seconds a write waits for the database lock before answering 503.

    Raises:
        StoreError: The database cannot be opened or was written by an incompatible version.
    """
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes!r}")
    store = Store(db_path, busy_timeout=busy_timeout)
    manager = JobManager(store, cache_size=cache_size)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="AutoLRS service",
        version=__version__,
        description=(
            "The AutoLRS search as a service: create a job, carry out the commands it answers "
            "with, report what they measured. See docs/service.md."
        ),
        docs_url=None,  # the interactive pages load scripts from a CDN; the schema is enough
        redoc_url=None,
        # A path with a trailing slash (a job id ending in "/") is not found rather than
        # redirected: a client that follows a redirect would address another job.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    app.add_middleware(RequestGuard, token=token, max_body_bytes=max_body_bytes)
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _internal_error)
    _add_routes(app, manager)
    return app


def _add_routes(app: FastAPI, manager: JobManager) -> None:
    errors: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody} for status in sorted(set(wire.ERROR_STATUS.values()))
    }

    @app.get("/health", summary="Liveness probe")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.post(
        "/jobs",
        status_code=201,
        summary="Create a job and get its first commands",
        response_model=None,
        responses={201: {"model": CreatedJob}, 200: {"model": CreatedJob}, **errors},
    )
    def create_job(body: CreateJob) -> Response:
        created, content = manager.create(body)
        return _json(content, 201 if created else 200)

    @app.post(
        "/jobs/{job_id}/reports",
        summary="Report what the pending Train command measured; get the next commands",
        response_model=None,
        responses={200: {"model": JobView}, **errors},
    )
    def post_report(job_id: str, body: ReportBody) -> Response:
        replayed, content = manager.report(job_id, body.to_report())
        return _json(content, 200, {"AutoLRS-Replayed": "true" if replayed else "false"})

    @app.get(
        "/jobs/{job_id}",
        summary="The job: counters, phase, pending command, schedule and history",
        response_model=None,
        responses={200: {"model": JobDetail}, **errors},
    )
    def get_job(job_id: str) -> Response:
        return _json(manager.view(job_id))

    @app.get(
        "/jobs/{job_id}/state",
        summary="The job's full controller state (Controller.state_dict())",
        response_model=None,
        responses={200: {"content": {_JSON: {"schema": {"type": "object"}}}}, **errors},
    )
    def get_state(job_id: str) -> Response:
        return _json(manager.state(job_id))

    @app.put(
        "/jobs/{job_id}/state",
        summary="Create or overwrite a job from a controller state (resume from a checkpoint)",
        response_model=None,
        responses={201: {"model": CreatedJob}, 200: {"model": CreatedJob}, **errors},
    )
    def put_state(job_id: str, state: Annotated[dict[str, Any], Body()]) -> Response:
        created, content = manager.put_state(job_id, state)
        return _json(content, 201 if created else 200)

    @app.delete(
        "/jobs/{job_id}",
        summary="Delete a job",
        response_model=None,
        responses={200: {"model": Deleted}, **errors},
    )
    def delete_job(job_id: str) -> Response:
        return _json(manager.delete(job_id))


class RequestGuard:
    """ASGI middleware run before routing: bearer token, body size cap, JSON bodies only.

    The body is read here, whole (at most ``max_body_bytes``), and handed on; a body without a
    ``Content-Type`` is taken as JSON, one with another type is refused with 415.

    Args:
        app: The application to guard.
        token: The bearer token every request must carry; None: no check.
        max_body_bytes: Larger bodies are answered with 413 before being read further.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, max_body_bytes: int) -> None:
        self._app = app
        # Comparing digests keeps the comparison's time independent of the token's length too.
        self._expected = None if token is None else _digest(b"Bearer " + token.encode("utf-8"))
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection: check it, read its body, pass it on or refuse it."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        headers = dict(scope["headers"])

        if self._expected is not None:
            given = _digest(headers.get(b"authorization", b""))
            if not hmac.compare_digest(given, self._expected):
                error = ServiceError(
                    "unauthorized", "this server needs the header 'Authorization: Bearer <token>'"
                )
                await _send(send, error, [(b"www-authenticate", b'Bearer realm="autolrs"')])
                return

        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            await _send(send, _too_large(self._max_body, f"{int(declared)} bytes"))
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self._max_body:
                await _send(send, _too_large(self._max_body, "more"))
                return

        if body:
            content_type = headers.get(b"content-type")
            if content_type is None:
                scope["headers"] = [*scope["headers"], (b"content-type", _JSON.encode())]
            elif not _is_json(content_type):
                error = ServiceError(
                    "unsupported_media_type",
                    f"request bodies must be JSON (Content-Type: {_JSON}), got "
                    f"{content_type.decode('latin-1')!r}",
                )
                await _send(send, error)
                return

        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()  # only a disconnect can follow
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self._app(scope, replay, send)


# -- errors ----------------------------------------------------------------------------------


async def _service_error(request: Request, error: ServiceError) -> Response:
    return Response(error.body(), error.status, media_type=_JSON)


async def _validation_error(request: Request, error: RequestValidationError) -> Response:
    problems = error.errors()
    for problem in problems:
        if problem.get("type") == "json_invalid":
            reason = problem.get("ctx", {}).get("error", "not JSON")
            where = problem.get("loc", ("body", "?"))[-1]
            message = f"the body is not valid JSON: {reason} at character {where}"
            return await _service_error(request, ServiceError("malformed_json", message))
    described = "; ".join(_describe(problem) for problem in problems[:5])
    if len(problems) > 5:
        described += f"; and {len(problems) - 5} more"
    return await _service_error(request, ServiceError("invalid_request", described))


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    if error.status_code == 404:
        service_error = ServiceError(
            "not_found", f"no endpoint {request.method} {request.url.path}; see /openapi.json"
        )
    elif error.status_code == 405:
        service_error = ServiceError(
            "method_not_allowed", f"{request.url.path} does not take {request.method}"
        )
    elif error.status_code == 400:
        # FastAPI's answer to a body json.loads refused for other reasons than syntax: not
        # UTF-8, an integer of more than 4300 digits, nesting deeper than Python's stack.
        service_error = ServiceError(
            "malformed_json",
            "the body could not be read as JSON (bytes that are not UTF-8, an integer too long, "
            "or nesting too deep)",
        )
    else:
        body = {"error": {"code": "http_error", "message": str(error.detail)}}
        return Response(wire.encode(body), error.status_code, media_type=_JSON)
    return await _service_error(request, service_error)


async def _internal_error(request: Request, error: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    service_error = ServiceError(
        "internal_error",
        f"the server failed on this request ({type(error).__name__}); see its log",
    )
    return await _service_error(request, service_error)


def _describe(problem: dict[str, Any]) -> str:
    path = ""
    for part in problem.get("loc", ())[1:]:  # the first part is always "body"
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    value = repr(problem.get("input"))
    if len(value) > 80:
        value = value[:77] + "..."
    return f"{path or 'body'}: {problem.get('msg', 'invalid')}, got {value}"


def _too_large(limit: int, size: str) -> ServiceError:
    return ServiceError(
        "body_too_large", f"request bodies may hold at most {limit} bytes, got {size}"
    )


async def _send(
    send: Send, error: ServiceError, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = error.body()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", _JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json(content: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(content, status, headers=headers, media_type=_JSON)


def _is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
