"""Failback progress in Jupyter, without flooding the cell's output.

:class:`NotebookProgress` is a failback listener. In a Jupyter kernel it shows one progress table
per cell (each step, its counts and time, each image and VM with its last news and copy progress)
and updates that one output in place as events arrive. Outside a kernel (a script, a terminal
IPython) it prints one line per step start and end, and one per failure.

IPython is imported only when a kernel is found: this module imports without it::

    from ceph_failback.failback import Failback, NotebookProgress

    fb = Failback(site_a, site_b, "one", listeners=[NotebookProgress()])
    fb.resync_site_a()      # the cell shows a table that updates until the step is done
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TextIO

from .events import Event, EventKind
from .html import _ROOT, badge, bar, esc, heading, small, table
from .plan import STEP_TITLES, STEPS

__all__ = ["NotebookProgress"]


@dataclass
class _Step:
    calls: int = 0
    finished: int = 0
    started: float = 0.0
    ended: float | None = None
    outcomes: dict[str, str] = field(default_factory=dict)  # target -> done/skipped/failed


@dataclass
class _Target:
    step: str | None
    outcome: str
    message: str
    percent: float | None = None


class _Snapshot:
    """What is handed to IPython's ``display``: HTML for notebooks, text for the rest."""

    def __init__(self, html: str, text: str) -> None:
        self._html = html
        self._text = text

    def _repr_html_(self) -> str:
        return self._html

    def __repr__(self) -> str:
        return self._text


def _kernel() -> Any:
    """The running IPython kernel's shell, or ``None`` (no IPython, or not in a kernel)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return shell if shell is not None and hasattr(shell, "kernel") else None


class NotebookProgress:
    """A failback listener that keeps one progress table per notebook cell, updated in place.

    Args:
        min_interval: seconds between two redraws caused by progress news (copy percentages,
            VM states); step starts and ends, outcomes and failures always redraw.
        stream: where to print outside a kernel (default ``sys.stdout``).
        display: for other front ends and tests: a function ``display(obj, display_id=True)``
            returning a handle with ``update(obj)``, as ``IPython.display.display``. Given, it
            is used even outside a kernel.
        cell: for other front ends and tests: returns the current cell's identity; a new table
            starts when it changes (default: the kernel's execution count).
    """

    def __init__(self, *, min_interval: float = 0.5, stream: TextIO | None = None,
                 display: Callable[..., Any] | None = None,
                 cell: Callable[[], object] | None = None) -> None:
        self.min_interval = min_interval
        self._stream = stream
        self._display = display
        self._cell = cell
        self._lock = threading.Lock()
        self._view: object = None
        self._handle: Any = None
        self._steps: dict[str, _Step] = {}
        self._targets: dict[str, _Target] = {}
        self._warnings: list[str] = []
        self._started = time.monotonic()
        self._drawn = 0.0
        self.redraws = 0

    # -- the listener ----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            front = self._front_end()
            if event.kind is EventKind.STEP_STARTED:
                view = self._current_cell()
                if view != self._view:
                    self._reset(view)  # a new cell: a new table
            force = self._record(event)
            if front is None:
                self._print(event)
                return
            now = time.monotonic()
            if force or now - self._drawn >= self.min_interval:
                self._draw(front)

    def refresh(self) -> None:
        """Redraw now (in a kernel)."""
        with self._lock:
            front = self._front_end()
            if front is not None and self._steps:
                self._draw(front)

    # -- state -----------------------------------------------------------------------------------

    def _reset(self, view: object) -> None:
        self._view = view
        self._handle = None
        self._steps = {}
        self._targets = {}
        self._warnings = []
        self._started = time.monotonic()

    def _record(self, event: Event) -> bool:
        step = event.step
        now = time.monotonic()
        if event.kind is EventKind.STEP_STARTED and step is not None:
            s = self._steps.setdefault(step, _Step(started=now))
            s.calls += 1
            s.ended = None
            return True
        if event.kind is EventKind.STEP_FINISHED and step is not None:
            s = self._steps.setdefault(step, _Step(started=now))
            s.finished += 1
            if s.finished >= s.calls:
                s.ended = now
            finals = {t: o for o in ("done", "skipped") for t in event.data.get(o, ())}
            finals.update({t: "failed" for t in event.data.get("failed", {}) or {}})
            for target, outcome in finals.items():
                s.outcomes[target] = outcome
                known = self._targets.get(target)
                if known is not None and known.step == step and known.outcome == "waiting":
                    self._targets[target] = _Target(step, outcome, known.message)
            return True
        target = event.target
        outcome = str(event.data.get("outcome", ""))
        if target is None:
            if event.kind is EventKind.WARNING:
                self._warnings = [*self._warnings[-4:], event.message]
                return True
            return False
        message = event.message
        for prefix in (f"{target}: ", f"{target.partition(':')[2]}: "):
            if message.startswith(prefix):
                message = message[len(prefix):]
                break
        previous = self._targets.get(target)
        percent = event.data.get("percent")
        if event.kind is EventKind.ACTION:
            self._targets[target] = _Target(step, outcome or "done", message)
            if step is not None:
                self._steps.setdefault(step, _Step(started=now)).outcomes[target] = (
                    outcome or "done")
            return True
        if event.kind is EventKind.WARNING:
            self._targets[target] = _Target(step, "failed" if outcome == "failed" else "warning",
                                            message)
            if step is not None and outcome == "failed":
                self._steps.setdefault(step, _Step(started=now)).outcomes[target] = "failed"
            return True
        # IMAGE_PROGRESS, VM_STATE: news about a target still being worked on.
        self._targets[target] = _Target(
            step, "waiting", message,
            float(percent) if isinstance(percent, int | float) else (
                previous.percent if previous is not None else None))
        return False

    # -- output ----------------------------------------------------------------------------------

    def _front_end(self) -> Callable[..., Any] | None:
        if self._display is not None:
            return self._display
        if _kernel() is None:
            return None
        from IPython.display import display

        return display

    def _current_cell(self) -> object:
        if self._cell is not None:
            return self._cell()
        shell = _kernel()
        return getattr(shell, "execution_count", None) if shell is not None else None

    def _draw(self, display: Callable[..., Any]) -> None:
        snapshot = _Snapshot(self.html(), self.text())
        if self._handle is None:
            self._handle = display(snapshot, display_id=True)
        else:
            self._handle.update(snapshot)
        self._drawn = time.monotonic()
        self.redraws += 1

    def _print(self, event: Event) -> None:
        out = self._stream or sys.stdout
        if event.kind is EventKind.STEP_STARTED:
            print(f"[{event.step}] {event.message}", file=out, flush=True)
        elif event.kind is EventKind.STEP_FINISHED:
            print(f"[{event.step}] {event.message}", file=out, flush=True)
        elif event.kind is EventKind.WARNING:
            print(f"[{event.step or '-'}] ! {event.message}", file=out, flush=True)

    # -- renderings ------------------------------------------------------------------------------

    def _ordered_steps(self) -> list[tuple[str, _Step]]:
        order = {s: n for n, s in enumerate(STEPS)}
        return sorted(self._steps.items(), key=lambda kv: order.get(kv[0], len(order)))

    def html(self) -> str:
        """The progress table as HTML."""
        now = time.monotonic()
        running = [s for s, st in self._steps.items() if st.ended is None]
        failed = any(o == "failed" for st in self._steps.values() for o in st.outcomes.values())
        state = (badge(f"running: {', '.join(running)}", "busy") if running else
                 badge("failed", "bad") if failed else
                 badge("finished", "ok") if self._steps else badge("idle", "muted"))
        ends = [st.ended for st in self._steps.values() if st.ended is not None]
        end = max(ends) if ends and not running else now
        out = [_ROOT, heading("Failback progress", state, small(f"{end - self._started:.1f}s"))]
        rows = []
        for step, st in self._ordered_steps():
            counts = {o: sum(1 for v in st.outcomes.values() if v == o)
                      for o in ("done", "skipped", "failed")}
            seconds = (st.ended or now) - st.started
            status = (badge("running", "busy") if st.ended is None else
                      badge("failed", "bad") if counts["failed"] else badge("finished", "ok"))
            rows.append([esc(STEPS.index(step) + 1 if step in STEPS else "?"), esc(step),
                         esc(STEP_TITLES.get(step, "")), status,
                         badge(f"{counts['done']} done", "ok") if counts["done"] else small("0 done"),
                         small(f"{counts['skipped']} skipped"),
                         badge(f"{counts['failed']} failed", "bad") if counts["failed"]
                         else small("0 failed"), small(f"{seconds:.1f}s")])
        out.append(table(["", "STEP", "WHAT", "STATE", "DONE", "SKIPPED", "FAILED", "TIME"], rows,
                         empty="no step started yet"))
        tones = {"done": "ok", "skipped": "muted", "failed": "bad", "warning": "busy",
                 "waiting": "info"}
        rows = []
        for target, t in sorted(self._targets.items()):
            progress = bar(t.percent, 100, f"{t.percent:g}%", tone="busy") if (
                t.percent is not None and t.outcome == "waiting") else ""
            rows.append([esc(target), esc(t.step or ""), badge(t.outcome, tones.get(t.outcome,
                                                                                 "muted")),
                         esc(t.message) + progress])
        if rows:
            out.append('<div style="max-height:320px;overflow:auto">')
            out.append(table(["TARGET", "STEP", "LAST", "NEWS"], rows))
            out.append("</div>")
        for w in self._warnings:
            out.append(f"<div>{badge('warning', 'busy')} {esc(w)}</div>")
        out.append("</div>")
        return "".join(out)

    def text(self) -> str:
        """The progress as plain text (one line per step)."""
        now = time.monotonic()
        lines = []
        for step, st in self._ordered_steps():
            counts = {o: sum(1 for v in st.outcomes.values() if v == o)
                      for o in ("done", "skipped", "failed")}
            lines.append(f"{step:<12} {'running' if st.ended is None else 'finished':<8} "
                         f"{counts['done']} done, {counts['skipped']} skipped, "
                         f"{counts['failed']} failed, {(st.ended or now) - st.started:.1f}s")
        return "\n".join(lines) or "no step started yet"

    def _repr_html_(self) -> str:
        with self._lock:
            return self.html()

    def __repr__(self) -> str:
        return f"NotebookProgress({len(self._steps)} step(s), {len(self._targets)} target(s))"
