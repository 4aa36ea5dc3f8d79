"""The demo: a full failback rehearsal on a local two-site lab.

``python -m ceph_failback.demo`` brings up two real single-node Ceph clusters with rbd-mirror
between them and one OpenNebula stand-in per site, creates VMs with persistent RBD disks holding
data on site A, simulates a disaster (unplanned by default: site B force-promoted, the VMs
recreated there and writing new data), then runs the failback with :class:`Failback` (plan,
progress, report with per-VM downtime), checks that site A holds B's last writes, and tears
everything down.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from .errors import FailbackError
from .failback import Event, EventKind, Failback, Timeouts
from .lab import Lab, MirrorKind
from .lab.oned import Delays
from .lab.world import Disaster, World

log = logging.getLogger("ceph_failback.demo")


def _say(text: str) -> float:
    print(f"\n-> {text}", flush=True)
    return time.monotonic()


def _progress(event: Event) -> None:
    if event.kind is EventKind.STEP_STARTED:
        print(f"\n   [{event.step}] {event.message}", flush=True)
    elif event.kind is EventKind.ACTION:
        print(f"      {event.message}", flush=True)
    elif event.kind is EventKind.WARNING:
        print(f"      ! {event.message}", flush=True)
    elif event.kind is EventKind.IMAGE_PROGRESS and event.data.get("percent") == 100:
        print(f"      {event.message}", flush=True)


def _table(fb: Failback) -> None:
    status = fb.status()
    a, b = fb.site_a.name, fb.site_b.name
    print(f"   {'image':<10} {a:<48} {b}")
    for name, cell in status["images"].items():
        print(f"   {name:<10} {cell[a]:<48} {cell[b]}")
    print(f"   {'VM (B->A)':<10} {a:<48} {b}")
    for pair, cell in status["vms"].items():
        print(f"   {pair:<10} {cell[a]:<48} {cell[b]}")


def run(mode: MirrorKind = "journal", vms: int = 3, disaster: Disaster = "unplanned",
        keep: bool = False) -> int:
    """Run the demo; returns the exit status (0 when A ends with B's last writes)."""
    lab = Lab(mode=mode)
    t = _say(f"starting a two-site Ceph lab ({mode} mirroring) in {lab.directory}")
    lab.up()
    print(f"   up in {time.monotonic() - t:.1f}s: {lab.site_a.name} on {lab.site_a.ip}, "
          f"{lab.site_b.name} on {lab.site_b.ip}, pool {lab.pool!r}, rbd-mirror on both")
    world = World(lab, delays=Delays.uniform(0.5)).start()
    try:
        print(f"   OpenNebula stand-ins: {world.oned_a.endpoint} (A), {world.oned_b.endpoint} (B)")
        t = _say(f"site A: {vms} VMs with persistent RBD disks holding data")
        for i in range(vms):
            world.add_vm(f"vm-{i}", disks=2 if i == 0 else 1, size=16 << 20,
                         data=f"vm-{i} written on site A\n".encode() * 4096)
        world.wait_replicated()
        print(f"   mirrored to site B in {time.monotonic() - t:.1f}s")

        _say(f"disaster ({disaster}): VMs fail over to site B and write new data there")
        world.disaster(disaster, new_data=b"written on site B after the failover\n" * 8192)
        expected = world.expected_checksums()

        journal = Path(tempfile.mkdtemp(prefix="cfb-demo-")) / "failback.jsonl"
        fb = Failback(world.site("a"), world.site("b"), lab.pool, journal=journal,
                      timeouts=Timeouts(settle=60, resync=600, mirror=300, promote=120,
                                        terminate=120, resume=120, poll=0.5),
                      listeners=[_progress])
        _say("the VM/image mapping between the sites")
        for pair in fb.pairs:
            print(f"   VM {pair.vm_b.id} on {fb.site_b.name} -> VM {pair.vm_a.id} on "
                  f"{fb.site_a.name}: {', '.join(pair.images)}")
        _table(fb)

        _say("plan (nothing changed yet)")
        plan = fb.plan()
        print("   " + str(plan).replace("\n", "\n   "))
        if not plan.ok:
            print("   the plan has blockers: stopping")
            return 1

        t = _say("failback")
        report = fb.run()
        print(f"\n   failback took {time.monotonic() - t:.1f}s")
        _say("report")
        print("   " + str(report).replace("\n", "\n   "))
        _say("both sites now")
        _table(fb)
        ok = all(lab.checksum("a", i) == c for i, c in expected.items())
        print(f"\n== data check: site A holds site B's last writes for all {len(expected)} "
              f"images: {'YES' if ok else 'NO'}")
        print(f"   journal: {journal}")
        return 0 if ok and report.complete else 1
    finally:
        world.stop()
        if keep:
            print(f"\nlab kept at {lab.directory} (python -m ceph_failback.lab down --dir ...)")
        else:
            t = _say("tearing the lab down")
            lab.down()
            print(f"   down in {time.monotonic() - t:.1f}s; lab daemons left: "
                  f"{lab.running_pids() or 'none'}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m ceph_failback.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["journal", "snapshot"], default="journal",
                        help="rbd mirroring mode (default journal)")
    parser.add_argument("--vms", type=int, default=3, help="number of VMs (default 3)")
    parser.add_argument("--disaster", choices=["unplanned", "planned"], default="unplanned",
                        help="unplanned: B force-promoted; planned: a DR test (A demoted first)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args.mode, args.vms, args.disaster, args.keep)
    except FailbackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
