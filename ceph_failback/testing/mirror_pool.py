"""The site and pool adapters of a :class:`~ceph_failback.testing.ceph.MemoryCeph` (the Ceph
seam's :class:`~ceph_failback.ceph.seams.CephBackend` and
:class:`~ceph_failback.ceph.seams.MirrorSide`); import them from
:mod:`ceph_failback.testing.ceph`."""

from __future__ import annotations

import contextlib
import errno as errno_mod
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..ceph.content import ContentDigest, digest
from ..ceph.mirror import DaemonHealth, MirrorSnapshot, OperationResult, Peer
from ..ceph.rbd_journal import JournalHeader
from ..ceph.seams import JournalCopySide, PoolLockSide
from ..ceph.status import MirrorImageInfo, MirrorStatus, parse_mirror_status
from ..errors import (
    CephError,
    CephOperationError,
    MirroringNotEnabledError,
    PoolNotFoundError,
)
from .journals import mirror_uuid_of as _uuid

if TYPE_CHECKING:
    from .ceph import MemoryCeph, _Copy

class MemoryCephSite:
    """One site of a :class:`MemoryCeph` (a :class:`~ceph_failback.ceph.seams.CephBackend`)."""

    def __init__(self, world: MemoryCeph, name: str) -> None:
        self.world = world
        self.name = name

    def __repr__(self) -> str:
        return f"MemoryCephSite({self.name!r})"

    def fsid(self) -> str:
        """The cluster's id."""
        return self.world._fsids[self.name]

    def describe(self) -> str:
        """For messages."""
        return f"in-memory cluster {self.name!r}"

    def mirror_pool(self, pool: str, *, concurrency: int = 10) -> MemoryMirrorPool:
        """The pool's mirror adapter."""
        if pool != self.world.pool:
            raise PoolNotFoundError("pool does not exist", site=self.name, pool=pool,
                                    errno=errno_mod.ENOENT)
        return MemoryMirrorPool(self.world, self.name, concurrency=concurrency)

    def pool_lock(self, pool: str, *, purpose: str = "failback") -> PoolLockSide:
        """The pool's failback lock."""
        from .lock import MemoryPoolLock

        return MemoryPoolLock(self.world, self.name, pool, purpose)

    def journal_copy(self, pool: str, name: str) -> JournalCopySide:
        """The copy of a journal in the pool (an object beside the lock)."""
        from .lock import MemoryJournalCopy

        return MemoryJournalCopy(self.world, self.name, pool, name)

    def close(self) -> None:
        """Nothing to close."""


class MemoryMirrorPool:
    """The pool on one site of a :class:`MemoryCeph` (a
    :class:`~ceph_failback.ceph.seams.MirrorSide`)."""

    def __init__(self, world: MemoryCeph, site: str, *, concurrency: int = 10) -> None:
        self.world = world
        self.site_name = site
        self.pool = world.pool
        self.concurrency = concurrency

    def __repr__(self) -> str:
        return f"MemoryMirrorPool(site={self.site_name!r}, pool={self.pool!r})"

    def _tick(self) -> None:
        if self.world.auto_tick:
            self.world.tick()

    def require_mirroring(self) -> list[Peer]:
        """The one peer (:class:`MirroringNotEnabledError` when the pool's mirroring is off)."""
        if not self.world.mirroring[self.site_name]:
            raise MirroringNotEnabledError("mirroring is not enabled on this pool",
                                           site=self.site_name, pool=self.pool)
        peer = self.world.peer_of(self.site_name)
        return [Peer(f"peer-{peer}", peer, _uuid(peer, self.pool), "rx-tx",
                     "client.rbd-mirror-peer")]

    def daemon_health(self, *, beacon_grace: float = 60.0) -> list[DaemonHealth]:
        """The site's one rbd-mirror daemon."""
        if not self.world.daemon_readable[self.site_name]:
            raise CephError("service status unreadable", site=self.site_name)
        up = self.world.daemon_up[self.site_name]
        return [DaemonHealth("4100", "4100", True, datetime.now(UTC), up, {}, up, self.pool)]

    def mirror_uuid(self, image: str | None = None) -> str:
        """This pool's mirror uuid."""
        return _uuid(self.site_name, self.pool)

    def _listed(self) -> dict[str, _Copy]:
        return {name: copy for name, image in self.world.images.items()
                if (copy := image.copies.get(self.site_name)) is not None and not copy.recreating}

    def mirrored_names(self) -> set[str]:
        """Mirror-enabled images listed on this site."""
        self._tick()
        with self.world.lock:
            return set(self._listed())

    def images(self) -> dict[str, MirrorImageInfo]:
        """Every mirrored image's info."""
        self._tick()
        with self.world.lock:
            return {name: self._info(name, copy) for name, copy in self._listed().items()}

    def _info(self, name: str, copy: _Copy) -> MirrorImageInfo:
        return MirrorImageInfo(name, self.world.images[name].global_id, True, copy.primary,
                               "journal", copy.image_id)

    def infos(self, images: Iterable[str] | None = None) -> dict[str, MirrorImageInfo]:
        """The infos of ``images`` (missing ones left out)."""
        listed = self.images()
        return listed if images is None else {n: listed[n] for n in images if n in listed}

    def status(self, image: str) -> MirrorStatus:
        """One image's status."""
        self._tick()
        return parse_mirror_status(self.world.raw_status(self.site_name, image),
                                   site=self.site_name, pool=self.pool, peer_names=self._names())

    def _names(self) -> dict[str, str]:
        return {_uuid(s, self.pool): s for s in self.world.site_names}

    def statuses(self, images: Iterable[str] | None = None, *,
                 each: bool = False) -> dict[str, MirrorStatus]:
        """The statuses of ``images`` (or all), missing ones left out."""
        return self.overview(images)[1]

    def overview(self, images: Iterable[str] | None = None, *,
                 journals: dict[str, JournalHeader] | None = None
                 ) -> tuple[dict[str, MirrorImageInfo], dict[str, MirrorStatus]]:
        """Infos and statuses together (and the journal headers, as the real listing)."""
        self._tick()
        with self.world.lock:
            listed = self._listed()
            wanted = list(listed) if images is None else [n for n in images if n in listed]
            infos = {n: self._info(n, listed[n]) for n in wanted}
            statuses = {n: parse_mirror_status(self.world.raw_status(self.site_name, n),
                                               site=self.site_name, pool=self.pool,
                                               peer_names=self._names()) for n in wanted}
            for n in wanted if journals is not None else []:  # with the listing, no tick
                with contextlib.suppress(CephError):  # unread: a caller reads it again
                    journals[n] = self.world.journal_header(self.site_name, n)  # type: ignore
        return infos, statuses

    def watchers(self, image: str) -> list[dict[str, Any]]:
        """The writer's watch, if one holds the image."""
        with self.world.lock:
            self.world._copy(self.site_name, image)
            client = self.world.writers.get((self.site_name, image))
            return [{"addr": f"10.0.0.1:0/{client}", "id": 1, "cookie": 1}] if client else []

    def digest(self, image: str, **kw: Any) -> ContentDigest:
        """The digest of the image's content on this site (:meth:`MemoryCeph.data`)."""
        self._tick()
        data = self.world.data(self.site_name, image)
        return digest(len(data), lambda offset, n: data[offset:offset + n], **kw)

    def lock_owners(self, image: str) -> list[dict[str, Any]]:
        """The writer holding the exclusive lock, if any."""
        with self.world.lock:
            self.world._copy(self.site_name, image)
            client = self.world.writers.get((self.site_name, image))
            return [{"owner": f"10.0.0.1:0/{client}", "mode": 1}] if client else []

    def mirror_snapshots(self, image: str) -> list[MirrorSnapshot]:
        """None: journal-based mirroring."""
        return []

    def journal_header(self, image: str, image_id: str | None = None) -> JournalHeader | None:
        """The image's journal header (:meth:`MemoryCeph.journal_header`)."""
        self._tick()
        return self.world.journal_header(self.site_name, image)

    def demote(self, image: str) -> None:
        """Demote on this site."""
        self._tick()
        self.world.demote(self.site_name, image)

    def promote(self, image: str, *, force: bool = False) -> None:
        """Promote on this site."""
        self._tick()
        self.world.promote(self.site_name, image, force=force)

    def resync(self, image: str) -> None:
        """Flag for resync on this site."""
        self._tick()
        self.world.resync(self.site_name, image)

    def create_mirror_snapshot(self, image: str) -> int:
        """Refused: journal-based mirroring."""
        raise CephOperationError("not a snapshot-mirrored image", errno=errno_mod.EINVAL,
                                 site=self.site_name, pool=self.pool, image=image)

    def run_many(self, images: Iterable[str], operation: Callable[[str], Any], *,
                 concurrency: int | None = None) -> dict[str, OperationResult]:
        """``operation`` on each image, a result each (as :meth:`MirrorPool.run_many`)."""
        names = list(dict.fromkeys(images))

        def one(name: str) -> OperationResult:
            try:
                return OperationResult(name, True, None, operation(name))
            except CephError as exc:
                return OperationResult(name, False, exc)

        with ThreadPoolExecutor(max(1, min(concurrency or self.concurrency, len(names) or 1))) as ex:
            return {r.image: r for r in ex.map(one, names)}

    def demote_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        """:meth:`demote` each image."""
        return self.run_many(images, self.demote, **kw)

    def resync_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        """:meth:`resync` each image."""
        return self.run_many(images, self.resync, **kw)
