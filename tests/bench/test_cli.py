import argparse
import json
import subprocess
import sys

import pytest

from autolrs.bench.cli import configure_parser, main
from autolrs.cli import main as autolrs_main


def parse(*argv):
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_options_parse_into_the_settings_they_name():
    args = parse(
        "--suite", "standard", "--tasks", "nqm, fmnist-mlp", "--methods", "cosine,autolrs",
        "--seeds", "5", "--threads", "1", "--regrid", "--out", "/tmp/x",
    )  # fmt: skip
    assert args.suite == "standard"
    assert args.tasks == ("nqm", "fmnist-mlp")
    assert args.methods == ("cosine", "autolrs")
    assert (args.seeds, args.threads, args.regrid, str(args.out)) == (5, 1, True, "/tmp/x")


def test_defaults_are_the_smoke_suite_with_two_threads():
    args = parse()
    assert (args.suite, args.tasks, args.methods, args.seeds, args.threads) == (
        "smoke",
        None,
        None,
        None,
        2,
    )


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--threads", "x"], ["--tasks", ","]])
def test_bad_option_values_are_usage_errors(argv):
    with pytest.raises(SystemExit):
        parse(*argv)


def test_an_unknown_method_names_the_valid_ones(tmp_path, capsys):
    status = main(parse("--methods", "sgdr", "--out", str(tmp_path), "--no-progress"))
    assert status == 2
    assert "methods must be a non-empty subset" in capsys.readouterr().err


def test_an_unknown_task_names_the_valid_ones(tmp_path, capsys):
    status = main(parse("--tasks", "imagenet", "--out", str(tmp_path), "--no-progress"))
    assert status == 2
    assert "task name must be one of" in capsys.readouterr().err


def test_bench_is_reachable_from_the_autolrs_command(capsys):
    assert autolrs_main(["bench", "--help"]) == 0
    assert "--regrid" in capsys.readouterr().out


def test_importing_the_cli_imports_no_torch():
    code = "import sys, autolrs.bench.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_the_smoke_suite_runs_end_to_end_and_resumes(tmp_path, capsys):
    from autolrs.bench.tasks import TASK_NAMES, TaskDataError, get_task

    for name in TASK_NAMES:
        try:
            get_task(name, "smoke").build(0)
        except TaskDataError as error:
            pytest.skip(f"smoke task data missing: {error}")

    out = tmp_path / "smoke"
    # One thread: on a shared machine two torch threads can be many times slower.
    status = main(parse("--suite", "smoke", "--out", str(out), "--threads", "1", "--no-progress"))
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())

    assert set(summary["tasks"]) == set(TASK_NAMES)
    for name in TASK_NAMES:
        assert f"## {name} (v" in report
        assert (out / "plots" / f"{name}-loss.png").exists()
    # Every failure is a method that cannot be configured for a task, never a crashed run.
    assert all("cannot be configured" in failure for failure in summary["failures"])
    assert status == (1 if summary["failures"] else 0)
    assert (out / "reference").is_dir()
    finished = (out / "runs.jsonl").read_text().count("\n")

    capsys.readouterr()
    main(parse("--suite", "smoke", "--out", str(out), "--threads", "1", "--no-progress"))
    assert (out / "runs.jsonl").read_text().count("\n") == finished
