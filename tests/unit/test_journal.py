"""The journal under faults: a torn last line is skipped and cut off before the next record (so
that record is not glued onto it and lost); any other line that is not a record is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceph_failback.errors import ConfigurationError, JournalError
from ceph_failback.failback.journal import Journal

TORN = '{"ts": "2026-12-02T10:00:00+00:00", "run": "r1", "step": "resync_a", "eve'


def events(path: Path) -> list[tuple[str, str, str]]:
    return [(r.step, r.event, r.target) for r in Journal(path).records]


def test_a_torn_last_line_is_skipped_and_cut_off_before_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).write("resync_a", "done", "image:one-1")
    with open(path, "a") as fh:
        fh.write(TORN)  # the process died mid-write
    journal = Journal(path)
    assert [r.target for r in journal.records] == ["image:one-1"]
    journal.write("resync_a", "intent", "image:one-2")
    assert events(path) == [("resync_a", "done", "image:one-1"),
                            ("resync_a", "intent", "image:one-2")]
    assert TORN not in path.read_text()


def test_a_last_record_whose_newline_was_lost_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal(path).write("demote_a", "done", "image:one-1")
    path.write_text(path.read_text().rstrip("\n"))
    journal = Journal(path)
    assert len(journal.records) == 1
    journal.write("demote_a", "done", "image:one-2")
    assert [t for _, _, t in events(path)] == ["image:one-1", "image:one-2"]


def test_a_damaged_line_before_the_last_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal(path)
    journal.write("demote_a", "intent", "image:one-1")
    journal.write("demote_a", "done", "image:one-1")
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "garbage", lines[1]]) + "\n")
    with pytest.raises(JournalError) as info:
        Journal(path)
    assert "line 2" in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_a_journal_written_before_the_ledger_reads_the_same(tmp_path: Path) -> None:
    # Lines as the orchestrator wrote them before the ledger existed (same Journal, same names):
    # the typed view must find the same facts in them.
    from ceph_failback.failback.ledger import Ledger

    lines = [
        '{"data": {}, "event": "started", "run": "r1", "step": "resync_a", "target": "", '
        '"ts": "2026-11-30T10:00:00.000000+00:00"}',
        '{"data": {}, "event": "intent", "run": "r1", "step": "resync_a", '
        '"target": "image:one-1", "ts": "2026-11-30T10:00:01.000000+00:00"}',
        '{"data": {"reason": "resync requested on A"}, "event": "done", "run": "r1", '
        '"step": "resync_a", "target": "image:one-1", "ts": "2026-11-30T10:00:02.000000+00:00"}',
        '{"data": {"proof": "resynced from B"}, "event": "observed", "run": "r1", '
        '"step": "resync_a", "target": "image:one-1", "ts": "2026-11-30T10:00:40.000000+00:00"}',
        '{"data": {"state": "ACTIVE/RUNNING"}, "event": "intent", "run": "r1", '
        '"step": "terminate_b", "target": "vm:site-b:3", "ts": "2026-11-30T10:00:41.000000+00:00"}',
        '{"data": {"images": ["one-1"]}, "event": "mirrored", "run": "r1", "step": "terminate_b", '
        '"target": "vm:site-b:3", "ts": "2026-11-30T10:00:50.000000+00:00"}',
        '{"data": {"watchers": []}, "event": "intent", "run": "r1", "step": "demote_b", '
        '"target": "image:one-1", "ts": "2026-11-30T10:00:51.000000+00:00"}',
    ]
    path = tmp_path / "old.jsonl"
    path.write_text("\n".join(lines) + "\n")
    ledger = Ledger(Journal(path))
    image = ledger.image("one-1")
    assert image.resync_requested_at is not None and image.proven and not image.resync_interrupted
    assert image.demote_b_attempted and not image.demoted_a and image.promoted_at is None
    vm = ledger.vm("site-b", 3)
    assert vm.terminate_attempted and vm.mirrored and not vm.resume_attempted
    assert not ledger.image("one-2").proven


def test_a_record_glued_onto_a_torn_one_by_an_earlier_version_is_kept(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Before the torn line was cut off, the next record was appended to it: one line holding
    # the torn record and a complete one. The complete one is kept, and the loss is said.
    path = tmp_path / "j.jsonl"
    Journal(path).write("resync_a", "done", "image:one-1")
    with open(path, "a") as fh:
        fh.write(TORN)
    with open(path, "a") as fh:  # what the earlier version's next write did
        fh.write(Journal(tmp_path / "other.jsonl").write("resync_a", "intent", "image:one-2")
                 and (tmp_path / "other.jsonl").read_text())
    Journal(path).write("demote_b", "done", "image:one-1")
    assert events(path) == [("resync_a", "done", "image:one-1"),
                            ("resync_a", "intent", "image:one-2"),
                            ("demote_b", "done", "image:one-1")]
    assert any("torn record" in r.getMessage() and "line 2" in r.getMessage()
               for r in caplog.records)


def test_a_torn_line_cut_off_by_someone_else_is_not_cut_again(tmp_path: Path) -> None:
    # Two writers of one journal (a run, and break_lock from another process): the second must
    # not truncate at an offset it read before the first appended.
    path = tmp_path / "j.jsonl"
    Journal(path).write("resync_a", "done", "image:one-1")
    with open(path, "a") as fh:
        fh.write(TORN)
    first, second = Journal(path), Journal(path)
    first.write("run", "lock-broken")
    first.write("resync_a", "intent", "image:one-2")
    second.write("run", "locked")
    assert events(path) == [("resync_a", "done", "image:one-1"), ("run", "lock-broken", ""),
                            ("resync_a", "intent", "image:one-2"), ("run", "locked", "")]
