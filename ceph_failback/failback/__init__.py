"""The orchestrator: the :class:`Failback` class, its plan, journal, events and report."""

from __future__ import annotations

from .core import WAIVABLE, Failback, Site, StepResult, Timeouts
from .events import Event, EventKind, Listener
from .journal import Journal, Record
from .plan import STEP_TITLES, STEPS, Action, Blocker, ImagePlan, Plan, VMPlan
from .report import ImageOutcome, Report, VMOutcome

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
    "Journal",
    "Listener",
    "Plan",
    "Record",
    "Report",
    "Site",
    "StepResult",
    "Timeouts",
    "VMOutcome",
    "VMPlan",
]
