"""``Site.connect``: a site from its settings in one call, checked as a configuration file's
``[site.a]`` table is (one reader, ceph_failback.siteconf), with the command line's environment
conventions, and nothing contacted."""

from __future__ import annotations

from pathlib import Path

import pytest

from ceph_failback import ConfigurationError, Failback, Site
from ceph_failback.ceph import CephSite
from ceph_failback.opennebula import OpenNebulaSite

KEY = "AQBhWkFmAAAAABAAq3v0Jt1Xf7jKQ0ZlF9dW1g=="  # the shape of a Ceph key


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ONE_AUTH", "ONE_XMLRPC", "ONE_XMLRPC_TIMEOUT", "ONE_DISABLE_SSL_VERIFY",
                 "ONE_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    for site in ("a", "b"):
        (tmp_path / f"{site}.conf").write_text("[global]\nmon_host = 127.0.0.1\n")
        (tmp_path / f"{site}.auth").write_text(f"oneadmin:secret-{site}\n")
        (tmp_path / f"{site}.keyring").write_text(f"[client.failback]\nkey = {KEY}\n")


def connect(site: str = "a", **kwargs: object) -> Site:
    args: dict[str, object] = {
        "ceph_conf": f"{site}.conf", "ceph_client": "client.failback",
        "ceph_keyring": f"{site}.keyring", "one_endpoint": f"https://one-{site}.example:2633/RPC2",
        "one_auth": f"{site}.auth"}
    args.update(kwargs)
    return Site.connect(f"site-{site}", **args)  # type: ignore[arg-type]


def test_a_site_in_one_call_contacting_nothing(tmp_path: Path) -> None:
    site = connect(one_timeout=12, one_verify=False)
    assert site.name == "site-a"
    assert isinstance(site.ceph, CephSite) and isinstance(site.one, OpenNebulaSite)
    assert site.ceph.config.conffile == str(tmp_path / "a.conf")  # relative to the working dir
    assert site.ceph.config.keyring == str(tmp_path / "a.keyring")
    assert site.ceph.config.client == "client.failback"
    assert site.one.endpoint == "https://one-a.example:2633/RPC2"
    assert "secret-a" not in repr(site) and KEY not in repr(site)
    fb = Failback(site, connect("b"), "one", journal=tmp_path / "j.jsonl")
    assert repr(fb).startswith("Failback('site-b' -> 'site-a'")


def test_the_command_line_s_environment_conventions(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("ONE_XMLRPC", "https://from-env.example:2633/RPC2")
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "b.auth"))
    site = Site.connect("site-a", ceph_conf=tmp_path / "a.conf")
    assert site.one.endpoint == "https://from-env.example:2633/RPC2"
    assert site.ceph.config.client == "client.admin" and site.ceph.config.keyring is None


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"ceph_conf": "nope.conf"}, "Site.connect('site-a'): ceph_conf: {dir}/nope.conf does not "
                                 "exist"),
    ({"ceph_keyring": KEY}, "ceph_keyring: the path given (it holds what looks like a Ceph key) "
                            "does not exist"),
    ({"ceph_client": "failback"}, "ceph_client: must look like 'client.<id>'"),
    ({"one_auth": "oneadmin:hunter2"}, "one_auth: cannot read the file named there"),
    ({"one_timeout": -1}, "one_timeout: must be positive seconds"),
    ({"one_verify": "no-such-ca.pem"}, "one_verify: CA bundle {dir}/no-such-ca.pem does not "
                                       "exist"),
    ({"one_endpoint": None, "one_auth": None}, "one_endpoint (not set)"),
])
def test_bad_settings_say_which_site_and_argument_never_a_secret(
        tmp_path: Path, kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        connect(**kwargs)
    message = str(info.value)
    assert says.format(dir=tmp_path) in message, message
    assert info.value.site == "site-a"
    assert KEY not in message and "hunter2" not in message


def test_a_name_is_required() -> None:
    with pytest.raises(ConfigurationError, match="name: must be a non-empty string"):
        Site.connect("  ", ceph_conf="a.conf")
