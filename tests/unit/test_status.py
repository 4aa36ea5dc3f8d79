"""Parsing of librbd mirror statuses. The dictionaries are as the lab's Ceph 16 returned them
(captured with ``Image.mirror_image_get_status()``), plus the forms other releases use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ceph_failback.ceph.status import (
    MirrorState,
    ReplayKind,
    parse_mirror_status,
    parse_site_status,
    to_utc,
)

JOURNAL_REPLAYING = (
    'replaying, {"bytes_per_second":35.0,"entries_behind_primary":0,"entries_per_second":0.4,'
    '"non_primary_position":{"entry_tid":3,"object_number":3,"tag_tid":2},'
    '"primary_position":{"entry_tid":3,"object_number":3,"tag_tid":2}}'
)
JOURNAL_BEHIND = (
    'replaying, {"bytes_per_second":0.0,"entries_behind_primary":3,"entries_per_second":0.0,'
    '"non_primary_position":{"entry_tid":1,"object_number":1,"tag_tid":3},'
    '"primary_position":{"entry_tid":3,"object_number":3,"tag_tid":4}}'
)
JOURNAL_EMPTY_POSITION = (
    'replaying, {"bytes_per_second":0.0,"entries_behind_primary":2,"entries_per_second":0.0,'
    '"non_primary_position":{},"primary_position":{"entry_tid":1,"object_number":1,"tag_tid":4}}'
)
SNAPSHOT_IDLE = (
    'replaying, {"bytes_per_second":0.0,"bytes_per_snapshot":0.0,"last_snapshot_bytes":0,'
    '"last_snapshot_sync_seconds":0,"local_snapshot_timestamp":1700000100,'
    '"remote_snapshot_timestamp":1700000100,"replay_state":"idle"}'
)
SNAPSHOT_SYNCING = (
    'replaying, {"bytes_per_second":1048576.0,"local_snapshot_timestamp":1700000000,'
    '"remote_snapshot_timestamp":1700000100,"replay_state":"syncing","syncing_percent":42,'
    '"syncing_snapshot_timestamp":1700000100}'
)

LAB_REPLICA = {
    "description": JOURNAL_REPLAYING,
    "id": "1011978447d2",
    "info": {"global_id": "a1f08af1-8153-42e0-8078-fdc42d20d70a", "primary": False, "state": 1},
    "last_update": datetime(2026, 11, 25, 3, 18, 39),
    "name": "x1",
    "remote_statuses": [
        {
            "description": "local image is primary",
            "last_update": datetime(2026, 11, 25, 3, 18, 39),
            "mirror_uuid": "27445cd8-821b-4cb7-a2d5-a983f729128b",
            "state": 6,
            "up": True,
        }
    ],
    "state": 4,
    "up": True,
}


def test_journal_replica_from_the_lab() -> None:
    st = parse_mirror_status(
        LAB_REPLICA, site="site-b", pool="one",
        peer_names={"27445cd8-821b-4cb7-a2d5-a983f729128b": "site-a"},
    )
    assert st.image == "x1" and st.site == "site-b" and st.pool == "one"
    assert st.global_id == "a1f08af1-8153-42e0-8078-fdc42d20d70a"
    assert st.primary is False and not st.is_primary()
    assert st.state is MirrorState.REPLAYING
    assert st.local.replay is not None and st.local.replay.kind is ReplayKind.JOURNAL
    assert st.local.replay.entries_behind_primary == 0
    assert st.local.replay.bytes_per_second == 35.0
    assert st.is_caught_up()
    assert st.local.last_update == datetime(2026, 11, 25, 3, 18, 39, tzinfo=UTC)
    peer = st.peer("site-a")
    assert peer is not None and peer.is_local_primary() and peer.state is MirrorState.STOPPED
    assert st.local.label == "up+replaying"
    assert "site-a: up+stopped" in st.summary()


def test_journal_behind_is_not_caught_up() -> None:
    s = parse_site_status({"state": 4, "up": True, "description": JOURNAL_BEHIND})
    assert s.is_replaying() and not s.is_caught_up()
    assert s.replay is not None and s.replay.entries_behind_primary == 3
    assert "behind=3" in s.summary()


def test_journal_empty_position_right_after_a_flip_is_not_caught_up() -> None:
    s = parse_site_status({"state": 4, "up": True, "description": JOURNAL_EMPTY_POSITION})
    assert s.replay is not None and s.replay.non_primary_position == {}
    assert not s.is_caught_up()


def test_positions_equal_but_entries_behind_is_not_caught_up() -> None:
    text = JOURNAL_REPLAYING.replace('"entries_behind_primary":0', '"entries_behind_primary":1')
    assert not parse_site_status({"state": 4, "up": True, "description": text}).is_caught_up()


def test_snapshot_idle_and_syncing() -> None:
    idle = parse_site_status({"state": 4, "up": True, "description": SNAPSHOT_IDLE})
    assert idle.replay is not None and idle.replay.kind is ReplayKind.SNAPSHOT
    assert idle.replay.replay_state == "idle" and idle.is_caught_up()
    syncing = parse_site_status({"state": 4, "up": True, "description": SNAPSHOT_SYNCING})
    assert syncing.replay is not None and syncing.replay.syncing_percent == 42
    assert not syncing.is_caught_up()
    assert "syncing 42%" in syncing.summary()


def test_snapshot_idle_but_older_snapshot_is_not_caught_up() -> None:
    text = SNAPSHOT_IDLE.replace('"local_snapshot_timestamp":1700000100',
                                 '"local_snapshot_timestamp":1700000000')
    assert not parse_site_status({"state": 4, "up": True, "description": text}).is_caught_up()


@pytest.mark.parametrize(
    ("description", "step", "percent"),
    [
        ("bootstrapping, IMAGE_COPY/COPY_OBJECT 45%", "IMAGE_COPY/COPY_OBJECT", 45.0),
        ("bootstrapping, IMAGE_COPY/COPY_OBJECT 7.5%", "IMAGE_COPY/COPY_OBJECT", 7.5),
        ("bootstrapping, IMAGE_SYNC/CREATE_SYNC_POINT", "IMAGE_SYNC/CREATE_SYNC_POINT", None),
    ],
)
def test_bootstrapping_progress(description: str, step: str, percent: float | None) -> None:
    s = parse_site_status({"state": 2, "up": True, "description": description})
    assert s.state is MirrorState.SYNCING
    assert s.bootstrap_step == step and s.bootstrap_percent == percent


def test_split_brain_and_demoted_peer() -> None:
    sb = parse_site_status({"state": 1, "up": True, "description": "split-brain detected"})
    assert sb.state is MirrorState.ERROR and sb.is_split_brain()
    for text in ("remote image demoted", "remote image is not primary"):
        s = parse_site_status({"state": 0, "up": True, "description": text})
        assert s.peer_demoted() and not s.is_split_brain() and s.state is MirrorState.UNKNOWN


def test_missing_keys_while_the_daemon_has_not_reported() -> None:
    # Seen in the lab for ~20 s after an image is created: only name/id/info are present.
    st = parse_mirror_status({"name": "x", "id": "1", "info": {"global_id": "g", "state": 1}},
                             site="site-b", pool="one")
    assert st.state is MirrorState.UNKNOWN and not st.local.up
    assert st.is_stale() and st.local.last_update is None and st.primary is None
    assert parse_site_status({}).description == ""
    assert parse_site_status({"state": 99}).state is MirrorState.UNKNOWN
    assert parse_site_status({"state": "garbage"}).state is MirrorState.UNKNOWN


def test_status_not_found_is_stale() -> None:
    s = parse_site_status({"state": 0, "up": False, "description": "status not found"})
    assert s.is_stale() and s.label == "down+unknown"


def test_malformed_json_in_description_is_tolerated() -> None:
    s = parse_site_status({"state": 4, "up": True, "description": "replaying, {not json"})
    assert s.replay is None and not s.is_caught_up()


def test_staleness_by_age() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    s = parse_site_status({"state": 4, "up": True, "description": JOURNAL_REPLAYING,
                           "last_update": datetime(2026, 1, 1, 11, 59, 0)})
    assert not s.is_stale()
    assert s.is_stale(max_age=30, now=now)
    assert not s.is_stale(max_age=90, now=now)
    assert s.is_newer_than(now - timedelta(minutes=2))
    # one-second precision: a report in the same second is not "newer"
    assert not s.is_newer_than(datetime(2026, 1, 1, 11, 59, 0, 700000, tzinfo=UTC))


def test_last_update_is_always_aware_utc() -> None:
    naive = datetime(2026, 1, 1, 10, 0, 0)
    aware = datetime(2026, 1, 1, 11, 0, 0, tzinfo=timezone(timedelta(hours=1)))
    assert to_utc(naive) == datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert to_utc(aware) == datetime(2026, 1, 1, 10, 0, 0, tzinfo=UTC)
    assert to_utc(aware).tzinfo is UTC  # type: ignore[union-attr]
    assert to_utc(0) is None and to_utc(None) is None
    assert to_utc(datetime(1970, 1, 1)) is None  # seen while an image is recreated
    assert to_utc(1700000000) == datetime.fromtimestamp(1700000000, tz=UTC)


def test_primary_from_batched_listing_falls_back_to_description() -> None:
    raw = {"name": "x", "info": {"global_id": "g", "state": 1}, "state": 6, "up": True,
           "description": "local image is primary"}
    st = parse_mirror_status(raw, site="site-a", pool="one")
    assert st.primary is None and st.is_primary()
    assert not parse_mirror_status(raw, site="site-a", pool="one", primary=False).is_primary()


def test_in_primary_epoch_needs_the_primary_s_tag() -> None:
    """Journal mode: a copy replaying from its peer is past the peer's promotion only once its
    replay position carries the peer's tag (else it may be an orphan of its own demotion)."""
    from ceph_failback.ceph.status import ReplayDetail

    def detail(local_tag: int, remote_tag: int, behind: int = 0) -> ReplayDetail:
        return ReplayDetail.parse({
            "primary_position": {"entry_tid": 9, "object_number": 2, "tag_tid": remote_tag},
            "non_primary_position": {"entry_tid": 4, "object_number": 1, "tag_tid": local_tag},
            "entries_behind_primary": behind})

    assert detail(5, 5, behind=3).in_primary_epoch()  # behind, but in B's epoch
    assert not detail(4, 5, behind=3).in_primary_epoch()  # still in its own old epoch
    assert not ReplayDetail.parse({"entries_behind_primary": 0}).in_primary_epoch()
    assert not ReplayDetail.parse({"replay_state": "idle"}).in_primary_epoch()
