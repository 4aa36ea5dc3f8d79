"""OpenNebulaSite with the real pyone client against the oned stand-in on 127.0.0.1: queries,
actions and their waits, error mapping, configuration, timeouts, TLS, and secrets."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import (
    ConfigurationError,
    OpenNebulaAuthenticationError,
    OpenNebulaAuthorizationError,
    OpenNebulaConnectionError,
    OpenNebulaError,
    OpenNebulaUnavailableError,
    VMActionError,
    VMNotFoundError,
    WaitFailedError,
    WaitTimeoutError,
)
from ceph_failback.lab.oned import Delays, OnedStandIn, VolatileDisk
from ceph_failback.opennebula import Credentials, Disk, DiskKind, OpenNebulaSite

STEP = 0.03
PASSWORD = "s3cr3t-Pa55word"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # The developer's own ONE_* settings and ~/.one must not leak into these tests.
    for name in ("ONE_XMLRPC", "ONE_AUTH", "ONE_XMLRPC_TIMEOUT", "ONE_DISABLE_SSL_VERIFY",
                 "ONE_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def oned() -> Iterator[OnedStandIn]:
    with OnedStandIn(
        name="site-b", users={"oneadmin": PASSWORD}, delays=Delays.uniform(STEP)
    ) as server:
        yield server


def make_site(oned: OnedStandIn, **kwargs: object) -> OpenNebulaSite:
    options: dict[str, object] = {
        "credentials": oned.session,
        "timeout": 5.0,
        "poll_interval": 0.01,
    }
    options.update(kwargs)
    return OpenNebulaSite("site-b", oned.endpoint, **options)  # type: ignore[arg-type]


@pytest.fixture
def site(oned: OnedStandIn) -> OpenNebulaSite:
    return make_site(oned)


# --- configuration ---------------------------------------------------------------------------


def test_endpoint_and_credentials_from_arguments(oned):
    site = OpenNebulaSite("site-b", oned.endpoint, credentials=f"oneadmin:{PASSWORD}")
    assert (site.name, site.endpoint, site.user) == ("site-b", oned.endpoint, "oneadmin")
    assert site.version() == "7.4.0"


def test_endpoint_from_one_xmlrpc_and_argument_wins(oned, monkeypatch):
    monkeypatch.setenv("ONE_XMLRPC", oned.endpoint)
    assert OpenNebulaSite("site-b", credentials=oned.session).endpoint == oned.endpoint
    other = "http://127.0.0.1:1/RPC2"
    assert OpenNebulaSite("site-b", other, credentials=oned.session).endpoint == other


def test_no_endpoint_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="ONE_XMLRPC") as err:
        OpenNebulaSite("site-a", credentials="u:p")
    assert err.value.site == "site-a"


@pytest.mark.parametrize(
    "endpoint",
    ["127.0.0.1:2633/RPC2", "localhost:2634", "grpc://host:2634", "https://", "ftp://h/"],
)
def test_endpoint_without_http_scheme_is_refused(endpoint):
    # pyone would pick its gRPC client for these.
    with pytest.raises(ConfigurationError, match="not an http:// or https:// URL"):
        OpenNebulaSite("site-a", endpoint, credentials="u:p")


def test_endpoint_with_credentials_is_refused_without_showing_them():
    with pytest.raises(ConfigurationError) as err:
        OpenNebulaSite("site-a", f"http://oneadmin:{PASSWORD}@host:2633/RPC2", credentials="u:p")
    assert PASSWORD not in str(err.value)
    assert "ONE_AUTH" in str(err.value)


def test_credentials_from_one_auth_file(oned, tmp_path, monkeypatch):
    auth = tmp_path / "auth"
    auth.write_text(f"\noneadmin:{PASSWORD}\n")
    monkeypatch.setenv("ONE_AUTH", str(auth))
    site = OpenNebulaSite("site-b", oned.endpoint)
    assert site.user == "oneadmin"
    assert site.version() == "7.4.0"


def test_credentials_from_default_one_auth(oned, tmp_path):
    default = tmp_path / "home" / ".one" / "one_auth"
    default.parent.mkdir(parents=True)
    default.write_text(f"oneadmin:{PASSWORD}")
    assert OpenNebulaSite("site-b", oned.endpoint).version() == "7.4.0"


def test_credentials_argument_wins_over_one_auth(oned, tmp_path, monkeypatch):
    auth = tmp_path / "auth"
    auth.write_text("someone:else")
    monkeypatch.setenv("ONE_AUTH", str(auth))
    assert make_site(oned).user == "oneadmin"


def test_missing_one_auth_file_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "nope"))
    with pytest.raises(ConfigurationError, match="none of .*nope \\(from ONE_AUTH\\), .*exists"):
        OpenNebulaSite("site-a", "http://127.0.0.1:2633/RPC2")
    monkeypatch.delenv("ONE_AUTH")
    with pytest.raises(ConfigurationError, match=r"none of .*\.one/one_auth, "
                       r"/var/lib/one/\.one/one_auth exists"):
        OpenNebulaSite("site-a", "http://127.0.0.1:2633/RPC2")


def test_the_opennebula_clients_order_for_credentials(oned, tmp_path, monkeypatch, caplog):
    # src/oca/ruby/opennebula/lib/client.rb: $ONE_AUTH if it is a file, else ~/.one/one_auth,
    # else /var/lib/one/.one/one_auth.
    import ceph_failback.opennebula.config as config

    oneadmin = tmp_path / "var-lib-one-auth"
    oneadmin.write_text(f"oneadmin:{PASSWORD}\n")
    monkeypatch.setattr(config, "AUTH_FILES", (config.DEFAULT_AUTH_FILE, oneadmin))
    assert OpenNebulaSite("site-b", oned.endpoint).version() == "7.4.0"
    home = tmp_path / "home" / ".one" / "one_auth"
    home.parent.mkdir(parents=True)
    home.write_text("someone:else")
    assert OpenNebulaSite("site-b", oned.endpoint).user == "someone"
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "typo"))  # not a file: the next one serves
    caplog.set_level(logging.WARNING)
    assert OpenNebulaSite("site-b", oned.endpoint).user == "someone"
    assert OpenNebulaSite("site-b", oned.endpoint).user == "someone"
    said = [r.getMessage() for r in caplog.records if "ONE_AUTH names" in r.getMessage()]
    assert len(said) == 1 and "typo" in said[0]


def test_the_opennebula_clients_order_for_the_endpoint_and_timeout(oned, tmp_path, monkeypatch):
    with pytest.raises(ConfigurationError, match="one_endpoint"):
        OpenNebulaSite("site-b", credentials=oned.session)
    endpoint_file = tmp_path / "home" / ".one" / "one_endpoint"
    endpoint_file.parent.mkdir(parents=True)
    endpoint_file.write_text(oned.endpoint + "\n")
    site = OpenNebulaSite("site-b", credentials=oned.session)
    assert site.endpoint == oned.endpoint and site.version() == "7.4.0"
    monkeypatch.setenv("ONE_XMLRPC", "http://127.0.0.1:1/RPC2")  # the variable wins
    assert OpenNebulaSite("site-b", credentials=oned.session).endpoint.endswith(":1/RPC2")
    assert site.timeout == 30
    monkeypatch.setenv("ONE_XMLRPC_TIMEOUT", "7")
    assert OpenNebulaSite("site-b", credentials=oned.session).timeout == 7
    assert OpenNebulaSite("site-b", credentials=oned.session, timeout=3).timeout == 3
    monkeypatch.setenv("ONE_XMLRPC_TIMEOUT", "soon")
    with pytest.raises(ConfigurationError, match="ONE_XMLRPC_TIMEOUT='soon'"):
        OpenNebulaSite("site-b", credentials=oned.session)


def test_malformed_credentials_are_not_quoted(tmp_path, monkeypatch):
    auth = tmp_path / "auth"
    auth.write_text(PASSWORD)  # no "user:" part
    monkeypatch.setenv("ONE_AUTH", str(auth))
    with pytest.raises(ConfigurationError, match="user:password") as err:
        OpenNebulaSite("site-a", "http://127.0.0.1:2633/RPC2")
    assert PASSWORD not in str(err.value)
    with pytest.raises(ConfigurationError) as err:
        OpenNebulaSite("site-a", "http://127.0.0.1:2633/RPC2", credentials=f"{PASSWORD}:")
    assert PASSWORD not in str(err.value)


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"poll_interval": -1}])
def test_bad_numbers_are_configuration_errors(oned, kwargs):
    with pytest.raises(ConfigurationError):
        make_site(oned, **kwargs)


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_never_in_repr_logs_or_errors(oned, caplog):
    caplog.set_level(logging.DEBUG)
    site = make_site(oned)
    vm = oned.add_vm(disks=[oned.add_image(persistent=True)])
    assert PASSWORD not in repr(site) and "oneadmin" in repr(site)
    creds = Credentials("oneadmin", PASSWORD)
    assert PASSWORD not in repr(creds) and PASSWORD not in str(creds)
    site.vms()
    site.terminate(vm, timeout=5)
    errors: list[BaseException] = []
    oned.reject_credentials()
    with pytest.raises(OpenNebulaAuthenticationError) as auth:
        site.vm(vm)
    errors.append(auth.value)
    oned.reject_credentials(False)
    oned.refuse_connections()
    with pytest.raises(OpenNebulaConnectionError) as refused:
        site.vms()
    errors.append(refused.value)
    for error in errors:
        chain = [error, error.__cause__, error.__context__]
        assert all(PASSWORD not in str(e) and PASSWORD not in repr(e) for e in chain)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert PASSWORD not in logged
    assert "terminate" in caplog.text  # the logs were captured at all


# --- timeouts and connection errors ------------------------------------------------------------


def test_calls_leave_the_process_socket_timeout_alone(oned):
    before = socket.getdefaulttimeout()
    site = make_site(oned, timeout=2.5)
    site.vms()
    site.version()
    assert socket.getdefaulttimeout() == before


def test_the_per_call_timeout_applies(oned):
    site = make_site(oned, timeout=0.2)
    oned.set_call_delay(1.0)
    started = time.monotonic()
    with pytest.raises(OpenNebulaConnectionError, match="did not answer within 0.2s") as err:
        site.version()
    assert time.monotonic() - started < 0.9
    assert err.value.site == "site-b"
    assert socket.getdefaulttimeout() is None


def test_refused_connection(oned, site):
    oned.refuse_connections()
    with pytest.raises(OpenNebulaConnectionError, match="Connection refused") as err:
        site.vm(3)
    assert "site 'site-b'" in str(err.value) and "VM 3" in str(err.value)
    assert oned.endpoint in str(err.value)


def test_wrong_path_is_a_connection_error_that_says_so(oned):
    site = OpenNebulaSite(
        "site-b", oned.endpoint.replace("/RPC2", "/nope"), credentials=oned.session
    )
    with pytest.raises(OpenNebulaConnectionError, match="HTTP 404.*RPC2"):
        site.version()


# --- TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oned stand-in")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def tls_oned(tls_files) -> Iterator[OnedStandIn]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    with OnedStandIn(name="site-b", ssl_context=context) as server:
        yield server


def test_https_verifies_certificates_by_default(tls_oned):
    site = OpenNebulaSite("site-b", tls_oned.endpoint, credentials=tls_oned.session, timeout=5)
    assert tls_oned.endpoint.startswith("https://")
    with pytest.raises(OpenNebulaConnectionError) as err:
        site.version()
    text = str(err.value)
    assert "certificate" in text and "verification" in text and "site 'site-b'" in text


def test_https_with_the_site_ca_bundle(tls_oned, tls_files):
    site = OpenNebulaSite(
        "site-b", tls_oned.endpoint, credentials=tls_oned.session, verify=str(tls_files[0])
    )
    assert site.version() == "7.4.0"


def test_turning_verification_off_is_explicit_and_logged(tls_oned, caplog):
    with caplog.at_level(logging.WARNING):
        site = OpenNebulaSite(
            "site-b", tls_oned.endpoint, credentials=tls_oned.session, verify=False
        )
    assert any(
        r.levelno == logging.WARNING and "verification is turned OFF" in r.getMessage()
        for r in caplog.records
    )
    with pytest.warns(Warning):  # urllib3's InsecureRequestWarning, on every call
        assert site.version() == "7.4.0"


# --- error codes ------------------------------------------------------------------------------


def test_authentication_error(oned):
    site = make_site(oned, credentials="oneadmin:wrong")
    with pytest.raises(OpenNebulaAuthenticationError) as err:
        site.vms()
    assert err.value.code == 0x100
    assert "site 'site-b'" in str(err.value) and "'oneadmin'" in str(err.value)


def test_authorization_error(oned):
    oned.add_user("viewer", "pw", admin=False)
    vm = oned.add_vm(state="RUNNING")
    site = make_site(oned, credentials="viewer:pw")
    assert site.vm(vm).is_running  # reading is allowed
    with pytest.raises(OpenNebulaAuthorizationError) as err:
        site.terminate(vm, timeout=1)
    assert err.value.code == 0x200 and err.value.vm == vm
    assert "'viewer'" in str(err.value) and "terminate" in str(err.value)
    assert oned.vm_state(vm) == ("ACTIVE", "RUNNING")


def test_missing_objects(site):
    with pytest.raises(VMNotFoundError) as err:
        site.vm(42)
    assert (err.value.code, err.value.vm, err.value.site) == (0x400, 42, "site-b")
    assert "Error getting virtual machine [42]" in str(err.value)
    with pytest.raises(VMNotFoundError, match=r"image \[5\]"):
        site.image(5)
    with pytest.raises(VMNotFoundError, match=r"datastore \[77\]"):
        site.datastore(77)
    with pytest.raises(VMNotFoundError):
        site.terminate(42)


def test_refused_action_names_vm_state_and_action(oned, site):
    vm = oned.add_vm(state="BOOT")
    with pytest.raises(VMActionError) as err:
        site.terminate(vm, timeout=1)
    text = str(err.value)
    assert err.value.code == 0x800 and err.value.vm == vm and err.value.site == "site-b"
    assert f"terminate VM {vm}" in text and "ACTIVE/BOOT" in text
    assert f"Could not terminate VM {vm}, wrong state BOOT." in text


def test_resume_on_a_done_vm_is_refused(oned, site):
    vm = oned.add_vm(state="DONE")
    with pytest.raises(VMActionError, match="resume.*DONE.*not available for state DONE"):
        site.resume(vm, timeout=1)


def test_internal_and_unexpected_errors_are_opennebula_errors(oned, site, monkeypatch):
    # The stand-in answers 0x2000 for an action it does not model: still an OpenNebulaError.
    vm = oned.add_vm(state="RUNNING")
    with pytest.raises(OpenNebulaError, match="does not model") as err:
        site._call("vm.action", "reboot", vm, what=f"reboot VM {vm}", vm=vm)
    assert err.value.code == 0x2000
    with pytest.raises(OpenNebulaError, match="not defined"):
        site._call("vm.nothing", vm, what="call a missing method")
    with pytest.raises(OpenNebulaError, match="Incorrect state filter 99") as err:
        site._call("vmpool.info", -2, -1, -1, 99, what="list the VMs")
    assert err.value.code == 0x1000


# --- queries ----------------------------------------------------------------------------------


def test_vms_are_typed_newest_first_done_excluded_by_default(oned, site):
    clone = oned.add_image(persistent=False)
    data = oned.add_image(persistent=True)
    one_disk = oned.add_vm("single", disks=[data])
    multi = oned.add_vm("multi", disks=[clone, VolatileDisk(), oned.add_image(persistent=True)])
    done = oned.add_vm("old", disks=[clone], state="DONE")
    off = oned.add_vm("off", state="POWEROFF")
    vms = site.vms()
    assert [v.id for v in vms] == [off, multi, one_disk]
    by_id = {v.id: v for v in vms}
    assert by_id[one_disk].disks == (Disk(0, data, "one", f"one-{data}", DiskKind.PERSISTENT),)
    assert [(d.image, d.kind) for d in by_id[multi].disks] == [
        (f"one-{clone}-{multi}-0", DiskKind.CLONE),
        (f"one-sys-{multi}-1", DiskKind.VOLATILE),
        (f"one-{data + 1}", DiskKind.PERSISTENT),
    ]
    assert (by_id[off].state, by_id[off].lcm_state, by_id[off].disks) == (
        "POWEROFF",
        "LCM_INIT",
        (),
    )
    assert by_id[multi].status == "ACTIVE/RUNNING"
    assert [v.id for v in site.vms(include_done=True)] == [off, done, multi, one_disk]
    assert [v.id for v in site.vms(state="POWEROFF")] == [off]
    assert [v.id for v in site.vms(state="done")] == [done]
    with pytest.raises(ConfigurationError, match="unknown VM state"):
        site.vms(state="SLEEPING")


def test_vms_by_id_reads_done_vms_in_one_call(oned, site):
    data = oned.add_image(persistent=True)
    done = oned.add_vm(disks=[data], state="DONE")
    live = oned.add_vm(state="POWEROFF")
    calls = len(oned.calls)
    vms = site.vms_by_id([live, done, 12345])
    assert [(vm.id, vm.state) for vm in vms] == [(live, "POWEROFF"), (done, "DONE")]
    assert [d.image for d in vms[1].disks] == [f"one-{data}"]
    assert oned.calls[calls:] == ["one.vmpool.infoset"]
    assert site.vms_by_id([]) == [] and oned.calls[calls + 1:] == []


def test_vm_reads_single_and_multi_disk_vms(oned, site):
    data = oned.add_image(persistent=True, source="one/one-77")  # as registered on site B
    single = site.vm(oned.add_vm(disks=[data]))
    assert [d.spec for d in single.disks] == ["one/one-77"]
    multi = site.vm(oned.add_vm(disks=[oned.add_image(persistent=False), VolatileDisk()]))
    assert len(multi.disks) == 2


def test_non_ceph_disks_and_ssh_mode_clones_are_left_out(oned, site):
    local = oned.add_image(persistent=False, datastore_id=1)
    ceph_clone = oned.add_image(persistent=False)
    ceph_data = oned.add_image(persistent=True)
    vm = site.vm(oned.add_vm(disks=[local, ceph_clone, ceph_data], system_datastore_id=0))
    assert [d.spec for d in vm.disks] == [f"one/one-{ceph_data}"]


def test_cdrom_and_immutable_disks_read_as_read_only(oned, site):
    iso = oned.add_image(persistent=False, type="CDROM")
    gold = oned.add_image(persistent=True, persistent_type="IMMUTABLE")
    data = oned.add_image(persistent=True)
    vm = site.vm(oned.add_vm(disks=[iso, gold, data]))
    kinds = [d.kind for d in vm.disks]
    assert kinds == [DiskKind.READ_ONLY, DiskKind.READ_ONLY, DiskKind.PERSISTENT]


def test_other_pool_names():
    with OnedStandIn(ceph_pool="rbdpool") as other:
        vm = other.add_vm(disks=[VolatileDisk(), other.add_image(persistent=True)])
        disks = make_site(other).vm(vm).disks
        assert [d.spec for d in disks] == [f"rbdpool/one-sys-{vm}-0", "rbdpool/one-0"]
    deleted: list[tuple[str, str]] = []
    with OnedStandIn(ceph_pool="", delays=Delays.uniform(STEP)) as unnamed:
        unnamed.delete_rbd_image = lambda pool, image: deleted.append((pool, image))
        vm = unnamed.add_vm(disks=[VolatileDisk(), unnamed.add_image(persistent=False)])
        unnamed_site = make_site(unnamed)
        assert [d.spec for d in unnamed_site.vm(vm).disks] == [
            f"one/one-sys-{vm}-0",
            f"one/one-0-{vm}-1",
        ]
        unnamed_site.terminate(vm, timeout=5)
        assert deleted == [("one", f"one-sys-{vm}-0"), ("one", f"one-0-{vm}-1")]


def test_image_and_datastore_records(oned, site):
    data = oned.add_image("data", persistent=True)
    vm = oned.add_vm(disks=[data])
    image = site.image(data)
    assert (image.name, image.source, image.persistent, image.state, image.vm_ids) == (
        "data",
        f"one/one-{data}",
        True,
        "USED_PERS",
        (vm,),
    )
    ds = site.datastore(101)
    assert (ds.name, ds.type, ds.tm_mad, ds.pool_name, ds.is_ceph) == (
        "ceph_sys",
        "SYSTEM",
        "ceph",
        "one",
        True,
    )
    assert site.datastore(1).is_ceph is False


# --- actions ----------------------------------------------------------------------------------


def test_terminate_running_vm_waits_for_done_and_ceph_deletes_the_clones(oned, site):
    clone = oned.add_image(persistent=False)
    data = oned.add_image(persistent=True)
    vm = oned.add_vm(disks=[clone, data, VolatileDisk()])
    result = site.terminate(vm, timeout=5)
    assert result.is_done and result.id == vm
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN", "EPILOG", "DONE"]
    assert oned.deleted_images == [("one", f"one-{clone}-{vm}-0"), ("one", f"one-sys-{vm}-2")]


def test_vm_0_answers_0_and_is_not_a_failure(oned, site):
    vm = oned.add_vm(state="RUNNING")
    assert vm == 0
    assert site.terminate(0, timeout=5).is_done
    assert oned.actions == [(0, "terminate", True)]


@pytest.mark.parametrize("state", ["POWEROFF", "SUSPENDED", "UNDEPLOYED", "PENDING", "HOLD"])
def test_terminate_from_other_states(oned, site, state):
    oned.set_scheduler(False)
    vm = oned.add_vm(state=state)
    assert site.terminate(vm, timeout=5).is_done


def earlier_run(oned: OnedStandIn, action: str, vm: int) -> None:
    """An action requested before (e.g. by an interrupted run), straight over XML-RPC."""
    reply: list = xmlrpc.client.ServerProxy(oned.endpoint).one.vm.action(  # type: ignore[assignment]
        oned.session, action, vm
    )
    assert reply[0] is True


def test_terminate_is_safe_to_repeat(oned, site):
    vm = oned.add_vm(state="DONE")
    assert site.terminate(vm).is_done
    assert oned.actions == []  # a DONE VM is not asked again
    oned.set_delays(shutdown=0.3)
    again = oned.add_vm(state="RUNNING")
    earlier_run(oned, "terminate", again)
    assert oned.vm_state(again) == ("ACTIVE", "SHUTDOWN")
    # oned would refuse a second terminate during SHUTDOWN: the rerun only waits.
    assert site.terminate(again, timeout=5).is_done
    assert oned.actions == [(again, "terminate", True)]


def test_terminate_tolerates_oned_dispatch_lag(oned, site):
    oned.set_delays(dispatch=0.1)
    vm = oned.add_vm(state="RUNNING")
    assert site.terminate(vm, timeout=5).is_done


def test_stuck_shutdown_times_out_saying_the_last_state(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm)
    with pytest.raises(WaitTimeoutError) as err:
        site.terminate(vm, timeout=0.3)
    assert err.value.last_seen == {f"VM {vm}": "ACTIVE/SHUTDOWN"}
    assert err.value.site == "site-b" and err.value.vm == vm
    assert "hard_after" in str(err.value)
    assert [a[1] for a in oned.actions] == ["terminate"]  # never forced without opt-in


def test_hard_fallback_after_a_stuck_shutdown(oned, site, caplog):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm)
    with caplog.at_level(logging.WARNING):
        assert site.terminate(vm, hard_after=0.1, timeout=5).is_done
    assert [a[1] for a in oned.actions] == ["terminate", "terminate-hard"]
    assert "forcing terminate-hard" in caplog.text


def test_failed_guest_shutdown_fails_fast_without_fallback(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, fail_after=0.05)
    started = time.monotonic()
    with pytest.raises(WaitFailedError, match="went back to ACTIVE/RUNNING: the action failed"):
        site.terminate(vm, timeout=5)
    assert time.monotonic() - started < 2


def test_failed_guest_shutdown_with_fallback_forces(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, fail_after=0.05)
    assert site.terminate(vm, hard_after=3, timeout=5).is_done
    assert [a[1] for a in oned.actions] == ["terminate", "terminate-hard"]


def test_epilog_failure_ends_the_wait_at_once():
    def refuse(pool: str, image: str) -> None:
        raise RuntimeError("rbd rm failed")

    with OnedStandIn(delays=Delays.uniform(STEP), delete_rbd_image=refuse) as oned:
        vm = oned.add_vm(disks=[oned.add_image(persistent=False)])
        site = make_site(oned)
        with pytest.raises(WaitFailedError, match="EPILOG_FAILURE") as err:
            site.terminate(vm, hard_after=2, timeout=5)  # no forcing on a real failure
        assert err.value.vm == vm
        assert [a[1] for a in oned.actions] == ["terminate"]


def test_terminate_cleans_up_a_vm_in_a_failure_state(oned, site):
    oned.set_delays(dispatch=0.05)  # the failure state lingers after the accepted call
    vm = oned.add_vm(state="BOOT_FAILURE", disks=[oned.add_image(persistent=False)])
    assert site.terminate(vm, timeout=5).is_done
    assert oned.transitions(vm) == ["BOOT_FAILURE", "CLEANUP_DELETE", "DONE"]
    assert oned.deleted_images == [("one", f"one-0-{vm}-0")]


def test_hard_after_must_fit_in_timeout(oned, site):
    with pytest.raises(ConfigurationError, match="hard_after"):
        site.terminate(oned.add_vm(), hard_after=10, timeout=5)


@pytest.mark.parametrize("state", ["POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED", "UNKNOWN"])
def test_resume_waits_for_running(oned, site, state):
    vm = oned.add_vm(state=state)
    result = site.resume(vm, timeout=5)
    assert result.is_running
    assert oned.transitions(vm)[-1] == "RUNNING"


def test_resume_of_a_running_vm_does_nothing(oned, site):
    vm = oned.add_vm(state="RUNNING")
    assert site.resume(vm).is_running
    assert oned.actions == []


def test_resume_pending_forever_times_out_saying_pending(oned, site):
    oned.set_scheduler(False)
    vm = oned.add_vm(state="UNDEPLOYED")
    with pytest.raises(WaitTimeoutError) as err:
        site.resume(vm, timeout=0.2)
    assert err.value.last_seen == {f"VM {vm}": "PENDING"}


def test_poweroff_waits_for_poweroff(oned, site):
    vm = oned.add_vm(state="RUNNING")
    assert site.poweroff(vm, timeout=5).state == "POWEROFF"
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN_POWEROFF", "POWEROFF"]
    assert site.poweroff(vm).state == "POWEROFF"
    assert [a[1] for a in oned.actions] == ["poweroff"]


def test_poweroff_of_a_guest_that_ignores_it(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, fail_after=0.05)
    with pytest.raises(WaitFailedError, match="RUNNING"):
        site.poweroff(vm, timeout=5)
    stuck = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(stuck)
    with pytest.raises(WaitTimeoutError) as err:
        site.poweroff(stuck, timeout=0.2)
    assert err.value.last_seen == {f"VM {stuck}": "ACTIVE/SHUTDOWN_POWEROFF"}


def test_a_wait_survives_a_short_connection_loss(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.set_delays(shutdown=0.4)
    drop = threading.Timer(0.1, oned.refuse_connections)
    back = threading.Timer(0.2, oned.accept_connections)
    drop.start()
    back.start()
    assert site.terminate(vm, timeout=5).is_done
    drop.join()
    back.join()


def test_a_wait_that_never_reconnects_times_out_with_the_error(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.set_delays(shutdown=5)
    earlier_run(oned, "terminate", vm)
    timer = threading.Timer(0.1, oned.refuse_connections)
    timer.start()
    with pytest.raises(WaitTimeoutError) as err:
        site.terminate(vm, timeout=0.5)
    timer.join()
    assert "Connection refused" in err.value.last_seen["error"]


# --- failures that happen fast (issue 13 case 7) ---------------------------------------------


def test_a_boot_that_fails_between_polls_fails_at_once_with_oned_s_message(oned):
    # resume from POWEROFF: BOOT_POWEROFF, the driver fails, back to POWEROFF with
    # USER_TEMPLATE/ERROR; a poll every 0.5 s never sees BOOT_POWEROFF.
    site = make_site(oned, poll_interval=0.5)
    vm = oned.add_vm(state="POWEROFF")
    oned.set_delays(boot=0.01)
    oned.fail_boot(vm, "error: Failed to create domain from /var/lib/one/0/deployment.0")
    started = time.monotonic()
    with pytest.raises(WaitFailedError, match="DEPLOY: error: Failed to create domain") as err:
        site.resume(vm, timeout=30)
    assert time.monotonic() - started < 3
    assert err.value.vm == vm and err.value.site == "site-b"
    assert site.vm(vm).error.endswith("DEPLOY: error: Failed to create domain from "
                                      "/var/lib/one/0/deployment.0")


def test_a_shutdown_that_fails_between_polls_fails_at_once(oned):
    site = make_site(oned, poll_interval=0.5)
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, fail_after=0.01)
    started = time.monotonic()
    with pytest.raises(WaitFailedError, match="SHUTDOWN: Timeout reached"):
        site.terminate(vm, timeout=30)
    assert time.monotonic() - started < 3


def test_an_old_error_is_not_a_new_failure(oned, site):
    vm = oned.add_vm(state="POWEROFF")
    oned.fail_boot(vm)
    with pytest.raises(WaitFailedError):
        site.resume(vm, timeout=5)
    assert site.vm(vm).error  # oned keeps it after later successes
    assert site.resume(vm, timeout=5).is_running


# --- a short oned outage (issue 13 case 8) ---------------------------------------------------


def test_refused_at_the_first_read_is_retried(oned, site):
    vm = oned.add_vm(state="POWEROFF")
    oned.refuse_connections()
    back = threading.Timer(0.3, oned.accept_connections)
    back.start()
    assert site.resume(vm, timeout=5).is_running
    back.join()
    assert [a[1] for a in oned.actions] == ["resume"]


@pytest.mark.parametrize("reason", ["no leader found", "oned cluster in election mode",
                                    "oned cluster is replicating log"])
def test_an_ha_oned_without_leader_is_retried(oned, site, reason):
    vm = oned.add_vm(state="RUNNING")
    oned.busy(3, reason=reason, methods={"one.vm.action"})
    assert site.terminate(vm, timeout=5).is_done
    assert oned.calls.count("one.vm.action") == 4
    assert [a[1] for a in oned.actions] == ["terminate"]


def test_a_proxy_s_5xx_is_retried_but_a_wrong_path_is_not(oned, site):
    vm = oned.add_vm(state="RUNNING")
    oned.answer_http(503, 2)
    assert site.poweroff(vm, timeout=5).state == "POWEROFF"
    oned.answer_http(404, 1)
    with pytest.raises(OpenNebulaConnectionError, match="HTTP 404") as err:
        site.resume(vm, timeout=5)
    assert not isinstance(err.value, OpenNebulaUnavailableError)
    assert [a[1] for a in oned.actions] == ["poweroff"]


def test_a_lost_answer_is_never_followed_by_a_blind_resend(oned):
    # oned carries out the terminate but answers after the client gave up: the retry reads the
    # VM first, sees it on its way to DONE, and does not send terminate again.
    site = make_site(oned, timeout=0.3)
    vm = oned.add_vm(state="RUNNING")
    oned.set_delays(shutdown=0.5)
    oned.lose_replies(0.6, 1, methods={"one.vm.action"})
    assert site.terminate(vm, timeout=5).is_done
    assert oned.calls.count("one.vm.action") == 1
    assert [a[1] for a in oned.actions] == ["terminate"]


def test_an_outage_longer_than_the_limit_ends_with_the_error(oned, site):
    vm = oned.add_vm(state="POWEROFF")
    oned.busy(10_000, methods={"one.vm.action"})
    started = time.monotonic()
    with pytest.raises(OpenNebulaUnavailableError, match="election mode") as err:
        site.resume(vm, timeout=0.5)
    assert time.monotonic() - started < 3
    assert err.value.site == "site-b" and err.value.code == 0x2000
    assert oned.vm_state(vm) == ("POWEROFF", "LCM_INIT")


# --- the VM listing's own parse ----------------------------------------------------------------


def test_listing_parse_gives_pyone_s_records_on_oned_s_sample() -> None:
    """vms() reads oned's pool listing with ElementTree instead of pyone's bindings (for speed):
    on a real oned 7.4 reply, both give the same records."""
    import pyone.bindings

    from ceph_failback.opennebula.records import pool_vms, vm_from_binding

    text = (Path(__file__).parent / "data" / "opennebula-samples"
            / "sample_vmpool_infoextended.xml").read_text()
    ours = pool_vms(text)
    pyone_s = [vm_from_binding(b) for b in pyone.bindings.parseString(text.encode()).VM]
    assert ours == pyone_s and ours and any(vm.disks for vm in ours)
    # A <VM> inside a VM's template is an attribute, not a VM of the pool.
    nested = text.replace("<USER_TEMPLATE>", "<USER_TEMPLATE><VM><![CDATA[x]]></VM>", 1)
    assert nested != text and pool_vms(nested) == ours


def test_listing_parse_gives_pyone_s_records_for_every_disk_kind(oned, site) -> None:
    one = oned.add_vm("one", disks=[oned.add_image(persistent=True)], state="POWEROFF")
    oned.add_vm("multi", disks=[oned.add_image(persistent=False), VolatileDisk(),
                                oned.add_image(persistent=True)])
    oned.add_vm("diskless", disks=[])
    site.terminate(one)  # DONE: listed with include_done only
    listed = site.vms(include_done=True)
    assert {vm.name for vm in listed} == {"one", "multi", "diskless"}
    assert listed == [site.vm(vm.id) for vm in listed]  # one.vm.info, through pyone's bindings
    assert {vm.name for vm in site.vms()} == {"multi", "diskless"}
    kinds = {d.kind for vm in listed for d in vm.disks}
    assert kinds == {DiskKind.PERSISTENT, DiskKind.CLONE, DiskKind.VOLATILE}


def test_listing_that_is_not_xml_is_a_clear_error(site, monkeypatch) -> None:
    monkeypatch.setattr("ceph_failback.opennebula.site.call_xml", lambda *a: "<VM_POOL><VM>")
    with pytest.raises(OpenNebulaError, match="not XML") as err:
        site.vms()
    assert err.value.site == "site-b"


def test_an_unrelated_oned_error_does_not_fail_the_wait(oned):
    # oned writes USER_TEMPLATE/ERROR for other driver operations too (a security group update,
    # say): only the action's own operations end its wait.
    from ceph_failback.opennebula.site import _operation

    assert _operation("Thu Dec  3 06:55:59 2026: DEPLOY: error: x: y") == "DEPLOY"
    assert _operation("Thu Dec  3 06:55:59 2026: Error executing image transfer script") == ""
    site = make_site(oned, poll_interval=0.5)
    vm = oned.add_vm(state="POWEROFF")
    oned.fail_boot(vm, "boom")
    with pytest.raises(WaitFailedError, match="DEPLOY: boom"):
        site.resume(vm, timeout=30)
    # The boot's failure is no failure of a poweroff: the next resume and poweroff go through.
    assert site.resume(vm, timeout=5).is_running
    assert site.poweroff(vm, timeout=5).state == "POWEROFF"


def test_a_fallback_file_behind_a_closed_directory_is_passed_over(monkeypatch):
    # /var/lib/one is oneadmin's (mode 750): for another user, is_file() raises EACCES there.
    import ceph_failback.opennebula.config as config

    class Denied(type(Path())):  # type: ignore[misc]
        def is_file(self) -> bool:
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(config, "AUTH_FILES", (Denied("/var/lib/one/.one/one_auth"),))
    monkeypatch.setattr(config, "ENDPOINT_FILES", (Denied("/var/lib/one/.one/one_endpoint"),))
    with pytest.raises(ConfigurationError, match="one_auth does not exist") as err:
        OpenNebulaSite("site-a", "http://127.0.0.1:2633/RPC2")
    assert err.value.site == "site-a"
    with pytest.raises(ConfigurationError, match="no OpenNebula endpoint"):
        OpenNebulaSite("site-a", credentials="u:p")


# --- the VM listing's pages ----------------------------------------------------------------


def _spy_listing(site: OpenNebulaSite, monkeypatch, on_call=None) -> list[tuple]:  # type: ignore[no-untyped-def]
    asked: list[tuple] = []
    real = site._listing

    def spy(method: str, *params, what: str):  # type: ignore[no-untyped-def]
        asked.append(params)
        answer = real(method, *params, what=what)
        if on_call is not None:
            answer = on_call(len(asked), params, answer)
        return answer

    monkeypatch.setattr(site, "_listing", spy)
    return asked


def test_a_large_pool_is_listed_in_id_windows_from_the_newest_down(oned, site, monkeypatch) -> None:
    vms = [oned.add_vm(f"vm{i}", disks=[]) for i in range(40)]
    for vm_id in vms[5:30]:  # a stretch of history: the windows widen over it
        site.terminate(vm_id)
    whole = site._listing("vmpool.infoextended", -2, -1, -1, -1, what="list")
    site.page_ids, site.widest_page = 4, 16
    asked = _spy_listing(site, monkeypatch)
    paged = site.vms()
    assert paged == whole and len(paged) == 15
    assert asked[0] == (-2, 0, -4, -1)  # the newest page_ids VMs, by offset 0
    windows = [(start, end) for _, start, end, _ in asked[1:]]
    assert windows[0][1] == paged[3].id - 1 and windows[-1][0] == 0  # then ids below them
    assert all(b[1] == a[0] - 1 for a, b in zip(windows, windows[1:], strict=False))  # down
    widths = [end - start + 1 for start, end in windows]
    assert max(widths) == 16 and all(w <= 16 for w in widths)


def test_a_vm_that_ends_while_the_pages_are_read_hides_no_other(oned, site, monkeypatch) -> None:
    vms = [oned.add_vm(f"vm{i}", disks=[]) for i in range(12)]
    site.page_ids = 4

    def end_one(n: int, params: tuple, answer: list):  # type: ignore[no-untyped-def]
        if n == 3:  # after the second page: a VM of the first page ends (DONE)
            site.terminate(max(vms))
        return answer

    _spy_listing(site, monkeypatch, end_one)
    assert sorted(vm.id for vm in site.vms()) == sorted(vms)


def test_a_site_that_lists_oldest_first_is_read_in_one_call(oned, site, monkeypatch) -> None:
    for i in range(6):
        oned.add_vm(f"vm{i}", disks=[])
    whole = site._listing("vmpool.infoextended", -2, -1, -1, -1, what="list")
    site.page_ids = 2

    def oldest_first(n: int, params: tuple, answer: list):  # type: ignore[no-untyped-def]
        # API_LIST_ORDER = ASC: every answer oldest first, the offset page from the oldest.
        ascending = sorted(whole, key=lambda vm: vm.id)
        return ascending[:-params[2]] if params[2] < -1 else sorted(answer, key=lambda vm: vm.id)

    asked = _spy_listing(site, monkeypatch, oldest_first)
    assert site.vms() == whole  # newest first all the same
    assert asked == [(-2, 0, -2, -1), (-2, -1, -1, -1)]


def test_an_empty_pool_is_one_call(oned, site, monkeypatch) -> None:
    asked = _spy_listing(site, monkeypatch)
    assert site.vms() == [] and asked == [(-2, 0, -site.page_ids, -1)]


def test_a_pool_smaller_than_a_page_is_one_call(oned, site, monkeypatch) -> None:
    for i in range(5):
        oned.add_vm(f"vm{i}", disks=[])
    asked = _spy_listing(site, monkeypatch)
    assert [vm.name for vm in site.vms()] == [f"vm{i}" for i in reversed(range(5))]
    assert asked == [(-2, 0, -site.page_ids, -1)]


@pytest.mark.parametrize("ids", [
    list(range(1_999_700, 2_000_000)),                     # a long-lived site: high ids only
    list(range(0, 20_000)) + list(range(60_000, 60_050)),  # sparse new ids over a dense block
    list(range(0, 30_000, 7)),                             # evenly sparse
], ids=["high-ids", "dense-under-sparse", "even"])
def test_the_pages_hold_at_most_the_widest_window_and_their_calls_are_bounded(
        site: OpenNebulaSite, monkeypatch, ids: list[int]) -> None:
    """The pager's arithmetic on id sets too large for the stand-in, answered as oned answers
    (a window: ``oid >= start AND oid <= end``; ``end < -1``: an offset page, newest first)."""
    from ceph_failback.opennebula.records import VM

    newest_first = sorted(ids, reverse=True)
    sizes: list[int] = []

    def listing(method: str, filter_: int, start: int, end: int, state: int, *, what: str):  # type: ignore[no-untyped-def]
        chosen = (newest_first[start:start - end] if end < -1 else
                  [i for i in newest_first if start <= i <= end])
        sizes.append(len(chosen))
        return [VM(i, f"vm-{i}", "RUNNING", "RUNNING", ()) for i in chosen]

    monkeypatch.setattr(site, "_listing", listing)
    listed = [vm.id for vm in site.vms()]
    assert listed == newest_first
    assert max(sizes) <= site.widest_page
    bound = len(ids) / site.page_ids + max(ids) / site.widest_page + 20
    assert len(sizes) <= bound


def test_a_page_of_one_is_still_an_offset_page(oned, site, monkeypatch) -> None:
    for i in range(3):
        oned.add_vm(f"vm{i}", disks=[])
    site.page_ids = 1  # -1 would be oned's open id range, not a page
    asked = _spy_listing(site, monkeypatch)
    assert [vm.name for vm in site.vms()] == ["vm2", "vm1", "vm0"]
    assert asked[0] == (-2, 0, -2, -1)
