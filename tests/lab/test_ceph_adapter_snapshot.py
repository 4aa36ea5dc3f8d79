"""The mirror adapter against the real lab in snapshot-based mirroring (image mirror mode)."""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

from ceph_failback.ceph import MirrorPool, MirrorSnapshot, MirrorState, ReplayKind
from ceph_failback.errors import NotReadyError
from ceph_failback.lab import Lab

from .helpers import assert_fast_infos_match_librbd, pattern, poll


@pytest.fixture(scope="module")
def spools(snapshot_lab: Lab) -> Iterator[tuple[MirrorPool, MirrorPool]]:
    with snapshot_lab.connect("a") as a, snapshot_lab.connect("b") as b:
        yield a.pool(snapshot_lab.pool), b.pool(snapshot_lab.pool)


def newest(pool: MirrorPool, name: str) -> MirrorSnapshot:
    snaps = pool.mirror_snapshots(name)
    assert snaps, f"no mirror snapshot of {name} on {pool.site.name}"
    return snaps[-1]


def copied(target: MirrorPool, name: str, source: MirrorPool, state: str) -> bool:
    """The target's newest mirror snapshot is the complete copy of the source's newest one."""
    src = newest(source, name)
    dst = newest(target, name)
    return (dst.state == state and dst.complete
            and dst.primary_mirror_uuid == source.mirror_uuid()
            and dst.primary_snap_id == src.id)


def promote_when_ready(pool: MirrorPool, name: str) -> bool:
    try:
        pool.promote(name)
        return True
    except NotReadyError as exc:
        assert exc.errno in (errno.EROFS, errno.EBUSY)
        return False


def test_snapshot_mode_flip_both_ways(
    snapshot_lab: Lab, spools: tuple[MirrorPool, MirrorPool], names
) -> None:
    lab = snapshot_lab
    pa, pb = spools
    (name,) = names()
    assert pa.mode() == "image" and pb.mode() == "image"
    lab.create_image(name, size=16 << 20, data=pattern(name))
    assert pa.info(name).mode == "snapshot"
    lab.wait_replicated([name], timeout=120)

    # The replica reports snapshot-mode replay, and catches up.
    st = poll(lambda: (s := pb.status(name)).is_caught_up() and s, what="idle replay on B")
    assert st.state is MirrorState.REPLAYING
    assert st.local.replay is not None and st.local.replay.kind is ReplayKind.SNAPSHOT
    assert st.local.replay.replay_state == "idle"
    assert copied(pb, name, pa, "non-primary")
    assert newest(pa, name).state == "primary" and newest(pa, name).is_primary

    # Promote on B is refused (EROFS) while A has not demoted.
    with pytest.raises(NotReadyError):
        pb.promote(name)

    # A -> B.
    pa.demote(name)
    assert newest(pa, name).state == "primary-demoted" and newest(pa, name).is_demotion
    poll(lambda: copied(pb, name, pa, "non-primary-demoted"), what="demotion snapshot on B")
    poll(lambda: promote_when_ready(pb, name), what="promote on B")
    lab.write("b", name, pattern("written-on-b", 8192))
    expected = lab.checksum("b", name)

    # B -> A, the precise snapshot-mode check before promoting.
    poll(lambda: pa.status(name).local.up and copied(pa, name, pb, "non-primary"),
         what="B's last snapshot copied to A")
    pb.demote(name)
    poll(lambda: copied(pa, name, pb, "non-primary-demoted"), what="B's demotion on A")
    poll(lambda: promote_when_ready(pa, name), what="promote on A")
    assert pa.info(name).primary is True and pb.info(name).primary is False
    assert lab.checksum("a", name) == expected


def test_mirror_snapshot_many(snapshot_lab: Lab, spools: tuple[MirrorPool, MirrorPool],
                              names) -> None:
    pa, _ = spools
    images = names(2)
    for n in images:
        snapshot_lab.create_image(n, size=4 << 20)
    before = {n: len(pa.mirror_snapshots(n)) for n in images}
    results = pa.create_mirror_snapshot_many([*images, "ghost"])
    for n in images:
        assert results[n].ok and isinstance(results[n].value, int)
        snaps = pa.mirror_snapshots(n)
        assert len(snaps) == before[n] + 1 and snaps[-1].id == results[n].value
    assert not results["ghost"].ok


def test_the_parallel_mirror_info_read_answers_as_librbd(
        snapshot_lab: Lab, spools: tuple[MirrorPool, MirrorPool], names) -> None:
    """Issue 17's fast path against librbd's sequential listing in snapshot mode (read per
    image through librbd, in parallel): primary, demoted, flipped and force-promoted images."""
    lab = snapshot_lab
    pa, pb = spools
    images = names(4)
    for n in images:
        lab.create_image(n, size=4 << 20, data=pattern(n, 4096))
    lab.wait_replicated(images, timeout=120)
    replicating, demoted, flipped, forced = images
    pa.demote(demoted)
    pa.demote(flipped)
    poll(lambda: promote_when_ready(pb, flipped), what="non-forced promote on site-b")
    lab.unplanned_disaster([forced])
    for pool in (pa, pb):
        counts = assert_fast_infos_match_librbd(pool, images)
        assert counts["journal"] == 0 and counts["librbd"] >= 4, counts  # read per image
    infos_a, infos_b = pa.images(), pb.images()
    assert [infos_a[n].primary for n in images] == [True, False, False, True]
    assert [infos_b[n].primary for n in images] == [False, False, True, True]
    assert {infos_a[n].mode for n in images} == {"snapshot"}
