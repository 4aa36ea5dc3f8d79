"""The command line's arguments (:func:`build_parser`); importable from :mod:`ceph_failback.cli`."""

from __future__ import annotations

import argparse
from typing import NoReturn

from . import __version__
from .errors import ConfigurationError
from .failback.hooks import Hook
from .failback.scope import WAIVABLE

__all__ = ["EPILOG", "build_parser"]

EPILOG = """\
exit codes:
  0  success: no blocker in the plan, failback complete, status read
  1  the failback failed (a step failed, a wait timed out): fix the cause, then `resume`
  2  bad usage or configuration (also: a pool that does not exist, nothing to resume)
  3  refused, nothing changed: blockers in the plan, --yes missing, or the pool is locked
  4  interrupted (Ctrl-C, SIGTERM): `resume` continues from the journal
  5  a site cannot be reached, or refused the credentials or the Ceph client's capabilities

OpenNebula credentials: the site's one_auth file, else $ONE_AUTH, ~/.one/one_auth,
/var/lib/one/.one/one_auth; endpoint: the site's one_endpoint, else $ONE_XMLRPC,
~/.one/one_endpoint; also $ONE_XMLRPC_TIMEOUT, $ONE_DISABLE_SSL_VERIFY, $ONE_CERT_DIR.
"""


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


def _group(text: str) -> tuple[int | str, ...]:
    entries = [e.strip() for e in text.split(",")]
    if not all(entries):
        raise argparse.ArgumentTypeError(f"{text!r}: a group is VM names or ids, comma-separated")
    return tuple(int(e) if e.isdigit() else e for e in entries)


def _hook(text: str) -> Hook:
    when, sep, command = text.partition("=")
    if not sep or not command.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: give WHEN=COMMAND (after_run=/usr/local/bin/x)")
    try:
        return Hook(when.strip(), command)
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


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
    common.add_argument("--pool", help="the mirrored RBD pool, or several separated by commas "
                        "(overrides the file's `pool`)")
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

    scope.add_argument("--order", action="append", default=[], type=_group, metavar="VMS",
                       help="the start order, one group per option in order: VM names or ids "
                            "of site B, comma-separated (--order db --order app,17); replaces "
                            "the configuration file's order")
    scope.add_argument("--wait-ready", action="store_true",
                       help="the --order groups count as started on site A once their guests "
                            "report READY=YES through OneGate, not once they run")
    scope.add_argument("--no-oneflow", action="store_true",
                       help="take no start order from site A's OneFlow services")

    waive = _Parser(add_help=False)
    waive.add_argument("--waive", action="append", default=[], choices=sorted(WAIVABLE),
                       metavar="KIND",
                       help="proceed despite blockers of this kind; only kinds where that cannot "
                            f"lose data can be waived: {', '.join(sorted(WAIVABLE))}; repeatable")

    running = _Parser(add_help=False)
    running.add_argument("--yes", action="store_true",
                         help="really change things (without it: show the plan and stop, exit 3)")
    running.add_argument("--hook", action="append", default=[], type=_hook, metavar="WHEN=COMMAND",
                         help="run COMMAND (no shell; FAILBACK_* variables in its environment) "
                              "once at WHEN: before_run, before_terminate (before the first VM "
                              "stops), after_resume (after the last VM runs) or after_run; a "
                              "failure stops the failback (resumable); repeatable. Per group, "
                              "per VM, time limits and 'continue': [[hooks]] in the "
                              "configuration file")
    running.add_argument("--verify", action="store_true",
                         help="before each VM resumes, compare its images' copies on both sites "
                              "chunk by chunk (whole images); a VM whose copies differ is not "
                              "resumed")
    running.add_argument("--verify-sample", type=int, metavar="N",
                         help="as --verify, reading N chunks of 4 MiB per image")
    running.add_argument("--hard-terminate-after", type=_seconds, metavar="SECONDS",
                         help="terminate-hard a VM on site B still not DONE after SECONDS "
                              "(default: never force)")
    running.add_argument("--no-pipeline", action="store_true",
                         help="run each step for every VM before the next step (default: move "
                              "each VM through steps 3-6 as soon as its images are ready)")
    running.add_argument("--reprotect", action="store_true",
                         help="after the failback, resync from A any image site B reports "
                              "split-brained (see the `reprotect` command)")

    confirm = _Parser(add_help=False)
    confirm.add_argument("--yes", action="store_true",
                         help="really break the lock (without it: show the holder, exit 3)")
    confirm.add_argument("--cookie", action="append", default=[], metavar="COOKIE",
                         help="with --yes, break only a lock still held by this taking (the "
                              "cookie the command showed without --yes); repeatable. Without "
                              "it, --yes breaks whatever holds each lock at that moment")
    resync_b = _Parser(add_help=False)
    resync_b.add_argument("--yes", action="store_true",
                          help="really resync (without it: show each image's protection, "
                               "exit 3)")

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
        ("reprotect", [common, resync_b], "after a failback: show whether site B replays each "
                                          "image from A; with --yes, resync from A the copies "
                                          "B reports split-brained (only images this journal "
                                          "promoted on A)"),
    ):
        sub.add_parser(name, parents=parents, help=text, description=text, epilog=EPILOG,
                       formatter_class=fmt)
    return parser

