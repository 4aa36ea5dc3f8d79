"""The in-memory model of journal-based mirroring behaves as the lab's real daemons do (each case
below is one the lab showed; see tests/lab/test_ceph_adapter.py and tests/lab/test_failback.py
for the same facts on real Ceph)."""

from __future__ import annotations

import pytest

from ceph_failback.errors import ImageNotFoundError, NotReadyError
from ceph_failback.testing import MemoryCeph

A, B = "site-a", "site-b"


@pytest.fixture
def ceph() -> MemoryCeph:
    model = MemoryCeph((A, B), "one", status_period=3, resync_ticks=2, auto_tick=False)
    model.create_image("one-1", data=b"old")
    return model


def status(ceph: MemoryCeph, site: str):
    return ceph.site(site).mirror_pool("one").status("one-1")


def test_the_stale_promote_trap(ceph: MemoryCeph) -> None:
    # DR test flip: demote A, B promotes once it replayed the demotion, B writes.
    ceph.demote(A, "one-1")
    with pytest.raises(NotReadyError):
        ceph.promote(B, "one-1")  # B has not replayed A's demotion yet: EBUSY
    ceph.tick()
    ceph.promote(B, "one-1")
    ceph.write(B, "one-1", b"new")
    # A has not replayed B's promotion: its last event is its own demotion (an orphan), and
    # plain librbd promotes it at once, not forced, with the old data.
    ceph.demote(B, "one-1")
    ceph.promote(A, "one-1")
    assert ceph.data(A, "one-1") == b"old"


def test_a_copy_replaying_from_the_primary_refuses_a_non_forced_promote(ceph: MemoryCeph) -> None:
    ceph.write(A, "one-1", b"more")
    ceph.tick()
    with pytest.raises(NotReadyError):
        ceph.promote(B, "one-1")
    ceph.demote(A, "one-1")
    ceph.tick()  # B replays the demotion: now it may be promoted, with every write
    ceph.promote(B, "one-1")
    assert ceph.data(B, "one-1") == b"more"


def test_unplanned_failover_then_demote_a_is_split_brain_and_resync_repairs_it(
        ceph: MemoryCeph) -> None:
    ceph.promote(B, "one-1", force=True)
    ceph.write(B, "one-1", b"new")
    ceph.demote(A, "one-1")
    ceph.tick()
    assert status(ceph, A).is_split_brain()
    ceph.resync(A, "one-1")
    ceph.tick()
    pool_a = ceph.site(A).mirror_pool("one")
    assert "one-1" not in pool_a.images()  # recreated: out of every listing for a while
    with pytest.raises(ImageNotFoundError):
        pool_a.status("one-1")
    ceph.tick(4)
    s = status(ceph, A)
    assert s.local.is_replaying() and not s.is_split_brain()
    assert ceph.data(A, "one-1") == b"new"


def test_replay_positions_lag_the_replay(ceph: MemoryCeph) -> None:
    ceph.demote(A, "one-1")
    ceph.tick()
    ceph.promote(B, "one-1")
    ceph.write(B, "one-1", b"new")
    ceph.tick()  # A starts replaying B: "replaying", from where it started (its own epoch)
    first = status(ceph, A)
    assert first.local.is_replaying() and first.local.replay is not None
    assert not first.local.replay.in_primary_epoch()
    ceph.tick(3)  # the periodic update shows where the replay got to
    later = status(ceph, A)
    assert later.local.replay is not None and later.local.replay.in_primary_epoch()
    assert later.is_caught_up()


def test_a_stopped_daemon_reports_nothing_and_replays_nothing(ceph: MemoryCeph) -> None:
    ceph.stop_daemon(B)
    ceph.write(A, "one-1", b"new")
    ceph.tick(5)
    assert not status(ceph, B).local.up
    assert ceph.data(B, "one-1") == b"old"
    assert not ceph.site(B).mirror_pool("one").daemon_health()[0].healthy
    ceph.start_daemon(B)
    ceph.tick()
    assert ceph.data(B, "one-1") == b"new"
