"""The baseline contender: OpenNebula's documented failback procedure, followed literally, the way
an operator scripts it with the ``rbd`` CLI and ``onevm``.

This is the only place in the project that runs the ``rbd`` CLI (argument lists, never a shell).
``onevm terminate``/``onevm resume`` are one ``one.vm.action`` XML-RPC call each, sent through
pyone to the site's oned stand-in, one VM after the other as a shell loop over ``onevm`` would
(without ``onevm``'s own process start-up, which favours the baseline).

The script, in the documented order:

1. site A: ``rbd mirror pool demote POOL``;
2. site A: ``rbd mirror image resync POOL/IMAGE`` for each image;
3. site B: ``onevm terminate ID`` for each VM; then, image by image, ``rbd mirror image status
   POOL/IMAGE --format json`` on A every ``poll`` seconds until the image is mirrored: state
   ``up+replaying``, nothing behind (journal mode: ``entries_behind_primary`` 0, equal replay
   positions; snapshot mode: ``replay_state`` idle, equal local and remote snapshot timestamps)
   and a ``last_update`` newer than its VM's terminate (the procedure says to look at state and
   last_update);
4. site B: ``rbd mirror pool demote POOL``;
5. site A: ``rbd mirror pool promote POOL`` (never ``--force``), run again every ``poll`` seconds
   until it succeeds: it fails until A has replayed B's demotion;
6. site A: ``onevm resume ID`` for each VM.

No sleep other than the poll interval (1 s by default, like ``Failback``'s default poll).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyone

from ceph_failback.lab import Lab
from ceph_failback.lab.world import VMPair, World

from .instrument import CallCounter, step

__all__ = ["BaselineResult", "run_baseline"]


@dataclass
class BaselineResult:
    """What the baseline did: wall time of each step, resyncs requested, promote attempts."""

    started: float = 0.0
    finished: float = 0.0
    steps: dict[str, float] = field(default_factory=dict)
    resynced: list[str] = field(default_factory=list)
    promote_attempts: int = 0
    status_polls: int = 0


class _Operator:
    def __init__(self, world: World, counter: CallCounter, poll: float) -> None:
        self.lab: Lab = world.lab
        self.counter = counter
        self.poll = poll
        self.one = {
            "a": pyone.OneServer(world.oned_a.endpoint, session=world.oned_a.session),
            "b": pyone.OneServer(world.oned_b.endpoint, session=world.oned_b.session),
        }

    def rbd(self, site: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        conf = str(self.lab.site(site).conf_path)
        self.counter.add("cli", "rbd " + " ".join(args[:3]))
        proc = subprocess.run(["rbd", "-c", conf, "--id", "admin", *args],  # noqa: S603
                              capture_output=True, text=True, timeout=300, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"rbd {' '.join(args)} on {site}: {proc.stderr.strip()}")
        return proc

    def onevm(self, site: str, action: str, vm_id: int) -> None:
        self.counter.add("xmlrpc", "one.vm.action")
        self.one[site].vm.action(action, vm_id)

    def mirrored(self, image: str, since: float) -> bool:
        proc = self.rbd("a", "mirror", "image", "status", f"{self.lab.pool}/{image}",
                        "--format", "json", check=False)
        if proc.returncode != 0:
            return False  # being recreated by the resync: not listed yet
        try:
            status = json.loads(proc.stdout)
        except ValueError:
            return False
        if status.get("state") != "up+replaying":
            return False
        description = str(status.get("description", ""))
        _, _, detail = description.partition(", ")
        try:
            replay = json.loads(detail) if detail else {}
        except ValueError:
            return False
        if self.lab.mode == "snapshot":
            # Snapshot mode: idle, with the newest remote mirror snapshot copied.
            local = replay.get("local_snapshot_timestamp")
            caught_up = (replay.get("replay_state") == "idle" and local is not None
                         and local == replay.get("remote_snapshot_timestamp"))
        else:
            caught_up = (replay.get("entries_behind_primary") == 0
                         and replay.get("primary_position") == replay.get("non_primary_position"))
        return caught_up and _cli_time(status.get("last_update")) > int(since)


def _cli_time(value: Any) -> float:
    """The CLI's ``last_update`` (``YYYY-MM-DD HH:MM:SS``, UTC here) as epoch seconds."""
    if not value:
        return 0.0
    try:
        stamp = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return 0.0
    return stamp.replace(tzinfo=UTC).timestamp()


def run_baseline(world: World, pairs: Sequence[VMPair], counter: CallCounter, *,
                 poll: float = 1.0, promote_timeout: float = 600.0,
                 mirror_timeout: float = 900.0) -> BaselineResult:
    """Run the documented procedure on ``pairs`` (one image or more each); see the module doc."""
    op = _Operator(world, counter, poll)
    pool = world.lab.pool
    result = BaselineResult(started=time.time())
    images = [i for p in pairs for i in p.images]

    def timed(name: str, started: float) -> None:
        result.steps[name] = time.time() - started

    t = time.time()
    with step("demote_a"):
        op.rbd("a", "mirror", "pool", "demote", pool)
    timed("demote_a", t)

    t = time.time()
    with step("resync_a"):
        for image in images:
            op.rbd("a", "mirror", "image", "resync", f"{pool}/{image}")
            result.resynced.append(image)
    timed("resync_a", t)

    t = time.time()
    terminated: dict[int, float] = {}
    with step("terminate_b"):
        for p in pairs:
            assert p.vm_b is not None
            terminated[p.vm_b] = time.time()
            op.onevm("b", "terminate", p.vm_b)
        deadline = time.monotonic() + mirror_timeout
        for p in pairs:
            assert p.vm_b is not None
            for image in p.images:
                while True:
                    result.status_polls += 1
                    if op.mirrored(image, since=terminated[p.vm_b]):
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{image} not mirrored to A after {mirror_timeout}s")
                    time.sleep(poll)
    timed("terminate_b", t)

    t = time.time()
    with step("demote_b"):
        op.rbd("b", "mirror", "pool", "demote", pool)
    timed("demote_b", t)

    t = time.time()
    with step("promote_a"):
        deadline = time.monotonic() + promote_timeout
        while True:
            result.promote_attempts += 1
            if op.rbd("a", "mirror", "pool", "promote", pool, check=False).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"rbd mirror pool promote on A failing after {promote_timeout}s")
            time.sleep(poll)
    timed("promote_a", t)

    t = time.time()
    with step("resume_a"):
        for p in pairs:
            op.onevm("a", "resume", p.vm_a)
    timed("resume_a", t)
    result.finished = time.time()
    return result
