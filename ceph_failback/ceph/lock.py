"""A lock that lives in Ceph: one failback at a time per pool, whoever starts it and from where.

The lock is a librados exclusive object lock (``cls_lock``) on one object in site A's pool. Its
description holds who took it (host, process, user, purpose) and when, so a refused operator sees
who holds it and since when. It has no expiry: a holder that died (SIGKILL, a lost machine) leaves
it behind on purpose, because nothing outside can tell a dead run from a slow one. Such a stale
lock is broken explicitly (:meth:`PoolLock.break_`), except in one provable case: the holder ran
on this very machine, in this boot, and its process is gone (or the PID now belongs to a newer
process); then :meth:`PoolLock.acquire` takes the lock over and says so.

The lock needs only the ``profile rbd`` OSD caps on the pool (``cls lock`` calls on one object).
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import struct
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CephError, LockedError
from .bindings import import_bindings, map_ceph_error

if TYPE_CHECKING:
    from .connection import CephSite

__all__ = ["LOCK_OBJECT", "Holder", "PoolLock"]

log = logging.getLogger(__name__)

#: The object in the pool that carries the lock.
LOCK_OBJECT = "ceph_failback.lock"
_LOCK_NAME = "failback"
_ENTITY_CLIENT = 0x08  # CEPH_ENTITY_TYPE_CLIENT


@dataclass(frozen=True)
class Holder:
    """Who holds (or held) the lock.

    Attributes:
        host: the holder's host name.
        pid: its process id.
        user: its login name.
        purpose: what it is doing (``failback site-b -> site-a``).
        since: when it took the lock (UTC, ISO 8601).
        cookie: the lock's cookie (unique per taking).
        locker: the Ceph client instance that holds it (``client.4123``).
        machine_id, boot_id, proc_start: identify the process beyond its PID, for the
            dead-holder check on the same machine.
    """

    host: str
    pid: int
    user: str
    purpose: str
    since: str
    cookie: str
    locker: str = ""
    machine_id: str = ""
    boot_id: str = ""
    proc_start: str = ""

    def __str__(self) -> str:
        where = f"{self.user}@{self.host} pid {self.pid}" if self.host else "an unknown holder"
        return f"{where} ({self.purpose}) since {self.since}"

    def describe(self) -> str:
        """The lock description stored in Ceph (JSON)."""
        return json.dumps({k: v for k, v in asdict(self).items() if k != "locker"},
                          sort_keys=True)

    def is_provably_dead(self) -> bool:
        """True only if the holder ran on this machine, in this boot, and its process is gone
        (or its PID now belongs to another process). Anything else: not provable."""
        me = _identity()
        if not self.boot_id or (self.machine_id, self.boot_id, self.host) != (
                me["machine_id"], me["boot_id"], me["host"]):
            return False
        start = _proc_start(self.pid)
        return start is None or start != self.proc_start


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def _proc_start(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (``/proc/<pid>/stat`` field 22)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]


def _identity() -> dict[str, str]:
    return {"host": socket.gethostname(), "machine_id": _read("/etc/machine-id"),
            "boot_id": _read("/proc/sys/kernel/random/boot_id")}


# -- cls_lock wire format (the two calls the bindings lack: get_info and break_lock) ----------

def _enc_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<I", len(b)) + b


def _envelope(payload: bytes) -> bytes:
    return struct.pack("<BBI", 1, 1, len(payload)) + payload


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated cls_lock reply")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return int(self.take(1)[0])

    def u32(self) -> int:
        return int(struct.unpack("<I", self.take(4))[0])

    def i64(self) -> int:
        return int(struct.unpack("<q", self.take(8))[0])

    def string(self) -> str:
        return self.take(self.u32()).decode(errors="replace")

    def envelope(self) -> _Reader:
        self.u8(), self.u8()
        return _Reader(self.take(self.u32()))


def _parse_lockers(data: bytes) -> list[tuple[str, int, str, str]]:
    """``cls_lock_get_info_reply`` -> [(entity type name, entity num, cookie, description)]."""
    body = _Reader(data).envelope()
    lockers = []
    for _ in range(body.u32()):
        lid = body.envelope()
        etype, num, cookie = lid.u8(), lid.i64(), lid.string()
        info = body.envelope()
        info.take(8)  # expiration (utime_t)
        description = ""
        try:
            if info.u8() == 1:  # entity_addr_t, new-style encoding
                info.envelope()
                description = info.string()
        except ValueError:
            pass
        kind = "client" if etype == _ENTITY_CLIENT else f"type{etype}"
        lockers.append((kind, num, cookie, description))
    return lockers


class PoolLock:
    """The failback lock of one pool on one site (site A's pool by convention).

    Args:
        site: the connected site holding the lock object.
        pool: the pool.
        purpose: what the holder does, shown to whoever is refused.
    """

    def __init__(self, site: CephSite, pool: str, purpose: str = "failback") -> None:
        self.site = site
        self.pool = pool
        self.purpose = purpose
        self._held: Holder | None = None

    def __repr__(self) -> str:
        return (f"PoolLock({self.site.name!r}, pool={self.pool!r}, "
                f"{'held' if self._held else 'not held'} by this process)")

    @property
    def held(self) -> Holder | None:
        """The holder record if this object holds the lock."""
        return self._held

    def _error(self, exc: BaseException, what: str) -> CephError:
        return map_ceph_error(exc, f"{what} ({LOCK_OBJECT})", site=self.site.name,
                              pool=self.pool)

    def holder(self) -> Holder | None:
        """Who holds the lock now (``None`` if nobody)."""
        rados, _ = import_bindings()
        with self.site.ioctx(self.pool) as ioctx:
            try:
                ret, out = ioctx.execute(LOCK_OBJECT, "lock", "get_info",
                                         _envelope(_enc_str(_LOCK_NAME)), 65536)
            except rados.ObjectNotFound:
                return None
            except rados.Error as exc:
                raise self._error(exc, "reading the failback lock") from exc
        lockers = _parse_lockers(bytes(out)[:ret] if ret > 0 else bytes(out))
        if not lockers:
            return None
        kind, num, cookie, description = lockers[0]
        try:
            fields: dict[str, Any] = json.loads(description)
            fields.pop("locker", None)
            return Holder(**fields, locker=f"{kind}.{num}")
        except (ValueError, TypeError):
            return Holder("", 0, "", "unknown (not taken by ceph_failback)", "unknown", cookie,
                          locker=f"{kind}.{num}")

    def acquire(self) -> Holder:
        """Take the lock, or raise :class:`LockedError` naming the holder and its start time.

        A holder that is provably dead (same machine and boot, process gone) is broken first
        and logged; any other holder must be broken explicitly with :meth:`break_`.
        """
        if self._held is not None:
            return self._held
        rados, _ = import_bindings()
        me = _identity()
        holder = Holder(me["host"], os.getpid(), getpass.getuser(), self.purpose,
                        datetime.now(UTC).isoformat(timespec="seconds"), uuid.uuid4().hex,
                        machine_id=me["machine_id"], boot_id=me["boot_id"],
                        proc_start=_proc_start(os.getpid()) or "")
        for attempt in (1, 2):
            with self.site.ioctx(self.pool) as ioctx:
                try:
                    ioctx.lock_exclusive(LOCK_OBJECT, _LOCK_NAME, holder.cookie,
                                         desc=holder.describe())
                    self._held = holder
                    log.info("took the failback lock of pool %s on %s", self.pool,
                             self.site.name)
                    return holder
                except (rados.ObjectBusy, rados.ObjectExists) as exc:
                    busy: BaseException = exc
                except rados.Error as exc:
                    raise self._error(exc, "taking the failback lock") from exc
            current = self.holder()
            if current is not None and attempt == 1 and current.is_provably_dead():
                log.warning("breaking the failback lock of pool %s on %s: its holder %s is "
                            "dead (same machine, process gone)", self.pool, self.site.name,
                            current)
                self.break_(current)
                continue
            break
        raise LockedError(
            f"another failback holds the lock of this pool: {current or 'unknown holder'}",
            site=self.site.name, pool=self.pool,
            hint="wait for it to finish; if that run is dead (its machine lost), break the lock "
                 "explicitly: `ceph-failback unlock` shows its cookie, then `ceph-failback "
                 f"unlock --yes --cookie {current.cookie if current else 'COOKIE'}` (API: "
                 "Failback.break_locks(Failback.lock_holders()))",
        ) from busy

    def release(self) -> None:
        """Release the lock if this object holds it (idempotent; a lock broken meanwhile is
        not an error)."""
        if self._held is None:
            return
        rados, _ = import_bindings()
        cookie, self._held = self._held.cookie, None
        try:
            with self.site.ioctx(self.pool) as ioctx:
                ioctx.unlock(LOCK_OBJECT, _LOCK_NAME, cookie)
        except rados.ObjectNotFound:
            log.warning("the failback lock of pool %s on %s was broken while held",
                        self.pool, self.site.name)
        except rados.Error as exc:
            raise self._error(exc, "releasing the failback lock") from exc

    def break_(self, expected: Holder | None = None) -> Holder | None:
        """Break the lock, whoever holds it. With ``expected``, break it only if that holder
        (same cookie) still holds it. Returns the holder that was broken, or ``None``."""
        rados, _ = import_bindings()
        current = self.holder()
        if current is None or (expected is not None and current.cookie != expected.cookie):
            return None
        kind, _, num = current.locker.partition(".")
        if kind != "client":
            raise LockedError(f"the failback lock is held by {current.locker}, not a client",
                              site=self.site.name, pool=self.pool)
        op = _envelope(_enc_str(_LOCK_NAME) + struct.pack("<Bq", _ENTITY_CLIENT, int(num))
                       + _enc_str(current.cookie))
        with self.site.ioctx(self.pool) as ioctx:
            try:
                ioctx.execute(LOCK_OBJECT, "lock", "break_lock", op)
            except rados.ObjectNotFound:
                return None
            except rados.Error as exc:
                raise self._error(exc, "breaking the failback lock") from exc
        log.warning("broke the failback lock of pool %s on %s held by %s", self.pool,
                    self.site.name, current)
        return current
