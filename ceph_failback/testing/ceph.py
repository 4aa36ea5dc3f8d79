"""An in-memory model of two Ceph clusters mirroring one pool with journal-based RBD mirroring.

It satisfies the Ceph seam (:class:`~ceph_failback.ceph.seams.CephBackend`,
:class:`~ceph_failback.ceph.seams.MirrorSide`, :class:`~ceph_failback.ceph.seams.PoolLockSide`)
and behaves like librbd and rbd-mirror as the project's lab shows them (and as Ceph's source
says: src/librbd/mirror/PromoteRequest.cc, src/librbd/Journal.cc, src/tools/rbd_mirror):

* Each copy of an image is a journal of entries, each in a tag epoch (``tag_tid``). A promote
  (forced or not) opens a new epoch owned by that site; a demote appends a demotion, which opens
  an orphan epoch (no owner).
* A non-forced promote is accepted only on a copy whose last entry is a demotion: the peer's
  demotion replayed here, **or its own demotion** (the orphan of the stale-promote trap, which
  librbd promotes at once with its old data). Otherwise it is refused with EBUSY
  (:class:`~ceph_failback.errors.NotReadyError`).
* rbd-mirror on a site replays, for each non-primary copy there, the peer's journal when its own
  is a prefix of the peer's (``replaying``); a copy that diverged is ``split-brain detected``.
  A resync request makes the daemon delete the copy (it leaves every listing for
  ``resync_ticks``), then copy the peer's image again (``bootstrapping``), then replay.
* Statuses lag: a state change is published at once, but the replay positions inside
  ``replaying, {...}`` only every ``status_period`` ticks (rbd-mirror's ~30 s cycle), so right
  after a flip a copy can report ``replaying`` with a position in an old epoch. A stopped daemon
  makes every status of its site ``down``.
* The peer's rbd-mirror registers its client in a copy's journal when it next prepares the
  image (``registration_ticks`` after a resync recreated the copy), at the journal's newest
  entry. A copy whose last entry is a demotion links to the peer's promotion only if its
  client in the peer's journal was registered at or before that demotion: registered after
  the promotion, it cannot see the demotion (cls_journal's ``tag_list`` lists a client only
  the tags from its commit position on), which rbd-mirror reports as ``split-brain detected``
  for good, as the lab showed (a promote before the registration). Until the daemon prepares
  the image (and registers), the copy's status stays what it last was.
* A replayer's start report can be lost (``lost_start_reports``): the copy replays, its status
  keeps the old state until the periodic update, as the lab showed (image_replayer/journal/
  Replayer.cc answers ``get_replay_status`` with EAGAIN until its status formatter exists).

Time is ticks. By default every call on a :class:`MemoryMirrorPool` first advances the daemons by
one tick, so the orchestrator's own polling drives replication forward; ``auto_tick=False``
freezes them until :meth:`MemoryCeph.tick`. Snapshot-based mirroring is not modelled.
"""

from __future__ import annotations

import errno as errno_mod
import itertools
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..ceph.lock import Holder
from ..ceph.rbd_journal import JournalHeader
from ..ceph.status import MirrorState
from ..errors import (
    CephError,
    CephOperationError,
    ImageNotFoundError,
    NotReadyError,
)
from .journals import header, site_report
from .journals import mirror_uuid_of as _uuid

__all__ = ["MemoryCeph", "MemoryCephSite", "MemoryMirrorPool"]

_TAG, _WRITE, _DEMOTE = "tag", "write", "demote"


@dataclass(frozen=True)
class _Entry:
    kind: str  # tag (a promotion), write, demote
    tag_tid: int
    site: str  # who wrote it
    data: bytes = b""


@dataclass
class _Copy:
    """One site's copy of an image."""

    entries: list[_Entry]
    primary: bool
    image_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    resync_requested: bool = False
    recreating: int = 0  # ticks left while rbd-mirror recreates it (not listed meanwhile)
    bootstrapping: bool = False
    # What this site's daemon last published: (state, head of the description, positions).
    published: tuple[MirrorState, str, dict[str, Any] | None] | None = None
    published_at: float = 0.0
    started: bool = False  # this site's replayer of the copy runs (whatever it published)
    # In this copy's journal: the entry at which the peer's rbd-mirror registered its client
    # (``None``: not yet), and the peer daemon's ticks until it does (module doc).
    peer_client_at: int | None = 0
    register_wait: int = 0


@dataclass
class _Image:
    name: str
    global_id: str
    copies: dict[str, _Copy]


class MemoryCeph:
    """Two sites' clusters with one mirrored pool and an rbd-mirror daemon each.

    Args:
        sites: the two sites' names.
        pool: the mirrored pool's name.
        status_period: every how many ticks a daemon publishes the replay positions.
        resync_ticks: ticks a resynced copy stays out of the listings.
        auto_tick: advance the daemons by one tick on every call of a site's pool adapter.
        replay_rate: at most this many journal entries a replaying copy replays per tick
            (``None``: all it lacks; rbd-mirror replays at a finite speed, so a busy image's
            copy lags).
        registration_ticks: ticks of the peer's daemon before it registers its client in a
            copy's journal recreated by a resync (rbd-mirror does it at its next image check).
    """

    def __init__(self, sites: tuple[str, str] = ("site-a", "site-b"), pool: str = "one", *,
                 status_period: int = 3, resync_ticks: int = 2, auto_tick: bool = True,
                 replay_rate: int | None = None, registration_ticks: int = 0) -> None:
        self.site_names = sites
        self.pool = pool
        self.status_period = status_period
        self.resync_ticks = resync_ticks
        self.auto_tick = auto_tick
        self.replay_rate = replay_rate
        self.registration_ticks = registration_ticks
        self.ticks = 0
        self.lock = threading.RLock()
        self.images: dict[str, _Image] = {}
        self.daemon_up = {s: True for s in sites}
        self.daemon_readable = {s: True for s in sites}
        self.mirroring = {s: True for s in sites}  # the pool is mirrored, with its peer
        self.writers: dict[tuple[str, str], str] = {}  # (site, image) -> client holding the lock
        self.locks: dict[str, Holder] = {}  # pool -> holder of the failback lock
        self.objects: dict[tuple[str, str], bytes] = {}  # (site, object) -> its data
        self.object_errors: dict[tuple[str, str], CephError] = {}  # (site, object) -> raised
        self.calls: list[tuple[str, str, str]] = []  # (site, operation, image) of every change
        self._tags = itertools.count(2)
        self._fsids = {s: uuid.uuid4().hex for s in sites}
        self.lost_start_reports: set[tuple[str, str]] = set()  # (site, image): module doc

    def site(self, name: str) -> MemoryCephSite:
        """The Ceph side of a failback :class:`~ceph_failback.failback.Site`."""
        if name not in self.site_names:
            raise KeyError(name)
        return MemoryCephSite(self, name)

    def peer_of(self, site: str) -> str:
        """The other site."""
        a, b = self.site_names
        return b if site == a else a

    # -- building a scenario -------------------------------------------------------------------

    def create_image(self, name: str, *, primary: str | None = None, data: bytes = b"") -> None:
        """A mirrored image, primary on ``primary`` (default site A) and replicated to the
        peer (already replaying, caught up)."""
        with self.lock:
            owner = primary or self.site_names[0]
            entries = [_Entry(_TAG, 1, owner)]
            if data:
                entries.append(_Entry(_WRITE, 1, owner, data))
            self.images[name] = _Image(name, uuid.uuid4().hex, {
                s: _Copy(list(entries), s == owner) for s in self.site_names})
            for s in self.site_names:
                self._publish(s, self.images[name], force=True)

    def remove_image(self, name: str, *, site: str) -> None:
        """Delete a site's copy (OpenNebula deleting a clone); a deleted primary is deleted on
        the peer too (rbd-mirror mirrors deletions)."""
        with self.lock:
            image = self.images.get(name)
            if image is None or site not in image.copies:
                return
            was_primary = image.copies.pop(site).primary
            if was_primary or not image.copies:
                del self.images[name]

    def write(self, site: str, name: str, data: bytes) -> None:
        """A client's write on a site's primary copy (EROFS on a non-primary one)."""
        with self.lock:
            copy = self._copy(site, name)
            if not copy.primary:
                raise CephOperationError("write to a non-primary image", errno=errno_mod.EROFS,
                                         site=site, pool=self.pool, image=name)
            copy.entries.append(_Entry(_WRITE, copy.entries[-1].tag_tid, site, data))

    def data(self, site: str, name: str) -> bytes:
        """The image's content on a site (its last write)."""
        with self.lock:
            writes = [e.data for e in self._copy(site, name).entries if e.kind == _WRITE]
            return writes[-1] if writes else b""

    def is_primary(self, site: str, name: str) -> bool:
        """Whether the site's copy is primary."""
        with self.lock:
            return self._copy(site, name).primary

    def failover(self, names: Iterable[str], *, planned: bool, data: bytes | None = None) -> None:
        """Fail over to site B: a DR test demotes A then promotes B (not forced, once B replayed
        the demotion); an outage force-promotes B with A still primary. ``data`` is written on B."""
        a, b = self.site_names
        for name in names:
            if planned:
                self.demote(a, name)
                for _ in range(10):
                    self.tick()
                self.promote(b, name)
            else:
                self.promote(b, name, force=True)
            if data is not None:
                self.write(b, name, data)

    def open_writer(self, site: str, name: str, client: str = "client.4242") -> None:
        """A client (a VM, a mapped device) holds the image's exclusive lock and watches it."""
        with self.lock:
            self.writers[(site, name)] = client

    def close_writer(self, site: str, name: str) -> None:
        """The writer let go."""
        with self.lock:
            self.writers.pop((site, name), None)

    def stop_daemon(self, site: str) -> None:
        """Stop a site's rbd-mirror: nothing replays there, its statuses read ``down``."""
        with self.lock:
            self.daemon_up[site] = False

    def start_daemon(self, site: str) -> None:
        """Start it again."""
        with self.lock:
            self.daemon_up[site] = True

    # -- librbd's operations -------------------------------------------------------------------

    def _copy(self, site: str, name: str) -> _Copy:
        image = self.images.get(name)
        copy = image.copies.get(site) if image is not None else None
        if copy is None or copy.recreating:
            raise ImageNotFoundError("image does not exist", errno=errno_mod.ENOENT, site=site,
                                     pool=self.pool, image=name)
        return copy

    def demote(self, site: str, name: str) -> None:
        """``mirror_image_demote``: only a primary copy; appends a demotion (an orphan epoch)."""
        with self.lock:
            copy = self._copy(site, name)
            if not copy.primary:
                raise CephOperationError("demote failed: image is not primary",
                                         errno=errno_mod.EINVAL, site=site, pool=self.pool,
                                         image=name)
            copy.entries.append(_Entry(_DEMOTE, next(self._tags), site))
            copy.primary = False
            self.calls.append((site, "demote", name))

    def promote(self, site: str, name: str, *, force: bool = False) -> None:
        """``mirror_image_promote``: non-forced only when the copy's last entry is a demotion
        (the peer's, replayed, or its own: the orphan), else EBUSY."""
        with self.lock:
            copy = self._copy(site, name)
            if copy.primary:
                raise CephOperationError("promote failed: image is already primary",
                                         errno=errno_mod.EINVAL, site=site, pool=self.pool,
                                         image=name)
            if not force and copy.entries[-1].kind != _DEMOTE:
                raise NotReadyError(
                    "promote refused: the peer's demotion has not been replayed here yet",
                    errno=errno_mod.EBUSY, site=site, pool=self.pool, image=name,
                    hint="retry later")
            copy.entries.append(_Entry(_TAG, next(self._tags), site))
            copy.primary = True
            copy.resync_requested = False
            self.calls.append((site, "promote-forced" if force else "promote", name))

    def resync(self, site: str, name: str) -> None:
        """``mirror_image_resync``: flags a non-primary copy; rbd-mirror recreates it."""
        with self.lock:
            copy = self._copy(site, name)
            if copy.primary:
                raise CephOperationError("resync failed: image is primary",
                                         errno=errno_mod.EINVAL, site=site, pool=self.pool,
                                         image=name)
            copy.resync_requested = True
            self.calls.append((site, "resync", name))

    # -- rbd-mirror ----------------------------------------------------------------------------

    def tick(self, n: int = 1) -> None:
        """Advance both daemons by ``n`` ticks."""
        for _ in range(n):
            with self.lock:
                self.ticks += 1
                for site in self.site_names:
                    if self.daemon_up[site]:
                        for image in list(self.images.values()):
                            self._work(site, image)
                periodic = self.ticks % self.status_period == 0
                for site in self.site_names:
                    for image in self.images.values():
                        self._publish(site, image, force=periodic)

    def _work(self, site: str, image: _Image) -> None:
        copy = image.copies.get(site)
        peer = image.copies.get(self.peer_of(site))
        if copy is not None and peer is not None and not peer.recreating and (
                peer.peer_client_at is None):
            # This site's daemon prepares the image (primary here or not) and registers its
            # client in the peer's journal, at the journal's newest entry.
            if peer.register_wait > 0:
                peer.register_wait -= 1
            else:
                peer.peer_client_at = len(peer.entries) - 1
        if copy is None or peer is None or copy.primary:
            return
        if copy.recreating:
            copy.recreating -= 1
            if copy.recreating == 0:
                copy.entries = list(peer.entries)  # the full copy of the peer's image
                copy.image_id = uuid.uuid4().hex[:12]
                copy.peer_client_at, copy.register_wait = None, self.registration_ticks
                copy.bootstrapping = True
            return
        if copy.resync_requested and peer.primary:
            copy.resync_requested = False
            copy.recreating = self.resync_ticks
            copy.published = None
            return
        if copy.bootstrapping:
            copy.bootstrapping = False
            return
        mine, theirs = copy.entries, peer.entries
        if len(mine) < len(theirs) and self._follows(copy, peer):
            if not copy.started:
                # The replayer starts: it reports "replaying" with the positions it starts
                # from, and replays from the next tick on (where it got to shows only on the
                # next periodic update). Until then the copy is still what it was: an orphan
                # of its own demotion accepts a non-forced promote with its old data.
                copy.started = True
                self._publish(site, image)
                return
            upto = len(theirs) if self.replay_rate is None else len(mine) + self.replay_rate
            copy.entries = list(theirs[:upto])  # replay what the peer has (at replay_rate)

    def _state(self, site: str, image: _Image) -> tuple[MirrorState, str, dict[str, Any] | None]:
        copy = image.copies[site]
        peer = image.copies.get(self.peer_of(site))
        if copy.primary:
            return MirrorState.STOPPED, "local image is primary", None
        if copy.bootstrapping or copy.recreating:
            return MirrorState.SYNCING, "bootstrapping, IMAGE_COPY/COPY_OBJECT 50%", None
        if peer is None:
            return MirrorState.UNKNOWN, "remote image does not exist", None
        mine, theirs = copy.entries, peer.entries
        if not peer.primary and len(theirs) < len(mine) and mine[:len(theirs)] == theirs:
            # Both demoted, the peer still replaying this copy's demotion (with a replay_rate):
            # rbd-mirror skips the replay from a non-primary remote (BootstrapRequest/
            # PrepareRemoteImageRequest: "remote image is not primary"), no split-brain.
            return MirrorState.UNKNOWN, "remote image is not primary", None
        if (peer.peer_client_at is None and len(mine) < len(theirs) and mine[-1].kind == _DEMOTE
                and theirs[:len(mine)] == mine):
            # The replayer has not prepared the image since: what it last wrote stands.
            return copy.published or (MirrorState.UNKNOWN, "starting replay", None)
        if not self._follows(copy, peer):
            return MirrorState.ERROR, "split-brain detected", None
        if not peer.primary and len(mine) == len(theirs):
            return MirrorState.UNKNOWN, "remote image demoted", None
        positions = {
            "primary_position": {"object_number": 0, "tag_tid": theirs[-1].tag_tid,
                                 "entry_tid": len(theirs)},
            "non_primary_position": {"object_number": 0, "tag_tid": mine[-1].tag_tid,
                                     "entry_tid": len(mine)},
            "entries_behind_primary": len(theirs) - len(mine),
        }
        return MirrorState.REPLAYING, "replaying", positions

    @staticmethod
    def _follows(copy: _Copy, peer: _Copy) -> bool:
        """The copy can replay the peer's journal: its own is a prefix of the peer's, and a
        demotion it ends with (its own or the peer's, replayed) is among the tags its client
        in the peer's journal sees (module doc). A client not registered yet would be
        registered now, at the peer's newest entry."""
        mine, theirs = copy.entries, peer.entries
        if not (len(mine) <= len(theirs) and theirs[:len(mine)] == mine):
            return False
        if len(mine) == len(theirs) or mine[-1].kind != _DEMOTE:
            return True
        at = peer.peer_client_at if peer.peer_client_at is not None else len(theirs) - 1
        return theirs[at].tag_tid <= mine[-1].tag_tid

    def _publish(self, site: str, image: _Image, *, force: bool = False) -> None:
        """What the site's daemon writes as the image's status: a new state at once, new replay
        positions only on the periodic update (``force``). A stopped daemon writes nothing."""
        copy = image.copies.get(site)
        if copy is None or copy.recreating or not self.daemon_up[site]:
            return
        state, head, positions = self._state(site, image)
        copy.started = state is MirrorState.REPLAYING  # a replayer runs while it replays
        old = copy.published
        lost = (not force and state is MirrorState.REPLAYING and (site, image.name)
                in self.lost_start_reports and (old is None or old[0] is not state))
        if not lost and (force or old is None or (old[0], old[1]) != (state, head)):
            copy.published = (state, head, positions)
            copy.published_at = time.time()

    def journal_header(self, site: str, name: str) -> JournalHeader:
        """The journal header of a site's copy (:func:`~.journals.header`)."""
        with self.lock:
            copy = self._copy(site, name)
            peer_site = self.peer_of(site)
            peer = self.images[name].copies.get(peer_site)
            return header(copy.entries, site, peer.entries if peer is not None else None,
                          peer_site, lambda s: _uuid(s, self.pool),
                          peer_client_at=copy.peer_client_at)

    def raw_status(self, site: str, name: str) -> dict[str, Any]:
        """librbd's status dict of a site's copy (what ``mirror_image_get_status`` answers)."""
        with self.lock:
            image = self.images[name]
            copy = self._copy(site, name)

            def report(s: str) -> dict[str, Any]:
                c = image.copies.get(s)
                return site_report(c.published if c else None, c.published_at if c else 0.0,
                                   self.daemon_up[s])

            peer = self.peer_of(site)
            return {"name": name,
                    "info": {"global_id": image.global_id, "state": 1,
                             "primary": copy.primary},
                    **report(site),
                    "remote_statuses": [{"mirror_uuid": _uuid(peer, self.pool),
                                          **report(peer)}]}


from .mirror_pool import MemoryCephSite, MemoryMirrorPool  # noqa: E402 (they use MemoryCeph)
