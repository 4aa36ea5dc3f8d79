"""The orchestrator: the :class:`Failback` class, its plan, status, journal, events, report, and
their progress displays (:class:`Progress` for terminals and logs, :class:`NotebookProgress` for
Jupyter)."""

from __future__ import annotations

from .core import WAIVABLE, Failback, Site, Timeouts
from .events import Event, EventKind, Listener
from .journal import Journal, Record
from .plan import STEP_TITLES, STEPS, Action, Blocker, ImagePlan, Plan, VMPlan
from .progress import NotebookProgress, Progress
from .report import ImageOutcome, Report, VMOutcome
from .status import ImageSide, ImageState, Status, VMState
from .steps.base import StepResult

__all__ = [
    "STEPS",
    "STEP_TITLES",
    "WAIVABLE",
    "Action",
    "Blocker",
    "Event",
    "EventKind",
    "Failback",
    "ImageOutcome",
    "ImagePlan",
    "ImageSide",
    "ImageState",
    "Journal",
    "Listener",
    "NotebookProgress",
    "Plan",
    "Progress",
    "Record",
    "Report",
    "Site",
    "Status",
    "StepResult",
    "Timeouts",
    "VMOutcome",
    "VMPlan",
    "VMState",
]
