"""Typed RBD mirror status, parsed defensively from librbd's dictionaries.

librbd reports an image's mirror status as a dict whose keys and description strings vary across
Ceph releases (16 to 20): top-level keys may be missing while rbd-mirror has not reported yet,
``last_update`` is naive UTC before Ceph 20 and aware after, and the replay details are JSON
embedded in the ``description`` text. Everything here tolerates missing keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, IntEnum
from typing import Any

__all__ = [
    "MirrorState",
    "ReplayKind",
    "ReplayDetail",
    "SiteStatus",
    "MirrorStatus",
    "MirrorImageInfo",
    "parse_site_status",
    "parse_mirror_status",
    "to_utc",
]


class MirrorState(IntEnum):
    """``rbd.MIRROR_IMAGE_STATUS_STATE_*``."""

    UNKNOWN = 0
    ERROR = 1
    SYNCING = 2
    STARTING_REPLAY = 3
    REPLAYING = 4
    STOPPING_REPLAY = 5
    STOPPED = 6

    @classmethod
    def parse(cls, value: Any) -> MirrorState:
        """The state for a librbd value; anything unrecognised is ``UNKNOWN``."""
        try:
            return cls(int(value))
        except (TypeError, ValueError):
            return cls.UNKNOWN

    @property
    def label(self) -> str:
        """Lower-case name as the ``rbd`` CLI prints it (``replaying``)."""
        return self.name.lower()


class ReplayKind(Enum):
    """Which mirroring mode a replay detail belongs to."""

    JOURNAL = "journal"
    SNAPSHOT = "snapshot"


def to_utc(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from librbd's value (naive UTC, aware, or epoch seconds)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.year <= 1970:
            return None  # librbd's zero time: never reported
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        if value <= 0:
            return None
        return datetime.fromtimestamp(value, tz=UTC)
    return None


@dataclass(frozen=True)
class ReplayDetail:
    """What the ``replaying, {json}`` description says.

    Journal mode fills the positions and ``entries_behind_primary``; snapshot mode fills
    ``replay_state`` (``idle``/``syncing``), the two snapshot timestamps and ``syncing_percent``.
    """

    kind: ReplayKind
    bytes_per_second: float | None = None
    # journal mode
    primary_position: Mapping[str, int] | None = None
    non_primary_position: Mapping[str, int] | None = None
    entries_behind_primary: int | None = None
    entries_per_second: float | None = None
    seconds_until_synced: float | None = None
    # snapshot mode
    replay_state: str | None = None
    remote_snapshot_timestamp: float | None = None
    local_snapshot_timestamp: float | None = None
    syncing_percent: float | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def is_caught_up(self) -> bool:
        """Nothing left to replay as of this report.

        Journal: both positions known and equal, and no entries behind. Snapshot: idle and the
        local copy of the newest remote mirror snapshot is the newest remote one.
        """
        if self.kind is ReplayKind.JOURNAL:
            return (
                self.primary_position is not None
                and self.non_primary_position is not None
                and dict(self.primary_position) == dict(self.non_primary_position)
                and (self.entries_behind_primary or 0) == 0
            )
        return (
            self.replay_state == "idle"
            and self.remote_snapshot_timestamp is not None
            and self.remote_snapshot_timestamp == self.local_snapshot_timestamp
        )

    def in_primary_epoch(self) -> bool:
        """Journal: the local copy replays inside the primary's current tag epoch (its replay
        position carries the primary's ``tag_tid``), so it has replayed past the primary's
        promotion and cannot be an orphan of its own demotion. A copy that merely reports
        "replaying" right after a flip may not have got there yet, and would accept a
        non-forced promote with none of the primary's writes. Snapshot mode: ``False`` (the
        mirror snapshots prove it instead)."""
        if self.kind is not ReplayKind.JOURNAL:
            return False
        local, remote = self.non_primary_position, self.primary_position
        return (local is not None and remote is not None and "tag_tid" in remote
                and local.get("tag_tid") == remote["tag_tid"])

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> ReplayDetail:
        """Build from the JSON part of a ``replaying, {...}`` description."""

        def num(key: str) -> float | None:
            value = data.get(key)
            return float(value) if isinstance(value, int | float) else None

        def pos(key: str) -> Mapping[str, int] | None:
            value = data.get(key)
            return dict(value) if isinstance(value, Mapping) else None

        if "replay_state" in data or "remote_snapshot_timestamp" in data:
            return cls(
                kind=ReplayKind.SNAPSHOT,
                bytes_per_second=num("bytes_per_second"),
                replay_state=str(data.get("replay_state")) if "replay_state" in data else None,
                remote_snapshot_timestamp=num("remote_snapshot_timestamp"),
                local_snapshot_timestamp=num("local_snapshot_timestamp"),
                syncing_percent=num("syncing_percent"),
                raw=dict(data),
            )
        behind = data.get("entries_behind_primary")
        return cls(
            kind=ReplayKind.JOURNAL,
            bytes_per_second=num("bytes_per_second"),
            primary_position=pos("primary_position"),
            non_primary_position=pos("non_primary_position"),
            entries_behind_primary=int(behind) if isinstance(behind, int | float) else None,
            entries_per_second=num("entries_per_second"),
            seconds_until_synced=num("seconds_until_synced"),
            raw=dict(data),
        )


_BOOTSTRAP_RE = re.compile(r"bootstrapping,?\s*(?P<step>[A-Z_/]+)?\s*(?P<pct>\d+(?:\.\d+)?)?%?")


@dataclass(frozen=True)
class SiteStatus:
    """One rbd-mirror daemon's report on one image.

    Attributes:
        site: the site the report is about (a site name, or the peer's mirror uuid when the peer's
            name is unknown); ``None`` for the local site.
        state: the mirror state.
        up: whether a daemon is reporting (``False``: the report is stale).
        description: the raw description text.
        last_update: when the daemon last reported (aware UTC), if known.
        replay: the parsed replay detail, when the description carries one.
        bootstrap_step: the image sync step (``IMAGE_COPY/COPY_OBJECT``) while bootstrapping.
        bootstrap_percent: the image sync progress while bootstrapping.
    """

    site: str | None
    state: MirrorState
    up: bool
    description: str
    last_update: datetime | None = None
    replay: ReplayDetail | None = None
    bootstrap_step: str | None = None
    bootstrap_percent: float | None = None

    @property
    def label(self) -> str:
        """``up+replaying`` style, as the ``rbd`` CLI prints it."""
        return f"{'up' if self.up else 'down'}+{self.state.label}"

    def is_split_brain(self) -> bool:
        """rbd-mirror found the two copies diverged."""
        return "split-brain" in self.description

    def is_replaying(self) -> bool:
        """The daemon is replaying this image from the peer."""
        return self.state is MirrorState.REPLAYING

    def is_caught_up(self) -> bool:
        """Replaying and nothing behind, as of ``last_update``."""
        return self.is_replaying() and self.replay is not None and self.replay.is_caught_up()

    def peer_demoted(self) -> bool:
        """The daemon saw the peer (remote) image demoted or not primary: it replays nothing."""
        d = self.description
        return "remote image demoted" in d or "remote image is not primary" in d

    def is_local_primary(self) -> bool:
        """The daemon reports the image it watches is primary on its own site."""
        return "local image is primary" in self.description

    def is_stale(self, *, max_age: float | None = None, now: datetime | None = None) -> bool:
        """No daemon reports it (``down``), or the last report is older than ``max_age`` s."""
        if not self.up:
            return True
        if max_age is None:
            return False
        if self.last_update is None:
            return True
        now = now or datetime.now(UTC)
        return (now - self.last_update).total_seconds() > max_age

    def is_newer_than(self, moment: datetime) -> bool:
        """Reported after ``moment`` (an aware datetime). Reports carry one-second precision,
        so a report in the same second as ``moment`` does not count."""
        if self.last_update is None:
            return False
        return self.last_update.replace(microsecond=0) > moment.replace(microsecond=0)

    def summary(self) -> str:
        """One line for tables and error messages."""
        text = self.label
        if self.bootstrap_percent is not None:
            text += f" {self.bootstrap_percent:g}%"
        elif self.replay is not None and self.replay.kind is ReplayKind.JOURNAL:
            text += f" behind={self.replay.entries_behind_primary}"
        elif self.replay is not None and self.replay.replay_state:
            text += f" {self.replay.replay_state}"
            if self.replay.syncing_percent is not None:
                text += f" {self.replay.syncing_percent:g}%"
        elif self.description and self.state is not MirrorState.REPLAYING:
            text += f" ({self.description})"
        if self.last_update is not None:
            text += f" @{self.last_update:%H:%M:%S}"
        return text


def parse_site_status(raw: Mapping[str, Any], site: str | None = None) -> SiteStatus:
    """Parse one status dict (the top level of librbd's answer, or one of its
    ``remote_statuses``)."""
    description = str(raw.get("description") or "")
    state = MirrorState.parse(raw.get("state"))
    replay = None
    step = None
    percent = None
    head, sep, rest = description.partition(", ")
    if sep and rest.startswith("{"):
        try:
            data = json.loads(rest)
        except ValueError:
            data = None
        if isinstance(data, Mapping):
            replay = ReplayDetail.parse(data)
    if head.startswith("bootstrapping"):
        m = _BOOTSTRAP_RE.match(description)
        if m:
            step = m.group("step")
            percent = float(m.group("pct")) if m.group("pct") else None
    return SiteStatus(
        site=site,
        state=state,
        up=bool(raw.get("up", False)),
        description=description,
        last_update=to_utc(raw.get("last_update")),
        replay=replay,
        bootstrap_step=step,
        bootstrap_percent=percent,
    )


@dataclass(frozen=True)
class MirrorImageInfo:
    """What librbd says of a mirrored image on one site (``mirror_image_get_info``)."""

    name: str
    global_id: str
    enabled: bool
    primary: bool | None
    mode: str | None = None
    image_id: str | None = None


@dataclass(frozen=True)
class MirrorStatus:
    """An image's mirror status on one site: the local daemon's report and the peers' reports.

    On the primary site the local report reads "local image is primary" and the peers' reports
    say how they replay; on a non-primary site the local report is the replay.

    Attributes:
        site: the site this status was read from.
        pool: the pool.
        image: the image name.
        global_id: the mirror global id (same on every site).
        primary: whether the image is primary on ``site`` (``None`` when the batched listing,
            which omits it, was the source).
        local: the local rbd-mirror daemon's report.
        peers: the peer sites' reports.
    """

    site: str
    pool: str
    image: str
    global_id: str
    primary: bool | None
    local: SiteStatus
    peers: tuple[SiteStatus, ...] = ()

    @property
    def state(self) -> MirrorState:
        """The local state."""
        return self.local.state

    def is_primary(self) -> bool:
        """Primary here, from the image info or, failing that, from the local report."""
        if self.primary is not None:
            return self.primary
        return self.local.is_local_primary()

    def is_split_brain(self) -> bool:
        """Any report on this image says split-brain."""
        return self.local.is_split_brain() or any(p.is_split_brain() for p in self.peers)

    def is_caught_up(self) -> bool:
        """The local copy replays from the peer with nothing behind (non-primary side)."""
        return self.local.is_caught_up()

    def is_stale(self, *, max_age: float | None = None, now: datetime | None = None) -> bool:
        """The local report is down or too old."""
        return self.local.is_stale(max_age=max_age, now=now)

    def peer(self, site: str) -> SiteStatus | None:
        """The report of peer ``site``, if present."""
        for p in self.peers:
            if p.site == site:
                return p
        return None

    def summary(self) -> str:
        """One line: role, local report and peers' reports."""
        role = "primary" if self.is_primary() else "non-primary"
        text = f"{role} {self.local.summary()}"
        for p in self.peers:
            text += f" | {p.site}: {p.summary()}"
        return text


def parse_mirror_status(
    raw: Mapping[str, Any],
    *,
    site: str,
    pool: str,
    peer_names: Mapping[str, str] | None = None,
    primary: bool | None = None,
) -> MirrorStatus:
    """Parse ``Image.mirror_image_get_status()`` or one entry of ``mirror_image_status_list``.

    Args:
        raw: librbd's dict.
        site: the site it was read from.
        pool: the pool.
        peer_names: peer mirror uuid -> site name, to name the remote reports.
        primary: whether the image is primary here, when known from elsewhere.
    """
    info = raw.get("info") or {}
    if primary is None and "primary" in info:
        primary = bool(info["primary"])
    names = peer_names or {}
    remotes: Sequence[Mapping[str, Any]] = raw.get("remote_statuses") or ()
    peers = tuple(
        parse_site_status(r, site=names.get(str(r.get("mirror_uuid")), str(r.get("mirror_uuid"))))
        for r in remotes
    )
    return MirrorStatus(
        site=site,
        pool=pool,
        image=str(raw.get("name", "")),
        global_id=str(info.get("global_id", "")),
        primary=primary,
        local=parse_site_status(raw, site=None),
        peers=peers,
    )
