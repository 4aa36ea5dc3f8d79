"""Every safety rule and step decision, table-driven: for each rule a case where it fires and a
case where it does not, through the pure decision functions (no Ceph, no oned)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from ceph_failback.ceph.rbd_journal import (
    LOCAL_OWNER,
    ORPHAN_OWNER,
    JournalClient,
    JournalTag,
    ObjectPosition,
    ReplayEpoch,
)
from ceph_failback.ceph.status import MirrorImageInfo, parse_mirror_status
from ceph_failback.errors import ImageNotFoundError, SafetyError
from ceph_failback.failback import safety
from ceph_failback.failback.ledger import ImageHistory
from ceph_failback.failback.safety import ImageView, Names
from ceph_failback.failback.steps import (
    Choice,
    demote_a,
    demote_b,
    promote_a,
    resume_a,
    resync_a,
    terminate_b,
)
from ceph_failback.opennebula.naming import Disk, DiskKind
from ceph_failback.opennebula.records import VM
from ceph_failback.waiting import Verdict

NAMES = Names("site-a", "site-b", "one", "j.jsonl")
IMG = "one-7"


def info(primary: bool | None) -> MirrorImageInfo:
    return MirrorImageInfo(IMG, "gid-7", True, primary, "journal", "id7")


def status(description: str, *, state: int = 4, up: bool = True,
           primary: bool = False) -> Any:
    return parse_mirror_status({"name": IMG, "state": state, "description": description,
                                "up": up, "info": {"global_id": "gid-7", "primary": primary}},
                               site="site-a", pool="one")


def replaying(local_tag: int, remote_tag: int, behind: int = 0) -> Any:
    detail = {"primary_position": {"object_number": 0, "tag_tid": remote_tag, "entry_tid": 9},
              "non_primary_position": {"object_number": 0, "tag_tid": local_tag,
                                       "entry_tid": 9 - behind},
              "entries_behind_primary": behind}
    return status(f"replaying, {json.dumps(detail)}")


SPLIT = status("split-brain detected", state=1)
IN_EPOCH = replaying(5, 5)
OLD_EPOCH = replaying(3, 5)  # replaying, but not yet past B's promotion: an orphan still

B_UUID = "uuid-of-b"


def epoch(committed: int | None = 5, *, b_tid: int = 5, b_owner: str = LOCAL_OWNER,
          a_owner: str = B_UUID, connected: bool = True) -> ReplayEpoch:
    """The journals: B's current epoch ``b_tid`` (owned by ``b_owner``), A's rbd-mirror client
    in B's journal committed in epoch ``committed``, A's current epoch owned by ``a_owner``."""
    positions = () if committed is None else (ObjectPosition(committed, 3),)
    return ReplayEpoch(JournalTag(b_tid, 0, b_owner), JournalTag(9, 0, a_owner),
                       JournalClient("uuid-of-a", positions, connected), B_UUID)


PROVEN_EPOCH = epoch()


def view(a: bool | None, b: bool | None, sa: Any = None, sb: Any = None,
         ep: ReplayEpoch | None = None) -> ImageView:
    """``a``/``b``: primary on that site; ``None``: not listed there."""
    return ImageView(IMG, None if a is None else info(a), None if b is None else info(b), sa, sb,
                     ep)


H = ImageHistory(IMG)
PROVEN = replace(H, proven=True)


def disk(image: str, persistent: bool = True, pool: str = "one") -> Disk:
    return Disk(0, 7, pool, image, DiskKind.PERSISTENT if persistent else DiskKind.CLONE)


#: A persistent disk that the ssh system datastore mode runs from a host copy.
COPY = Disk(0, 7, "one", IMG, DiskKind.PERSISTENT, host_copy=True)


def vm(state: str = "ACTIVE", lcm: str = "RUNNING", *disks: Disk, vm_id: int = 4) -> VM:
    return VM(vm_id, "db", state, lcm, disks or (disk(IMG),))


# -- the rules, each firing and not firing ---------------------------------------------------

RULES = [
    # (rule id, fires, call)
    ("image-missing", True, lambda: safety.image_missing(view(None, True), NAMES, H)),
    ("image-missing", False, lambda: safety.image_missing(view(False, True), NAMES, H)),
    ("image-missing (being recreated)", False, lambda: safety.image_missing(
        view(None, True), NAMES, replace(H, resync_attempted_at=1.0))),
    ("split-brain-on-b", True, lambda: safety.split_brain_on_b(
        view(False, True, sb=SPLIT), NAMES, H)),
    ("split-brain-on-b", False, lambda: safety.split_brain_on_b(
        view(False, True, sb=IN_EPOCH), NAMES, H)),
    ("split-brain-on-b (B demoted by us)", False, lambda: safety.split_brain_on_b(
        view(False, False, sb=SPLIT), NAMES, replace(H, demote_b_attempted=True))),
    ("stale-journal", True, lambda: safety.stale_journal(
        view(False, True), NAMES, replace(H, promoted_at="2026-12-01T00:00:00"))),
    ("stale-journal", False, lambda: safety.stale_journal(
        view(True, False), NAMES, replace(H, promoted_at="2026-12-01T00:00:00"))),
    ("no-primary", True, lambda: safety.no_primary(view(False, False), NAMES, H)),
    ("no-primary (B demoted by us)", False, lambda: safety.no_primary(
        view(False, False), NAMES, replace(H, demote_b_attempted=True))),
    ("only-current-copy", True, lambda: safety.only_current_copy(view(False, False), NAMES)),
    ("only-current-copy", False, lambda: safety.only_current_copy(view(False, True), NAMES)),
    ("stale-promote", True, lambda: safety.promote_proof(NAMES, H)),
    ("stale-promote", False, lambda: safety.promote_proof(NAMES, PROVEN)),
    ("promote-order", True, lambda: safety.promotable(view(False, True), NAMES)),
    ("promote-order", False, lambda: safety.promotable(view(False, False), NAMES)),
    ("split-brain-on-a", True, lambda: safety.promotable(view(False, False, sa=SPLIT), NAMES)),
    ("writer-on-b", True, lambda: safety.writer_on_b([vm()], NAMES)),
    ("writer-on-b", False, lambda: safety.writer_on_b([vm("DONE", "LCM_INIT")], NAMES)),
]


@pytest.mark.parametrize(("rule", "fires", "call"), RULES, ids=[
    f"{r}-{'fires' if f else 'quiet'}" for r, f, _ in RULES])
def test_rule(rule: str, fires: bool, call: Any) -> None:
    refusal = call()
    if fires:
        assert refusal is not None and refusal.kind == rule.split(" ")[0]
        assert refusal.site in ("site-a", "site-b") and refusal.message
    else:
        assert refusal is None


def test_replay_proof_is_the_tag_epoch_rule_read_from_the_journals() -> None:
    # Journal mode: the journals prove it, whatever the status's (old) positions say.
    assert safety.replay_proof(OLD_EPOCH, PROVEN_EPOCH) is not None
    assert safety.replay_proof(IN_EPOCH, epoch(4)) is None  # A committed only B's old epoch
    assert safety.replay_proof(IN_EPOCH, epoch(None)) is None  # A committed nothing yet
    assert safety.replay_proof(IN_EPOCH) is None  # the status alone never proves it
    assert safety.replay_proof(OLD_EPOCH) is None
    # A split-brained status vetoes (a resync is the safe answer), and no status is no proof.
    assert safety.replay_proof(SPLIT, PROVEN_EPOCH) is None
    assert safety.replay_proof(None, PROVEN_EPOCH) is None
    # Snapshot mode (no journal on either copy): replaying from B.
    snap = status('replaying, {"replay_state": "idle", "remote_snapshot_timestamp": 1}')
    assert safety.replay_proof(snap) is not None
    assert safety.replay_proof(snap, ReplayEpoch(None, None, None, B_UUID)) is not None
    assert safety.replay_proof(status("remote image demoted", state=0)) is None


def test_a_commit_before_b_s_empty_lock_epochs_proves_it() -> None:
    # Each taking of B's exclusive lock opens an epoch of B's own (owner and predecessor B),
    # empty until written: A cannot commit into it, yet has replayed everything B wrote.
    lock_epochs = {4: JournalTag(4, 0, LOCAL_OWNER, ORPHAN_OWNER),
                   5: JournalTag(5, 0, LOCAL_OWNER, LOCAL_OWNER)}
    assert safety.journal_replay_proof(replace(epoch(4), b_tags=lock_epochs)) is not None
    three = {**lock_epochs, 6: JournalTag(6, 0, LOCAL_OWNER, LOCAL_OWNER)}
    assert safety.journal_replay_proof(replace(epoch(4, b_tid=6), b_tags=three)) is not None


@pytest.mark.parametrize(("case", "ep"), [
    ("B demoted: its current epoch is the orphan", epoch(b_owner=ORPHAN_OWNER)),
    ("B's current epoch replays A", epoch(b_owner="uuid-of-a")),
    ("A's client disconnected (fell behind: needs a resync)", epoch(connected=False)),
    ("A promoted after it committed B's epoch", epoch(a_owner=LOCAL_OWNER)),
    ("A demoted after that: an orphan of its own", epoch(a_owner=ORPHAN_OWNER)),
    ("A committed an older epoch", epoch(4)),
    ("A not registered in B's journal", replace(PROVEN_EPOCH, a_client=None)),
    ("A has no journal", replace(PROVEN_EPOCH, a_epoch=None)),
    ("B has no journal", replace(PROVEN_EPOCH, b_epoch=None)),
    ("B demoted and promoted again since A's commit", replace(
        epoch(4), b_tags={4: JournalTag(4, 0, LOCAL_OWNER), 5: JournalTag(5, 0, LOCAL_OWNER,
                                                                         ORPHAN_OWNER)})),
    ("an epoch between A's commit and B's newest is unknown", replace(
        epoch(3), b_tags={3: JournalTag(3, 0, LOCAL_OWNER), 5: JournalTag(5, 0, LOCAL_OWNER,
                                                                         LOCAL_OWNER)})),
    ("A committed an epoch that is not B's own", replace(
        epoch(4), b_tags={4: JournalTag(4, 0, "uuid-of-a"), 5: JournalTag(5, 0, LOCAL_OWNER,
                                                                          LOCAL_OWNER)})),
])
def test_journal_replay_proof_refuses(case: str, ep: ReplayEpoch) -> None:
    assert safety.journal_replay_proof(PROVEN_EPOCH) is not None
    assert safety.journal_replay_proof(ep) is None, case


def test_protection_proof_reads_the_journals_first_and_the_status_otherwise() -> None:
    # After the flip the journals are read the other way round: A is the source, B the replica.
    after_flip = replace(PROVEN_EPOCH, source="A", replica="B")
    stale = status("local image is primary", state=6)  # B's start report lost: stopped
    proof = safety.protection_proof(stale, after_flip)
    assert proof is not None and proof.startswith("replaying from A inside A's current epoch")
    assert safety.protection_proof(stale, replace(after_flip, a_client=None)) is None
    assert safety.protection_proof(stale, replace(epoch(4), source="A", replica="B")) is None
    assert safety.protection_proof(stale) is None
    # B's report of replaying proves it too (snapshot mode, or the journals not there yet).
    assert safety.protection_proof(IN_EPOCH) is not None
    assert safety.protection_proof(IN_EPOCH, replace(after_flip, a_client=None)) is not None
    # A split-brain on B is never protected, whatever else is read.
    assert safety.protection_proof(SPLIT, after_flip) is None
    assert safety.protection_proof(None) is None


def test_takeover_and_unsafe_disks() -> None:
    assert safety.takeover_unready([(view(False, True), H)]) == [IMG]
    assert safety.takeover_unready([(view(False, True), PROVEN)]) == []
    assert safety.takeover_unready([(view(False, False), replace(H, demote_b_attempted=True))]) == []
    assert safety.takeover_unready([(view(True, False), H)]) == []  # home already
    clone = vm("ACTIVE", "RUNNING", disk(IMG), disk("one-8-4-1", persistent=False))
    assert safety.unsafe_disks(clone) == ["one/one-8-4-1"]
    assert safety.unsafe_disks(replace(clone, state="DONE")) == []
    # A clone in another pool is deleted by terminate all the same (issue 13 case 2).
    other_pool = vm("ACTIVE", "RUNNING", disk("one-9-4-0", persistent=False, pool="ssd"))
    assert safety.unsafe_disks(other_pool) == ["ssd/one-9-4-0"]


def test_other_pool_disks() -> None:
    two_pools = vm("ACTIVE", "RUNNING", disk(IMG), disk("one-12", pool="ssd"))
    assert safety.other_pool_disks(two_pools, "one") == ["ssd/one-12"]
    assert safety.other_pool_disks(two_pools, "ssd") == [f"one/{IMG}"]
    assert safety.other_pool_disks(replace(two_pools, state="DONE"), "one") == []
    iso = Disk(1, 9, "isos", "one-9", DiskKind.READ_ONLY)
    assert safety.other_pool_disks(vm("ACTIVE", "RUNNING", disk(IMG), iso), "one") == []


def test_refusal_errors_name_the_site_and_the_kind_of_error() -> None:
    missing = safety.image_missing(view(None, True), NAMES, H)
    assert missing is not None
    err = missing.error(pool="one", image=IMG)
    assert isinstance(err, ImageNotFoundError) and "site-a" in str(err) and IMG in str(err)
    trap = safety.promote_proof(NAMES, H)
    assert trap is not None and isinstance(trap.error(pool="one", image=IMG), SafetyError)


# -- the step decisions ----------------------------------------------------------------------

DECISIONS = [
    # (case, call, choice, words in the reason)
    ("demote_a primary on both (unplanned)", lambda: demote_a.decide(view(True, True), H, NAMES),
     Choice.DO, "primary on A"),
    ("demote_a already demoted (DR test)", lambda: demote_a.decide(view(False, True), H, NAMES),
     Choice.SKIP, "non-primary"),
    ("demote_a home already", lambda: demote_a.decide(view(True, False), H, NAMES),
     Choice.SKIP, "home"),
    ("demote_a missing on B", lambda: demote_a.decide(view(True, None), H, NAMES),
     Choice.REFUSE, "site-b"),
    ("demote_a being recreated", lambda: demote_a.decide(
        view(None, True), replace(H, resync_attempted_at=1.0), NAMES), Choice.SKIP, "recreated"),
    ("resync_a after our demote", lambda: resync_a.decide(
        view(False, True), replace(H, demoted_a=True), NAMES), Choice.DO, "diverged"),
    ("resync_a split-brain", lambda: resync_a.decide(view(False, True, SPLIT), H, NAMES),
     Choice.DO, "split-brain"),
    ("resync_a proven by the journals", lambda: resync_a.decide(
        view(False, True, OLD_EPOCH, ep=PROVEN_EPOCH), H, NAMES), Choice.SKIP, "epoch"),
    ("resync_a in B's epoch by the status only", lambda: resync_a.decide(
        view(False, True, IN_EPOCH), H, NAMES), Choice.SETTLE, "not proven"),
    ("resync_a replaying in an old epoch", lambda: resync_a.decide(
        view(False, True, OLD_EPOCH, ep=epoch(4)), H, NAMES), Choice.SETTLE, "not proven"),
    ("resync_a still primary on A", lambda: resync_a.decide(view(True, True), H, NAMES),
     Choice.REFUSE, "demote it first"),
    ("resync_a B not primary", lambda: resync_a.decide(view(False, False), H, NAMES),
     Choice.REFUSE, "only current copy"),
    ("resync_a B demoted by us", lambda: resync_a.decide(
        view(False, False), replace(H, demote_b_attempted=True), NAMES), Choice.SKIP, "demoted"),
    ("resync_a requested, not proven", lambda: resync_a.decide(
        view(False, True), replace(H, resync_attempted_at=1.0, resync_requested_at=1.0), NAMES),
     Choice.WAIT, "waiting"),
    ("resync_a requested and proven", lambda: resync_a.decide(
        view(False, True), replace(PROVEN, resync_attempted_at=1.0, resync_requested_at=1.0),
        NAMES), Choice.SKIP, "resynced"),
    ("resync_a interrupted request", lambda: resync_a.decide(
        view(False, True, SPLIT), replace(H, resync_attempted_at=1.0), NAMES),
     Choice.SETTLE, "interrupted"),
    ("resync_a being recreated", lambda: resync_a.decide(
        view(None, True), replace(H, resync_attempted_at=1.0), NAMES), Choice.WAIT, "recreated"),
    ("terminate_b running, A ready", lambda: terminate_b.decide(
        vm(), [(view(False, True), PROVEN)], NAMES), Choice.DO, "RUNNING"),
    ("terminate_b A not ready", lambda: terminate_b.decide(
        vm(), [(view(False, True), H)], NAMES), Choice.REFUSE, "not ready"),
    ("terminate_b clone disk", lambda: terminate_b.decide(
        vm("ACTIVE", "RUNNING", disk(IMG), disk("one-8-4-1", persistent=False)),
        [(view(False, True), PROVEN)], NAMES), Choice.REFUSE, "not persistent"),
    ("terminate_b clone disk in another pool", lambda: terminate_b.decide(
        vm("ACTIVE", "RUNNING", disk(IMG), disk("one-8-4-1", persistent=False, pool="ssd")),
        [(view(False, True), PROVEN)], NAMES), Choice.REFUSE, "ssd/one-8-4-1"),
    ("terminate_b data disk in another pool", lambda: terminate_b.decide(
        vm("ACTIVE", "RUNNING", disk(IMG), disk("one-12", pool="ssd")),
        [(view(False, True), PROVEN)], NAMES), Choice.REFUSE, "other pools"),
    ("terminate_b CDROM in another pool", lambda: terminate_b.decide(
        vm("ACTIVE", "RUNNING", disk(IMG), Disk(1, 9, "isos", "one-9", DiskKind.READ_ONLY)),
        [(view(False, True), PROVEN)], NAMES), Choice.DO, "RUNNING"),
    ("terminate_b UNKNOWN", lambda: terminate_b.decide(
        vm("ACTIVE", "UNKNOWN", disk(IMG)), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "is UNKNOWN"),
    ("terminate_b host copy, RUNNING", lambda: terminate_b.decide(
        vm("ACTIVE", "RUNNING", COPY), [(view(False, True), PROVEN)], NAMES), Choice.DO,
     "RUNNING"),
    ("terminate_b host copy, BOOT_FAILURE", lambda: terminate_b.decide(
        vm("ACTIVE", "BOOT_FAILURE", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "would not write its last data back"),
    ("terminate_b host copy, UNDEPLOYED", lambda: terminate_b.decide(
        vm("UNDEPLOYED", "LCM_INIT", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "UNDEPLOYED"),
    ("terminate_b host copy, PENDING", lambda: terminate_b.decide(
        vm("PENDING", "LCM_INIT", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "would not write its last data back"),
    ("terminate_b host copy, HOLD", lambda: terminate_b.decide(
        vm("HOLD", "LCM_INIT", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "would not write its last data back"),
    ("terminate_b host copy, CLEANUP_DELETE", lambda: terminate_b.decide(
        vm("ACTIVE", "CLEANUP_DELETE", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.REFUSE, "would not write its last data back"),
    ("terminate_b host copy, EPILOG under way", lambda: terminate_b.decide(
        vm("ACTIVE", "EPILOG", COPY), [(view(False, True), PROVEN)], NAMES),
     Choice.DO, "under way"),
    ("terminate_b failure state, image in Ceph", lambda: terminate_b.decide(
        vm("ACTIVE", "BOOT_FAILURE", disk(IMG)), [(view(False, True), PROVEN)], NAMES),
     Choice.DO, "BOOT_FAILURE"),
    ("terminate_b done", lambda: terminate_b.decide(vm("DONE", "LCM_INIT"), [], NAMES),
     Choice.SKIP, "DONE"),
    ("terminate_b under way", lambda: terminate_b.decide(
        vm("ACTIVE", "EPILOG"), [(view(False, True), H)], NAMES), Choice.DO, "under way"),
    ("demote_b proven, VM done", lambda: demote_b.decide(
        view(False, True), PROVEN, [vm("DONE", "LCM_INIT")], NAMES), Choice.DO, "primary on B"),
    ("demote_b not proven", lambda: demote_b.decide(view(False, True), H, [], NAMES),
     Choice.REFUSE, "replaying"),
    ("demote_b writer on B", lambda: demote_b.decide(view(False, True), PROVEN, [vm()], NAMES),
     Choice.REFUSE, "still uses"),
    ("demote_b already", lambda: demote_b.decide(view(False, False), H, [], NAMES),
     Choice.SKIP, "non-primary"),
    ("promote_a proven", lambda: promote_a.decide(view(False, False), PROVEN, NAMES),
     Choice.DO, "non-forced"),
    ("promote_a the stale-promote trap", lambda: promote_a.decide(view(False, False), H, NAMES),
     Choice.REFUSE, "stale-promote trap"),
    ("promote_a B still primary", lambda: promote_a.decide(view(False, True), PROVEN, NAMES),
     Choice.REFUSE, "demote it there first"),
    ("promote_a split-brain on A", lambda: promote_a.decide(
        view(False, False, SPLIT), PROVEN, NAMES), Choice.REFUSE, "split-brain"),
    ("promote_a home", lambda: promote_a.decide(view(True, False), H, NAMES),
     Choice.SKIP, "already primary"),
    ("promote_a missing", lambda: promote_a.decide(
        view(None, False), replace(PROVEN, resync_attempted_at=1.0), NAMES),
     Choice.REFUSE, "not a mirrored image"),
    ("resume_a images primary", lambda: resume_a.decide(
        vm("POWEROFF", "LCM_INIT"), [IMG], {IMG: info(True)}, NAMES), Choice.DO, "POWEROFF"),
    ("resume_a images not primary", lambda: resume_a.decide(
        vm("POWEROFF", "LCM_INIT"), [IMG], {IMG: info(False)}, NAMES), Choice.REFUSE,
     "not primary"),
    ("resume_a host copy", lambda: resume_a.decide(
        vm("POWEROFF", "LCM_INIT", COPY), [IMG], {IMG: info(True)}, NAMES), Choice.REFUSE,
     "pre-disaster copy"),
    ("resume_a running", lambda: resume_a.decide(vm(), [IMG], {}, NAMES), Choice.SKIP,
     "RUNNING"),
]


@pytest.mark.parametrize(("case", "call", "choice", "words"), DECISIONS,
                         ids=[c for c, *_ in DECISIONS])
def test_decision(case: str, call: Any, choice: Choice, words: str) -> None:
    decision = call()
    assert decision.choice is choice, decision
    assert words in decision.reason, decision.reason
    if choice is Choice.REFUSE:
        assert decision.refusal is not None


def test_a_done_vm_on_b_is_history_unless_this_failback_terminated_it() -> None:
    from ceph_failback.failback.ledger import VMHistory

    done = vm("DONE", "LCM_INIT")
    assert safety.history_on_b(done, VMHistory("vm:site-b:4"))
    assert not safety.history_on_b(done, VMHistory("vm:site-b:4", terminate_attempted=True))
    assert not safety.history_on_b(vm(), VMHistory("vm:site-b:4"))


def test_a_resynced_copy_is_told_by_its_new_image_id_not_by_clocks() -> None:
    # rbd-mirror recreates a resynced image under a new id (CreateLocalImageRequest); the
    # periodically rewritten last_update, stamped by the cluster's clock, proves nothing.
    from datetime import UTC, datetime

    from ceph_failback.failback.waits import RESYNCED, Resynced

    old_split = parse_mirror_status(
        {"name": IMG, "state": 1, "description": "split-brain detected", "up": True,
         "last_update": int(datetime.now(UTC).timestamp()) + 3600,  # a clock an hour ahead
         "info": {"global_id": "gid-7", "primary": False}}, site="site-a", pool="one")
    assert not Resynced(old_split, since=0, old_image_id="id7", image_id="id7").fresh
    assert RESYNCED.judge(Resynced(old_split, since=0, old_image_id="id7", image_id="id7")) \
        is None  # neither done nor failed: not the new copy yet
    skewed = IN_EPOCH  # the new copy replays; its last_update is older than our clock's now
    new = Resynced(skewed, since=datetime.now(UTC).timestamp() + 3600, old_image_id="id7",
                   image_id="id8")
    assert new.fresh
    judged = RESYNCED.judge(new)
    assert judged is not None and judged.verdict is Verdict.DONE
    # Without the old id (a journal of an earlier version), the stamp decides.
    assert not Resynced(skewed, since=datetime.now(UTC).timestamp() + 3600).fresh


def test_the_host_copy_advice_never_leads_past_the_write_back() -> None:
    failed = safety.host_copy_on_b(vm("ACTIVE", "EPILOG_FAILURE", COPY), NAMES)
    assert failed is not None and failed.hint is not None
    assert "--retry" in failed.hint and "never --success or --delete" in failed.hint
    lost = safety.unknown_on_b(vm("ACTIVE", "UNKNOWN", COPY), NAMES)
    assert lost is not None and lost.hint is not None
    assert "recover --delete" not in lost.hint and "host copies" in lost.hint


def test_an_interrupted_resync_whose_copy_was_recreated_is_waited_for() -> None:
    interrupted = replace(H, resync_attempted_at=1.0, resync_from_image_id="id6")
    # A's copy has another id than when the resync was asked for: the request reached librbd.
    decision = resync_a.decide(view(False, True, SPLIT), interrupted, NAMES)
    assert decision.choice is Choice.WAIT and "recreated" in decision.reason
    same = replace(interrupted, resync_from_image_id="id7")
    assert resync_a.decide(view(False, True, SPLIT), same, NAMES).choice is Choice.SETTLE
    old_journal = replace(interrupted, resync_from_image_id=None)
    assert resync_a.decide(view(False, True, SPLIT), old_journal, NAMES).choice is Choice.SETTLE


def test_peer_unregistered_needs_b_s_client_in_a_s_journal() -> None:
    from ceph_failback.ceph.rbd_journal import JournalClient, JournalHeader, JournalTag, ObjectPosition
    from ceph_failback.failback.safety import Names, peer_unregistered

    names = Names("site-a", "site-b", "one")
    tags = {1: JournalTag(1, 0, "uuid-b"), 2: JournalTag(2, 0, "<orphan>")}
    master = JournalClient("", (ObjectPosition(2, 5),), True, tag_class=0)
    assert peer_unregistered(None, "uuid-b", names) is None  # no journal: snapshot mode
    alone = JournalHeader({"": master}, tags)
    why = peer_unregistered(alone, "uuid-b", names)
    assert why is not None and "site-b's rbd-mirror is not registered in site-a's journal" in why
    b = JournalClient("uuid-b", (ObjectPosition(1, 0),), True)
    assert peer_unregistered(JournalHeader({"": master, "uuid-b": b}, tags), "uuid-b",
                             names) is None
    fresh = JournalClient("uuid-b", (), True)  # registered, nothing committed: sees every tag
    assert peer_unregistered(JournalHeader({"": master, "uuid-b": fresh}, tags), "uuid-b",
                             names) is None
    gone = JournalClient("uuid-b", (ObjectPosition(1, 0),), False)
    assert "disconnected" in str(
        peer_unregistered(JournalHeader({"": master, "uuid-b": gone}, tags), "uuid-b", names))
