"""run()'s pipeline start of each VM's steps 3-6 as its images become ready (decision logic only:
step 2 is a scripted stand-in; the real thing runs on the lab in tests/lab)."""

from __future__ import annotations

import threading

import pytest

from ceph_failback.errors import StepFailedError
from ceph_failback.failback.pipeline import dispatch_when_ready
from ceph_failback.opennebula.mapping import Pair
from ceph_failback.opennebula.records import VM


def pair(n: int, *images: str) -> Pair:
    return Pair(VM(n, f"a{n}", "POWEROFF", "LCM_INIT", ()), VM(n, f"b{n}", "ACTIVE", "RUNNING", ()),
                tuple(images), False)


def test_each_vm_starts_when_its_images_are_ready_and_failed_images_start_none() -> None:
    pairs = [pair(0, "one-0", "one-1"), pair(1, "one-2"), pair(2, "one-3"), pair(3)]
    started: list[int] = []
    lock = threading.Lock()

    def fake_resync(on_ready):
        for name in ("one-2", "one-0"):  # out of order; one-1 (VM 0's second disk) never
            on_ready(name)
        on_ready("one-3")
        raise StepFailedError("step resync_a failed", failures={"image:one-1": "timed out"})

    def steps(p: Pair) -> None:
        with lock:
            started.append(p.vm_b.id)

    failures: dict[str, str] = {}
    dispatch_when_ready(pairs, steps, failures, resync=fake_resync, workers=2)
    assert sorted(started) == [1, 2, 3]  # VM 3 has no image to wait for; VM 0 waits for one-1
    assert failures == {"image:one-1": "timed out"}


def test_an_interruption_during_step_2_starts_no_more_vms() -> None:
    pairs = [pair(n, f"one-{n}") for n in range(6)]
    gate = threading.Event()
    started: list[int] = []

    def fake_resync(on_ready):
        for n in range(6):
            on_ready(f"one-{n}")  # two run, four are queued behind them
        raise KeyboardInterrupt

    def steps(p: Pair) -> None:
        started.append(p.vm_b.id)
        gate.wait(5)

    threading.Timer(0.5, gate.set).start()
    with pytest.raises(KeyboardInterrupt):
        dispatch_when_ready(pairs, steps, {}, resync=fake_resync, workers=2)
    assert sorted(started) == [0, 1]  # the queued VMs were never started
