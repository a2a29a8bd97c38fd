"""``autolrs report``: turn a run's event log into figures and a self-contained HTML page.

Example::

    autolrs report runs/run.jsonl --out runs/report    # writes report.html, report.png, ...

Importing this module imports neither matplotlib nor PyTorch; the report needs matplotlib only
(``pip install 'autolrs[plot]'``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from autolrs.errors import AutoLRSError

__all__ = ["configure_parser", "main"]

logger = logging.getLogger(__name__)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``report`` arguments to ``parser``."""
    parser.description = (
        "Write a report of an AutoLRS run from its event log (AutoLRS(event_log=...)): the LR "
        "schedule against update and executed steps, the loss with the search windows shaded, "
        "each stage's candidates, forecasts and GP, and a summary table. Writes report.html "
        "(self-contained), report.png, schedule.png and stages/stage-NN.png."
    )
    parser.add_argument("log", type=Path, metavar="RUN.jsonl", help="the run's event log")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="folder to write into (default: RUN-report beside the log)",
    )


def main(args: argparse.Namespace) -> int:
    """Write the report of ``args.log`` into ``args.out``.

    Returns:
        The exit status: 0 on success, 1 when the log cannot be read as a run, 2 when
        matplotlib is missing.
    """
    from autolrs.reporting.figures import require_matplotlib
    from autolrs.reporting.report import write_report

    try:
        require_matplotlib()
    except AutoLRSError as error:
        print(f"autolrs report: {error}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else default_out(args.log)
    try:
        files = write_report(args.log, out)
    except AutoLRSError as error:
        print(f"autolrs report: {error}", file=sys.stderr)
        return 1
    print(f"wrote {files.html}")
    print(f"wrote {files.timeline}, {files.schedule} and {len(files.stages)} stage figures")
    return 0


def default_out(log: Path) -> Path:
    """``runs/run.jsonl`` -> ``runs/run-report``."""
    return log.with_name(f"{log.stem}-report")
