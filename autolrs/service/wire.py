"""The service's JSON dialect and error codes, shared by the server and the client.

Standard library only: the client imports this module, and the client must run where neither
FastAPI nor pydantic is installed.

JSON (RFC 8259) has no NaN and no infinity, yet a diverging training run produces both, and the
controller treats a non-finite loss as divergence on purpose. The service therefore fixes where
such values may appear and how they are written:

- **Responses are strict JSON.** Commands never hold a non-finite number. A loss curve recorded
  in a stage's history may (the candidate that diverged): there a non-finite value is written as
  the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``.
- **A loss in a report** (``losses``, ``val_losses``) may be a JSON number, ``null`` (a non-finite
  loss the client cannot spell, e.g. JavaScript's ``JSON.stringify(NaN)``), one of those three
  strings, or the bare tokens ``NaN``, ``Infinity`` and ``-Infinity`` that Python's ``json`` module
  writes by default. A number too large for a double (``1e400``) reads as infinity.
- **Anywhere else** a request is plain JSON and validation refuses non-finite numbers (the config
  checks its own fields). Every integer in a request must fit in a signed 64-bit integer, so that
  clients in any language can hold it.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = [
    "ERROR_STATUS",
    "INT64_MAX",
    "INT64_MIN",
    "NON_FINITE",
    "TOKEN_ENV",
    "check_int64",
    "decode_non_finite",
    "encode",
    "loss_from_wire",
]

#: Environment variable holding the bearer token, read by ``autolrs serve`` and the client.
TOKEN_ENV = "AUTOLRS_SERVICE_TOKEN"

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

#: The strings that stand for non-finite numbers, and their values.
NON_FINITE: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

#: Every error code the server answers with, and its HTTP status.
ERROR_STATUS: dict[str, int] = {
    "malformed_json": 400,  # the body is not JSON, or not UTF-8
    "unauthorized": 401,  # token missing or wrong
    "job_not_found": 404,  # no job with this id
    "not_found": 404,  # no such endpoint
    "method_not_allowed": 405,
    "seq_mismatch": 409,  # a report for a seq other than the pending one (or the last answered)
    "report_conflict": 409,  # the last answered seq again, with different losses
    "job_exists": 409,  # POST /jobs with a taken job_id and a different config
    "body_too_large": 413,
    "unsupported_media_type": 415,  # a body whose Content-Type is not JSON
    "invalid_request": 422,  # well-formed JSON of the wrong shape or types
    "invalid_config": 422,  # AutoLRSConfig refused the config
    "invalid_report": 422,  # the controller refused the report (e.g. wrong number of losses)
    "invalid_state": 422,  # PUT /jobs/{id}/state with a state the controller cannot load
    "diverged": 422,  # the controller raised DivergenceError: the job cannot go on
    "internal_error": 500,
    "storage_unavailable": 503,  # the database is busy or failing; retrying is safe
}


def encode(data: Any) -> bytes:
    """``data`` as compact, strict JSON, non-finite floats written as strings (see module)."""
    try:
        text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # Rare (only a diverged candidate's curve holds one): pay for the walk only then.
        text = json.dumps(_strings_for_non_finite(data), allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8")


def _strings_for_non_finite(data: Any) -> Any:
    if isinstance(data, float) and not math.isfinite(data):
        return "NaN" if math.isnan(data) else ("Infinity" if data > 0 else "-Infinity")
    if isinstance(data, dict):
        return {key: _strings_for_non_finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_strings_for_non_finite(value) for value in data]
    return data


def decode_non_finite(data: Any) -> Any:
    """Inverse of :func:`encode`'s spelling: ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` → floats.

    Safe on the service's responses because no string field of a command, a config or a
    history record ever takes one of these three values.
    """
    if isinstance(data, str):
        return NON_FINITE.get(data, data)
    if isinstance(data, dict):
        return {key: decode_non_finite(value) for key, value in data.items()}
    if isinstance(data, list):
        return [decode_non_finite(value) for value in data]
    return data


def loss_from_wire(value: float | int | str | None) -> float:
    """A loss as a report may spell it (number, ``null`` or a non-finite string) → float."""
    if value is None:
        return math.nan
    if isinstance(value, str):
        return NON_FINITE[value]
    return float(value)


def check_int64(data: Any, where: str) -> None:
    """Raise ValueError naming the place when an integer in ``data`` does not fit in 64 bits."""
    if isinstance(data, int) and not isinstance(data, bool):
        if not INT64_MIN <= data <= INT64_MAX:
            raise ValueError(f"{where} must fit in a signed 64-bit integer, got {data}")
    elif isinstance(data, dict):
        for key, value in data.items():
            check_int64(value, f"{where}.{key}")
    elif isinstance(data, list):
        for index, value in enumerate(data):
            check_int64(value, f"{where}[{index}]")
