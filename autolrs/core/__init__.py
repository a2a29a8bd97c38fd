"""The framework-free core of AutoLRS: forecaster, GP search and the stage controller.

Nothing here imports torch; the core runs wherever NumPy, SciPy and scikit-learn do, which is
what lets the search run in a separate service process.
"""

from autolrs.core.commands import Command, Phase, Report, Restore, Snapshot, Train
from autolrs.core.controller import Controller
from autolrs.core.history import CandidateRecord, StageRecord, StageRestart

__all__ = [
    "CandidateRecord",
    "Command",
    "Controller",
    "Phase",
    "Report",
    "Restore",
    "Snapshot",
    "StageRecord",
    "StageRestart",
    "Train",
]
