"""Waits as data: a Waiter's acceptors decide per target, a terminal failure ends the wait at once
with what was last seen of each target, and side effects happen outside the judge."""

from __future__ import annotations

import pytest

from ceph_failback.errors import WaitFailedError, WaitTimeoutError
from ceph_failback.failback import waits
from ceph_failback.waiting import Acceptor, Verdict, Waiter

COUNT: Waiter[int] = Waiter(
    "count", "the counters to reach 3",
    (Acceptor(Verdict.FAIL, lambda n: n < 0, "went negative"),
     Acceptor(Verdict.DONE, lambda n: n >= 3, "reached 3")),
    limit="mirror", describe=lambda n: f"at {n}")


def test_each_target_ends_on_its_own_and_on_done_runs_once_per_target() -> None:
    counters = {"a": 0, "b": 2}
    asked: list[list[str]] = []
    done: list[str] = []

    def observe(pending: list[str]) -> dict[str, int]:
        asked.append(list(pending))
        for name in pending:
            counters[name] += 1
        return {n: counters[n] for n in pending}

    decided = COUNT.run(["a", "b"], observe, timeout=5, interval=0.001,
                        on_done=lambda t, n, acc: done.append(t), sleep=lambda _: None)
    assert done == ["b", "a"] and asked[0] == ["a", "b"] and asked[-1] == ["a"]
    assert {t: a.reason for t, a in decided.items() if a} == {"a": "reached 3", "b": "reached 3"}


def test_a_terminal_failure_ends_the_wait_at_once_naming_the_target() -> None:
    calls = []

    def observe(pending: list[str]) -> dict[str, int]:
        calls.append(1)
        return {"a": 1, "b": -1}

    with pytest.raises(WaitFailedError) as info:
        COUNT.run(["a", "b"], observe, timeout=60, interval=0.001, where={"site": "site-a"})
    assert len(calls) == 1
    assert "b: went negative" in str(info.value) and "a: at 1" in str(info.value)
    assert info.value.site == "site-a"


def test_a_timeout_says_what_was_last_seen_of_each_target_or_that_it_was_missing() -> None:
    with pytest.raises(WaitTimeoutError) as info:
        COUNT.run(["a", "b"], lambda pending: {"a": 1}, timeout=0.05, interval=0.01,
                  missing="not listed")
    assert info.value.last_seen == {"a": "at 1", "b": "not listed"}


def test_a_wait_that_need_not_finish_returns_the_undecided() -> None:
    settle = Waiter("settle", "a decision", COUNT.acceptors, limit="settle",
                    describe=str, must_finish=False)
    decided = settle.run(["a", "b"], lambda pending: {"a": 3, "b": 0}, timeout=0.05,
                         interval=0.01)
    assert decided["a"] is not None and decided["b"] is None


def test_every_failback_wait_names_a_timeouts_field() -> None:
    from ceph_failback.failback import Timeouts

    for waiter in (waits.REPLAY_PROOF, waits.RESYNCED, waits.MIRRORED, waits.WRITER_RELEASED,
                   waits.DEMOTION_COPIED):
        assert hasattr(Timeouts(), waiter.limit), waiter.name
        assert waiter.acceptors and any(a.verdict is Verdict.DONE for a in waiter.acceptors)


def _snap(primary_snap_id: int, *, complete: bool = True, source: str = "uuid-b",
          sid: int = 1):  # type: ignore[no-untyped-def]
    from ceph_failback.ceph.mirror import MirrorSnapshot

    return MirrorSnapshot(sid, f".mirror.non_primary.{sid}", "non-primary", complete, source,
                          primary_snap_id, (), None)


def test_a_snapshot_schedule_firing_after_ours_still_counts_as_mirrored() -> None:
    # Issue 14 item 5: a schedule on B takes a newer mirror snapshot than the one step 3 took
    # after the VM stopped; A syncs that one (holding every write ours holds), not ours.
    def seen(*snaps):  # type: ignore[no-untyped-def]
        return waits.Mirrored(snapshots=tuple(snaps), expected=10, source="uuid-b",
                              snapshot_mode=True)

    assert seen(_snap(10)).copied()
    assert seen(_snap(12)).copied()  # the schedule's, newer than ours, complete
    assert seen(_snap(10, sid=1), _snap(12, complete=False, sid=2)).copied()  # ours complete
    assert not seen(_snap(12, complete=False)).copied()  # still copying
    assert not seen(_snap(9)).copied()  # older than ours: writes before the stop only
    assert not seen(_snap(12, source="uuid-other")).copied()  # not B's
    assert not seen().copied()
