"""The six documented steps, one module each.

Every module has a pure ``decide`` function (what was observed on both sites and what the
journal says -> :class:`~.base.Decision`: do, skip, refuse, wait, settle, with the reason), an
``effect`` that says what the state is once the decision took effect (the plan projects the later
steps on it), and ``run``, the step's execution: observe, decide, act, wait, record. The plan
(:mod:`..planner`) and the execution call the same ``decide``.
"""

from __future__ import annotations

from . import demote_a, demote_b, promote_a, resume_a, resync_a, terminate_b
from .base import Choice, Decision, Recorder, StepContext, StepResult  # noqa: F401

__all__ = ["demote_a", "resync_a", "terminate_b", "demote_b", "promote_a", "resume_a"]
