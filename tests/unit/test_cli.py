"""The command line and its configuration file, without a lab: the Failback's methods that talk
to the sites are replaced, everything else (config, arguments, output, exit codes) is real."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback import cli
from ceph_failback.ceph.lock import Holder
from ceph_failback.ceph.status import MirrorImageInfo, MirrorState, MirrorStatus, SiteStatus
from ceph_failback.cli import main
from ceph_failback.config import load_config
from ceph_failback.errors import (
    ConfigurationError,
    LockedError,
    OpenNebulaAuthenticationError,
    OpenNebulaConnectionError,
    SafetyError,
    StepFailedError,
    WaitTimeoutError,
)
from ceph_failback.failback import (
    EventKind,
    Failback,
    ImageSide,
    ImageState,
    Plan,
    Report,
    Status,
    VMState,
)
from ceph_failback.failback.plan import Action, Blocker, ImagePlan, VMPlan
from ceph_failback.failback.report import ImageOutcome, VMOutcome
from ceph_failback.opennebula import VM

PASSWORD = "s3cr3t-Pa55word-xyzzy"
HOLDER = Holder("here", 1, "me", "failback", "2026-01-01T00:00:00+00:00", "c0")
OTHER = Holder("elsewhere", 4242, "ops", "failback site-b -> site-a",
               "2026-01-01T00:00:00+00:00", "c1", locker="client.99")


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The OpenNebula conventions read the environment and ~: make both empty and known.
    monkeypatch.delenv("ONE_AUTH", raising=False)
    monkeypatch.delenv("ONE_XMLRPC", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))


def write_config(tmp_path: Path, body: str | None = None, *, a_extra: str = "",
                 b_extra: str = "", top: str = "") -> Path:
    """A valid configuration in ``tmp_path`` (with the files it names), or ``body`` verbatim."""
    for name in ("a.conf", "b.conf", "a.keyring"):
        (tmp_path / name).write_text("[global]\n")
    (tmp_path / "a.auth").write_text(f"oneadmin:{PASSWORD}\n")
    (tmp_path / "b.auth").write_text(f"\n  operator:{PASSWORD}-b\n")
    path = tmp_path / "failback.toml"
    if body is None:
        body = f"""{top}
pool = "one"
journal = "journal/one.jsonl"

[site.a]
name = "site-a"
ceph_conf = "a.conf"
ceph_client = "client.failback"
ceph_keyring = "a.keyring"
one_endpoint = "https://one-a.example:2633/RPC2"
one_auth = "a.auth"
{a_extra}

[site.b]
name = "site-b"
ceph_conf = "{tmp_path}/b.conf"
one_endpoint = "http://one-b.example:2633/RPC2"
one_auth = "b.auth"
one_verify = false
{b_extra}

[timeouts]
resync = 7200
poll = 0.5
"""
    path.write_text(body)
    return path


def sample_plan(fb: Failback, *, blockers: tuple[Blocker, ...] = ()) -> Plan:
    img = ImagePlan("one-100", "journal", None, None, (
        Action("demote_a", "image:one-100", True, "primary on A"),
        Action("resync_a", "image:one-100", True, "A was primary (diverged): resync from B"),
        Action("demote_b", "image:one-100", True, "primary on B"),
        Action("promote_a", "image:one-100", True, "non-forced, after proving A replayed B"),
    ))
    vm = VMPlan(VM(12, "web", "ACTIVE", "RUNNING"), VM(3, "web", "POWEROFF"), ("one-100",), (
        Action("terminate_b", "vm:site-b:12", True, "ACTIVE/RUNNING on B"),
        Action("resume_a", "vm:site-a:3", True, "POWEROFF on A"),
    ))
    return Plan(fb.pool, fb.site_a.name, fb.site_b.name, (img,), (vm,), blockers, (), fb.waive)


def sample_status(fb: Failback) -> Status:
    """One image replaying on A from B, one VM DONE on B and running on A."""
    def side(site: str, primary: bool, state: MirrorState) -> ImageSide:
        info = MirrorImageInfo("one-100", "gid", True, primary, "journal")
        return ImageSide(site, info, MirrorStatus(site, fb.pool, "one-100", "gid", primary,
                                                  SiteStatus(None, state, True, "")))

    return Status.now(fb.pool, fb.site_a.name, fb.site_b.name,
                      (ImageState("one-100", side(fb.site_a.name, False, MirrorState.REPLAYING),
                                  side(fb.site_b.name, True, MirrorState.STOPPED)),),
                      (VMState(VM(12, "web", "DONE"), VM(3, "web", "ACTIVE", "RUNNING"),
                               ("one-100",)),))


def sample_report(fb: Failback, complete: bool = True) -> Report:
    return Report(fb.pool, fb.site_a.name, fb.site_b.name,
                  (ImageOutcome("one-100", True, True, True, complete, 2 if complete else None,
                                None),),
                  (VMOutcome(12, 3, ("one-100",), True, complete, 4.2 if complete else None,
                             None),), 1, 10.0)


class Fake:
    """Replaces the Failback's site-facing methods; records what was called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, object]] = []
        self.blockers: tuple[Blocker, ...] = ()
        self.run_error: BaseException | None = None
        self.plan_error: BaseException | None = None
        self.instances: list[Failback] = []
        self.holder: Holder | None = None
        fake = self

        def plan(fb: Failback) -> Plan:
            fake.instances.append(fb)
            fake.calls.append(("plan", None))
            if fake.plan_error is not None:
                raise fake.plan_error
            return sample_plan(fb, blockers=fake.blockers)

        def run(fb: Failback, *, pipeline: bool = True, reprotect: bool = False) -> Report:
            fake.calls.append(("run", pipeline))
            fb.journal.write("run", "scope", pool=fb.pool, images=["one-100"], pairs=[])
            fb.events.emit(EventKind.STEP_STARTED, "t", step="demote_a")
            fb.events.emit(EventKind.ACTION, "image:one-100: demoted on A", step="demote_a",
                           target="image:one-100", outcome="done")
            fb.events.emit(EventKind.STEP_FINISHED, "demote_a: 1 done", step="demote_a")
            if fake.run_error is not None:
                raise fake.run_error
            return sample_report(fb)

        def status(fb: Failback) -> Status:
            fake.calls.append(("status", None))
            return sample_status(fb)

        @contextlib.contextmanager
        def locked(fb: Failback) -> Iterator[Holder]:
            if fake.holder is not None:
                raise LockedError(f"another failback holds the lock of this pool: "
                                  f"{fake.holder}", site=fb.site_a.name, pool=fb.pool)
            fake.calls.append(("locked", None))
            yield HOLDER

        def break_locks(fb: Failback, expected: dict[str, Holder] | None = None
                        ) -> dict[str, Holder]:
            fake.calls.append(("break_lock", expected))
            broken, fake.holder = fake.holder, None
            return {fb.pool: broken} if broken is not None else {}

        monkeypatch.setattr(Failback, "locked", locked)
        monkeypatch.setattr(Failback, "pull_journal",
                            lambda fb: fake.calls.append(("pull_journal", None)))
        monkeypatch.setattr(Failback, "lock_holder", lambda fb: fake.holder)
        monkeypatch.setattr(Failback, "lock_holders",
                            lambda fb: {fb.pool: fake.holder} if fake.holder else {})
        monkeypatch.setattr(Failback, "break_locks", break_locks)
        monkeypatch.setattr(Failback, "plan", plan)
        monkeypatch.setattr(Failback, "run", run)
        monkeypatch.setattr(Failback, "status", status)
        monkeypatch.setattr(Failback, "report", lambda fb: sample_report(fb))

    def called(self, name: str) -> list[object]:
        return [arg for n, arg in self.calls if n == name]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Fake:
    return Fake(monkeypatch)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- configuration file -----------------------------------------------------------------------------


def test_valid_config_is_parsed_and_resolved(tmp_path: Path) -> None:
    path = write_config(tmp_path, a_extra='one_timeout = 12\none_verify = "a.conf"')
    cfg = load_config(path)
    assert cfg.pool == "one"
    assert cfg.journal == tmp_path / "journal" / "one.jsonl"  # relative to the file
    a, b = cfg.site_a, cfg.site_b
    assert (a.name, b.name) == ("site-a", "site-b")
    assert a.ceph.conffile == str(tmp_path / "a.conf")
    assert a.ceph.client == "client.failback" and a.ceph.keyring == str(tmp_path / "a.keyring")
    assert b.ceph.client == "client.admin" and b.ceph.keyring is None
    assert a.one_endpoint == "https://one-a.example:2633/RPC2"
    assert a.one_verify == str(tmp_path / "a.conf") and a.one_timeout == 12
    assert b.one_verify is False and b.one_timeout is None  # None: $ONE_XMLRPC_TIMEOUT, else 30
    assert a.credentials.user == "oneadmin" and a.credentials.password == PASSWORD
    assert b.credentials.user == "operator"  # first non-empty line, stripped
    assert cfg.timeouts.resync == 7200 and cfg.timeouts.poll == 0.5
    assert cfg.timeouts.mirror == 900  # the default
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg)
    site_a, site_b = cfg.sites()
    assert (site_a.name, site_a.ceph.name, site_a.one.name) == ("site-a",) * 3
    assert site_b.one.endpoint == "http://one-b.example:2633/RPC2"
    assert site_a.one.user == "oneadmin"
    assert PASSWORD not in repr(site_a.one)


def test_overrides_replace_file_values(tmp_path: Path) -> None:
    cfg = load_config(write_config(tmp_path), {"pool": "other", "journal": None,
                                               "timeouts.mirror": 60})
    assert cfg.pool == "other" and cfg.timeouts.mirror == 60
    assert cfg.journal == tmp_path / "journal" / "one.jsonl"
    with pytest.raises(ConfigurationError, match=r"the command line: pool: must not be empty"):
        load_config(write_config(tmp_path), {"pool": ""})


def _replace(tmp_path: Path, old: str, new: str) -> Path:
    path = write_config(tmp_path)
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))
    return path


MALFORMED = [
    # (old, new, what the message must say, site named or None)
    ('pool = "one"', 'pool = "one', "not valid TOML", None),
    ('pool = "one"', 'pool = "one"\npassword = "hunter2"', "top level: unknown key(s) ['password']",
     None),
    ('pool = "one"', "", "pool: missing (required)", None),
    ('pool = "one"', "pool = 7", "pool: must be a string, not an integer", None),
    ('one_auth = "a.auth"', 'one_auth = "a.auth"\none_password = "hunter2"',
     "site.a: unknown key(s) ['one_password']", "site-a"),
    ('name = "site-a"', "", "site.a.name: missing (required)", None),
    ('ceph_conf = "a.conf"', "ceph_conf = 3", "site.a.ceph_conf: must be a string, not an "
     "integer", "site-a"),
    ('ceph_conf = "a.conf"', 'ceph_conf = "nope.conf"', "site.a.ceph_conf:", "site-a"),
    ('ceph_conf = "a.conf"', "", "site.a.ceph_conf: missing (required)", "site-a"),
    ('ceph_keyring = "a.keyring"', 'ceph_keyring = "gone.keyring"', "site.a.ceph_keyring:",
     "site-a"),
    ('ceph_client = "client.failback"', 'ceph_client = "failback"',
     "site.a.ceph_client: must look like 'client.<id>'", "site-a"),
    ('one_endpoint = "https://one-a.example:2633/RPC2"', 'one_endpoint = "one-a.example:2633"',
     "site.a.one_endpoint: endpoint", "site-a"),
    ('one_endpoint = "https://one-a.example:2633/RPC2"',
     'one_endpoint = "http://one-b.example:2633/RPC2"',
     "site.b.one_endpoint: both sites resolve to the same OpenNebula endpoint", "site-b"),
    ('name = "site-a"', 'name = "site-b"', "site.b.name: both sites are named 'site-b'", None),
    ("one_verify = false", 'one_verify = "yes"', "site.b.one_verify: CA bundle", "site-b"),
    ("one_verify = false", "one_verify = 1", "site.b.one_verify: must be true, false or the "
     "path of a CA bundle, not an integer", "site-b"),
    ("[site.b]", "[site.c]", "site: unknown key(s) ['c']", None),
    ("resync = 7200", "resync = true", "timeouts.resync: must be a number of seconds, not a "
     "boolean", None),
    ("resync = 7200", "resync = -1", "timeouts.resync: must be positive seconds", None),
    ("resync = 7200", "resyncs = 7200", "timeouts: unknown key(s) ['resyncs']", None),
    ('one_auth = "a.auth"', 'one_auth = "missing.auth"', "site.a.one_auth: cannot read", "site-a"),
]


@pytest.mark.parametrize(("old", "new", "says", "site"), MALFORMED,
                         ids=[m[2][:40] for m in MALFORMED])
def test_malformed_config_names_file_key_and_site(tmp_path: Path, old: str, new: str, says: str,
                                                  site: str | None) -> None:
    path = _replace(tmp_path, old, new)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    text = str(info.value)
    assert str(path) in text, text
    assert says in text, text
    if site is not None:
        assert info.value.site == site and f"site {site!r}" in text
    assert "hunter2" not in text and PASSWORD not in text


def test_missing_site_table_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "f.toml"
    path.write_text('pool = "one"\n')
    with pytest.raises(ConfigurationError, match=r"f\.toml: site: missing"):
        load_config(path)
    with pytest.raises(ConfigurationError, match=r"nope\.toml: configuration file not found"):
        load_config(tmp_path / "nope.toml")


def test_auth_file_content_never_quoted(tmp_path: Path) -> None:
    (tmp_path / "a.auth").write_text(PASSWORD)  # no user: malformed
    path = write_config(tmp_path)
    (tmp_path / "a.auth").write_text(PASSWORD)
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "not of the form user:password" in str(info.value)
    assert PASSWORD not in str(info.value)
    # Credentials written in place of the file's path are not echoed either.
    path = _replace(tmp_path, 'one_auth = "a.auth"', f'one_auth = "oneadmin:{PASSWORD}"')
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert PASSWORD not in str(info.value) and "never the credentials" in str(info.value)


def test_one_auth_and_one_xmlrpc_from_the_environment(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = _replace(tmp_path, 'one_endpoint = "http://one-b.example:2633/RPC2"\none_auth = "b.auth"',
                    "")
    # Site B has neither: no ONE_XMLRPC -> an error naming the key and the variable.
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "site.b.one_endpoint (not set)" in str(info.value) and "ONE_XMLRPC" in str(info.value)
    monkeypatch.setenv("ONE_XMLRPC", "http://from-env.example:2633/RPC2")
    # Now the endpoint resolves; credentials: ONE_AUTH unset, ~/.one/one_auth missing.
    with pytest.raises(ConfigurationError) as info:
        load_config(path)
    assert "site.b.one_auth (not set)" in str(info.value) and "one_auth" in str(info.value)
    # ~/.one/one_auth (HOME is tmp_path/home).
    one = tmp_path / "home" / ".one"
    one.mkdir()
    (one / "one_auth").write_text(f"homeuser:{PASSWORD}")
    cfg = load_config(path)
    assert cfg.site_b.one_endpoint == "http://from-env.example:2633/RPC2"
    assert cfg.site_b.credentials.user == "homeuser"
    assert cfg.site_a.credentials.user == "oneadmin"  # an explicit file wins
    # ONE_AUTH wins over ~/.one/one_auth.
    env_auth = tmp_path / "env.auth"
    env_auth.write_text(f"envuser:{PASSWORD}")
    monkeypatch.setenv("ONE_AUTH", str(env_auth))
    cfg = load_config(path)
    assert cfg.site_b.credentials.user == "envuser"
    assert cfg.site_b.credentials_origin.startswith(str(env_auth))
    # ONE_XMLRPC cannot serve both sites.
    path = _replace(tmp_path, 'one_endpoint = "https://one-a.example:2633/RPC2"', "")
    path.write_text(path.read_text().replace(
        'one_endpoint = "http://one-b.example:2633/RPC2"', ""))
    with pytest.raises(ConfigurationError, match="same OpenNebula endpoint"):
        load_config(path)


# -- arguments and usage errors ---------------------------------------------------------------------


def test_arguments_are_parsed() -> None:
    args = cli.build_parser().parse_args([
        "run", "--config", "f.toml", "--image", "one-1", "--image", "one-2", "--vm", "12",
        "--pair", "12:3", "--waive", "partial-pair", "--hard-terminate-after", "90",
        "--no-pipeline", "--yes", "--json", "-vv"])
    assert args.command == "run" and args.config == "f.toml"
    assert args.image == ["one-1", "one-2"] and args.vm == [12] and args.pair == [(12, 3)]
    assert args.waive == ["partial-pair"] and args.hard_terminate_after == 90.0
    assert args.no_pipeline and args.yes and args.json and args.verbose == 2
    args = cli.build_parser().parse_args(["plan", "-c", "f.toml"])
    assert (args.image, args.vm, args.pair, args.waive, args.json) == ([], [], [], [], False)


@pytest.mark.parametrize("argv, says", [
    ([], "the following arguments are required: COMMAND"),
    (["run"], "the following arguments are required: -c/--config"),
    (["plan", "-c", "f", "--pair", "12-3"], "'12-3' is not VMB:VMA"),
    (["plan", "-c", "f", "--vm", "x"], "'x' is not a VM id"),
    (["run", "-c", "f", "--waive", "split-brain-on-b"], "invalid choice: 'split-brain-on-b'"),
    (["run", "-c", "f", "--hard-terminate-after", "0"], "must be positive seconds"),
    (["status", "-c", "f", "--yes"], "unrecognized arguments: --yes"),
    (["resume", "-c", "f", "--image", "one-1"], "unrecognized arguments: --image"),
])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str],
                             says: str) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert says in err and "usage: ceph-failback" in err and out == ""


def test_usage_error_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "plan", "--json", "-c", "f", "--pair", "x")
    assert code == 2
    doc = json.loads(out)
    assert doc["type"] == "UsageError" and "VMB:VMA" in doc["error"]


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert "exit codes:" in out and "4  interrupted" in out and "5  a site cannot be reached" in out
    assert "plan" in out and "resume" in out
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--yes" in out and "exit codes:" in out


def test_configuration_error_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _replace(tmp_path, 'pool = "one"', "pool = 1")
    code, out, err = run_cli(capsys, "plan", "-c", str(path))
    assert code == 2 and "pool: must be a string" in err
    code, out, err = run_cli(capsys, "plan", "-c", str(path), "--json")
    assert code == 2 and err == ""
    doc = json.loads(out)
    assert doc["type"] == "ConfigurationError" and "pool: must be a string" in doc["error"]


# -- commands with a faked Failback -----------------------------------------------------------------


def test_plan_prints_tables_blockers_first(fake: Fake, config: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fake.blockers = (Blocker("non-persistent-disk", "vm:site-b:12", "disks are not persistent"),
                     Blocker("partial-pair", "vm:site-b:13", "half a pair", waivable=True))
    code, out, _ = run_cli(capsys, "plan", "-c", str(config))
    assert code == 3
    assert out.index("BLOCKERS") < out.index("Images (1)") < out.index("VMs (1)") < out.index(
        "Steps:")
    assert "non-persistent-disk" in out and "waivable" in out
    assert "REFUSED: 2 blocker(s)" in out and "nothing was changed" in out
    assert fake.called("run") == []
    # Waiving the waivable one leaves one in force.
    code, out, _ = run_cli(capsys, "plan", "-c", str(config), "--waive", "partial-pair")
    assert code == 3 and "REFUSED: 1 blocker(s)" in out and "waived" in out
    fake.blockers = ()
    code, out, _ = run_cli(capsys, "plan", "-c", str(config))
    assert code == 0 and "No blocker" in out and "do 1: A was primary (diverged)" in out


def test_plan_json_and_scope_flags(fake: Fake, config: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "plan", "-c", str(config), "--json", "--image", "one-100",
                             "--vm", "12", "--pair", "12:3", "--pool", "other")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] and doc["pool"] == "other" and doc["images"][0]["name"] == "one-100"
    assert doc["journal"] == str(config.parent / "journal" / "one.jsonl")
    fb = fake.instances[-1]
    assert fb.image_filter == ("one-100",) and fb.vm_filter == (12,)
    assert fb.explicit_pairs == {12: 3} and fb.pool == "other"
    assert fb.timeouts.resync == 7200


def test_run_without_yes_changes_nothing_exit_3(fake: Fake, config: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "run", "-c", str(config))
    assert code == 3
    assert fake.called("run") == [] and fake.called("plan")
    assert "Failback plan" in out and "nothing was changed: add --yes" in err
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--json")
    assert code == 3
    doc = json.loads(out)
    assert doc["type"] == "ConfirmationRequired" and doc["plan"]["images"]
    assert fake.called("run") == []
    assert not (config.parent / "journal" / "one.jsonl").exists()


def test_run_with_blockers_refused_even_with_yes(fake: Fake, config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake.blockers = (Blocker("split-brain-on-b", "image:one-100", "split-brain on B"),)
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes", "--json")
    assert code == 3 and fake.called("run") == []
    doc = json.loads(out)
    assert doc["type"] == "SafetyError" and "split-brain" in doc["error"]
    assert doc["plan"]["blockers"][0]["kind"] == "split-brain-on-b"


def test_run_with_yes(fake: Fake, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes")
    assert code == 0, err
    assert fake.called("run") == [True]
    assert "[1/6] Site A: demote the images" in out
    assert "demote_a    image:one-100: demoted on A" in out
    assert "COMPLETE" in out and "\r" not in out and "\x1b" not in out
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes", "--no-pipeline", "--json")
    assert code == 0 and fake.called("run") == [True, False]
    doc = json.loads(out)  # one document, no progress lines
    assert doc["complete"] and doc["vms"][0]["downtime"] == 4.2


@pytest.mark.parametrize("error, code, kind", [
    (StepFailedError("step promote_a failed for 1 target(s)", pool="one",
                     failures={"image:one-100": "timed out"}, hint="fix it"), 1, "StepFailedError"),
    (WaitTimeoutError("timed out", site="site-a", last_seen={"one-100": "syncing 40%"}), 1,
     "WaitTimeoutError"),
    (OpenNebulaConnectionError("cannot connect", site="site-b"), 5, "OpenNebulaConnectionError"),
    (OpenNebulaAuthenticationError("rejected", site="site-b"), 5, "OpenNebulaAuthenticationError"),
    (SafetyError("still primary on B", site="site-a", image="one-100"), 3, "SafetyError"),
])
def test_run_errors_map_to_exit_codes(fake: Fake, config: Path, capsys: pytest.CaptureFixture[str],
                                      error: Exception, code: int, kind: str) -> None:
    fake.run_error = error
    got, out, err = run_cli(capsys, "run", "-c", str(config), "--yes", "--json")
    assert got == code, (out, err)
    doc = json.loads(out)
    assert doc["type"] == kind and doc["exit_code"] == code and doc["error"]
    if code in (1, 5):
        assert doc["resume"].startswith("ceph-failback resume --config")
        assert doc["report"]["pool"] == "one"
    if isinstance(error, StepFailedError):
        assert doc["failures"] == {"image:one-100": "timed out"}
    # The human form: the error, its hint, and how to resume.
    got, out, err = run_cli(capsys, "run", "-c", str(config), "--yes")
    assert got == code
    assert "error:" in err
    if code == 1:
        assert "continue with: ceph-failback resume --config" in err and "--yes" in err
    if isinstance(error, StepFailedError):
        assert "  image:one-100: timed out" in err and "hint: fix it" in err


def test_plan_unreachable_site_exit_5(fake: Fake, config: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake.plan_error = OpenNebulaConnectionError("cannot connect to http://x", site="site-b")
    code, out, err = run_cli(capsys, "plan", "-c", str(config))
    assert code == 5 and "error: site 'site-b': cannot connect" in err
    assert "resume" not in err  # nothing was started


def test_interrupted_exit_4(fake: Fake, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.run_error = KeyboardInterrupt()
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes")
    assert code == 4
    assert "interrupted" in err and "one.jsonl" in err and "ceph-failback resume" in err
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes", "--json")
    assert code == 4
    doc = json.loads(out)
    assert doc["type"] == "KeyboardInterrupt" and doc["resume"].endswith("--yes")
    assert doc["journal"].endswith("one.jsonl")


def test_resume_command_names_a_journal_given_on_the_command_line(
        fake: Fake, config: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config.parent)
    fake.run_error = StepFailedError("step failed", failures={"image:one-100": "boom"})
    code, out, err = run_cli(capsys, "run", "-c", config.name, "--journal", "elsewhere.jsonl",
                             "--yes", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["journal"] == str(config.parent / "elsewhere.jsonl")
    assert doc["resume"] == (f"ceph-failback resume --config {config} --journal "
                             f"{config.parent / 'elsewhere.jsonl'} --yes")
    assert (config.parent / "elsewhere.jsonl").exists()


def test_resume_needs_a_journal(fake: Fake, config: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "resume", "-c", str(config), "--yes")
    assert code == 2 and "nothing to resume" in err and fake.called("run") == []
    code, _, _ = run_cli(capsys, "run", "-c", str(config), "--yes")  # records a scope
    assert code == 0
    code, out, err = run_cli(capsys, "resume", "-c", str(config), "--yes")
    assert code == 0 and "Resuming the failback" in out
    assert fake.called("run") == [True, True]


def test_run_refused_while_another_failback_holds_the_pool_lock(
        fake: Fake, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake.holder = OTHER
    code, out, err = run_cli(capsys, "run", "-c", str(config), "--yes", "--json")
    assert code == 3 and fake.called("run") == []
    doc = json.loads(out)
    assert doc["type"] == "LockedError" and "pid 4242" in doc["error"]
    code, out, _ = run_cli(capsys, "status", "-c", str(config), "--json")
    assert code == 0 and "pid 4242" in json.loads(out)["lock"]
    fake.holder = None
    code, _, _ = run_cli(capsys, "run", "-c", str(config), "--yes")  # released: runs
    assert code == 0 and fake.called("locked")


def test_unlock_shows_the_holder_and_breaks_only_with_yes(
        fake: Fake, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "unlock", "-c", str(config))
    assert code == 0 and "is free" in out
    fake.holder = OTHER
    code, out, err = run_cli(capsys, "unlock", "-c", str(config))
    assert code == 3 and "pid 4242" in err and "--yes" in err
    assert fake.called("break_lock") == [] and fake.holder is OTHER
    code, out, _ = run_cli(capsys, "unlock", "-c", str(config), "--yes", "--json")
    doc = json.loads(out)
    assert code == 0 and "pid 4242" in doc["broken"] and fake.holder is None
    # Only the holder shown is broken (by its cookie), pool by pool.
    assert fake.called("break_lock") == [{"one": OTHER}]


def test_status_side_by_side(fake: Fake, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "status", "-c", str(config))
    assert code == 0
    header = next(line for line in out.splitlines() if line.strip().startswith("IMAGE"))
    assert header.index("site-a (A)") < header.index("site-b (B)")
    vm_line = next(line for line in out.splitlines() if line.startswith("12 "))
    assert "3 " in vm_line and "ACTIVE/RUNNING" in vm_line and "no failback recorded" in out
    code, out, _ = run_cli(capsys, "status", "-c", str(config), "--json")
    doc = json.loads(out)
    assert doc["site_a"] == "site-a" and doc["site_b"] == "site-b"
    assert doc["images"]["one-100"]["site-b"] == "primary up+stopped"
    assert doc["failback"] is None


def test_status_prints_the_lock_holder(fake: Fake, config: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "status", "-c", str(config))
    assert code == 0 and "Failback lock: free" in out
    fake.holder = OTHER
    code, out, _ = run_cli(capsys, "status", "-c", str(config))
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("Failback lock:"))
    assert line == f"Failback lock: held by {OTHER}" and "pid 4242" in line
    assert fake.called("break_lock") == []  # status changes nothing


def test_secrets_never_printed(fake: Fake, config: Path, capsys: pytest.CaptureFixture[str],
                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    outputs = []
    for argv in (["plan", "-vv"], ["plan", "--json", "-vv"], ["status", "-v"],
                 ["run", "--yes", "-vv"], ["run", "--yes", "--json"]):
        code, out, err = run_cli(capsys, *argv, "-c", str(config))
        assert code == 0, err
        outputs += [out, err]
    fake.run_error = OpenNebulaAuthenticationError("oned rejected the credentials of 'oneadmin'",
                                                   site="site-a")
    for extra in ([], ["--json"]):
        code, out, err = run_cli(capsys, "run", "--yes", "-vv", "-c", str(config), *extra)
        assert code == 5
        outputs += [out, err]
    text = "\n".join(outputs) + caplog.text
    assert "oneadmin" in text  # the user may show...
    assert PASSWORD not in text  # ...the password never


def test_exit_code_table() -> None:
    assert cli.exit_code(ConfigurationError("x")) == 2
    assert cli.exit_code(SafetyError("x")) == 3
    assert cli.exit_code(KeyboardInterrupt()) == 4
    assert cli.exit_code(OpenNebulaConnectionError("x")) == 5
    assert cli.exit_code(StepFailedError("x")) == 1
    assert cli.exit_code(RuntimeError("x")) == 1
    assert os.EX_OK == cli.EXIT_OK


def test_a_failback_from_a_configuration_file_in_one_line(tmp_path: Path) -> None:
    import ceph_failback as cf

    config = write_config(tmp_path)
    fb = cf.Failback.from_config(config)  # nothing contacted yet
    assert (fb.site_a.name, fb.site_b.name, fb.pool) == ("site-a", "site-b", "one")
    assert fb.journal.path == tmp_path / "journal" / "one.jsonl"
    assert fb.timeouts == cf.load_config(config).timeouts
    other = cf.Failback.from_config(config, pool="ssd", journal=tmp_path / "x.jsonl",
                                    waive=["partial-pair"], vms=[12])
    assert other.pool == "ssd" and other.journal.path == tmp_path / "x.jsonl"
    assert other.waive == {"partial-pair"}
    with pytest.raises(cf.ConfigurationError, match="not found"):
        cf.Failback.from_config(tmp_path / "missing.toml")


def test_unlock_of_several_pools_shows_each_cookie_and_breaks_only_the_named_takings(
        fake: Fake, config: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --yes: each pool's holder and cookie, and the exact command. With --yes
    --cookie: only those takings; a pool held by another taking is named and left alone."""
    import dataclasses

    other = dataclasses.replace(OTHER, pid=4343, cookie="c2")
    held = {"one": OTHER, "ssd": other}
    asked: list[object] = []

    def break_locks(fb: Failback, expected: dict[str, Holder] | None = None
                    ) -> dict[str, Holder]:
        asked.append(expected)
        assert expected is not None
        broken = {p: h for p, h in expected.items() if held.get(p) == h}
        for p in broken:
            del held[p]
        return broken

    monkeypatch.setattr(Failback, "lock_holders", lambda fb: dict(held))
    monkeypatch.setattr(Failback, "break_locks", break_locks)
    code, _, err = run_cli(capsys, "unlock", "-c", str(config), "--pool", "one,ssd")
    assert code == 3 and asked == []
    assert "pool 'one'" in err and "cookie c1" in err and "pool 'ssd'" in err
    assert "cookie c2" in err and "--yes --cookie c1 --cookie c2" in err
    code, out, _ = run_cli(capsys, "unlock", "-c", str(config), "--pool", "one,ssd", "--json")
    assert code == 3 and json.loads(out)["cookies"] == {"one": "c1", "ssd": "c2"}
    # ssd's lock changes hands before the --yes: c2 no longer holds it.
    held["ssd"] = third = dataclasses.replace(OTHER, pid=4444, cookie="c3")
    code, out, _ = run_cli(capsys, "unlock", "-c", str(config), "--pool", "one,ssd", "--yes",
                           "--cookie", "c1", "--cookie", "c2")
    assert code == 0 and asked == [{"one": OTHER}]
    assert "Broke the failback lock of pool 'one'" in out and "(cookie c1)" in out
    assert "pool 'ssd' on site-a is held by another taking" in out
    assert "held by cookie c2 any more" in out and held == {"ssd": third}
    # A cookie that holds nothing: nothing broken, exit 3.
    code, out, _ = run_cli(capsys, "unlock", "-c", str(config), "--pool", "one,ssd", "--yes",
                           "--cookie", "c2", "--json")
    doc = json.loads(out)
    assert code == 3 and doc["not_broken"] == ["ssd"] and doc["cookies_not_holding"] == ["c2"]
    assert held == {"ssd": third}
