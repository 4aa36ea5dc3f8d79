"""The demo, and failback rehearsals: a full failback on a local two-site lab.

``python -m ceph_failback.lab rehearse`` (also ``python -m ceph_failback.demo``) brings up two
real single-node Ceph clusters with rbd-mirror between them and one OpenNebula stand-in per site,
creates VMs with persistent RBD disks holding data on site A (by default a OneFlow service,
``shop``: vm-0 its database, the others its application, started after the database is READY,
with two hooks), simulates a disaster (unplanned by default: site B force-promoted, the VMs
recreated there and writing new data), then runs the failback with
:class:`~ceph_failback.failback.Failback` (plan, progress, report with per-VM downtime), checks
that site A holds B's last writes, says what would differ in production (the waits that depend
on rbd-mirror's intervals, the checks that would stop the run), and tears everything down.

Options shape the rehearsal like the failback you expect: the number of VMs and disks, the image
size and how much is written, the mirroring mode, the kind of disaster, rbd-mirror's production
intervals, OpenNebula's state-transition times, the concurrency.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import textwrap
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import cast

from rich.console import RenderableType

from ..errors import ConfigurationError, FailbackError
from ..failback import WAIVABLE, Event, EventKind, Failback, Plan, Progress, Report, Timeouts
from ..failback.hooks import Hook
from ..failback.render import show
from .cluster import TEST_SPEED_SETTINGS
from .lab import Lab, MirrorKind, unique_journal
from .oned import Delays
from .world import Disaster, World

log = logging.getLogger("ceph_failback.lab.demo")

#: Ceph's defaults for the rbd-mirror settings the lab speeds up (Ceph 16, ``ceph-conf -D``).
__all__ = ["CHECKS", "PRODUCTION_DEFAULTS", "WAITS", "RehearsalOptions", "StepTimer",
           "add_arguments", "main", "options_from", "parse_ips", "parse_size",
           "production_notes", "rehearse", "run"]

PRODUCTION_DEFAULTS = {
    "rbd_mirror_journal_poll_age": "5",
    "rbd_mirror_pool_replayers_refresh_interval": "30",
    "rbd_mirror_image_state_check_interval": "30",
    "rbd_mirror_sync_point_update_age": "30",
}

#: What each step waits for, and what makes that wait longer on a production cluster.
WAITS = {
    "demote_a": "no wait: librbd demotes at once",
    "resync_a": "rbd-mirror on A notices the resync flag (rbd_mirror_image_state_check_interval), "
                "moves the image to the trash, recreates it and copies it whole from B "
                "(image size, bandwidth, rbd_mirror_concurrent_image_syncs images at a time), "
                "then reports replaying (status reports come periodically); with Ceph's "
                "defaults three small images took 48-59 s on this project's lab",
    "terminate_b": "the guest's shutdown and OpenNebula's epilog, then the wait until the "
                   "images are mirrored to A (journal: A replays from B, proven in step 2, so "
                   "the catch-up itself is left to step 5's promote; an image not proven must "
                   "report nothing behind, which waits for rbd-mirror's periodic status "
                   "report; snapshot: a mirror snapshot taken on B copied to A)",
    "demote_b": "no wait, unless a client still holds the image's exclusive lock (a killed "
                "client's watch lingers ~30 s: Timeouts.writer)",
    "promote_a": "retried while rbd-mirror on A has not replayed B's demotion "
                 "(rbd_mirror_journal_poll_age; snapshot mode: the demotion snapshot copied); "
                 "in journal mode it includes A's catch-up on B's last writes",
    "resume_a": "the VM's boot in OpenNebula",
}

#: Blocker kinds the plan can raise, in the words an operator needs (docs/troubleshooting.rst).
CHECKS = {
    "non-persistent-disk": "a VM on B uses a clone or volatile disk: terminating it would delete "
                           "the image on both sites",
    "other-pool-disk": "a VM on B has a disk in a pool this failback does not cover (give it "
                       "every pool its VMs use)",
    "dr-history": "the journal's scope pairs a DONE VM on B this failback did not terminate",
    "unresolved-disk": "a VM this failback stops or resumes has a disk whose image is unknown",
    "unreadable-disk": "a VM has a Ceph disk whose RBD image cannot be named from its attributes",
    "vm-not-stopped": "a VM on A is not safely stopped (someone restarted it on stale disks)",
    "split-brain-on-b": "B's copy diverged from A's: a person decides which is current",
    "no-primary": "an image is primary on neither site and this failback did not demote it",
    "stale-journal": "the journal records an earlier failback of an image that failed over "
                     "again since: a new failback needs a new journal",
    "image-missing": "an image in scope is not mirrored on one site",
    "mirroring-not-enabled": "the pool is not mirrored on a site",
    "rbd-mirror-down": "no healthy rbd-mirror daemon on A: nothing could resync or replay",
    "daemon-health-unknown": "the Ceph client cannot read the manager's service status",
    "journal-unreadable": "the Ceph client cannot read the images' journal headers",
    "saved-memory-on-b": "a VM on B is SUSPENDED or STOPPED: terminating discards its memory",
    "host-copy-on-a": "a VM on A runs on host copies (ssh system datastore): resume boots them",
    "host-copy-on-b": "a VM on B runs on host copies and a terminate now would not write them "
                      "back",
    "unknown-on-b": "a VM on B is UNKNOWN: its host is lost, a terminate cannot reach the guest",
    "image-used-twice": "one image is a disk of two VMs at the same site",
    "no-vm-on-a": "an image used on B by no VM on A: nothing would resume with it",
    "split-vm": "one VM's disks belong to several VMs on the other site",
    "partial-pair": "a VM on A has a disk that its failback does not move (not on B's VM, or in "
                    "another pool)",
    "explicit-pair": "an explicit pair contradicts what the disks say",
    "unknown-vm": "an explicit pair or --vm names a VM the site does not have",
    "locked": "another failback of the pool holds its lock",
}


@dataclass
class RehearsalOptions:
    """What to rehearse.

    Attributes:
        mode: ``journal`` or ``snapshot`` mirroring.
        vms: how many VMs.
        disks: disks per VM (``None``: two for the first VM, one for the others).
        image_size: each disk's size in bytes.
        write_size: bytes written to each disk on A before the disaster, and on B after it.
        disaster: ``unplanned`` (B force-promoted) or ``planned`` (a DR test: A demoted first).
        production_speed: keep Ceph's default rbd-mirror intervals (slower, like production).
        oned_delay: seconds each OpenNebula state transition takes (shutdown, epilog, boot).
        ips: the loopback addresses of site A and site B.
        directory: the lab's directory (default: a new temporary one).
        reuse: the directory of a lab already up (``python -m ceph_failback.lab up``): it is
            used and left running.
        keep: leave the lab running at the end.
        concurrency: images worked on at once.
        vm_concurrency: VMs moved through steps 3-6 at once.
        pipeline: move each VM through steps 3-6 as soon as its images are ready.
        second_pool: a second mirrored pool (an OpenNebula site's second Ceph datastore): the
            first VM gets one more disk there, and the failback covers both pools.
        dr_history: site B keeps a DONE VM per VM from an earlier DR test, using the same
            images (oned keeps DONE VMs); the failback must pair only the live ones.
        service: (two VMs or more) the VMs form a OneFlow service on A: vm-0 its ``db`` role,
            the others its ``app`` role (after ``db``, with the ready status gate: each guest
            reports ``READY=YES`` through OneGate a second into its boot), with two hooks
            (before the app stops on B, after the database is up on A).
    """

    mode: MirrorKind = "journal"
    vms: int = 3
    disks: int | None = None
    image_size: int = 16 << 20
    write_size: int = 256 << 10
    disaster: Disaster = "unplanned"
    production_speed: bool = False
    oned_delay: float = 0.5
    ips: tuple[str, str] = ("127.0.0.2", "127.0.0.3")
    directory: str | None = None
    reuse: str | None = None
    keep: bool = False
    concurrency: int = 10
    vm_concurrency: int = 10
    pipeline: bool = True
    second_pool: str | None = None
    dr_history: bool = False
    service: bool = True


def parse_size(text: str) -> int:
    """``16M``, ``1G``, ``512K`` or bytes -> bytes."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in units and t[-1:] else ""
    try:
        value = float(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (examples: 16M, 1G, 4096)")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, not {text!r}")
    return int(value * units[unit])


def parse_ips(text: str) -> tuple[str, str]:
    """``IP_A,IP_B`` -> the two addresses (loopback addresses: the lab binds to them)."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 2 or parts[0] == parts[1]:
        raise argparse.ArgumentTypeError(f"give two different addresses, IP_A,IP_B, not {text!r}")
    for p in parts:
        if not p.startswith("127."):
            raise argparse.ArgumentTypeError(f"{p}: the lab binds to loopback addresses "
                                             "(127.0.0.0/8) only")
    return parts[0], parts[1]


def _say(text: str) -> float:
    print(f"\n-> {text}", flush=True)
    return time.monotonic()


def _indent(text: object, by: str = "   ") -> str:
    return by + str(text).replace("\n", "\n" + by)


def _show(view: object) -> None:
    """A plan, status or report, indented: coloured on a terminal, plain text elsewhere."""
    show(cast(RenderableType, view), sys.stdout, indent="   ")


class StepTimer:
    """A listener that measures each step call (steps 3-6 run once per VM when pipelined), and
    splits step 3 into the VM's terminate and the wait for its images to be mirrored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[tuple[str, int], float] = {}
        self._terminated: dict[str, float] = {}  # VM target -> when it was DONE
        self.seconds: dict[str, list[float]] = defaultdict(list)
        #: terminate_b's parts: ``terminate`` (until DONE) and ``mirror`` (the wait after it).
        self.parts: dict[str, list[float]] = defaultdict(list)

    def __call__(self, event: Event) -> None:
        if event.step is None:
            return
        # A step's start and end come from the thread that called it; its actions may come from
        # its worker threads.
        key = (event.step, threading.get_ident())
        with self._lock:
            if event.kind is EventKind.STEP_STARTED:
                self._open[key] = event.time
            elif (event.kind is EventKind.ACTION and event.step == "terminate_b"
                  and event.data.get("outcome") == "done" and event.target):
                self._terminated[event.target] = event.time
            elif event.kind is EventKind.STEP_FINISHED and key in self._open:
                started = self._open.pop(key)
                self.seconds[event.step].append(event.time - started)
                for target in event.data.get("done", ()) if event.step == "terminate_b" else ():
                    done = self._terminated.pop(target, None)
                    if done is not None:
                        self.parts["terminate"].append(done - started)
                        self.parts["mirror"].append(event.time - done)


def production_notes(plan: Plan, report: Report | None, timer: StepTimer, *,
                     production_speed: bool, timeouts: Timeouts, mode: str) -> str:
    """What an operator would see running this failback in production."""
    lines = []
    if production_speed:
        lines.append("This rehearsal ran with Ceph's default rbd-mirror intervals: its waits are")
        lines.append("what production shows, plus your data's copy time and your VMs' shutdowns.")
    else:
        lines.append("This rehearsal ran with the lab's fast rbd-mirror intervals; production runs")
        lines.append("with Ceph's defaults (rehearse with them: --production-speed):")
        width = max(len(k) for k in TEST_SPEED_SETTINGS)
        for key, fast in TEST_SPEED_SETTINGS.items():
            lines.append(f"  {key:<{width}}  lab {fast:>2} s, Ceph default "
                         f"{PRODUCTION_DEFAULTS.get(key, '?'):>2} s")
    lines.append("")
    lines.append("Each step's time here (per call: steps 3-6 run once per VM when pipelined),")
    lines.append("and what its wait depends on:")

    def took(times: list[float]) -> str:
        return (f"{statistics.median(times):.1f}s median, {max(times):.1f}s max" if times
                else "not run")

    for n, step in enumerate(WAITS, 1):
        lines.append(f"  {n}. {step:<12} {took(timer.seconds.get(step, []))}")
        if step == "terminate_b" and timer.parts.get("terminate"):
            lines.append(f"     {'':<12} until DONE {took(timer.parts['terminate'])}; then "
                         f"mirrored to A {took(timer.parts['mirror'])}")
        lines += textwrap.wrap(WAITS[step], width=96, initial_indent=" " * 18,
                               subsequent_indent=" " * 18)
    if report is not None and report.downtimes():
        d = report.downtimes()
        lines += textwrap.wrap(
            f"Downtime per VM here: median {statistics.median(d):.1f}s, max {max(d):.1f}s (from "
            "the terminate request on B to RUNNING on A). In production, add your VMs' real "
            "shutdown and boot times and the slower status reports and promote retries.",
            width=96, initial_indent="  ", subsequent_indent="  ")
    if mode == "snapshot":
        lines += textwrap.wrap(
            "Snapshot mode: B's writes since its last mirror snapshot are not on A; the failback "
            "takes one after each VM stops and waits for it to be copied.",
            width=96, initial_indent="  ", subsequent_indent="  ")
    lines.append("")
    lines.append("Limits the waits ran under (failback.Timeouts, in seconds; [timeouts] in the")
    lines.append("configuration file):")
    defaults = Timeouts()
    for name in ("settle", "resync", "mirror", "promote", "terminate", "resume", "writer"):
        lines.append(f"  {name:<10} rehearsal {getattr(timeouts, name):>6g}, library default "
                     f"{getattr(defaults, name):>6g}")
    lines.append("  Size resync for your largest image at your inter-site bandwidth.")
    lines.append("")
    if plan.blockers:
        lines.append("Checks that stopped (or would stop) this failback:")
        lines += [f"  - {b}" for b in plan.blockers]
    else:
        lines.append("No check stopped this failback. On real sites the plan also stops for:")
        for kind, why in CHECKS.items():
            lines += textwrap.wrap(f"- {kind}: {why}", width=96, initial_indent="  ",
                                   subsequent_indent="    ")
        lines.append(f"  Only these can be waived: {', '.join(sorted(WAIVABLE))}.")
    if plan.warnings:
        lines.append("Warnings the plan gave:")
        lines += [f"  - {w}" for w in plan.warnings]
    return "\n".join(lines)


def rehearse(options: RehearsalOptions) -> int:
    """Run one rehearsal; returns the exit status (0 when A ends with B's last writes)."""
    o = options
    disks = [o.disks or (2 if i == 0 else 1) for i in range(o.vms)]
    written = sum(disks) * o.write_size * 2
    if o.reuse:
        lab = Lab.load(o.reuse)
        if lab.mode != o.mode:
            print(f"   note: the lab at {o.reuse} mirrors in {lab.mode} mode; using that")
        t = _say(f"using the lab at {lab.directory} ({lab.mode} mirroring)")
    else:
        # The in-memory OSDs hold everything written (and the journals): size them for it.
        osd = max(2 << 30, 4 * written + (1 << 30))
        lab = Lab(o.directory, mode=o.mode, ips=o.ips, test_speed=not o.production_speed,
                  osd_bytes=osd)
        speed = "Ceph's default" if o.production_speed else "fast (test)"
        t = _say(f"starting a two-site Ceph lab ({o.mode} mirroring, {speed} rbd-mirror "
                 f"intervals) in {lab.directory}")
        lab.up()
    if o.second_pool:
        lab.add_pool(o.second_pool)
    pools = lab.pools if o.second_pool else [lab.pool]
    print(f"   up in {time.monotonic() - t:.1f}s: {lab.site_a.name} on {lab.site_a.ip}, "
          f"{lab.site_b.name} on {lab.site_b.ip}, pool(s) {', '.join(pools)}, rbd-mirror on "
          "both")
    world = World(lab, delays=Delays.uniform(o.oned_delay)).start()
    try:
        print(f"   OpenNebula stand-ins: {world.oned_a.endpoint} (A), {world.oned_b.endpoint} (B)")
        extra = f" (vm-0 with one more in pool {o.second_pool!r})" if o.second_pool else ""
        t = _say(f"site A: {o.vms} VMs, {sum(disks)} persistent RBD disks of "
                 f"{o.image_size / (1 << 20):g} MiB{extra}, {o.write_size / (1 << 10):g} KiB "
                 "written to each")
        for i in range(o.vms):
            line = f"vm-{i} written on site A\n".encode()
            world.add_vm(f"vm-{i}", disks=disks[i], size=o.image_size,
                         data=(line * (o.write_size // len(line) + 1))[: o.write_size],
                         other_pool=o.second_pool if i == 0 else None)
        world.wait_replicated(timeout=600)
        print(f"   mirrored to site B in {time.monotonic() - t:.1f}s")
        hooks = _service(world) if o.service and o.vms >= 2 else []

        _say(f"disaster ({o.disaster}): VMs fail over to site B and write new data there"
             + (" (B keeps a DONE VM per VM from an earlier DR test)" if o.dr_history else ""))
        line = b"written on site B after the failover\n"
        world.disaster(o.disaster, new_data=(line * (o.write_size // len(line) + 1))[
            : o.write_size], history_b=o.dr_history)
        expected = world.expected_checksums()

        journal = unique_journal("cfb-demo-")
        timeouts = Timeouts(poll=0.5) if lab.test_speed is False else Timeouts(
            settle=60, resync=600, mirror=300, promote=120, terminate=120, resume=120, poll=0.5)
        timer = StepTimer()
        progress = Progress(sys.stdout)
        fb = Failback(world.site("a"), world.site("b"), pools, journal=journal,
                      timeouts=timeouts, concurrency=o.concurrency,
                      vm_concurrency=o.vm_concurrency, listeners=[progress, timer],
                      hooks=hooks)
        _say("the VM/image mapping between the sites")
        for pair in fb.pairs:
            print(f"   VM {pair.vm_b.id} on {fb.site_b.name} -> VM {pair.vm_a.id} on "
                  f"{fb.site_a.name}: {', '.join(pair.images)}")
        _show(fb.status())

        _say("plan (nothing changed yet)")
        plan = fb.plan()
        _show(plan)
        if not plan.ok:
            print("   the plan has blockers: stopping")
            _say("what to expect in production")
            print(_indent(production_notes(plan, None, timer, production_speed=o.production_speed,
                                           timeouts=timeouts, mode=lab.mode)))
            return 1

        t = _say("failback" + ("" if o.pipeline else " (not pipelined)"))
        with progress, progress.logs_above():  # log lines go above the display
            report = fb.run(pipeline=o.pipeline)
        print(f"\n   failback took {time.monotonic() - t:.1f}s")
        _say("report")
        _show(report)
        _say("both sites now")
        _show(fb.status())
        ok = all(lab.checksum("a", i) == c for i, c in expected.items())
        _say("what to expect in production")
        print(_indent(production_notes(plan, report, timer, production_speed=o.production_speed,
                                       timeouts=timeouts, mode=lab.mode)))
        print(f"\n== data check: site A holds site B's last writes for all {len(expected)} "
              f"images: {'YES' if ok else 'NO'}")
        print(f"   journal: {journal}")
        return 0 if ok and report.complete else 1
    finally:
        world.stop()
        if o.reuse:
            print(f"\nthe lab at {lab.directory} is left running (it was up before)")
        elif o.keep:
            print(f"\nlab kept at {lab.directory} "
                  f"(python -m ceph_failback.lab down --dir {lab.directory})")
        else:
            t = _say("tearing the lab down")
            lab.down()
            print(f"   down in {time.monotonic() - t:.1f}s; lab daemons left: "
                  f"{lab.running_pids() or 'none'}")


def _service(world: World) -> list[Hook]:
    """vm-0 and the others as a OneFlow service on A (``shop``: ``db`` <- ``app``, with the
    ready status gate and guests that report READY=YES), and the rehearsal's two hooks."""
    db, *app = world.vms
    world.oned_a.add_service("shop", {"db": [db.vm_a], "app": [v.vm_a for v in app]},
                             parents={"app": ["db"]}, ready_status_gate=True)
    for vm in world.vms:
        world.oned_a.guest_reports_ready(vm.vm_a, after=1.0)
    print(f"   OneFlow service 'shop' on A: db = {db.name}, app = "
          f"{', '.join(v.name for v in app)} (app starts after db, once db's guest is READY)")
    say = "import os; print(os.environ['FAILBACK_WHEN'], os.environ['FAILBACK_GROUP'], "
    hooks = [Hook("before_terminate", [sys.executable, "-c", say + "'drained')"],
                  group="shop/app", name="drain-app", timeout=30),
             Hook("after_resume", [sys.executable, "-c", say + "'database checked')"],
                  group="shop/db", name="check-db", timeout=30)]
    print("   hooks: drain-app (before the app stops on B), check-db (after the database is "
          "up on A)")
    return hooks


def run(mode: MirrorKind = "journal", vms: int = 3, disaster: Disaster = "unplanned",
        keep: bool = False) -> int:
    """The demo with its defaults (see :func:`rehearse` for every option)."""
    return rehearse(RehearsalOptions(mode=mode, vms=vms, disaster=disaster, keep=keep))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The rehearsal's options (shared by the demo and ``python -m ceph_failback.lab rehearse``)."""
    d = RehearsalOptions()
    parser.add_argument("--mode", choices=["journal", "snapshot"], default=d.mode,
                        help="rbd mirroring mode (default journal)")
    parser.add_argument("--vms", type=int, default=d.vms, help=f"number of VMs (default {d.vms})")
    parser.add_argument("--disks", type=int, default=None,
                        help="disks per VM (default: 2 for the first VM, 1 for the others)")
    parser.add_argument("--image-size", type=parse_size, default=d.image_size, metavar="SIZE",
                        help="each disk's size, e.g. 16M, 1G (default 16M)")
    parser.add_argument("--write", type=parse_size, default=d.write_size, metavar="SIZE",
                        dest="write_size",
                        help="data written to each disk on A, then again on B after the "
                             "disaster (default 256K)")
    parser.add_argument("--disaster", choices=["unplanned", "planned"], default=d.disaster,
                        help="unplanned: B force-promoted while A is down (A resyncs); planned: "
                             "a DR test, A demoted first (nothing resyncs)")
    parser.add_argument("--production-speed", action="store_true",
                        help="keep Ceph's default rbd-mirror intervals (slower, like production)")
    parser.add_argument("--oned-delay", type=float, default=d.oned_delay, metavar="SECONDS",
                        help="seconds each OpenNebula state change takes: shutdown, epilog, boot "
                             f"(default {d.oned_delay:g})")
    parser.add_argument("--ips", type=parse_ips, default=d.ips, metavar="IP_A,IP_B",
                        help="loopback addresses of the two sites (default "
                             f"{d.ips[0]},{d.ips[1]})")
    parser.add_argument("--dir", dest="directory", default=None,
                        help="the lab's directory (default: a new temporary one)")
    parser.add_argument("--lab", dest="reuse", default=None, metavar="DIR",
                        help="use a lab already up (python -m ceph_failback.lab up --dir DIR) "
                             "and leave it running; --mode, --ips and --production-speed are "
                             "the lab's")
    parser.add_argument("--concurrency", type=int, default=d.concurrency,
                        help=f"images worked on at once (default {d.concurrency})")
    parser.add_argument("--vm-concurrency", type=int, default=d.vm_concurrency,
                        help=f"VMs moved through steps 3-6 at once (default {d.vm_concurrency})")
    parser.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                        help="run each step for every VM before the next step")
    parser.add_argument("--second-pool", metavar="POOL", default=None,
                        help="a second mirrored pool (a second Ceph datastore): vm-0 gets a disk "
                             "there and the failback covers both pools")
    parser.add_argument("--dr-history", action="store_true",
                        help="site B keeps a DONE VM per VM from an earlier DR test, using the "
                             "same images: the failback must pair only the live ones")
    parser.add_argument("--no-service", dest="service", action="store_false",
                        help="no OneFlow service (start order, readiness) and no hooks: every "
                             "VM moves as soon as its images are ready")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")


def options_from(args: argparse.Namespace) -> RehearsalOptions:
    """The :class:`RehearsalOptions` of parsed arguments."""
    if args.vms < 1:
        raise ConfigurationError("--vms must be at least 1")
    if args.disks is not None and args.disks < 1:
        raise ConfigurationError("--disks must be at least 1")
    if args.write_size > args.image_size:
        raise ConfigurationError("--write cannot exceed --image-size")
    return RehearsalOptions(
        mode=cast(MirrorKind, args.mode), vms=args.vms, disks=args.disks,
        image_size=args.image_size, write_size=args.write_size,
        disaster=cast(Disaster, args.disaster), production_speed=args.production_speed,
        oned_delay=args.oned_delay, ips=args.ips, directory=args.directory, reuse=args.reuse,
        keep=args.keep, concurrency=args.concurrency, vm_concurrency=args.vm_concurrency,
        pipeline=args.pipeline, second_pool=args.second_pool, dr_history=args.dr_history,
        service=args.service)


def main(argv: list[str] | None = None, prog: str = "python -m ceph_failback.lab.demo") -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return rehearse(options_from(args))
    except FailbackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
