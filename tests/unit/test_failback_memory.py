"""The whole Failback on in-memory sites (ceph_failback.testing): every blocker and safety rule
through the facade, the plan equal to what the steps do, and a crash at every journal write.

The Ceph side is the in-memory model of journal-based mirroring, the cloud side the oned
stand-in; both are checked against the real lab by tests/lab (same scenarios, real daemons)."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ceph_failback.errors import LockedError, SafetyError, StepFailedError
from ceph_failback.failback import EventKind, Failback, safety
from ceph_failback.failback.journal import Journal
from ceph_failback.failback.steps import resync_a
from ceph_failback.lab.oned import Delays
from ceph_failback.opennebula.site import OpenNebulaSite
from ceph_failback.testing import MemoryWorld

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld() as w:
        yield w


def promotes(world: MemoryWorld) -> list[tuple[str, str, str]]:
    return [c for c in world.ceph.calls if c[1].startswith("promote")]


def assert_failed_back(world: MemoryWorld, images: list[str]) -> None:
    """A primary only, holding B's last writes; B non-primary; no forced promote of ours."""
    for image in images:
        assert world.ceph.is_primary("site-a", image) and not world.ceph.is_primary("site-b", image)
        assert world.ceph.data("site-a", image) == NEW, image
    assert ("site-a", "promote-forced") not in {(s, op) for s, op, _ in world.ceph.calls}


def test_unplanned_disaster_end_to_end(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db", disks=2)
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    db, web = world.vms
    report = world.failback(tmp_path / "j.jsonl").run()
    assert report.complete, report
    assert_failed_back(world, world.images())
    assert {i.name for i in report.images if i.resynced} == set(world.images())
    assert world.oned_a.vm_state(db.vm_a) == ("ACTIVE", "RUNNING")
    assert world.oned_b.vm_state(web.vm_b) == ("DONE", "LCM_INIT")


def test_dr_test_failback_resyncs_nothing(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db", disks=2)
    world.disaster("planned", new_data=NEW)
    report = world.failback(tmp_path / "j.jsonl").run()
    assert report.complete and not any(i.resynced for i in report.images), report
    assert not [c for c in world.ceph.calls if c[1] == "resync"]
    assert_failed_back(world, world.images())


def test_dr_test_proof_comes_from_the_journals_not_the_lagging_status(
        tmp_path: Path) -> None:
    # Statuses lag (rbd-mirror publishes replay positions on its own cycle): A's status still
    # shows a position in its own old epoch, or none, while the journals already show that A
    # committed B's epoch. The plan and step 2 read the journals: no resync, no wait for the
    # status cycle.
    with MemoryWorld(status_period=1000) as world:
        world.add_vm("db")
        world.disaster("planned", new_data=NEW)
        # Time passes before the plan: A's rbd-mirror commits B's epoch (the model moves on
        # each call; the plan reads the journals with the listings, one call per site).
        world.ceph.tick(3)
        fb = world.failback(tmp_path / "j.jsonl")
        plan = fb.plan()
        image = world.images()[0]
        status_a = plan.images[0].status_a
        assert status_a is not None and not (
            status_a.local.replay is not None and status_a.local.replay.in_primary_epoch())
        action = plan.images[0].action("resync_a")
        assert action is not None and not action.do and "epoch" in action.reason, plan
        report = fb.run()
        assert report.complete and not report.images[0].resynced
        proofs = [r.data["proof"] for r in Journal(tmp_path / "j.jsonl").find(
            step="resync_a", event="observed")]
        assert proofs and "epoch" in proofs[0]
        assert not [c for c in world.ceph.calls if c[1] == "resync"]
        assert_failed_back(world, [image])


def test_a_copy_not_yet_past_b_s_promotion_is_waited_for_not_skipped(tmp_path: Path) -> None:
    # Right after the flip A reports "replaying" but has not replayed B's promotion: the
    # journals do not prove it yet. Step 2 must neither skip (the stale-promote trap) nor
    # resync at once: it waits until the journals prove it.
    with MemoryWorld(auto_tick=False) as world:
        world.add_vm("db")
        world.disaster("planned", new_data=NEW)
        fb = world.failback(tmp_path / "j.jsonl")
        image = world.images()[0]
        epoch = resync_a.read_epochs(fb.pool_a(), fb.pool_b(), [image],
                                     fb.pool_a().infos([image]), fb.pool_b().infos([image]))
        assert safety.journal_replay_proof(epoch[image]) is None
        assert fb.plan().images[0].action("resync_a").do  # type: ignore[union-attr]
        ticker = threading.Timer(0.5, lambda: setattr(world.ceph, "auto_tick", True))
        ticker.start()
        try:
            report = fb.run()
        finally:
            ticker.cancel()
        assert report.complete and not report.images[0].resynced, report
        assert not [c for c in world.ceph.calls if c[1] == "resync"]


# -- plan equals execution -------------------------------------------------------------------

def outcomes(journal: Path) -> dict[tuple[str, str], str]:
    done: dict[tuple[str, str], str] = {}
    for r in Journal(journal).records:
        if r.event in ("done", "skipped") and r.target:
            done[(r.step, r.target)] = r.event
    return done


def scenario(world: MemoryWorld, kind: str) -> None:
    world.add_vm("db", disks=2)
    world.add_vm("web")
    world.disaster("planned" if kind == "planned" else "unplanned", new_data=NEW)


@pytest.mark.parametrize("kind", ["unplanned", "planned"])
def test_the_plan_is_what_the_steps_do(world: MemoryWorld, tmp_path: Path, kind: str) -> None:
    scenario(world, kind)
    world.ceph.tick(10)  # every status published: no decision is left to the settle wait
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    assert plan.ok, plan
    fb.run()
    did = outcomes(tmp_path / "j.jsonl")
    for action in plan.actions():
        assert did.get((action.step, action.target)) == ("done" if action.do else "skipped"), (
            action, did.get((action.step, action.target)))


def test_a_resumed_failback_plans_what_its_steps_then_do(world: MemoryWorld,
                                                          tmp_path: Path) -> None:
    scenario(world, "unplanned")
    fb = world.failback(tmp_path / "j.jsonl")
    with fb.locked():
        fb.demote_site_a()
        fb.resync_site_a()
        fb.terminate_site_b(vms=[world.vms[0].vm_b])  # interrupted here
    again = world.failback(tmp_path / "j.jsonl")
    plan = again.plan()
    assert plan.ok, plan
    before = len(Journal(tmp_path / "j.jsonl").records)
    again.run()
    after = Journal(tmp_path / "j.jsonl").records[before:]
    did = {(r.step, r.target): r.event for r in after if r.event in ("done", "skipped")}
    for action in plan.actions():
        assert did.get((action.step, action.target)) == ("done" if action.do else "skipped"), (
            action, did.get((action.step, action.target)))
    assert_failed_back(world, world.images())


# -- every blocker through the facade ---------------------------------------------------------

def blockers(fb: Failback) -> set[tuple[str, str]]:
    return {(b.kind, b.target) for b in fb.plan().blockers}


def refused_and_untouched(world: MemoryWorld, fb: Failback) -> None:
    before = list(world.ceph.calls)
    actions_b = list(world.oned_b.actions)
    with pytest.raises(SafetyError):
        fb.run()
    assert world.ceph.calls == before and world.oned_b.actions == actions_b


def test_clone_disk_on_b_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW, persistent_on_b=False)
    vm = world.vms[0]
    fb = world.failback(tmp_path / "j.jsonl", vms=[vm.vm_b], pairs={vm.vm_b: vm.vm_a})
    assert ("non-persistent-disk", f"vm:site-b:{vm.vm_b}") in blockers(fb)
    refused_and_untouched(world, fb)


def test_split_brain_on_b_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    image = world.images()[0]
    world.ceph.demote("site-b", image)  # by hand, after writes there: B diverged from A
    world.ceph.tick(2)
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("split-brain-on-b", f"image:{image}") in blockers(fb)
    refused_and_untouched(world, fb)


def test_no_primary_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("planned", new_data=NEW)
    image = world.images()[0]
    world.ceph.demote("site-b", image)
    world.ceph.tick(5)
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("no-primary", f"image:{image}") in blockers(fb)
    refused_and_untouched(world, fb)


def test_a_journal_of_an_earlier_failback_is_stale(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    assert world.failback(tmp_path / "j.jsonl").run().complete
    # A second disaster: the VMs go to B again (new VMs there), B promoted by force.
    world.ceph.failover(world.images(), planned=False, data=NEW)
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("stale-journal", f"image:{world.images()[0]}") in blockers(fb)


def test_a_vm_running_on_a_is_a_blocker_unless_this_failback_resumed_it(
        world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    vm = world.vms[0]
    world.site("a").one.resume(vm.vm_a, timeout=5)  # someone restarted it on stale disks
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("vm-not-stopped", f"vm:site-a:{vm.vm_a}") in blockers(fb)
    refused_and_untouched(world, fb)


def test_rbd_mirror_down_on_a_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    world.ceph.stop_daemon("site-a")
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("rbd-mirror-down", "rbd-mirror@site-a") in blockers(fb)
    refused_and_untouched(world, fb)


def test_missing_image_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    fb = world.failback(tmp_path / "j.jsonl", images=[*world.images(), "one-999"])
    assert ("image-missing", "image:one-999") in blockers(fb)
    refused_and_untouched(world, fb)


def test_another_failback_holding_the_lock_is_a_blocker(world: MemoryWorld,
                                                        tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    first, second = world.failback(tmp_path / "1.jsonl"), world.failback(tmp_path / "2.jsonl")
    with first.locked():
        assert ("locked", "lock@site-a") in blockers(second)
        with pytest.raises(LockedError):
            second.run()


# -- the rules inside the steps, steps called one by one --------------------------------------

def test_steps_out_of_order_are_refused_and_change_nothing(world: MemoryWorld,
                                                           tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    vm = world.vms[0]
    image = world.images()[0]
    fb = world.failback(tmp_path / "j.jsonl")
    with pytest.raises(StepFailedError) as info:
        fb.terminate_site_b()  # A has not been seen replaying from B
    assert "not ready to take over" in str(info.value.failures)
    with pytest.raises(StepFailedError) as info:
        fb.demote_site_b()  # would leave A's old copy the one to promote
    assert "replaying" in str(info.value.failures)
    with pytest.raises(StepFailedError) as info:
        fb.promote_site_a()
    assert "demote it there first" in str(info.value.failures)
    assert world.ceph.calls == [("site-b", "promote-forced", image)]
    assert world.oned_b.vm_state(vm.vm_b) == ("ACTIVE", "RUNNING")


def test_a_writer_still_on_b_stops_the_demote_until_it_lets_go(world: MemoryWorld,
                                                              tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    image = world.images()[0]
    world.ceph.open_writer("site-b", image)  # a mapped device the cloud does not know of
    with pytest.raises(StepFailedError) as info:
        world.failback(tmp_path / "j.jsonl").run()
    assert "still in use" in info.value.failures[f"image:{image}"]
    assert world.ceph.is_primary("site-b", image)
    world.ceph.close_writer("site-b", image)
    assert world.failback(tmp_path / "j.jsonl").run().complete
    assert_failed_back(world, [image])


# -- a crash at every journal write -----------------------------------------------------------

class Crash(BaseException):
    """The process dies (nothing after it runs, not even the journal's next line)."""


class DyingJournal(Journal):
    """A journal whose process dies at its ``at``-th write (the write itself lands or not)."""

    def __init__(self, path: Path, at: int, land: bool) -> None:
        super().__init__(path)
        self.at, self.land, self.count, self.dead = at, land, 0, False

    def write(self, step: str, event: str, target: str = "", **data: Any) -> Any:
        if self.dead:
            raise Crash
        self.count += 1
        if self.count == self.at:
            self.dead = True
            if self.land:
                super().write(step, event, target, **data)
            raise Crash
        return super().write(step, event, target, **data)


def crash_world() -> MemoryWorld:
    # One VM with two disks: every step, and the batch operations, in as few writes as that.
    world = MemoryWorld(delays=Delays.uniform(0.001)).start()
    world.add_vm("db", disks=2)
    world.disaster("unplanned", new_data=NEW)
    return world


def full_run_writes(tmp_path: Path) -> int:
    with crash_world() as world:
        world.failback(tmp_path / "count.jsonl").run()
    return len(Journal(tmp_path / "count.jsonl").records)


@pytest.mark.parametrize("land", [True, False], ids=["after-write", "before-write"])
def test_a_crash_at_any_journal_write_resumes_to_the_same_end(tmp_path: Path,
                                                             land: bool) -> None:
    total = full_run_writes(tmp_path)
    assert total > 30

    def crash_at(at: int) -> None:
        with crash_world() as world:
            path = tmp_path / f"crash-{at}-{land}.jsonl"
            fb = world.failback(DyingJournal(path, at, land))
            with pytest.raises(Crash):
                fb.run()
            again = world.failback(path)
            again.break_lock()  # a dead process's lock (a real one is taken over on its machine)
            report = again.run()
            assert report.complete, (at, report)
            assert_failed_back(world, world.images())
            resyncs = [c for c in world.ceph.calls if c[1] == "resync"]
            assert len(resyncs) == len(set(resyncs)), (at, resyncs)  # never requested twice
            assert len(promotes(world)) == 2 * len(world.images()), (at, promotes(world))

    # Each crash point in its own world (models and stand-ins share nothing): several at once,
    # as most of a run's time is spent waiting on the stand-ins' transitions and polls.
    with ThreadPoolExecutor(4, thread_name_prefix="crash") as ex:
        for done in [ex.submit(crash_at, at) for at in range(1, total + 1)]:
            done.result()


def test_a_vm_that_cannot_be_stopped_blocks_only_itself(world: MemoryWorld, tmp_path: Path) -> None:
    # One of the VM's two images is missing on A: the image is a blocker, and the VM's other,
    # healthy image gets none (its steps 4-5 cannot come before the VM stops).
    world.add_vm("db", disks=2)
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    db, web = world.vms
    world.ceph.remove_image(db.images[1], site="site-a")
    found = blockers(world.failback(tmp_path / "j.jsonl"))
    assert ("image-missing", f"image:{db.images[1]}") in found
    assert not any(t in (f"image:{db.images[0]}", f"image:{web.images[0]}") for _, t in found)


def test_dr_history_on_b_never_pairs(world: MemoryWorld, tmp_path: Path) -> None:
    # A DR test, failed back: site B keeps the DONE VM, whose disk names the same image.
    world.add_vm("db")
    world.disaster("planned", new_data=NEW)
    assert world.failback(tmp_path / "dr-test.jsonl").run().complete
    (vm,) = world.vms
    image = vm.images[0]
    assert world.oned_b.vm_state(vm.vm_b)[0] == "DONE"
    # Later, a real disaster: A wrote after the DR test, B's rbd-mirror was down (B's copy is
    # older), and OpenNebula's pool-wide force promote made B primary; no VM was started on B.
    world.ceph.stop_daemon("site-b")
    world.ceph.write("site-a", image, b"written on A after the DR test")
    world.site("a").one.poweroff(vm.vm_a, timeout=5)
    world.ceph.failover([image], planned=False)
    world.ceph.start_daemon("site-b")
    fb = world.failback(tmp_path / "new.jsonl")
    plan = fb.plan()
    assert not plan.vms and image not in [i.name for i in plan.images], plan  # history: not ours
    fb.run()
    assert world.ceph.data("site-a", image) == b"written on A after the DR test"  # not resynced
    assert not [c for c in world.ceph.calls if c[1] == "resync"]


@pytest.mark.parametrize("state", ["SUSPENDED", "STOPPED"])
def test_a_suspended_or_stopped_vm_on_b_is_a_waivable_blocker(tmp_path: Path, state: str) -> None:
    with MemoryWorld() as world:
        world.add_vm("db")
        world.disaster("unplanned", new_data=NEW)
        (vm,) = world.vms
        one_b = world.site("b").one
        assert isinstance(one_b, OpenNebulaSite)
        one_b._action(one_b.vm(vm.vm_b), "suspend" if state == "SUSPENDED" else "stop")
        poll_state(world, vm.vm_b, state)
        fb = world.failback(tmp_path / "j.jsonl")
        plan = fb.plan()
        (blocker,) = [b for b in plan.blockers if b.kind == "saved-memory-on-b"]
        assert blocker.waivable and f"VM {vm.vm_b}" in blocker.message and not plan.ok
        assert "saved memory" in blocker.message
        refused_and_untouched(world, fb)
        waived = world.failback(tmp_path / "j.jsonl", waive=["saved-memory-on-b"])
        plan = waived.plan()
        assert plan.ok and any(a.step == "terminate_b" and a.do for a in plan.actions()), plan
        assert waived.run().complete
        assert_failed_back(world, world.images())


def poll_state(world: MemoryWorld, vm_id: int, state: str) -> None:
    import time

    deadline = time.monotonic() + 5
    while world.oned_b.vm_state(vm_id)[0] != state:
        assert time.monotonic() < deadline, world.oned_b.vm_state(vm_id)
        time.sleep(0.01)


def test_a_pool_not_mirrored_on_a_site_is_a_blocker(world: MemoryWorld, tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    world.ceph.mirroring["site-b"] = False
    fb = world.failback(tmp_path / "j.jsonl")
    assert ("mirroring-not-enabled", "pool@site-b") in blockers(fb)
    refused_and_untouched(world, fb)


def test_an_unreadable_daemon_health_is_a_waivable_blocker(world: MemoryWorld,
                                                           tmp_path: Path) -> None:
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    world.ceph.daemon_readable["site-a"] = False  # the client's caps lack "service status"
    fb = world.failback(tmp_path / "j.jsonl")
    (blocker,) = [b for b in fb.plan().blockers if b.kind == "daemon-health-unknown"]
    assert blocker.waivable
    refused_and_untouched(world, fb)
    assert world.failback(tmp_path / "j.jsonl", waive=["daemon-health-unknown"]).run().complete
    assert_failed_back(world, world.images())


def test_a_shared_cdrom_is_neither_a_blocker_nor_touched(world: MemoryWorld,
                                                         tmp_path: Path) -> None:
    # An ISO attached to two VMs on each site (oned attaches a CDROM image read-only, itself,
    # to any number of VMs): not "image used twice", not "split VM", nothing to fail back.
    db = world.add_vm("db", cdrom=True)
    world.add_vm("web", disks=2, cdrom=True)
    iso = world.cdrom()
    world.disaster("unplanned", new_data=NEW)
    before = len(world.ceph.calls)
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    assert not plan.blockers, plan.blockers
    assert iso not in {i.name for i in plan.images}
    report = fb.run()
    assert report.complete, report
    assert_failed_back(world, world.images())
    assert not [c for c in world.ceph.calls[before:] if c[2] == iso]
    assert world.oned_a.vm_state(db.vm_a) == ("ACTIVE", "RUNNING")


def test_a_vm_with_a_disk_in_another_pool_is_refused_and_nothing_moves(world: MemoryWorld,
                                                                      tmp_path: Path) -> None:
    # Issue 13 case 2: the failback moves pool "one"; db's second disk is in pool "ssd". Stopping
    # db on B would leave that disk's last data on B and resume db on A's stale copy.
    world.add_vm("db", elsewhere="ssd")
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    db = world.vms[0]
    before = len(world.ceph.calls)
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    found = {(b.kind, b.target): b for b in plan.blockers}
    refusal = found[("other-pool-disk", f"vm:site-b:{db.vm_b}")]
    assert "ssd/one-" in refusal.message and "site-b" in refusal.message
    assert not refusal.waivable
    assert ("partial-pair", f"vm:site-a:{db.vm_a}") in found
    with pytest.raises(SafetyError, match="other-pool-disk"):
        fb.run()
    assert world.ceph.calls[before:] == []
    assert world.oned_b.vm_state(db.vm_b) == ("ACTIVE", "RUNNING")


def test_one_unreadable_disk_blocks_its_vm_only(world: MemoryWorld, tmp_path: Path) -> None:
    # Issue 13 case 6: an image registered on B by hand with a SOURCE that is not pool/image
    # (oned takes the SOURCE given). The listing no longer fails for every VM: that VM is a
    # waivable blocker naming it and its disk; the others are planned.
    world.add_vm("db")
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    odd = world.oned_b.add_vm("odd", disks=[world.oned_b.add_image(persistent=True,
                                                                   source="one-77")])
    plan = world.failback(tmp_path / "j.jsonl").plan()
    (blocker,) = plan.blockers
    assert (blocker.kind, blocker.target, blocker.waivable) == (
        "unreadable-disk", f"vm:site-b:{odd}", True)
    assert "disk 0" in blocker.message and "one-77" in blocker.message
    assert len(plan.vms) == 2
    # It concerns a failback of some VMs too (it could be using their images).
    some = world.failback(tmp_path / "k.jsonl", vms=[world.vms[0].vm_b]).plan()
    assert [b.kind for b in some.blockers] == ["unreadable-disk"]
    report = world.failback(tmp_path / "j.jsonl", waive=["unreadable-disk"]).run()
    assert report.complete, report
    assert_failed_back(world, world.images())
    assert world.oned_b.vm_state(odd) == ("ACTIVE", "RUNNING")


def test_b_s_history_is_read_by_id_not_listed(world: MemoryWorld, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 13 case 10: B is listed without its DONE VMs (state -1); the DONE VMs this journal
    # names are read by id (one.vmpool.infoset). A site keeping years of DONE VMs is never
    # listed whole.
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    (db,) = world.vms
    for _ in range(3):  # an earlier DR test's VMs, DONE since
        world.oned_b.add_vm("db-old", disks=[], state="DONE")
    listings: list[tuple[str, str, tuple[object, ...]]] = []
    real = OpenNebulaSite._listing

    def spy(self: OpenNebulaSite, method: str, *params: object, what: str) -> list[Any]:
        listings.append((self.name, method, params))
        return real(self, method, *params, what=what)

    monkeypatch.setattr(OpenNebulaSite, "_listing", spy)
    fb = world.failback(tmp_path / "j.jsonl")
    fb.plan()
    assert any(c[:2] == ("site-b", "vmpool.infoextended") for c in listings)  # in pages
    assert not [c for c in listings if c[1] == "vmpool.infoextended" and c[2][3] != -1]
    assert not [c for c in listings if c[1] == "vmpool.infoset"]  # the journal names none yet
    fb.demote_site_a()
    fb.resync_site_a()
    fb.terminate_site_b()
    listings.clear()
    again = world.failback(tmp_path / "j.jsonl").plan()
    assert ("site-b", "vmpool.infoset", (str(db.vm_b), True)) in listings
    (vm_plan,) = again.vms
    assert vm_plan.vm_b.is_done and vm_plan.vm_b.id == db.vm_b


def test_a_vm_whose_host_is_lost_on_b(world: MemoryWorld, tmp_path: Path) -> None:
    # Issue 13 case 9: a VM in UNKNOWN on B is refused (a terminate cannot reach its guest).
    # The operator fences the host, ends the VM with 'onevm recover --delete' and pairs it by
    # hand: the failback then brings it home.
    import xmlrpc.client

    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW, state_b="UNKNOWN")
    (db,) = world.vms
    plan = world.failback(tmp_path / "j.jsonl").plan()
    refusal = {b.kind: b for b in plan.blockers}["unknown-on-b"]
    assert refusal.target == f"vm:site-b:{db.vm_b}" and "UNKNOWN" in refusal.message
    proxy = xmlrpc.client.ServerProxy(world.oned_b.endpoint)
    assert proxy.one.vm.recover(world.oned_b.session, db.vm_b, 3)[0]  # recover --delete
    world.oned_b.wait_idle()
    assert world.oned_b.vm_state(db.vm_b) == ("DONE", "LCM_INIT")
    # DONE and not terminated by this failback: history, unless the operator pairs it.
    assert not world.failback(tmp_path / "j.jsonl").plan().vms
    fb = world.failback(tmp_path / "j.jsonl", pairs={db.vm_b: db.vm_a})
    report = fb.run()
    assert report.complete, report
    assert_failed_back(world, world.images())
    assert world.oned_a.vm_state(db.vm_a) == ("ACTIVE", "RUNNING")


def test_a_vm_on_a_running_on_host_copies_is_refused_before_anything(
        world: MemoryWorld, tmp_path: Path) -> None:
    # Issue 13 case 3, site A: in the ssh system datastore the VM runs on a copy of its image
    # on the host; resuming it would boot that pre-disaster copy.
    world.add_vm("db", ssh=True)
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    db = world.vms[0]
    before = len(world.ceph.calls)
    fb = world.failback(tmp_path / "j.jsonl")
    found = {(b.kind, b.target): b for b in fb.plan().blockers}
    refusal = found[("host-copy-on-a", f"vm:site-a:{db.vm_a}")]
    assert "pre-disaster copy" in refusal.message and not refusal.waivable
    with pytest.raises(SafetyError, match="host-copy-on-a"):
        fb.run()
    assert world.ceph.calls[before:] == []


def test_a_vm_on_b_in_a_failure_state_with_host_copies_is_refused(
        world: MemoryWorld, tmp_path: Path) -> None:
    # Issue 13 case 3, site B: terminate from BOOT_FAILURE cleans up without writing the host
    # copy back (DispatchManager::terminate -> trigger_delete; tm/ceph/delete.ssh).
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW, state_b="BOOT_FAILURE", ssh_b=True)
    db = world.vms[0]
    plan = world.failback(tmp_path / "j.jsonl").plan()
    refusal = {b.kind: b for b in plan.blockers}["host-copy-on-b"]
    assert refusal.target == f"vm:site-b:{db.vm_b}" and "BOOT_FAILURE" in refusal.message
    assert world.oned_b.vm_state(db.vm_b) == ("ACTIVE", "BOOT_FAILURE")


def test_an_interrupted_resync_then_a_second_interruption_after_demote_b(
        world: MemoryWorld, tmp_path: Path) -> None:
    # Run 1 dies between its resync intent and the done record (the request reached librbd);
    # run 2 proves the image, stops the VM on B, demotes B and dies before step 5; run 3 must
    # neither resync again (B is not primary any more) nor wait: it promotes.
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW)
    (vm,) = world.vms
    image = vm.images[0]
    path = tmp_path / "j.jsonl"
    first = world.failback(path)
    first.demote_site_a()
    Journal(path).write("resync_a", "intent", f"image:{image}")
    world.ceph.resync("site-a", image)
    second = world.failback(path)
    second.break_lock()
    with second.locked():
        second.resync_site_a()
        second.terminate_site_b()
        second.demote_site_b()
    third = world.failback(path)
    plan = third.plan()
    action = plan.images[0].action("resync_a")
    assert action is not None and not action.do, plan
    assert third.run().complete
    assert_failed_back(world, [image])
    assert len([c for c in world.ceph.calls if c[1] == "resync"]) == 1  # never twice


def test_a_journal_that_recorded_dr_history_as_a_pair_is_refused(world: MemoryWorld,
                                                                  tmp_path: Path) -> None:
    # A journal begun by an earlier version of this tool recorded a scope pairing A's VM with
    # B's DONE VM of an earlier DR test (history). Trusting it would resync A from B's old copy.
    world.add_vm("db")
    world.disaster("planned", new_data=NEW)
    assert world.failback(tmp_path / "dr-test.jsonl").run().complete
    (vm,) = world.vms
    image = vm.images[0]
    world.ceph.stop_daemon("site-b")
    world.ceph.write("site-a", image, b"written on A after the DR test")
    world.site("a").one.poweroff(vm.vm_a, timeout=5)
    world.ceph.failover([image], planned=False)
    world.ceph.start_daemon("site-b")
    old = Journal(tmp_path / "old.jsonl", run="old-release")
    old.write("run", "scope", pool="one", images=[image],
              pairs=[{"vm_a": vm.vm_a, "vm_b": vm.vm_b, "images": [image], "explicit": False}])
    fb = world.failback(tmp_path / "old.jsonl")
    assert ("dr-history", f"vm:site-b:{vm.vm_b}") in {(b.kind, b.target)
                                                       for b in fb.plan().unwaived}
    with pytest.raises(SafetyError, match="dr-history"):
        fb.run()
    assert world.ceph.data("site-a", image) == b"written on A after the DR test"


def test_a_vm_in_scope_with_an_unreadable_disk_is_never_stopped(world: MemoryWorld,
                                                                tmp_path: Path) -> None:
    # Waiving unreadable-disk is for VMs outside the scope: a VM this failback would stop may
    # have a clone behind its unreadable disk (terminate would delete it on both sites).
    odd = world.oned_b.add_image("odd", persistent=False, source="one-77")
    world.add_vm("db")
    world.disaster("unplanned", new_data=NEW, extra_b=[odd])
    (vm,) = world.vms
    fb = world.failback(tmp_path / "j.jsonl", waive=["unreadable-disk"])
    unwaived = {(b.kind, b.target) for b in fb.plan().unwaived}
    assert ("unresolved-disk", f"vm:site-b:{vm.vm_b}") in unwaived
    with pytest.raises(SafetyError, match="unresolved-disk"):
        fb.run()
    assert world.oned_b.vm_state(vm.vm_b) == ("ACTIVE", "RUNNING")


def test_a_failed_status_read_while_settling_fails_the_step_and_resyncs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A's status is read to decide whether a resync is needed; a read that fails is no answer
    # (a resync is a full copy of the image, never a reaction to an error).
    from ceph_failback.errors import CephConnectionError
    from ceph_failback.testing.ceph import MemoryMirrorPool

    with MemoryWorld(status_period=25) as world:
        world.add_vm("db")
        world.disaster("planned", new_data=NEW)
        fb = world.failback(tmp_path / "j.jsonl")
        fb.demote_site_a()
        real = MemoryMirrorPool.statuses
        calls = []

        def flaky(self: MemoryMirrorPool, *args: Any, **kwargs: Any) -> Any:
            if self.site_name == "site-a":
                calls.append(1)
                if len(calls) > 1:  # the step's first read works; the settle's fail
                    raise CephConnectionError("mon timeout", site="site-a")
            return real(self, *args, **kwargs)

        monkeypatch.setattr(MemoryMirrorPool, "statuses", flaky)
        # B's journal unreadable as empty: the journals prove nothing, so the step settles.
        monkeypatch.setattr(MemoryMirrorPool, "journal_header", lambda *a, **k: None)
        with pytest.raises(CephConnectionError):
            fb.resync_site_a()
        assert not [c for c in world.ceph.calls if c[1] == "resync"]


def dr_test_failback(world: MemoryWorld, tmp_path: Path) -> Failback:
    """One VM after a DR test (planned failover, new writes on B), and its failback."""
    world.add_vm("db")
    world.disaster("planned", new_data=NEW)
    return world.failback(tmp_path / "j.jsonl")


def test_an_unreadable_journal_blocks_the_plan_and_resyncs_nothing(
        world: MemoryWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ceph_failback.errors import CephPermissionError
    from ceph_failback.testing.ceph import MemoryCeph

    fb = dr_test_failback(world, tmp_path)

    def denied(self: MemoryCeph, site: str, image: str) -> Any:
        raise CephPermissionError("omap read denied", site=site, image=image)

    monkeypatch.setattr(MemoryCeph, "journal_header", denied)
    plan = fb.plan()
    (blocker,) = [b for b in plan.blockers if b.kind == "journal-unreadable"]
    assert "site-" in blocker.target and "omap read denied" in blocker.message
    assert not blocker.waivable
    with pytest.raises(SafetyError, match="journal-unreadable"):
        fb.resync_site_a()
    assert not [c for c in world.ceph.calls if c[1] == "resync"]


def test_a_journal_read_failing_while_settling_fails_the_step_and_resyncs_nothing(
        world: MemoryWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The first reads work but prove nothing (B's journal reads as absent), so step 2 settles;
    # then the reads fail: no answer, no resync.
    from ceph_failback.errors import CephConnectionError
    from ceph_failback.testing.ceph import MemoryMirrorPool

    fb = dr_test_failback(world, tmp_path)
    settling: list[bool] = []
    real_statuses = MemoryMirrorPool.statuses

    def statuses(self: MemoryMirrorPool, *args: Any, **kwargs: Any) -> Any:
        settling.append(True)  # only the settle wait reads statuses alone
        return real_statuses(self, *args, **kwargs)

    def header(self: MemoryMirrorPool, image: str, image_id: str | None = None) -> Any:
        if settling:
            raise CephConnectionError("osd timeout", site=self.site_name, image=image)
        return None

    monkeypatch.setattr(MemoryMirrorPool, "statuses", statuses)
    monkeypatch.setattr(MemoryMirrorPool, "journal_header", header)
    with pytest.raises(CephConnectionError):
        fb.resync_site_a()
    assert settling
    assert not [c for c in world.ceph.calls if c[1] == "resync"]


def test_images_outside_the_scope_left_unprotected_are_named(world: MemoryWorld,
                                                             tmp_path: Path) -> None:
    # Issue 14 item 6: the documented failover force-promotes the whole pool on B, so an image
    # no VM uses stays primary on both sites; the failback leaves it alone, and says so.
    world.add_vm("db")
    world.ceph.create_image("one-999", data=b"used by no VM")
    world.disaster("unplanned", new_data=NEW)
    world.ceph.failover(["one-999"], planned=False)
    fb = world.failback(tmp_path / "j.jsonl")
    plan = fb.plan()
    assert plan.ok and "one-999" not in {i.name for i in plan.images}
    (warning,) = [w for w in plan.warnings if "one-999" in w]
    assert "primary on both sites" in warning and "--image one-999" in warning
    report = fb.run()
    assert report.complete and dict(report.unprotected) == {"one-999": "primary on both sites"}
    assert "WARNING: 1 image(s) outside the scope are unprotected" in str(report)
    assert report.to_dict()["unprotected"] == {"one-999": "primary on both sites"}
    assert world.ceph.is_primary("site-a", "one-999") and world.ceph.is_primary("site-b",
                                                                                "one-999")
    # The fix the warning gives: include it. B's copy is then failed back like the others.
    again = world.failback(tmp_path / "k.jsonl", images=["one-999"])
    assert again.images == ["one-999"] and again.plan().ok
    report = again.run()
    assert report.complete and report.unprotected == ()
    assert world.ceph.is_primary("site-a", "one-999")
    assert not world.ceph.is_primary("site-b", "one-999")


def test_a_run_whose_lock_was_broken_stops_before_its_next_action(world: MemoryWorld,
                                                                 tmp_path: Path) -> None:
    # Issue 14 item 7 (fencing): an operator breaks the lock of a run they think is dead; the
    # run, alive after all, must change nothing more.
    world.add_vm("db")
    world.add_vm("web")
    world.disaster("unplanned", new_data=NEW)
    journal = tmp_path / "j.jsonl"

    def break_it(ev: Any) -> None:
        if ev.kind is EventKind.STEP_STARTED and ev.step == "terminate_b":
            world.failback(tmp_path / "other.jsonl").break_lock()

    fb = world.failback(journal, listeners=[break_it])
    with pytest.raises((LockedError, StepFailedError)) as info:
        fb.run()
    assert "no longer holds the lock" in str(info.value) or any(
        "no longer holds the lock" in m for m in getattr(info.value, "failures", {}).values())
    for vm in world.vms:  # no terminate was sent, nothing demoted on B
        assert world.oned_b.vm_state(vm.vm_b) == ("ACTIVE", "RUNNING")
        assert world.ceph.is_primary("site-b", vm.images[0])
    assert not Journal(journal).find(step="terminate_b", event="intent")
    report = world.failback(journal).run()  # resumed once nobody else runs
    assert report.complete, report
