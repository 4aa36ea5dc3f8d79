"""What ``ceph-failback`` prints: the plan and status tables, and the live progress listener
(:class:`Progress`, also usable from a script). Importable from :mod:`ceph_failback.cli`."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .failback.events import Event, EventKind
from .failback.plan import STEP_TITLES, STEPS, Plan

__all__ = ["Progress", "render_plan", "render_status"]

# -- output ---------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) for i, c in enumerate(cells[:-1])] + [cells[-1]]
        return (indent + "  ".join(padded)).rstrip()

    return [line(headers), *(line(r) for r in rows)]


def _cell(status: Any) -> str:
    if status is None:
        return "(no status)"
    role = "primary" if status.is_primary() else "non-primary"
    return f"{role} {status.local.summary()}"


def render_plan(plan: Plan, journal: Path | None = None) -> str:
    """The plan as tables: blockers first, then the images, the VMs and each step."""
    lines = [f"Failback plan for pool {plan.pool!r}: {plan.site_b} (B) -> {plan.site_a} (A)"]
    if journal is not None:
        lines.append(f"Journal: {journal}")
    if plan.blockers:
        lines += ["", f"BLOCKERS ({len(plan.unwaived)} in force, "
                      f"{len(plan.blockers) - len(plan.unwaived)} waived):"]
        rows = []
        for b in plan.blockers:
            state = ("waived" if b.waivable and b.kind in plan.waived
                     else "waivable" if b.waivable else "no")
            rows.append([b.kind, b.target, state, b.message])
        lines += _table(["KIND", "TARGET", "WAIVE", "WHAT IS WRONG"], rows)
    if plan.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in plan.warnings]
    image_steps = ("demote_a", "resync_a", "demote_b", "promote_a")
    if plan.images:
        lines += ["", f"Images ({len(plan.images)}):"]
        rows = []
        for i in plan.images:
            cells = ["do" if (a := i.action(s)) is not None and a.do else "-" for s in image_steps]
            rows.append([i.name, i.mode or "?", _cell(i.status_a), _cell(i.status_b), *cells])
        lines += _table(["IMAGE", "MODE", f"{plan.site_a} (A)", f"{plan.site_b} (B)",
                         *(s.upper() for s in image_steps)], rows)
    if plan.vms:
        lines += ["", f"VMs ({len(plan.vms)}):"]
        rows = []
        for v in plan.vms:
            todo = {a.step: "do" if a.do else "-" for a in v.actions}
            rows.append([str(v.vm_b.id), v.vm_b.status, str(v.vm_a.id), v.vm_a.status,
                         ", ".join(v.images), todo.get("terminate_b", "-"),
                         todo.get("resume_a", "-")])
        lines += _table([f"VM ON {plan.site_b}", "STATE", f"VM ON {plan.site_a}", "STATE",
                         "IMAGES", "TERMINATE_B", "RESUME_A"], rows)
    lines += ["", "Steps:"]
    for n, step in enumerate(STEPS, 1):
        lines.append(f"  {n}. {step:<12} {STEP_TITLES[step]}")
        groups: dict[tuple[bool, str], int] = {}
        for a in plan.actions(step):
            groups[(a.do, a.reason)] = groups.get((a.do, a.reason), 0) + 1
        if not groups:
            lines.append("       nothing in scope")
        for (do, reason), count in sorted(groups.items(), key=lambda kv: not kv[0][0]):
            lines.append(f"       {'do' if do else 'skip'} {count}: {reason}")
    lines.append("")
    if plan.ok:
        lines.append("No blocker: the failback can run.")
    else:
        lines.append(f"REFUSED: {len(plan.unwaived)} blocker(s) in force; fix them (waivable "
                     "kinds can be waived with --waive KIND).")
    return "\n".join(lines)


def render_status(status: dict[str, Any], site_a: str, site_b: str, pool: str) -> str:
    """:meth:`Failback.status` as a side-by-side table of both sites (with the holder of the
    pool's failback lock when ``status`` has a ``lock`` entry: ``None`` means free)."""
    lines = [f"Pool {pool!r}: {site_b} (B) -> {site_a} (A)"]
    if "lock" in status:
        holder = status["lock"]
        lines.append(f"Failback lock: held by {holder}" if holder else "Failback lock: free")
    images = status.get("images", {})
    lines += ["", f"Images ({len(images)}):"]
    if images:
        lines += _table(["IMAGE", f"{site_a} (A)", f"{site_b} (B)"],
                        [[name, cells.get(site_a, "?"), cells.get(site_b, "?")]
                         for name, cells in images.items()])
    else:
        lines.append("  none in scope")
    vms = status.get("vms", {})
    lines += ["", f"VMs ({len(vms)}):"]
    if vms:
        lines += _table([f"VM {site_b} -> {site_a}", f"{site_b} (B)", f"{site_a} (A)", "IMAGES"],
                        [[key.replace("->", " -> "), str(cells.get(site_b, "?")),
                          str(cells.get(site_a, "?")), ", ".join(cells.get("images", []))]
                         for key, cells in vms.items()])
    else:
        lines.append("  none in scope")
    failback = status.get("failback")
    if failback:
        state = "complete" if failback.get("complete") else "NOT complete"
        lines += ["", f"Journal {status.get('journal')}: failback {state}, "
                      f"{failback.get('runs')} run(s)"]
    elif status.get("journal"):
        lines += ["", f"Journal {status['journal']}: no failback recorded"]
    return "\n".join(lines)


class Progress:
    """A failback listener that prints progress for humans.

    Step headers (once per step), each target's outcome, and for waits that report progress
    (``IMAGE_PROGRESS``) a single line that updates in place with a carriage return when
    ``stream`` is a terminal; otherwise plain lines (every 10 %), so that logs hold no control
    characters. Thread-safe: events come from the failback's worker threads.

    Args:
        stream: where to print.
        tty: whether ``stream`` is a terminal (default: ask it).
        width: the terminal width (default: ask the terminal).
        tick: seconds between two redraws of the progress line on a terminal.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None, width: int | None = None,
                 tick: float = 1.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.width = width
        self.tick = tick
        self._lock = threading.RLock()
        self._headers: set[str] = set()
        self._active: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._percent: dict[str, dict[str, float]] = {}
        self._printed_decile: dict[str, int] = {}
        self._bar = 0  # length of the progress line on screen (tty only)
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Progress:
        """On a terminal, redraw the progress line every second (elapsed time of long waits)."""
        if self.tty and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="ceph-failback-progress",
                                            daemon=True)
            self._ticker.start()
        return self

    def close(self) -> None:
        """Stop redrawing and clear the progress line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
            self._ticker = None
        with self._lock:
            self._clear()

    def _tick(self) -> None:
        while not self._stop.wait(self.tick):
            with self._lock:
                if self._active:
                    self._draw()

    # -- events ----------------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        with self._lock:
            step = event.step or ""
            if event.kind is EventKind.STEP_STARTED:
                self._active[step] = self._active.get(step, 0) + 1
                self._since.setdefault(step, time.monotonic())
                if step not in self._headers:
                    self._headers.add(step)
                    n = STEPS.index(step) + 1 if step in STEPS else 0
                    self._line(f"[{n}/{len(STEPS)}] {STEP_TITLES.get(step, event.message)}")
            elif event.kind is EventKind.STEP_FINISHED:
                left = self._active.get(step, 1) - 1
                if left > 0:
                    self._active[step] = left
                else:
                    self._active.pop(step, None)
                    self._since.pop(step, None)
                self._line(f"    {event.message}")
            elif event.kind is EventKind.IMAGE_PROGRESS:
                self._progress(event)
            elif event.kind is EventKind.WARNING:
                self._line(f"  {step:<11} ! {event.message}")
            else:  # ACTION, VM_STATE
                self._line(f"  {step:<11} {event.message}")
            if self.tty and self._active:
                self._draw()

    def _progress(self, event: Event) -> None:
        step, target = event.step or "", event.target or "?"
        pct = event.data.get("percent")
        if isinstance(pct, int | float):
            self._percent.setdefault(step, {})[target] = float(pct)
        if self.tty:
            return  # drawn by __call__
        decile = int(pct // 10) if isinstance(pct, int | float) else -1
        key = f"{step} {target}"
        if self._printed_decile.get(key) != decile:
            self._printed_decile[key] = decile
            self._line(f"  {step:<11} {event.message}")

    # -- drawing ---------------------------------------------------------------------------------

    def _columns(self) -> int:
        return self.width or shutil.get_terminal_size((100, 24)).columns

    def _status_line(self) -> str:
        now = time.monotonic()
        parts = []
        for step in STEPS:
            if step not in self._active:
                continue
            elapsed = now - self._since.get(step, now)
            pcts = self._percent.get(step)
            if pcts:
                avg = sum(pcts.values()) / len(pcts)
                full = sum(1 for p in pcts.values() if p >= 100)
                filled = int(avg / 100 * 20)
                parts.append(f"{step} [{'#' * filled}{'.' * (20 - filled)}] {avg:3.0f}% "
                             f"{full}/{len(pcts)} images, {elapsed:.0f}s")
            else:
                parts.append(f"{step}: waiting {elapsed:.0f}s")
        return "  " + " | ".join(parts)

    def _draw(self) -> None:
        text = self._status_line()[: max(10, self._columns() - 1)]
        pad = " " * max(0, self._bar - len(text))
        self.stream.write("\r" + text + pad)
        self.stream.flush()
        self._bar = len(text)

    def _clear(self) -> None:
        if self._bar:
            self.stream.write("\r" + " " * self._bar + "\r")
            self.stream.flush()
            self._bar = 0

    def _line(self, text: str) -> None:
        self._clear()
        self.stream.write(text + "\n")
        self.stream.flush()


