import argparse
import importlib.util
import logging
import subprocess
import sys
import types
from pathlib import Path

import pytest

from autolrs.cli import DEMO_STEPS, main


def fake_bench_module(calls: list[argparse.Namespace]) -> types.ModuleType:
    """A stand-in for autolrs.bench.cli with one option; its main logs and records its args."""
    module = types.ModuleType("autolrs.bench.cli")

    def configure_parser(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--task", required=True)

    def bench_main(args: argparse.Namespace) -> int:
        calls.append(args)
        logging.getLogger("autolrs.bench.cli").info("bench info line")
        logging.getLogger("autolrs.bench.cli").debug("bench debug line")
        return 7

    module.configure_parser = configure_parser  # type: ignore[attr-defined]
    module.main = bench_main  # type: ignore[attr-defined]
    return module


def test_help_lists_both_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0

    out = capsys.readouterr().out
    assert "usage: autolrs" in out
    assert "demo" in out
    assert "bench" in out


def test_demo_help_lists_every_option_and_the_default_budget(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--help"]) == 0

    out = capsys.readouterr().out
    for option in ("--steps", "--seed", "--out", "--threads", "--quiet"):
        assert option in out
    assert str(DEMO_STEPS) in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0

    assert capsys.readouterr().out.startswith("autolrs ")


def test_missing_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2

    assert "required" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--steps", "39"], "argument --steps: must be >= 40, got 39"),
        (["demo", "--steps", "many"], "argument --steps: must be an integer, got 'many'"),
        (["demo", "--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["demo", "--threads", "0"], "argument --threads: must be >= 1, got 0"),
        (["demo", "--colour"], "unrecognized arguments: --colour"),
        (["-v", "-q", "demo"], "not allowed with argument"),
        (["train"], "invalid choice: 'train'"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    assert message in capsys.readouterr().err


def test_demo_without_matplotlib_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *rest: None if name == "matplotlib" else real_find_spec(name, *rest),
    )

    assert main(["demo", "--out", str(tmp_path / "out")]) == 2

    err = capsys.readouterr().err
    assert "autolrs demo needs matplotlib" in err
    assert "pip install 'autolrs[torch,plot]'" in err
    assert not (tmp_path / "out").exists()


def test_bench_reports_when_the_benchmark_is_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A None entry in sys.modules makes the import fail as if the module did not exist.
    monkeypatch.setitem(sys.modules, "autolrs.bench.cli", None)

    assert main(["bench", "--task", "x", "extra"]) == 2

    err = capsys.readouterr().err
    assert "autolrs bench: 'autolrs bench' is not available in this installation" in err


def test_bench_runs_the_benchmark_cli_with_its_own_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[argparse.Namespace] = []
    monkeypatch.setitem(sys.modules, "autolrs.bench.cli", fake_bench_module(calls))

    assert main(["bench", "--task", "nqm"]) == 7

    assert [args.task for args in calls] == ["nqm"]
    assert "bench info line" in capsys.readouterr().err


def test_bench_options_are_checked_by_the_benchmark_parser(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[argparse.Namespace] = []
    monkeypatch.setitem(sys.modules, "autolrs.bench.cli", fake_bench_module(calls))

    assert main(["bench", "--task", "nqm", "--oops"]) == 2

    assert calls == []
    assert "unrecognized arguments: --oops" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "shows_info", "shows_debug"),
    [([], True, False), (["-v"], True, True), (["-q"], False, False)],
)
def test_log_level_follows_the_verbosity_flags(
    flags: list[str],
    shows_info: bool,
    shows_debug: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "autolrs.bench.cli", fake_bench_module([]))

    main([*flags, "bench", "--task", "nqm"])

    err = capsys.readouterr().err
    assert ("bench info line" in err) == shows_info
    assert ("bench debug line" in err) == shows_debug


def test_logging_set_up_is_undone_when_main_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "autolrs.bench.cli", fake_bench_module([]))
    root = logging.getLogger()
    library = logging.getLogger("autolrs")
    before = (list(root.handlers), root.level, library.level)

    main(["-v", "bench", "--task", "nqm"])

    assert (list(root.handlers), root.level, library.level) == before


def test_python_dash_m_autolrs_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "autolrs", "demo", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "usage: autolrs demo" in result.stdout


def test_importing_the_cli_imports_neither_torch_nor_matplotlib() -> None:
    code = "import sys, autolrs.cli; print(sorted({'torch', 'matplotlib'} & set(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
