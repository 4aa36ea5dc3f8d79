"""Security on the real lab: secrets never show, and the failback needs only the documented,
least-privileged Ceph client (``client.failback``) on both sites.

The secrets test runs whole failbacks (one from Python, one through the command line) with a
unique OpenNebula password, and searches everything a failback produces for it and for every
Ceph key of the lab: the logs at DEBUG level (every logger), the journals, the reprs (and HTML
reprs) of every object, the errors of forced failures with their chains and tracebacks, and the
command line's stdout and stderr in table and JSON modes.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ceph_failback.ceph import CephConfig, CephSite
from ceph_failback.ceph.connection import caps_hint
from ceph_failback.config import load_config
from ceph_failback.errors import (
    CephConnectionError,
    CephPermissionError,
    OpenNebulaAuthenticationError,
)
from ceph_failback.failback import Failback
from ceph_failback.lab import Lab
from ceph_failback.lab.lab import FAILBACK_CLIENT
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import World
from ceph_failback.opennebula import Credentials, OpenNebulaSite

from .helpers import pattern
from .test_bad_input import ADMIN, create_pool, delete_pool, random_ceph_key
from .test_failback import ROOT, TIMEOUTS, assert_failed_back

#: The capabilities docs/safety.rst documents for the failback's Ceph client (pool ``one``).
DOCUMENTED_CAPS = {
    "mon": "profile rbd",
    "osd": "profile rbd pool=one",
    "mgr": 'profile rbd pool=one, allow command "service status"',
}


def lab_keys(lab: Lab) -> dict[str, str]:
    """Every Ceph key the lab holds (admin, failback, rbd-mirror, daemons), by keyring file."""
    keys = {}
    for site in lab.sites:
        for path in sorted(site.directory.rglob("*keyring*")):
            if path.is_file():
                for key in re.findall(r"key\s*=\s*(\S+)", path.read_text(errors="replace")):
                    keys[f"{site.name}:{path.name}"] = key
    return keys


def html(obj: object) -> str:
    render = getattr(obj, "_repr_html_", None)
    return render() if callable(render) else ""


def error_texts(exc: BaseException) -> str:
    """An error as anyone could see it: str, repr, the cause chain, the formatted traceback."""
    parts = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    parts += traceback.format_exception(exc)
    return "\n".join(parts)


def write_config(world: World, tmp_path: Path, journal: str | None = None) -> Path:
    # Journal names unique in the lab: each has its copy in site A's pool under its name.
    journal = journal or f"{tmp_path.name}-cli.jsonl"
    sections = []
    for which, oned in (("a", world.oned_a), ("b", world.oned_b)):
        cluster = world.lab.site(which)
        auth = tmp_path / f"{which}.auth"
        auth.write_text(oned.session + "\n")
        sections.append(f"""
[site.{which}]
name = "{cluster.name}"
ceph_conf = "{cluster.conf_path}"
ceph_client = "{FAILBACK_CLIENT}"
ceph_keyring = "{cluster.keyring_for(FAILBACK_CLIENT)}"
one_endpoint = "{oned.endpoint}"
one_auth = "{auth}"
""")
    t = TIMEOUTS
    path = tmp_path / "failback.toml"
    path.write_text(f'pool = "{world.lab.pool}"\njournal = "{journal}"\n' + "".join(sections)
                    + f"\n[timeouts]\nsettle = {t.settle}\nresync = {t.resync}\n"
                      f"mirror = {t.mirror}\npromote = {t.promote}\nterminate = {t.terminate}\n"
                      f"resume = {t.resume}\npoll = {t.poll}\n")
    return path


def run_cli(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own entry point, fixed arguments
        [sys.executable, "-m", "ceph_failback", *argv, "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_secrets_never_appear_anywhere(lab: Lab, tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    password = f"pw-SENTINEL-{uuid.uuid4().hex}"
    wrong_password = f"wrong-SENTINEL-{uuid.uuid4().hex}"
    keys = lab_keys(lab)
    assert any(name.endswith(f"{FAILBACK_CLIENT}.keyring") for name in keys), keys
    secrets = {"the OpenNebula password": password, "a wrong password": wrong_password,
               **{f"the Ceph key in {name}": key for name, key in keys.items()}}
    outputs: dict[str, str] = {}
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records

    with World(lab, delays=Delays.uniform(0.05), users={"oneadmin": password}) as world:
        assert world.oned_a.session == f"oneadmin:{password}"
        # Two VMs (one failed back from Python, one from the command line), one small disk each.
        first = world.add_vm("first", data=pattern("first", 64 << 10))
        second = world.add_vm("second", data=pattern("second", 64 << 10))
        world.wait_replicated()
        world.disaster("unplanned", new_data=pattern("written-on-b", 64 << 10))
        expected = world.expected_checksums()
        first, second = world.vms
        events: list[Any] = []
        journal = tmp_path / f"{tmp_path.name}-j.jsonl"
        fb = Failback(world.site("a"), world.site("b"), lab.pool, journal=journal,
                      timeouts=TIMEOUTS, vms=[first.vm_b], listeners=[events.append])
        # The whole failback runs as the least-privileged client, on both sites.
        assert fb.site_a.ceph.config.client == fb.site_b.ceph.config.client == FAILBACK_CLIENT

        plan = fb.plan()
        assert plan.ok, plan
        report = fb.run()
        assert report.complete, report
        status = fb.status()
        objects: dict[str, object] = {
            "Failback": fb, "Site A": fb.site_a, "Site B": fb.site_b,
            "CephSite": fb.site_a.ceph, "CephConfig": fb.site_a.ceph.config,
            "OpenNebulaSite": fb.site_b.one, "MirrorPool": fb.pool_a(), "Journal": fb.journal,
            "Credentials": Credentials("oneadmin", password), "Plan": plan, "Report": report,
            "Status": status, "Mapping": fb.mapping(), "Timeouts": fb.timeouts,
            "CephConfig with a key option": CephConfig(conffile="/x", options={
                "key": keys[f"{lab.site_a.name}:{FAILBACK_CLIENT}.keyring"]}),
        }
        for name, obj in objects.items():
            outputs[f"repr({name})"] = repr(obj)
            outputs[f"str({name})"] = str(obj)
            outputs[f"html({name})"] = html(obj)
            to_dict = getattr(obj, "to_dict", None)
            if callable(to_dict):
                outputs[f"{name}.to_dict()"] = json.dumps(to_dict(), default=str)
        outputs["events"] = "\n".join(repr(e) for e in events)

        # Forced failures: oned refusing the credentials, a wrong password, a wrong Ceph key.
        errors: list[BaseException] = []
        world.oned_b.reject_credentials()
        try:
            with pytest.raises(OpenNebulaAuthenticationError) as refused:
                Failback(world.site("a"), world.site("b"), lab.pool, journal=journal,
                         timeouts=TIMEOUTS).plan()
            errors.append(refused.value)
        finally:
            world.oned_b.reject_credentials(False)
        site_a = world.site("a")
        site_a.one = OpenNebulaSite(site_a.name, world.oned_a.endpoint,
                                    credentials=f"oneadmin:{wrong_password}")
        with pytest.raises(OpenNebulaAuthenticationError) as wrong:
            Failback(site_a, world.site("b"), lab.pool,
                     journal=tmp_path / f"{tmp_path.name}-x.jsonl").plan()
        errors.append(wrong.value)
        bad_keyring = tmp_path / "bad.keyring"
        bad_keyring.write_text(f"[{FAILBACK_CLIENT}]\n\tkey = {random_ceph_key()}\n")
        with pytest.raises(CephConnectionError) as denied:
            CephSite(lab.site_a.name, CephConfig(conffile=str(lab.site_a.conf_path),
                                                 client=FAILBACK_CLIENT,
                                                 keyring=str(bad_keyring))).connect()
        errors.append(denied.value)
        for n, exc in enumerate(errors):
            outputs[f"error {n} ({type(exc).__name__})"] = error_texts(exc)

        # The command line, in a process of its own: the second VM's failback in table mode
        # with debug logs, then plan/status/run again in both modes, then a refused login.
        config = write_config(world, tmp_path)
        outputs["config"] = repr(load_config(config))
        runs = {
            "run --yes -vv": run_cli(config, "run", "--vm", str(second.vm_b), "--yes", "-vv"),
            "plan --json -vv": run_cli(config, "plan", "--json", "-vv"),
            "plan -vv": run_cli(config, "plan", "-vv"),
            "status --json -vv": run_cli(config, "status", "--json", "-vv"),
            "status -vv": run_cli(config, "status", "-vv"),
            "run --yes --json -vv": run_cli(config, "run", "--yes", "--json", "-vv"),
        }
        world.oned_a.reject_credentials()
        try:
            runs["refused plan --json -vv"] = run_cli(config, "plan", "--json", "-vv")
            runs["refused run --yes -vv"] = run_cli(config, "run", "--yes", "-vv")
        finally:
            world.oned_a.reject_credentials(False)
        for name, done in runs.items():
            expected_code = 5 if name.startswith("refused") else 0
            assert done.returncode == expected_code, (name, done.stdout[-2000:],
                                                      done.stderr[-2000:])
            outputs[f"cli {name}: stdout"] = done.stdout
            outputs[f"cli {name}: stderr"] = done.stderr
        assert "COMPLETE" in runs["run --yes -vv"].stdout
        assert "rejected the credentials" in runs["refused run --yes -vv"].stderr
        assert_failed_back(world, expected, fb)

    outputs["journal"] = journal.read_text()
    outputs["cli journal"] = (tmp_path / f"{tmp_path.name}-cli.jsonl").read_text()
    outputs["logs"] = caplog.text
    outputs["log arguments"] = "\n".join(repr(r.args) for r in caplog.records)
    # The searches looked at real output.
    assert "DEBUG" in caplog.text and "one.vm.info" in caplog.text
    assert "demote_a" in outputs["journal"] and "demote_a" in outputs["cli journal"]
    assert "oneadmin" in outputs["repr(OpenNebulaSite)"]
    leaks = [f"{secret} in {where}" for secret, value in secrets.items()
             for where, text in outputs.items() if value in text]
    assert leaks == []


# -- the Ceph client's capabilities ------------------------------------------------------------


def caps_for(pools: list[str]) -> dict[str, str]:
    """The documented caps for a failback of ``pools``."""
    osd = ", ".join(f"profile rbd pool={p}" for p in pools)
    return {"mon": "profile rbd", "osd": osd, "mgr": f'{osd}, allow command "service status"'}


def test_failback_client_has_exactly_the_documented_caps(lab: Lab) -> None:
    assert lab.pool == "one"  # the documented example's pool
    assert caps_for(["one"]) == DOCUMENTED_CAPS
    # A lab test of several pools adds pool "ssd" to the shared lab (Lab.add_pool): the caps
    # then cover both, as documented for several pools.
    assert lab.pools in (["one"], ["one", "ssd"]), lab.pools
    for site in lab.sites:
        (entry,) = site.admin().mon_command({"prefix": "auth get", "entity": FAILBACK_CLIENT})
        assert entry["caps"] == caps_for(lab.pools), (site.name, entry["caps"])
    docs = (ROOT / "docs" / "safety.rst").read_text()
    for pools in (["one"], ["one", "ssd"]):
        for kind, caps in caps_for(pools).items():
            assert f"{kind} '{caps}'" in docs, (kind, caps)
    for kind, caps in DOCUMENTED_CAPS.items():
        assert f"{kind} '{caps}'" in caps_hint("one")


@pytest.fixture
def failback_clients(lab: Lab) -> Iterator[tuple[CephSite, CephSite]]:
    with lab.connect("a", client=FAILBACK_CLIENT, osd_op_timeout=5) as a, \
            lab.connect("b", client=FAILBACK_CLIENT, osd_op_timeout=5) as b:
        yield a, b


def test_failback_client_is_refused_what_a_failback_does_not_need(
        lab: Lab, failback_clients: tuple[CephSite, CephSite]) -> None:
    pool = f"nope-{uuid.uuid4().hex[:6]}"
    for client in failback_clients:
        with pytest.raises(CephPermissionError) as info:
            client.mon_command({"prefix": "osd pool create", "pool": pool, "pg_num": 8})
        assert info.value.site == client.name
        with pytest.raises(CephPermissionError):
            client.mon_command({"prefix": "auth get", "entity": ADMIN})
        with pytest.raises(CephPermissionError):
            client.mon_command({"prefix": "config set", "who": "client",
                                "name": "rbd_mirror_journal_poll_age", "value": "5"})
        with pytest.raises(CephPermissionError):
            client.mon_command({"prefix": "osd pool set", "pool": lab.pool, "var": "size",
                                "val": "2"})
        with pytest.raises(CephPermissionError):
            client.mon_command({"prefix": "auth ls"})
    for site in lab.sites:
        assert pool not in site.admin().mon_command({"prefix": "osd pool ls"})


def test_failback_client_outside_its_pool_is_a_clear_error(
        lab: Lab, failback_clients: tuple[CephSite, CephSite], tmp_path: Path) -> None:
    """A pool its caps do not cover: plan() stops with CephPermissionError naming the site, the
    pool and the caps needed (the command line exits 5), before any change."""
    import rbd

    name = f"nocaps-{uuid.uuid4().hex[:6]}"
    create_pool(lab, name)
    try:
        with lab.site_a.admin().ioctx(name) as ioctx:
            rbd.RBD().create(ioctx, "guarded", 4 << 20, old_format=False)
        a, _ = failback_clients
        with pytest.raises(CephPermissionError) as info:
            a.pool(name).image_names()
        assert info.value.site == lab.site_a.name and info.value.pool == name
        assert f"osd 'profile rbd pool={name}'" in (info.value.hint or "")
        with World(lab) as world:
            fb = Failback(world.site("a"), world.site("b"), name,
                          journal=tmp_path / f"{tmp_path.name}-j.jsonl",
                          timeouts=TIMEOUTS)
            for call in (fb.plan, fb.run):
                with pytest.raises(CephPermissionError) as info:
                    call()
                assert info.value.pool == name and info.value.site in (lab.site_a.name,
                                                                       lab.site_b.name)
                assert "profile rbd" in (info.value.hint or "")
            assert world.oned_a.actions == [] and world.oned_b.actions == []
            config = write_config(world, tmp_path)
            done = run_cli(config, "plan", "--pool", name, "--json")
            assert done.returncode == 5, done.stderr[-2000:]
            doc = json.loads(done.stdout)
            assert doc["type"] == "CephPermissionError" and doc["pool"] == name
            assert "profile rbd" in doc["hint"]
        with lab.site_a.admin().ioctx(name) as ioctx:
            assert rbd.RBD().list(ioctx) == ["guarded"]
        assert not (tmp_path / f"{tmp_path.name}-j.jsonl").exists()
    finally:
        with lab.site_a.admin().ioctx(name) as ioctx:
            rbd.RBD().remove(ioctx, "guarded")
        delete_pool(lab, name)
