"""``autolrs serve`` (and ``python -m autolrs.service``): run the AutoLRS service.

The server binds 127.0.0.1 unless told otherwise, and refuses to bind any address that is not
loopback without a bearer token: a job's state is small, but anyone who can reach the port can
steer (or delete) every job on it. The token comes from ``--token`` or, better, from the
environment variable ``AUTOLRS_SERVICE_TOKEN`` (a command line is visible to every user of the
machine). The server needs the ``service`` extra: ``pip install 'autolrs[service]'``.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import os
import sys
from pathlib import Path

from autolrs.service.wire import TOKEN_ENV

__all__ = ["configure_parser", "is_loopback", "main"]

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_DB = Path("autolrs-service.db")
DEFAULT_MAX_BODY_MIB = 4.0

#: Tokens shorter than this are accepted with a warning: they can be guessed.
MIN_TOKEN_CHARS = 16


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options to ``parser`` (a subparser of ``autolrs``, or its own)."""
    parser.description = (
        "Run the AutoLRS search as an HTTP service: training loops in any language create jobs, "
        "carry out the commands they get back, and report the losses. Jobs persist in a SQLite "
        "file, so a restarted server continues every job."
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}); any non-loopback address needs a token",
    )
    parser.add_argument(
        "--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--db",
        type=Path,
        default=DEFAULT_DB,
        help=f"SQLite file holding the jobs, created when missing (default: ./{DEFAULT_DB})",
    )
    parser.add_argument(
        "--token",
        default=None,
        help=f"bearer token every request must carry (default: ${TOKEN_ENV}, else none)",
    )
    parser.add_argument(
        "--max-body-mib",
        type=_positive_float,
        default=DEFAULT_MAX_BODY_MIB,
        help=f"largest request body accepted, MiB (default: {DEFAULT_MAX_BODY_MIB:g})",
    )


def main(args: argparse.Namespace) -> int:
    """Serve until interrupted.

    Returns:
        0 after a clean shutdown (Ctrl-C, SIGTERM), 2 when the options or the installation do
        not allow serving, 1 when the database or the port cannot be used.
    """
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV)
    token = token or None  # an empty token is no token
    if token is None and not is_loopback(args.host):
        print(
            f"autolrs serve: refusing to bind {args.host!r} without a token: anyone who can "
            f"reach it could steer every job. Set {TOKEN_ENV} (or pass --token), or bind "
            f"{DEFAULT_HOST}.",
            file=sys.stderr,
        )
        return 2
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        logger.warning("the token has %d characters; use %d or more", len(token), MIN_TOKEN_CHARS)

    try:
        import uvicorn

        from autolrs.service.app import create_app
        from autolrs.service.store import StoreError
    except ImportError as error:
        print(
            f"autolrs serve needs the service extra ({error}); install it with: "
            "pip install 'autolrs[service]'",
            file=sys.stderr,
        )
        return 2

    try:
        app = create_app(args.db, token=token, max_body_bytes=int(args.max_body_mib * 1024 * 1024))
    except StoreError as error:
        print(f"autolrs serve: {error}", file=sys.stderr)
        return 1

    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    logger.info(
        "serving AutoLRS jobs from %s on http://%s:%d%s",
        args.db,
        shown_host,
        args.port,
        " (token required)" if token else "",
    )
    try:
        # log_config=None: uvicorn's loggers propagate to whatever the caller configured.
        uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    except SystemExit as exit_:  # uvicorn exits (1 or 3, by version) when it cannot bind
        return 1 if exit_.code else 0
    return 0


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine: ``localhost``, 127.0.0.0/8 or ``::1``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve anywhere


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value
