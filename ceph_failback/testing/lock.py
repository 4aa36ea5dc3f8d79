"""The failback lock of an in-memory pool (a :class:`~ceph_failback.ceph.seams.PoolLockSide`)
and the copy of a journal beside it (a :class:`~ceph_failback.ceph.seams.JournalCopySide`)."""

from __future__ import annotations

import getpass
import os
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..ceph.journal_copy import journal_object
from ..ceph.lock import Holder
from ..errors import LockedError

if TYPE_CHECKING:
    from .ceph import MemoryCeph

__all__ = ["MemoryPoolLock", "MemoryJournalCopy"]


class MemoryPoolLock:
    """The failback lock of a :class:`MemoryCeph` pool (a
    :class:`~ceph_failback.ceph.seams.PoolLockSide`)."""

    def __init__(self, world: MemoryCeph, site: str, pool: str, purpose: str) -> None:
        self.world, self.site, self.pool, self.purpose = world, site, pool, purpose
        self._held: Holder | None = None

    @property
    def held(self) -> Holder | None:
        """The holder record if this object holds the lock."""
        return self._held

    def holder(self) -> Holder | None:
        """Who holds it."""
        return self.world.locks.get(self.pool)

    def acquire(self) -> Holder:
        """Take it, or :class:`LockedError`."""
        with self.world.lock:
            if self._held is not None:
                return self._held
            current = self.world.locks.get(self.pool)
            if current is not None:
                raise LockedError(f"another failback holds the lock of this pool: {current}",
                                  site=self.site, pool=self.pool)
            holder = Holder("memory", os.getpid(), getpass.getuser(), self.purpose,
                            datetime.now(UTC).isoformat(timespec="seconds"), uuid.uuid4().hex,
                            locker="client.1")
            self.world.locks[self.pool] = self._held = holder
            return holder

    def release(self) -> None:
        """Release it if held."""
        with self.world.lock:
            if self._held is not None and self.world.locks.get(self.pool) == self._held:
                del self.world.locks[self.pool]
            self._held = None

    def break_(self, expected: Holder | None = None) -> Holder | None:
        """Break it."""
        with self.world.lock:
            current = self.world.locks.get(self.pool)
            if current is None or (expected is not None and current.cookie != expected.cookie):
                return None
            del self.world.locks[self.pool]
            return current



class MemoryJournalCopy:
    """A journal's copy in a :class:`MemoryCeph` pool: an object appended atomically, as a
    RADOS append. ``world.object_errors[(site, object)]`` makes every access raise that error
    (a site that cannot be reached, or caps that do not allow it)."""

    def __init__(self, world: MemoryCeph, site: str, pool: str, name: str) -> None:
        self.world, self.site, self.pool = world, site, pool
        self.object = journal_object(name)

    def describe(self) -> str:
        """Where it is, for messages."""
        return f"object {self.object!r} in pool {self.pool!r} on {self.site}"

    def _check(self) -> None:
        error = self.world.object_errors.get((self.site, self.object))
        if error is not None:
            raise error

    def read(self) -> bytes:
        """The whole object (empty if there is none)."""
        with self.world.lock:
            self._check()
            return self.world.objects.get((self.site, self.object), b"")

    def append(self, data: bytes) -> None:
        """Append ``data`` at once."""
        with self.world.lock:
            self._check()
            key = (self.site, self.object)
            self.world.objects[key] = self.world.objects.get(key, b"") + data
