"""``ceph-failback``: fail OpenNebula VMs and their Ceph RBD images back from site B to site A.

Synopsis::

    ceph-failback plan   --config FILE [SCOPE] [--waive KIND]... [--json] [-v]
    ceph-failback run    --config FILE [SCOPE] [RUN OPTIONS] [--yes] [--json] [-v]
    ceph-failback status --config FILE [SCOPE] [--json] [-v]
    ceph-failback resume --config FILE [RUN OPTIONS] [--yes] [--json] [-v]
    ceph-failback unlock --config FILE [--pool POOL] [--yes] [--json] [-v]

    SCOPE:       [--pool POOL] [--journal FILE] [--image NAME]... [--vm ID]... [--pair VMB:VMA]...
    RUN OPTIONS: [--pool POOL] [--journal FILE] [--waive KIND]... [--hard-terminate-after SECONDS]
                 [--no-pipeline]

``plan`` shows what a failback would do and what stops it, and changes nothing. ``run`` shows
the plan and, with ``--yes`` only, runs the failback with live progress. ``status`` shows both
sites side by side. ``resume`` continues an interrupted failback from its journal (``run`` on the
same journal does the same: every step skips what is done). ``unlock`` shows who holds the
pool's failback lock and, with ``--yes``, breaks it (only for a run that is dead on a machine
that is gone: a run that died on this machine is taken over by the next one).

Exit codes:

* 0: success (the plan has no blocker, the failback is complete, the status was read).
* 1: the failback failed (a step failed, a wait timed out...): fix the cause, then ``resume``.
* 2: bad usage or configuration (also: a pool that does not exist, nothing to resume).
* 3: refused: blockers in the plan, ``--yes`` missing, or another failback holds the pool's lock
  (a RADOS lock in site A's pool). Nothing was changed.
* 4: interrupted (Ctrl-C, SIGTERM): ``resume`` continues from the journal.
* 5: a site cannot be reached, or refused the credentials or the Ceph client's capabilities.

With ``--json`` the only thing on stdout is one JSON document: the plan, the report, the status,
or ``{"error": ..., "type": ...}``. Passwords are never printed: the configuration names files.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

from . import __version__
from .ceph.seams import CephBackend
from .config import FailbackConfig, load_config
from .errors import (
    CephConnectionError,
    CephNotInstalledError,
    CephPermissionError,
    ConfigurationError,
    FailbackError,
    LockedError,
    OpenNebulaAuthenticationError,
    OpenNebulaAuthorizationError,
    OpenNebulaConnectionError,
    PoolNotFoundError,
    SafetyError,
    StepFailedError,
    WaitTimeoutError,
)
from .failback.core import WAIVABLE, Failback
from .failback.events import Event, EventKind
from .failback.plan import STEP_TITLES, STEPS, Plan
from .failback.report import Report

__all__ = [
    "main",
    "build_parser",
    "exit_code",
    "Progress",
    "render_plan",
    "render_status",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_REFUSED",
    "EXIT_INTERRUPTED",
    "EXIT_UNREACHABLE",
]

log = logging.getLogger("ceph_failback.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_INTERRUPTED = 4
EXIT_UNREACHABLE = 5

EPILOG = """\
exit codes:
  0  success: no blocker in the plan, failback complete, status read
  1  the failback failed (a step failed, a wait timed out): fix the cause, then `resume`
  2  bad usage or configuration (also: a pool that does not exist, nothing to resume)
  3  refused, nothing changed: blockers in the plan, --yes missing, or the pool is locked
  4  interrupted (Ctrl-C, SIGTERM): `resume` continues from the journal
  5  a site cannot be reached, or refused the credentials or the Ceph client's capabilities

OpenNebula credentials: the site's one_auth file, else $ONE_AUTH, else ~/.one/one_auth;
endpoint: the site's one_endpoint, else $ONE_XMLRPC.
"""


# -- exit codes -----------------------------------------------------------------------------------


def exit_code(exc: BaseException) -> int:
    """The exit code for an error (see the module docstring)."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, ConfigurationError | PoolNotFoundError | CephNotInstalledError):
        return EXIT_USAGE
    if isinstance(exc, SafetyError | LockedError):
        return EXIT_REFUSED
    if isinstance(exc, CephConnectionError | CephPermissionError | OpenNebulaConnectionError
                  | OpenNebulaAuthenticationError | OpenNebulaAuthorizationError):
        return EXIT_UNREACHABLE
    return EXIT_FAILED


# -- arguments ------------------------------------------------------------------------------------


class _UsageError(Exception):
    """argparse's complaint, caught by :func:`main` instead of exiting."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.usage = usage


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message, self.format_usage())


def _pair(text: str) -> tuple[int, int]:
    b, sep, a = text.partition(":")
    try:
        if not sep:
            raise ValueError
        vm_b, vm_a = int(b), int(a)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not VMB:VMA (two VM ids)") from None
    if vm_b < 0 or vm_a < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: VM ids are not negative")
    return vm_b, vm_a


def _vm_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a VM id") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: VM ids are not negative")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive seconds")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``ceph-failback --help``)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="ceph-failback", formatter_class=fmt, epilog=EPILOG,
                     description="Fail OpenNebula VMs and their Ceph RBD images back from site B "
                                 "(where they run since a disaster) to site A (home).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    common = _Parser(add_help=False)
    common.add_argument("-c", "--config", required=True, metavar="FILE",
                        help="the failback configuration file (TOML: the sites and the pool)")
    common.add_argument("--pool", help="the mirrored RBD pool (overrides the file's `pool`)")
    common.add_argument("--journal", metavar="FILE",
                        help="the journal file (overrides the file's `journal`; default "
                             "failback-<site_a>-<site_b>-<pool>.jsonl in the working directory)")
    common.add_argument("--json", action="store_true",
                        help="print one JSON document on stdout (errors too) instead of tables")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="log to stderr (-v: info, -vv: debug)")

    scope = _Parser(add_help=False)
    scope.add_argument("--image", action="append", default=[], metavar="NAME",
                       help="restrict the failback to this RBD image (and the VMs using it); "
                            "repeatable")
    scope.add_argument("--vm", action="append", default=[], type=_vm_id, metavar="ID",
                       help="restrict the failback to this VM of site B (its id there); "
                            "repeatable")
    scope.add_argument("--pair", action="append", default=[], type=_pair, metavar="VMB:VMA",
                       help="pair VM VMB of site B with VM VMA of site A explicitly (overrides "
                            "the mapping read from their disks); repeatable")

    waive = _Parser(add_help=False)
    waive.add_argument("--waive", action="append", default=[], choices=sorted(WAIVABLE),
                       metavar="KIND",
                       help="proceed despite blockers of this kind; only kinds where that cannot "
                            f"lose data can be waived: {', '.join(sorted(WAIVABLE))}; repeatable")

    running = _Parser(add_help=False)
    running.add_argument("--yes", action="store_true",
                         help="really change things (without it: show the plan and stop, exit 3)")
    running.add_argument("--hard-terminate-after", type=_seconds, metavar="SECONDS",
                         help="terminate-hard a VM on site B still not DONE after SECONDS "
                              "(default: never force)")
    running.add_argument("--no-pipeline", action="store_true",
                         help="run each step for every VM before the next step (default: move "
                              "each VM through steps 3-6 as soon as its images are ready)")

    confirm = _Parser(add_help=False)
    confirm.add_argument("--yes", action="store_true",
                         help="really break the lock (without it: show the holder, exit 3)")

    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, parents, text in (
        ("plan", [common, scope, waive], "show what a failback would do and what stops it; "
                                         "changes nothing (exit 3 if something blocks it)"),
        ("run", [common, scope, waive, running], "show the plan, then run the failback (--yes)"),
        ("status", [common, scope], "show both sites side by side; changes nothing"),
        ("resume", [common, waive, running], "continue an interrupted failback from its journal "
                                             "(the scope is the one the journal records)"),
        ("unlock", [common, confirm], "show who holds the pool's failback lock; with --yes, "
                                      "break it (only when that run is dead)"),
    ):
        sub.add_parser(name, parents=parents, help=text, description=text, epilog=EPILOG,
                       formatter_class=fmt)
    return parser


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


# -- running a command ------------------------------------------------------------------------------


@dataclass
class _Context:
    args: argparse.Namespace
    out: TextIO
    err: TextIO
    config: FailbackConfig | None = None
    failback: Failback | None = None
    started: bool = False  # run/resume reached the point of changing things
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def json(self) -> bool:
        return bool(self.args.json)

    @property
    def journal(self) -> Path | None:
        if self.failback is not None:
            return self.failback.journal.path.absolute()
        if self.config is not None and self.config.journal is not None:
            return self.config.journal
        return None

    def emit_json(self, obj: Any) -> None:
        self.out.write(json.dumps(obj, indent=2, default=str) + "\n")
        self.out.flush()

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def note(self, text: str) -> None:
        self.err.write(text + "\n")
        self.err.flush()

    def resume_command(self) -> str:
        words = ["ceph-failback", "resume", "--config", str(Path(self.args.config).absolute())]
        if self.args.pool:
            words += ["--pool", self.args.pool]
        journal = self.journal
        if journal is not None and (self.config is None or self.config.journal != journal):
            words += ["--journal", str(journal)]  # not the file's: say it, absolute
        for kind in getattr(self.args, "waive", []):
            words += ["--waive", kind]
        return shlex.join([*words, "--yes"])


def _make_failback(ctx: _Context, listeners: Sequence[Callable[[Event], None]] = ()) -> Failback:
    args = ctx.args
    journal = Path(args.journal).expanduser().absolute() if args.journal else None
    cfg = load_config(args.config, {"pool": args.pool})
    ctx.config = cfg
    site_a, site_b = cfg.sites()
    pairs: dict[int, int] = {}
    for vm_b, vm_a in getattr(args, "pair", []):
        if pairs.get(vm_b, vm_a) != vm_a:
            raise ConfigurationError(f"--pair: VM {vm_b} of site B is paired twice "
                                     f"({pairs[vm_b]} and {vm_a})")
        pairs[vm_b] = vm_a
    ctx.failback = Failback(
        site_a, site_b, cfg.pool,
        images=getattr(args, "image", None) or None,
        vms=getattr(args, "vm", None) or None,
        pairs=pairs or None,
        journal=journal or cfg.journal,
        timeouts=cfg.timeouts,
        hard_terminate_after=getattr(args, "hard_terminate_after", None),
        waive=getattr(args, "waive", ()),
        listeners=listeners,
    )
    return ctx.failback


def _cmd_plan(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    plan = fb.plan()
    if ctx.json:
        ctx.emit_json({**plan.to_dict(), "journal": str(ctx.journal)})
    else:
        ctx.say(render_plan(plan, ctx.journal))
        ctx.say("This is a plan: nothing was changed.")
    return EXIT_OK if plan.ok else EXIT_REFUSED


def _cmd_status(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    status: dict[str, Any] = {"pool": fb.pool, "site_a": fb.site_a.name,
                              "site_b": fb.site_b.name, "journal": str(ctx.journal)}
    holder = fb.lock_holder()
    status["lock"] = str(holder) if holder is not None else None
    status.update(fb.status().to_dict())
    status["failback"] = fb.report().to_dict() if fb.journal.records else None
    if ctx.json:
        ctx.emit_json(status)
    else:
        ctx.say(render_status(status, fb.site_a.name, fb.site_b.name, fb.pool))
    return EXIT_OK


def _cmd_unlock(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    holder = fb.lock_holder()
    where = f"pool {fb.pool!r} on {fb.site_a.name}"
    if holder is None:
        if ctx.json:
            ctx.emit_json({"locked": False, "pool": fb.pool, "site": fb.site_a.name})
        else:
            ctx.say(f"The failback lock of {where} is free.")
        return EXIT_OK
    if not ctx.args.yes:
        message = (f"the failback lock of {where} is held by {holder}; nothing was changed: "
                   "add --yes to break it (only if that run is dead)")
        if ctx.json:
            ctx.emit_json({"locked": True, "holder": str(holder), "error": message,
                           "type": "ConfirmationRequired", "exit_code": EXIT_REFUSED})
        else:
            ctx.note(f"refused: {message}")
        return EXIT_REFUSED
    broken = fb.break_lock()
    if ctx.json:
        ctx.emit_json({"locked": False, "broken": str(broken) if broken else None,
                       "pool": fb.pool, "site": fb.site_a.name})
    else:
        ctx.say(f"Broke the failback lock of {where} held by {broken}." if broken else
                f"The failback lock of {where} was released meanwhile.")
    return EXIT_OK


def _cmd_run(ctx: _Context, *, resume: bool = False) -> int:
    progress = None if ctx.json else Progress(ctx.out)
    listeners = [progress] if progress is not None else []
    fb = _make_failback(ctx, listeners)
    with contextlib.ExitStack() as stack:
        if ctx.args.yes:
            # The pool's lock in Ceph first (taking it re-reads the journal): a run that was
            # still writing it must not leave this one with a stale picture.
            stack.enter_context(fb.locked())
        recorded = fb.journal.last(step="run", event="scope")
        if resume and recorded is None:
            raise ConfigurationError(
                f"nothing to resume: the journal {ctx.journal} records no failback",
                pool=fb.pool, hint="start one with `ceph-failback run`; if its journal is "
                                   "elsewhere, pass --journal")
        if not resume and recorded is not None and (ctx.args.image or ctx.args.vm
                                                    or ctx.args.pair):
            ctx.note(f"note: the journal {ctx.journal} already records this failback's scope; "
                     "--image, --vm and --pair are ignored (it continues that failback)")
        plan = fb.plan()
        ctx.extra["plan"] = plan
        if not ctx.json:
            ctx.say(render_plan(plan, ctx.journal))
        if not plan.ok:
            raise SafetyError(
                f"{len(plan.unwaived)} blocker(s): " + "; ".join(str(b) for b in plan.unwaived),
                pool=fb.pool, hint="fix them; waivable kinds can be waived with --waive KIND")
        if not ctx.args.yes:
            message = ("nothing was changed: add --yes to run this failback" if not resume else
                       "nothing was changed: add --yes to resume this failback")
            if ctx.json:
                ctx.emit_json({"error": message, "type": "ConfirmationRequired",
                               "exit_code": EXIT_REFUSED, "plan": plan.to_dict()})
            else:
                ctx.note(f"refused: {message}")
            return EXIT_REFUSED
        with _signals(ctx):
            ctx.started = True
            if not ctx.json:
                ctx.say(f"\n{'Resuming' if resume else 'Running'} the failback "
                        f"(journal {ctx.journal}; Ctrl-C stops at once, `resume` continues):")
            if progress is not None:
                progress.start()
            try:
                report = fb.run(pipeline=not ctx.args.no_pipeline)
            finally:
                if progress is not None:
                    progress.close()
    if ctx.json:
        ctx.emit_json({**report.to_dict(), "journal": str(ctx.journal)})
    else:
        ctx.say("")
        ctx.say(str(report))
    return EXIT_OK if report.complete else EXIT_FAILED


@contextlib.contextmanager
def _signals(ctx: _Context) -> Iterator[None]:
    """While a failback runs: Ctrl-C and SIGTERM stop the process at once, like a kill.

    The failback's worker threads cannot be cancelled and a KeyboardInterrupt would wait for
    them (their waits can last minutes); every action is in the journal before it is made, so
    stopping at once is safe and ``resume`` continues.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    journal = ctx.journal

    def stop(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if ctx.json:
            text = json.dumps({"error": f"interrupted by {name}", "type": "Interrupted",
                               "exit_code": EXIT_INTERRUPTED, "journal": str(journal),
                               "resume": ctx.resume_command()}) + "\n"
            fd = ctx.out
        else:
            text = (f"\ninterrupted ({name}): stopped at once. Every action is in the journal "
                    f"{journal};\nto continue: {ctx.resume_command()}\n")
            fd = ctx.err
        with contextlib.suppress(Exception):
            ctx.out.flush()
        try:
            os.write(fd.fileno(), text.encode())
        except (OSError, ValueError, AttributeError):
            with contextlib.suppress(Exception):
                fd.write(text)
                fd.flush()
        os._exit(EXIT_INTERRUPTED)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- errors ---------------------------------------------------------------------------------------


def _report_error(ctx: _Context, exc: BaseException) -> int:
    code = exit_code(exc)
    journal = ctx.journal
    resumable = ctx.started and code in (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_UNREACHABLE)
    if ctx.json:
        doc: dict[str, Any] = {"error": str(exc) if str(exc) else type(exc).__name__,
                               "type": type(exc).__name__, "exit_code": code}
        if isinstance(exc, FailbackError):
            doc.update({k: v for k, v in (("site", exc.site), ("pool", exc.pool),
                                          ("image", exc.image), ("vm", exc.vm),
                                          ("hint", exc.hint)) if v is not None})
        if isinstance(exc, StepFailedError):
            doc["failures"] = exc.failures
        if isinstance(exc, WaitTimeoutError):
            doc["last_seen"] = exc.last_seen
        if code == EXIT_REFUSED and "plan" in ctx.extra:
            doc["plan"] = ctx.extra["plan"].to_dict()
        if journal is not None and ctx.failback is not None:
            doc["journal"] = str(journal)
        if resumable:
            doc["resume"] = ctx.resume_command()
            report = _safe_report(ctx)
            if report is not None:
                doc["report"] = report.to_dict()
        ctx.emit_json(doc)
        return code
    if isinstance(exc, KeyboardInterrupt):
        ctx.note("\ninterrupted." + (f" Every action is in the journal {journal}; to continue: "
                                     f"{ctx.resume_command()}" if ctx.started else
                                     " Nothing was changed."))
        return code
    if isinstance(exc, FailbackError):
        where = exc.where()
        ctx.note(f"error: {where + ': ' if where else ''}{exc.message}")
        if isinstance(exc, StepFailedError):
            for target, why in exc.failures.items():
                ctx.note(f"  {target}: {why}")
        if isinstance(exc, WaitTimeoutError):
            for target, seen in exc.last_seen.items():
                ctx.note(f"  last seen {target}: {seen}")
        if exc.hint:
            ctx.note(f"hint: {exc.hint}")
    else:
        ctx.note(f"error: {type(exc).__name__}: {exc}")
    if resumable:
        report = _safe_report(ctx)
        if report is not None:
            ctx.say("")
            ctx.say(str(report))
        ctx.note(f"The journal {journal} records every action; what is done stays done.\n"
                 f"Fix the cause, then continue with: {ctx.resume_command()}")
    elif code == EXIT_REFUSED:
        ctx.note("Nothing was changed.")
    return code


def _safe_report(ctx: _Context) -> Report | None:
    if ctx.failback is None:
        return None
    try:
        return ctx.failback.report()
    except Exception:  # the report is a courtesy on the error path
        log.debug("cannot build the report", exc_info=True)
        return None


# -- logging --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _logging(verbose: int, *, progress_shown: bool, stream: TextIO) -> Iterator[None]:
    logger = logging.getLogger("ceph_failback")
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"
                                           if verbose else "%(levelname)s: %(message)s"))
    if progress_shown and not verbose:
        # Failback events are logged too; the progress printer already shows them.
        handler.addFilter(lambda r: r.name != "ceph_failback.failback"
                          or r.levelno >= logging.ERROR)
    previous = logger.level
    logger.setLevel(level if previous == logging.NOTSET else min(level, previous))
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


# -- entry point ----------------------------------------------------------------------------------

_COMMANDS: dict[str, Callable[[_Context], int]] = {
    "plan": _cmd_plan,
    "run": _cmd_run,
    "status": _cmd_status,
    "resume": lambda ctx: _cmd_run(ctx, resume=True),
    "unlock": _cmd_unlock,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``ceph-failback`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = sys.stdout, sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        if "--json" in argv:
            out.write(json.dumps({"error": str(exc), "type": "UsageError",
                                  "exit_code": EXIT_USAGE}) + "\n")
        else:
            err.write(f"{exc.usage}ceph-failback: error: {exc}\n")
        return EXIT_USAGE
    except SystemExit as exc:  # --help, --version
        return EXIT_OK if exc.code is None else exc.code if isinstance(exc.code, int) else EXIT_USAGE
    ctx = _Context(args, out, err)
    with _logging(args.verbose, progress_shown=not args.json, stream=err):
        try:
            return _COMMANDS[args.command](ctx)
        except (FailbackError, KeyboardInterrupt) as exc:
            return _report_error(ctx, exc)
        except Exception as exc:  # a bug: say it plainly, with the traceback on stderr
            traceback.print_exc(file=err)
            return _report_error(ctx, exc)
        finally:
            if ctx.failback is not None:
                _close(ctx.failback.site_a.ceph, ctx.failback.site_b.ceph)


def _close(*sites: CephBackend) -> None:
    for site in sites:
        with contextlib.suppress(Exception):
            site.close()
