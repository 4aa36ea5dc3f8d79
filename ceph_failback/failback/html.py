"""Where the Jupyter renderings were documented before they moved to rich: each object's
``_repr_html_`` now exports its one view (:mod:`ceph_failback.failback.render`). The functions
stay importable from here and give the same HTML."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .render import plan_view, report_view, status_view, step_result_view, to_html

if TYPE_CHECKING:
    from .plan import Plan
    from .report import Report
    from .status import Status
    from .steps.base import StepResult

__all__ = ["plan_html", "status_html", "report_html", "step_result_html"]


def plan_html(plan: Plan) -> str:
    """``plan._repr_html_()``."""
    return to_html(plan_view(plan))


def status_html(status: Status) -> str:
    """``status._repr_html_()``."""
    return to_html(status_view(status))


def report_html(report: Report) -> str:
    """``report._repr_html_()``."""
    return to_html(report_view(report))


def step_result_html(result: StepResult) -> str:
    """``result._repr_html_()``."""
    return to_html(step_result_view(result))
