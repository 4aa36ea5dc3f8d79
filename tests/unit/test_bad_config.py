"""A malformed configuration file, through the command line: exit code 2, one clear message that
names the file, the key and the site, no traceback, and nothing contacted (the Failback is never
made). Complements ``test_cli.py``'s per-key checks of ``load_config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_cli import PASSWORD, Fake, write_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ONE_AUTH", raising=False)
    monkeypatch.delenv("ONE_XMLRPC", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def edit(old: str, new: str):  # a small factory
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return apply


CASES = [
    # (id, how the valid file is spoiled, what the message says, the site it names)
    ("not-toml", edit('pool = "one"', 'pool = "one'), "not valid TOML", None),
    ("duplicate-key", edit('pool = "one"', 'pool = "one"\npool = "two"'), "not valid TOML", None),
    ("empty", lambda text: "", "pool: missing (required)", None),
    ("pool-list-empty", edit('pool = "one"', 'pool = []'),
     "pool: must list one or more distinct pools", None),
    ("pool-list-twice", edit('pool = "one"', 'pool = ["one", "one"]'),
     "pool: must list one or more distinct pools", None),
    ("pool-list-not-strings", edit('pool = "one"', 'pool = ["one", 2]'),
     "pool: must be a string, not an integer", None),
    ("site-not-a-table", lambda text: 'pool = "one"\nsite = "a"\n',
     "site: must be a table", None),
    ("site-a-missing", lambda text: text.replace("[site.a]", "[site.x]"),
     "site: unknown key(s) ['x']", None),
    ("name-missing", edit('name = "site-a"\n', ""), "site.a.name: missing (required)", None),
    ("name-not-a-string", edit('name = "site-a"', "name = 3"),
     "site.a.name: must be a string, not an integer", None),
    ("name-empty", edit('name = "site-b"', 'name = "  "'), "site.b.name: must not be empty",
     None),
    ("timeouts-not-a-table",
     lambda text: "timeouts = 5\n" + text.replace("[timeouts]\nresync = 7200\npoll = 0.5\n", ""),
     "timeouts: must be a table, not an integer", None),
    ("key-in-the-wrong-table", lambda text: text + "one_timeout = 5\n",  # lands in [timeouts]
     "timeouts: unknown key(s) ['one_timeout']", None),
    ("timeout-as-text", edit('one_auth = "a.auth"', 'one_auth = "a.auth"\none_timeout = "30"'),
     "site.a.one_timeout: must be a number of seconds, not a string", "site-a"),
    ("relative-conf-missing", edit('ceph_conf = "a.conf"', 'ceph_conf = "conf/a.conf"'),
     "site.a.ceph_conf: {dir}/conf/a.conf does not exist", "site-a"),
    ("order-not-a-list", edit('pool = "one"', 'pool = "one"\norder = "db"'),
     "order: must be a list of groups", None),
    ("order-group-empty", edit('pool = "one"', 'pool = "one"\norder = [["db"], []]'),
     "order: group 2 must be a non-empty list", None),
    ("order-entry-odd", edit('pool = "one"', 'pool = "one"\norder = [["db", -3]]'),
     "order: group 1: -3 is neither a VM name nor a VM id", None),
    ("oneflow-not-a-bool", edit('pool = "one"', 'pool = "one"\noneflow = "no"'),
     "oneflow: must be true or false, not a string", None),
    ("same-conf-twice", lambda text: text.replace('ceph_conf = "a.conf"',
                                                  'ceph_conf = "b.conf"'),
     "site.b.ceph_conf: both sites use the same Ceph configuration file", "site-b"),
]


@pytest.mark.parametrize(("spoil", "says", "site"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
@pytest.mark.parametrize("json_mode", [False, True], ids=["table", "json"])
def test_malformed_config_file_exit_2_before_anything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        spoil, says: str, site: str | None, json_mode: bool) -> None:
    fake = Fake(monkeypatch)
    path = write_config(tmp_path)
    path.write_text(spoil(path.read_text()))
    says = says.format(dir=tmp_path)
    from ceph_failback.cli import main

    for command in (["plan"], ["run", "--yes"], ["status"]):
        code = main([*command, "-c", str(path), *(["--json"] if json_mode else [])])
        out, err = capsys.readouterr()
        assert code == 2, (out, err)
        if json_mode:
            doc = json.loads(out)
            assert err == "" and doc["type"] == "ConfigurationError" and doc["exit_code"] == 2
            text = doc["error"]
            assert doc.get("site") == site
        else:
            assert out == "" and err.startswith("error: ") and "Traceback" not in err
            text = err
            if site is not None:
                assert f"site {site!r}" in err
        assert str(path) in text and says in text, text
        assert PASSWORD not in out + err
    assert fake.calls == [] and fake.instances == []  # no Failback, nothing contacted


def test_unreadable_or_not_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from ceph_failback.cli import main

    fake = Fake(monkeypatch)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"pool = \xff\xfe\n")
    for path, says in ((tmp_path, "cannot read the configuration file"),
                       (binary, "not UTF-8"),
                       (tmp_path / "missing.toml", "configuration file not found")):
        code = main(["plan", "-c", str(path), "--json"])
        doc = json.loads(capsys.readouterr().out)
        assert code == 2 and doc["type"] == "ConfigurationError"
        assert str(path) in doc["error"] and says in doc["error"], doc
    assert fake.calls == []


@pytest.mark.parametrize("hard_after", [-1.0, 600.0, 900.0])
def test_hard_terminate_after_out_of_range_refused_before_anything(tmp_path: Path,
                                                                    hard_after: float) -> None:
    """A ``hard_terminate_after`` the terminate wait could never reach is refused when the
    Failback is made, not per VM in step 3 after steps 1 and 2 have run."""
    from ceph_failback.config import load_config
    from ceph_failback.errors import ConfigurationError
    from ceph_failback.failback import Failback, Timeouts

    from .test_security import config_text, write_files

    path = tmp_path / "f.toml"
    path.write_text(config_text(write_files(tmp_path)))
    cfg = load_config(path)
    site_a, site_b = cfg.sites()  # nothing is contacted
    with pytest.raises(ConfigurationError) as info:
        Failback(site_a, site_b, cfg.pool, journal=tmp_path / "j.jsonl",
                 timeouts=Timeouts(terminate=600), hard_terminate_after=hard_after)
    assert "hard_terminate_after" in str(info.value) and "site-b" in str(info.value)
    assert not (tmp_path / "j.jsonl").exists()
    fb = Failback(site_a, site_b, cfg.pool, journal=tmp_path / "j.jsonl",
                  timeouts=Timeouts(terminate=600), hard_terminate_after=120)
    assert fb.hard_terminate_after == 120
