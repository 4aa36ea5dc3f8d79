"""Bad input, on the real lab with the oned stand-ins: each one is a clear error (its class, the
site/pool/image/VM it concerns) from ``Failback.plan()``/``check()``/``run()`` and from the command
line (exit codes 2, 3, 5), before anything changed: image roles and data on both sites, VM states,
the stand-ins' action records, the journal.

The module shares one world: after an unplanned disaster, VM ``good`` runs on B; VM ``extra`` runs
on B with one more disk that site A does not have; VM ``unmirrored`` has an image whose copy on A
is no longer mirrored. Scratch pools (created here, removed at the end) stand for a pool without
mirroring and without peers; the shared pool's mirroring is never touched.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ceph_failback.ceph import CephConfig, CephSite
from ceph_failback.cli import main
from ceph_failback.errors import (
    CephConnectionError,
    ConfigurationError,
    FailbackError,
    OpenNebulaAuthenticationError,
    OpenNebulaConnectionError,
    PoolNotFoundError,
    SafetyError,
)
from ceph_failback.failback import Failback, Journal, Site, Timeouts
from ceph_failback.lab import Lab
from ceph_failback.lab.lab import FAILBACK_CLIENT
from ceph_failback.lab.oned import Delays, OnedStandIn
from ceph_failback.lab.world import VMPair, World
from ceph_failback.opennebula import OpenNebulaSite

from .helpers import pattern

TIMEOUTS = Timeouts(settle=30, resync=150, mirror=90, promote=90, terminate=30, resume=30,
                    poll=0.5)
ADMIN = "client.admin"


# -- the shared world --------------------------------------------------------------------------


class BadWorld:
    """The module's world and what each test needs to know about it."""

    def __init__(self, world: World, good: VMPair, extra: VMPair, extra_image: str,
                 unmirrored: VMPair, loner_b: int) -> None:
        self.world = world
        self.lab = world.lab
        self.good = good
        self.extra = extra
        self.extra_image = extra_image  # exists on B only, not mirrored
        self.unmirrored = unmirrored
        self.loner_b = loner_b  # a VM on B with no disk in the pool
        self.a = world.lab.site_a.name
        self.b = world.lab.site_b.name


def _create_unmirrored(lab: Lab, name: str, site: str) -> None:
    """An image without journaling: pool-mode mirroring leaves it alone."""
    import rbd

    with lab.site(site).admin().ioctx(lab.pool) as ioctx:
        rbd.RBD().create(ioctx, name, 4 << 20, old_format=False,
                         features=rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK)


def _fail_over_with_extra_disk(world: World, pair: VMPair, extra_image: str) -> VMPair:
    """As World.disaster, but the VM re-created on B also gets ``extra_image`` (B's only)."""
    lab = world.lab
    OpenNebulaSite(lab.site_a.name, world.oned_a.endpoint, credentials=world.oned_a.session,
                   poll_interval=0.05).poweroff(pair.vm_a)
    lab.unplanned_disaster(pair.images, new_data=pattern("extra-on-b", 4096))
    _create_unmirrored(lab, extra_image, "b")
    ids = [world.oned_b.add_image(f"{pair.name}-{img}", persistent=True,
                                  source=f"{lab.pool}/{img}")
           for img in (*pair.images, extra_image)]
    vm_b = world.oned_b.add_vm(pair.name, disks=ids, state="RUNNING")
    moved = VMPair(pair.name, pair.vm_a, vm_b, pair.images)
    world.vms[world.vms.index(pair)] = moved
    return moved


@pytest.fixture(scope="module")
def bad(lab: Lab) -> Iterator[BadWorld]:
    import rbd

    with World(lab, delays=Delays.uniform(0.05)) as world:
        good = world.add_vm("good", data=pattern("good"))
        extra = world.add_vm("extra", data=pattern("extra"))
        unmirrored = world.add_vm("unmirrored", data=pattern("unmirrored"))
        world.wait_replicated()
        extra_image = f"one-extra-{uuid.uuid4().hex[:8]}"
        extra = _fail_over_with_extra_disk(world, extra, extra_image)
        world.disaster("unplanned", vms=[good, unmirrored], new_data=pattern("on-b", 4096))
        good, _, unmirrored = world.vms
        # The copy on A stops being mirrored (journaling off; A is still primary after the
        # unplanned disaster, so it may change its features).
        with lab._image("a", unmirrored.images[0]) as image:
            image.update_features(rbd.RBD_FEATURE_JOURNALING, False)
        loner_b = world.oned_b.add_vm("loner", state="RUNNING")
        try:
            yield BadWorld(world, good, extra, extra_image, unmirrored, loner_b)
        finally:
            for name, sites in [(extra_image, "b"), *((i, "ba") for i in world.all_images())]:
                for s in sites:
                    try:
                        lab.remove_image(name, site=s)
                    except Exception:  # best effort: rbd-mirror may have removed it already
                        pass


def state(bad: BadWorld) -> dict[str, Any]:
    """Everything a failback would change: image roles and data on both sites, VM states, the
    stand-ins' actions and deletions."""
    lab, world = bad.lab, bad.world
    images = {}
    for name in world.all_images():
        images[name] = (lab.is_primary("a", name), lab.is_primary("b", name),
                        lab.checksum("a", name), lab.checksum("b", name))
    images[bad.extra_image] = (lab.image_exists(bad.extra_image, site="a"),
                               lab.checksum("b", bad.extra_image))
    return {
        "images": images,
        "vms_a": {p.name: world.oned_a.vm_state(p.vm_a) for p in world.vms},
        "vms_b": {p.name: world.oned_b.vm_state(p.vm_b) for p in world.vms if p.vm_b is not None},
        "loner": world.oned_b.vm_state(bad.loner_b),
        "actions": (list(world.oned_a.actions), list(world.oned_b.actions)),
        "deleted": (list(world.oned_a.deleted_images), list(world.oned_b.deleted_images)),
    }


ACTION_EVENTS = ("intent", "done", "failed", "started")


def assert_unchanged(bad: BadWorld, before: dict[str, Any], *journals: Path) -> None:
    assert state(bad) == before
    for path in journals:
        if path.exists():
            records = Journal(path).find()
            assert not [r for r in records if r.event in ACTION_EVENTS], records


@pytest.fixture
def before(bad: BadWorld) -> dict[str, Any]:
    return state(bad)


@pytest.fixture
def sites(bad: BadWorld) -> Iterator[Callable[..., Site]]:
    """A factory of failback sites (closed at the end): the lab's site ``which`` with its
    stand-in, as the failback client unless told otherwise."""
    made: list[Site] = []

    def make(which: str, *, ceph: CephConfig | None = None, client: str = FAILBACK_CLIENT,
             credentials: str | None = None, endpoint: str | None = None,
             verify: bool | str = True) -> Site:
        cluster = bad.lab.site(which)
        oned = bad.world.oned_a if which == "a" else bad.world.oned_b
        one = OpenNebulaSite(cluster.name, endpoint or oned.endpoint,
                             credentials=credentials or oned.session, verify=verify,
                             timeout=10, poll_interval=0.1)
        site = Site(cluster.name, CephSite(cluster.name, ceph or cluster.ceph_config(
            client, mount_timeout=3)), one)
        made.append(site)
        return site

    yield make
    for site in made:
        site.ceph.close()


def failback(bad: BadWorld, sites: Callable[..., Site], journal: Path, *,
             a: dict[str, Any] | None = None, b: dict[str, Any] | None = None,
             pool: str | None = None, **kw: Any) -> Failback:
    return Failback(sites("a", **(a or {})), sites("b", **(b or {})), pool or bad.lab.pool,
                    journal=journal, timeouts=TIMEOUTS, **kw)


def write_config(bad: BadWorld, tmp_path: Path, *, pool: str | None = None,
                 a: dict[str, str] | None = None, b: dict[str, str] | None = None) -> Path:
    """A TOML config for the world (failback client, the stand-ins, an auth file per site);
    ``a``/``b`` replace or add keys of a site's table."""
    sections = []
    for which, oned, extra in (("a", bad.world.oned_a, a), ("b", bad.world.oned_b, b)):
        cluster = bad.lab.site(which)
        auth = tmp_path / f"{which}.auth"
        auth.write_text(oned.session + "\n")
        keys = {"name": cluster.name, "ceph_conf": str(cluster.conf_path),
                "ceph_client": FAILBACK_CLIENT,
                "ceph_keyring": str(cluster.keyring_for(FAILBACK_CLIENT)),
                "one_endpoint": oned.endpoint, "one_auth": str(auth), **(extra or {})}
        sections.append(f"[site.{which}]\n" + "".join(
            f"{k} = {json.dumps(v) if isinstance(v, str) else str(v).lower()}\n"
            for k, v in keys.items()))
    path = tmp_path / "failback.toml"
    path.write_text(f'pool = "{pool or bad.lab.pool}"\njournal = "journal.jsonl"\n\n'
                    + "\n".join(sections) + "\n[timeouts]\nsettle = 30\nterminate = 30\n")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = cli(capsys, *argv, "--json")
    doc = json.loads(out)  # exactly one JSON document, even on errors
    assert doc.get("exit_code", code) == code, doc
    return code, doc


def says(exc: BaseException, *words: str) -> None:
    text = str(exc)
    for word in words:
        assert word in text, (word, text)


def blockers(fb: Failback) -> dict[tuple[str, str], str]:
    return {(b.kind, b.target): b.message for b in fb.plan().blockers}


# -- scratch pools -----------------------------------------------------------------------------


def create_pool(lab: Lab, name: str, sites: str = "ab") -> None:
    import rbd

    for which in sites:
        admin = lab.site(which).admin()
        admin.mon_command({"prefix": "osd pool create", "pool": name, "pg_num": 8})
        with admin.ioctx(name) as ioctx:
            rbd.RBD().pool_init(ioctx, True)


def delete_pool(lab: Lab, name: str, sites: str = "ab") -> None:
    """Remove a scratch pool, allowing pool deletion only for that moment."""
    for which in sites:
        admin = lab.site(which).admin()
        admin.mon_command({"prefix": "config set", "who": "mon",
                           "name": "mon_allow_pool_delete", "value": "true"})
        try:
            admin.mon_command({"prefix": "osd pool rm", "pool": name, "pool2": name,
                               "yes_i_really_really_mean_it": True})
        finally:
            admin.mon_command({"prefix": "config rm", "who": "mon",
                               "name": "mon_allow_pool_delete"})


def set_mirror_mode(lab: Lab, pool: str, mode: str, sites: str = "ab") -> None:
    import rbd

    value = {"disabled": rbd.RBD_MIRROR_MODE_DISABLED, "pool": rbd.RBD_MIRROR_MODE_POOL}[mode]
    for which in sites:
        with lab.site(which).admin().ioctx(pool) as ioctx:
            rbd.RBD().mirror_mode_set(ioctx, value)


@pytest.fixture(scope="module")
def scratch_pool(lab: Lab) -> Iterator[str]:
    """A pool on both sites, with no image, not mirrored (tests enable mirroring in it and
    disable it again)."""
    name = f"scratch-{uuid.uuid4().hex[:6]}"
    create_pool(lab, name)
    try:
        yield name
    finally:
        set_mirror_mode(lab, name, "disabled")
        delete_pool(lab, name)


# -- wrong pool --------------------------------------------------------------------------------


def test_wrong_pool(bad: BadWorld, sites, tmp_path: Path, before,
                    capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    fb = failback(bad, sites, journal, pool="no-such-pool")
    for call in (fb.plan, fb.check, fb.run):
        with pytest.raises(PoolNotFoundError) as info:
            call()
        assert info.value.site == bad.a and info.value.pool == "no-such-pool"
        says(info.value, f"site {bad.a!r}", "pool 'no-such-pool'", "does not exist")
    config = write_config(bad, tmp_path)
    code, doc = cli_json(capsys, "plan", "-c", str(config), "--pool", "no-such-pool")
    assert code == 2 and doc["type"] == "PoolNotFoundError"
    assert doc["site"] == bad.a and doc["pool"] == "no-such-pool"
    code, out, err = cli(capsys, "run", "-c", str(config), "--pool", "no-such-pool", "--yes")
    assert code == 2 and f"site {bad.a!r}, pool 'no-such-pool'" in err and "Traceback" not in err
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


def test_pool_missing_on_site_b_only(bad: BadWorld, sites, tmp_path: Path, before) -> None:
    name = f"a-only-{uuid.uuid4().hex[:6]}"
    create_pool(bad.lab, name, "a")
    try:
        fb = failback(bad, sites, tmp_path / f"{tmp_path.name}-j.jsonl", pool=name,
                      a={"client": ADMIN}, b={"client": ADMIN})
        with pytest.raises(PoolNotFoundError) as info:
            fb.run()
        assert info.value.site == bad.b and info.value.pool == name
        says(info.value, f"site {bad.b!r}", f"pool {name!r}")
    finally:
        delete_pool(bad.lab, name, "a")
    assert_unchanged(bad, before, tmp_path / f"{tmp_path.name}-j.jsonl")


# -- unknown image, unknown VM -----------------------------------------------------------------


def test_unknown_image(bad: BadWorld, sites, tmp_path: Path, before,
                       capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    fb = failback(bad, sites, journal, images=["no-such-image"])
    found = blockers(fb)
    message = found[("image-missing", "image:no-such-image")]
    assert bad.a in message and bad.b in message
    for call in (fb.check, fb.run):
        with pytest.raises(SafetyError) as info:
            call()
        says(info.value, "image:no-such-image", "not a mirrored image", bad.a, bad.b)
    config = write_config(bad, tmp_path)
    code, doc = cli_json(capsys, "plan", "-c", str(config), "--image", "no-such-image")
    assert code == 3 and not doc["ok"]
    assert any(b["target"] == "image:no-such-image" for b in doc["blockers"]), doc["blockers"]
    code, out, err = cli(capsys, "run", "-c", str(config), "--image", "no-such-image", "--yes")
    assert code == 3 and "image:no-such-image" in out + err and "Nothing was changed" in err
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


def test_unknown_vm_id(bad: BadWorld, sites, tmp_path: Path, before,
                       capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    # An id that exists nowhere, the id of the VM on A (a common slip: --vm takes B's ids), a VM
    # of B that uses no image of the pool, and an explicit pair naming a VM that does not exist.
    missing = 99999
    assert bad.good.vm_a != bad.good.vm_b
    fb = failback(bad, sites, journal, vms=[missing, bad.loner_b])
    found = blockers(fb)
    assert f"no VM {missing} exists on {bad.b}" in found[("unknown-vm", f"vm:{bad.b}:{missing}")]
    loner = found[("unknown-vm", f"vm:{bad.b}:{bad.loner_b}")]
    assert "shares no persistent image" in loner and bad.lab.pool in loner
    with pytest.raises(SafetyError) as info:
        fb.run()
    says(info.value, f"vm:{bad.b}:{missing}", f"vm:{bad.b}:{bad.loner_b}")
    fb = failback(bad, sites, journal, pairs={missing: bad.good.vm_a})
    assert any(k == "unknown-vm" and str(missing) in t + m for (k, t), m in blockers(fb).items())
    with pytest.raises(SafetyError):
        fb.check()
    config = write_config(bad, tmp_path)
    code, doc = cli_json(capsys, "plan", "-c", str(config), "--vm", str(missing))
    assert code == 3
    assert {(b["kind"], b["target"]) for b in doc["blockers"]} >= {
        ("unknown-vm", f"vm:{bad.b}:{missing}")}
    code, out, err = cli(capsys, "run", "-c", str(config), "--vm", str(missing), "--yes")
    assert code == 3 and f"no VM {missing} exists on {bad.b}" in out + err
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


# -- mirroring and peers -----------------------------------------------------------------------


@pytest.mark.parametrize("mirrored_on", ["", "a", "ab"],
                         ids=["without-mirroring", "mirrored-on-a-only", "without-peers"])
def test_pool_without_mirroring_or_peers(bad: BadWorld, sites, scratch_pool: str, mirrored_on: str,
                                         tmp_path: Path, before,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A pool (here a scratch pool, as client.admin: the failback client's caps cover the
    shared pool only) that is not mirrored on a site, or mirrored with no peer."""
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    set_mirror_mode(bad.lab, scratch_pool, "pool", mirrored_on)
    try:
        fb = failback(bad, sites, journal, pool=scratch_pool, a={"client": ADMIN},
                      b={"client": ADMIN})
        found = blockers(fb)
        expected = {}
        for which, name in (("a", bad.a), ("b", bad.b)):
            expected[("mirroring-not-enabled", f"pool@{name}")] = (
                "the pool has no mirror peer" if which in mirrored_on
                else "mirroring is not enabled")
        for key, words in expected.items():
            assert words in found[key], (key, found)
            assert f"pool {scratch_pool!r}" in found[key] and key[1].split("@")[1] in found[key]
        for call in (fb.check, fb.run):
            with pytest.raises(SafetyError) as info:
                call()
            says(info.value, "mirroring-not-enabled", scratch_pool, bad.a, bad.b)
        admin = {"ceph_client": ADMIN,
                 "ceph_keyring": str(bad.lab.site_a.keyring_for(ADMIN))}
        config = write_config(bad, tmp_path, pool=scratch_pool, a=admin, b={
            **admin, "ceph_keyring": str(bad.lab.site_b.keyring_for(ADMIN))})
        code, doc = cli_json(capsys, "plan", "-c", str(config))
        assert code == 3
        assert {(b["kind"], b["target"]) for b in doc["blockers"]} >= set(expected)
        code, out, err = cli(capsys, "run", "-c", str(config), "--yes")
        assert code == 3 and "mirroring-not-enabled" in out + err
    finally:
        set_mirror_mode(bad.lab, scratch_pool, "disabled")
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


# -- image sets that differ between the sites --------------------------------------------------


def test_vm_on_b_has_a_disk_that_site_a_lacks(bad: BadWorld, sites, tmp_path: Path, before,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    fb = failback(bad, sites, journal, vms=[bad.extra.vm_b])
    found = blockers(fb)
    target = f"image:{bad.extra_image}"
    assert bad.a in found[("image-missing", target)]
    assert ("no-vm-on-a", target) in found, found
    assert not any(t == f"image:{bad.extra.images[0]}" for _, t in found), found
    for call in (fb.check, fb.run):
        with pytest.raises(SafetyError) as info:
            call()
        says(info.value, target, "not a mirrored image", bad.a)
    config = write_config(bad, tmp_path)
    code, out, err = cli(capsys, "run", "-c", str(config), "--vm", str(bad.extra.vm_b), "--yes")
    assert code == 3 and target in out and "REFUSED" in out
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


def test_image_mirrored_on_b_but_not_on_a(bad: BadWorld, sites, tmp_path: Path, before) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    (image,) = bad.unmirrored.images
    fb = failback(bad, sites, journal, vms=[bad.unmirrored.vm_b])
    message = blockers(fb)[("image-missing", f"image:{image}")]
    assert f"not a mirrored image on {bad.a} " in message and bad.b not in message
    with pytest.raises(SafetyError) as info:
        fb.run()
    says(info.value, f"image:{image}", bad.a)
    # The step methods, called alone, refuse it too.
    with pytest.raises(FailbackError) as step:
        fb.demote_site_a()
    says(step.value, image, bad.a)
    assert_unchanged(bad, before)


# -- Ceph configuration and keys ---------------------------------------------------------------


def test_wrong_ceph_conf(bad: BadWorld, sites, tmp_path: Path, before,
                         capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    keyring = str(bad.lab.site_a.keyring_for(FAILBACK_CLIENT))

    def conf_a(path: Path, **kw: Any) -> dict[str, Any]:
        return {"ceph": CephConfig(conffile=str(path), client=FAILBACK_CLIENT,
                                   keyring=kw.pop("keyring", keyring), mount_timeout=2, **kw)}

    # A path that does not exist.
    with pytest.raises(ConfigurationError) as info:
        failback(bad, sites, journal, a=conf_a(tmp_path / "nope.conf")).plan()
    assert info.value.site == bad.a
    says(info.value, "nope.conf", "does not exist")
    # A file that is not a Ceph configuration.
    garbage = tmp_path / "garbage.conf"
    garbage.write_bytes(b"[global\nmon_host = \x00\x01 ]]\n")
    with pytest.raises(ConfigurationError) as info:
        failback(bad, sites, journal, a=conf_a(garbage)).run()
    says(info.value, f"site {bad.a!r}", "cannot load Ceph configuration", "garbage.conf")
    # A configuration whose monitor does not answer: bounded by the mount timeout.
    dead = tmp_path / "dead.conf"
    dead.write_text(bad.lab.site_a.conf_path.read_text().replace(
        f"v2:{bad.lab.site_a.ip}:3300", f"v2:{bad.lab.site_a.ip}:3999"))
    started = time.monotonic()
    with pytest.raises(CephConnectionError) as conn:
        failback(bad, sites, journal, a=conf_a(dead)).check()
    assert time.monotonic() - started < 10
    says(conn.value, f"site {bad.a!r}", "cannot connect as client.failback")
    # Site A's name, site B's cluster (a copy of B's conf): the two sites are one cluster.
    copy = tmp_path / "copy-of-b.conf"
    shutil.copy(bad.lab.site_b.conf_path, copy)
    wrong = conf_a(copy, keyring=str(bad.lab.site_b.keyring_for(FAILBACK_CLIENT)))
    for call in ("plan", "run", "demote_site_a"):
        with pytest.raises(ConfigurationError) as same:
            getattr(failback(bad, sites, journal, a=wrong), call)()
        says(same.value, bad.a, bad.b, "same Ceph cluster", "copy-of-b.conf")
    # The command line: a missing file (exit 2), the same cluster through two paths (exit 2).
    config = write_config(bad, tmp_path, a={"ceph_conf": str(tmp_path / "nope.conf")})
    code, doc = cli_json(capsys, "plan", "-c", str(config))
    assert code == 2 and doc["site"] == bad.a and "site.a.ceph_conf" in doc["error"]
    config = write_config(bad, tmp_path, a={"ceph_conf": str(copy), "ceph_keyring": str(
        bad.lab.site_b.keyring_for(FAILBACK_CLIENT))})
    code, doc = cli_json(capsys, "run", "-c", str(config), "--yes")
    assert code == 2 and doc["type"] == "ConfigurationError" and "same Ceph cluster" in doc["error"]
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


def random_ceph_key() -> str:
    """A well-formed cephx secret (what ``ceph-authtool --gen-print-key`` prints)."""
    now = time.time()
    blob = struct.pack("<HIIH", 1, int(now), 0, 16) + os.urandom(16)
    return base64.b64encode(blob).decode()


def test_wrong_keyring(bad: BadWorld, sites, tmp_path: Path, before,
                       capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    conf = str(bad.lab.site_b.conf_path)

    def keyring_b(path: Path) -> dict[str, Any]:
        return {"ceph": CephConfig(conffile=conf, client=FAILBACK_CLIENT, keyring=str(path),
                                   mount_timeout=3)}

    admin_key = bad.lab.site_b.keyring_for(ADMIN).read_text()
    # A path that does not exist.
    with pytest.raises(ConfigurationError) as info:
        failback(bad, sites, journal, b=keyring_b(tmp_path / "gone.keyring")).plan()
    assert info.value.site == bad.b
    says(info.value, "gone.keyring", "does not exist")
    # Another client's keyring: named, its key never shown.
    with pytest.raises(ConfigurationError) as info:
        failback(bad, sites, journal, b=keyring_b(bad.lab.site_b.keyring_for(ADMIN))).run()
    says(info.value, f"site {bad.b!r}", "holds no key for client.failback", "client.admin")
    key = admin_key.split("key = ")[1].split()[0]
    assert key not in str(info.value)
    # Not a keyring at all.
    garbage = tmp_path / "garbage.keyring"
    garbage.write_text("this is not a keyring\n")
    with pytest.raises(ConfigurationError) as info:
        failback(bad, sites, journal, b=keyring_b(garbage)).plan()
    says(info.value, f"site {bad.b!r}", "not a keyring")
    # The right entity with a wrong key: the cluster refuses it.
    wrong_key = random_ceph_key()
    wrong = tmp_path / "wrong.keyring"
    wrong.write_text(f"[client.failback]\n\tkey = {wrong_key}\n")
    with pytest.raises(CephConnectionError) as denied:
        failback(bad, sites, journal, b=keyring_b(wrong)).check()
    says(denied.value, f"site {bad.b!r}", "authentication as client.failback failed")
    assert wrong_key not in str(denied.value)
    # The command line: a missing keyring is bad configuration (2), a refused key a site that
    # refused the credentials (5).
    config = write_config(bad, tmp_path, b={"ceph_keyring": str(tmp_path / "gone.keyring")})
    code, doc = cli_json(capsys, "plan", "-c", str(config))
    assert code == 2 and doc["site"] == bad.b and "site.b.ceph_keyring" in doc["error"]
    config = write_config(bad, tmp_path, b={"ceph_keyring": str(wrong)})
    code, out, err = cli(capsys, "run", "-c", str(config), "--yes")
    assert code == 5 and f"site {bad.b!r}" in err and "authentication" in err
    assert wrong_key not in out + err
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


# -- OpenNebula credentials and https ----------------------------------------------------------


def test_wrong_opennebula_credentials(bad: BadWorld, sites, tmp_path: Path, before,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    wrong = f"oneadmin:wrong-{uuid.uuid4().hex}"
    fb = failback(bad, sites, journal, a={"credentials": wrong})
    for call in (fb.plan, fb.run):
        with pytest.raises(OpenNebulaAuthenticationError) as info:
            call()
        assert info.value.site == bad.a
        says(info.value, f"site {bad.a!r}", "rejected the credentials", "'oneadmin'")
        assert wrong.split(":")[1] not in str(info.value)
    # oned refusing every login (the stand-in's fault) at site B.
    bad.world.oned_b.reject_credentials()
    try:
        with pytest.raises(OpenNebulaAuthenticationError) as info:
            failback(bad, sites, journal).run()
        assert info.value.site == bad.b
        config = write_config(bad, tmp_path)
        code, doc = cli_json(capsys, "run", "-c", str(config), "--yes")
        assert code == 5 and doc["type"] == "OpenNebulaAuthenticationError"
        assert doc["site"] == bad.b and "ONE_AUTH" in doc["hint"]
    finally:
        bad.world.oned_b.reject_credentials(False)
    # A wrong password in the auth file.
    config = write_config(bad, tmp_path)
    (tmp_path / "a.auth").write_text(wrong + "\n")
    code, out, err = cli(capsys, "plan", "-c", str(config))
    assert code == 5 and f"site {bad.a!r}" in err and "rejected the credentials" in err
    assert wrong.split(":")[1] not in out + err
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


@pytest.fixture
def tls_oned(bad: BadWorld, tmp_path: Path) -> Iterator[tuple[OnedStandIn, Path]]:
    """An oned stand-in for site B serving https with a self-signed certificate."""
    import ssl
    import subprocess

    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # noqa: S603 - fixed arguments
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj",
         "/CN=oned stand-in", "-addext", "subjectAltName=IP:127.0.0.1", "-addext",
         "basicConstraints=critical,CA:TRUE"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with OnedStandIn(name=bad.b, ssl_context=context) as server:
        yield server, cert


def test_https_certificate_failure(bad: BadWorld, sites, tls_oned, tmp_path: Path, before,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    server, cert = tls_oned
    journal = tmp_path / f"{tmp_path.name}-j.jsonl"
    fb = failback(bad, sites, journal, b={"endpoint": server.endpoint,
                                          "credentials": server.session})
    with pytest.raises(OpenNebulaConnectionError) as info:
        fb.run()
    assert info.value.site == bad.b
    says(info.value, f"site {bad.b!r}", server.endpoint, "failed verification")
    assert "self-signed" in str(info.value) or "self signed" in str(info.value)
    assert "one_verify" in (info.value.hint or "") and "verify=False" in (info.value.hint or "")
    assert server.calls == []  # nothing, credentials included, was sent to it
    auth = tmp_path / "tls.auth"
    auth.write_text(server.session + "\n")
    config = write_config(bad, tmp_path, b={"one_endpoint": server.endpoint,
                                            "one_auth": str(auth)})
    code, doc = cli_json(capsys, "run", "-c", str(config), "--yes")
    assert code == 5 and doc["type"] == "OpenNebulaConnectionError" and doc["site"] == bad.b
    assert "failed verification" in doc["error"] and "one_verify" in doc["hint"]
    # With the site's CA bundle the same endpoint is trusted.
    assert sites("b", endpoint=server.endpoint, credentials=server.session,
                 verify=str(cert)).one.version()
    assert_unchanged(bad, before, journal, tmp_path / f"{tmp_path.name}-journal.jsonl")


# -- and the same world, with good input -------------------------------------------------------


def test_good_input_on_the_same_world_plans_cleanly(bad: BadWorld, sites, tmp_path: Path,
                                                    before) -> None:
    """The errors above came from the bad input, not from the world: VM ``good`` plans fine."""
    fb = failback(bad, sites, tmp_path / f"{tmp_path.name}-j.jsonl", vms=[bad.good.vm_b])
    plan = fb.plan()
    assert plan.ok, plan
    assert {i.name for i in plan.images} == set(bad.good.images)
    assert_unchanged(bad, before, tmp_path / f"{tmp_path.name}-j.jsonl")
