"""The journal's copy in Ceph (issue 14 item 7): while a failback holds the pool's lock, every
record also goes to an object in site A's pool, and taking the lock brings the file and the
copy level, so that a failback interrupted on one machine is resumed from another."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.ceph.journal_copy import journal_object
from ceph_failback.errors import CephError, JournalError, StepFailedError
from ceph_failback.failback.journal import Journal
from ceph_failback.testing import MemoryWorld
from ceph_failback.testing.lock import MemoryJournalCopy

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld() as w:
        w.add_vm("db", disks=2)
        w.add_vm("web")
        w.disaster("unplanned", new_data=NEW)
        yield w


def copy_of(world: MemoryWorld, name: str = "j.jsonl") -> MemoryJournalCopy:
    return MemoryJournalCopy(world.ceph, "site-a", world.ceph.pool, name)


def events(journal: Journal) -> list[tuple[str, str, str]]:
    return [(r.step, r.event, r.target) for r in journal.records]


def test_attached_records_go_to_the_file_and_the_copy_alike(world: MemoryWorld,
                                                             tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.write("run", "observed", note="before the copy")  # e.g. a lock broken by hand
    copy = copy_of(world)
    synced = journal.attach(copy)
    assert (synced.adopted, synced.copied) == (0, 1)
    journal.write("demote_a", "intent", "image:x")
    journal.detach()
    journal.write("run", "observed", note="after")  # not attached: the file only
    data = (tmp_path / "j.jsonl").read_bytes()
    assert copy.read() == data[:data.rindex(b"\n", 0, len(data) - 1) + 1]
    assert journal.attach(copy).copied == 1  # the next taking copies it over
    assert copy.read() == (tmp_path / "j.jsonl").read_bytes()


def test_another_directory_adopts_the_copy(world: MemoryWorld, tmp_path: Path) -> None:
    first = Journal(tmp_path / "one" / "j.jsonl")
    first.attach(copy_of(world))
    for i in range(3):
        first.write("resync_a", "done", f"image:{i}", n=i)
    second = Journal(tmp_path / "two" / "j.jsonl")
    assert second.records == []
    synced = second.sync(copy_of(world), push=False)
    assert (synced.adopted, synced.copied) == (3, 0)
    assert events(second) == events(first)
    assert (tmp_path / "two" / "j.jsonl").read_bytes() == (tmp_path / "one" / "j.jsonl"
                                                          ).read_bytes()
    assert Journal(tmp_path / "two" / "j.jsonl").records == first.records


def test_records_on_both_sides_only_are_all_kept_the_copys_first(world: MemoryWorld,
                                                                  tmp_path: Path) -> None:
    here = Journal(tmp_path / "here" / "j.jsonl")
    there = Journal(tmp_path / "there" / "j.jsonl")
    there.attach(copy_of(world))
    there.write("demote_a", "done", "image:a")
    here.write("run", "lock-broken", cookie="c1")  # written here while unattached
    synced = here.attach(copy_of(world))
    assert (synced.adopted, synced.copied) == (1, 1)
    assert events(here) == [("demote_a", "done", "image:a"), ("run", "lock-broken", "")]
    assert _lines(copy_of(world).read()) == _lines((tmp_path / "here" / "j.jsonl").read_bytes())


def _lines(data: bytes) -> list[bytes]:
    return [line for line in data.split(b"\n") if line]


def test_a_damaged_copy_is_an_error_and_nothing_changes(world: MemoryWorld,
                                                         tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.write("run", "started")
    before = (tmp_path / "j.jsonl").read_bytes()
    world.ceph.objects[("site-a", journal_object("j.jsonl"))] = b'{"not": "a record"}\n'
    with pytest.raises(JournalError, match="line 1 is not a journal record"):
        journal.attach(copy_of(world))
    assert (tmp_path / "j.jsonl").read_bytes() == before
    journal.write("run", "finished")  # not attached: no copy is written
    assert world.ceph.objects[("site-a", journal_object("j.jsonl"))] == b'{"not": "a record"}\n'


def test_a_failback_resumed_from_another_directory_continues_it(world: MemoryWorld,
                                                                 tmp_path: Path) -> None:
    """Steps 1 and 2 from one directory, the rest from another with the same file name: the
    second resyncs nothing again, and its report holds both runs."""
    first = world.failback(tmp_path / "one" / "failback.jsonl")
    first.demote_site_a()
    first.resync_site_a()
    resyncs = [c for c in world.ceph.calls if c[1] == "resync"]
    assert resyncs
    elsewhere = world.failback(tmp_path / "two" / "failback.jsonl")
    assert elsewhere.ledger.scope() is None
    assert elsewhere.pull_journal().adopted > 0
    assert elsewhere.ledger.scope() is not None
    report = elsewhere.run()
    assert report.complete, report
    assert [c for c in world.ceph.calls if c[1] == "resync"] == resyncs
    assert all(i.demoted_a and i.resynced for i in report.images), report  # the first's
    for image in world.images():
        assert world.ceph.data("site-a", image).endswith(NEW)
    copy = copy_of(world, "failback.jsonl").read()
    assert _lines(copy) == _lines((tmp_path / "two" / "failback.jsonl").read_bytes())
    # Back in the first directory, the whole failback is there once the lock is taken.
    first.journal.attach(copy_of(world, "failback.jsonl"))
    assert first.report().complete


def test_a_copy_that_cannot_be_read_refuses_the_step_and_releases_the_lock(
        world: MemoryWorld, tmp_path: Path) -> None:
    key = ("site-a", journal_object("j.jsonl"))
    world.ceph.object_errors[key] = CephError("Operation not permitted", errno=1, site="site-a")
    fb = world.failback(tmp_path / "j.jsonl")
    with pytest.raises(JournalError, match="cannot read the journal's copy"):
        fb.demote_site_a()
    assert world.ceph.locks == {} and not [c for c in world.ceph.calls if c[1] == "demote"]
    del world.ceph.object_errors[key]
    assert fb.run().complete


def test_a_copy_that_stops_taking_records_stops_the_run_and_is_levelled_later(
        world: MemoryWorld, tmp_path: Path) -> None:
    """The record is in the file (the action it describes is not lost); the run stops at once,
    and the next taking of the lock copies what the copy lacks."""
    key = ("site-a", journal_object("j.jsonl"))
    fb = world.failback(tmp_path / "j.jsonl")
    with pytest.raises((JournalError, StepFailedError)) as info, fb.locked():
        fb.demote_site_a()
        world.ceph.object_errors[key] = CephError("No space left on device", errno=28,
                                                  site="site-a")
        fb.resync_site_a()
    assert not [c for c in world.ceph.calls if c[1] == "resync"]
    assert "not to its copy" in str(info.value) or any(
        "not to its copy" in str(e) for e in getattr(info.value, "failures", {}).values())
    del world.ceph.object_errors[key]
    report = fb.run()
    assert report.complete, report
    resyncs = [c for c in world.ceph.calls if c[1] == "resync"]
    assert sorted(c[2] for c in resyncs) == sorted(world.images())  # each once
    assert _lines(copy_of(world).read()) == _lines((tmp_path / "j.jsonl").read_bytes())
