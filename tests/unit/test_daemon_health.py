"""rbd-mirror's health from the manager's service status, robust to skew between this machine's
clock and the manager's (issue 14 item 2): a beacon the clock cannot judge is confirmed by
watching it move."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from ceph_failback.ceph.daemons import judge_daemon_health

T0 = datetime(2026, 12, 3, 8, 0, 0, tzinfo=UTC)


class Manager:
    """A manager whose daemon reports every ``period`` seconds of a fake clock (``None``: the
    daemon is dead since ``T0``)."""

    def __init__(self, period: float | None) -> None:
        self.period, self.t = period, 0.0

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def read(self) -> dict:
        elapsed = 0.0 if self.period is None else self.t - self.t % self.period
        beacon = T0 + timedelta(seconds=elapsed)
        status = {"json": json.dumps({"1": {"name": "one", "instance_id": "4242",
                                            "leader": True, "callouts": {}}})}
        return {"rbd-mirror": {"4151": {"status": status, "last_beacon": beacon.isoformat()}}}


def judge(manager: Manager, skew: float, grace: float = 30.0) -> bool:
    """Healthy, seen from a machine whose clock is ``skew`` seconds ahead of the manager's."""
    (health,) = judge_daemon_health(
        manager.read, "one", beacon_grace=grace, confirm=12,
        now=lambda: T0 + timedelta(seconds=manager.t + skew), sleep=manager.sleep,
        clock=lambda: manager.t)
    return health.healthy


@pytest.mark.parametrize("skew", [0, 25, -25, 3600, -3600])
def test_a_live_daemon_is_healthy_whatever_the_clocks_say(skew: float) -> None:
    manager = Manager(period=5)
    assert judge(manager, skew)
    if abs(skew) <= 5:
        assert manager.t == 0  # judged by the clock at once, no waiting


@pytest.mark.parametrize("skew", [0, 25, 3600])
def test_a_dead_daemon_is_down(skew: float) -> None:
    manager = Manager(period=None)
    manager.t = 120  # its last beacon is two minutes old by the manager's clock
    assert not judge(manager, skew)


def test_a_dead_daemon_seen_from_a_clock_far_behind_is_down_too() -> None:
    manager = Manager(period=None)
    manager.t = 120
    assert not judge(manager, skew=-3600)  # its beacon looks an hour ahead: confirmed, no move
