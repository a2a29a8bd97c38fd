"""Seeing what a run did: a report built from its event log alone.

:func:`write_report` turns the JSON-lines log of ``AutoLRS(event_log=...)`` into PNG figures
and one self-contained HTML page; :func:`read_run` gives the same data for your own analysis.
The command line is ``autolrs report RUN.jsonl --out DIR``. Figures need matplotlib
(``pip install 'autolrs[plot]'``), imported only when drawing.
"""

from autolrs.reporting.report import ReportFiles, write_report
from autolrs.reporting.run import RunRecord, StagePosterior, Totals, read_run, stage_posterior

__all__ = [
    "ReportFiles",
    "RunRecord",
    "StagePosterior",
    "Totals",
    "read_run",
    "stage_posterior",
    "write_report",
]
