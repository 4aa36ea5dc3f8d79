"""How long after a planned flip site A can prove it replays inside B's tag epoch (journal mode).

Step 2 skips the resync of an image that A already replays from B, but only once A's replay
position carries B's current ``tag_tid`` (:meth:`ReplayDetail.in_primary_epoch`). rbd-mirror
publishes that position on its own report cycle, so the proof arrives some time after the flip;
``Timeouts.settle`` must leave room for it. This probe measures that delay on a fresh lab:

    .nox/bench/bin/python -m benchmarks.settle_probe --flips 4 --ips 127.0.0.8,127.0.0.9

For each flip (one new 4 MiB image, replicated A to B, demoted on A, promoted on B, written on B
or not, alternately) it prints when A first reported replaying and when the proof first held,
counted from B's promotion. The lab, with its images, is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from ceph_failback.ceph.status import ReplayDetail
from ceph_failback.lab import Lab

PREFIX = "replaying, "


def _proof(lab: Lab, name: str) -> tuple[bool, bool]:
    """(A reports replaying, A's replay position is inside B's tag epoch)."""
    description = str(lab.raw_status("a", name).get("description", ""))
    if not description.startswith(PREFIX):
        return False, False
    detail = ReplayDetail.parse(json.loads(description[len(PREFIX):]))
    return True, detail.in_primary_epoch()


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
        proven: float | None = None
        while proven is None and time.monotonic() - flipped < timeout:
            is_replaying, in_epoch = _proof(lab, name)
            now = time.monotonic() - flipped
            if is_replaying and replaying is None:
                replaying = now
            if in_epoch:
                proven = now
            time.sleep(0.25)
        row: dict[str, object] = {"image": name, "written_on_b": write_on_b,
                                  "replaying_after_s": replaying, "proof_after_s": proven}
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
    proofs = [r["proof_after_s"] for r in rows]
    known = [float(p) for p in proofs if isinstance(p, float)]
    print(f"proof after {min(known):.1f}-{max(known):.1f} s" if known else "no proof seen",
          f"({len(known)} of {len(rows)} flips within {args.timeout:g} s)")
    return 0 if len(known) == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
