"""The fault matrix: faults injected into the real lab and the oned stand-ins during a failback.

Whatever fails, the failback stops in a known, explained state or finishes safely. After every
case the invariants hold: no image primary on both sites, no image lost, every image primary on
A holds B's last writes (unless the failback never touched it), no forced promote, and the
journal explains every action (each intent has its outcome).

The cases of docs/faults.rst, by number: 1-5, 6 (mid-step; the step boundaries are
test_failback.py's test_killed_after_each_step_then_resumed), 7, 10, 11 and 12 are here; 8 (clone
disk) and 9 (split-brain never resynced) are test_failback.py's
test_plan_lists_blockers_and_changes_nothing and test_stale_promote_trap_is_refused.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.ceph import CephConfig, CephSite
from ceph_failback.ceph.lock import LOCK_OBJECT, PoolLock
from ceph_failback.ceph.mirror import MirrorPool
from ceph_failback.errors import (
    CephConnectionError,
    FailbackError,
    LockedError,
    OpenNebulaAuthenticationError,
    SafetyError,
    StepFailedError,
)
from ceph_failback.failback import EventKind, Failback, Journal, Timeouts
from ceph_failback.lab import Lab
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import World

from .helpers import poll
from .test_failback import TIMEOUTS, _child, assert_failed_back, build

#: rbd-mirror is "down" this long after its last beacon (the default, 30 s, is for production).
GRACE = 6.0
FAST = Timeouts(**{**TIMEOUTS.__dict__, "daemon_beacon_grace": GRACE})


@pytest.fixture
def world(lab: Lab) -> Iterator[World]:
    with World(lab, delays=Delays.uniform(0.05)) as w:
        yield w


@pytest.fixture
def promotes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Every promote librbd is asked for in this process, with its ``force`` flag."""
    calls: list[tuple[str, bool]] = []
    real = MirrorPool.promote

    def spy(self: MirrorPool, image: str, *, force: bool = False) -> None:
        calls.append((image, force))
        real(self, image, force=force)

    monkeypatch.setattr(MirrorPool, "promote", spy)
    return calls


@pytest.fixture
def rbd_mirror_back(lab: Lab) -> Iterator[None]:
    """Whatever a test does to site A's rbd-mirror, the shared lab gets it back healthy."""
    yield
    if not lab.site("a").is_running("rbd-mirror"):
        lab.start_rbd_mirror("a")
    wait_daemon(lab, healthy=True)


@pytest.fixture
def mon_b_back(lab: Lab) -> Iterator[None]:
    """Site B's monitor back, and B's rbd-mirror restarted once it is: the later tests of the
    shared lab get a daemon that never lost its monitor."""
    yield
    if not lab.site("b").is_running("mon"):
        lab.start_mon("b")
    lab.stop_rbd_mirror("b")
    lab.start_rbd_mirror("b")
    with lab.connect("b") as b:
        pool = b.pool(lab.pool)
        poll(lambda: any(d.healthy for d in pool.daemon_health(beacon_grace=GRACE)),
             timeout=90, what="rbd-mirror on B healthy")


def wait_daemon(lab: Lab, *, healthy: bool, timeout: float = 90) -> None:
    with lab.connect("a") as a:
        pool = a.pool(lab.pool)
        poll(lambda: any(d.healthy for d in pool.daemon_health(beacon_grace=GRACE)) == healthy,
             timeout=timeout, what=f"rbd-mirror on A {'healthy' if healthy else 'down'}")


def make(world: World, journal: Path, timeouts: Timeouts = FAST, **kw) -> Failback:
    return Failback(world.site("a"), world.site("b"), world.lab.pool, journal=journal,
                    timeouts=timeouts, **kw)


def state(world: World) -> dict[str, tuple[bool, bool, str, str]]:
    """Roles and checksums of every image on both sites."""
    lab = world.lab
    return {i: (lab.is_primary("a", i), lab.is_primary("b", i), lab.checksum("a", i),
                lab.checksum("b", i)) for i in world.all_images()}


def assert_invariants(world: World, expected: dict[str, str], journal: Path,
                      promotes: list[tuple[str, bool]]) -> None:
    lab = world.lab
    for image, checksum in expected.items():
        assert lab.image_exists(image, site="b"), f"{image} lost on B"
        on_a = lab.image_exists(image, site="a")
        a_primary = on_a and lab.is_primary("a", image)
        records = [r for r in Journal(journal).records if r.target == f"image:{image}"]
        touched = any(r.event in ("intent", "done") for r in records)
        if a_primary and lab.is_primary("b", image):
            # The state an unplanned disaster leaves: the failback must not have touched it.
            assert not touched, f"{image} primary on both sites after the failback acted on it"
        if a_primary and touched:
            assert lab.checksum("a", image) == checksum, f"{image}: A lacks B's last writes"
    assert not any(force for _, force in promotes), promotes
    assert_journal_explains(journal)


def assert_journal_explains(journal: Path) -> None:
    """Every intent is followed by its outcome (done, failed, or a later run's decision), and
    every failure says what failed and why."""
    records = Journal(journal).records
    for n, r in enumerate(records):
        if r.event == "intent":
            later = [x for x in records[n + 1:] if x.step == r.step and x.target == r.target]
            assert later, f"unexplained intent: {r}"
        if r.event == "failed" and r.target:
            assert r.data.get("error") and r.data.get("error_type"), r


def nothing_done(journal: Path) -> bool:
    j = Journal(journal)
    return not j.find(event="intent") and not j.find(event="done")


def terminates(world: World, vm_b: int) -> list[str]:
    return [a[1] for a in world.oned_b.actions if a[0] == vm_b and a[2]
            and a[1].startswith("terminate")]


# -- 1. rbd-mirror on A down before the run ---------------------------------------------------


def test_rbd_mirror_down_on_a_is_refused_before_anything(
        world: World, tmp_path: Path, rbd_mirror_back: None,
        promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 1)
    before = state(world)
    world.lab.stop_rbd_mirror("a")
    wait_daemon(world.lab, healthy=False)
    fb = make(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    plan = fb.plan()
    assert ("rbd-mirror-down", "rbd-mirror@site-a") in {(b.kind, b.target) for b in plan.blockers}
    with pytest.raises(SafetyError) as info:
        fb.run()
    assert "rbd-mirror" in str(info.value) and "site-a" in str(info.value)
    assert state(world) == before and nothing_done(tmp_path / f"{tmp_path.name}-j.jsonl")
    assert_invariants(world, expected, tmp_path / f"{tmp_path.name}-j.jsonl", promotes)


# -- 2. rbd-mirror on A killed during the resync wait, restarted later ------------------------


def test_rbd_mirror_killed_during_resync_then_resumed(
        world: World, tmp_path: Path, rbd_mirror_back: None,
        promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 2)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    killed: list[float] = []

    def kill_at_first_resync(ev) -> None:  # type: ignore[no-untyped-def]
        if ev.kind is EventKind.ACTION and ev.step == "resync_a" and not killed:
            world.lab.stop_rbd_mirror("a", kill=True)
            killed.append(time.monotonic())

    fb = make(world, journal, listeners=[kill_at_first_resync])
    with pytest.raises(StepFailedError) as info:
        fb.run()
    took = time.monotonic() - killed[0]
    message = str(info.value.failures)
    assert "no healthy rbd-mirror daemon on site-a" in message, info.value.failures
    assert took < GRACE + 30, f"the dead daemon went unnoticed for {took:.0f}s"
    assert not any(world.oned_b.actions), "VMs on B were touched while A could not resync"
    resyncs = Counter(r.target for r in Journal(journal).find(step="resync_a", event="done"))
    assert resyncs and set(resyncs.values()) == {1}
    world.lab.start_rbd_mirror("a")
    wait_daemon(world.lab, healthy=True)
    report = make(world, journal).run()
    assert report.complete, report
    assert_failed_back(world, expected, make(world, journal))
    again = Counter(r.target for r in Journal(journal).find(step="resync_a", event="done"))
    assert again == resyncs, "a resync was requested twice"
    assert_invariants(world, expected, journal, promotes)


# -- 3. Site B's monitor stopped mid-run -------------------------------------------------------


def test_site_b_monitor_stopped_mid_run(world: World, tmp_path: Path, mon_b_back: None,
                                        promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 1)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    fb = make(world, journal)
    fb.demote_site_a()
    fb.resync_site_a()
    world.lab.stop_mon("b")
    # A new connection to B (a new run, another process) fails in bounded time, naming B.
    started = time.monotonic()
    cluster = world.lab.site("b")
    with pytest.raises(CephConnectionError) as info:
        CephSite("site-b", CephConfig(conffile=str(cluster.conf_path), client=world.client,
                                      keyring=str(cluster.keyring_for(world.client)),
                                      mount_timeout=5)).connect()
    assert time.monotonic() - started < 20 and "site-b" in str(info.value)
    # The run already connected goes on as far as B's OSDs serve it (in this lab: to the end,
    # as the OSD keeps serving its clients without a monitor), or stops with an error naming
    # site B; either way within its timeouts.
    started = time.monotonic()
    try:
        outcome = fb.run()
        assert outcome.complete, outcome
    except FailbackError as exc:
        assert "site-b" in str(exc) or any("site-b" in m for m in
                                           getattr(exc, "failures", {}).values()), exc
    assert time.monotonic() - started < 180, "the run did not stop in bounded time"
    world.lab.start_mon("b")
    report = make(world, journal, timeouts=TIMEOUTS).run()
    assert report.complete, report
    assert_failed_back(world, expected, make(world, journal))
    assert_invariants(world, expected, journal, promotes)


# -- 4. Site B's OpenNebula unreachable mid-run, then credentials rejected ---------------------


def test_opennebula_b_unreachable_then_credentials_rejected(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 2)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"

    def cut_at_terminate(ev) -> None:  # type: ignore[no-untyped-def]
        if ev.kind is EventKind.STEP_STARTED and ev.step == "terminate_b":
            world.oned_b.refuse_connections()

    # The outage outlasts the terminate limit: each terminate is retried (a refused connection
    # passes) until that limit, then fails naming the site and the VM.
    fb = make(world, journal, timeouts=Timeouts(**{**FAST.__dict__, "terminate": 3.0}),
              listeners=[cut_at_terminate])
    with pytest.raises(StepFailedError) as info:
        fb.run()
    for p in world.vms:
        message = info.value.failures[f"vm:site-b:{p.vm_b}"]
        assert "site-b" in message and str(p.vm_b) in message and "connect" in message.lower()
        assert world.oned_b.vm_state(p.vm_b) == ("ACTIVE", "RUNNING")
    for image in expected:  # resynced, still primary on B: nothing half-done
        assert world.lab.is_primary("b", image) and not world.lab.is_primary("a", image)
    failed = Journal(journal).find(step="terminate_b", event="failed")
    assert {r.data["error_type"] for r in failed} == {"OpenNebulaUnavailableError"}
    world.oned_b.accept_connections()
    world.oned_b.reject_credentials()
    with pytest.raises(OpenNebulaAuthenticationError) as auth:
        make(world, journal).run()
    assert "site-b" in str(auth.value)
    world.oned_b.reject_credentials(False)
    report = make(world, journal).run()
    assert report.complete, report
    assert_failed_back(world, expected, make(world, journal))
    for p in world.vms:
        assert terminates(world, p.vm_b) == ["terminate"]
    assert_invariants(world, expected, journal, promotes)


# -- 5. A VM on B stuck in SHUTDOWN ------------------------------------------------------------


def test_vm_stuck_in_shutdown_times_out_then_hard_terminate(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 1)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    vm_b = world.vms[0].vm_b
    world.oned_b.ignore_shutdown(vm_b)
    short = Timeouts(**{**FAST.__dict__, "terminate": 4})
    with pytest.raises(StepFailedError) as info:
        make(world, journal, timeouts=short).run()
    message = info.value.failures[f"vm:site-b:{vm_b}"]
    assert "SHUTDOWN" in message and str(vm_b) in message, message
    assert world.oned_b.vm_state(vm_b) == ("ACTIVE", "SHUTDOWN")
    for image in expected:  # B not demoted while its VM may still write
        assert world.lab.is_primary("b", image)
    report = make(world, journal, timeouts=short, hard_terminate_after=1).run()
    assert report.complete, report
    assert terminates(world, vm_b) == ["terminate", "terminate-hard"]
    assert_failed_back(world, expected, make(world, journal))
    assert_invariants(world, expected, journal, promotes)


# -- 6. SIGKILL in the middle of multi-image steps ---------------------------------------------


def test_killed_in_the_middle_of_multi_image_steps(world: World, tmp_path: Path) -> None:
    expected = build(world, 2)  # three images
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    for step in ("demote_a", "resync_a", "promote_a"):
        done = _child(world, journal, kill_at_action=[step, 2])
        assert done.returncode == -9, (step, done.stdout, done.stderr[-3000:])
    final = _child(world, journal)
    assert final.returncode == 0, final.stderr[-3000:]
    outcome = json.loads(final.stdout.splitlines()[-1])
    j = Journal(journal)
    # Not complete: the report, and B's protection records (with both journals' tag chains for
    # an image B split-brained: the evidence rbd-mirror decided on).
    assert outcome["complete"], (json.dumps(outcome, indent=1),
                                 [r.data for r in j.find(event="protection")])
    assert_failed_back(world, expected, make(world, journal))
    for step in ("demote_a", "resync_a", "demote_b", "promote_a"):
        done = Counter(r.target for r in j.find(step=step, event="done"))
        assert done and max(done.values()) == 1, (step, done)
    # Never a resync of a recreated copy (mid-copy): every request names the image id A had
    # before the failback. librbd's resync only sets a flag on that image (Mirror::image_resync,
    # Journal::request_resync), so asking again before rbd-mirror acts on it is harmless: a rerun
    # that reads the pre-resync split-brain status of an interrupted request may ask again.
    for image in {r.target for r in j.find(step="resync_a", event="intent")}:
        ids = {r.data.get("image_id") for r in j.find(step="resync_a", event="intent",
                                                       target=image)}
        assert len(ids) == 1 and None not in ids, (image, ids)
        proofs = [r.data.get("proof") for r in j.find(step="resync_a", event="observed",
                                                      target=image)]
        assert "resynced from B" in proofs, (image, proofs)
    assert len({r.target for r in j.find(step="resync_a", event="intent")}) == 3
    for p in world.vms:
        assert terminates(world, p.vm_b) == ["terminate"]
    assert_invariants(world, expected, journal, [])


# -- 7. An image in scope missing on A, or not mirrored ----------------------------------------


def test_unmirrored_or_missing_image_refused_before_anything(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    lab = world.lab
    expected = build(world, 1)
    plain = world.vms[0].images[0] + "-plain"
    lab.create_image(plain, site="b", mirrored=False, data=b"only on B")
    if lab.mode == "journal":  # pool mirror mode mirrors every journaled image: strip it
        with lab.connect("b") as b, b.ioctx(lab.pool) as ioctx:
            import rbd
            with rbd.Image(ioctx, plain) as image:
                image.update_features(rbd.RBD_FEATURE_JOURNALING, False)
    before = state(world)
    fb = make(world, tmp_path / f"{tmp_path.name}-j.jsonl", images=[*expected, plain, "one-999999"])
    found = {(b.kind, b.target) for b in fb.plan().blockers}
    assert ("image-missing", f"image:{plain}") in found
    assert ("image-missing", "image:one-999999") in found
    with pytest.raises(SafetyError) as info:
        fb.run()
    assert plain in str(info.value) and "one-999999" in str(info.value)
    assert state(world) == before and nothing_done(tmp_path / f"{tmp_path.name}-j.jsonl")
    assert not world.oned_b.actions
    assert_invariants(world, expected, tmp_path / f"{tmp_path.name}-j.jsonl", promotes)


# -- 10. A resync that never completes ---------------------------------------------------------


def test_resync_that_does_not_complete_times_out_with_a_resume_hint(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 1)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    short = Timeouts(**{**FAST.__dict__, "resync": 2})
    with pytest.raises(StepFailedError) as info:
        make(world, journal, timeouts=short).run()
    for image in expected:
        message = info.value.failures[f"image:{image}"]
        assert "timed out" in message and image in message and "run again" in message, message
        assert "last seen" in message, message
    assert not any(world.oned_b.actions)
    report = make(world, journal).run()
    assert report.complete, report
    assert len(Journal(journal).find(step="resync_a", event="done")) == len(expected)
    assert_failed_back(world, expected, make(world, journal))
    assert_invariants(world, expected, journal, promotes)


# -- 11. Two failbacks at once: the lock in Ceph -----------------------------------------------


def test_second_failback_refused_by_the_lock_in_ceph(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 1)
    first = make(world, tmp_path / f"{tmp_path.name}-one.jsonl")
    second = make(world, tmp_path / f"{tmp_path.name}-two.jsonl")  # another operator, another journal
    before = state(world)
    with first.locked() as holder:
        found = {(b.kind, b.target) for b in second.plan().blockers}
        assert ("locked", "lock@site-a") in found
        with pytest.raises(LockedError) as info:
            second.run()
        text = str(info.value)
        assert f"pid {holder.pid}" in text and holder.since in text and "site-a" in text
        assert state(world) == before and nothing_done(tmp_path / f"{tmp_path.name}-two.jsonl")
        with pytest.raises(LockedError):
            second.demote_site_a()
    assert second.lock_holder() is None
    # A holder on another machine that died: its lock stays until broken explicitly.
    with world.lab.connect("a", world.client) as other:
        stale = PoolLock(other, world.lab.pool, purpose="failback site-b -> site-a")
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("ceph_failback.ceph.lock._identity",
                       lambda: {"host": "gone", "machine_id": "m0", "boot_id": "b0"})
            stale.acquire()
    with pytest.raises(LockedError) as info:
        second.run()
    assert "gone" in str(info.value) and "break" in str(info.value)
    broken = second.break_lock()
    assert broken is not None and broken.host == "gone"
    assert Journal(tmp_path / f"{tmp_path.name}-two.jsonl").find(step="run", event="lock-broken")
    report = second.run()
    assert report.complete, report
    assert second.lock_holder() is None, "the lock outlived the run"
    assert_failed_back(world, expected, make(world, tmp_path / f"{tmp_path.name}-two.jsonl"))
    assert_invariants(world, expected, tmp_path / f"{tmp_path.name}-two.jsonl", promotes)
    with world.lab.connect("a") as a, a.ioctx(world.lab.pool) as ioctx:
        ioctx.stat(LOCK_OBJECT)  # the lock lives in site A's pool


# -- 12. A VM on A already running --------------------------------------------------------------


def test_vm_already_running_on_a_is_refused(
        world: World, tmp_path: Path, promotes: list[tuple[str, bool]]) -> None:
    expected = build(world, 2)
    restarted = world.vms[1]
    world.site("a").one.resume(restarted.vm_a, timeout=30)  # someone restarted it
    before = state(world)
    fb = make(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    found = {(b.kind, b.target) for b in fb.plan().blockers}
    assert ("vm-not-stopped", f"vm:site-a:{restarted.vm_a}") in found, found
    with pytest.raises(SafetyError) as info:
        fb.run()
    assert str(restarted.vm_a) in str(info.value)
    assert state(world) == before and nothing_done(tmp_path / f"{tmp_path.name}-j.jsonl")
    assert not world.oned_b.actions
    assert_invariants(world, expected, tmp_path / f"{tmp_path.name}-j.jsonl", promotes)
