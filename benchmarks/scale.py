"""Scale: ``plan()`` and ``status()`` over a pool of many mirrored images (1,000 by default).

The parent builds the world on a fresh lab: ``n`` tiny images on A, one VM each (POWEROFF on A),
mirrored to B, then an unplanned disaster (each image force-promoted on B, registered in B's
stand-in and used by a RUNNING VM there), the way :meth:`World.disaster` does, with the per-image
work spread over a few threads so that setting up 1,000 images stays quick.

The measurement runs in a child process (``python -m benchmarks.scale --probe ...``) so that its
peak memory (``ru_maxrss``) is the failback's alone: a process that imports the library, connects
to both sites and calls ``plan()`` then ``status()`` on a new :class:`Failback` (cold: the scope is
read by ``plan()``), each timed, with every librbd/RADOS/XML-RPC call counted; the peak memory is
read before a last pass under ``tracemalloc`` (Python's own peak), whose overhead would count.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ceph_failback.ceph.connection import CephSite, import_bindings
from ceph_failback.failback import Failback, Site
from ceph_failback.lab import FAILBACK_CLIENT, Lab, unique_journal
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import Disaster, VMPair, World
from ceph_failback.opennebula.site import OpenNebulaSite

from .instrument import CallCounter, StandInClock, downtime, instrument_failback

__all__ = ["build_scale_world", "one_vm_failback", "probe_in_child"]

log = logging.getLogger("benchmarks.scale")

FIRST_IMAGE_ID = 20000
SESSION_ENV = "CFB_BENCH_ONE_SESSION"


def build_scale_world(lab: Lab, n: int, *, workers: int = 8, timeout: float = 900.0,
                      sync_concurrency: int | None = None, kind: Disaster = "planned",
                      timings: dict[str, float] | None = None, history: int = 0) -> World:
    """``n`` VMs with one tiny image each, mirrored to B, after a disaster (``planned`` by
    default: see the module docstring); ``history`` DONE VMs on B, older than the live ones,
    each of which used one of the images (earlier DR tests)."""
    _, rbd = import_bindings()
    timings = timings if timings is not None else {}
    started = time.monotonic()
    if sync_concurrency:
        for cluster in lab.sites:
            cluster.admin().mon_command({"prefix": "config set", "who": "client",
                                         "name": "rbd_mirror_concurrent_image_syncs",
                                         "value": str(sync_concurrency)})
    world = World(lab, delays=Delays.uniform(0.0)).start()
    try:
        ids = list(range(FIRST_IMAGE_ID, FIRST_IMAGE_ID + n))
        names = [f"one-{i}" for i in ids]

        def create(name: str) -> None:
            lab.create_image(name, 1 << 20, data=f"{name}\n".encode())

        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(create, names))
        timings["create"] = time.monotonic() - started
        for image_id, name in zip(ids, names, strict=True):
            world.oned_a.add_image(f"vm-{image_id}-disk", persistent=True, image_id=image_id)
            vm_a = world.oned_a.add_vm(f"vm-{image_id}", disks=[image_id], state="POWEROFF")
            world.vms.append(VMPair(f"vm-{image_id}", vm_a, None, (name,)))
        # Mirrored: every image replaying on B.
        deadline = time.monotonic() + timeout
        with lab.site("b").admin().ioctx(lab.pool) as ioctx:
            while True:
                replaying = sum(1 for s in rbd.RBD().mirror_image_status_list(ioctx)
                                if s.get("up") and s.get("state") ==
                                rbd.MIRROR_IMAGE_STATUS_STATE_REPLAYING)
                log.info("scale: %d/%d images replaying on B after %.0fs", replaying, n,
                         time.monotonic() - started)
                if replaying >= n:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"only {replaying}/{n} images replaying on B")
                time.sleep(2)
        timings["mirrored"] = time.monotonic() - started

        def demote_a(name: str) -> None:
            with lab.site("a").admin().ioctx(lab.pool) as ioctx:
                image = rbd.Image(ioctx, name)
                try:
                    image.mirror_image_demote()
                finally:
                    image.close()

        def promote_b(name: str) -> None:
            if kind == "planned":
                lab.promote_when_possible("b", name, timeout=timeout)
                return
            with lab.site("b").admin().ioctx(lab.pool) as ioctx:
                image = rbd.Image(ioctx, name)
                try:
                    image.mirror_image_promote(True)  # the disaster's failover, not the failback
                finally:
                    image.close()

        with ThreadPoolExecutor(workers) as ex:
            if kind == "planned":
                list(ex.map(demote_a, names))
            list(ex.map(promote_b, names))
        timings["promoted"] = time.monotonic() - started
        images_b = [world.oned_b.add_image(f"{p.name}-{p.images[0]}", persistent=True,
                                           source=f"{lab.pool}/{p.images[0]}")
                    for p in world.vms]
        # B's history: the VMs of earlier DR tests, DONE since (older ids than the live ones).
        for k in range(history):
            world.oned_b.add_vm(f"old-{k}", disks=[images_b[k % len(images_b)]], state="DONE")
        for index, (p, img) in enumerate(zip(list(world.vms), images_b, strict=True)):
            vm_b = world.oned_b.add_vm(p.name, disks=[img], state="RUNNING")
            world.vms[index] = VMPair(p.name, p.vm_a, vm_b, p.images)
        timings["built"] = time.monotonic() - started
    except BaseException:
        world.stop()
        raise
    return world


def probe_in_child(lab: Lab, world: World, *, timeout: float = 600.0) -> dict[str, Any]:
    """Run the plan()/status() probe in a fresh process; returns its JSON answer."""
    argv = [sys.executable, "-m", "benchmarks.scale", "--probe", str(lab.directory),
            "--one-a", world.oned_a.endpoint, "--one-b", world.oned_b.endpoint,
            ]
    root = Path(__file__).resolve().parents[1]
    # The stand-in's credentials go through the environment, not the command line.
    env = {**os.environ, SESSION_ENV: world.oned_a.session}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,  # noqa: S603
                          cwd=root, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"scale probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    answer: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return answer


#: Calls that read the whole pool (every image's status, or every image's mirror info).
POOL_WIDE = ("librbd:RBD.mirror_image_status_list", "librbd:RBD.mirror_image_info_list",
             "librbd:RBD.list2", "rados:MirrorPool._mirror_infos",
             "xmlrpc:one.vmpool.infoextended")


def one_vm_failback(lab: Lab, world: World, index: int = 0) -> dict[str, Any]:
    """Fail back one VM of the large pool (``Failback(..., vms=(its id on B,))``, ``run()``),
    with the stand-ins' default transition delays (as the downtime runs): its downtime
    (terminate accepted on B -> RUNNING on A, the stand-ins' clocks), its wall time, and the
    calls of each step, of which those that read the whole pool (:data:`POOL_WIDE`)."""
    from ceph_failback.failback.journal import Journal

    pair = world.vms[index]
    assert pair.vm_b is not None
    for oned in (world.oned_a, world.oned_b):
        oned.set_delays(Delays())
    clock_a, clock_b = StandInClock(world.oned_a), StandInClock(world.oned_b)
    counter = CallCounter()
    fb = Failback(world.site("a"), world.site("b"), lab.pool,
                  journal=Journal(unique_journal("cfb-scale-one-")), vms=(pair.vm_b,))
    instrument_failback(fb, counter)
    started = time.time()
    error = None
    try:
        complete = fb.run().complete
    except Exception as exc:  # noqa: BLE001 - recorded: the plan()/status() figures stand
        complete, error = False, f"{type(exc).__name__}: {exc}"
    wall = time.time() - started
    by_step = counter.detail()
    return {
        "vm": pair.name, "images": list(pair.images), "complete": complete, "error": error,
        "downtime_seconds": downtime(clock_b, clock_a, pair.vm_b, pair.vm_a),
        "wall_seconds": wall,
        "calls": counter.by_step(),
        "pool_wide_calls": {step: sum(n for name, n in calls.items() if name in POOL_WIDE)
                            for step, calls in by_step.items()},
    }


def _rss_mb() -> float:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _current_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _probe(lab_dir: str, one_a: str, one_b: str, session: str) -> dict[str, Any]:
    lab = Lab.load(lab_dir)
    sites = []
    for cluster, endpoint in ((lab.site_a, one_a), (lab.site_b, one_b)):
        ceph = CephSite(cluster.name, cluster.ceph_config(FAILBACK_CLIENT)).connect()
        one = OpenNebulaSite(cluster.name, endpoint, credentials=session, timeout=60)
        sites.append(Site(cluster.name, ceph, one))
    journal = unique_journal("cfb-scale-")
    fb = Failback(sites[0], sites[1], lab.pool, journal=journal)
    counter = CallCounter()
    instrument_failback(fb, counter)
    rss_before = _current_rss_mb()
    from .instrument import step
    # Timed and measured as an operator runs them: no tracer (tracemalloc slows Python down
    # several times and its own bookkeeping would count in the process's peak memory).
    t = time.perf_counter()
    plan = fb.plan()
    plan_seconds = time.perf_counter() - t
    t = time.perf_counter()
    with step("status"):
        status = fb.status()
    status_seconds = time.perf_counter() - t
    calls, calls_by_kind = counter.detail(), counter.by_step()  # of one plan() and one status()
    # Again, warm (the scope read by the first plan(): its VMs are read again).
    t = time.perf_counter()
    fb.plan()
    plan_warm = time.perf_counter() - t
    t = time.perf_counter()
    fb.status()
    status_warm = time.perf_counter() - t
    peak_rss = _rss_mb()
    # Then where Python's own allocations peak, with tracemalloc (after the RSS reading).
    tracemalloc.start()
    fb.plan()
    plan_py_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.reset_peak()
    fb.status()
    status_py_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    images = len(plan.images)
    per_vm = _per_vm_reads(fb, plan)
    infos = _info_reads(sites, lab.pool, repeat=3 if images <= 2000 else 1)
    for site in sites:
        site.ceph.close()
    return {
        "images": images, "vms": len(plan.vms), "blockers": len(plan.blockers),
        "status_images": len(status.images),
        "plan_seconds": plan_seconds, "status_seconds": status_seconds,
        "plan_seconds_warm": plan_warm, "status_seconds_warm": status_warm,
        "rss_before_mb": rss_before, "peak_rss_mb": peak_rss,
        "python_peak_mb": {"plan": plan_py_peak, "status": status_py_peak},
        "calls": calls, "calls_by_kind": calls_by_kind,
        "per_vm_reads": per_vm,
        "info_reads": infos,
        "pid": os.getpid(),
    }


def _info_reads(sites: list[Site], pool: str, repeat: int = 3) -> dict[str, Any]:
    """Every mirrored image's info on each site, side by side: librbd's sequential
    ``mirror_image_info_list`` against the parallel read (ceph_failback/ceph/promotion.py);
    the best of ``repeat`` calls each, and whether both answered the same."""
    _, rbd = import_bindings()

    def best(fn: Any, *args: Any) -> tuple[float, Any]:
        times, answer = [], None
        for _ in range(repeat):
            t = time.perf_counter()
            answer = fn(*args)
            times.append(time.perf_counter() - t)
        return min(times), answer

    out: dict[str, Any] = {}
    for site in sites:
        mirror = site.ceph.pool(pool)
        with site.ceph.ioctx(pool) as ioctx:
            librbd_s, librbd = best(lambda io: dict(rbd.RBD().mirror_image_info_list(io)), ioctx)
            parallel_s, parallel = best(mirror._mirror_infos, ioctx)
        out[site.name] = {"images": len(librbd), "librbd_listing_s": librbd_s,
                          "parallel_s": parallel_s, "same_answer": librbd == parallel}
    return out


def _per_vm_reads(fb: Failback, plan: Any, repeat: int = 5) -> dict[str, Any]:
    """What one VM's steps 3, 4 and 6 pay to read its images' mirror state, side by side: the
    whole-pool listings (``images()``, ``statuses(names)``) against the per-image reads
    (``infos(names)``, ``statuses(names, each=True)``); median of ``repeat`` calls each."""
    names = list(plan.vms[0].images) if plan.vms else []
    pa, pb = fb.pool_a(), fb.pool_b()

    def median(fn: Any) -> float:
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]

    return {
        "images_of_the_vm": len(names),
        "pool_listing_infos_s": median(pb.images),
        "per_image_infos_s": median(lambda: pb.infos(names)),
        "pool_listing_statuses_s": median(lambda: pa.statuses(names)),
        "per_image_statuses_s": median(lambda: pa.statuses(names, each=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale")
    parser.add_argument("--probe", required=True, metavar="LAB_DIR")
    parser.add_argument("--one-a", required=True)
    parser.add_argument("--one-b", required=True)
    args = parser.parse_args(argv)
    print(json.dumps(_probe(args.probe, args.one_a, args.one_b, os.environ[SESSION_ENV])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
