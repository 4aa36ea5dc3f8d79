"""The Failback orchestrator end to end, on the real lab with the oned stand-ins."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import SafetyError, StepFailedError
from ceph_failback.failback import STEPS, Event, EventKind, Failback, Journal, Timeouts
from ceph_failback.failback.ledger import image_target
from ceph_failback.failback.safety import SPLIT_BRAIN_ON_B
from ceph_failback.failback.verify import Verify
from ceph_failback.lab import Lab
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import World

from .helpers import pattern, poll

TIMEOUTS = Timeouts(settle=30, resync=150, mirror=90, promote=90, terminate=30, resume=30,
                    poll=0.5, protect=180)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def world(lab: Lab) -> Iterator[World]:
    with World(lab, delays=Delays.uniform(0.05)) as w:
        yield w


def make_failback(world: World, journal: Path, timeouts: Timeouts = TIMEOUTS, **kw) -> Failback:
    return Failback(world.site("a"), world.site("b"), world.lab.pool, journal=journal,
                    timeouts=timeouts, **kw)


def build(world: World, n: int = 2, kind: str = "unplanned") -> dict[str, str]:
    """``n`` VMs (the first with two disks), replicated, then a disaster with new writes on B.
    Returns the images' checksums on B."""
    for i in range(n):
        world.add_vm(f"vm{i}", disks=2 if i == 0 else 1, data=pattern(f"a-{i}", 1 << 20))
    world.wait_replicated()
    world.disaster(kind, new_data=pattern("written-on-b", 2 << 20))  # type: ignore[arg-type]
    return world.expected_checksums()


def assert_failed_back(world: World, expected: dict[str, str], fb: Failback) -> None:
    lab = world.lab
    for image, checksum in expected.items():
        assert lab.is_primary("a", image), f"{image} not primary on A"
        assert not lab.is_primary("b", image), f"{image} still primary on B"
        assert lab.checksum("a", image) == checksum, f"{image}: A does not hold B's last writes"
    for p in world.vms:
        assert world.oned_a.vm_state(p.vm_a) == ("ACTIVE", "RUNNING")
        assert world.oned_b.vm_state(p.vm_b) == ("DONE", "LCM_INIT")
    # B replays from A again (the images are mirrored the right way round). rbd-mirror on B
    # takes this up on its own schedule: a loaded 2-core machine once needed more than 90 s.
    by_pool: dict[str, list[str]] = {}
    for image in expected:  # "pool/image" outside the lab's main pool
        pool_name, name = world.lab.where(image)
        by_pool.setdefault(pool_name, []).append(name)
    with world.lab.connect("b") as b:
        seen: dict[str, str] = {}

        def replaying() -> bool:
            seen.clear()
            ok = True
            for pool_name, names in by_pool.items():
                statuses = b.pool(pool_name).statuses(names)
                seen.update({f"{pool_name}/{i}": statuses[i].local.summary()
                             if i in statuses else "not listed" for i in names})
                ok = ok and len(statuses) == len(names) and all(
                    s.local.is_replaying() for s in statuses.values())
            return ok

        try:
            poll(replaying, timeout=180, what="site B to replay from A")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen on B: {seen}") from None
    # Never a forced promote.
    promotes = fb.journal.find(step="promote_a", event="done")
    assert promotes and all(r.data.get("force") is False for r in promotes)


def test_unplanned_disaster_end_to_end(world: World, tmp_path: Path) -> None:
    expected = build(world, 3)
    events = []
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl", listeners=[events.append])
    plan = fb.plan()
    assert plan.ok, plan
    assert {a.target for a in plan.actions("resync_a") if a.do} == {
        f"image:{i}" for i in expected}
    report = fb.run()
    assert report.complete, report
    # The run waited until B replays each image from A again (issue 14 item 3).
    assert {i.name: i.protection for i in report.images} == {
        i: "replaying from A" for i in expected}, report
    assert_failed_back(world, expected, fb)
    assert all(i.resynced for i in report.images)
    assert len(report.downtimes()) == 3 and all(d > 0 for d in report.downtimes())
    kinds = Counter(e.kind for e in events)
    assert kinds[EventKind.STEP_STARTED] >= len(STEPS)
    assert any(e.kind is EventKind.IMAGE_PROGRESS for e in events)
    # A second run changes nothing and repeats nothing.
    before = len(fb.journal.find(event="done"))
    again = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl").run()
    assert again.complete
    assert len(fb.journal.__class__(fb.journal.path).find(event="done")) == before
    # A new failover later: the old journal's resyncs and proofs must not carry over to it.
    world.disaster("unplanned", new_data=pattern("written-on-b-again", 1 << 20))
    stale = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    found = {(b.kind, b.target) for b in stale.plan().blockers}
    assert {("stale-journal", f"image:{i}") for i in expected} <= found, found
    roles = {i: (world.lab.is_primary("a", i), world.lab.is_primary("b", i)) for i in expected}
    with pytest.raises(SafetyError, match="new journal"):
        stale.run()
    with pytest.raises(SafetyError, match="new journal"):
        stale.resync_site_a()
    assert roles == {i: (world.lab.is_primary("a", i), world.lab.is_primary("b", i))
                     for i in expected}


def test_dr_test_failback_resyncs_nothing(world: World, tmp_path: Path) -> None:
    expected = build(world, 2, kind="planned")
    # The proof that A replays inside B's epoch is read from the journals (issue 14 item 1):
    # A's replay position reaches the status only on rbd-mirror's own ~30 s report cycle
    # (measured 13-39 s after the flip), the journals within seconds (A's client commits every
    # rbd_mirror_journal_commit_age, 5 s). A 30 s settle used to expire first and resync.
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl",
                       timeouts=dataclasses.replace(TIMEOUTS, settle=30.0))
    plan = fb.plan()
    assert plan.ok, plan
    assert not any(a.do for a in plan.actions("demote_a"))
    report = fb.run()
    assert report.complete
    assert not any(i.resynced for i in report.images), fb.journal.find(step="resync_a")
    assert fb.journal.find(step="resync_a", event="done") == []
    proofs = [r.data.get("proof", "") for r in fb.journal.find(step="resync_a", event="observed")]
    assert len(proofs) == len(expected) and all("B's journal" in p for p in proofs), proofs
    assert_failed_back(world, expected, fb)


def test_resumed_vm_with_no_recorded_outcome_does_not_block_a_rerun(
        world: World, tmp_path: Path) -> None:
    """Killed after step 6 resumed a VM but before its outcome was written (seen in the suite:
    the pipeline resumes one VM while another is still promoted): the rerun must not refuse the
    VM the failback itself started on A."""
    expected = build(world, 1)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    assert make_failback(world, journal).run().complete
    lines = journal.read_text().splitlines()
    kept = [line for line in lines
            if (json.loads(line)["step"], json.loads(line)["event"]) != ("resume_a", "done")]
    assert len(kept) == len(lines) - 1
    journal.write_text("\n".join(kept) + "\n")
    again = make_failback(world, journal)
    plan = again.plan()
    assert plan.ok, plan.blockers
    report = again.run()
    assert report.complete, report
    assert_failed_back(world, expected, again)


def test_each_method_alone_in_the_documented_order(world: World, tmp_path: Path) -> None:
    expected = build(world, 2)
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    # Step 3 before steps 1 and 2: refused before any VM stops (it would stay down with no copy
    # on A to resume from).
    with pytest.raises(StepFailedError) as early:
        fb.terminate_site_b()
    assert all("not ready to take over" in m for m in early.value.failures.values())
    assert len(early.value.failures) == 2
    assert all(world.oned_b.vm_state(p.vm_b) == ("ACTIVE", "RUNNING") for p in world.vms)
    assert not [a for a in world.oned_b.actions if a[1].startswith("terminate")]
    # Step 4 before steps 1 and 2: refused, B stays primary (A would be left with its old copy).
    with pytest.raises(StepFailedError) as early:
        fb.demote_site_b()
    assert len(early.value.failures) == 3
    assert all("stale-promote trap" in m for m in early.value.failures.values())
    assert all(world.lab.is_primary("b", i) for i in expected)
    assert len(fb.demote_site_a().done) == 3
    assert len(fb.resync_site_a().done) == 3
    assert len(fb.terminate_site_b().done) == 2
    assert len(fb.demote_site_b().done) == 3
    assert len(fb.promote_site_a().done) == 3
    assert len(fb.resume_site_a().done) == 2
    assert fb.report().complete
    assert_failed_back(world, expected, fb)
    # Each step again: everything skipped.
    for step in (fb.demote_site_a, fb.resync_site_a, fb.terminate_site_b, fb.demote_site_b,
                 fb.promote_site_a, fb.resume_site_a):
        result = step()
        assert result.done == [] and result.failed == {}, result


def test_stale_promote_trap_is_refused(world: World, tmp_path: Path) -> None:
    """A demoted but never-resynced image on A would accept a non-forced promote and serve
    stale data; the orchestrator refuses, plain librbd does not."""
    expected = build(world, 1)
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    fb.demote_site_a()
    # Skip the resync (step 2) and go on as a careless script would: stop the VM on B and
    # demote B by hand, then ask the orchestrator to promote A.
    image = world.vms[0].images[0]
    world.site("b").one.terminate(world.vms[0].vm_b, timeout=30)
    with world.lab.connect("b") as b:
        b.pool(world.lab.pool).demote(image)
    # The step checks the plan again when it takes the lock: the image is primary on neither
    # site and this failback did not demote B (and B's VM was ended outside it): refused.
    with pytest.raises(SafetyError) as info:
        fb.promote_site_a()
    assert "no-primary" in str(info.value) and image in str(info.value)
    assert not world.lab.is_primary("a", image)
    # Plain librbd: a non-forced promote goes through at once, and A serves the old data.
    with world.lab.connect("a") as a:
        a.pool(world.lab.pool).promote(image)
    assert world.lab.is_primary("a", image)
    assert world.lab.checksum("a", image) != expected[image]


def test_plan_lists_blockers_and_changes_nothing(world: World, tmp_path: Path) -> None:
    lab = world.lab
    for name in ("clone-vm", "split", "missing-on-a", "fine"):
        world.add_vm(name, data=pattern(name))
    world.wait_replicated()
    clone, split, missing, fine = world.vms
    world.disaster("unplanned", vms=[clone], persistent_on_b=False)
    world.disaster("unplanned", vms=[split, missing, fine],
                   new_data=pattern("written-on-b", 4096))
    # split: someone demoted B by hand after the VM wrote there: B's copy diverged from A's.
    with lab.connect("b") as b:
        b.pool(lab.pool).demote(split.images[0])
        poll(lambda: b.pool(lab.pool).status(split.images[0]).is_split_brain(),
             what="split-brain reported on B")
    # missing-on-a: its VM on A is gone (DONE), nothing on A would take the image back.
    world.site("a").one.terminate(missing.vm_a, timeout=30)
    clone = world.vms[0]
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    snapshot = {i: (lab.is_primary("a", i), lab.is_primary("b", i), lab.checksum("a", i),
                    lab.checksum("b", i)) for i in world.all_images()}
    vm_states = {p.vm_b: world.oned_b.vm_state(p.vm_b) for p in world.vms}
    plan = fb.plan()
    found = {(b.kind, b.target) for b in plan.blockers}
    assert any(k == "non-persistent-disk" and clone.images[0] in t for k, t in found), plan
    assert ("split-brain-on-b", f"image:{split.images[0]}") in found, plan
    assert ("no-vm-on-a", f"image:{missing.images[0]}") in found, plan
    assert not any(t == f"image:{fine.images[0]}" for _, t in found), plan
    assert not plan.ok and plan.unwaived
    with pytest.raises(SafetyError) as info:
        fb.run()
    assert "non-persistent" in str(info.value) and "split-brain" in str(info.value)
    assert {i: (lab.is_primary("a", i), lab.is_primary("b", i), lab.checksum("a", i),
                lab.checksum("b", i)) for i in world.all_images()} == snapshot
    assert {p.vm_b: world.oned_b.vm_state(p.vm_b) for p in world.vms} == vm_states
    assert fb.journal.find(event="done") == [] and fb.journal.find(event="intent") == []
    assert world.oned_b.deleted_images == []


def test_terminating_a_clone_vm_deletes_its_image(world: World) -> None:
    """The stand-in's side effect is real: what failback must refuse would really delete."""
    world.add_vm("clone-vm", data=pattern("c"))
    world.wait_replicated()
    world.disaster("unplanned", persistent_on_b=False)
    pair = world.vms[0]
    vm = world.site("b").one.vm(pair.vm_b)
    (disk,) = vm.disks_in(world.lab.pool)
    assert not disk.is_persistent and world.lab.image_exists(disk.image, site="b")
    world.site("b").one.terminate(pair.vm_b, timeout=30)
    assert not world.lab.image_exists(disk.image, site="b")
    assert (world.lab.pool, disk.image) in [tuple(x) for x in world.oned_b.deleted_images]


def _child_config(world: World, journal: Path, **kw) -> str:
    def site(which: str) -> dict:
        cluster = world.lab.site(which)
        oned = world.oned_a if which == "a" else world.oned_b
        return {"name": cluster.name, "conf": str(cluster.conf_path), "client": world.client,
                "keyring": str(cluster.keyring_for(world.client)), "endpoint": oned.endpoint,
                "session": oned.session}
    t = TIMEOUTS
    return json.dumps({"a": site("a"), "b": site("b"), "pool": world.lab.pool,
                       "journal": str(journal),
                       "timeouts": {"settle": t.settle, "resync": t.resync, "mirror": t.mirror,
                                    "promote": t.promote, "terminate": t.terminate,
                                    "resume": t.resume, "poll": t.poll}, **kw})


def _child(world: World, journal: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own test helper, fixed arguments
        [sys.executable, "-m", "tests.lab.failback_child", _child_config(world, journal, **kw)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def _hook_notes(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                ) -> tuple[Path, list[dict]]:
    """Command hooks at every point, for the failback and for each VM: each notes its run in a
    file (``<when> <vm on B or ->``)."""
    ran = tmp_path / "hooks.log"
    note = [sys.executable, "-c", "import os; open(os.environ['NOTE'], 'a').write("
            "os.environ['FAILBACK_WHEN'] + ' ' + os.environ.get('FAILBACK_VM_B', '-') + '\\n')"]
    monkeypatch.setenv("NOTE", str(ran))  # the children inherit it, and so do their hooks
    hooks = [{"when": w, "command": note} for w in ("before_run", "before_terminate",
                                                     "after_resume", "after_run")]
    hooks += [{"when": w, "command": note, "vm": p.vm_b} for p in world.vms
              for w in ("before_terminate", "after_resume")]
    return ran, hooks


def test_killed_after_each_step_then_resumed(world: World, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    expected = build(world, 2)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    ran, hooks = _hook_notes(world, tmp_path, monkeypatch)
    for step in STEPS[:-1]:
        done = _child(world, journal, kill_after=step, hooks=hooks)
        assert done.returncode == -9, (step, done.stdout, done.stderr[-3000:])
    final = _child(world, journal, hooks=hooks)
    assert final.returncode == 0, final.stderr[-3000:]
    assert json.loads(final.stdout.splitlines()[-1])["complete"]
    j = Journal(journal)
    fb = make_failback(world, journal)
    assert_failed_back(world, expected, fb)
    assert len(j.runs()) == len(STEPS)
    for step in ("demote_a", "resync_a", "demote_b", "promote_a", "resume_a"):
        done = Counter(r.target for r in j.find(step=step, event="done"))
        assert done and max(done.values()) == 1, (step, done)
    # Exactly one terminate reached each VM on B.
    for p in world.vms:
        sent = [a for a in world.oned_b.actions
                if a[0] == p.vm_b and a[1].startswith("terminate") and a[2]]
        assert len(sent) == 1, (p, world.oned_b.actions)
    # Every hook is done once. A kill at a step's end can land while another VM's hook runs
    # (step 2 goes on beside the VMs' stages): that hook has an intent and no outcome, and runs
    # again; so each ran at least once and at most once per intent, never after its "done".
    intents = Counter(_note_of(r.target) for r in j.find(step="hook", event="intent"))
    dones = Counter(_note_of(r.target) for r in j.find(step="hook", event="done"))
    notes = Counter(ran.read_text().splitlines())
    assert dones == Counter(dict.fromkeys(intents, 1)) and len(dones) == 8, dones
    assert all(1 <= notes[k] <= intents[k] for k in intents) and set(notes) == set(intents), (
        notes, intents)


def _note_of(target: str) -> str:
    """``hook:<when>:<name>@vm:<id>`` -> ``<when> <id>`` (``-`` for the failback's)."""
    when = target.split(":")[1]
    return f"{when} {target.rsplit('@vm:', 1)[1] if '@vm:' in target else '-'}"


def test_hooks_run_exactly_once_across_kills_and_resumptions(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each step for every VM in turn (pipeline=False): a kill at a step's end never lands in a
    # hook, and each hook runs exactly once across the kills and the resumptions.
    expected = build(world, 2)
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    ran, hooks = _hook_notes(world, tmp_path, monkeypatch)
    for step in STEPS[:-1]:
        done = _child(world, journal, kill_after=step, hooks=hooks, pipeline=False)
        assert done.returncode == -9, (step, done.stdout, done.stderr[-3000:])
    final = _child(world, journal, hooks=hooks, pipeline=False)
    assert final.returncode == 0, final.stderr[-3000:]
    assert json.loads(final.stdout.splitlines()[-1])["complete"]
    assert_failed_back(world, expected, make_failback(world, journal))
    assert Counter(ran.read_text().splitlines()) == Counter(
        ["before_run -", "before_terminate -", "after_resume -", "after_run -"]
        + [f"{w} {p.vm_b}" for p in world.vms for w in ("before_terminate", "after_resume")])


@pytest.mark.parametrize("kind", ["unplanned", "planned"])
def test_snapshot_mode_end_to_end(snapshot_lab: Lab, tmp_path: Path, kind: str) -> None:
    with World(snapshot_lab, delays=Delays.uniform(0.05)) as world:
        expected = build(world, 2, kind=kind)
        fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
        report = fb.run()
        assert report.complete, report
        assert_failed_back(world, expected, fb)
        assert all(i.resynced for i in report.images) == (kind == "unplanned")
        if kind == "planned":
            assert fb.journal.find(step="resync_a", event="done") == []


@pytest.mark.parametrize("mode", ["journal", "snapshot"])
def test_verification_catches_a_copy_altered_on_a_behind_the_library_s_back(
        lab: Lab, snapshot_lab: Lab, tmp_path: Path, mode: str) -> None:
    # Both copies are read through librbd (B's after its demotion, A's after its promotion)
    # and compared chunk by chunk. A write on A right after the promote, before the resume,
    # is caught: that VM stays down; the other one, verified equal, is home.
    with World(lab if mode == "journal" else snapshot_lab,
               delays=Delays.uniform(0.05)) as world:
        expected = build(world, 2)
        first, second = world.vms
        victim = first.images[1]

        def tamper(event: Event) -> None:
            if (event.kind is EventKind.ACTION and event.step == "promote_a"
                    and event.target == f"image:{victim}" and event.data.get("outcome") == "done"):
                world.lab.write("a", victim, b"written on A behind the failback's back",
                                offset=1 << 20)

        fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl",
                           verify=Verify(sample=2), listeners=[tamper])
        with pytest.raises(StepFailedError) as info:
            fb.run()
        assert "content differs at offset 0" in info.value.failures[f"image:{victim}"]
        assert world.oned_a.vm_state(first.vm_a) == ("POWEROFF", "LCM_INIT")
        assert world.oned_a.vm_state(second.vm_a) == ("ACTIVE", "RUNNING")
        report = fb.report()
        assert {i.name: i.verified for i in report.images} == {
            i: i != victim for i in expected}, report
        assert all(world.lab.checksum("a", i) == expected[i] for i in second.images)


def test_dr_history_on_b_is_never_paired(world: World, tmp_path: Path) -> None:
    """A DR test left a DONE VM on B whose disk names the image. A later disaster force-promotes
    B (OpenNebula's pool-wide promote) with no VM started there, while B's copy is older than
    A's: the failback must not pair A's VM with the DONE VM and resync A from B's old copy."""
    lab = world.lab
    (image,) = world.add_vm("history", data=pattern("first", 1 << 20)).images
    world.wait_replicated()
    world.disaster("planned")
    (vm,) = world.vms
    # The DR test's failback, by hand: the VM on B terminated, the image flipped back to A.
    one_b, one_a = world.site("b").one, world.site("a").one
    one_b.terminate(vm.vm_b, timeout=30)
    with lab.connect("b") as b:
        b.pool(lab.pool).demote(image)
    lab.promote_when_possible("a", image)
    one_a.resume(vm.vm_a, timeout=30)
    assert world.oned_b.vm_state(vm.vm_b)[0] == "DONE"
    # The real disaster: B's rbd-mirror is down, A writes, then B is force-promoted.
    lab.stop_rbd_mirror("b")
    try:
        lab.write("a", image, pattern("latest-on-a", 1 << 20))
        latest = lab.checksum("a", image)
        one_a.poweroff(vm.vm_a, timeout=30)
        lab.promote_when_possible("b", image, force=True)
    finally:
        lab.start_rbd_mirror("b")
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-new.jsonl")
    plan = fb.plan()
    assert image not in [i.name for i in plan.images] and not plan.vms, plan
    fb.run()
    assert lab.checksum("a", image) == latest  # A's newer data was not resynced away
    assert lab.is_primary("a", image)


# -- real OpenNebula topologies (issue 13 cases 2-4) --------------------------------------------

TOPOLOGIES = {
    # case: (the VM on A, the disaster, the blocker the plan must show)
    "suspended-on-b": ({}, {"state_b": "SUSPENDED"}, "saved-memory-on-b"),
    "ssh-on-a": ({"ssh": True}, {}, "host-copy-on-a"),
    "ssh-failure-on-b": ({}, {"state_b": "BOOT_FAILURE", "ssh_b": True}, "host-copy-on-b"),
    "disk-in-another-pool": ({}, {"elsewhere_b": "ssd"}, "other-pool-disk"),
}


def snapshot(world: World) -> dict[str, object]:
    """Roles and checksums of every image on both sites, and every VM's state on both."""
    lab = world.lab
    return {
        "images": {i: (lab.is_primary("a", i), lab.is_primary("b", i), lab.checksum("a", i),
                       lab.checksum("b", i)) for i in world.all_images()},
        "vms": [(world.oned_a.vm_state(p.vm_a), world.oned_b.vm_state(p.vm_b))
                for p in world.vms],
    }


@pytest.mark.parametrize("case", TOPOLOGIES)
def test_real_topologies_are_refused_with_nothing_lost(world: World, tmp_path: Path,
                                                       case: str) -> None:
    vm_kw, disaster_kw, kind = TOPOLOGIES[case]
    world.add_vm("topo", data=pattern(case, 1 << 20), **vm_kw)  # type: ignore[arg-type]
    world.wait_replicated()
    world.disaster("unplanned", new_data=pattern("on-b", 1 << 20),
                   **disaster_kw)  # type: ignore[arg-type]
    world.oned_b.wait_idle()
    before = snapshot(world)
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    assert kind in {b.kind for b in fb.plan().unwaived}
    with pytest.raises(SafetyError, match=kind):
        fb.run()
    assert snapshot(world) == before  # refused before anything changed, on either site
    if case == "suspended-on-b":
        # Waivable: the operator knowingly discards the guest's saved memory.
        expected = world.expected_checksums()
        fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl", waive=["saved-memory-on-b"])
        assert fb.run().complete
        assert_failed_back(world, expected, fb)


def test_several_pools_fail_back_together_with_nothing_lost(world: World,
                                                            tmp_path: Path) -> None:
    # Issue 13 case 2: a VM with a disk in each of two mirrored pools (two Ceph datastores).
    lab = world.lab
    lab.add_pool("ssd")
    world.add_vm("multi", other_pool="ssd", data=pattern("multi", 1 << 20))
    world.add_vm("plain", data=pattern("plain", 1 << 20))
    world.wait_replicated()
    world.disaster("unplanned", new_data=pattern("on-b", 1 << 20))
    world.oned_b.wait_idle()
    expected = world.expected_checksums()
    assert any(i.startswith("ssd/") for i in expected)
    before = snapshot(world)
    # The main pool alone: refused before anything changes, naming the pools to give.
    with pytest.raises(SafetyError, match="other-pool-disk") as info:
        make_failback(world, tmp_path / f"{tmp_path.name}-one.jsonl").run()
    assert "['one', 'ssd']" in str(info.value)
    assert snapshot(world) == before
    # Both pools: every image failed back, each VM resumed once.
    fb = Failback(world.site("a"), world.site("b"), lab.pools, journal=tmp_path / f"{tmp_path.name}-j.jsonl",
                  timeouts=TIMEOUTS)
    assert fb.plan().ok
    report = fb.run()
    assert report.complete, report
    keys = {i if "/" in i else f"{lab.pool}/{i}" for i in expected}
    assert {i.name for i in report.images} == keys
    assert_failed_back(world, expected, fb)
    assert fb.lock_holder() is None


def test_snapshot_schedule_firing_after_the_stop_is_accepted(
        snapshot_lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14 item 5: an ``rbd mirror snapshot schedule`` on B that fires right after step 3's
    own mirror snapshot makes A sync that newer snapshot; the mirrored wait must accept it (it
    holds every write: the VM was stopped first). The schedule's firing is made certain here by
    taking one more mirror snapshot on B after ours, as the schedule would."""
    from ceph_failback.ceph.mirror import MirrorPool

    real = MirrorPool.create_mirror_snapshot
    fired: list[str] = []

    def ours_then_the_schedule(self: MirrorPool, image: str) -> int:
        snap_id = real(self, image)
        real(self, image)
        fired.append(image)
        return snap_id

    monkeypatch.setattr(MirrorPool, "create_mirror_snapshot", ours_then_the_schedule)
    with World(snapshot_lab, delays=Delays.uniform(0.05)) as world:
        expected = build(world, 1)
        fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl",
                           timeouts=dataclasses.replace(TIMEOUTS, mirror=40))
        report = fb.run()
        assert report.complete, report
        assert set(fired) == set(expected)
        assert_failed_back(world, expected, fb)


def split_b(lab: Lab, image: str) -> str:
    """B's copy of ``image`` diverges: promoted by hand, written, demoted again (B then reports
    split-brain). Returns B's checksum."""
    lab.promote_when_possible("b", image, force=True)
    lab.wait_replay_stopped("b", image)
    lab.write("b", image, pattern("stray-on-b", 1 << 20))
    with lab.connect("b") as b:
        b.pool(lab.pool).demote(image)
    poll(lambda: "split-brain" in str(lab.raw_status("b", image).get("description")),
         timeout=120, what="site B to report split-brain")
    return lab.checksum("b", image)


def test_a_b_that_split_brains_at_the_flip_is_reprotected_and_a_later_split_is_not(
        world: World, tmp_path: Path) -> None:
    """Issue 14 item 3 on real Ceph. B split-brains right after the flip (what the lab once
    showed; stood for here by a hand-made promotion, write and demotion of B's copy as soon as
    step 5 promoted A, before the run's check): the run's check records the split, the report
    is NOT complete, and reprotect() resyncs B from A and waits until B replays from A. Then B
    split-brains again, after a check saw it replay from A: its copy holds writes A never saw,
    so reprotect() refuses and leaves it as it is."""
    lab = world.lab
    image = sorted(build(world, 1))[0]  # one VM, two disks: the first split-brains
    errors: list[BaseException] = []

    def split_at_the_flip(ev: Event) -> None:
        if (ev.kind is EventKind.ACTION and ev.step == "promote_a"
                and ev.target == image_target(image) and ev.data.get("outcome") == "done"):
            try:
                split_b(lab, image)
            except BaseException as exc:  # noqa: BLE001 (reported by the test below)
                errors.append(exc)

    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl", listeners=[split_at_the_flip])
    report = fb.run()
    assert not errors, errors
    states = {i.name: i.protection for i in report.images}
    assert states[image] == SPLIT_BRAIN_ON_B and not report.complete, report
    on_a = lab.checksum("a", image)
    assert str(fb.reprotect_preview()[image].choice) == "do"
    result = fb.reprotect()
    assert result.done == [f"image:{image}"], result
    report = fb.report()
    states = {i.name: i.protection for i in report.images}
    assert report.complete and states[image] == "replaying from A (reprotected)", report
    assert lab.is_primary("a", image) and not lab.is_primary("b", image)
    poll(lambda: lab.checksum("b", image) == on_a, timeout=120,
         what="B's resynced copy to hold A's data")
    assert lab.checksum("a", image) == on_a
    # A journal that did not promote A never resyncs B.
    other = make_failback(world, tmp_path / f"{tmp_path.name}-other.jsonl", images=[image])
    with pytest.raises(StepFailedError, match="did not promote it"):
        other.reprotect()
    # A later split: B was seen replaying from A, so its new writes are a person's call.
    on_b = split_b(lab, image)
    with pytest.raises(StepFailedError, match="a resync would discard those writes"):
        fb.reprotect()
    assert lab.checksum("b", image) == on_b != on_a, "B's later writes were touched"
    assert not fb.report().complete


def test_a_three_tier_service_fails_back_in_its_start_order(world: World, tmp_path: Path) -> None:
    # OneFlow's service db <- app <- lb on site A (the stand-in stores it as oneflow-server does),
    # with its ready status gate, and a VM of no service. B stops lb, app, db in that order,
    # each only once the one before it is DONE; A resumes db, app, lb, each only once the guest
    # of the one before it reported READY=YES through OneGate (0.3 s into its boot; each also
    # reported before the disaster, which must not count).
    for name in ("db", "app", "lb", "mail"):
        world.add_vm(name, data=pattern(f"a-{name}", 1 << 20))
    db, app, lb, mail = world.vms
    world.oned_a.add_service("web", {"db": [db.vm_a], "app": [app.vm_a], "lb": [lb.vm_a]},
                             parents={"app": ["db"], "lb": ["app"]}, ready_status_gate=True)
    for vm in (db, app, lb):
        world.oned_a.guest_reports_ready(vm.vm_a, after=0.3)
    world.wait_replicated()
    world.disaster("unplanned", new_data=pattern("written-on-b", 1 << 20))
    db, app, lb, mail = world.vms  # now with their ids on B
    expected = world.expected_checksums()
    fb = make_failback(world, tmp_path / f"{tmp_path.name}-j.jsonl")
    plan = fb.plan()
    assert plan.ok, plan
    assert [(g.name, g.vms) for g in plan.order.groups] == [
        ("web/db", (db.vm_b,)), ("web/app", (app.vm_b,)), ("web/lb", (lb.vm_b,))]
    report = fb.run()
    assert report.complete, report
    assert_failed_back(world, expected, fb)

    def accepted(oned, action: str, skip: int) -> list[int]:
        return [vm for vm, act, ok in oned.actions if ok and act == action and vm != skip]

    assert accepted(world.oned_b, "terminate", mail.vm_b) == [lb.vm_b, app.vm_b, db.vm_b]
    assert accepted(world.oned_a, "resume", mail.vm_a) == [db.vm_a, app.vm_a, lb.vm_a]
    journal = fb.journal
    for step, site, chain, mark in (
            ("terminate_b", fb.site_b.name, [lb.vm_b, app.vm_b, db.vm_b], "done"),
            ("resume_a", fb.site_a.name, [db.vm_a, app.vm_a, lb.vm_a], "ready")):
        for first, then in zip(chain, chain[1:], strict=False):
            done = journal.last(step=step, event=mark, target=f"vm:{site}:{first}")
            sent = journal.last(step=step, event="intent", target=f"vm:{site}:{then}")
            assert done is not None and sent is not None and done.time <= sent.time, (
                step, first, then)
    for vm in (db, app, lb):  # this boot's report, not the one from before the disaster
        resumed = journal.last(step="resume_a", event="done", target=f"vm:{fb.site_a.name}:"
                                                                      f"{vm.vm_a}")
        ready = journal.last(step="resume_a", event="ready", target=f"vm:{fb.site_a.name}:"
                                                                     f"{vm.vm_a}")
        assert resumed is not None and ready is not None and ready.time - resumed.time >= 0.1
    stopped, started = report.order_followed()
    assert [v for v in stopped if v != mail.vm_b] == [lb.vm_b, app.vm_b, db.vm_b]
    assert [v for v in started if v != mail.vm_a] == [db.vm_a, app.vm_a, lb.vm_a]
