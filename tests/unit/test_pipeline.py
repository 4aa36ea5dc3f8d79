"""run()'s pipeline: each VM's stages (stop on B, move its images, start on A) start as soon as its
images are ready and the start order lets them (decision logic only: step 2 and the stages are
scripted; the real thing runs on the lab in tests/lab)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from ceph_failback.errors import StepFailedError
from ceph_failback.failback.order import Group, StartOrder
from ceph_failback.failback.pipeline import MOVE, START, STOP, dispatch_when_ready
from ceph_failback.opennebula.mapping import Pair
from ceph_failback.opennebula.records import VM


def pair(n: int, *images: str) -> Pair:
    return Pair(VM(n, f"a{n}", "POWEROFF", "LCM_INIT", ()), VM(n, f"b{n}", "ACTIVE", "RUNNING", ()),
                tuple(images), False)


class Log:
    """Stages that record (stage, VM) in the order they ran; ``fail`` makes one fail."""

    def __init__(self, fail: set[tuple[int, int]] | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fail = fail or set()
        self.lock = threading.Lock()

    def stage(self, which: int) -> Callable[[Pair], bool]:
        def run(p: Pair) -> bool:
            with self.lock:
                self.calls.append((which, p.vm_b.id))
            return (which, p.vm_b.id) not in self.fail
        return run

    @property
    def stages(self) -> tuple[Callable[[Pair], bool], ...]:
        return (self.stage(STOP), self.stage(MOVE), self.stage(START))

    def of(self, which: int) -> list[int]:
        return [vm for s, vm in self.calls if s == which]


def all_ready(names: list[str]) -> Callable[[Callable[[str], None]], None]:
    def resync(on_ready: Callable[[str], None]) -> None:
        for name in names:
            on_ready(name)
    return resync


THREE_TIER = StartOrder((Group("web/db", (0,)), Group("web/app", (1,), ("web/db",)),
                         Group("web/lb", (2,), ("web/app",))))


def test_each_vm_starts_when_its_images_are_ready_and_failed_images_start_none() -> None:
    pairs = [pair(0, "one-0", "one-1"), pair(1, "one-2"), pair(2, "one-3"), pair(3)]
    log = Log()

    def fake_resync(on_ready):
        for name in ("one-2", "one-0"):  # out of order; one-1 (VM 0's second disk) never
            on_ready(name)
        on_ready("one-3")
        raise StepFailedError("step resync_a failed", failures={"image:one-1": "timed out"})

    failures: dict[str, str] = {}
    dispatch_when_ready(pairs, log.stages, failures, resync=fake_resync, workers=2)
    assert sorted(log.of(STOP)) == sorted(log.of(START)) == [1, 2, 3]  # VM 0 waits for one-1
    assert failures == {"image:one-1": "timed out"}


def test_an_interruption_during_step_2_stops_no_more_vms_and_stopped_ones_come_back() -> None:
    pairs = [pair(n, f"one-{n}") for n in range(6)]
    gate = threading.Event()
    log = Log()
    stop = log.stage(STOP)

    def slow_stop(p: Pair) -> bool:
        stop(p)
        return gate.wait(5)

    def fake_resync(on_ready):
        for n in range(6):
            on_ready(f"one-{n}")  # two stop, four are queued behind them
        raise KeyboardInterrupt

    threading.Timer(0.5, gate.set).start()
    with pytest.raises(KeyboardInterrupt):
        dispatch_when_ready(pairs, (slow_stop, log.stage(MOVE), log.stage(START)), {},
                            resync=fake_resync, workers=2)
    assert sorted(log.of(STOP)) == [0, 1]  # the queued VMs were never stopped
    assert sorted(log.of(START)) == [0, 1]  # the stopped ones were resumed


def test_a_stopped_vm_comes_back_before_another_is_stopped() -> None:
    # One worker: VM 0's move and start go before VM 1's stop (a stopped VM is down).
    log = Log()
    dispatch_when_ready([pair(0, "one-0"), pair(1, "one-1")], log.stages, {},
                        resync=all_ready(["one-0", "one-1"]), workers=1)
    assert log.calls == [(STOP, 0), (MOVE, 0), (START, 0), (STOP, 1), (MOVE, 1), (START, 1)]


def test_groups_stop_in_reverse_and_start_in_order() -> None:
    log = Log()
    pairs = [pair(n, f"one-{n}") for n in range(3)] + [pair(3, "one-3")]  # VM 3: no group
    dispatch_when_ready(pairs, log.stages, {}, resync=all_ready([f"one-{n}" for n in range(4)]),
                        workers=4, order=THREE_TIER)
    stops = [vm for vm in log.of(STOP) if vm != 3]
    starts = [vm for vm in log.of(START) if vm != 3]
    assert stops == [2, 1, 0] and starts == [0, 1, 2]
    # Each group started only once the one before it had (calls are logged as they begin, and
    # a start is dispatched only after its predecessor's returned).
    assert log.calls.index((START, 0)) < log.calls.index((START, 1)) < log.calls.index((START, 2))
    assert log.calls.index((STOP, 2)) < log.calls.index((STOP, 1)) < log.calls.index((STOP, 0))
    assert 3 in log.of(START)


def test_a_failed_stop_holds_the_groups_before_it_on_b() -> None:
    log = Log(fail={(STOP, 2)})  # the load balancer does not stop
    failures: dict[str, str] = {}
    dispatch_when_ready([pair(n, f"one-{n}") for n in range(3)], log.stages, failures,
                        resync=all_ready(["one-0", "one-1", "one-2"]), workers=3,
                        order=THREE_TIER, sites=("site-a", "site-b"))
    assert log.of(STOP) == [2] and log.of(START) == []
    assert set(failures) == {"vm:site-b:1", "vm:site-b:0"}
    assert "not terminated on site-b" in failures["vm:site-b:1"] and "[2]" in failures[
        "vm:site-b:1"]
    assert "[1]" in failures["vm:site-b:0"]


def test_a_failed_start_holds_the_groups_after_it_on_a() -> None:
    log = Log(fail={(START, 0)})  # the database does not come back
    failures: dict[str, str] = {}
    dispatch_when_ready([pair(n, f"one-{n}") for n in range(3)], log.stages, failures,
                        resync=all_ready(["one-0", "one-1", "one-2"]), workers=3,
                        order=THREE_TIER, sites=("site-a", "site-b"))
    assert log.of(STOP) == [2, 1, 0] and log.of(START) == [0]
    assert set(failures) == {"vm:site-a:1", "vm:site-a:2"}
    assert "not resumed on site-a" in failures["vm:site-a:1"] and "[0]" in failures[
        "vm:site-a:1"]


def test_a_vm_whose_images_never_got_ready_is_not_reported_twice() -> None:
    failures: dict[str, str] = {}

    def resync(on_ready):
        raise StepFailedError("x", failures={"image:one-0": "timed out"})

    dispatch_when_ready([pair(0, "one-0")], Log().stages, failures, resync=resync, workers=1)
    assert failures == {"image:one-0": "timed out"}


def test_a_vm_is_not_stopped_before_the_images_of_the_vms_it_starts_after_are_ready() -> None:
    # db's image (often the largest) resyncs slowly, then fails: lb and app must not be stopped
    # meanwhile, since they could only wait, down, for db to come back first.
    log = Log()
    seen_before_db: list[int] = []

    def resync(on_ready):
        on_ready("one-1")
        on_ready("one-2")
        time.sleep(0.2)
        seen_before_db.extend(log.of(STOP))
        raise StepFailedError("step resync_a failed", failures={"image:one-0": "timed out"})

    failures: dict[str, str] = {}
    dispatch_when_ready([pair(n, f"one-{n}") for n in range(3)], log.stages, failures,
                        resync=resync, workers=3, order=THREE_TIER, sites=("site-a", "site-b"))
    assert seen_before_db == [] and log.calls == []
    assert set(failures) == {"image:one-0", "vm:site-b:1", "vm:site-b:2"}
    assert "whose images did not get ready" in failures["vm:site-b:2"]
    assert "VMs [0] on site-b" in failures["vm:site-b:1"] and "VMs [0] on" in failures["vm:site-b:2"]


def test_once_the_early_images_are_ready_the_order_goes_on() -> None:
    log = Log()
    order_seen: list[str] = []

    def resync(on_ready):
        on_ready("one-2")
        on_ready("one-1")
        time.sleep(0.1)
        order_seen.append(f"before db: {log.of(STOP)}")
        on_ready("one-0")

    dispatch_when_ready([pair(n, f"one-{n}") for n in range(3)], log.stages, {}, resync=resync,
                        workers=3, order=THREE_TIER)
    assert order_seen == ["before db: []"]
    assert log.of(STOP) == [2, 1, 0] and log.of(START) == [0, 1, 2]


def test_an_interruption_while_waiting_after_step_2_stops_no_more_vms() -> None:
    # Ctrl-C while the pipeline waits for its VMs (step 2 done): the VM being stopped comes
    # back, no other VM is stopped, and nothing runs on once the interruption is raised.
    gate = threading.Event()
    log = Log()
    stop = log.stage(STOP)

    def slow_stop(p: Pair) -> bool:
        stop(p)
        return gate.wait(5)

    threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
    threading.Timer(0.8, gate.set).start()
    with pytest.raises(KeyboardInterrupt):
        dispatch_when_ready([pair(0, "one-0"), pair(1, "one-1")],
                            (slow_stop, log.stage(MOVE), log.stage(START)), {},
                            resync=all_ready(["one-0", "one-1"]), workers=1)
    calls = list(log.calls)
    assert calls == [(STOP, 0), (MOVE, 0), (START, 0)]
    time.sleep(0.3)
    assert log.calls == calls  # nothing went on in the background
