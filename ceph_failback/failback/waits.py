"""Every wait of the failback's Ceph steps, declared once (see :class:`~ceph_failback.waiting.Waiter`).

Each wait says what it waits for per image, which observation ends it well (``DONE``) or badly at
once (``FAIL``: waiting longer would not help), and which :class:`~ceph_failback.failback.Timeouts`
field limits it. The steps supply the observations and act on the outcomes; the judging is here.
The VM waits (DONE on B, RUNNING on A) are :meth:`~ceph_failback.opennebula.OpenNebulaSite.terminate`
and :meth:`~ceph_failback.opennebula.OpenNebulaSite.resume`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ceph.mirror import MirrorSnapshot
from ..ceph.rbd_journal import JournalHeader, ReplayEpoch
from ..ceph.status import MirrorStatus
from ..waiting import Acceptor, Verdict, Waiter
from .safety import (
    REPLAYING_FROM_A,
    SPLIT_BRAIN_ON_B,
    Names,
    needs_resync,
    peer_unregistered,
    protection_proof,
    replay_proof,
)

__all__ = ["Replay", "Resynced", "Mirrored", "Snapshotted", "REPLAY_PROOF", "RESYNCED", "MIRRORED",
           "CAUGHT_UP", "CATCH_UP_ENTRIES", "nearly_caught_up", "Protection",
           "WRITER_RELEASED", "DEMOTION_COPIED", "Registered", "PEER_REGISTERED", "PROTECTED",
           "REPLAYING_FROM_A", "SPLIT_BRAIN_ON_B"]


@dataclass(frozen=True)
class Replay:
    """Step 2, one image: A's status and, journal mode, both copies' journals (``None``:
    snapshot mode), read at the same poll."""

    status: MirrorStatus
    epoch: ReplayEpoch | None = None

    def proof(self) -> str | None:
        """:func:`~.safety.replay_proof`."""
        return replay_proof(self.status, self.epoch)

    def __str__(self) -> str:
        summary = self.status.local.summary()
        return f"{summary}; journals: {self.epoch}" if self.epoch is not None else summary


#: Step 2, an image not known to need a resync: wait until A's status or the journals decide
#: it (limit ``settle``). Proven replaying from B: no resync. Split-brained: resync. Undecided
#: at the limit: resync (B is primary, so that is safe).
REPLAY_PROOF: Waiter[Replay] = Waiter(
    "replay-proof", "site A to prove how it replays",
    (Acceptor(Verdict.DONE, lambda o: needs_resync(o.status), "split-brain: resync from B"),
     Acceptor(Verdict.DONE, lambda o: o.proof() is not None, "proven replaying from B")),
    limit="settle", describe=str, must_finish=False)


@dataclass(frozen=True)
class Resynced:
    """A resynced image's status, with when its resync was requested (epoch seconds), A's
    image id before the request and now."""

    status: MirrorStatus
    since: float
    old_image_id: str | None = None
    image_id: str | None = None

    @property
    def fresh(self) -> bool:
        """The status is the new copy's: an older report (a pre-resync split-brain, say) says
        nothing of it. rbd-mirror recreates a resynced image under a new image id
        (CreateLocalImageRequest: ``generate_image_id``), which proves it without any clock.
        Without the old id (a journal of an earlier version), the report must be stamped after
        the request: rbd-mirror rewrites ``last_update`` periodically with the cluster's clock,
        so that fallback trusts both clocks."""
        if self.old_image_id is not None and self.image_id is not None:
            return self.image_id != self.old_image_id
        stamp = self.status.local.last_update
        return stamp is not None and stamp.timestamp() >= self.since


#: Step 2, a resynced image: until it replays from B (limit ``resync``). Split-brain after the
#: request fails the wait.
RESYNCED: Waiter[Resynced] = Waiter(
    "resynced", "the resynced images on site A to replay from B",
    (Acceptor(Verdict.FAIL, lambda o: o.fresh and o.status.is_split_brain(),
              "split-brained after resync"),
     Acceptor(Verdict.DONE, lambda o: o.fresh and o.status.local.up
              and o.status.local.is_replaying(), "resynced from B")),
    limit="resync", describe=lambda o: o.status.local.summary())


@dataclass(frozen=True)
class Mirrored:
    """After the VM stopped on B, one image as A shows it: journal mode, A's status and whether
    this failback proved A replays from B; snapshot mode, A's mirror snapshots (oldest first)
    and the one that must be completely copied (``expected``: B's snapshot id, ``source``: B's
    mirror uuid; ``None`` expected: B is demoted already, the promote step checks the demotion
    snapshot)."""

    status: MirrorStatus | None = None
    proven: bool = False
    snapshots: tuple[MirrorSnapshot, ...] = ()
    expected: int | None = None
    source: str = ""
    snapshot_mode: bool = False
    #: Journal mode, before the VM stops: why B's rbd-mirror cannot yet follow A's promotion
    #: (:func:`~.safety.peer_unregistered`); ``None``: it can, or not read.
    unregistered: str | None = None

    @property
    def snapshot(self) -> MirrorSnapshot | None:
        """A's newest mirror snapshot."""
        return self.snapshots[-1] if self.snapshots else None

    def copied(self) -> bool:
        """Snapshot mode: a complete copy of the expected snapshot, or of a newer one of B's (a
        snapshot schedule on B may fire after ours: A then syncs that one, which holds every
        write ours does, as the VM was stopped first), or none expected. B's snapshot ids only
        grow (the image's snap sequence)."""
        return self.expected is None or any(
            s.complete and s.primary_mirror_uuid == self.source
            and s.primary_snap_id is not None and s.primary_snap_id >= self.expected
            for s in self.snapshots)

    def caught_up(self) -> bool:
        """Journal mode: A replays from B (up), caught up as of its report, or proven to replay
        B's copy: librbd's non-forced promote (step 5) then waits for the catch-up itself."""
        s = self.status
        return bool(s and s.local.up and (s.is_caught_up()
                                          or (self.proven and s.local.is_replaying())))

    def __str__(self) -> str:
        if self.snapshot_mode:
            top = self.snapshot
            return (f"newest mirror snapshot {top.state} "
                    f"{'complete' if top.complete else 'copying'}") if top else "none"
        summary = self.status.local.summary() if self.status else "no status"
        return f"{summary}; {self.unregistered}" if self.unregistered else summary


#: Journal mode, before a VM stops on B: "nearly caught up" is at most this many entries
#: behind B, as A's status reports it (an entry is one write; rbd-mirror replays thousands a
#: second, so this is well under a second of replay with the VM down).
CATCH_UP_ENTRIES = 1000


def nearly_caught_up(o: Mirrored) -> bool:
    """Before the VM stops on B: snapshot mode, the snapshot taken on B then is completely
    copied; journal mode, A replays from B (up) at most :data:`CATCH_UP_ENTRIES` behind, and
    B's rbd-mirror is registered in A's journal (else step 5 would wait for it with the VM
    down: up to ``rbd_mirror_image_state_check_interval`` after a resync recreated A's copy)."""
    if o.snapshot_mode:
        return o.copied()
    if o.unregistered is not None:
        return False
    s = o.status
    if s is None or not s.local.up or not s.local.is_replaying():
        return False
    behind = s.local.replay.entries_behind_primary if s.local.replay is not None else None
    return s.is_caught_up() or (behind is not None and behind <= CATCH_UP_ENTRIES)


#: Step 3, before the terminate: until A has nearly caught up with a running VM's images
#: (limit ``catch_up``), so that the backlog is not replayed while the VM is down.
CAUGHT_UP: Waiter[Mirrored] = Waiter(
    "caught-up", "site A to catch up with the running VM's images",
    (Acceptor(Verdict.FAIL, lambda o: not o.snapshot_mode and o.status is not None
              and o.status.is_split_brain(), "split-brain on A"),
     Acceptor(Verdict.DONE, nearly_caught_up, "nearly caught up")),
    limit="catch_up", describe=str)

#: Step 3: until a stopped VM's images are mirrored to A (limit ``mirror``).
MIRRORED: Waiter[Mirrored] = Waiter(
    "mirrored", "the images to be mirrored to A",
    (Acceptor(Verdict.FAIL, lambda o: not o.snapshot_mode and o.status is not None
              and o.status.is_split_brain(), "split-brain on A"),
     Acceptor(Verdict.DONE, lambda o: o.copied() if o.snapshot_mode else o.caught_up(),
              "mirrored")),
    limit="mirror", describe=str)

#: Step 4: until no live client holds the image's exclusive lock on B (limit ``writer``); an
#: observation is the list of lock owners that still watch the image.
WRITER_RELEASED: Waiter[list[str]] = Waiter(
    "writer-released", "the image's writer on B to let go",
    (Acceptor(Verdict.DONE, lambda writers: not writers, "no writer"),),
    limit="writer", describe=lambda w: f"exclusive lock held by {w}")


@dataclass(frozen=True)
class Snapshotted:
    """Snapshot mode, step 5: A's newest mirror snapshot against B's demotion snapshot."""

    snapshot: MirrorSnapshot | None
    demotion: int
    source: str

    def copied(self) -> bool:
        """A's newest is the complete, non-primary copy of B's demotion snapshot."""
        top = self.snapshot
        return bool(top and top.state == "non-primary-demoted" and top.complete
                    and top.primary_mirror_uuid == self.source
                    and top.primary_snap_id == self.demotion)


#: Step 5, snapshot mode: until B's demotion snapshot is completely copied to A (``promote``).
DEMOTION_COPIED: Waiter[Snapshotted] = Waiter(
    "demotion-copied", "B's demotion snapshot to be copied to A",
    (Acceptor(Verdict.DONE, Snapshotted.copied, "demotion copied"),),
    limit="promote",
    describe=lambda o: (f"newest mirror snapshot {o.snapshot.state}" if o.snapshot else "none"))


@dataclass(frozen=True)
class Registered:
    """Journal mode, step 5: A's journal header, read now, and whose client must be in it
    (B's pool mirror uuid)."""

    header: JournalHeader | None
    b_uuid: str
    names: Names
    #: Why the header could not be read (then it is not known yet: the wait goes on).
    error: str | None = None

    def why_not(self) -> str | None:
        """:func:`~.safety.peer_unregistered`, or the read error."""
        if self.error is not None:
            return f"cannot read {self.names.site_a}'s journal of the image: {self.error}"
        return peer_unregistered(self.header, self.b_uuid, self.names)

    def __str__(self) -> str:
        return self.why_not() or "registered"


#: Step 5, journal mode: until B's rbd-mirror is registered in A's journal (limit
#: ``promote``), so that B can follow A's promotion.
PEER_REGISTERED: Waiter[Registered] = Waiter(
    "peer-registered", "site B's rbd-mirror to register in A's journal",
    (Acceptor(Verdict.DONE, lambda o: o.why_not() is None, "registered"),),
    limit="promote", describe=str)


@dataclass(frozen=True)
class Protection(Replay):
    """After the flip, one image: B's status and, journal mode, both copies' journals read the
    other way round from step 2's (:class:`~ceph_failback.ceph.rbd_journal.ReplayEpoch` with
    A as the source; ``None``: snapshot mode, or not readable), at the same poll."""

    def proof(self) -> str | None:
        """:func:`~.safety.protection_proof`."""
        return protection_proof(self.status, self.epoch)


#: After the flip: until site B replays each image from A (limit ``protect``). Split-brain on B
#: ends it at once for that image (``reprotect`` resyncs B); undecided at the limit is an answer
#: (the report says the image is not protected), not an error.
PROTECTED: Waiter[Protection] = Waiter(
    "protected", "site B to replay from A",
    (Acceptor(Verdict.DONE, lambda o: o.status.is_split_brain(), SPLIT_BRAIN_ON_B),
     Acceptor(Verdict.DONE, lambda o: o.proof() is not None, REPLAYING_FROM_A)),
    limit="protect", describe=str, must_finish=False)
