"""Live progress of a failback, one model shown three ways.

A :class:`Board` follows a failback's events: per step, its calls and times, and per image or VM
the step worked on, its outcome, its last news and its copy progress. It renders (with rich) as
one display per step, a row per image or VM, so the VMs that ``run()`` moves through steps 3-6
side by side never interleave. The listeners show it:

- :class:`Progress` (``ceph-failback run``, the rehearsal, scripts): on a terminal, a live display
  redrawn in place, left on screen when the run ends; elsewhere (a pipe, a file, a CI log) plain
  lines, a step's title once, then one line per outcome, warning and tenth of a copy.
- :class:`NotebookProgress` (Jupyter): the same display as HTML in the cell's output, updated in
  place; outside a kernel it prints the plain lines.

Both are thread-safe (events come from the failback's worker threads)::

    fb = Failback(site_a, site_b, "one", listeners=[Progress(sys.stdout).start()])
"""

from __future__ import annotations

import atexit
import contextlib
import io
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO, cast

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from .events import Event, EventKind
from .ledger import STEP_TITLES, STEPS
from .render import TONES, cell, outcome_tone, table, to_html, to_text

__all__ = ["Board", "Progress", "NotebookProgress"]

_FINAL = ("done", "skipped", "failed")

#: What :meth:`Board.record` returns: how soon a display should show the change.
NEWS, OUTCOME, STRUCTURE = 0, 1, 2

#: Seconds between two notebook redraws for outcomes (a thousand images done in a burst redraw
#: a few times, not a thousand).
OUTCOME_INTERVAL = 0.2


@dataclass
class _Row:
    outcome: str  # waiting, done, skipped, failed, warning
    message: str
    percent: float | None = None


@dataclass
class _Step:
    started: float
    calls: int = 0
    finished: int = 0
    ended: float | None = None
    rows: dict[str, _Row] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.rows.values() if r.outcome == outcome)


class Board:
    """A failback's progress as its events tell it.

    Args:
        max_rows: rows shown per step (the others are counted): unfinished and failed targets
            first.
    """

    def __init__(self, *, max_rows: int = 15) -> None:
        self.max_rows = max_rows
        self.steps: dict[str, _Step] = {}
        self.warnings: list[str] = []
        self.started = time.monotonic()

    def record(self, event: Event) -> int:
        """Take one event in; how soon a display should show it: :data:`STRUCTURE` (a step
        started or ended, a failure or warning), :data:`OUTCOME` (a target done or skipped) or
        :data:`NEWS` (progress of a wait)."""
        now = time.monotonic()
        step = event.step
        if step is None:
            if event.kind is EventKind.WARNING:
                self.warnings = [*self.warnings[-4:], event.message]
                return STRUCTURE
            return NEWS
        s = self.steps.get(step)
        if s is None:
            s = self.steps[step] = _Step(started=now)
        if event.kind is EventKind.STEP_STARTED:
            s.calls += 1
            s.ended = None
            return STRUCTURE
        if event.kind is EventKind.STEP_FINISHED:
            s.finished += 1
            if s.finished >= s.calls:
                s.ended = now
            finals = {t: o for o in ("done", "skipped") for t in event.data.get(o, ())}
            finals.update({t: "failed" for t in event.data.get("failed", {}) or {}})
            for target, outcome in finals.items():
                row = s.rows.get(target)
                reason = (event.data.get("failed") or {}).get(target) if outcome == "failed" \
                    else None
                s.rows[target] = _Row(outcome, str(reason) if reason else
                                      (row.message if row is not None else ""))
            return STRUCTURE
        target = event.target
        if target is None:
            if event.kind is EventKind.WARNING:
                self.warnings = [*self.warnings[-4:], f"{step}: {event.message}"]
                return STRUCTURE
            return NEWS
        message = _without_target(event.message, target)
        outcome = str(event.data.get("outcome", ""))
        if event.kind is EventKind.ACTION:
            s.rows[target] = _Row(outcome or "done", message)
            return STRUCTURE if outcome == "failed" else OUTCOME
        if event.kind is EventKind.WARNING:
            s.rows[target] = _Row("failed" if outcome == "failed" else "warning", message)
            return STRUCTURE
        # IMAGE_PROGRESS, VM_STATE: news about a target still being worked on.
        previous = s.rows.get(target)
        if previous is not None and previous.outcome in _FINAL:
            return NEWS
        percent = event.data.get("percent")
        s.rows[target] = _Row("waiting", message, float(percent) if isinstance(
            percent, int | float) else (previous.percent if previous is not None else None))
        return NEWS

    # -- rendering -------------------------------------------------------------------------------

    def ordered(self) -> list[tuple[str, _Step]]:
        """The steps seen, in the documented order."""
        order = {s: n for n, s in enumerate(STEPS)}
        return sorted(self.steps.items(), key=lambda kv: order.get(kv[0], len(order)))

    def view(self, height: int | None = None) -> RenderableType:
        """One display per step: a title line (state, counts, time) and a row per image or VM
        (at most ``max_rows``; unfinished and failed ones first).

        ``height``: the lines a live display may take (a terminal's height). Then finished steps
        shrink to their title line (and their failures) and the running steps share the rest,
        so that the step running now is never the one cut off the bottom.
        """
        now = time.monotonic()
        steps = self.ordered()
        running = [step for step, s in steps if s.ended is None]
        budget = None
        if height is not None:
            spare = height - 1 - len(steps) - len(self.warnings)
            budget = max(1, spare // max(1, len(running)) - 3)  # a table's header, rule, "more"
        parts: list[RenderableType] = []
        for step, s in steps:
            counts = {o: s.count(o) for o in _FINAL}
            parts.append(self._title(step, s, counts, now))
            rows = sorted(s.rows.items(), key=lambda kv: (
                kv[1].outcome not in ("waiting", "failed", "warning"), kv[0]))
            limit = self.max_rows
            if budget is not None:
                if s.ended is not None:
                    rows = [(t, r) for t, r in rows if r.outcome == "failed"]
                    limit = min(limit, 2)
                else:
                    limit = min(limit, budget)
            shown = rows[:limit]
            if shown:
                parts.append(table("TARGET", "", "NEWS", rows=[
                    [cell(target), cell(r.outcome, outcome_tone(r.outcome)), _news(r)]
                    for target, r in shown], short=("",)))
            if len(rows) > len(shown):
                parts.append(cell(f"  ... and {len(rows) - len(shown)} more", "muted"))
        for w in self.warnings:
            parts.append(Text.assemble(("! ", TONES["busy"]), (w, TONES["busy"])))
        return Group(*parts) if parts else cell("no step started yet", "muted")

    @staticmethod
    def _title(step: str, s: _Step, counts: dict[str, int], now: float) -> Text:
        running = s.ended is None
        return Text.assemble(
            (f"{step_label(step)} {step}", "bold"), "  ",
            cell("running" if running else "finished",
                 "busy" if running else "bad" if counts["failed"] else "ok"), "  ",
            cell(f"{counts['done']} done", "ok" if counts["done"] else "muted"), ", ",
            cell(f"{counts['skipped']} skipped", "muted"), ", ",
            cell(f"{counts['failed']} failed", "bad" if counts["failed"] else "muted"), "  ",
            cell(f"{(s.ended or now) - s.started:.0f}s", "muted"), "  ",
            cell(STEP_TITLES.get(step, ""), "muted"), no_wrap=True, overflow="ellipsis")

    def text(self) -> str:
        """The display as plain text."""
        return to_text(self.view())


def step_label(step: str) -> str:
    """``[3/6]`` for a documented step, ``[+]`` for another (``reprotect``)."""
    return f"[{STEPS.index(step) + 1}/{len(STEPS)}]" if step in STEPS else "[+]"


def _without_target(message: str, target: str) -> str:
    for prefix in (f"{target}: ", f"{target.partition(':')[2]}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


def _news(row: _Row) -> Text:
    """The last news, with a bar while a copy is under way."""
    out = Text(row.message)
    if row.percent is not None and row.outcome == "waiting":
        filled = int(max(0.0, min(100.0, row.percent)) / 100 * 20)
        out.append(f"  {'#' * filled}{'.' * (20 - filled)}", style=TONES["busy"])
        if f"{row.percent:g}%" not in row.message:
            out.append(f" {row.percent:g}%", style=TONES["busy"])
    return out


class _Lines:
    """Plain lines for streams that are not terminals: a step's title once, each outcome,
    warning and change of a VM's state, and a copy's progress every tenth; each line tagged with
    its step, so that the VMs a pipelined run moves side by side stay readable in a log."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._titled: set[str] = set()
        self._decile: dict[str, int] = {}
        self._said: dict[str, str] = {}

    def __call__(self, event: Event) -> None:
        step = event.step or ""
        if event.kind is EventKind.STEP_STARTED:
            if step in self._titled:
                return
            self._titled.add(step)
            self._write(f"{step_label(step)} {STEP_TITLES.get(step, event.message)}")
        elif event.kind is EventKind.STEP_FINISHED:
            self._write(f"  {step:<11} {event.message}")
        elif event.kind is EventKind.IMAGE_PROGRESS:
            pct = event.data.get("percent")
            decile = int(pct // 10) if isinstance(pct, int | float) else -1
            key = f"{step} {event.target}"
            if self._decile.get(key) != decile:
                self._decile[key] = decile
                self._write(f"  {step:<11} {event.message}")
        elif event.kind is EventKind.VM_STATE:
            key = f"{step} {event.target}"
            if self._said.get(key) != event.message:  # a long wait says where it stands
                self._said[key] = event.message
                self._write(f"  {step:<11} {event.message}")
        elif event.kind is EventKind.WARNING:
            self._write(f"  {step or '-':<11} ! {event.message}")
        elif event.kind is EventKind.ACTION:
            self._write(f"  {step:<11} {event.message}")

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()


def _dumb_terminal() -> bool:
    return os.environ.get("TERM", "").lower() in ("dumb", "unknown")


class Progress:
    """A failback listener that shows progress in a terminal, or as plain lines elsewhere.

    On a terminal: the :class:`Board` drawn live in place (rich), redrawn every ``tick`` seconds
    from its own thread (never from the failback's), and left on screen, whole, by
    :meth:`close`. While it runs, ``print()`` to the same ``sys.stdout`` goes above it, and
    :meth:`logs_above` does the same for log handlers. Elsewhere (a pipe, a file, a CI log,
    ``TERM=dumb``): plain lines, no control characters. ``NO_COLOR`` is honoured. Use it as a
    context manager (or call :meth:`start` and :meth:`close`)::

        progress = Progress(sys.stdout)
        fb = Failback(site_a, site_b, "one", listeners=[progress])
        with progress:
            report = fb.run()

    Args:
        stream: where to print.
        tty: whether ``stream`` is a terminal (default: ask it).
        width: the terminal's width (default: ask the terminal).
        tick: seconds between two redraws on a terminal.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None, width: int | None = None,
                 tick: float = 0.25) -> None:
        self.stream = stream
        self.tty = (stream.isatty() if tty is None else tty) and not _dumb_terminal()
        self.width = width
        self.tick = tick
        self.board = Board()
        self._lock = threading.RLock()
        self._lines = None if self.tty else _Lines(stream)
        self._live: Live | None = None
        self._final = False
        self._closed = False

    def start(self) -> Progress:
        """On a terminal, start the live display (a no-op elsewhere). The first event starts it
        too; :meth:`close` (or leaving a ``with`` block) ends it, else the interpreter's exit."""
        with self._lock:
            if self.tty and self._live is None:
                self._closed = self._final = False
                console = Console(file=self.stream, width=self.width, force_terminal=True,
                                  force_jupyter=False,
                                  highlight=False, emoji=False)
                self._live = Live(get_renderable=self._view, console=console,
                                  refresh_per_second=max(0.1, 1 / self.tick),
                                  redirect_stdout=self.stream is sys.stdout,
                                  redirect_stderr=False)
                self._live.start()
                _ALIVE.add(self)  # closed at exit at the latest: a cursor is never left hidden
        return self

    def close(self) -> None:
        """Stop redrawing; the whole display (every step, its rows) stays on screen."""
        with self._lock:
            live, self._live = self._live, None
            self._closed = self._final = True
        _ALIVE.discard(self)
        if live is not None:
            live.stop()  # its last redraw calls _view: the whole board
        with self._lock:
            self._final = False

    def abandon(self) -> None:
        """For a process about to exit at once (a signal handler): show the terminal's cursor
        again and leave the display as it is. Takes no lock."""
        if self._live is None:
            return
        with contextlib.suppress(Exception):
            os.write(self.stream.fileno(), b"\x1b[?25h\n")
            return
        with contextlib.suppress(Exception):
            self.stream.write("\x1b[?25h\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, event: Event) -> None:
        if self.tty and self._live is None and not self._closed:
            self.start()  # given as a listener without start(): draw anyway
        with self._lock:
            self.board.record(event)  # drawn by the display's own thread, at its next tick
            if self._lines is not None:
                self._lines(event)

    def _view(self) -> RenderableType:
        with self._lock:
            live = self._live
            if self._final or live is None:
                return self.board.view()
            return self.board.view(height=live.console.height)

    def above(self, stream: TextIO) -> TextIO:
        """A text stream whose lines are printed above the live display while it runs (log
        lines on the same terminal would otherwise be drawn over), and to ``stream`` when it
        does not."""
        return cast(TextIO, _Above(self, stream))

    @contextlib.contextmanager
    def logs_above(self, *loggers: str) -> Iterator[None]:
        """While the block runs, the stream handlers of ``loggers`` (default: the root logger's
        and ``ceph_failback``'s) that write to a terminal print above the live display."""
        swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        if self.tty:
            for name in loggers or ("", "ceph_failback"):
                for handler in logging.getLogger(name or None).handlers:
                    stream = getattr(handler, "stream", None)
                    if isinstance(handler, logging.StreamHandler) and not isinstance(
                            stream, _Above) and getattr(stream, "isatty", lambda: False)():
                        swapped.append((handler, handler.setStream(self.above(cast(TextIO, stream)))))
        try:
            yield
        finally:
            for handler, old in swapped:
                handler.setStream(old)


#: Progress displays running now, stopped at the interpreter's exit at the latest.
_ALIVE: weakref.WeakSet[Progress] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for progress in list(_ALIVE):
        progress.close()


class _Above(io.TextIOBase):
    def __init__(self, progress: Progress, stream: TextIO) -> None:
        super().__init__()
        self._progress = progress
        self._stream = stream
        self._partial = ""

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        with self._progress._lock:
            live = self._progress._live
        # Printed outside the lock: the display's redraw takes it (through _view).
        if live is not None:
            live.console.print(Text(line), soft_wrap=True)
        else:
            self._stream.write(line + "\n")

    def flush(self) -> None:
        if self._partial:
            partial, self._partial = self._partial, ""
            self._line(partial)
        self._stream.flush()


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
    """A failback listener that keeps one progress display per notebook cell, updated in place.

    The display is :class:`Board`'s, exported as HTML. Outside a kernel (a script, a terminal
    IPython) it prints :class:`Progress`'s plain lines. IPython is imported only when a kernel
    is found: this module imports without it::

        fb = Failback(site_a, site_b, "one", listeners=[NotebookProgress()])
        fb.resync_site_a()      # the cell shows a display that updates until the step is done

    Args:
        min_interval: seconds between two redraws caused by progress news (copy percentages,
            VM states); outcomes redraw at most every :data:`OUTCOME_INTERVAL` seconds; step
            starts and ends and failures always redraw.
        stream: where to print outside a kernel (default ``sys.stdout``).
        display: for other front ends and tests: a function ``display(obj, display_id=True)``
            returning a handle with ``update(obj)``, as ``IPython.display.display``. Given, it
            is used even outside a kernel.
        cell: for other front ends and tests: returns the current cell's identity; a new display
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
        self._lines: _Lines | None = None
        self.board = Board()
        self._drawn = 0.0
        self.redraws = 0

    def __call__(self, event: Event) -> None:
        with self._lock:
            front = self._front_end()
            if event.kind is EventKind.STEP_STARTED:
                view = self._current_cell()
                if view != self._view:  # a new cell: a new display
                    self._view, self._handle, self.board = view, None, Board()
            urgency = self.board.record(event)
            if front is None:
                if self._lines is None:
                    self._lines = _Lines(self._stream or sys.stdout)
                self._lines(event)
                return
            since = time.monotonic() - self._drawn
            if urgency == STRUCTURE or since >= (OUTCOME_INTERVAL if urgency == OUTCOME
                                                 else self.min_interval):
                self._draw(front)

    def refresh(self) -> None:
        """Redraw now (in a kernel)."""
        with self._lock:
            front = self._front_end()
            if front is not None and self.board.steps:
                self._draw(front)

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
        view = self.board.view()
        snapshot = _Snapshot(to_html(view), to_text(view))
        if self._handle is None:
            self._handle = display(snapshot, display_id=True)
        else:
            self._handle.update(snapshot)
        self._drawn = time.monotonic()
        self.redraws += 1

    def text(self) -> str:
        """The display as plain text."""
        with self._lock:
            return self.board.text()

    def _repr_html_(self) -> str:
        with self._lock:
            return to_html(self.board.view())

    def __repr__(self) -> str:
        return f"NotebookProgress({len(self.board.steps)} step(s))"
