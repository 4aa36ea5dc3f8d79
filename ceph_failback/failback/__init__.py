"""The orchestrator: the :class:`Failback` class, its plan, status, journal, events, report, and
their renderings for Jupyter (:class:`NotebookProgress`)."""

from __future__ import annotations

from .core import WAIVABLE, Failback, Site, Timeouts
from .display import NotebookProgress
from .events import Event, EventKind, Listener
from .journal import Journal, Record
from .plan import STEP_TITLES, STEPS, Action, Blocker, ImagePlan, Plan, VMPlan
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
