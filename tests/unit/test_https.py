"""https to oned, without a lab: certificate verification is on by default and a failure is a
clear error that names the site and says what to do; a CA bundle makes it work; turning
verification off is explicit and logged. The certificate is made at test time with openssl."""

from __future__ import annotations

import inspect
import logging
import shutil
import ssl
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.cli import main
from ceph_failback.config import SiteConfig, load_config
from ceph_failback.errors import ConfigurationError, OpenNebulaConnectionError
from ceph_failback.lab.oned import OnedStandIn
from ceph_failback.opennebula import OpenNebulaSite

from .test_cli import Fake, write_config


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ONE_AUTH", "ONE_XMLRPC", "ONE_DISABLE_SSL_VERIFY", "ONE_CERT_DIR",
                 "ONE_XMLRPC_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (usable as its own CA bundle), and its key."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "oned.pem", tmp_path / "oned.key"
    subprocess.run(  # noqa: S603 - fixed arguments
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=oned stand-in", "-addext", "subjectAltName=IP:127.0.0.1",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def oned(certificate: tuple[Path, Path]) -> Iterator[OnedStandIn]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    with OnedStandIn(name="site-b", users={"oneadmin": "pw-https-test"},
                     ssl_context=context) as server:
        assert server.endpoint.startswith("https://")
        yield server


def site(oned: OnedStandIn, **kwargs: object) -> OpenNebulaSite:
    return OpenNebulaSite("site-b", kwargs.pop("endpoint", oned.endpoint),  # type: ignore[arg-type]
                          credentials=oned.session, timeout=5, **kwargs)  # type: ignore[arg-type]


def verification_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and "verification" in r.getMessage()]


def test_verification_is_on_by_default(oned: OnedStandIn, tmp_path: Path) -> None:
    # None: as the OpenNebula clients' environment says, which is "on" when it says nothing.
    assert inspect.signature(OpenNebulaSite).parameters["verify"].default is None
    assert inspect.signature(SiteConfig).parameters["one_verify"].default is None
    config = write_config(tmp_path)  # site A sets no one_verify
    assert load_config(config).site_a.one_verify is None
    transport = site(oned)._client._ServerProxy__transport
    assert transport.https_verify is True


def test_an_untrusted_certificate_is_a_clear_error_and_nothing_is_sent(
        oned: OnedStandIn, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(OpenNebulaConnectionError) as info:
        site(oned).vms()
    err = info.value
    text = str(err)
    assert err.site == "site-b" and "site 'site-b'" in text
    assert oned.endpoint in text and "failed verification" in text
    assert "self-signed" in text or "self signed" in text
    assert "one_verify" in (err.hint or "") and "verify=False" in (err.hint or "")
    assert "CA bundle" in (err.hint or "")
    assert oned.calls == []  # the credentials never left: TLS failed before any request
    assert verification_warnings(caplog) == []  # nothing was turned off


def test_a_certificate_for_another_host_is_refused(oned: OnedStandIn,
                                                   certificate: tuple[Path, Path]) -> None:
    endpoint = oned.endpoint.replace("127.0.0.1", "localhost")
    with pytest.raises(OpenNebulaConnectionError) as info:
        site(oned, endpoint=endpoint, verify=str(certificate[0])).version()
    text = str(info.value)
    assert "failed verification" in text and "site 'site-b'" in text
    assert "localhost" in text and "one_verify" in (info.value.hint or "")
    assert oned.calls == []


def test_the_site_ca_bundle_makes_it_work(oned: OnedStandIn, certificate: tuple[Path, Path],
                                          tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert site(oned, verify=str(certificate[0])).version() == "7.4.0"
    # The same from a configuration file: one_verify names the bundle (relative to the file).
    shutil.copy(certificate[0], tmp_path / "site-b-ca.pem")
    config = write_config(tmp_path, b_extra="")
    text = config.read_text().replace("one_verify = false", 'one_verify = "site-b-ca.pem"')
    text = text.replace('one_endpoint = "http://one-b.example:2633/RPC2"',
                        f'one_endpoint = "{oned.endpoint}"')
    (tmp_path / "b.auth").write_text(oned.session + "\n")
    config.write_text(text)
    cfg = load_config(config)
    assert cfg.site_b.one_verify == str(tmp_path / "site-b-ca.pem")
    assert cfg.sites()[1].one.vms() == []
    assert verification_warnings(caplog) == []


def test_turning_verification_off_is_explicit_and_logged(oned: OnedStandIn,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    off = site(oned, verify=False)
    (message,) = verification_warnings(caplog)
    assert "site-b" in message and oned.endpoint in message and "OFF" in message
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning on each call
        assert off.version() == "7.4.0" and off.vms() == []
    assert len(verification_warnings(caplog)) == 1  # said once, when the site is made


def test_verification_off_in_the_config_file_is_shown_by_the_cli(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``one_verify = false`` on an https site: every command says so on stderr, without -v."""
    fake = Fake(monkeypatch)
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace('one_endpoint = "http://one-b.example:2633/RPC2"',
                                                 'one_endpoint = "https://one-b.example/RPC2"'))
    assert main(["plan", "-c", str(config)]) == 0
    err = capsys.readouterr().err
    assert "site-b: TLS certificate verification is turned OFF" in err
    assert "site-a" not in err  # site A verifies (the default): nothing to say
    assert fake.called("plan")


def test_http_endpoints_have_no_tls_to_turn_off(caplog: pytest.LogCaptureFixture) -> None:
    """verify=False means nothing for http: no "TLS verification OFF" warning. Plain http off
    loopback is worth a warning of its own: the credentials cross the network in clear."""
    caplog.set_level(logging.DEBUG)
    OpenNebulaSite("site-l", "http://127.0.0.1:2633/RPC2", credentials="u:p", verify=False)
    OpenNebulaSite("site-h", "http://localhost:2633/RPC2", credentials="u:p")
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    OpenNebulaSite("site-r", "http://one-r.example:2633/RPC2", credentials="u:p", verify=False)
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    message = record.getMessage()
    assert "site-r" in message and "plain http" in message and "unencrypted" in message
    assert "verification" not in message


# -- the OpenNebula clients' environment (issue 13: the usual client conventions) ---------------


def test_one_disable_ssl_verify_turns_it_off_and_says_so_once(
        oned: OnedStandIn, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("ONE_DISABLE_SSL_VERIFY", "yes")
    first, second = site(oned), site(oned)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # urllib3's InsecureRequestWarning on each call
        assert first.version() == "7.4.0" and second.vms() == []
    assert len(verification_warnings(caplog)) == 1  # once for the endpoint, not per site/call
    # An explicit verify wins over the environment.
    with pytest.raises(OpenNebulaConnectionError, match="failed verification"):
        site(oned, verify=True).version()


def test_one_cert_dir_adds_the_site_s_ca(oned: OnedStandIn, certificate: tuple[Path, Path],
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    shutil.copy(certificate[0], cert_dir / "site-b.crt")
    monkeypatch.setenv("ONE_CERT_DIR", str(cert_dir))
    assert site(oned).version() == "7.4.0"
    monkeypatch.setenv("ONE_CERT_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match="ONE_CERT_DIR"):
        site(oned)
