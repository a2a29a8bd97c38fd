"""``autolrs bench``: run a benchmark suite, resumably, and write its report.

Examples::

    autolrs bench --suite smoke --out /tmp/smoke           # every task and method, tiny
    autolrs bench --suite standard --tasks nqm --seeds 3   # one task of the benchmark proper
    autolrs bench --suite standard --regrid                # redo the tuning grids too

A second invocation with the same output folder skips every run already finished. Importing
this module imports neither PyTorch nor the tasks, so ``autolrs --help`` stays light; names of
tasks and methods are checked once the command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["configure_parser", "main"]

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 2
DEFAULT_BOOTSTRAP = 2000
LOG_FILE = "bench.log"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options to ``parser`` and set ``main`` as its handler's target."""
    parser.description = (
        "Compare AutoLRS with tuned baseline schedules and LR-free optimizers: steps and cost "
        "to reach the tuned baseline's validation loss (protocol: docs/benchmark.md). "
        "Resumable: finished runs in --out are skipped."
    )
    parser.add_argument(
        "--suite",
        choices=("smoke", "standard"),
        default="smoke",
        help="smoke: every task's smoke variant, a 2-point grid, 1 seed, checks the wiring in "
        "minutes and says nothing about speed; standard: the benchmark proper, hours "
        "(default: smoke)",
    )
    parser.add_argument(
        "--tasks",
        type=_names,
        default=None,
        help="comma-separated task names (default: every task)",
    )
    parser.add_argument(
        "--methods",
        type=_names,
        default=None,
        help="comma-separated method names (default: every method)",
    )
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        help="seeds per method (default: 1 for smoke, 3 for standard)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder for runs, report and plots (default: benchmarks/results/<suite>)",
    )
    parser.add_argument(
        "--reference-dir",
        type=Path,
        default=None,
        help="folder of the tuned-baseline reference files (default: benchmarks/reference for "
        "standard, <out>/reference for smoke)",
    )
    parser.add_argument(
        "--regrid",
        action="store_true",
        help="rerun the LR grid of the baselines even where a reference file exists",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=DEFAULT_THREADS,
        help=f"torch threads per run; results are bit-identical only at a fixed count, on "
        f"the same kind of CPU (default: {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--bootstrap",
        type=_positive_int,
        default=DEFAULT_BOOTSTRAP,
        help=f"bootstrap resamples per interval (default: {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--no-overheads",
        action="store_true",
        help="skip the side-by-side measurement of AutoLRS's overheads",
    )
    parser.add_argument(
        "--reverse",
        action="store_true",
        help="run pending runs last first: a second `autolrs bench` on the same --out with it "
        "shares the work with the first (each skips what the other finished)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def main(args: argparse.Namespace) -> int:
    """Run the suite ``args`` describes and write its report.

    Returns:
        0 when every run finished, 1 when some run failed (the report lists them), 2 for a
        bad task or method name, an unusable reference file or a task whose data is missing.
    """
    from tqdm.contrib.logging import logging_redirect_tqdm

    from autolrs.bench.report import write_report
    from autolrs.bench.runner import RunSettings
    from autolrs.bench.suite import Suite, default_settings
    from autolrs.bench.tasks import TaskDataError
    from autolrs.errors import ConfigError

    try:
        settings = default_settings(
            args.suite,
            tasks=args.tasks,
            methods=args.methods,
            seeds=args.seeds,
            family_seeds=None,
            out_dir=args.out,
            reference_dir=args.reference_dir,
            regrid=args.regrid,
            run=RunSettings(threads=args.threads),
            overheads=not args.no_overheads,
            progress=not args.no_progress,
            reverse=args.reverse,
        )
        with _log_file(settings.out_dir / LOG_FILE), logging_redirect_tqdm():
            result = Suite(settings).run()
            report = write_report(result, n_boot=args.bootstrap)
    except (ConfigError, TaskDataError) as error:
        print(f"autolrs bench: {error}", file=sys.stderr)
        return 2

    print(f"report: {report}")
    print(f"runs:   {settings.out_dir / 'runs.jsonl'}")
    if result.failures:
        print(f"{len(result.failures)} run(s) failed; see the report", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """Also write the library's log records to ``path`` while the suite runs.

    The file gets what the ``autolrs`` logger lets through at the command's verbosity.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("autolrs")
    library.addHandler(handler)
    try:
        yield
    finally:
        library.removeHandler(handler)
        handler.close()


def _names(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"must name at least one, got {text!r}")
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
