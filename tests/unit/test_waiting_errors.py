"""The generic wait and the error hierarchy."""

from __future__ import annotations

import pickle

import pytest

from ceph_failback.errors import (
    CephError,
    FailbackError,
    NotReadyError,
    WaitFailedError,
    WaitTimeoutError,
)
from ceph_failback.waiting import Judgement, Verdict, wait_until


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_wait_returns_the_first_done_observation(monkeypatch: pytest.MonkeyPatch) -> None:
    values = iter([1, 2, 3, 4])
    seen = []
    result = wait_until(
        lambda: next(values),
        lambda v: Judgement(Verdict.DONE if v == 3 else Verdict.RETRY, f"v={v}"),
        what="three", timeout=10, interval=0.001,
        on_observation=lambda v, j: seen.append((v, j.verdict)),
    )
    assert result == 3
    assert seen == [(1, Verdict.RETRY), (2, Verdict.RETRY), (3, Verdict.DONE)]


def test_wait_fails_early_on_a_terminal_observation() -> None:
    calls = []

    def observe() -> str:
        calls.append(1)
        return "split-brain"

    with pytest.raises(WaitFailedError) as info:
        wait_until(observe, lambda v: Judgement(Verdict.FAIL, "split-brain detected"),
                   what="image one-1 to replay", timeout=100, interval=1,
                   describe=lambda v: {"one-1": v}, where={"site": "site-a", "image": "one-1"})
    assert len(calls) == 1
    text = str(info.value)
    assert "site 'site-a'" in text and "one-1" in text and "split-brain detected" in text


def test_wait_timeout_says_what_was_last_seen() -> None:
    import time as _time

    start = _time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        wait_until(lambda: "up+syncing 40%", lambda v: Judgement(Verdict.RETRY, "still syncing"),
                   what="resync of one-7", timeout=0.3, interval=0.05,
                   describe=lambda v: {"one-7": v}, hint="run resume later",
                   where={"site": "site-a", "pool": "one"})
    assert _time.monotonic() - start < 2
    err = info.value
    assert err.last_seen == {"one-7": "up+syncing 40%"}
    assert "timed out after 0.3s waiting for resync of one-7" in str(err)
    assert "run resume later" in str(err) and "pool 'one'" in str(err)


def test_wait_retries_listed_exceptions_and_reports_them() -> None:
    with pytest.raises(WaitTimeoutError) as info:
        wait_until(lambda: (_ for _ in ()).throw(NotReadyError("not yet", site="site-a")),
                   lambda v: Judgement(Verdict.DONE), what="promote", timeout=0.2, interval=0.05,
                   retry_on=(NotReadyError,))
    assert "not yet" in str(info.value)


def test_wait_does_not_swallow_other_exceptions() -> None:
    with pytest.raises(ZeroDivisionError):
        wait_until(lambda: 1 / 0, lambda v: Judgement(Verdict.DONE), what="x", timeout=1)


def test_errors_name_the_place_and_survive_pickling() -> None:
    err = CephError("demote failed", site="site-b", pool="one", image="one-3", errno=16,
                    hint="retry")
    assert str(err) == "site 'site-b', pool 'one', image 'one-3': demote failed (hint: retry)"
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is CephError and str(back) == str(err) and back.errno == 16
    assert isinstance(back, FailbackError)
    t = WaitTimeoutError("timed out", vm=7, last_seen={"VM 7": "SHUTDOWN"})
    back_t = pickle.loads(pickle.dumps(t))
    assert str(back_t) == str(t) and back_t.last_seen == {"VM 7": "SHUTDOWN"}
