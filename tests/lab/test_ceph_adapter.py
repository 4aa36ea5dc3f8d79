"""The mirror adapter against the real two-site lab (journal mode, pool mirror mode)."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ceph_failback.ceph import CephConfig, CephSite, MirrorPool, MirrorState
from ceph_failback.ceph.rbd_journal import ReplayEpoch
from ceph_failback.errors import (
    CephConnectionError,
    CephPermissionError,
    ConfigurationError,
    ImageNotFoundError,
    MirroringNotEnabledError,
    NotReadyError,
    PoolNotFoundError,
)
from ceph_failback.failback.safety import journal_replay_proof
from ceph_failback.lab import Lab

from .helpers import assert_fast_infos_match_librbd, pattern, poll


@pytest.fixture(scope="module")
def pools(lab: Lab) -> Iterator[tuple[MirrorPool, MirrorPool]]:
    with lab.connect("a") as a, lab.connect("b") as b:
        yield a.pool(lab.pool), b.pool(lab.pool)


@pytest.fixture(scope="module")
def batch(lab: Lab) -> list[str]:
    """Images created once for this module, replicated A -> B; each test takes its own."""
    images = [f"adapter-{i}" for i in range(7)]
    for name in images:
        lab.create_image(name, size=64 << 20, data=pattern(name))
    lab.wait_replicated(images, timeout=180)
    return images


def take(batch: list[str]) -> str:
    return batch.pop()


def test_pool_queries(lab: Lab, pools: tuple[MirrorPool, MirrorPool]) -> None:
    pa, pb = pools
    assert pa.mode() == "pool" and pb.mode() == "pool"
    assert pa.site_name() == "site-a" and pb.site_name() == "site-b"
    (peer_of_a,) = pa.require_mirroring()
    (peer_of_b,) = pb.require_mirroring()
    assert peer_of_a.site_name == "site-b" and peer_of_a.direction == "rx-tx"
    assert peer_of_b.site_name == "site-a" and peer_of_b.direction == "rx-tx"
    # Each side knows the other's mirror uuid: that is how reports and snapshots name a site.
    assert peer_of_a.mirror_uuid == pb.mirror_uuid()
    assert peer_of_b.mirror_uuid == pa.mirror_uuid()
    for pool in pools:
        health = pool.daemon_health()
        assert len(health) == 1
        assert health[0].healthy and health[0].reports_pool and health[0].leader


def test_images_info_and_batched_statuses(
    lab: Lab, pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, pb = pools
    name = take(batch)
    on_a, on_b = pa.images()[name], pb.images()[name]
    assert on_a.primary is True and on_b.primary is False
    assert on_a.global_id == on_b.global_id and on_a.enabled and on_b.enabled
    assert pa.info(name).mode == "journal" and pb.info(name).primary is False

    st_b = poll(lambda: (s := pb.statuses([name])[name]).is_caught_up() and s,
                what="caught-up report on site-b")
    assert st_b.state is MirrorState.REPLAYING and st_b.local.up and not st_b.is_primary()
    assert st_b.peer("site-a") is not None
    st_a = pa.statuses()[name]
    assert st_a.is_primary() and st_a.local.is_local_primary()
    assert st_a.state is MirrorState.STOPPED
    # A VM's few images are read one by one, with the pool listings' answer; a missing name is
    # left out, as the listings leave it out.
    listed_a, listed_b = pa.images(), pb.images()
    assert pa.infos([name, "no-such-image"]) == {name: listed_a[name]}
    assert pb.infos([name]) == {name: listed_b[name]}
    pa.per_image_limit = 0  # more names than the limit: the listing
    try:
        assert pa.infos([name, "no-such-image"]) == {name: listed_a[name]}
    finally:
        del pa.per_image_limit
    each = pb.statuses([name, "no-such-image"], each=True)
    assert set(each) == {name}
    assert (each[name].state, each[name].primary, each[name].global_id, each[name].local.up,
            each[name].local.is_replaying()) == (st_b.state, False, st_b.global_id, True, True)
    each_a = pa.statuses([name], each=True)[name]
    assert each_a.is_primary() and each_a.state is MirrorState.STOPPED
    peer = poll(lambda: (p := pa.status(name).peer("site-b")) and p.is_replaying() and p,
                what="site-b's replaying report on site-a")
    assert peer.up and peer.last_update is not None and peer.last_update.tzinfo is not None
    one = pb.status(name)
    assert one.global_id == st_b.global_id and one.primary is False
    # The replica is watched by the rbd-mirror daemon that replays it, and by nobody on A.
    assert len(pb.watchers(name)) >= 1
    assert pa.watchers(name) == []


def test_promote_is_refused_while_the_peer_is_primary(
    pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, pb = pools
    name = take(batch)
    with pytest.raises(NotReadyError) as info:
        pb.promote(name)
    assert info.value.errno == errno.EBUSY
    assert "site 'site-b'" in str(info.value) and name in str(info.value)
    assert pb.info(name).primary is False and pa.info(name).primary is True


def test_planned_round_trip_keeps_the_last_writes(
    lab: Lab, pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, pb = pools
    name = take(batch)
    pa.demote(name)
    # B's daemon reports the demotion: unknown state, "remote image demoted"/"is not primary".
    seen = poll(lambda: (s := pb.status(name)).local.peer_demoted() and s,
                what="site-b to see the demotion")
    assert seen.state is MirrorState.UNKNOWN and not seen.is_primary()
    poll(lambda: _try_promote(pb, name), what="non-forced promote on site-b")
    assert pb.info(name).primary is True and pa.info(name).primary is False
    lab.write("b", name, pattern("written-on-b", 4096))
    expected = lab.checksum("b", name)
    poll(lambda: pa.status(name).is_caught_up(), what="site-a to replay site-b")
    pb.demote(name)
    poll(lambda: _try_promote(pa, name), what="non-forced promote on site-a")
    assert lab.checksum("a", name) == expected
    assert pa.info(name).primary is True and pb.info(name).primary is False


def test_split_brain_then_resync_restores_the_peer_data(
    lab: Lab, pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, pb = pools
    name = take(batch)
    lab.unplanned_disaster([name], new_data=pattern("after-outage", 8 << 20))
    expected = lab.checksum("b", name)
    assert pa.info(name).primary and pb.info(name).primary  # both primary: the outage state
    pa.demote(name)
    st = poll(lambda: (s := pa.status(name)).is_split_brain() and s,
              what="split-brain on site-a")
    assert st.state is MirrorState.ERROR and st.local.up
    # Resync from B, watching every state A goes through.
    results = pa.resync_many([name])
    assert results[name].ok, results[name].error
    states: list[str] = []

    def replaying() -> bool:
        try:
            s = pa.status(name)
        except ImageNotFoundError:
            states.append("missing")  # moved to the trash and being recreated
            return False
        states.append(s.local.label)
        return s.is_caught_up()

    poll(replaying, timeout=120, interval=0.1, what="resync of site-a")
    assert "missing" in states or "down+unknown" in states or any("syncing" in s for s in states)
    assert lab.checksum("a", name) == expected
    pb.demote(name)
    poll(lambda: _try_promote(pa, name), what="non-forced promote on site-a")
    assert lab.checksum("a", name) == expected


def test_batch_operation_reports_each_image(
    lab: Lab, pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, pb = pools
    first, second = take(batch), take(batch)
    results = pa.demote_many([first, "no-such-image", second], concurrency=2)
    assert set(results) == {first, "no-such-image", second}
    assert results[first].ok and results[second].ok
    missing = results["no-such-image"]
    assert not missing.ok and isinstance(missing.error, ImageNotFoundError)
    assert "no-such-image" in str(missing.error) and "site 'site-a'" in str(missing.error)
    # Demoting an already demoted image fails for that image only.
    again = pa.demote_many([first])
    assert not again[first].ok and again[first].error is not None
    # Back to A: promote (not forced) succeeds at once, the demotion was A's own.
    back = pa.promote_many([first, second])
    assert all(r.ok for r in back.values())
    assert pa.info(first).primary and pa.info(second).primary


def test_resync_of_a_primary_image_is_refused(
    pools: tuple[MirrorPool, MirrorPool], batch: list[str]
) -> None:
    pa, _ = pools
    name = take(batch)
    with pytest.raises(Exception) as info:
        pa.resync(name)
    assert name in str(info.value) and "site 'site-a'" in str(info.value)
    assert pa.info(name).primary is True


def test_rbd_mirror_stop_and_start(lab: Lab, pools: tuple[MirrorPool, MirrorPool]) -> None:
    pa, _ = pools
    lab.stop_rbd_mirror("a")
    try:
        assert not lab.site_a.is_running("rbd-mirror")
        poll(lambda: not any(d.healthy for d in pa.daemon_health()), timeout=30,
             what="site-a's daemon to drop out")
        statuses = pa.statuses()
        assert statuses and all(s.is_stale() for s in statuses.values())
    finally:
        lab.start_rbd_mirror("a")
    poll(lambda: any(d.healthy for d in pa.daemon_health()), timeout=60,
         what="site-a's daemon back")


# -- bad input --------------------------------------------------------------------------------


def test_missing_conf_file(tmp_path) -> None:
    with pytest.raises(ConfigurationError) as info:
        CephSite("site-a", CephConfig(conffile=str(tmp_path / "nope.conf"))).connect()
    assert "nope.conf" in str(info.value) and "site 'site-a'" in str(info.value)


def test_missing_keyring(lab: Lab, tmp_path) -> None:
    cfg = CephConfig(conffile=str(lab.site_a.conf_path), keyring=str(tmp_path / "k"))
    with pytest.raises(ConfigurationError, match="keyring"):
        CephSite("site-a", cfg).connect()


def test_wrong_pool(lab: Lab) -> None:
    with lab.connect("a") as a:
        with pytest.raises(PoolNotFoundError) as info:
            a.pool("no-such-pool")
    assert "pool 'no-such-pool'" in str(info.value) and "site 'site-a'" in str(info.value)


def test_pool_without_mirroring(lab: Lab) -> None:
    admin = lab.site_a.admin()
    admin.mon_command({"prefix": "osd pool create", "pool": "plain", "pg_num": 8})
    # An rbd pool, as on a real site (Ceph 18 warns POOL_APP_NOT_ENABLED otherwise).
    admin.mon_command({"prefix": "osd pool application enable", "pool": "plain", "app": "rbd"})
    with lab.connect("a") as a:
        pool = a.pool("plain")
        assert pool.mode() == "disabled"
        with pytest.raises(MirroringNotEnabledError) as info:
            pool.require_mirroring()
    assert "pool 'plain'" in str(info.value)


def test_unknown_image(pools: tuple[MirrorPool, MirrorPool]) -> None:
    pa, _ = pools
    for call in (pa.status, pa.info, pa.demote, pa.promote, pa.resync):
        with pytest.raises(ImageNotFoundError) as info:
            call("ghost")
        assert "image 'ghost'" in str(info.value) and "site 'site-a'" in str(info.value)


def test_monitor_not_reachable_fails_within_the_timeout(lab: Lab, tmp_path) -> None:
    conf = tmp_path / "ceph.conf"
    conf.write_text("[global]\nmon_host = v2:127.0.0.9:3300\n")
    cfg = CephConfig(conffile=str(conf), keyring=str(lab.site_a.admin_keyring), mount_timeout=2)
    start = time.monotonic()
    with pytest.raises(CephConnectionError) as info:
        CephSite("site-x", cfg).connect()
    assert time.monotonic() - start < 6
    assert "site 'site-x'" in str(info.value)


def test_stopped_monitor_fails_within_the_timeout_and_recovers(lab: Lab) -> None:
    lab.stop_mon("b")
    try:
        start = time.monotonic()
        with pytest.raises(CephConnectionError):
            lab.connect("b", mount_timeout=2)
        assert time.monotonic() - start < 6
    finally:
        lab.start_mon("b")
    with lab.connect("b") as b:
        assert b.pool(lab.pool).mode() == "pool"
    lab.wait_ready(timeout=60)


def test_client_lacking_caps(lab: Lab) -> None:
    admin = lab.site_a.admin()
    key = admin.mon_command({"prefix": "auth get-or-create", "entity": "client.weak",
                             "caps": ["mon", "allow r"], "format": "plain"})
    lab.site_a.keyring_for("client.weak").write_text(key if key.endswith("\n") else key + "\n")
    with lab.connect("a", client="client.weak", osd_op_timeout=5) as weak:
        pool = weak.pool(lab.pool)
        # Ceph 16 refuses (EPERM); Ceph 18 lets a client without osd caps time out: either
        # way the error names the caps a failback needs.
        with pytest.raises((CephPermissionError, CephConnectionError)) as info:
            pool.statuses()
    assert "site 'site-a'" in str(info.value) and "pool 'one'" in str(info.value)
    assert info.value.hint is not None and "osd 'profile rbd pool=one'" in info.value.hint


@contextmanager
def replicated_as_failback_client(lab: Lab, names) -> Iterator[tuple[str, MirrorPool, MirrorPool]]:
    """A new image replicated A -> B, and both sites' pools as the least-privileged
    ``client.failback``."""
    (name,) = names()
    lab.create_image(name, data=pattern(name, 4096))
    lab.wait_replicated([name])
    with lab.connect("a", client="client.failback") as a, \
            lab.connect("b", client="client.failback") as b:
        yield name, a.pool(lab.pool), b.pool(lab.pool)


def test_the_failback_client_can_do_the_whole_job(lab: Lab, names) -> None:
    with replicated_as_failback_client(lab, names) as (name, pa, pb):
        assert pa.daemon_health() and pb.statuses([name])
        pa.demote(name)
        poll(lambda: _try_promote(pb, name), what="promote on site-b as client.failback")
        pb.demote(name)
        poll(lambda: _try_promote(pa, name), what="promote back on site-a")
        assert pa.watchers(name) == [] and pa.mirror_snapshots(name) == []


def _try_promote(pool: MirrorPool, name: str) -> bool:
    try:
        pool.promote(name)
        return True
    except NotReadyError:
        return False


def test_the_journal_copy_in_site_as_pool(lab: Lab, tmp_path) -> None:
    """Issue 14 item 7: the journal's copy is a RADOS object beside the lock, read and appended
    with the failback client's caps; a journal in another directory adopts it whole."""
    from ceph_failback.failback.journal import Journal

    name = f"copy-{time.time_ns()}.jsonl"
    with lab.connect("a", client="client.failback") as a:
        copy = a.journal_copy(lab.pool, name)
        assert copy.read() == b""
        first = Journal(tmp_path / "one" / name)
        first.write("run", "started")
        assert first.attach(copy).copied == 1
        for i in range(50):
            first.write("resync_a", "done", f"image:{i}", image_id=f"{i:x}" * 8)
        first.detach()
        assert copy.read() == (tmp_path / "one" / name).read_bytes()
        second = Journal(tmp_path / "two" / name)
        synced = second.sync(a.journal_copy(lab.pool, name), push=False)
        assert (synced.adopted, synced.copied) == (51, 0)
        assert second.records == first.records
        assert "object 'ceph_failback.journal." in synced.copy and "site-a" in synced.copy


def test_the_journals_prove_a_replays_b_s_epoch_after_a_flip(lab: Lab, names) -> None:
    """Issue 14 item 1: after a DR-test flip, the tag-epoch proof is read from both journal
    headers (as the least-privileged failback client) and holds as soon as A's rbd-mirror has
    committed B's promotion: before that it does not, and A's status alone never decides."""
    from ceph_failback.ceph.rbd_journal import ReplayEpoch
    from ceph_failback.failback.safety import journal_replay_proof

    with replicated_as_failback_client(lab, names) as (name, pa, pb):
        a_uuid, b_uuid = pa.mirror_uuid(), pb.mirror_uuid()

        def epoch() -> ReplayEpoch:
            ids = pa.infos([name])[name].image_id, pb.infos([name])[name].image_id
            return ReplayEpoch.read(pa.journal_header(name, ids[0]),
                                    pb.journal_header(name, ids[1]), a_uuid=a_uuid,
                                    b_uuid=b_uuid)

        # Before the flip A is the primary: nothing proves A replays B.
        assert journal_replay_proof(epoch()) is None
        before = epoch()
        assert before.b_epoch is not None and before.b_epoch.owner == a_uuid  # B replays A
        pa.demote(name)
        poll(lambda: _try_promote(pb, name), what="promote on site-b")
        started = time.monotonic()
        try:
            proven = poll(lambda: e if journal_replay_proof(e := epoch()) else None,
                          what="the journals to prove A replays B's epoch", timeout=90)
        except AssertionError as exc:  # say what A's rbd-mirror shows and what the journals hold
            raise AssertionError(f"{exc}; A's status: {lab.raw_status('a', name)}; "
                                 f"journals: {epoch()}") from None
        took = time.monotonic() - started
        assert proven.a_client is not None and proven.a_client.position is not None
        assert proven.b_epoch is not None and proven.a_client.position.tag_tid == proven.b_epoch.tid
        # A client taking B's exclusive lock opens an empty epoch of B's own: A cannot commit
        # into it, and the proof still holds through it.
        import rbd

        with lab.connect("b") as admin_b, admin_b.ioctx(lab.pool) as ioctx:
            with rbd.Image(ioctx, name) as image:
                image.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
                image.lock_release()
        locked = epoch()
        assert locked.b_epoch is not None and locked.b_epoch.tid > proven.b_epoch.tid, (
            str(proven), str(locked))
        assert locked.a_client is not None and locked.a_client.position is not None
        assert locked.a_client.position.tag_tid < locked.b_epoch.tid, str(locked)
        assert journal_replay_proof(locked) is not None, (str(locked), locked.b_tags)
        # Reading it again without the image id opens the image: the same journal (positions
        # may move between two reads, B's current epoch does not).
        by_name = pb.journal_header(name)
        by_id = pb.journal_header(name, pb.infos([name])[name].image_id)
        assert by_name is not None and by_id is not None
        assert by_name.newest_tag == by_id.newest_tag == locked.b_epoch, (by_name, by_id)
        print(f"journal proof {took:.1f}s after B's promotion")
        with pytest.raises(ImageNotFoundError):
            pb.journal_header(f"{name}-missing")


def test_the_journals_prove_protection_after_the_flip_back(lab: Lab, names) -> None:
    """After the failback's flip (B demoted, A promoted without force), the journals prove that
    B replays A's current epoch (rule ``protected``, step 2's proof read the other way round)
    as soon as B's rbd-mirror has committed A's promotion event in A's journal: no wait on
    B's status, whose "replaying" Ceph can leave unwritten until its 30 s cycle."""
    from ceph_failback.ceph.rbd_journal import ReplayEpoch
    from ceph_failback.failback.safety import journal_replay_proof, protection_proof

    with replicated_as_failback_client(lab, names) as (name, pa, pb):
        a_uuid, b_uuid = pa.mirror_uuid(), pb.mirror_uuid()

        def epoch(replica: MirrorPool, source: str) -> ReplayEpoch:
            # B replaying A: B's header as the replica's, A's as the source's.
            src = pa if replica is pb else pb
            return ReplayEpoch.read(
                replica.journal_header(name, replica.infos([name])[name].image_id),
                src.journal_header(name, src.infos([name])[name].image_id),
                a_uuid=b_uuid if replica is pb else a_uuid,
                b_uuid=a_uuid if replica is pb else b_uuid,
                source=source, replica="B" if replica is pb else "A")

        pa.demote(name)
        poll(lambda: _try_promote(pb, name), what="promote on site-b")
        lab.write("b", name, pattern(f"{name}-on-b", 4096))
        poll(lambda: journal_replay_proof(epoch(pa, "B")), what="A to replay B's epoch",
             timeout=90)
        pb.demote(name)
        # B demoted, A not promoted yet: nothing proves B replays A.
        assert protection_proof(None, epoch(pb, "A")) is None
        poll(lambda: _try_promote(pa, name), what="promote back on site-a", timeout=90)
        started = time.monotonic()
        proof = poll(lambda: protection_proof(None, epoch(pb, "A")),
                     what="the journals to prove B replays A's epoch", timeout=60)
        took = time.monotonic() - started
        assert proof.startswith("replaying from A inside A's current epoch"), proof
        status = pb.statuses([name])[name]
        print(f"protection proven by the journals {took:.1f}s after A's promote; B's status "
              f"then: {status.local.summary()}")


def test_the_parallel_mirror_info_read_answers_as_librbd(
    lab: Lab, pools: tuple[MirrorPool, MirrorPool], names
) -> None:
    """Issue 17's fast path against librbd's sequential listing, on images in every promotion
    state of journal mode: primary (A) and replaying (B), demoted on A and not yet promoted
    (orphan), flipped (A non-primary, B primary), force-promoted on B (both primary), a
    journaled image that is not mirrored, and the rest of the pool as earlier tests left it."""
    pa, pb = pools
    images = names(4)
    for name in images:
        lab.create_image(name, data=pattern(name, 4096))
    lab.wait_replicated(images, timeout=180)
    replicating, demoted, flipped, forced = images
    plain = f"{forced}-plain"
    lab.create_image(plain, mirrored=False)
    with lab.connect("a") as a, a.ioctx(lab.pool) as ioctx:
        import rbd
        with rbd.Image(ioctx, plain) as image:  # pool mode mirrors every journaled image
            image.update_features(rbd.RBD_FEATURE_JOURNALING, False)
    pa.demote(demoted)
    poll(lambda: pb.status(demoted).local.peer_demoted(), what="site-b to see the demotion")
    pa.demote(flipped)
    poll(lambda: _try_promote(pb, flipped), what="non-forced promote on site-b")
    lab.unplanned_disaster([forced])
    for pool in (pa, pb):
        counts = assert_fast_infos_match_librbd(pool, [replicating, demoted, flipped, forced])
        # Journal mode: decided from the journals, not by asking librbd again.
        assert counts["journal"] >= 4 and counts["librbd"] == 0, counts
    infos_a, infos_b = pa.images(), pb.images()
    assert plain not in infos_a
    assert [infos_a[n].primary for n in (replicating, demoted, flipped, forced)] == [
        True, False, False, True]
    assert [infos_b[n].primary for n in (replicating, demoted, flipped, forced)] == [
        False, False, True, True]
    assert {infos_a[n].mode for n in (replicating, demoted, flipped, forced)} == {"journal"}


def test_a_flip_before_the_old_primary_s_rbd_mirror_registered_splits_it_for_good(
        lab: Lab, names) -> None:
    """Rule ``peer-registered`` on real Ceph (the cause of two lab tests that failed
    "sometimes" in CI: images flipped within seconds of their creation). Site A's rbd-mirror
    registers its client in B's journal only when it next prepares the image. Registered after
    B's promotion, it starts at B's newest position, sees only B's new epoch, and A reports
    split-brain for good; registered before, A follows B. The rule tells the two apart before
    the promote (sites A and B swap roles in its names: B is promoted here). A's rbd-mirror is
    stopped from before the late image exists until after the flip."""
    from ceph_failback.failback.safety import Names, peer_unregistered

    late, early = names(2)
    rules = Names("site-b", "site-a", lab.pool)
    lab.create_image(early, data=pattern(early, 4096))
    lab.wait_replicated([early])  # with A registered in B's journal
    with lab.connect("a") as a, lab.connect("b") as b:
        pa, pb = a.pool(lab.pool), b.pool(lab.pool)
        a_uuid, b_uuid = pa.mirror_uuid(), pb.mirror_uuid()
        lab.stop_rbd_mirror("a")
        try:
            lab.create_image(late, data=pattern(late, 4096))

            def on_b() -> bool:
                st = lab.raw_status("b", late)
                return bool(st.get("up") and "replaying" in str(st.get("description"))
                            and lab.checksum("b", late) == lab.checksum("a", late))

            poll(on_b, what="B to replicate the image with A's rbd-mirror stopped", timeout=120)
            why = {n: peer_unregistered(pb.journal_header(n), a_uuid, rules)
                   for n in (late, early)}
            assert why[early] is None and why[late] is not None, why
            assert "site-a's rbd-mirror is not registered in site-b's journal" in why[late]
            for name in (late, early):
                pa.demote(name)
                poll(lambda n=name: _try_promote(pb, n), what=f"promote {name} on site-b")
        finally:
            lab.start_rbd_mirror("a")

        def outcome(name: str) -> str | None:
            if "split-brain" in str(lab.raw_status("a", name).get("description")):
                return "split"
            epoch = ReplayEpoch.read(pa.journal_header(name), pb.journal_header(name),
                                     a_uuid=a_uuid, b_uuid=b_uuid)
            return "follows" if journal_replay_proof(epoch) else None

        try:
            assert poll(lambda: outcome(early), what="A to follow B", timeout=90) == "follows"
            assert poll(lambda: outcome(late), what="A's outcome", timeout=90) == "split"
            # The cause, in B's journal: A's client starts in B's new epoch (its promotion).
            header = pb.journal_header(late)
            assert header is not None and header.newest_tag is not None
            client = header.client(a_uuid)
            assert client is not None and client.position is not None
            assert client.position.tag_tid == header.newest_tag.tid, (client, header.chain())
        finally:
            pa.resync(late)  # leave the shared lab with no split-brained copy
