"""A failback over several Ceph pools (issue 13 case 2): OpenNebula sites have several Ceph
datastores, and a VM's disks may be in several of them. One failback covers every pool its VMs
use: images named ``pool/image``, each pool's lock held, each pool's mirroring checked."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.ceph.lock import Holder, _identity
from ceph_failback.ceph.pools import PoolLocks, PoolSet, split_key
from ceph_failback.errors import (
    ConfigurationError,
    JournalError,
    LockedError,
    PoolNotFoundError,
    SafetyError,
)
from ceph_failback.failback.journal import Journal
from ceph_failback.opennebula.mapping import map_sites
from ceph_failback.testing import MemoryWorld

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"
POOLS = ["one", "ssd"]


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld(other_pools=("ssd",)) as w:
        w.add_vm("db", disks=2, elsewhere="ssd")  # a disk in each pool's datastore
        w.add_vm("web")
        w.disaster("unplanned", new_data=NEW)
        yield w


def calls(world: MemoryWorld) -> list[tuple[str, str, str, str]]:
    return [(pool, *c) for pool, m in world.cephs.items() for c in m.calls]


def test_one_failback_brings_every_pool_of_its_vms_home(world: MemoryWorld,
                                                        tmp_path: Path) -> None:
    db, web = world.vms
    assert db.other is not None
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    plan = fb.plan()
    assert plan.ok, plan.blockers
    keys = {f"one/{i}" for i in world.images()} | {f"ssd/{db.other}"}
    assert {i.name for i in plan.images} == keys
    report = fb.run()
    assert report.complete, report
    assert {i.name for i in report.images if i.resynced} == keys
    for key in keys:
        pool, image = split_key(key)
        model = world.cephs[pool]
        assert model.is_primary("site-a", image) and not model.is_primary("site-b", image), key
        want = NEW if pool == "one" else NEW + b"@ssd"
        assert model.data("site-a", image) == want, key
        assert ("site-a", "promote-forced", image) not in model.calls
    assert world.oned_a.vm_state(db.vm_a) == ("ACTIVE", "RUNNING")
    assert world.oned_b.vm_state(db.vm_b)[0] == "DONE"
    assert world.oned_a.vm_state(web.vm_a) == ("ACTIVE", "RUNNING")
    assert all(not m.locks for m in world.cephs.values())  # each pool's lock released
    targets = {r.target for r in Journal(tmp_path / "j.jsonl").find(step="promote_a",
                                                                     event="done")}
    assert targets == {f"image:{k}" for k in keys}


def test_one_pool_alone_is_refused_and_says_which_pools_to_add(world: MemoryWorld,
                                                               tmp_path: Path) -> None:
    db = world.vms[0]
    fb = world.failback(tmp_path / "j.jsonl")  # pool "one" only
    (refusal,) = [b for b in fb.plan().blockers if b.kind == "other-pool-disk"]
    assert refusal.target == f"vm:site-b:{db.vm_b}" and f"ssd/{db.other}" in refusal.message
    with pytest.raises(SafetyError) as info:
        fb.run()
    assert "['one', 'ssd']" in str(info.value)
    assert calls(world) == [] or all(op not in ("demote", "resync", "promote")
                                     for *_, op, _ in calls(world))
    assert world.oned_b.vm_state(db.vm_b) == ("ACTIVE", "RUNNING")


def test_a_pool_not_mirrored_on_a_site_is_a_blocker_naming_it(world: MemoryWorld,
                                                              tmp_path: Path) -> None:
    world.cephs["ssd"].mirroring["site-a"] = False
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    found = {(b.kind, b.target): b for b in fb.plan().blockers}
    blocker = found[("mirroring-not-enabled", "pool:ssd@site-a")]
    assert "ssd" in blocker.message and "site-a" in blocker.message
    before, actions = calls(world), list(world.oned_b.actions)
    with pytest.raises(SafetyError):
        fb.run()
    assert calls(world) == before and world.oned_b.actions == actions


def test_a_pool_that_does_not_exist_is_an_error_naming_it(world: MemoryWorld,
                                                          tmp_path: Path) -> None:
    fb = world.failback(tmp_path / "j.jsonl", pool=["one", "ssd", "gone"])
    before, actions = calls(world), list(world.oned_b.actions)
    for call in (fb.plan, fb.run):
        with pytest.raises(PoolNotFoundError) as info:
            call()
        assert info.value.pool == "gone" and info.value.site == "site-a"
    assert calls(world) == before and world.oned_b.actions == actions


def test_each_pool_is_locked_and_a_lock_on_any_refuses(world: MemoryWorld,
                                                       tmp_path: Path) -> None:
    other = world.failback(tmp_path / "other.jsonl", pool="ssd")
    with other.locked():
        fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
        assert ("locked", "lock:ssd@site-a") in {(b.kind, b.target) for b in fb.plan().blockers}
        with pytest.raises(LockedError):
            fb.run()
        assert "one" not in world.cephs["one"].locks  # the lock it took first, released
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    with fb.locked():
        assert set(world.cephs["one"].locks) == {"one"} and set(world.cephs["ssd"].locks) == {
            "ssd"}
        with pytest.raises(LockedError):
            with world.failback(tmp_path / "x.jsonl", pool="one").locked():
                pass
        assert fb.lock_holder() is not None and fb.lock_holder() == fb._pool_lock.held
    assert not world.cephs["one"].locks and not world.cephs["ssd"].locks


def test_a_journal_of_another_pool_set_is_refused(world: MemoryWorld, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    world.failback(journal, pool=POOLS).demote_site_a()
    with pytest.raises(JournalError, match="pool\\(s\\) one, ssd, not one "):
        world.failback(journal).plan()
    # The same pools in another order: the same failback.
    assert world.failback(journal, pool=POOLS[::-1]).plan().ok


def test_steps_one_by_one_then_a_run_over_every_pool(world: MemoryWorld, tmp_path: Path) -> None:
    journal = tmp_path / "j.jsonl"
    fb = world.failback(journal, pool=POOLS)
    fb.demote_site_a()
    fb.resync_site_a()
    report = world.failback(journal, pool=POOLS).run()
    assert report.complete, report
    resyncs = [c for c in calls(world) if c[2] == "resync"]
    assert len(resyncs) == len(set(resyncs)) == 4  # never requested twice


@pytest.mark.parametrize("pool", [[], ["one", "one"], ["one/x"], "", ["one+ssd"], ["a,b"]])
def test_bad_pool_lists_are_refused(world: MemoryWorld, tmp_path: Path,
                                    pool: list[str] | str) -> None:
    with pytest.raises(ConfigurationError):
        world.failback(tmp_path / "j.jsonl", pool=pool)


def test_the_mapping_names_images_by_pool_when_there_are_several(world: MemoryWorld) -> None:
    db = world.vms[0]
    vms_a, vms_b = world.site("a").one.vms(), world.site("b").one.vms()
    one = map_sites(vms_a, vms_b, "one", site_a="site-a", site_b="site-b")
    both = map_sites(vms_a, vms_b, POOLS, site_a="site-a", site_b="site-b")
    assert both.pool == "one+ssd"
    pair = both.pair_for_b(db.vm_b)
    assert pair is not None
    assert set(pair.images) == {*(f"one/{i}" for i in db.images), f"ssd/{db.other}"}
    assert not [f for f in both.blockers if f.kind.value == "partial-pair"]
    assert [f for f in one.blockers if f.kind.value == "partial-pair"]


def test_the_pool_set_routes_and_refuses_foreign_names(world: MemoryWorld) -> None:
    db = world.vms[0]
    site = world.site("a")
    pools = PoolSet({p: site.ceph.mirror_pool(p) for p in POOLS})
    infos = pools.infos([f"ssd/{db.other}", f"one/{db.images[0]}"])
    assert {k: v.name for k, v in infos.items()} == {k: k for k in infos}
    assert pools.mirror_uuid(f"ssd/{db.other}") == site.ceph.mirror_pool("ssd").mirror_uuid()
    assert pools.mirror_uuid(f"ssd/{db.other}") != pools.mirror_uuid(f"one/{db.images[0]}")
    (result,) = pools.resync_many(["nowhere/one-1"]).values()  # per image, never raised
    assert not result.ok and "none of this failback's pools" in str(result.error)
    with pytest.raises(Exception, match="none of this failback's pools"):
        pools.status("nowhere/one-1")
    with pytest.raises(ValueError):
        PoolSet({"one": site.ceph.mirror_pool("one")})
    locks = PoolLocks([site.ceph.pool_lock(p) for p in POOLS])
    held = locks.acquire()
    assert locks.held == held and locks.holder() == held
    locks.release()
    assert locks.held is None and locks.holder() is None


def test_the_configuration_file_and_the_command_line_take_several_pools(
        tmp_path: Path) -> None:
    from ceph_failback.config import load_config

    from .test_cli import write_config

    config = write_config(tmp_path)
    text = config.read_text()
    config.write_text(text.replace('pool = "one"', 'pool = ["one", "ssd"]', 1))
    assert load_config(config).pool == ("one", "ssd")
    assert load_config(config, {"pool": ["ssd"]}).pool == "ssd"
    assert load_config(config, {"pool": "one"}).pool == "one"


def test_the_command_line_takes_several_pools_separated_by_commas(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from .test_cli import Fake, run_cli, write_config

    fake = Fake(monkeypatch)
    config = write_config(tmp_path)
    code, _, _ = run_cli(capsys, "plan", "-c", str(config), "--pool", "one,ssd")
    assert code == 0
    (fb,) = fake.instances
    assert fb.pools == ("one", "ssd") and fb.pool == "one+ssd"
    assert fb.journal.path.name == "one.jsonl"  # the file's (a recorded pool set must match)


def _holder(pid: int, *, here: bool) -> Holder:
    """A lock holder record: ``here``, a process of this machine and boot (``pid`` dead)."""
    me = _identity() if here else {"host": "far-away", "machine_id": "m", "boot_id": "b"}
    return Holder(me["host"], pid, "ops", "failback", "2026-12-01T00:00:00+00:00",
                  uuid.uuid4().hex, locker="client.9", machine_id=me["machine_id"],
                  boot_id=me["boot_id"], proc_start="1")


def test_each_pools_lock_is_judged_by_itself(world: MemoryWorld, tmp_path: Path) -> None:
    """A dead holder of one pool's lock (taken over) never hides a live one of another."""
    dead = _holder(2 ** 22 + 7, here=True)  # above pid_max: no such process
    assert dead.is_provably_dead()
    world.cephs["one"].locks["one"] = dead
    world.cephs["ssd"].locks["ssd"] = live = _holder(4242, here=False)
    plan = world.failback(tmp_path / "j.jsonl", pool=POOLS).plan()
    assert [(b.kind, b.target) for b in plan.blockers if b.kind == "locked"] == [
        ("locked", "lock:ssd@site-a")]
    (blocker,) = [b for b in plan.blockers if b.kind == "locked"]
    assert "pool 'ssd'" in blocker.message and "pid 4242" in blocker.message
    assert any("pool 'one'" in w and "taken over" in w for w in plan.warnings)
    assert world.cephs["ssd"].locks["ssd"] is live


def test_unlock_of_several_pools_breaks_only_the_holders_shown(world: MemoryWorld,
                                                               tmp_path: Path) -> None:
    first, second = _holder(11, here=False), _holder(12, here=False)
    world.cephs["one"].locks["one"] = first
    world.cephs["ssd"].locks["ssd"] = second
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    shown = fb.lock_holders()
    assert shown == {"one": first, "ssd": second}
    # ssd's lock changes hands after it was shown: that taking is not broken.
    world.cephs["ssd"].locks["ssd"] = third = _holder(13, here=False)
    assert fb.break_locks(shown) == {"one": first}
    assert "one" not in world.cephs["one"].locks and world.cephs["ssd"].locks["ssd"] is third
    (record,) = Journal(tmp_path / "j.jsonl").find(step="run", event="lock-broken")
    assert record.data["pool"] == "one" and record.data["cookie"] == first.cookie
    assert fb.break_lock() == third and fb.lock_holders() == {}


def test_a_pool_no_rbd_mirror_daemon_serves_is_named(world: MemoryWorld,
                                                     tmp_path: Path) -> None:
    world.cephs["ssd"].daemon_up["site-a"] = False  # A's daemon fails for ssd only
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    (blocker,) = [b for b in fb.plan().blockers if b.kind == "rbd-mirror-down"]
    assert "pool(s) ssd:" in blocker.message and "one" not in blocker.message.split(":")[0]
    assert not fb.daemon_a_ok()
    with pytest.raises(Exception, match="reports pool\\(s\\) ssd"):
        fb.require_daemon_a("the resync")
    world.cephs["ssd"].daemon_up["site-a"] = True
    assert fb.daemon_a_ok()
    assert not [b for b in fb.plan().blockers if b.kind == "rbd-mirror-down"]


@pytest.mark.parametrize("images", [["one-100"], ["nowhere/one-100"], ["ssd/"]])
def test_images_of_several_pools_are_named_pool_slash_image(world: MemoryWorld, tmp_path: Path,
                                                            images: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="pool/image"):
        world.failback(tmp_path / "j.jsonl", pool=POOLS, images=images)
    db = world.vms[0]
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS, images=[f"ssd/{db.other}"])
    assert f"ssd/{db.other}" in fb.scope().images


def test_a_lock_that_cannot_be_broken_does_not_stop_the_others(world: MemoryWorld,
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    """Each pool is tried; each break is journaled as it happens; the error names the pool
    that failed and those broken."""
    from ceph_failback.ceph.pools import lock_parts
    from ceph_failback.errors import CephError

    held = {"one": _holder(11, here=False), "ssd": _holder(12, here=False)}
    for pool, holder in held.items():
        world.cephs[pool].locks[pool] = holder
    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    parts = lock_parts(fb._pool_lock)
    order = list(parts)

    def refused(expected: object = None) -> None:
        raise CephError("Operation not permitted", errno=1)

    monkeypatch.setattr(parts[order[0]], "break_", refused)
    with pytest.raises(CephError) as info:
        fb.break_locks()
    message = str(info.value)
    assert f"{order[0]!r}: Operation not permitted" in message
    assert f"(broken: {order[1]!r})" in message
    records = Journal(tmp_path / "j.jsonl").find(step="run", event="lock-broken")
    assert [r.data["pool"] for r in records] == [order[1]]
    assert fb.lock_holders() == {order[0]: held[order[0]]}


def test_an_unreadable_pools_health_never_hides_an_unserved_one(world: MemoryWorld,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    from ceph_failback.ceph.pools import parts_of, unserved_pools
    from ceph_failback.errors import CephError

    fb = world.failback(tmp_path / "j.jsonl", pool=POOLS)
    parts = parts_of(fb.pool_a())

    def unreadable(**_: object) -> list[object]:
        raise CephError("Permission denied", errno=13)

    monkeypatch.setattr(parts["one"], "daemon_health", unreadable)
    with pytest.raises(CephError, match="Permission denied"):  # nothing else to say
        unserved_pools(fb.pool_a(), beacon_grace=30)
    world.cephs["ssd"].daemon_up["site-a"] = False
    assert unserved_pools(fb.pool_a(), beacon_grace=30) == ["ssd"]
    assert not fb.daemon_a_ok()
