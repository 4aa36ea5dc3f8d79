"""The append-only journal of a failback: one JSON object per line, one line per action.

Every change the orchestrator makes is written down *before* it is made (``intent``) and *after*
(``done`` or ``failed``), with the state seen before and after. A failback interrupted anywhere
(Ctrl-C, SIGKILL, a lost site) can then be resumed by a new process: each step checks the present
state first, and the journal tells it the facts the state cannot show (a resync already requested,
a terminate already sent, an image already proven to replay from site B, when each VM went down).

Lines are flushed and fsynced one by one. A torn last line (a crash mid-write) is skipped on read
and cut off before the next record is appended; any other line that is not a record makes the
journal untrustworthy (:class:`~ceph_failback.errors.JournalError`).

While a failback holds the pool's lock, the journal is attached to its copy in Ceph
(:meth:`Journal.attach`, :mod:`~ceph_failback.ceph.journal_copy`): each record also goes to the
copy, and attaching brings the file and the copy level, so that a failback can be resumed from
another machine or directory.
Secrets never reach the journal: records hold names, ids, states and timestamps only.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FailbackError, JournalError

if TYPE_CHECKING:
    from ..ceph.seams import JournalCopySide

log = logging.getLogger(__name__)

__all__ = ["Journal", "Record", "Synced"]


@dataclass(frozen=True)
class Record:
    """One journal line.

    Attributes:
        ts: when it was written (UTC, ISO 8601).
        run: the id of the process run that wrote it (a resumed failback has several).
        step: the documented step (``demote_a``, ``resync_a``, ``terminate_b``, ``demote_b``,
            ``promote_a``, ``resume_a``) or ``run`` for run-level records.
        event: ``intent``, ``done``, ``failed``, ``skipped``, ``observed``, ``started``,
            ``finished``.
        target: what it is about (``image:one-3``, ``vm:site-b:12``), or empty.
        data: details: states before/after, reasons, timings.
    """

    ts: str
    run: str
    step: str
    event: str
    target: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> float:
        """``ts`` as epoch seconds."""
        return datetime.fromisoformat(self.ts).timestamp()


@dataclass(frozen=True)
class Synced:
    """What :meth:`Journal.attach` did to bring the file and its copy in Ceph level.

    Attributes:
        copy: where the copy is (for messages).
        adopted: records the copy held and the file did not (written elsewhere), now in the file.
        copied: records the file held and the copy did not, now appended to the copy.
    """

    copy: str
    adopted: int = 0
    copied: int = 0


class Journal:
    """An append-only JSON-lines journal at ``path`` (created on first write).

    Thread-safe: the orchestrator's workers append concurrently.
    """

    def __init__(self, path: str | os.PathLike[str], *, run: str | None = None) -> None:
        self.path = Path(path)
        self.run = run or f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{os.getpid()}"
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._by_target: dict[str, list[Record]] = {}
        self._torn_at: int | None = None
        self._read_size = 0
        self._needs_newline = False
        self._copy: JournalCopySide | None = None
        self._index(list(self._read()))

    def __repr__(self) -> str:
        return f"Journal({str(self.path)!r}, records={len(self._records)})"

    def _read(self) -> Iterator[Record]:
        """The records of the file. A torn last line (a crash mid-write) is skipped and noted
        in :attr:`_torn_at` so that the next write cuts it off first; any other line that is not
        a record is a :class:`~ceph_failback.errors.JournalError`."""
        self._torn_at = None
        self._needs_newline = False
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        *complete, tail = data.split(b"\n")
        self._read_size = len(data)
        for number, raw in enumerate(complete, 1):
            if not raw.strip():
                continue
            record = _parse(raw) or self._glued(raw, number)
            if record is None:
                raise JournalError(
                    f"journal {self.path}: line {number} is not a journal record (only a torn "
                    "last line, left by a crash, is skipped): the file was edited or damaged",
                    hint="restore the journal from a copy; do not run a failback on a journal "
                         "whose records cannot be trusted")
            yield record
        if tail.strip():
            record = _parse(tail)
            if record is None:
                self._torn_at = len(data) - len(tail)  # cut off before the next write
            else:
                self._needs_newline = True  # complete, only its newline was not written
                yield record

    def _glued(self, raw: bytes, number: int) -> Record | None:
        """A complete record glued onto a torn one: what versions before 2026-12 wrote after a
        crash mid-write (they appended to the torn line). The complete record is kept; the torn
        one is lost (an intent, perhaps), which is said once."""
        start = raw.rfind(_RECORD_START)
        if start <= 0:
            return None
        record = _parse(raw[start:])
        if record is not None:
            log.warning("journal %s: line %d holds a torn record (a crash mid-write) followed "
                        "by a complete one: the complete one is kept, the torn one is lost",
                        self.path, number)
        return record

    def reload(self) -> None:
        """Read the file again (another process may have appended to it)."""
        with self._lock:
            self._index(list(self._read()))

    def attach(self, copy: JournalCopySide) -> Synced:
        """Bring the file and its copy in Ceph level (:meth:`sync`), then append every later
        record to both (until :meth:`detach`). Called when a failback takes the pool's lock."""
        with self._lock:
            synced = self._sync(copy, push=True)
            self._copy = copy
            return synced

    def sync(self, copy: JournalCopySide, *, push: bool = True) -> Synced:
        """Bring the file and its copy in Ceph level (with ``push=False``: only add the copy's
        records to the file, never write the copy: for a reader that does not hold the lock).

        Records are compared whole (each line is unique: its time, run, step and target). The
        copy's records the file lacks (written on another machine or in another directory) are
        added to the file, which is then rewritten in the copy's order, atomically; the file's
        records the copy lacks (written while no copy was attached: a lock broken by hand, a
        failed append) are appended to the copy. Nothing is dropped either way.

        Raises:
            JournalError: the copy holds a line that is not a record, or cannot be read or
                written (site A's pool; the cause is chained). Nothing is changed then.
        """
        with self._lock:
            return self._sync(copy, push=push)

    def _sync(self, copy: JournalCopySide, *, push: bool) -> Synced:
        """:meth:`sync` (the journal's lock held)."""
        try:
            raw = copy.read()
        except FailbackError as exc:
            raise JournalError(f"cannot read the journal's copy, {copy.describe()}: {exc}",
                               hint="check site A's cluster and the client's caps on the "
                                    "pool; nothing was changed") from exc
        theirs = _lines(raw, copy.describe())
        mine = [_line(r) for r in self._read()]
        known_mine, known_theirs = set(mine), set(theirs)
        adopted = [line for line in theirs if line not in known_mine]
        copied = [line for line in mine if line not in known_theirs]
        if adopted and copied:
            log.warning("journal %s and its copy (%s) each hold records the other lacks "
                        "(%d and %d): both are kept, the copy's first", self.path,
                        copy.describe(), len(copied), len(adopted))
        if copied and push:
            try:
                copy.append(b"".join(line.encode() + b"\n" for line in copied))
            except FailbackError as exc:
                raise JournalError(
                    f"cannot write the journal's copy, {copy.describe()}: {exc}",
                    hint="check site A's cluster and the client's caps on the pool; "
                         "nothing was changed") from exc
        if adopted:
            self._rewrite([*theirs, *copied])
        self._index(list(self._read()))
        return Synced(copy.describe(), len(adopted), len(copied) if push else 0)

    def detach(self) -> None:
        """Stop appending to the copy (the lock is released next)."""
        with self._lock:
            self._copy = None

    def _rewrite(self, lines: list[str]) -> None:
        """Replace the file by ``lines``, atomically (a crash leaves the old or the new)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _index(self, records: list[Record]) -> None:
        # Records by target too: the orchestrator asks about one target at a time, and a large
        # failback's journal holds thousands of records.
        self._records = records
        self._by_target = {}
        for r in records:
            self._by_target.setdefault(r.target, []).append(r)

    def write(self, step: str, event: str, target: str = "", **data: Any) -> Record:
        """Append one record and make it durable before returning."""
        record = Record(datetime.now(UTC).isoformat(timespec="microseconds"), self.run, step,
                        event, target, _jsonable(data))
        line = _line(record)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                if self._torn_at is not None and os.fstat(fh.fileno()).st_size != self._read_size:
                    # Someone wrote since the torn line was seen (and may have cut it off):
                    # read again rather than cut at a stale offset.
                    self._index(list(self._read()))
                if self._torn_at is not None:
                    # A crash left half a line: appending to it would glue this record onto
                    # it, and both would be lost to every later read.
                    fh.truncate(self._torn_at)
                    self._torn_at = None
                elif self._needs_newline:
                    fh.write("\n")
                self._needs_newline = False
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._records.append(record)
            self._by_target.setdefault(target, []).append(record)
            if self._copy is not None:
                try:
                    self._copy.append(line.encode() + b"\n")
                except FailbackError as exc:
                    # The file holds the record; the next attach copies it over.
                    raise JournalError(
                        f"the journal's record was written to {self.path} but not to its copy, "
                        f"{self._copy.describe()}: {exc}",
                        hint="check site A's cluster; the next run or resume brings the copy "
                             "level") from exc
        return record

    @property
    def records(self) -> list[Record]:
        """Every record, oldest first (this run's and earlier runs')."""
        with self._lock:
            return list(self._records)

    def find(self, *, step: str | None = None, event: str | None = None,
             target: str | None = None) -> list[Record]:
        """Records matching every given field, oldest first."""
        with self._lock:
            pool = self._records if target is None else self._by_target.get(target, [])
            return [r for r in pool
                    if (step is None or r.step == step) and (event is None or r.event == event)
                    and (target is None or r.target == target)]

    def last(self, *, step: str | None = None, event: str | None = None,
             target: str | None = None) -> Record | None:
        """The newest record matching, if any."""
        found = self.find(step=step, event=event, target=target)
        return found[-1] if found else None

    def has(self, *, step: str, event: str, target: str) -> bool:
        """Whether such a record exists (from any run)."""
        return self.last(step=step, event=event, target=target) is not None

    def runs(self) -> list[str]:
        """The run ids in order of first appearance."""
        return list(dict.fromkeys(r.run for r in self.records))


def _line(record: Record) -> str:
    """A record's line (without its newline): the same for the same record, wherever it is."""
    return json.dumps({"ts": record.ts, "run": record.run, "step": record.step,
                       "event": record.event, "target": record.target, "data": record.data},
                      sort_keys=True)


def _lines(raw: bytes, where: str) -> list[str]:
    """The records of a copy as lines (a copy only ever holds whole lines)."""
    lines = []
    for number, text in enumerate(raw.split(b"\n"), 1):
        if not text.strip():
            continue
        record = _parse(text)
        if record is None:
            raise JournalError(f"the journal's copy, {where}: line {number} is not a journal "
                               "record: the object was edited or damaged",
                               hint="remove or repair the object (rados rm), then run again: "
                                    "the journal file is copied over")
        lines.append(_line(record))
    return lines


#: How every record's line starts (``json.dumps(..., sort_keys=True)``: ``data`` comes first).
_RECORD_START = b'{"data": '


def _parse(raw: bytes) -> Record | None:
    """One line as a record, ``None`` if it is not one."""
    try:
        obj = json.loads(raw)
        return Record(obj["ts"], obj["run"], obj["step"], obj["event"], obj.get("target", ""),
                      obj.get("data", {}))
    except (ValueError, KeyError, TypeError):
        return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
