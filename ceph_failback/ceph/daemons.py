"""rbd-mirror's daemons as the site's manager reports them (``service status``), judged in a way
that a clock skew between this machine and the cluster cannot fool."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

__all__ = ["DaemonHealth", "judge_daemon_health", "BEACON_CONFIRM"]

log = logging.getLogger(__name__)

#: Seconds to watch for a daemon's next beacon when this machine's clock cannot judge the last
#: one: the manager stamps a beacon at each report (DaemonServer::handle_report), which a daemon
#: sends every ``mgr_stats_period`` (5 s by default).
BEACON_CONFIRM = 12.0

#: A beacon this many seconds in this machine's future means the clocks disagree.
_SKEW_TOLERANCE = 5.0


@dataclass(frozen=True)
class DaemonHealth:
    """One rbd-mirror daemon of the site, from the manager's service status.

    Attributes:
        gid: the daemon's service id.
        instance_id: its instance id (as images report it).
        leader: whether it leads for this pool.
        last_beacon: when it last reported to the manager.
        reports_pool: whether its status covers the pool.
        callouts: warnings/errors it raised for the pool.
        healthy: reports the pool, no error callouts and a recent beacon.
        pool: the pool this entry judges the daemon for.
    """

    gid: str
    instance_id: str | None
    leader: bool
    last_beacon: datetime | None
    reports_pool: bool
    callouts: Mapping[str, Any]
    healthy: bool
    pool: str = ""



def judge_daemon_health(read: Callable[[], Mapping[str, Any]], pool: str, *,
                        beacon_grace: float, confirm: float = BEACON_CONFIRM,
                        site: str = "", now: Callable[[], datetime] = lambda: datetime.now(UTC),
                        sleep: Callable[[float], None] = time.sleep,
                        clock: Callable[[], float] = time.monotonic) -> list[DaemonHealth]:
    """The rbd-mirror daemons in the manager's service status (``read()``) and whether each is
    healthy for ``pool``: it reports the pool, raised no error callout for it, and is alive.

    Alive: its last beacon is at most ``beacon_grace`` seconds old by this machine's clock.
    The beacons are stamped by the manager's clock, so when that judgement cannot be trusted (a
    beacon older than the grace, or from this machine's future: the clocks may disagree) the
    status is read again for up to ``confirm`` seconds: a daemon whose beacon moves is alive,
    whatever the clocks say (a skew is logged); one whose beacon stands still is down.
    """
    first = _daemons(read(), pool)
    stamp = now()
    alive: dict[str, bool] = {}
    unsure: dict[str, datetime | None] = {}
    for gid, (_, beacon) in first.items():
        age = (stamp - beacon).total_seconds() if beacon is not None else None
        if age is not None and -_SKEW_TOLERANCE <= age <= beacon_grace:
            alive[gid] = True
        else:
            unsure[gid] = beacon
    deadline = clock() + confirm
    while unsure and clock() < deadline:
        sleep(1.0)
        later = _daemons(read(), pool)
        for gid in list(unsure):
            beacon = later.get(gid, ({}, None))[1]
            if beacon is not None and beacon != unsure[gid]:
                log.warning("%s: rbd-mirror daemon %s is alive (its beacon moved) though its "
                            "last beacon was %.0fs off this machine's clock: the clocks disagree",
                            site or "site", gid, (now() - beacon).total_seconds())
                alive[gid] = True
                del unsure[gid]
    out = []
    for gid, (entry, beacon) in first.items():
        callouts = entry.get("callouts") or {}
        errors = [c for c in callouts.values()
                  if isinstance(c, Mapping) and str(c.get("level", "")).lower() == "error"]
        out.append(DaemonHealth(
            gid=str(gid),
            instance_id=str(entry["instance_id"]) if "instance_id" in entry else None,
            leader=bool(entry.get("leader", False)),
            last_beacon=beacon,
            reports_pool=bool(entry),
            callouts=dict(callouts),
            healthy=bool(entry) and not errors and alive.get(gid, False),
            pool=pool,
        ))
    return out


def _daemons(status: Mapping[str, Any], pool: str
             ) -> dict[str, tuple[Mapping[str, Any], datetime | None]]:
    """gid -> (the daemon's report of ``pool``, its last beacon) from ``service status``."""
    out: dict[str, tuple[Mapping[str, Any], datetime | None]] = {}
    for gid, info in (status.get("rbd-mirror") or {}).items():
        raw = ((info or {}).get("status") or {}).get("json")
        try:
            pools = json.loads(raw) if raw else {}
        except ValueError:
            pools = {}
        entry: Mapping[str, Any] = next(
            (p for p in pools.values() if isinstance(p, Mapping) and p.get("name") == pool), {})
        out[str(gid)] = (entry, _parse_stamp((info or {}).get("last_beacon")))
    return out


def _parse_stamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
