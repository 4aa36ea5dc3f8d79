"""The append-only journal of a failback: one JSON object per line, one line per action.

Every change the orchestrator makes is written down *before* it is made (``intent``) and *after*
(``done`` or ``failed``), with the state seen before and after. A failback interrupted anywhere
(Ctrl-C, SIGKILL, a lost site) can then be resumed by a new process: each step checks the present
state first, and the journal tells it the facts the state cannot show (a resync already requested,
a terminate already sent, an image already proven to replay from site B, when each VM went down).

Lines are flushed and fsynced one by one. A torn last line (a crash mid-write) is skipped on read
and cut off before the next record is appended; any other line that is not a record makes the
journal untrustworthy (:class:`~ceph_failback.errors.JournalError`).
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
from typing import Any

from ..errors import JournalError

log = logging.getLogger(__name__)

__all__ = ["Journal", "Record"]


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
        line = json.dumps({"ts": record.ts, "run": record.run, "step": step, "event": event,
                           "target": target, "data": record.data}, sort_keys=True)
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
