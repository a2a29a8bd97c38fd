"""The ``autolrs`` command: ``demo``, ``bench``, ``report`` and ``serve``.

This is the one place in the package that configures logging: for as long as :func:`main` runs,
one handler on the root logger writes to stderr, the library's loggers at INFO (``-v``: DEBUG,
``-q``: warnings only) and those of other libraries at WARNING. The demo is imported only when it
runs, so ``autolrs --help`` needs neither PyTorch nor matplotlib.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from autolrs import __version__

__all__ = ["main", "build_parser"]

# The demo's defaults. 30000 optimizer steps, the search's included, give stages of 750 steps
# doubling to 3750, the last ones judged by validation loss, and a cooldown over the last half:
# well under a minute on one core. One thread, because a network this small only loses time to
# synchronisation with more (and badly so when other processes compete for the cores).
DEMO_STEPS = 30000
DEMO_SEED = 0
DEMO_OUT = Path("autolrs-demo")
DEMO_THREADS = 1

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LOG_DATE_FORMAT = "%H:%M:%S"

# What a subcommand runs: it gets the parsed arguments and returns the exit status.
Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``autolrs`` command, with every subcommand attached."""
    parser = argparse.ArgumentParser(
        prog="autolrs",
        description=(
            "AutoLRS: learning-rate schedules found by Bayesian optimization while the "
            "network trains (Jin et al., ICLR 2021)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"autolrs {__version__}")
    parser.set_defaults(accepts_unknown=False)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", dest="log_verbose", action="store_true", help="log DEBUG messages"
    )
    verbosity.add_argument(
        "-q", "--quiet", dest="log_quiet", action="store_true", help="log warnings only"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_demo_parser(subparsers)
    for name, module_name, help_text in _PLUGINS:
        _add_plugin_parser(subparsers, name, module_name, help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``autolrs`` command.

    Args:
        argv: The arguments after the program name; None reads ``sys.argv[1:]``.

    Returns:
        The exit status: 0 on success, 2 for a usage error or an unavailable subcommand, 1 when
        the subcommand failed.
    """
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
        if unknown and not args.accepts_unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    except SystemExit as exit_:
        # argparse exits after --help, --version and usage errors; keep its status.
        return exit_.code if isinstance(exit_.code, int) else 2

    handler: Handler = args.handler
    with _logging_to_stderr(_log_level(args)):
        return handler(args)


def _add_demo_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="train a small network on the digits data with AutoLRS and plot its schedule",
        description=(
            "Train a small MLP on scikit-learn's bundled digits data with AutoLRS, print the "
            "schedule it found, and write schedule.png, history.json and steps.csv."
        ),
    )
    parser.add_argument(
        "--steps",
        type=_int_at_least(40),
        default=DEMO_STEPS,
        help=f"optimizer steps to train, search included; >= 40 (default: {DEMO_STEPS})",
    )
    parser.add_argument(
        "--seed",
        type=_int_at_least(0),
        default=DEMO_SEED,
        help=f"seeds the network, the mini-batches and the search (default: {DEMO_SEED})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEMO_OUT,
        help=f"directory to write the results into (default: ./{DEMO_OUT})",
    )
    parser.add_argument(
        "--threads",
        type=_int_at_least(1),
        default=DEMO_THREADS,
        help=f"CPU threads for PyTorch (default: {DEMO_THREADS})",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar and warnings only; still print the schedule at the end",
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    # Checked before training rather than when the plot is drawn, a minute later.
    missing = [name for name in ("torch", "matplotlib") if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"autolrs demo needs {' and '.join(missing)}, which cannot be imported; "
            "install them with: pip install 'autolrs[torch,plot]'",
            file=sys.stderr,
        )
        return 2
    from autolrs import demo

    return demo.run(
        steps=args.steps, seed=args.seed, out=args.out, threads=args.threads, quiet=args.quiet
    )


#: Subcommands whose parser and handler live in another module, imported when the parser is
#: built: (name, module, help). A module that cannot be imported (its optional dependencies are
#: missing) leaves a stand-in that explains why.
_PLUGINS = (
    ("bench", "autolrs.bench.cli", "compare AutoLRS with baseline schedules on benchmark tasks"),
    ("report", "autolrs.reporting.cli", "write an HTML report of a run from its event log"),
    ("serve", "autolrs.service.cli", "run the AutoLRS controller as an HTTP service"),
)


def _add_plugin_parser(
    subparsers: argparse._SubParsersAction, name: str, module_name: str, help_text: str
) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        _add_unavailable_parser(subparsers, name, error)
        return
    parser = subparsers.add_parser(name, help=help_text)
    module.configure_parser(parser)
    parser.set_defaults(handler=module.main)


def _add_unavailable_parser(
    subparsers: argparse._SubParsersAction, name: str, error: ImportError
) -> None:
    """A stand-in subcommand that accepts anything and explains why it cannot run."""
    reason = f"'autolrs {name}' is not available in this installation ({error})"
    parser = subparsers.add_parser(name, help=f"{name} (not available)", description=reason)

    def unavailable(args: argparse.Namespace) -> int:
        print(f"autolrs {name}: {reason}", file=sys.stderr)
        return 2

    parser.set_defaults(handler=unavailable, accepts_unknown=True)


def _log_level(args: argparse.Namespace) -> int:
    if args.log_verbose:
        return logging.DEBUG
    if args.log_quiet or (args.command == "demo" and args.quiet):
        return logging.WARNING
    return logging.INFO


@contextlib.contextmanager
def _logging_to_stderr(level: int) -> Iterator[None]:
    """Send log records at ``level`` and above to stderr, and undo it on exit."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, _LOG_DATE_FORMAT))
    root = logging.getLogger()
    library = logging.getLogger("autolrs")
    previous_levels = root.level, library.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    library.setLevel(level)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_levels[0])
        library.setLevel(previous_levels[1])


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` that accepts integers >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse
