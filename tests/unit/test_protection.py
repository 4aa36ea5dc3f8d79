"""After the flip (issue 14 item 3): the run waits until site B replays each image from A and
the report says per image whether it does; a split-brained B makes the report NOT complete, and
reprotect() resyncs B from A, only where this failback promoted A."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import StepFailedError
from ceph_failback.failback import Event, EventKind
from ceph_failback.failback.journal import Journal
from ceph_failback.testing import FAST, MemoryWorld
from ceph_failback.testing.ceph import _Entry

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld() as w:
        w.add_vm("db", disks=2)
        w.disaster("unplanned", new_data=NEW)
        yield w


def diverge_b_after_its_demotion(world: MemoryWorld, image: str):  # type: ignore[no-untyped-def]
    """A listener that gives B's demoted copy of ``image`` an entry A never sees, right after
    step 5 promoted A: B then reports split-brain (what the lab once showed)."""
    def listener(ev: Event) -> None:
        if (ev.kind is EventKind.ACTION and ev.step == "promote_a"
                and ev.target == f"image:{image}"
                and ev.data.get("outcome") == "done"):
            with world.ceph.lock:
                copy = world.ceph.images[image].copies["site-b"]
                copy.entries.append(_Entry("write", copy.entries[-1].tag_tid, "site-b", b"x"))
    return listener


def test_a_run_waits_until_b_replays_each_image_from_a(world: MemoryWorld,
                                                       tmp_path: Path) -> None:
    report = world.failback(tmp_path / "j.jsonl").run()
    assert report.complete, report
    assert {i.name: (i.protection, i.protected) for i in report.images} == {
        i: ("replaying from A", True) for i in world.images()}
    assert "replaying from A" in str(report)
    assert report.to_dict()["images"][0]["protected"] is True


def test_split_brain_on_b_after_the_flip_is_not_complete_until_reprotected(
        world: MemoryWorld, tmp_path: Path) -> None:
    image = world.images()[0]
    fb = world.failback(tmp_path / "j.jsonl",
                        listeners=[diverge_b_after_its_demotion(world, image)])
    report = fb.run()
    states = {i.name: i.protection for i in report.images}
    assert states[image] == "split-brain on B" and not report.complete, report
    assert "NOT PROTECTED" in str(report) and "NOT complete" in str(report)
    assert all(world.oned_a.vm_state(vm.vm_a) == ("ACTIVE", "RUNNING") for vm in world.vms)
    # The record keeps what rbd-mirror decided on: both journals' newest tags.
    (record,) = [r for r in Journal(tmp_path / "j.jsonl").find(event="protection")
                 if r.target == f"image:{image}"]
    assert record.data["journals"].startswith("B's journal: ") and "A's journal: " in (
        record.data["journals"]), record.data
    assert "orphan<-own" in record.data["journals"]  # B's demotion, after its own epoch
    before = [c for c in world.ceph.calls if c[1] == "resync"]
    result = fb.reprotect()
    assert result.done == [f"image:{image}"], result
    assert [c for c in world.ceph.calls if c[1] == "resync"] == [*before,
                                                                 ("site-b", "resync", image)]
    report = fb.report()
    assert report.complete, report
    assert {i.name: i.protected for i in report.images} == {i: True for i in world.images()}
    assert world.ceph.is_primary("site-a", image) and world.ceph.data("site-b", image) == NEW
    # Called again: nothing left to resync.
    assert fb.reprotect().done == []


def test_run_with_reprotect_resyncs_a_split_brained_b_at_once(world: MemoryWorld,
                                                              tmp_path: Path) -> None:
    image = world.images()[0]
    report = world.failback(tmp_path / "j.jsonl",
                            listeners=[diverge_b_after_its_demotion(world, image)]).run(
        reprotect=True)
    assert report.complete, report
    assert dict((i.name, i.protection) for i in report.images)[image] == (
        "replaying from A (reprotected)")


def test_reprotect_never_resyncs_b_where_this_failback_did_not_promote_a(
        world: MemoryWorld, tmp_path: Path) -> None:
    image = world.images()[0]
    world.failback(tmp_path / "j.jsonl",
                   listeners=[diverge_b_after_its_demotion(world, image)]).run()
    other = world.failback(tmp_path / "other.jsonl", images=[image])  # another journal
    with pytest.raises(StepFailedError) as info:
        other.reprotect()
    assert "did not promote it" in str(info.value.failures[f"image:{image}"])
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]


def diverge_b(world: MemoryWorld, image: str) -> None:
    """B's demoted copy of ``image`` gets an entry A never sees (B split-brains)."""
    with world.ceph.lock:
        copy = world.ceph.images[image].copies["site-b"]
        copy.entries.append(_Entry("write", copy.entries[-1].tag_tid, "site-b", b"x"))


def test_a_b_that_split_brains_after_the_run_saw_it_replay_is_never_resynced(
        world: MemoryWorld, tmp_path: Path) -> None:
    """B replayed from A at the run's check, then split: its copy changed after the failback
    (someone promoted and wrote it), so a resync would lose those writes: refused."""
    image = world.images()[0]
    fb = world.failback(tmp_path / "j.jsonl")
    assert fb.run().complete
    diverge_b(world, image)
    world.ceph.tick(3)
    preview = fb.reprotect_preview()
    assert str(preview[image].choice) == "refuse", preview
    assert "saw site-b replay it from site-a after the flip" in preview[image].reason
    with pytest.raises(StepFailedError) as info:
        fb.reprotect()
    assert "a resync would discard those writes" in str(info.value.failures[f"image:{image}"])
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]
    assert world.ceph.data("site-b", image) != world.ceph.data("site-a", image)
    # The refused image is recorded as it is: split and unprotected, so not complete.
    report = fb.report()
    outcome = {i.name: i for i in report.images}[image]
    assert outcome.protected is False and not report.complete, report
    assert outcome.protection == "split-brain on B, not resynced (reprotect refused it)"


@pytest.mark.parametrize("how", ["run", "resume"])
def test_a_later_run_that_finds_a_late_split_never_resyncs_it(
        world: MemoryWorld, tmp_path: Path, how: str) -> None:
    """A run on a finished journal checks protection again and records the split it finds now:
    that record must not make a split that happened after the failback (B was seen replaying
    from A) look like one the failback's own check saw."""
    image = world.images()[0]
    assert world.failback(tmp_path / "j.jsonl").run().complete
    diverge_b(world, image)
    world.ceph.tick(3)
    again = world.failback(tmp_path / "j.jsonl")
    with pytest.raises(StepFailedError) as info:
        if how == "run":
            again.run(reprotect=True)
        else:
            report = again.resume()
            assert {i.name: i.protection for i in report.images}[image] == "split-brain on B"
            again.reprotect()
    assert "a resync would discard those writes" in str(info.value.failures[f"image:{image}"])
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]
    assert world.ceph.data("site-b", image) != world.ceph.data("site-a", image)


def test_a_split_seen_by_the_run_stays_reprotectable_after_a_not_replaying_check(
        world: MemoryWorld, tmp_path: Path) -> None:
    """The run's check saw the split; a later check recording 'not replaying' (what a reprotect
    that skips records, e.g. while B's copy is being recreated) neither hides the split seen
    nor blocks the resync."""
    from ceph_failback.failback.ledger import Mark, Step, image_target

    image = world.images()[0]
    fb = world.failback(tmp_path / "j.jsonl",
                        listeners=[diverge_b_after_its_demotion(world, image)])
    assert {i.name: i.protection for i in fb.run().images}[image] == "split-brain on B"
    fb.ledger.write(Step.RUN, Mark.PROTECTION, image_target(image),
                    state="not replaying from A (up+starting_replay)", protected=False)
    assert str(fb.reprotect_preview()[image].choice) == "do"
    assert fb.reprotect().done == [f"image:{image}"]
    assert fb.report().complete


def test_a_split_no_check_saw_is_never_resynced(world: MemoryWorld, tmp_path: Path) -> None:
    """B not replaying at the run's check (its rbd-mirror was down), split-brained later:
    nothing says the split came from the flip, so it is not resynced."""
    image = world.images()[0]
    stopped: list[bool] = []

    def stop_b_daemon(ev: Event) -> None:
        if ev.kind is EventKind.STEP_STARTED and ev.step == "demote_b" and not stopped:
            world.ceph.stop_daemon("site-b")
            stopped.append(True)

    fb = world.failback(tmp_path / "j.jsonl", listeners=[stop_b_daemon],
                        timeouts=dataclasses.replace(FAST, protect=0.2))
    assert not fb.run().complete
    diverge_b(world, image)
    world.ceph.start_daemon("site-b")
    world.ceph.tick(3)
    decision = fb.reprotect_preview()[image]
    assert str(decision.choice) == "refuse", decision
    assert "never saw it split-brained after the flip" in decision.reason
    with pytest.raises(StepFailedError):
        fb.reprotect()
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]


def test_a_b_that_caught_up_after_the_run_is_recorded_protected_by_reprotect(
        world: MemoryWorld, tmp_path: Path) -> None:
    stopped: list[bool] = []

    def stop_b_daemon(ev: Event) -> None:  # B's rbd-mirror dies as B is demoted
        if ev.kind is EventKind.STEP_STARTED and ev.step == "demote_b" and not stopped:
            world.ceph.stop_daemon("site-b")
            stopped.append(True)

    fb = world.failback(tmp_path / "j.jsonl", listeners=[stop_b_daemon],
                        timeouts=dataclasses.replace(FAST, protect=0.2))
    assert not fb.run().complete
    world.ceph.start_daemon("site-b")
    world.ceph.tick(3)
    assert {str(d.choice) for d in fb.reprotect_preview().values()} == {"skip"}
    result = fb.reprotect()
    assert result.done == [] and len(result.skipped) == 2
    report = fb.report()
    assert report.complete, report
    assert {i.name: i.protection for i in report.images} == {
        i: "replaying from A" for i in world.images()}
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]


def test_b_not_picking_up_within_the_limit_is_said_and_not_resynced(
        world: MemoryWorld, tmp_path: Path) -> None:
    stopped: list[bool] = []

    def stop_b_daemon(ev: Event) -> None:  # B's rbd-mirror dies as B is demoted
        if ev.kind is EventKind.STEP_STARTED and ev.step == "demote_b" and not stopped:
            world.ceph.stop_daemon("site-b")
            stopped.append(True)

    fb = world.failback(tmp_path / "j.jsonl", listeners=[stop_b_daemon],
                        timeouts=dataclasses.replace(FAST, protect=0.2))
    report = fb.run()
    assert not report.complete
    for i in report.images:
        assert i.protected is False and i.protection.startswith(
            "not replaying from A after 0.2s"), i
    result = fb.reprotect()
    assert result.done == [] and len(result.skipped) == 2
    assert not [c for c in world.ceph.calls if c[:2] == ("site-b", "resync")]
    records = Journal(tmp_path / "j.jsonl").find(step="run", event="protection")
    assert len(records) == 4  # the run's check, then reprotect's (B still not replaying)
    assert all(r.data["protected"] is False for r in records)


def test_the_reprotect_command_shows_first_and_resyncs_only_with_yes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from ceph_failback.failback import Failback
    from ceph_failback.failback.steps.base import Decision, StepResult

    from .test_cli import Fake, run_cli, write_config

    Fake(monkeypatch)
    calls: list[str] = []

    def reprotect(fb: Failback, images: object = None) -> StepResult:
        calls.append("reprotect")
        return StepResult("reprotect", {"image:one-100": ("done", "resync requested")})

    def preview(fb: Failback, images: object = None) -> dict[str, Decision]:
        calls.append("preview")
        return {"one-100": Decision.do("split-brain on site-b: resync it from site-a")}

    monkeypatch.setattr(Failback, "reprotect", reprotect)
    monkeypatch.setattr(Failback, "reprotect_preview", preview)
    config = write_config(tmp_path)
    code, _, err = run_cli(capsys, "reprotect", "-c", str(config), "--yes")
    assert code == 2 and "nothing to reprotect" in err and calls == []
    Journal(tmp_path / "journal" / "one.jsonl").write("run", "scope", pool="one",
                                                      images=["one-100"], pairs=[])
    code, out, err = run_cli(capsys, "reprotect", "-c", str(config))
    assert code == 3 and "add --yes" in err and calls == ["preview"]
    assert "one-100: do: split-brain on site-b" in out
    calls.clear()
    code, out, err = run_cli(capsys, "reprotect", "-c", str(config), "--yes", "--json")
    assert code == 0 and calls == ["reprotect"]
    import json

    doc = json.loads(out)
    assert doc["reprotected"] == ["image:one-100"] and doc["complete"] is True


def test_the_journals_prove_protection_when_b_loses_its_replaying_report(
        tmp_path: Path) -> None:
    # Ceph's journal replayer can lose the report that it started (the lab: one image in three
    # said "stopped, local image is primary" on B for 28 s after A's promote): the journals
    # prove B replays A's promotion long before rbd-mirror's next periodic status.
    with MemoryWorld(status_period=10**6) as w:
        w.add_vm("db", disks=2)
        w.disaster("unplanned", new_data=NEW)
        lost = w.images()[0]
        w.ceph.lost_start_reports.add(("site-b", lost))
        fb = w.failback(tmp_path / "j.jsonl", timeouts=dataclasses.replace(FAST, protect=2.0))
        report = fb.run()
        assert report.complete, report
        assert {i.name: i.protected for i in report.images} == {i: True for i in w.images()}
        assert not w.ceph.raw_status("site-b", lost)["description"].startswith("replaying")
        records = {r.target: r.data for r in Journal(tmp_path / "j.jsonl").find(
            step="run", event="protection")}
        assert records[f"image:{lost}"]["proof"].startswith(
            "replaying from A inside A's current epoch"), records
        assert records[f"image:{w.images()[1]}"]["proof"].startswith("replaying from A inside")
        # reprotect right after, B's status still stale: the journals keep it protected.
        result = fb.reprotect()
        assert result.done == [] and len(result.skipped) == 2, result
        assert fb.report().complete, fb.report()
        assert not [c for c in w.ceph.calls if c[:2] == ("site-b", "resync")]


@pytest.mark.parametrize("catch_up", [FAST.catch_up, 0])
def test_a_is_promoted_only_once_b_s_rbd_mirror_is_registered_in_a_s_journal(
        world: MemoryWorld, tmp_path: Path, catch_up: float) -> None:
    """Rule ``peer-registered``. A's copies are recreated by the resync; B's rbd-mirror
    registers in their journals only at its next image check (late here). Promoted before,
    A would leave B split-brained for good (what the lab's CI showed: B's client, registered
    after the promote, sees only A's newest epoch); the run waits (before the VM stops, and
    without that wait, ``catch_up=0``, in step 5), and B replays from A."""
    world.ceph.registration_ticks = 150
    fb = world.failback(tmp_path / "j.jsonl",
                        timeouts=dataclasses.replace(FAST, catch_up=catch_up))
    report = fb.run()
    assert report.complete, report
    assert {i.name: i.protection for i in report.images} == {
        i: "replaying from A" for i in world.images()}
    b_uuid = world.ceph.site("site-b").mirror_pool("one").mirror_uuid()
    for image in world.images():
        header = world.ceph.journal_header("site-a", image)
        assert header.client(b_uuid) is not None


def test_promoting_a_before_b_s_rbd_mirror_registered_splits_b_in_the_model_as_in_the_lab(
        world: MemoryWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The model's side of the lab's finding: without either wait, the same run leaves B
    split-brained (so the test above can fail)."""
    from ceph_failback.failback.steps import promote_a

    world.ceph.registration_ticks = 150
    monkeypatch.setattr(promote_a, "wait_peer_registered", lambda ctx, name: None)
    report = world.failback(tmp_path / "j.jsonl",
                            timeouts=dataclasses.replace(FAST, catch_up=0)).run()
    assert {i.name: i.protection for i in report.images} == {
        i: "split-brain on B" for i in world.images()}
    assert not report.complete
    # The record says why: B's client in A's journal starts in A's newest epoch.
    for record in Journal(tmp_path / "j.jsonl").find(event="protection"):
        header = world.ceph.journal_header("site-a", record.target.removeprefix("image:"))
        newest = header.newest_tag
        assert newest is not None
        assert f"B's client in A's journal: at {newest.tid}/" in record.data["journals"], record


def test_the_vm_on_b_stops_only_once_b_s_rbd_mirror_is_registered_in_a_s_journal(
        world: MemoryWorld, tmp_path: Path) -> None:
    """The registration is awaited before the VM stops (with the catch-up), so step 5 does not
    wait for it with the VM down."""
    world.ceph.registration_ticks = 150
    b_uuid = world.ceph.site("site-b").mirror_pool("one").mirror_uuid()
    at_stop: list[bool] = []

    def listener(ev: Event) -> None:
        if ev.kind is EventKind.ACTION and ev.step == "terminate_b" and not at_stop:
            at_stop.append(all(world.ceph.journal_header("site-a", i).client(b_uuid)
                               is not None for i in world.images()))

    report = world.failback(tmp_path / "j.jsonl", listeners=[listener]).run()
    assert report.complete, report
    assert at_stop == [True]


@pytest.mark.parametrize("catch_up", [FAST.catch_up, 0])
def test_an_unreadable_journal_header_is_waited_out_not_taken_for_a_registration(
        world: MemoryWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        catch_up: float) -> None:
    """A's journal header cannot be read exactly while B's client is not in it: both waits go
    on (the image is not known registered) instead of promoting into a split-brain."""
    from ceph_failback.errors import CephError
    from ceph_failback.testing.mirror_pool import MemoryMirrorPool

    world.ceph.registration_ticks = 150
    b_uuid = world.ceph.site("site-b").mirror_pool("one").mirror_uuid()
    real = MemoryMirrorPool.journal_header
    failed: list[str] = []

    def flaky(self: MemoryMirrorPool, image: str, image_id: str | None = None):  # type: ignore[no-untyped-def]
        header = real(self, image, image_id)
        if self.site_name == "site-a" and header is not None and header.client(b_uuid) is None:
            failed.append(image)
            raise CephError("reading the image's journal header failed", site="site-a",
                            pool="one", image=image)
        return header

    monkeypatch.setattr(MemoryMirrorPool, "journal_header", flaky)
    report = world.failback(tmp_path / "j.jsonl",
                            timeouts=dataclasses.replace(FAST, catch_up=catch_up)).run()
    assert failed
    assert report.complete, report
    assert {i.name: i.protection for i in report.images} == {
        i: "replaying from A" for i in world.images()}
