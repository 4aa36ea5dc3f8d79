"""Downtime not spent on catch-up (issue 14 item 4): a VM is stopped on B only once site A has
nearly caught up with its images, so a backlog is replayed while it still runs; at the limit it
is left running on B."""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import StepFailedError
from ceph_failback.failback import Event, EventKind, waits
from ceph_failback.testing import FAST, MemoryWorld

warnings.filterwarnings("ignore", module="requests")

BACKLOG = 60  # writes on B after the failover that A has not replayed yet
RATE = 2  # entries A replays per tick


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld(replay_rate=RATE) as w:
        w.add_vm("db")
        w.disaster("unplanned", new_data=b"written on B after the failover")
        yield w


def busy_b(world: MemoryWorld) -> None:
    """The VM on B keeps writing: a backlog A replays at ``RATE`` entries per tick."""
    for n in range(BACKLOG):
        world.ceph.write("site-b", world.images()[0], b"w%d" % n)


def lag_when_stopped(world: MemoryWorld) -> tuple[list[int], object]:
    """A listener recording A's true lag (entries) at the moment the VM is stopped on B."""
    lags: list[int] = []

    def listener(ev: Event) -> None:
        if ev.kind is EventKind.VM_STATE and ev.step == "terminate_b" and "terminating" in ev.message:
            image = world.ceph.images[world.images()[0]]
            lags.append(len(image.copies["site-b"].entries) - len(image.copies["site-a"].entries))
    return lags, listener


@pytest.mark.parametrize("catch_up", [10.0, 0.0])
def test_the_backlog_is_replayed_before_the_vm_stops(world: MemoryWorld, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     catch_up: float) -> None:
    monkeypatch.setattr(waits, "CATCH_UP_ENTRIES", 4)
    fb = world.failback(tmp_path / "j.jsonl",
                        timeouts=dataclasses.replace(FAST, catch_up=catch_up))
    fb.demote_site_a()
    fb.resync_site_a()
    busy_b(world)
    lags, listener = lag_when_stopped(world)
    fb.subscribe(listener)
    report = fb.run()
    assert report.complete, report
    assert len(lags) == 1
    if catch_up:
        # The published status lags the copy by up to a status period of replay.
        assert lags[0] <= 4 + world.ceph.status_period * RATE, lags
        (seen,) = fb.journal.find(step="terminate_b", event="observed")
        assert list(seen.data["caught_up"]) == world.images()
    else:  # no gate: the whole backlog is replayed with the VM down
        assert lags[0] >= BACKLOG // 2, lags
        assert not fb.journal.find(step="terminate_b", event="observed")
    assert world.ceph.data("site-a", world.images()[0]) == world.ceph.data("site-b",
                                                                           world.images()[0])


def test_a_vm_a_cannot_catch_up_with_in_time_keeps_running_on_b(
        world: MemoryWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(waits, "CATCH_UP_ENTRIES", 4)
    world.ceph.replay_rate = 0  # A's replay stalls (a slow link, a busy cluster)
    fb = world.failback(tmp_path / "j.jsonl",
                        timeouts=dataclasses.replace(FAST, catch_up=0.2))
    fb.demote_site_a()
    fb.resync_site_a()
    busy_b(world)
    with pytest.raises(StepFailedError) as info:
        fb.terminate_site_b()
    (error,) = info.value.failures.values()
    assert "catch up with the images of vm:site-b:" in error and "still runs" in error
    vm = world.vms[0]
    assert world.oned_b.vm_state(vm.vm_b) == ("ACTIVE", "RUNNING")
    assert not fb.journal.find(step="terminate_b", event="intent")
    # A catches up: the run goes on, the VM is stopped once.
    world.ceph.replay_rate = None
    assert world.failback(tmp_path / "j.jsonl").run().complete


def test_nearly_caught_up_reads_the_entries_behind() -> None:
    from ceph_failback.ceph.status import parse_mirror_status

    def status(behind: int | None, *, up: bool = True, state: int = 4) -> waits.Mirrored:
        positions = "" if behind is None else ", " + json.dumps({
            "entries_behind_primary": behind,
            "non_primary_position": {"entry_tid": 1, "object_number": 0, "tag_tid": 2},
            "primary_position": {"entry_tid": 1 + behind, "object_number": 0, "tag_tid": 2}})
        raw = {"name": "one-1", "info": {"global_id": "g", "state": 1, "primary": False},
               "state": state, "description": "replaying" + positions, "up": up,
               "remote_statuses": []}
        return waits.Mirrored(status=parse_mirror_status(raw, site="site-a", pool="one"))

    assert waits.nearly_caught_up(status(0))
    assert waits.nearly_caught_up(status(waits.CATCH_UP_ENTRIES))
    assert not waits.nearly_caught_up(status(waits.CATCH_UP_ENTRIES + 1))
    assert not waits.nearly_caught_up(status(0, up=False))  # nobody replays
    assert not waits.nearly_caught_up(status(None))  # no positions reported yet
    assert not waits.nearly_caught_up(waits.Mirrored())
