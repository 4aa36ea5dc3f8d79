"""How long after a planned flip site A can prove it replays inside B's tag epoch (journal mode).

Step 2 skips the resync of an image that A already replays from B, but only once A is proven
to replay inside B's current epoch. The library reads that proof from both images' journal
headers (:func:`~ceph_failback.failback.safety.journal_replay_proof`); A's status shows the same
positions (:meth:`ReplayDetail.in_primary_epoch`) only once rbd-mirror publishes them, on its own
report cycle. This probe times both, side by side on the same flips, on a fresh lab:

    .nox/bench/bin/python -m benchmarks.settle_probe --flips 4 --ips 127.0.0.8,127.0.0.9

For each flip (one new 4 MiB image, replicated A to B, demoted on A, promoted on B, written on B
or not, alternately) it prints when A first reported replaying, when the journals first proved
it, and when the status first did, counted from B's promotion. The lab, with its images, is
removed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from ceph_failback.ceph.rbd_journal import ReplayEpoch
from ceph_failback.ceph.status import ReplayDetail
from ceph_failback.failback.safety import journal_replay_proof
from ceph_failback.lab import Lab

PREFIX = "replaying, "


def _proof(lab: Lab, name: str) -> tuple[bool, bool]:
    """(A reports replaying, A's replay position is inside B's tag epoch)."""
    description = str(lab.raw_status("a", name).get("description", ""))
    if not description.startswith(PREFIX):
        return False, False
    detail = ReplayDetail.parse(json.loads(description[len(PREFIX):]))
    return True, detail.in_primary_epoch()


def _journals(lab: Lab, name: str) -> bool:
    """The journals prove A replays inside B's epoch (what step 2 reads)."""
    with lab.connect("a") as site_a, lab.connect("b") as site_b:
        pa, pb = site_a.pool(lab.pool), site_b.pool(lab.pool)
        epoch = ReplayEpoch.read(pa.journal_header(name), pb.journal_header(name),
                                 a_uuid=pa.mirror_uuid(), b_uuid=pb.mirror_uuid())
    return journal_replay_proof(epoch) is not None


def probe(lab: Lab, flips: int, timeout: float) -> list[dict[str, object]]:
    """Flip ``flips`` new images one after the other; the delays seen for each."""
    rows: list[dict[str, object]] = []
    for i in range(flips):
        write_on_b = i % 2 == 0
        name = f"one-settle-{uuid.uuid4().hex[:8]}"
        lab.create_image(name, 4 << 20, site="a", data=b"a" * (1 << 20))
        lab.wait_replicated([name])
        # The flip, as Lab.planned_disaster does it, timed from B's promotion (before the write).
        with lab.connect("a") as site_a:
            site_a.pool(lab.pool).demote(name)
        lab.promote_when_possible("b", name)
        flipped = time.monotonic()
        if write_on_b:
            lab.write("b", name, b"b" * (1 << 20))
        replaying: float | None = None
        proven: float | None = None  # by the status
        journals: float | None = None
        while (proven is None or journals is None) and time.monotonic() - flipped < timeout:
            is_replaying, in_epoch = _proof(lab, name)
            by_journals = journals is None and _journals(lab, name)
            now = time.monotonic() - flipped
            if is_replaying and replaying is None:
                replaying = now
            if in_epoch and proven is None:
                proven = now
            if by_journals:
                journals = now
            time.sleep(0.25)
        row: dict[str, object] = {"image": name, "written_on_b": write_on_b,
                                  "replaying_after_s": replaying,
                                  "journal_proof_after_s": journals,
                                  "status_proof_after_s": proven}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.settle_probe",
                                     description="How long after a planned flip A proves it "
                                                 "replays inside B's tag epoch.")
    parser.add_argument("--flips", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on one flip after this many seconds (as settle would)")
    parser.add_argument("--ips", default="127.0.0.8,127.0.0.9")
    args = parser.parse_args(argv)
    a, b = args.ips.split(",")
    with Lab(ips=(a, b)) as lab:
        rows = probe(lab, args.flips, args.timeout)
    ok = True
    for key, label in (("journal_proof_after_s", "journals"), ("status_proof_after_s", "status")):
        known = [float(p) for r in rows if isinstance(p := r[key], float)]
        print(f"{label}: proof after {min(known):.1f}-{max(known):.1f} s" if known
              else f"{label}: no proof seen",
              f"({len(known)} of {len(rows)} flips within {args.timeout:g} s)")
        ok = ok and len(known) == len(rows)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
