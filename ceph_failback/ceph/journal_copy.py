"""A copy of a failback's journal in Ceph: one RADOS object in site A's pool, beside the lock.

The journal file is the record a failback works from; a second machine (or another working
directory) with the same configuration has no such file. While a failback holds the pool's lock,
every record it writes is also appended to the object ``ceph_failback.journal.<file name>``, and
taking the lock brings the file and the object level (see
:meth:`~ceph_failback.failback.journal.Journal.attach`). ``resume`` then works from anywhere
that can reach site A, with the same configuration (the journal's file name is part of the
object's name: the default name is derived from the sites and the pool).

A RADOS append is atomic: the object only ever holds whole lines. It needs the same OSD caps as
the lock (``profile rbd`` on the pool: object reads and writes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import CephError
from .bindings import import_bindings, map_ceph_error

if TYPE_CHECKING:
    from .connection import CephSite

__all__ = ["JOURNAL_OBJECT_PREFIX", "journal_object", "RadosJournalCopy"]

#: The objects' names start with this; the journal file's name follows.
JOURNAL_OBJECT_PREFIX = "ceph_failback.journal."


def journal_object(name: str) -> str:
    """The object that holds the copy of the journal file called ``name``."""
    return JOURNAL_OBJECT_PREFIX + name


class RadosJournalCopy:
    """The copy of one journal in a RADOS object of ``pool`` on ``site`` (a
    :class:`~ceph_failback.ceph.seams.JournalCopySide`)."""

    def __init__(self, site: CephSite, pool: str, name: str) -> None:
        self.site = site
        self.pool = pool
        self.object = journal_object(name)

    def __repr__(self) -> str:
        return f"RadosJournalCopy({self.site.name!r}, {self.pool!r}, {self.object!r})"

    def describe(self) -> str:
        """Where it is, for messages."""
        return f"object {self.object!r} in pool {self.pool!r} on {self.site.name}"

    def _error(self, exc: BaseException, what: str) -> CephError:
        return map_ceph_error(exc, f"{what} the journal's copy ({self.object})",
                              site=self.site.name, pool=self.pool)

    def read(self) -> bytes:
        """The whole copy (empty when there is none yet)."""
        rados, _ = import_bindings()
        with self.site.ioctx(self.pool) as ioctx:
            try:
                size, _ = ioctx.stat(self.object)
                data = b""
                while len(data) < size:  # an OSD may return less than asked
                    chunk = ioctx.read(self.object, size - len(data), len(data))
                    if not chunk:
                        break
                    data += chunk
                return data
            except rados.ObjectNotFound:
                return b""
            except rados.Error as exc:
                raise self._error(exc, "reading") from exc

    def append(self, data: bytes) -> None:
        """Append ``data`` (whole lines) in one atomic RADOS append."""
        rados, _ = import_bindings()
        with self.site.ioctx(self.pool) as ioctx:
            try:
                ioctx.append(self.object, data)
            except rados.Error as exc:
                raise self._error(exc, "appending to") from exc
