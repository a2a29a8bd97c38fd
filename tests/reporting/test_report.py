"""The report files, the HTML page's self-containment, and the ``autolrs report`` command."""

from __future__ import annotations

import argparse
import base64
import re
import shutil
import sys

import pytest

from autolrs.errors import AutoLRSError
from autolrs.reporting import cli, read_run, write_report

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(recorded_run, tmp_path_factory):
    return write_report(recorded_run.log, tmp_path_factory.mktemp("report"))


@pytest.fixture
def short_log(recorded_run, tmp_path):
    """The run's log up to the end of its first stage: a quick report to write."""
    lines = recorded_run.log.read_text().splitlines(keepends=True)
    end = next(i for i, line in enumerate(lines) if '"stage_end"' in line)
    log = tmp_path / "short.jsonl"
    log.write_text("".join(lines[: end + 1]))
    return log


def test_the_report_writes_the_page_and_every_figure(report, recorded_run):
    run = read_run(recorded_run.log)
    assert len(report.stages) == len(run.stages) >= 4
    for path in (report.timeline, report.schedule, *report.stages):
        assert path.read_bytes().startswith(PNG_SIGNATURE), path
    assert [p.name for p in report.stages] == [f"stage-{s.index:02d}.png" for s in run.stages]
    assert report.html.name == "report.html"


def test_the_page_embeds_every_figure_and_fetches_nothing(report):
    page = report.html.read_text(encoding="utf-8")
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    figures = [report.schedule, report.timeline, *report.stages]
    assert sorted(base64.b64decode(data) for data in embedded) == sorted(
        path.read_bytes() for path in figures
    )
    # Nothing outside the file: no URL, script, stylesheet link or CSS import.
    assert not re.search(r"https?://|<script|<link|@import|url\(", page, re.IGNORECASE)
    assert re.findall(r'src="([^"]{0,11})', page) == ["data:image/"] * len(figures)


def test_the_summary_table_has_a_row_per_stage_with_its_numbers(report, recorded_run):
    page = report.html.read_text(encoding="utf-8")
    table = page[page.index("<table>") : page.index("</table>")]
    rows = re.findall(r"<tr><td>(\d+)</td>", table)
    history = recorded_run.scheduler.history
    assert rows == [str(s.index) for s in history]
    restarted = history[1]
    assert f"{restarted.chosen_lr:.4g}" in table
    assert f"{restarted.chosen_forecast:.4g}" in table
    assert "failed)" in table  # stage 1 had a failed candidate
    assert "stopped" not in page


def test_the_page_states_the_totals_and_the_unfinished_stage(report, recorded_run):
    page = report.html.read_text(encoding="utf-8")
    controller = recorded_run.scheduler.controller
    assert f"{controller.update_steps:,}</div>" in page
    assert f"{controller.search_steps:,}</div>" in page
    assert f"{controller.evaluations:,}</div>" in page
    last = recorded_run.scheduler.history[-1]
    assert f"The log ends while stage {last.index} was" in page


def test_text_from_the_log_is_escaped(short_log, tmp_path):
    log = tmp_path / "<b>run&.jsonl"
    shutil.copy(short_log, log)
    page = write_report(log, tmp_path / "out").html.read_text(encoding="utf-8")
    assert "<b>run" not in page
    assert "&lt;b&gt;run&amp;.jsonl" in page


def test_the_command_writes_beside_the_log_by_default(short_log, tmp_path, capsys):
    log = tmp_path / "mine.jsonl"
    shutil.copy(short_log, log)
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.main(parser.parse_args([str(log)])) == 0
    assert (tmp_path / "mine-report" / "report.html").is_file()
    assert "mine-report/report.html" in capsys.readouterr().out

    args = parser.parse_args([str(log), "--out", str(tmp_path / "elsewhere")])
    assert args.out == tmp_path / "elsewhere"


def test_the_command_fails_with_a_message_on_a_log_it_cannot_read(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.main(parser.parse_args([str(tmp_path / "missing.jsonl")])) == 1
    assert "does not exist" in capsys.readouterr().err


def test_without_matplotlib_the_error_names_the_extra(recorded_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(AutoLRSError, match=r"pip install 'autolrs\[plot\]'"):
        write_report(recorded_run.log, tmp_path)
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    assert cli.main(parser.parse_args([str(recorded_run.log)])) == 2
    assert "pip install 'autolrs[plot]'" in capsys.readouterr().err
