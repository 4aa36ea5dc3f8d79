"""``ceph-failback``: fail OpenNebula VMs and their Ceph RBD images back from site B to site A.

Synopsis::

    ceph-failback plan   --config FILE [SCOPE] [--waive KIND]... [--json] [-v]
    ceph-failback run    --config FILE [SCOPE] [RUN OPTIONS] [--yes] [--json] [-v]
    ceph-failback status --config FILE [SCOPE] [--json] [-v]
    ceph-failback resume --config FILE [RUN OPTIONS] [--yes] [--json] [-v]
    ceph-failback unlock --config FILE [--pool POOL] [--yes [--cookie COOKIE]...] [--json] [-v]
    ceph-failback reprotect --config FILE [--pool POOL] [--journal FILE] [--yes] [--json] [-v]

    SCOPE:       [--pool POOL] [--journal FILE] [--image NAME]... [--vm ID]... [--pair VMB:VMA]...
    RUN OPTIONS: [--pool POOL] [--journal FILE] [--waive KIND]... [--hard-terminate-after SECONDS]
                 [--no-pipeline] [--reprotect]

``plan`` shows what a failback would do and what stops it, and changes nothing. ``run`` shows
the plan and, with ``--yes`` only, runs the failback with live progress. ``status`` shows both
sites side by side. ``resume`` continues an interrupted failback from its journal (``run`` on the
same journal does the same: every step skips what is done). ``unlock`` shows who holds the
pool's failback lock, with each taking's cookie, and, with ``--yes``, breaks it (only for a run
that is dead on a machine that is gone: a run that died on this machine is taken over by the next
one); ``--cookie`` breaks only the taking shown, never a run that took the lock since.
``reprotect``
shows, after a failback, whether site B replays each image from A and, with ``--yes``, resyncs
from A the copies B reports split-brained (``run --reprotect`` does it at the end of the run).

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
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from .ceph.seams import CephBackend
from .cli_parser import _UsageError, build_parser
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
from .failback.core import Failback
from .failback.events import Event
from .failback.progress import Progress
from .failback.render import plan_view, show, status_view
from .failback.report import Report
from .failback.verify import Verify

__all__ = [
    "main",
    "build_parser",
    "exit_code",
    "Progress",
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

    def show(self, view: Any) -> None:
        """Print a rich view (plan, status, report...): coloured on a terminal, plain text
        elsewhere (see :func:`~ceph_failback.failback.render.show`)."""
        show(view, self.out)

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


def _verify(args: Any, configured: Verify | None) -> Verify | None:
    """``--verify``/``--verify-sample N`` over the file's ``[verify]``."""
    sample = getattr(args, "verify_sample", None)
    if sample is not None:
        return dataclasses.replace(configured or Verify(), sample=sample)
    if getattr(args, "verify", False):
        return configured or Verify()
    return configured


def _make_failback(ctx: _Context, listeners: Sequence[Callable[[Event], None]] = ()) -> Failback:
    args = ctx.args
    journal = Path(args.journal).expanduser().absolute() if args.journal else None
    pools = args.pool.split(",") if args.pool and "," in args.pool else args.pool
    cfg = load_config(args.config, {"pool": pools})
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
        order=getattr(args, "order", None) or cfg.order,
        oneflow=cfg.oneflow and not getattr(args, "no_oneflow", False),
        wait_ready=cfg.wait_ready or getattr(args, "wait_ready", False),
        hooks=[*cfg.hooks, *getattr(args, "hook", [])],
        verify=_verify(args, cfg.verify),
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
        ctx.show(plan_view(plan, ctx.journal))
        ctx.say("This is a plan: nothing was changed.")
    return EXIT_OK if plan.ok else EXIT_REFUSED


def _cmd_status(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    fb.pull_journal()  # a failback recorded from another machine or directory
    holder = fb.lock_holder()
    lock = str(holder) if holder is not None else None
    status = fb.status()
    failback = fb.report().to_dict() if fb.journal.records else None
    if ctx.json:
        ctx.emit_json({"pool": fb.pool, "site_a": fb.site_a.name, "site_b": fb.site_b.name,
                       "journal": str(ctx.journal), "lock": lock, **status.to_dict(),
                       "failback": failback})
    else:
        ctx.show(status_view(status, lock=lock, journal=str(ctx.journal), failback=failback))
    return EXIT_OK


def _cmd_unlock(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    holders = fb.lock_holders()
    site = fb.site_a.name
    if not holders:
        if ctx.json:
            ctx.emit_json({"locked": False, "pool": fb.pool, "site": site, "holders": {}})
        else:
            ctx.say(f"The failback lock of pool(s) {fb.pool!r} on {site} is free.")
        return EXIT_OK
    shown = {pool: str(h) for pool, h in holders.items()}
    cookies = {pool: h.cookie for pool, h in holders.items()}
    if not ctx.args.yes:
        again = " ".join(f"--cookie {c}" for c in dict.fromkeys(cookies.values()))
        message = ("the failback lock is held: " + "; ".join(
            f"pool {pool!r} on {site} by {h} (cookie {cookies[pool]})"
            for pool, h in shown.items())
            + f"; nothing was changed: add --yes {again} to break exactly these (only if that "
              "run is dead)")
        if ctx.json:
            ctx.emit_json({"locked": True, "holder": next(iter(shown.values())),
                           "holders": shown, "cookies": cookies, "error": message,
                           "type": "ConfirmationRequired", "exit_code": EXIT_REFUSED})
        else:
            ctx.note(f"refused: {message}")
        return EXIT_REFUSED
    wanted = set(ctx.args.cookie)
    # Only the holders read here (with --cookie: only those takings), each broken only if that
    # taking still holds it: a lock released and taken again meanwhile is left alone.
    chosen = {p: h for p, h in holders.items() if not wanted or h.cookie in wanted}
    broken = fb.break_locks(chosen)
    kept = [pool for pool in holders if pool not in broken]
    gone = sorted(wanted - set(cookies.values()))
    if ctx.json:
        ctx.emit_json({"locked": bool(kept), "pool": fb.pool, "site": site,
                       "broken": str(next(iter(broken.values()))) if broken else None,
                       "broken_by_pool": {p: str(h) for p, h in broken.items()},
                       "not_broken": kept, "cookies_not_holding": gone})
    else:
        for pool, h in broken.items():
            ctx.say(f"Broke the failback lock of pool {pool!r} on {site} held by {h} "
                    f"(cookie {h.cookie}).")
        for pool in kept:
            why = ("is held by another taking than --cookie named" if pool not in chosen
                   else "changed hands or was released meanwhile")
            ctx.say(f"The failback lock of pool {pool!r} on {site} {why}: not broken (run "
                    "unlock again to see it).")
        for cookie in gone:
            ctx.say(f"No failback lock of pool(s) {fb.pool!r} on {site} is held by cookie "
                    f"{cookie} any more: nothing to break for it.")
    return EXIT_OK if broken or not wanted else EXIT_REFUSED


def _cmd_reprotect(ctx: _Context) -> int:
    fb = _make_failback(ctx)
    fb.pull_journal()  # a failback run from another machine or directory
    if fb.ledger.scope() is None:
        raise ConfigurationError(f"nothing to reprotect: the journal {ctx.journal} records no "
                                 "failback", pool=fb.pool,
                                 hint="pass the journal of the failback (--journal)")
    if not ctx.args.yes:
        preview = fb.reprotect_preview()
        message = "nothing was changed: add --yes to resync the copies marked 'do'"
        if ctx.json:
            ctx.emit_json({"images": {name: {"choice": str(d.choice), "reason": d.reason}
                                      for name, d in preview.items()},
                           "error": message, "type": "ConfirmationRequired",
                           "exit_code": EXIT_REFUSED})
        else:
            ctx.say(f"Reprotect on {fb.site_b.name} (resync B's copy from A), per image:")
            for name, d in preview.items():
                ctx.say(f"  {name}: {d.choice}: {d.reason}")
            ctx.note(f"refused: {message}")
        return EXIT_REFUSED
    result = fb.reprotect()
    report = fb.report()
    if ctx.json:
        ctx.emit_json({**report.to_dict(), "reprotected": result.done,
                       "journal": str(ctx.journal)})
    else:
        ctx.say(str(result))
        ctx.show(report)
    return EXIT_OK if report.complete else EXIT_FAILED


def _cmd_run(ctx: _Context, *, resume: bool = False) -> int:
    progress = None if ctx.json else Progress(ctx.out)
    ctx.extra["progress"] = progress
    listeners = [progress] if progress is not None else []
    fb = _make_failback(ctx, listeners)
    with contextlib.ExitStack() as stack:
        if ctx.args.yes:
            # The pool's lock in Ceph first (taking it re-reads the journal and brings it level
            # with its copy in Ceph): a run that was still writing it, here or on another
            # machine, must not leave this one with a stale picture.
            stack.enter_context(fb.locked())
        else:
            fb.pull_journal()  # what a run elsewhere recorded (shown, not acted on)
        recorded = fb.ledger.scope()
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
            ctx.show(plan_view(plan, ctx.journal))
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
            with progress or contextlib.nullcontext(), (
                    progress.logs_above("ceph_failback") if progress is not None
                    else contextlib.nullcontext()):
                # Log lines on the display's terminal go above it, never through it.
                report = fb.run(pipeline=not ctx.args.no_pipeline,
                                reprotect=ctx.args.reprotect)
    if ctx.json:
        ctx.emit_json({**report.to_dict(), "journal": str(ctx.journal)})
    else:
        ctx.say("")
        ctx.show(report)
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
        progress = ctx.extra.get("progress")
        if progress is not None:
            progress.abandon()  # the process exits at once: show the terminal's cursor again
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
            ctx.show(report)
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
    "reprotect": _cmd_reprotect,
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
