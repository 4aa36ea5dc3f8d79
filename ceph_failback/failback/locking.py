"""This failback's hold on its pools' locks: taken once for nested blocks, the journal attached
to its copy in site A's pool while it is held, and the fence that stops a run whose lock was
broken (the lock itself: :mod:`ceph_failback.ceph.lock`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..ceph.lock import Holder
from ..ceph.pools import lost_locks
from ..ceph.seams import JournalCopySide, PoolLockSide
from ..errors import JournalError, LockedError
from .ledger import Ledger, Mark, Step

__all__ = ["RunLock"]

log = logging.getLogger(__name__)


class RunLock:
    """Re-entrant hold on ``lock`` (every pool's) for one :class:`~.core.Failback`.

    Args:
        lock: the pools' lock.
        ledger: the failback's journal (attached to ``copy()`` while the lock is held).
        copy: the journal's copy in Ceph, made when the lock is taken.
        site: site A's name, pool: the pools' name, for messages.
    """

    def __init__(self, lock: PoolLockSide, ledger: Ledger,
                 copy: Callable[[], JournalCopySide], *, site: str, pool: str) -> None:
        self.lock, self.ledger, self.copy = lock, ledger, copy
        self.site, self.pool = site, pool
        self.depth = 0
        self.lost: list[str] = []  # the pools whose lock this run lost
        self._guard = threading.Lock()

    def enter(self) -> tuple[Holder, bool]:
        """Take the lock unless this run holds it; returns the holder and whether it was
        taken now. Taking it brings the journal and its copy level (before any record) and
        records the taking; if that fails, the lock is released again."""
        with self._guard:
            taken = self.depth == 0
            if taken:
                holder = self.lock.acquire()
                self.lost = []
                try:
                    synced = self.ledger.journal.attach(self.copy())
                except BaseException:
                    self.lock.release()
                    raise
                self.ledger.write(Step.RUN, Mark.LOCKED, holder=str(holder),
                                  cookie=holder.cookie, copy=synced.copy,
                                  adopted=synced.adopted, copied=synced.copied)
            self.depth += 1
            held = self.lock.held
        assert held is not None
        return held, taken

    def exit(self) -> None:
        """Leave one block; the last records the release, detaches the copy and releases."""
        with self._guard:
            self.depth -= 1
            if self.depth == 0:
                held = self.lock.held
                try:
                    self.ledger.write(Step.RUN, Mark.UNLOCKED,
                                      cookie=held.cookie if held is not None else None)
                except JournalError as exc:  # bookkeeping only: never hides the block's error
                    log.warning("%s", exc)
                finally:
                    self.ledger.journal.detach()
                    self.lock.release()

    def fence(self) -> None:
        """Raise :class:`LockedError` if this run no longer holds every lock it took."""
        if self.depth and not self.lost:
            self.lost = lost_locks(self.lock)
        if self.lost:
            raise LockedError(
                f"this failback no longer holds the lock of pool(s) {self.lost} on "
                f"{self.site} (it was broken): it stops before its next action",
                pool=self.pool, hint="another failback may run: check `ceph-failback unlock` "
                "(shows the holders) before resuming this one")
