"""The benchmark: ``Failback.run()`` against the documented procedure, per-VM downtime, and scale.

``python -m benchmarks.bench`` (``nox -s bench``) runs, on this machine's two-site Ceph lab with
the oned stand-ins:

1. for each kind (journal mode at the lab's test-speed rbd-mirror intervals, then journal and
   snapshot mode at Ceph's default intervals) and each N (1, 10, 50 by default): both contenders,
   alternating which goes first, each on a fresh lab with the same scenario (N VMs with one
   persistent image each, holding data; an unplanned disaster; new writes on B): the baseline
   (:mod:`benchmarks.baseline`, the documented procedure scripted with the ``rbd`` CLI and
   ``onevm``) and ``Failback.run()`` with its defaults. After the ``Failback`` run at lab speed
   in journal mode, the floor is measured on the same lab
   (:func:`benchmarks.scenario.measure_floor`);
2. a DR test (planned disaster: A demoted before the failover) failed back by ``Failback.run()``:
   how many images it resyncs (the target is none);
3. ``plan()`` and ``status()`` over a pool of 1,000 mirrored images, timed in a child process
   with its peak memory (:mod:`benchmarks.scale`).

Per-VM downtime is read from the stand-ins' clocks for both contenders alike (terminate accepted
on B -> RUNNING on A); librbd, RADOS-command, XML-RPC and ``rbd`` CLI calls are counted per step.
It writes ``bench.json``, ``downtime.png`` and ``summary.rst``/``summary.md`` to the results
folder and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ceph_failback.ceph.connection import import_bindings
from ceph_failback.failback import Failback
from ceph_failback.failback.journal import Journal
from ceph_failback.lab import Lab, unique_journal
from ceph_failback.lab.cluster import TEST_SPEED_SETTINGS
from ceph_failback.lab.lab import MirrorKind
from ceph_failback.lab.world import World

from . import output
from .baseline import run_baseline
from .instrument import CallCounter, StandInClock, downtime, instrument_failback
from .scale import build_scale_world, one_vm_failback, probe_in_child
from .scenario import Sizes, allocated_bytes, build_world, measure_floor, wait_all_running

log = logging.getLogger("benchmarks.bench")

RESULTS = Path(__file__).resolve().parent / "results"


def _say(text: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {text}", flush=True)


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    return {"median": statistics.median(values) if values else None,
            "max": max(values) if values else None,
            "min": min(values) if values else None}


def _per_image(calls: dict[str, dict[str, int]], n: int) -> dict[str, dict[str, float]]:
    return {st: {kind: round(count / n, 2) for kind, count in kinds.items()}
            for st, kinds in calls.items()}


def _phases(journal: Journal, world: World, site_a: str, site_b: str) -> dict[str, Any]:
    """Median seconds of each phase of a VM's downtime, from the Failback journal."""
    names = {
        "terminate (VM to DONE)": ("terminate_b", "intent", "terminate_b", "done"),
        "mirrored check": ("terminate_b", "done", "terminate_b", "mirrored"),
        "demote on B": ("terminate_b", "mirrored", "demote_b", "done"),
        "promote on A (retried)": ("demote_b", "done", "promote_a", "done"),
        "resume (VM to RUNNING)": ("promote_a", "done", "resume_a", "done"),
    }
    out: dict[str, Any] = {}
    for label, (s1, e1, s2, e2) in names.items():
        values = []
        for p in world.vms:
            image = f"image:{p.images[0]}"
            vm_b, vm_a = f"vm:{site_b}:{p.vm_b}", f"vm:{site_a}:{p.vm_a}"
            t1 = image if s1 in ("demote_b", "promote_a") else vm_b
            t2 = image if s2 in ("demote_b", "promote_a") else (vm_a if s2 == "resume_a" else vm_b)
            r1, r2 = journal.last(step=s1, event=e1, target=t1), journal.last(step=s2, event=e2,
                                                                             target=t2)
            if r1 is not None and r2 is not None:
                values.append(r2.time - r1.time)
        out[label] = statistics.median(values) if values else None
    attempts = [int(r.data.get("attempts", 0)) for r in journal.find(step="promote_a",
                                                                     event="done")]
    out["promote attempts (median)"] = statistics.median(attempts) if attempts else None
    return out


def contender_run(contender: str, n: int, args: argparse.Namespace, *,
                  mode: MirrorKind = "journal", speed: str = "lab") -> dict[str, Any]:
    """One contender on a fresh lab in mirroring ``mode`` with rbd-mirror's ``speed``
    (``lab``: the lab's test-speed intervals; ``default``: Ceph's defaults); returns its
    figures. The floor is measured at lab speed in journal mode only."""
    sizes = Sizes(args.image_mib << 20, args.data_a_mib << 20, args.data_b_mib << 20)
    record: dict[str, Any] = {"contender": contender, "n": n, "mode": mode, "speed": speed}
    t = time.monotonic()
    lab = Lab(ips=args.ips, mode=mode, test_speed=speed == "lab").up()
    record["lab_up_seconds"] = time.monotonic() - t
    try:
        t = time.monotonic()
        world, expected = build_world(lab, n, "unplanned", sizes)
        record["setup_seconds"] = time.monotonic() - t
        try:
            clock_a, clock_b = StandInClock(world.oned_a), StandInClock(world.oned_b)
            counter = CallCounter()
            source_bytes = allocated_bytes(lab, "b", world.all_images())
            if contender == "baseline":
                started = time.time()
                res = run_baseline(world, world.vms, counter, poll=args.poll)
                returned = time.time()
                wait_all_running(world, world.vms)
                resynced = res.resynced
                record["steps"] = res.steps
                record["promote_attempts"] = res.promote_attempts
                record["status_polls"] = res.status_polls
            else:
                journal = Journal(unique_journal("cfb-bench-"))
                fb = Failback(world.site("a"), world.site("b"), lab.pool, journal=journal)
                instrument_failback(fb, counter)
                started = time.time()
                report = fb.run()
                returned = time.time()
                record["complete"] = report.complete
                resynced = [i.name for i in report.images if i.resynced]
                record["phases"] = _phases(journal, world, fb.site_a.name, fb.site_b.name)
                record["journal_downtime"] = report.to_dict()["downtime"]
            ups = [clock_a.first_state(p.vm_a, "RUNNING", after=started) for p in world.vms]
            finished = max([returned, *[u for u in ups if u is not None]])
            per_vm = [downtime(clock_b, clock_a, p.vm_b, p.vm_a) for p in world.vms]
            downs = [d for d in per_vm if d is not None]
            record.update({
                "wall_seconds": finished - started,
                "downtime": {**_stats(downs), "per_vm": per_vm},
                "images_resynced": len(resynced),
                "bytes_resynced": sum(source_bytes.get(i, 0) for i in resynced),
                "calls": counter.by_step(),
                "calls_per_image": _per_image(counter.by_step(), n),
                "calls_detail": counter.detail(),
            })
            record["data_ok"] = all(lab.checksum("a", i) == c for i, c in expected.items())
            if (contender == "failback" and args.floor_images > 0 and mode == "journal"
                    and speed == "lab"):
                t = time.monotonic()
                record["floor"] = measure_floor(lab, args.floor_images, sizes=sizes)
                record["floor_seconds"] = time.monotonic() - t
        finally:
            world.stop()
    finally:
        lab.down()
    return record


def dr_test_run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """A DR test's failback (A demoted before the failover): images resynced (target: none)."""
    sizes = Sizes(args.image_mib << 20, args.data_a_mib << 20, args.data_b_mib << 20)
    lab = Lab(ips=args.ips).up()
    try:
        world, expected = build_world(lab, n, "planned", sizes)
        try:
            clock_a, clock_b = StandInClock(world.oned_a), StandInClock(world.oned_b)
            journal = Journal(unique_journal("cfb-bench-"))
            fb = Failback(world.site("a"), world.site("b"), lab.pool, journal=journal)
            started = time.time()
            report = fb.run()
            wall = time.time() - started
            per_vm = [downtime(clock_b, clock_a, p.vm_b, p.vm_a) for p in world.vms]
            return {
                "n": n, "complete": report.complete, "wall_seconds": wall,
                "images_resynced": sum(1 for i in report.images if i.resynced),
                "downtime": {**_stats([d for d in per_vm if d is not None]), "per_vm": per_vm},
                "data_ok": all(lab.checksum("a", i) == c for i, c in expected.items()),
            }
        finally:
            world.stop()
    finally:
        lab.down()


def scale_run(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """plan() and status() over ``n`` mirrored images (and ``n`` DONE VMs of history on B), in
    a child process; then one VM's
    failback inside that pool (:func:`~benchmarks.scale.one_vm_failback`)."""
    lab = Lab(ips=args.ips).up()
    try:
        timings: dict[str, float] = {}
        world = build_scale_world(lab, n, sync_concurrency=args.scale_sync_concurrency,
                                  timings=timings, history=n, timeout=max(900.0, 0.3 * n))
        try:
            result = probe_in_child(lab, world)
            result["setup_seconds"] = timings
            result["one_vm"] = one_vm_failback(lab, world)
            return result
        finally:
            world.stop()
    finally:
        lab.down()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="1,10,50",
                        help="VM counts, comma-separated (default 1,10,50)")
    parser.add_argument("--kinds", default="journal@lab,journal@default,snapshot@default",
                        help="the downtime runs' mirroring modes and rbd-mirror intervals, "
                             "MODE@SPEED comma-separated: MODE journal or snapshot, SPEED lab "
                             "(the lab's test-speed settings) or default (Ceph's defaults); "
                             "default journal@lab,journal@default,snapshot@default")
    parser.add_argument("--large", type=int, default=0,
                        help="also run this larger N (e.g. 100); off by default")
    parser.add_argument("--ips", default="127.0.0.6,127.0.0.7",
                        help="loopback addresses of the lab's two sites (default "
                             "127.0.0.6,127.0.0.7; the demo uses .2/.3)")
    parser.add_argument("--poll", type=float, default=1.0,
                        help="the baseline's poll interval in seconds (default 1)")
    parser.add_argument("--floor-images", type=int, default=5,
                        help="images the floor is measured on (default 5; 0: skip)")
    parser.add_argument("--dr-n", type=int, default=10,
                        help="VMs in the DR-test failback (default 10; 0: skip)")
    parser.add_argument("--scale", type=int, default=1000,
                        help="images in the plan()/status() scale test (default 1000; 0: skip)")
    parser.add_argument("--scale-sync-concurrency", type=int, default=32,
                        help="rbd_mirror_concurrent_image_syncs while the scale pool is first "
                             "mirrored (setup only; default 32)")
    parser.add_argument("--image-mib", type=int, default=8, help="image size (default 8 MiB)")
    parser.add_argument("--data-a-mib", type=int, default=2,
                        help="data written on A before the disaster (default 2 MiB)")
    parser.add_argument("--data-b-mib", type=int, default=1,
                        help="data written on B after the failover (default 1 MiB)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help=f"results folder (default {RESULTS})")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    args.ns = [int(x) for x in str(args.n).split(",") if x.strip()]
    raw, args.kinds = str(args.kinds), []
    for kind in (x.strip() for x in raw.split(",") if x.strip()):
        mode, _, speed = kind.partition("@")
        if mode not in ("journal", "snapshot") or speed not in ("lab", "default"):
            parser.error(f"--kinds: {kind!r} is not MODE@SPEED (journal or snapshot @ lab or "
                         "default)")
        if (mode, speed) not in args.kinds:
            args.kinds.append((mode, speed))
    if args.ns and not args.kinds:
        parser.error("--kinds: none given")
    if args.large:
        args.ns.append(args.large)
    ips = [x.strip() for x in str(args.ips).split(",")]
    if len(ips) != 2:
        parser.error("--ips takes two addresses")
    args.ips = (ips[0], ips[1])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _, rbd = import_bindings()
    command = "nox -s bench" + (" -- " + shlex.join(argv if argv is not None else sys.argv[1:])
                                if (argv if argv is not None else sys.argv[1:]) else "")
    began = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "command": command,
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "librbd": ".".join(map(str, rbd.RBD().version())),
                        "kernel": platform.release()},
            "settings": {"ns": args.ns, "ips": list(args.ips), "baseline_poll": args.poll,
                         "image_mib": args.image_mib, "data_a_mib": args.data_a_mib,
                         "data_b_mib": args.data_b_mib, "floor_images": args.floor_images,
                         "stand_in_delays": "Delays() defaults: 0.2 s per transition",
                         "kinds": [f"{m}@{sp}" for m, sp in args.kinds],
                         "rbd_mirror": {"lab": "the lab's test-speed settings "
                                               f"({TEST_SPEED_SETTINGS})",
                                        "default": "Ceph's defaults"},
                         "dr_test_and_scale": "journal mode, lab speed"},
        },
        "runs": [],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    try:
        combos = [(mode, speed, n) for mode, speed in args.kinds for n in args.ns]
        for index, (mode, speed, n) in enumerate(combos):
            order = ("baseline", "failback") if index % 2 == 0 else ("failback", "baseline")
            for contender in order:
                _say(f"N={n}, {mode} mode, {speed} speed: {contender} (fresh lab on "
                     f"{args.ips[0]}/{args.ips[1]})")
                run = contender_run(contender, n, args, mode=mode, speed=speed)
                results["runs"].append(run)
                _say(f"  wall {run['wall_seconds']:.1f}s, downtime median "
                     f"{run['downtime']['median']:.2f}s max {run['downtime']['max']:.2f}s, "
                     f"resynced {run['images_resynced']}, data ok {run['data_ok']}"
                     + (f", floor median {run['floor']['median']:.2f}s" if "floor" in run
                        else ""))
        if args.dr_n > 0:
            _say(f"DR test: N={args.dr_n}, planned disaster, Failback.run()")
            results["dr_test"] = dr_test_run(args.dr_n, args)
            _say(f"  images resynced: {results['dr_test']['images_resynced']}")
        if args.scale > 0:
            _say(f"scale: plan() and status() over {args.scale} mirrored images")
            results["scale"] = scale_run(args.scale, args)
            _say(f"  plan {results['scale']['plan_seconds']:.2f}s, status "
                 f"{results['scale']['status_seconds']:.2f}s, peak RSS "
                 f"{results['scale']['peak_rss_mb']:.0f} MB")
            reads = results["scale"].get("per_vm_reads") or {}
            if reads:
                _say(f"  one VM's reads: infos {reads['pool_listing_infos_s']:.3f}s listed vs "
                     f"{reads['per_image_infos_s']:.3f}s per image; statuses "
                     f"{reads['pool_listing_statuses_s']:.3f}s vs "
                     f"{reads['per_image_statuses_s']:.3f}s")
    finally:
        results["meta"]["seconds"] = time.monotonic() - began
        results["targets"] = output.targets(results)
        output.write_all(results, args.results)
    print()
    print(output.text_table(results))
    print(f"\nresults: {args.results} ({results['meta']['seconds'] / 60:.1f} min)")
    return 0 if all(t["met"] for t in results["targets"] if t["met"] is not None) else 1


if __name__ == "__main__":
    sys.exit(main())
