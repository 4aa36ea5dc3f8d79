"""The demo: a failback rehearsal on a local two-site lab.

``python -m ceph_failback.demo`` brings up the lab, writes data on site A, simulates an
unplanned disaster (site B force-promoted, new writes there), then brings the images home
through the mirror adapter (demote A, resync A, wait until A replays B, demote B, promote A),
printing the mirror states after every step; then it checks the data and tears the lab down.
"""

from __future__ import annotations

import argparse
import functools
import logging
import sys
import time
from collections.abc import Iterable

from .ceph import MirrorPool, MirrorStatus, OperationResult
from .errors import FailbackError, NotReadyError
from .lab import Lab, MirrorKind
from .waiting import Judgement, Verdict, wait_until

log = logging.getLogger("ceph_failback.demo")


def _table(title: str, pa: MirrorPool, pb: MirrorPool, images: Iterable[str]) -> None:
    images = list(images)
    sa, sb = pa.statuses(images), pb.statuses(images)
    print(f"\n== {title}")
    print(f"   {'image':<10} {pa.site.name + ' (A)':<44} {pb.site.name + ' (B)':<44}")
    for name in images:
        print(f"   {name:<10} {_cell(sa.get(name)):<44} {_cell(sb.get(name)):<44}")


def _cell(st: MirrorStatus | None) -> str:
    if st is None:
        return "(missing)"
    role = "primary" if st.is_primary() else "non-primary"
    return f"{role:<12} {st.local.label} {'split-brain' if st.is_split_brain() else ''}".strip()


def _step(text: str) -> float:
    print(f"\n-> {text}")
    return time.monotonic()


def run(mode: MirrorKind = "journal", images: int = 3, keep: bool = False) -> int:
    """Run the demo; returns the exit status (0 when A ends with B's last writes)."""
    lab = Lab(mode=mode)
    start = _step(f"starting a two-site Ceph lab ({mode} mirroring) in {lab.directory}")
    lab.up()
    print(f"   up in {time.monotonic() - start:.1f}s: {lab.site_a.name} on {lab.site_a.ip}, "
          f"{lab.site_b.name} on {lab.site_b.ip}, pool {lab.pool!r}, rbd-mirror on both")
    try:
        names = [f"one-{i}" for i in range(images)]
        with lab.connect("a") as a, lab.connect("b") as b:
            pa, pb = a.pool(lab.pool), b.pool(lab.pool)
            t = _step(f"writing data to {len(names)} images on site A and mirroring them to B")
            for name in names:
                lab.create_image(name, size=16 << 20, data=f"written on A: {name}\n".encode() * 512)
            lab.wait_replicated(names)
            print(f"   replicated in {time.monotonic() - t:.1f}s")
            _table("after initial replication", pa, pb, names)

            _step("disaster: site B is force-promoted and the VMs write new data there")
            lab.unplanned_disaster(
                names, new_data=b"written on B after the disaster\n" * 1024)
            expected = {n: lab.checksum("b", n) for n in names}
            _table("both sites primary (the state failback starts from)", pa, pb, names)

            t = _step("failback 1/5: demote the images on site A")
            _report(pa.demote_many(names))
            _table("A demoted", pa, pb, names)

            _step("failback 2/5: flag the images on site A for resync from B")
            requested = time.time()
            _report(pa.resync_many(names))

            _step("failback 3/5: wait until site A replays B and has caught up")
            wait_until(
                lambda: _statuses_or_empty(pa, names),
                lambda st: _caught_up(st, names, requested),
                what="site A to replay every image from B",
                timeout=300, interval=1.0,
                describe=lambda st: {n: st[n].local.summary() if n in st else "missing"
                                     for n in names},
            )
            _table("A resynced and replaying", pa, pb, names)

            _step("failback 4/5: demote the images on site B")
            _report(pb.demote_many(names))

            _step("failback 5/5: promote the images on site A (never forced)")
            for name in names:
                wait_until(functools.partial(_promote, pa, name), _done,
                           what=f"promotion of {name}", timeout=120, interval=0.25,
                           retry_on=(NotReadyError,))
            print(f"   failback done in {time.monotonic() - t:.1f}s")
            time.sleep(2)
            _table("after failback", pa, pb, names)

            ok = all(lab.checksum("a", n) == expected[n] for n in names)
            print(f"\n== data check: site A holds B's last writes for every image: "
                  f"{'YES' if ok else 'NO'}")
            return 0 if ok else 1
    finally:
        if keep:
            print(f"\nlab kept at {lab.directory} (python -m ceph_failback.lab down --dir ...)")
        else:
            t = _step("tearing the lab down")
            lab.down()
            print(f"   down in {time.monotonic() - t:.1f}s; daemons left: {lab.running_pids()}")


def _statuses_or_empty(pool: MirrorPool, names: list[str]) -> dict[str, MirrorStatus]:
    return pool.statuses(names)


def _caught_up(st: dict[str, MirrorStatus], names: list[str],
               requested: float) -> Judgement[dict[str, MirrorStatus]]:
    pending = [n for n in names if n not in st or not st[n].is_caught_up()
               or not _reported_since(st[n], requested)]
    if any(st[n].is_split_brain() for n in names if n in st):
        return Judgement(Verdict.RETRY, "split-brain still reported")
    return Judgement(Verdict.RETRY if pending else Verdict.DONE, f"pending: {pending}")


def _reported_since(status: MirrorStatus, moment: float) -> bool:
    stamp = status.local.last_update
    return stamp is not None and stamp.timestamp() >= moment


def _promote(pool: MirrorPool, name: str) -> bool:
    pool.promote(name)
    return True


def _done(_: bool) -> Judgement[bool]:
    return Judgement(Verdict.DONE)


def _report(results: dict[str, OperationResult]) -> None:
    for name, r in results.items():
        print(f"   {name}: {'ok' if r.ok else 'FAILED: ' + str(r.error)} ({r.seconds:.2f}s)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m ceph_failback.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["journal", "snapshot"], default="journal")
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the lab running")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args.mode, args.images, args.keep)
    except FailbackError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
