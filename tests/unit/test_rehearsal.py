"""The rehearsal tool without a lab: its options, the step timer and the production notes."""

from __future__ import annotations

import argparse
import threading

import pytest

from ceph_failback.errors import ConfigurationError
from ceph_failback.failback import STEPS, Blocker, EventKind, Plan, Timeouts
from ceph_failback.failback.events import Emitter
from ceph_failback.lab import TEST_SPEED_SETTINGS
from ceph_failback.lab.__main__ import main as lab_main
from ceph_failback.lab.demo import (
    CHECKS,
    PRODUCTION_DEFAULTS,
    WAITS,
    StepTimer,
    add_arguments,
    options_from,
    parse_ips,
    parse_size,
    production_notes,
)
from ceph_failback.opennebula.mapping import FindingKind


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.mark.parametrize(("text", "size"), [("16M", 16 << 20), ("1G", 1 << 30), ("512k", 512 << 10),
                                            ("4096", 4096), ("1.5MiB", 3 << 19), ("2GB", 2 << 30)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "ten", "-1M", "0"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_ips() -> None:
    assert parse_ips("127.0.0.10, 127.0.0.11") == ("127.0.0.10", "127.0.0.11")
    for bad in ("127.0.0.10", "127.0.0.10,127.0.0.10", "10.0.0.1,10.0.0.2", "a,b,c"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_ips(bad)


def test_options() -> None:
    o = options_from(parse("--vms", "5", "--disks", "2", "--image-size", "64M", "--write", "1M",
                           "--mode", "snapshot", "--disaster", "planned", "--production-speed",
                           "--ips", "127.0.0.10,127.0.0.11", "--lab", "/tmp/x", "--no-pipeline",
                           "--oned-delay", "3", "--concurrency", "4", "--vm-concurrency", "2"))
    assert (o.vms, o.disks, o.image_size, o.write_size) == (5, 2, 64 << 20, 1 << 20)
    assert (o.mode, o.disaster, o.production_speed, o.ips, o.reuse, o.pipeline) == (
        "snapshot", "planned", True, ("127.0.0.10", "127.0.0.11"), "/tmp/x", False)
    assert (o.oned_delay, o.concurrency, o.vm_concurrency) == (3.0, 4, 2)
    real = options_from(parse("--second-pool", "ssd", "--dr-history"))
    assert (real.second_pool, real.dr_history) == ("ssd", True)
    defaults = options_from(parse())
    assert (defaults.vms, defaults.disks, defaults.mode, defaults.disaster) == (
        3, None, "journal", "unplanned")
    assert (defaults.second_pool, defaults.dr_history, defaults.service) == (None, False, True)
    assert not options_from(parse("--no-service")).service
    for argv in (["--vms", "0"], ["--disks", "0"], ["--image-size", "1M", "--write", "2M"]):
        with pytest.raises(ConfigurationError):
            options_from(parse(*argv))


def test_lab_command_knows_rehearse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        lab_main(["rehearse", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--vms", "--image-size", "--mode", "--disaster", "--production-speed",
                   "--ips", "--lab"):
        assert option in out
    with pytest.raises(SystemExit):
        lab_main(["up", "--ips", "127.0.0.1"])


def test_step_timer_splits_terminate() -> None:
    timer = StepTimer()
    events = Emitter()
    events.subscribe(timer)
    for step in STEPS:
        events.emit(EventKind.STEP_STARTED, "go", step=step)
        done = []
        if step == "terminate_b":  # the step's workers act in threads of their own
            worker = threading.Thread(target=lambda: events.emit(
                EventKind.ACTION, "vm:site-b:1: terminated", step="terminate_b",
                target="vm:site-b:1", outcome="done"))
            worker.start()
            worker.join()
            done = ["vm:site-b:1"]
        events.emit(EventKind.STEP_FINISHED, "done", step=step, done=done)
    assert set(timer.seconds) == set(STEPS)
    assert all(len(v) == 1 and v[0] >= 0 for v in timer.seconds.values())
    assert len(timer.parts["terminate"]) == 1 and len(timer.parts["mirror"]) == 1


def test_production_notes() -> None:
    timer = StepTimer()
    timer.seconds["resync_a"] = [5.0, 7.0]
    plan = Plan("one", "site-a", "site-b", (), (), (), ("a warning",))
    text = production_notes(plan, None, timer, production_speed=False, timeouts=Timeouts(resync=9),
                            mode="snapshot")
    for key in TEST_SPEED_SETTINGS:
        assert key in text and PRODUCTION_DEFAULTS[key] in text
    for step in WAITS:
        assert step in text
    assert "6.0s median, 7.0s max" in text and "--production-speed" in text
    assert "Snapshot mode" in text and "a warning" in text
    for kind in CHECKS:
        assert kind in text
    blocked = Plan("one", "site-a", "site-b", (), (), (Blocker("rbd-mirror-down", "x", "down"),))
    text = production_notes(blocked, None, timer, production_speed=True, timeouts=Timeouts(),
                            mode="journal")
    assert "rbd-mirror-down [x]: down" in text and "Ceph's default rbd-mirror intervals" in text


def test_every_mapping_blocker_kind_is_explained() -> None:
    warnings_only = {FindingKind.NO_VM_ON_B.value}
    assert {k.value for k in FindingKind} - warnings_only <= set(CHECKS)
    assert set(STEPS) == set(WAITS)
