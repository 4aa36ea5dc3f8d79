"""The safety rules of a failback, each decided here and only here.

Every rule is a pure function of what was observed on the two sites (:class:`ImageView`, VM
records) and what this failback's journal says (:class:`~.ledger.ImageHistory`,
:class:`~.ledger.VMHistory`). A rule that stops something returns a :class:`Refusal` naming
itself (its ``kind`` is the blocker kind the plan shows) and saying what to do; ``None`` means
the rule does not object. The step decisions (:mod:`.steps`) call these rules, and
:meth:`~ceph_failback.failback.Failback.plan` calls the same step decisions, so the plan cannot
promise what a step will then refuse. docs/safety.rst links each rule here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from ..ceph.rbd_journal import LOCAL_OWNER, JournalHeader, ReplayEpoch
from ..ceph.status import MirrorImageInfo, MirrorStatus, ReplayKind
from ..opennebula.records import VM
from .ledger import REPLAYING_FROM_A, SPLIT_BRAIN_ON_B, ImageHistory, VMHistory
from .observed import ImageView, Names, Refusal

__all__ = [
    "FORCE_PROMOTE",
    "REPLAYING_FROM_A",
    "SPLIT_BRAIN_ON_B",
    "Names",
    "ImageView",
    "Refusal",
    "being_recreated",
    "already_home",
    "image_missing",
    "split_brain_on_b",
    "stale_journal",
    "no_primary",
    "only_current_copy",
    "replay_proof",
    "journal_replay_proof",
    "needs_resync",
    "promote_proof",
    "promotable",
    "peer_unregistered",
    "takeover_unready",
    "unsafe_disks",
    "other_pool_disks",
    "saved_memory_on_b",
    "host_copy_on_a",
    "host_copy_on_b",
    "unknown_on_b",
    "stop_order",
    "start_order",
    "writer_on_b",
    "resumed_by_us",
    "history_on_b",
    "recorded_history",
    "unreadable_disks",
    "not_primary_on_a",
    "unprotected",
    "replays_from_a",
    "protection_proof",
    "reprotect_proof",
]

#: Never force-promote: a forced promote makes both copies primary (split-brain). The
#: orchestrator passes this to every promote, and the journal records it.
FORCE_PROMOTE = False


# -- the image's presence and role -------------------------------------------------------------

def being_recreated(view: ImageView, history: ImageHistory) -> bool:
    """Missing on A only because this failback asked for its resync: rbd-mirror moves the old
    image to the trash and creates it again, and for that while it is in no listing (an intent
    without an outcome counts: the request may have reached librbd before the process died)."""
    return (view.info_a is None and view.info_b is not None
            and history.resync_attempted_at is not None)


def already_home(view: ImageView) -> bool:
    """Primary on A and not on B: failed back already, or never failed over."""
    return view.primary_a and not view.primary_b


def image_missing(view: ImageView, names: Names, history: ImageHistory) -> Refusal | None:
    """Rule ``image-missing``: an image in scope must be a mirror-enabled image on both sites
    (except while this failback's resync recreates it on A)."""
    if being_recreated(view, history):
        return None
    missing = [site for site, info in ((names.site_a, view.info_a), (names.site_b, view.info_b))
               if info is None]
    if not missing:
        return None
    return Refusal("image-missing", f"not a mirrored image on {' and '.join(missing)} "
                   "(missing, or mirroring disabled)", site=missing[0], missing=True)


def split_brain_on_b(view: ImageView, names: Names, history: ImageHistory) -> Refusal | None:
    """Rule ``split-brain-on-b``: B's copy diverged from A's (B demoted by hand after writes
    there, say). Which copy is current is a decision for a person, not for this tool. Once this
    failback demoted B, a split-brain report there is its own doing and not a reason to stop."""
    status = view.status_b
    if status is None or not status.local.is_split_brain() or history.demote_b_attempted:
        return None
    return Refusal("split-brain-on-b", f"split-brain reported for {names.site_b}'s copy: the "
                   "two copies diverged; decide which one is current and resync the other by "
                   "hand", site=names.site_b)


def stale_journal(view: ImageView, names: Names, history: ImageHistory) -> Refusal | None:
    """Rule ``stale-journal``: the journal says this failback already promoted the image on A,
    yet it is primary on B again: a new failover happened since. The journal's resyncs and
    replay proofs belong to the earlier failback; trusting them could skip a needed resync and
    promote A's old copy."""
    if not (view.primary_b and history.promoted_at is not None):
        return None
    return Refusal("stale-journal", f"journal {names.journal} records that a failback already "
                   f"promoted it on {names.site_a} (at {history.promoted_at}), yet it is primary "
                   f"on {names.site_b} again: a new failover happened since; start this "
                   "failback with a new journal file name (--journal NEW.jsonl: a copy of each "
                   "journal is kept in site A's pool under its file name)", site=names.site_b)


def no_primary(view: ImageView, names: Names, history: ImageHistory) -> Refusal | None:
    """Rule ``no-primary``: primary on neither site, and not because this failback demoted B:
    which copy is current is unknown."""
    if view.primary_a or view.primary_b or history.demote_b_attempted:
        return None
    return Refusal("no-primary", f"primary on neither site; this failback did not demote it on "
                   f"{names.site_b}, so which copy is current is unknown: promote the right one "
                   "by hand first", site=names.site_b)


# -- resync ------------------------------------------------------------------------------------

def only_current_copy(view: ImageView, names: Names) -> Refusal | None:
    """Rule ``only-current-copy``: never resync the site that holds the only current copy. A
    resync discards A's image and copies B's, so B must be the primary."""
    if view.primary_b:
        return None
    return Refusal("only-current-copy", f"not primary on {names.site_b}: resyncing A now could "
                   "discard the only current copy", site=names.site_b)


def needs_resync(status: MirrorStatus | None) -> bool:
    """A's copy is split-brained: it diverged from B and must be resynced from B."""
    return status is not None and status.is_split_brain()


def journal_replay_proof(epoch: ReplayEpoch | None) -> str | None:
    """Journal mode, the tag-epoch rule read from the journals themselves: A replays B's copy
    inside B's current epoch, or ``None`` if the journals do not prove it now.

    All of these, read at the same moment (:class:`~ceph_failback.ceph.rbd_journal.ReplayEpoch`):

    - B's current epoch (its newest tag) is B's own: B is the primary in it;
    - A's rbd-mirror client in B's journal is connected and has committed an entry of that
      epoch, or of an earlier epoch of B's own from which only lock epochs lead to it (librbd
      opens an epoch each time a client takes B's exclusive lock, owner and predecessor both
      B, empty until written). rbd-mirror commits a remote entry only once it is replayed on A
      (image_replayer/journal/Replayer.cc), and replays an epoch only after checking that A's
      history leads into it (else it reports split-brain and replays nothing); B's own epochs
      start after B's promotion, so A has replayed past it and every entry before it;
    - A's own current epoch is one it replays from B (its newest tag is owned by B's mirror
      uuid, as rbd-mirror allocates it): A has not been promoted or demoted since (a copy
      promoted after committing would still show that commit in B's journal).

    These are what ``rbd mirror image status`` prints as ``primary_position`` and
    ``non_primary_position`` (ReplayStatusFormatter.cc reads the same two clients), but current
    at every read: rbd-mirror publishes them only on its own status cycle (~30 s), and right
    after a flip it publishes "replaying" with no position in B's epoch yet, which would accept
    a non-forced promote of A's old data (the stale-promote trap).
    """
    if epoch is None:
        return None
    b, a, client = epoch.b_epoch, epoch.a_epoch, epoch.a_client
    if b is None or b.owner != LOCAL_OWNER:
        return None
    if client is None or not client.connected or client.position is None:
        return None
    committed = client.position.tag_tid
    # B opens a new epoch of its own each time a client takes its exclusive lock (librbd's
    # allocate_tag_on_lock: owner and predecessor both B), empty until written: A can commit
    # only into an epoch with entries. Every epoch after A's commit must be such a lock epoch
    # (no demotion, no promotion in between), each one present.
    for tid in range(committed + 1, b.tid + 1):
        tag = epoch.b_tags.get(tid)
        if tag is None or tag.owner != LOCAL_OWNER or tag.predecessor_owner != LOCAL_OWNER:
            return None
    committed_tag = epoch.b_tags.get(committed) if committed != b.tid else b
    if committed_tag is None or committed_tag.owner != LOCAL_OWNER:
        return None
    if a is None or a.owner != epoch.b_uuid:
        return None
    s, r = epoch.source, epoch.replica
    return (f"replaying from {s} inside {s}'s current epoch ({s}'s journal: {r} committed entry "
            f"{client.position.entry_tid} of epoch {committed}, {s}'s newest {b.tid})")


def replay_proof(status: MirrorStatus | None, epoch: ReplayEpoch | None = None) -> str | None:
    """Rule ``replay-proof`` (the tag-epoch rule): what A's copy proves of its replay from B,
    or ``None`` if it proves nothing now.

    A's status must not be split-brained (that needs a resync). Journal mode: the journals
    prove it (:func:`journal_replay_proof`); A's status alone never does, since its replay
    positions are as old as rbd-mirror's last status cycle. Snapshot mode: A replays from B
    (the promote step then also requires A's newest mirror snapshot to be the complete copy of
    B's demotion snapshot).
    """
    if status is None or status.is_split_brain():
        return None
    if epoch is not None and (epoch.a_epoch is not None or epoch.b_epoch is not None):
        return journal_replay_proof(epoch)
    local = status.local
    if not (local.up and local.is_replaying() and local.replay is not None):
        return None
    if local.replay.kind is ReplayKind.SNAPSHOT:
        return "replaying from B"
    return None


# -- promote -----------------------------------------------------------------------------------

def promote_proof(names: Names, history: ImageHistory) -> Refusal | None:
    """Rule ``stale-promote`` (the stale-promote trap): a non-forced promote that librbd accepts
    does not prove A is current: an image whose last event is its own demotion accepts one at
    once, with its old data. So A is promoted, and B demoted, only after this failback saw A
    replay B's copy (:attr:`~.ledger.ImageHistory.proven`: resynced from B, or
    :func:`replay_proof`), after the last resync it requested."""
    if history.proven:
        return None
    return Refusal("stale-promote", f"no proof that {names.site_a} replayed {names.site_b}'s "
                   "copy during this failback (never resynced from B, never seen replaying "
                   "from B): a non-forced promote could succeed with stale data (the "
                   "stale-promote trap)", site=names.site_a,
                   hint="run resync_site_a() (step 2) for it; never force-promote")


def promotable(view: ImageView, names: Names) -> Refusal | None:
    """Rule ``promote-order``: promote A only once B is demoted, and never a split-brained A."""
    if view.primary_b:
        return Refusal("promote-order", f"still primary on {names.site_b}: demote it there "
                       "first (step 4)", site=names.site_a)
    if needs_resync(view.status_a):
        return Refusal("split-brain-on-a", "split-brain on A", site=names.site_a,
                       hint="resync A from B (step 2)")
    return None


def peer_unregistered(header_a: JournalHeader | None, b_uuid: str, names: Names) -> str | None:
    """Rule ``peer-registered`` (journal mode): promote A only once site B's rbd-mirror is
    registered as a client in A's journal, and connected. Returns why not, or ``None``.

    B links its demoted copy to A's promotion through A's tags (rbd-mirror's
    image_replayer/journal/PrepareReplayRequest.cc: B's demotion epoch must match an orphan
    epoch of A's, followed by A's promotion), and it sees only the tags from its own commit
    position on (the ``tag_list`` method of src/cls/journal/cls_journal.cc). A client
    registered after the promote starts at A's newest position (the lab shows it at A's
    promotion entry), so B never sees the demotion and reports "split-brain detected" for
    good: a full resync of B (:meth:`~ceph_failback.failback.Failback.reprotect`). B's
    rbd-mirror registers in A's journal when it next prepares the image (every
    ``rbd_mirror_image_state_check_interval``, 30 s by default) after A's copy was created,
    which a resync does anew; the lab's CI caught promotes that came first. A client
    registered before the promote starts at the registered clients' oldest position, at or
    before A's newest epoch then, so it sees the demotion whatever its position. A disconnected
    client (one that fell too far behind, ``rbd_journal_max_concurrent_object_sets``) replays
    nothing until B's copy is resynced. No journal (snapshot mode): nothing to check."""
    if header_a is None:
        return None
    client = header_a.client(b_uuid)
    if client is None:
        return (f"{names.site_b}'s rbd-mirror is not registered in {names.site_a}'s journal "
                f"of the image yet (promoted before it registers, {names.site_a} leaves "
                f"{names.site_b}'s copy split-brained)")
    if not client.connected:
        return (f"{names.site_b}'s rbd-mirror client in {names.site_a}'s journal is "
                "disconnected (it fell too far behind)")
    return None


def not_primary_on_a(images: Sequence[str],
                     infos_a: dict[str, MirrorImageInfo | None]) -> list[str]:
    """Rule ``resume-order``: the images of a VM not yet primary on A (it must not be resumed
    on them)."""
    return [i for i in images if not ((info := infos_a.get(i)) is not None and info.primary)]


# -- VMs ---------------------------------------------------------------------------------------

def takeover_unready(views: Iterable[tuple[ImageView, ImageHistory]]) -> list[str]:
    """Rule ``takeover-unready``: a VM on B is stopped only when A can take over each of its
    images: proven to replay from B (steps 1 and 2), or already demoted on B by this failback,
    or already home. Otherwise the VM would stay down with no copy on A to resume from. Returns
    the images that A could not take over."""
    return [view.name for view, history in views
            if not (history.proven or history.demote_b_attempted or already_home(view))]


def unsafe_disks(vm: VM) -> list[str]:
    """Rule ``non-persistent-disk``: terminating a VM whose disk is a non-persistent clone or
    volatile, in any pool, makes OpenNebula's ceph driver delete that RBD image, and rbd-mirror
    then deletes A's copy too. Returns those disks' ``pool/image`` (none for a VM already
    DONE)."""
    if vm.is_done:
        return []
    return [d.spec for d in vm.disks if d.deleted_on_terminate]


def other_pool_disks(vm: VM, pools: Collection[str]) -> list[str]:
    """Rule ``other-pool-disk``: a failback moves the images of its pools. A VM on B with a
    persistent disk in another Ceph pool would be stopped with that disk's latest data left on B,
    and the VM on A resumed on its own copy, which after OpenNebula's pool-wide force promote is
    primary there too, and stale. Returns those disks' ``pool/image`` (none for a VM already
    DONE; a read-only CDROM or immutable image holds no data and does not count)."""
    if vm.is_done:
        return []
    return [d.spec for d in vm.disks if d.pool not in pools and d.is_persistent]


def host_copy_on_a(vm: VM, names: Names) -> Refusal | None:
    """Rule ``host-copy-on-a``: a VM on A whose disks are host copies (ssh system datastore,
    :attr:`~ceph_failback.opennebula.Disk.host_copy`) cannot be resumed onto the failed-back
    images: resume boots the pre-disaster copy (kept on the host at poweroff, moved to the
    front-end at undeploy; neither reads the image again), and a terminate from POWEROFF writes
    that copy over the image (oned's tm/ceph/mvds.ssh). Only a new deployment (PROLOG,
    tm/ceph/ln.ssh) copies the image again."""
    copies = [d.spec for d in vm.disks if d.host_copy and not d.is_read_only]
    if not copies:
        return None
    return Refusal("host-copy-on-a", f"VM {vm.id} on {names.site_a} runs on copies of {copies} "
                   "(ssh system datastore): a resume would boot the pre-disaster copy, not the "
                   "failed-back image, and a later terminate would write that copy over the "
                   "image", site=names.site_a,
                   hint=f"this failback cannot resume VM {vm.id}: fail it back by hand "
                        "(docs/safety.rst, 'Host copies'): end it with 'onevm recover --delete "
                        f"{vm.id}' on {names.site_a} (no write-back), fail the images back, "
                        "then instantiate the VM again")


#: Where a terminate of a VM running on host copies writes them back into its images (the
#: EPILOG's tm/ceph/mvds.ssh): RUNNING, POWEROFF and SUSPENDED, or a terminate already in
#: SHUTDOWN or EPILOG.
_WRITES_BACK = frozenset({"RUNNING", "POWEROFF", "SUSPENDED", "SHUTDOWN", "EPILOG"})


def host_copy_on_b(vm: VM, names: Names) -> Refusal | None:
    """Rule ``host-copy-on-b``: a VM on B whose disks are host copies (ssh system datastore)
    has its last writes in those copies; only the EPILOG of a terminate from RUNNING, POWEROFF
    or SUSPENDED writes them into the images (tm/ceph/mvds.ssh). Every other state is refused:
    from a ``*_FAILURE`` state a terminate runs the cleanup (DispatchManager::terminate ->
    trigger_delete; tm/ceph/delete.ssh writes nothing back), as CLEANUP_DELETE shows one under
    way; from UNDEPLOYED or STOPPED the copy is on the front-end, where mvds.ssh refuses to
    run; from PENDING or HOLD (an undeployed VM resumed but not placed yet) oned frees the VM
    with no transfer at all. In each, B's last writes would never reach the images."""
    copies = [d.spec for d in vm.disks if d.host_copy and not d.is_read_only]
    if not copies or vm.is_done or vm.state_str in _WRITES_BACK:
        return None
    if vm.lcm_state.endswith("_FAILURE"):
        hint = (f"'onevm recover --retry {vm.id}' on {names.site_b} until it is RUNNING, then "
                "run again; never --success or --delete, which end it without writing the "
                "copy back")
    elif vm.state in ("UNDEPLOYED", "STOPPED", "PENDING", "HOLD"):
        hint = (f"get VM {vm.id} running on a host of {names.site_b} again ('onevm resume', or "
                "'onevm release' from HOLD, and let it be placed), shut the guest down there "
                "('onevm poweroff'), then run again")
    else:
        hint = (f"wait until VM {vm.id} is RUNNING or POWEROFF on {names.site_b}; a cleanup "
                "under way (CLEANUP_*) discards the copy: decide by hand which data is current")
    return Refusal("host-copy-on-b", f"VM {vm.id} on {names.site_b} is {vm.status} and runs on "
                   f"copies of {copies} (ssh system datastore): terminating it now would not "
                   "write its last data back into the images", site=names.site_b, hint=hint)


def saved_memory_on_b(vm: VM, names: Names) -> Refusal | None:
    """Rule ``saved-memory-on-b`` (waivable): a SUSPENDED or STOPPED VM on B keeps its guest's
    memory in a checkpoint, with whatever the guest had not yet written to its disks;
    terminating it discards that checkpoint (oned goes straight to EPILOG). Proceeding loses
    only what a crash of the guest would lose, so the operator may waive it, knowingly."""
    if vm.state not in ("SUSPENDED", "STOPPED"):
        return None
    return Refusal("saved-memory-on-b", f"VM {vm.id} on {names.site_b} is {vm.status}: "
                   "terminating it discards its saved memory, and with it what the guest had "
                   "not yet written to its disks", site=names.site_b,
                   hint=f"resume VM {vm.id} on {names.site_b} and shut it down there (or power "
                        "it off), or waive saved-memory-on-b to discard that memory")


def stop_order(vm: VM, later: Iterable[VM], names: Names) -> Refusal | None:
    """Rule ``stop-order`` (the start order, :mod:`~ceph_failback.failback.order`): B stops the
    groups in reverse, so a VM on B is terminated only once every VM of the groups that start
    after it is DONE there (the load balancer before the application, the application before
    its database): stopping it first would leave them serving without it."""
    up = [v.id for v in later if not v.is_done]
    if not up:
        return None
    return Refusal("stop-order", f"VM {vm.id} on {names.site_b} stops only after VMs {up} on "
                   f"{names.site_b} (the start order: groups stop in reverse), and they are not "
                   "DONE yet", site=names.site_b,
                   hint=f"terminate VMs {up} first (terminate_site_b(vms={up})), or let run() "
                        "do both in order")


def start_order(vm: VM, earlier: Iterable[tuple[VM, bool]], names: Names) -> Refusal | None:
    """Rule ``start-order`` (the start order, :mod:`~ceph_failback.failback.order`): A resumes
    the groups in order, so a VM on A is resumed only once every VM of the groups it starts
    after runs there (the database before the application); ``earlier`` pairs each with whether
    its group waits for its guest's ``READY=YES`` (OneGate) too, which a stale report from
    before the disaster must not satisfy: step 6 clears it before it resumes such a VM."""
    down = [v.id for v, ready in earlier if not v.is_running or (ready and not v.is_ready)]
    if not down:
        return None
    return Refusal("start-order", f"VM {vm.id} on {names.site_a} resumes only after VMs {down} "
                   f"on {names.site_a} run (and, where their group waits for it, report "
                   "READY=YES), and they do not yet", site=names.site_a,
                   hint=f"resume them first (resume_site_a() takes the ids of their partners "
                        f"on {names.site_b}), or let run() do both in order")


def unknown_on_b(vm: VM, names: Names) -> Refusal | None:
    """Rule ``unknown-on-b``: a VM on B in UNKNOWN: oned lost touch with its host. oned accepts
    a terminate (DispatchManager::terminate), but the shutdown cannot reach the guest, which may
    still be running and writing to its images. Bringing the host back returns the VM to
    RUNNING; a host lost for good is fenced, then ``onevm recover --delete`` ends the VM (its
    persistent images stay, as a terminate leaves them)."""
    if not (vm.state == "ACTIVE" and vm.lcm_state == "UNKNOWN"):
        return None
    if any(d.host_copy and not d.is_read_only for d in vm.disks):
        hint = ("its disks are host copies (ssh system datastore): what it wrote on "
                f"{names.site_b} is on that host only, never in the images; bring the host back "
                "(the VM returns to RUNNING) and plan again")
    else:
        hint = (f"bring the host back (the VM returns to RUNNING) and plan again; if the host "
                "is lost, make sure it is off (fence it), run 'onevm recover "
                f"--delete {vm.id}' on {names.site_b} (persistent images stay), then pair the "
                f"VM explicitly (pairs={{{vm.id}: <VM id on A>}}, --pair {vm.id}:<VM id on A>) "
                "and run again")
    return Refusal("unknown-on-b", f"VM {vm.id} on {names.site_b} is UNKNOWN: oned lost touch "
                   "with its host, so a terminate cannot reach the guest, which may still be "
                   "running and writing to its images", site=names.site_b, hint=hint)


def writer_on_b(users: Iterable[VM], names: Names) -> Refusal | None:
    """Rule ``writer-on-b``: demote B only with the writer gone: every VM on B using the image
    DONE (a live client holding its exclusive lock is waited for when demoting)."""
    busy = [vm for vm in users if not vm.is_done]
    if not busy:
        return None
    vm = busy[0]
    return Refusal("writer-on-b", f"VM {vm.id} on B still uses it ({vm.status})",
                   site=names.site_b, hint="terminate the VM first (step 3)")


def history_on_b(vm: VM, history: VMHistory, *, paired_by_hand: bool = False) -> bool:
    """Rule ``dr-history``: oned keeps DONE VMs, so after an earlier DR test or failback site B
    holds DONE VMs whose disks name the same images as today's. Such a VM is history: it never
    pairs with a VM on A (the plan would call it "already DONE" and resync A from B's copy, which
    after a pool-wide force promote may be older than A's). A DONE VM counts only when this
    failback's own journal terminated it (a rerun after step 3), or when the operator pairs it
    explicitly (``paired_by_hand``: a VM ended by hand, e.g. ``onevm recover --delete`` of a VM
    whose host was lost)."""
    return vm.is_done and not history.terminate_attempted and not paired_by_hand


def recorded_history(vm: VM, history: VMHistory, names: Names, *,
                     paired_by_hand: bool = False) -> Refusal | None:
    """Rule ``dr-history`` for a scope recorded in the journal: a pair whose VM on B is history
    (:func:`history_on_b`) stops the failback. A journal begun by an earlier version of this
    tool may have recorded such a pair; trusting it would resync A from an old copy."""
    if not history_on_b(vm, history, paired_by_hand=paired_by_hand):
        return None
    return Refusal("dr-history", f"the journal's scope pairs VM {vm.id} on {names.site_b}, which "
                   "is DONE and was not terminated by this failback: it is history (an earlier "
                   "DR test's or failback's VM); failing back from it could resync "
                   f"{names.site_a} from an old copy", site=names.site_b,
                   hint=f"start this failback with a new journal; if VM {vm.id} was ended by hand "
                        f"during this failback, pair it explicitly (--pair {vm.id}:<VM id on A>)")


def unreadable_disks(vm: VM, names: Names, site: str) -> Refusal | None:
    """Rule ``unresolved-disk``: a VM this failback stops or resumes has a Ceph disk whose RBD
    image cannot be named (:attr:`~ceph_failback.opennebula.VM.unreadable`): it could be a clone
    that terminate deletes, or an image of the pool left out of the failback. Not waivable (the
    waivable ``unreadable-disk`` blocker is for the VMs outside the scope)."""
    if not vm.unreadable or vm.is_done:
        return None
    return Refusal("unresolved-disk", f"VM {vm.id} on {site} has disks whose RBD image cannot be "
                   f"named ({'; '.join(vm.unreadable)}): this failback will not stop or resume "
                   "it", site=site,
                   hint="fix the disk's attributes in oned, or leave the VM out of the scope "
                        "(vms=) and fail it back by hand")


def resumed_by_us(history: VMHistory) -> bool:
    """A VM found running on A is not a blocker (``vm-not-stopped``) when this failback resumed
    it (step 6 checks its images are primary on A first); its outcome may be unrecorded."""
    return history.resume_attempted


# -- outside the scope -------------------------------------------------------------------------

def unprotected(view: ImageView) -> str | None:
    """Rule ``unprotected`` (a warning, never a blocker): a mirrored image, listed on both sites,
    that neither site replicates: primary on both (OpenNebula's documented failover force-promotes
    the whole pool, so images no VM uses stay primary on both sites) or primary on neither. The
    failback leaves images outside its scope alone, so it says which are unprotected."""
    if view.info_a is None or view.info_b is None:
        return None
    if view.primary_a and view.primary_b:
        return "primary on both sites"
    if not view.primary_a and not view.primary_b:
        return "primary on neither site"
    return None


def replays_from_a(status: MirrorStatus) -> bool:
    """After the flip, B's rbd-mirror is up and reports replaying the image from A (one of
    :func:`protection_proof`'s two proofs)."""
    return status.local.up and status.local.is_replaying()


def protection_proof(status: MirrorStatus | None, epoch: ReplayEpoch | None = None
                     ) -> str | None:
    """Rule ``protected``: what proves, after the flip, that site B replays the image from A
    again; ``None`` if nothing does now. A split-brain on B is never protected.

    Journal mode: the journals, read the other way round from step 2's proof
    (:func:`journal_replay_proof` with A as the source, ``epoch`` read so): B's rbd-mirror
    client in A's journal has committed an entry of A's current epoch (or of an earlier epoch
    of A's own from which only lock epochs lead to it), and B's own newest epoch is one it
    replays from A. A non-forced promote writes an entry in A's new epoch at once
    (librbd/journal/PromoteRequest.cc, ``append_event``: the promotion event), so B commits
    one as soon as it replays, within ``rbd_mirror_journal_commit_age`` (5 s by default).

    Otherwise: B's rbd-mirror reports it up and replaying (:func:`replays_from_a`). That report
    is meant to be written at once, but it can be lost: Ceph's journal replayer signals that
    its replay started before it can describe it (image_replayer/journal/Replayer.cc,
    ``get_replay_status`` answers EAGAIN until its status formatter exists), and the status
    then waits for rbd-mirror's 30 s status cycle (MirrorStatusUpdater). The lab saw one image
    in three stay "stopped, local image is primary" on B for 28 s after A's promote."""
    if status is not None and status.is_split_brain():
        return None
    if epoch is not None and (epoch.a_epoch is not None or epoch.b_epoch is not None):
        proof = journal_replay_proof(epoch)
        if proof is not None:
            return proof
    if status is not None and replays_from_a(status):
        return "site B's rbd-mirror reports replaying from A"
    return None


def reprotect_proof(view: ImageView, history: ImageHistory, names: Names) -> Refusal | None:
    """Rule ``reprotect-proof``: a resync of B's copy (after the failback, to restore B's replay
    from A) discards B's copy, so it needs A to be the one current copy: A primary and B not,
    and this failback's journal records that it promoted A (which it does only once A proved to
    hold B's last writes: :func:`promote_proof`).

    And for a copy B reports split-brained now: this failback's checks after the flip
    (:func:`~ceph_failback.failback.protection.watch_protection` at the end of each run, and
    ``reprotect``) must have recorded that split, and never have seen B replay the image from A.
    A copy once seen replaying from A that split-brained later diverged after the failback:
    someone promoted B and wrote to it, and those writes exist nowhere else. Which copy is
    current is then a person's call, never a resync's. Every check counts, not only the last
    (a later run's check finds the same split and must not make it look seen first). (A write
    on B between the flip and the first check, seconds later, cannot be told apart: B is
    demoted then, so it takes a hand-made promotion of B.)"""
    if not view.primary_a:
        return Refusal("reprotect-proof", f"not primary on {names.site_a}: B's copy may be the "
                       "current one, never resync it", site=names.site_a,
                       hint="finish the failback first (run())")
    if view.primary_b:
        return Refusal("reprotect-proof", f"primary on both {names.site_a} and {names.site_b}: "
                       "which copy is current is a person's call", site=names.site_b,
                       hint="demote the stale copy by hand, then resync it")
    if history.promoted_at is None:
        return Refusal("reprotect-proof", f"this failback did not promote it on "
                       f"{names.site_a}: nothing proves {names.site_a}'s copy holds "
                       f"{names.site_b}'s last writes", site=names.site_b,
                       hint="reprotect only images this failback (this journal) failed back")
    split = view.status_b is not None and view.status_b.is_split_brain()
    if not split or (history.split_seen and not history.ever_protected):
        return None
    if history.ever_protected:
        seen = f"saw {names.site_b} replay it from {names.site_a} after the flip"
    else:
        seen = (f"never saw it split-brained after the flip (last: "
                f"{history.protection or 'no check recorded'!r})")
    return Refusal("reprotect-proof", f"split-brain on {names.site_b}, but this failback {seen}: "
                   f"{names.site_b}'s copy changed after the failback (promoted and written by "
                   f"hand?), and a resync would discard those writes", site=names.site_b,
                   hint=f"compare both copies; if {names.site_a}'s is the current one, resync "
                        f"{names.site_b}'s by hand (rbd mirror image resync on {names.site_b}), "
                        "else fail over again")
