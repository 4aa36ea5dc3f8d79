"""Several mirrored pools seen as one: a failback whose VMs have disks in several Ceph pools
(OpenNebula sites often have several Ceph datastores) works on all of them at once.

:class:`PoolSet` is a :class:`~ceph_failback.ceph.seams.MirrorSide` over one
:class:`~ceph_failback.ceph.MirrorPool` per pool: an image is named ``pool/image`` (its *key*,
as ``rbd`` names it), each call goes to that image's pool, and each listing is the union of the
pools' listings, keyed the same way. So the steps, the plan and the journal work on several
pools exactly as on one. :class:`PoolLocks` holds the failback lock of every pool (one lock per
pool, so a failback of one of them alone is refused while this one runs).

A single-pool failback uses the plain adapters and bare image names, as before.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ..errors import CephError, ImageNotFoundError
from .content import ContentDigest
from .daemons import DaemonHealth
from .lock import Holder
from .mirror import MirrorSnapshot, OperationResult, Peer
from .rbd_journal import JournalHeader
from .seams import MirrorSide, PoolLockSide
from .status import MirrorImageInfo, MirrorStatus

log = logging.getLogger(__name__)

__all__ = ["PoolSet", "PoolLocks", "image_key", "split_key", "parts_of", "lock_parts",
           "lock_holders", "break_locks", "lost_locks", "unserved_pools"]


def image_key(pool: str, image: str) -> str:
    """The name of ``image`` of ``pool`` in a several-pool failback (``rbd``'s ``pool/image``)."""
    return f"{pool}/{image}"


def split_key(key: str) -> tuple[str, str]:
    """``pool/image`` -> ``(pool, image)``."""
    pool, sep, image = key.partition("/")
    if not sep or not pool or not image:
        raise ValueError(f"{key!r} is not a pool/image name")
    return pool, image


def parts_of(side: MirrorSide) -> dict[str, MirrorSide]:
    """The per-pool adapters behind ``side`` (``side`` itself for one pool)."""
    return dict(side.parts) if isinstance(side, PoolSet) else {side.pool: side}


class PoolSet:
    """Several pools of one site as one :class:`~ceph_failback.ceph.seams.MirrorSide`, images
    named ``pool/image``.

    Args:
        parts: one adapter per pool, in the failback's order.
    """

    def __init__(self, parts: Mapping[str, MirrorSide]) -> None:
        if len(parts) < 2:
            raise ValueError("a PoolSet joins several pools")
        self.parts = dict(parts)
        self.pool = "+".join(self.parts)

    def __repr__(self) -> str:
        return f"PoolSet({list(self.parts)!r})"

    # -- routing -------------------------------------------------------------------------------

    def _route(self, key: str) -> tuple[MirrorSide, str]:
        try:
            pool, image = split_key(key)
        except ValueError:
            pool, image = "", key
        side = self.parts.get(pool)
        if side is None:
            raise ImageNotFoundError(f"{key!r} is in none of this failback's pools "
                                     f"({', '.join(self.parts)})", image=key)
        return side, image

    def _group(self, keys: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for key in dict.fromkeys(keys):
            side, image = self._route(key)
            groups[side.pool].append(image)
        return groups

    def _each(self, keys: Iterable[str] | None) -> list[tuple[str, MirrorSide, list[str] | None]]:
        """(pool, adapter, its images or ``None`` for all) for each pool concerned."""
        if keys is None:
            return [(p, s, None) for p, s in self.parts.items()]
        return [(p, self.parts[p], names) for p, names in self._group(keys).items()]

    # -- pool-wide reads -----------------------------------------------------------------------

    def require_mirroring(self) -> list[Peer]:
        """Every pool's peers; the first pool whose mirroring is off raises (naming it)."""
        return [peer for side in self.parts.values() for peer in side.require_mirroring()]

    def daemon_health(self, *, beacon_grace: float = 60.0) -> list[DaemonHealth]:
        """Each pool's report of the site's rbd-mirror daemons, one entry per daemon and pool
        (:attr:`~ceph_failback.ceph.daemons.DaemonHealth.pool` says which): judge a pool by
        its own entries (:func:`unserved_pools`)."""
        return [d for side in self.parts.values()
                for d in side.daemon_health(beacon_grace=beacon_grace)]

    def mirror_uuid(self, image: str | None = None) -> str:
        """The mirror uuid of ``image``'s pool (each pool has its own)."""
        if image is None:
            uuids = {side.mirror_uuid() for side in self.parts.values()}
            if len(uuids) != 1:
                raise CephError("the pools have different mirror uuids: name the image")
            return uuids.pop()
        side, name = self._route(image)
        return side.mirror_uuid(name)

    def mirrored_names(self) -> set[str]:
        return {image_key(p, n) for p, side in self.parts.items() for n in side.mirrored_names()}

    def images(self) -> dict[str, MirrorImageInfo]:
        return self.infos()

    # -- per-image reads -----------------------------------------------------------------------

    def infos(self, images: Iterable[str] | None = None) -> dict[str, MirrorImageInfo]:
        out: dict[str, MirrorImageInfo] = {}
        for pool, side, names in self._each(images):
            for name, info in side.infos(names).items():
                key = image_key(pool, name)
                out[key] = dataclasses.replace(info, name=key)
        return out

    def status(self, image: str) -> MirrorStatus:
        side, name = self._route(image)
        return dataclasses.replace(side.status(name), image=image)

    def statuses(self, images: Iterable[str] | None = None, *,
                 each: bool = False) -> dict[str, MirrorStatus]:
        out: dict[str, MirrorStatus] = {}
        for pool, side, names in self._each(images):
            for name, st in side.statuses(names, each=each).items():
                key = image_key(pool, name)
                out[key] = dataclasses.replace(st, image=key)
        return out

    def overview(self, images: Iterable[str] | None = None, *,
                 journals: dict[str, JournalHeader] | None = None
                 ) -> tuple[dict[str, MirrorImageInfo], dict[str, MirrorStatus]]:
        infos: dict[str, MirrorImageInfo] = {}
        statuses: dict[str, MirrorStatus] = {}
        for pool, side, names in self._each(images):
            read: dict[str, JournalHeader] | None = {} if journals is not None else None
            i, s = side.overview(names, journals=read)
            if journals is not None and read is not None:
                journals.update((image_key(pool, name), h) for name, h in read.items())
            for name, info in i.items():
                infos[image_key(pool, name)] = dataclasses.replace(info,
                                                                   name=image_key(pool, name))
            for name, st in s.items():
                statuses[image_key(pool, name)] = dataclasses.replace(st,
                                                                      image=image_key(pool, name))
        return infos, statuses

    def watchers(self, image: str) -> list[dict[str, Any]]:
        side, name = self._route(image)
        return side.watchers(name)

    def lock_owners(self, image: str) -> list[dict[str, Any]]:
        side, name = self._route(image)
        return side.lock_owners(name)

    def digest(self, image: str, **kw: Any) -> ContentDigest:
        side, name = self._route(image)
        return side.digest(name, **kw)

    def mirror_snapshots(self, image: str) -> list[MirrorSnapshot]:
        side, name = self._route(image)
        return side.mirror_snapshots(name)

    def journal_header(self, image: str, image_id: str | None = None) -> JournalHeader | None:
        side, name = self._route(image)
        return side.journal_header(name, image_id)

    # -- operations ----------------------------------------------------------------------------

    def promote(self, image: str, *, force: bool = False) -> None:
        side, name = self._route(image)
        side.promote(name, force=force)

    def create_mirror_snapshot(self, image: str) -> int:
        side, name = self._route(image)
        return side.create_mirror_snapshot(name)

    def run_many(self, images: Iterable[str], operation: Callable[[str], Any], *,
                 concurrency: int | None = None) -> dict[str, OperationResult]:
        """``operation(key)`` for each image key, on the first pool's bounded thread pool."""
        first = next(iter(self.parts.values()))
        return first.run_many(images, operation, concurrency=concurrency)

    def _many(self, images: Iterable[str], which: str, **kw: Any
              ) -> dict[str, OperationResult]:
        out: dict[str, OperationResult] = {}
        keys = list(images)
        for key in keys:
            try:
                self._route(key)
            except ImageNotFoundError as exc:
                out[key] = OperationResult(key, False, exc)
        for pool, side, names in self._each([k for k in keys if k not in out]):
            assert names is not None
            for name, r in getattr(side, which)(names, **kw).items():
                key = image_key(pool, name)
                out[key] = dataclasses.replace(r, image=key)
        return out

    def demote_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        return self._many(images, "demote_many", **kw)

    def resync_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        return self._many(images, "resync_many", **kw)


class PoolLocks:
    """The failback locks of several pools, taken together (in the failback's pool order) and
    released together: taking fails, releasing what it took, if any of them is held."""

    def __init__(self, locks: Sequence[PoolLockSide]) -> None:
        self.locks = list(locks)

    @property
    def held(self) -> Holder | None:
        """The first pool's holder record when this object holds every lock."""
        helds = [lock.held for lock in self.locks]
        return helds[0] if all(h is not None for h in helds) else None

    def holder(self) -> Holder | None:
        """Another failback's holder of any of the locks, else this object's, else ``None``."""
        own: Holder | None = None
        for lock in self.locks:
            h = lock.holder()
            if h is None:
                continue
            mine = lock.held
            if mine is None or mine.cookie != h.cookie:
                return h
            own = own or self.held
        return own

    def acquire(self) -> Holder:
        taken: list[PoolLockSide] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                try:
                    lock.release()
                except CephError as exc:  # the error that stopped the taking is the one to raise
                    log.warning("could not release the failback lock of pool %s after failing "
                                "to take the others: %s (break it with `ceph-failback unlock "
                                "--yes` if it stays)", getattr(lock, "pool", "?"), exc)
            raise
        held = self.held
        assert held is not None
        return held

    def release(self) -> None:
        errors: list[CephError] = []
        for lock in reversed(self.locks):
            try:
                lock.release()
            except CephError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def break_(self, expected: Holder | None = None) -> Holder | None:
        """Break every pool's lock; with ``expected``, only the lock that holder (same cookie:
        each taking has its own) still holds. Returns the first holder broken. To break each
        pool's lock only if the holder shown is still the one, see
        :meth:`~ceph_failback.failback.Failback.break_lock`."""
        broken: Holder | None = None
        for lock in self.locks:
            h = lock.break_(expected)
            broken = broken or h
        return broken


def lock_parts(lock: PoolLockSide) -> dict[str, PoolLockSide]:
    """Each pool's own lock behind ``lock`` (pool -> lock; ``lock`` itself for one pool)."""
    parts = lock.locks if isinstance(lock, PoolLocks) else [lock]
    return {str(getattr(part, "pool", "?")): part for part in parts}


def lock_holders(lock: PoolLockSide) -> dict[str, Holder]:
    """Who holds each pool's lock now (pool -> holder; a free pool is left out)."""
    return {pool: h for pool, part in lock_parts(lock).items()
            if (h := part.holder()) is not None}


def break_locks(lock: PoolLockSide, expected: Mapping[str, Holder] | None = None, *,
                on_broken: Callable[[str, Holder], object] | None = None) -> dict[str, Holder]:
    """Break each pool's lock (with ``expected``: only those pools', each only if that taking,
    by its cookie, still holds it). ``on_broken(pool, holder)`` is called after each break, as
    it happens (the caller journals it). A pool whose lock cannot be broken does not stop the
    others: once every pool was tried, a :class:`CephError` names the pools that failed and
    those broken. Returns pool -> the holder broken."""
    broken: dict[str, Holder] = {}
    failed: dict[str, CephError] = {}
    for pool, part in lock_parts(lock).items():
        if expected is not None and pool not in expected:
            continue
        try:
            holder = part.break_(expected[pool] if expected is not None else None)
        except CephError as exc:
            failed[pool] = exc
            continue
        if holder is not None:
            broken[pool] = holder
            if on_broken is not None:
                on_broken(pool, holder)
    if failed:
        first = next(iter(failed.values()))
        done = ", ".join(f"{p!r}" for p in broken) or "none"
        raise CephError("cannot break the failback lock of pool(s) " + "; ".join(
            f"{pool!r}: {exc}" for pool, exc in failed.items()) + f" (broken: {done})",
            errno=first.errno, pool=",".join(failed),
            hint="see what holds each pool's lock (ceph-failback unlock), then try again")
    return broken


def lost_locks(lock: PoolLockSide) -> list[str]:
    """The pools whose failback lock ``lock`` took and no longer holds: broken by someone
    (``Failback.break_lock``, ``ceph-failback unlock``), maybe taken again by another run.
    A lock it could not read is not counted (the action itself then meets the error)."""
    lost = []
    for pool, part in lock_parts(lock).items():
        mine = part.held
        if mine is None:
            continue
        try:
            current = part.holder()
        except CephError:
            continue
        if current is None or current.cookie != mine.cookie:
            lost.append(pool)
    return lost


def unserved_pools(side: MirrorSide, *, beacon_grace: float) -> list[str]:
    """The pools of ``side`` that no healthy rbd-mirror daemon reports (each pool is judged
    by itself: a daemon healthy for one pool may raise an error for another). A pool whose
    health cannot be read is judged unserved only once every other pool was judged; the first
    such error is then raised, so one unreadable pool never hides another unserved one."""
    unserved: list[str] = []
    errors: list[CephError] = []
    for pool, part in parts_of(side).items():
        try:
            health = part.daemon_health(beacon_grace=beacon_grace)
        except CephError as exc:
            errors.append(exc)
            continue
        if not any(d.healthy for d in health):
            unserved.append(pool)
    if errors and not unserved:
        raise errors[0]
    return unserved
