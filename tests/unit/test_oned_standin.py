"""The oned stand-in on the wire (plain xmlrpc.client, no pyone): reply layout, messages, XML
schema against a real oned's samples, the state machine, the ceph driver's deletions, faults."""

from __future__ import annotations

import difflib
import json
import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.lab.oned import Delays, ErrorCode, OnedStandIn, VolatileDisk

SAMPLES = Path(__file__).parent / "data" / "opennebula-samples"
STEP = 0.03


@pytest.fixture
def oned() -> Iterator[OnedStandIn]:
    with OnedStandIn(name="site-t", delays=Delays.uniform(STEP)) as server:
        yield server


class Client:
    """Raw XML-RPC calls with the session prepended, as pyone sends them."""

    def __init__(self, oned: OnedStandIn, session: str | None = None) -> None:
        self.proxy = xmlrpc.client.ServerProxy(oned.endpoint)
        self.session = session or oned.session

    def __call__(self, method: str, *params: object) -> list:
        return getattr(self.proxy, method)(self.session, *params)

    def ok(self, method: str, *params: object):
        reply = self(method, *params)
        assert reply[0] is True, reply
        assert len(reply) == 3 and reply[2] == 0
        return reply[1]


@pytest.fixture
def call(oned: OnedStandIn) -> Client:
    return Client(oned)


def wait_for(oned: OnedStandIn, vm_id: int, lcm_or_state: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while oned.transitions(vm_id)[-1] != lcm_or_state:
        assert time.monotonic() < deadline, oned.transitions(vm_id)
        time.sleep(0.005)


# --- reply layout and messages ------------------------------------------------------------


def test_success_reply_is_ok_body_zero(oned, call):
    assert call("one.system.version") == [True, "7.4.0", 0]


def test_action_success_answers_the_vm_id_and_vm_0_answers_0(oned, call):
    vm0 = oned.add_vm(state="POWEROFF")
    vm1 = oned.add_vm(state="POWEROFF")
    assert vm0 == 0
    assert call("one.vm.action", "resume", vm0) == [True, 0, 0]
    assert call("one.vm.action", "resume", vm1) == [True, 1, 0]


def test_missing_vm_image_datastore_answer_0x400_with_the_id(oned, call):
    assert call("one.vm.info", 42) == [
        False,
        "[one.vm.info] Error getting virtual machine [42].",
        0x400,
        42,
        -1,
    ]
    assert call("one.vm.action", "terminate", 42)[1:4] == [
        "[one.vm.action] Error getting virtual machine [42].",
        0x400,
        42,
    ]
    assert call("one.image.info", 7)[1:4] == ["[one.image.info] Error getting image [7].", 0x400, 7]
    assert call("one.datastore.info", 9)[1:4] == [
        "[one.datastore.info] Error getting datastore [9].",
        0x400,
        9,
    ]


def test_bad_credentials_answer_0x100(oned):
    reply = Client(oned, "oneadmin:wrong")("one.vm.info", 0)
    assert reply == [
        False,
        "[one.vm.info] User couldn't be authenticated, aborting call.",
        0x100,
        -1,
        -1,
    ]
    assert Client(oned, "nobody")("one.system.version")[2] == 0x100


def test_rejecting_credentials_fault(oned, call):
    oned.reject_credentials()
    assert call("one.system.version")[2] == ErrorCode.AUTHENTICATION
    oned.reject_credentials(False)
    assert call("one.system.version")[0] is True


def test_non_admin_user_may_read_but_not_act_0x200(oned):
    uid = oned.add_user("viewer", "pw", admin=False)
    vm = oned.add_vm(state="RUNNING")
    viewer = Client(oned, "viewer:pw")
    assert viewer("one.vm.info", vm)[0] is True
    assert viewer("one.vm.action", "terminate", vm) == [
        False,
        f"[one.vm.action] User [{uid}] : Not authorized to perform MANAGE VM [{vm}].",
        0x200,
        -1,
        -1,
    ]
    assert oned.vm_state(vm) == ("ACTIVE", "RUNNING")


def test_wrong_state_answers_0x800_worded_like_oned(oned, call):
    vm = oned.add_vm(state="RUNNING")
    assert call("one.vm.action", "resume", vm) == [
        False,
        '[one.vm.action] Error performing action "resume": '
        "This action is not available for state RUNNING",
        0x800,
        -1,
        -1,
    ]
    off = oned.add_vm(state="POWEROFF")
    assert call("one.vm.action", "suspend", off)[1].endswith("not available for state POWEROFF")


def test_terminate_during_boot_is_refused_with_its_own_wording(oned, call):
    vm = oned.add_vm(state="BOOT")
    reply = call("one.vm.action", "terminate", vm)
    assert reply[1:3] == [
        f'[one.vm.action] Error performing action "terminate": '
        f"Could not terminate VM {vm}, wrong state BOOT.",
        0x800,
    ]


def test_unknown_and_unmodelled_actions(oned, call):
    vm = oned.add_vm(state="RUNNING")
    assert call("one.vm.action", "explode", vm)[1:3] == [
        '[one.vm.action] Action "explode" is not supported',
        0x800,
    ]
    # A real oned action the stand-in does not model must not pass for oned's behaviour.
    assert call("one.vm.action", "reboot", vm)[2] == 0x2000


def test_unknown_method_and_wrong_types_are_xmlrpc_faults(oned, call):
    with pytest.raises(xmlrpc.client.Fault, match="not defined"):
        call("one.vm.nothing", 1)
    with pytest.raises(xmlrpc.client.Fault, match="Type mismatch"):
        call("one.vm.info", "3")


# --- XML: schema of a real oned 7.4 --------------------------------------------------------


def _paths(text: str) -> list[str]:
    out: list[str] = []

    def walk(element: ET.Element, prefix: str) -> None:
        path = f"{prefix}/{element.tag}"
        out.append(path)
        for child in element:
            walk(child, path)

    walk(ET.fromstring(text), "")
    return out


def _sample(name: str) -> str:
    return re.sub(r">\s+<", "><", (SAMPLES / name).read_text().split("?>", 1)[1].strip())


@pytest.fixture
def like_samples(oned: OnedStandIn) -> OnedStandIn:
    """The objects of the samples: images 1 (non-persistent) and 2 (persistent), VM 3 using
    both, VM 8 with a clone of image 1 and a volatile disk."""
    oned.add_image("ceph-os", persistent=False, image_id=1)
    oned.add_image("ceph-data-persistent", persistent=True, size=2048, image_id=2)
    oned.add_vm("ceph-vm-1", disks=[1, 2], vm_id=3)
    oned.add_vm("ceph-sample", disks=[1, VolatileDisk(512)], vm_id=8)
    return oned


@pytest.mark.parametrize(
    "sample, method, params",
    [
        ("sample_vm_ceph_running.xml", "one.vm.info", (3,)),
        ("sample_vm_ceph_volatile_running.xml", "one.vm.info", (8,)),
        ("sample_vmpool_info_short.xml", "one.vmpool.info", (-2, 8, 8, -1)),
        ("sample_vmpool_infoextended.xml", "one.vmpool.infoextended", (-2, 8, 8, -1)),
        ("sample_image_ceph_2_persistent.xml", "one.image.info", (2,)),
        ("sample_datastore_ceph_sys.xml", "one.datastore.info", (101,)),
    ],
)
def test_xml_has_the_structure_of_a_real_oned(like_samples, call, sample, method, params):
    ours = call.ok(method, *params)
    theirs = _sample(sample)
    diff = list(difflib.unified_diff(_paths(theirs), _paths(ours), lineterm="", n=0))
    assert diff == [], "\n".join(diff)
    # Same elements in CDATA, and compact: whitespace between elements would become "#text".
    cdata = re.compile(r"<(\w+)><!\[CDATA\[")
    assert set(cdata.findall(ours)) == set(cdata.findall(theirs))
    assert not re.search(r">\s+<", ours)


def test_disk_flags_follow_persistence(like_samples, call):
    root = ET.fromstring(call.ok("one.vm.info", 8))
    clone, volatile = root.findall("TEMPLATE/DISK")
    assert (clone.findtext("CLONE"), clone.findtext("SAVE")) == ("YES", "NO")
    assert clone.find("PERSISTENT") is None
    assert clone.findtext("SOURCE") == "one/one-1"
    assert [volatile.find(k) for k in ("SOURCE", "CLONE", "SAVE", "PERSISTENT")] == [None] * 4
    assert (volatile.findtext("TM_MAD"), volatile.findtext("DISK_TYPE")) == ("ceph", "RBD")
    persistent = ET.fromstring(call.ok("one.vm.info", 3)).findall("TEMPLATE/DISK")[1]
    assert [persistent.findtext(k) for k in ("PERSISTENT", "CLONE", "SAVE")] == ["YES", "NO", "YES"]


def test_cdrom_immutable_and_shareable_disks_as_oned_attaches_them(oned, call):
    # Image::disk_attribute (src/image/Image.cc) and ImageManager::acquire_image
    # (src/image/ImageManagerActions.cc), release-7.4.0.
    iso = oned.add_image(persistent=False, type="CDROM")
    gold = oned.add_image(persistent=True, persistent_type="IMMUTABLE")
    shared = oned.add_image(persistent=True, persistent_type="shareable")
    first = oned.add_vm(disks=[iso, gold, shared])
    oned.add_vm(disks=[iso, shared])  # a CDROM and a SHAREABLE image take several users
    with pytest.raises(ValueError, match="already used"):
        oned.add_vm(disks=[gold])  # IMMUTABLE but persistent, not SHAREABLE: one live user
    cd, imm, sh = ET.fromstring(call.ok("one.vm.info", first)).findall("TEMPLATE/DISK")
    flags = ("CLONE", "READONLY", "SAVE", "PERSISTENT", "SHAREABLE", "TYPE")
    assert [cd.findtext(k) for k in flags] == ["NO", "YES", "NO", None, None, "RBD_CDROM"]
    assert [imm.findtext(k) for k in flags] == ["NO", "YES", "NO", None, None, "RBD"]
    assert [sh.findtext(k) for k in flags] == ["NO", "NO", "YES", "YES", "YES", "RBD"]
    image = ET.fromstring(call.ok("one.image.info", iso))
    assert (image.findtext("TYPE"), image.findtext("RUNNING_VMS")) == ("1", "2")
    assert ET.fromstring(call.ok("one.image.info", gold)).findtext(
        "TEMPLATE/PERSISTENT_TYPE") == "IMMUTABLE"
    with pytest.raises(ValueError, match="cannot be used as a disk"):
        oned.add_image(persistent=False, type="KERNEL")


def test_image_state_follows_its_users(like_samples, call):
    image = ET.fromstring(call.ok("one.image.info", 1))
    assert (image.findtext("STATE"), image.findtext("RUNNING_VMS")) == ("2", "2")
    assert [e.text for e in image.findall("VMS/ID")] == ["3", "8"]
    assert ET.fromstring(call.ok("one.image.info", 2)).findtext("STATE") == "8"
    lone = like_samples.add_image(persistent=True)
    assert ET.fromstring(call.ok("one.image.info", lone)).findtext("STATE") == "1"


# --- pool listings -------------------------------------------------------------------------


def _ids(xml: str) -> list[int]:
    return [int(vm.findtext("ID", "")) for vm in ET.fromstring(xml).findall("VM")]


def test_pool_listings_newest_first_and_state_filters(oned, call):
    running = oned.add_vm(state="RUNNING")
    done = oned.add_vm(state="DONE")
    off = oned.add_vm(state="POWEROFF")
    assert _ids(call.ok("one.vmpool.infoextended", -2, -1, -1, -1)) == [off, running]
    assert _ids(call.ok("one.vmpool.infoextended", -2, -1, -1, -2)) == [off, done, running]
    assert _ids(call.ok("one.vmpool.info", -2, -1, -1, 8)) == [off]
    assert _ids(call.ok("one.vmpool.info", -2, -1, -1, 6)) == [done]
    # An id range, then a page (end < -1: offset 1, page size 2).
    assert _ids(call.ok("one.vmpool.info", -2, 1, 2, -2)) == [off, done]
    assert _ids(call.ok("one.vmpool.info", -2, 1, -2, -2)) == [done, running]
    # DONE VMs stay readable one by one.
    assert ET.fromstring(call.ok("one.vm.info", done)).findtext("STATE") == "6"
    assert call("one.vmpool.info", -2, -1, -1, 99)[1:3] == [
        "[one.vmpool.info] Incorrect state filter 99",
        0x1000,
    ]


def test_a_driver_failure_is_recorded_in_user_template_error(oned, call):
    # VirtualMachineManager::log_error -> VirtualMachine::set_template_error_message:
    # "<ctime()>: <OPERATION>: <driver output>", kept after later successes.
    vm = oned.add_vm(state="POWEROFF")
    assert ET.fromstring(call.ok("one.vm.info", vm)).find("USER_TEMPLATE/ERROR") is None
    oned.fail_boot(vm, "boom")
    act(call, "resume", vm)
    wait_for(oned, vm, "POWEROFF")
    assert oned.transitions(vm)[-2:] == ["BOOT_POWEROFF", "POWEROFF"]
    error = ET.fromstring(call.ok("one.vm.info", vm)).findtext("USER_TEMPLATE/ERROR")
    assert re.fullmatch(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}: DEPLOY: boom", error), error


def test_infoset_reads_the_ids_named_in_any_state(oned, call):
    # VirtualMachinePoolAPI::info_set (src/rm/api/VirtualMachinePoolAPI.cc, release-7.4.0).
    live = oned.add_vm(state="POWEROFF")
    done = oned.add_vm(state="DONE")
    oned.add_vm()  # not asked for
    assert _ids(call.ok("one.vmpool.infoset", f"{live}, {done},x,,999", True)) == [done, live]
    extended = ET.fromstring(call.ok("one.vmpool.infoset", str(done), True))
    short = ET.fromstring(call.ok("one.vmpool.infoset", str(done), False))
    assert extended.find("VM/TEMPLATE/TM_MAD_SYSTEM") is not None
    assert short.find("VM/TEMPLATE/TM_MAD_SYSTEM") is None
    assert _ids(call.ok("one.vmpool.infoset", "", False)) == []
    with pytest.raises(xmlrpc.client.Fault, match="infoset"):
        call("one.vmpool.infoset", "1", 1)  # "A:ssb": extended is a boolean


def test_empty_pool(oned, call):
    assert call.ok("one.vmpool.infoextended", -2, -1, -1, -1) == "<VM_POOL/>"


def test_imagepool_newest_first(oned, call):
    first = oned.add_image(persistent=True)
    second = oned.add_image(persistent=False)
    images = ET.fromstring(call.ok("one.imagepool.info", -2, -1, -1)).findall("IMAGE")
    assert [int(i.findtext("ID", "")) for i in images] == [second, first]


# --- the state machine ---------------------------------------------------------------------


def act(call: Client, action: str, vm: int) -> None:
    assert call("one.vm.action", action, vm) == [True, vm, 0]


def test_terminate_from_running_goes_shutdown_epilog_done(oned, call):
    vm = oned.add_vm(state="RUNNING")
    act(call, "terminate", vm)
    # The first change is visible as soon as the call returns (no dispatch delay).
    assert oned.vm_state(vm) == ("ACTIVE", "SHUTDOWN")
    wait_for(oned, vm, "DONE")
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN", "EPILOG", "DONE"]
    info = ET.fromstring(call.ok("one.vm.info", vm))
    assert (info.findtext("STATE"), info.findtext("LCM_STATE")) == ("6", "0")
    assert (info.findtext("PREV_STATE"), info.findtext("PREV_LCM_STATE")) == ("3", "11")
    assert int(info.findtext("ETIME", "")) > 0


def test_kvm_s_force_destroy_ends_a_shutdown_the_guest_ignores(oned, call):
    # kvmrc's defaults (SHUTDOWN_TIMEOUT=180, FORCE_DESTROY=yes): after the timeout the driver
    # destroys the domain and reports success; the terminate goes on to EPILOG and DONE.
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, destroy_after=0.05)
    act(call, "terminate", vm)
    wait_for(oned, vm, "DONE")
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN", "EPILOG", "DONE"]
    assert ET.fromstring(call.ok("one.vm.info", vm)).find("USER_TEMPLATE/ERROR") is None
    with pytest.raises(ValueError, match="not both"):
        oned.ignore_shutdown(vm, fail_after=1, destroy_after=1)


@pytest.mark.parametrize("state", ["POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED"])
def test_terminate_from_stopped_states_goes_epilog_done(oned, call, state):
    vm = oned.add_vm(state=state)
    act(call, "terminate", vm)
    wait_for(oned, vm, "DONE")
    assert oned.transitions(vm) == [state, "EPILOG", "DONE"]


@pytest.mark.parametrize("state", ["PENDING", "HOLD"])
def test_terminate_from_pending_or_hold_is_done_at_once(oned, call, state):
    oned.set_scheduler(False)
    vm = oned.add_vm(state=state)
    act(call, "terminate", vm)
    assert oned.transitions(vm) == [state, "DONE"]


def test_terminate_on_done_succeeds_and_does_nothing(oned, call):
    vm = oned.add_vm(state="DONE")
    act(call, "terminate", vm)
    assert oned.transitions(vm) == ["DONE"]


def test_during_shutdown_only_terminate_hard_is_accepted(oned, call):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm)
    act(call, "terminate", vm)
    time.sleep(3 * STEP)
    assert oned.vm_state(vm) == ("ACTIVE", "SHUTDOWN")  # the guest ignores ACPI
    refused = call("one.vm.action", "terminate", vm)
    assert refused[1].endswith(f"Could not terminate VM {vm}, wrong state SHUTDOWN.")
    assert call("one.vm.action", "poweroff", vm)[2] == 0x800
    act(call, "terminate-hard", vm)
    wait_for(oned, vm, "DONE")
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN", "EPILOG", "DONE"]
    assert oned.actions == [
        (vm, "terminate", True),
        (vm, "terminate", False),
        (vm, "poweroff", False),
        (vm, "terminate-hard", True),
    ]


def test_failed_guest_shutdown_returns_to_running(oned, call):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm, fail_after=STEP)
    act(call, "terminate", vm)
    wait_for(oned, vm, "RUNNING")
    assert oned.transitions(vm) == ["RUNNING", "SHUTDOWN", "RUNNING"]


def test_terminate_hard_from_running(oned, call):
    vm = oned.add_vm(state="UNKNOWN")
    act(call, "terminate-hard", vm)
    wait_for(oned, vm, "DONE")
    assert oned.transitions(vm) == ["UNKNOWN", "SHUTDOWN", "EPILOG", "DONE"]


@pytest.mark.parametrize(
    "start, path",
    [
        ("POWEROFF", ["BOOT_POWEROFF", "RUNNING"]),
        ("SUSPENDED", ["BOOT_SUSPENDED", "RUNNING"]),
        ("UNKNOWN", ["BOOT_UNKNOWN", "RUNNING"]),
        ("STOPPED", ["PENDING", "PROLOG_RESUME", "BOOT_STOPPED", "RUNNING"]),
        ("UNDEPLOYED", ["PENDING", "PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "RUNNING"]),
    ],
)
def test_resume_paths(oned, call, start, path):
    vm = oned.add_vm(state=start)
    act(call, "resume", vm)
    wait_for(oned, vm, "RUNNING")
    assert oned.transitions(vm) == [start, *path]


def test_resume_from_stopped_waits_for_the_scheduler(oned, call):
    oned.set_scheduler(False)
    vm = oned.add_vm(state="STOPPED")
    act(call, "resume", vm)
    time.sleep(4 * STEP)
    assert oned.vm_state(vm) == ("PENDING", "LCM_INIT")
    oned.set_scheduler(True)
    wait_for(oned, vm, "RUNNING")


def test_poweroff_suspend_stop_undeploy(oned, call):
    a, b, c, d, e = (oned.add_vm(state=s) for s in ["RUNNING"] * 3 + ["SUSPENDED", "POWEROFF"])
    act(call, "poweroff", a)
    act(call, "suspend", b)
    act(call, "undeploy", c)
    act(call, "stop", d)
    act(call, "undeploy", e)
    oned.wait_idle()
    assert oned.transitions(a) == ["RUNNING", "SHUTDOWN_POWEROFF", "POWEROFF"]
    assert oned.transitions(b) == ["RUNNING", "SAVE_SUSPEND", "SUSPENDED"]
    assert oned.transitions(c) == ["RUNNING", "SHUTDOWN_UNDEPLOY", "EPILOG_UNDEPLOY", "UNDEPLOYED"]
    assert oned.transitions(d) == ["SUSPENDED", "EPILOG_STOP", "STOPPED"]
    assert oned.transitions(e) == ["POWEROFF", "EPILOG_UNDEPLOY", "UNDEPLOYED"]
    f = oned.add_vm(state="RUNNING")
    act(call, "stop", f)
    oned.wait_idle()
    assert oned.transitions(f) == ["RUNNING", "SAVE_STOP", "EPILOG_STOP", "STOPPED"]


def test_poweroff_hard_overrides_a_hung_poweroff(oned, call):
    vm = oned.add_vm(state="RUNNING")
    oned.ignore_shutdown(vm)
    act(call, "poweroff", vm)
    time.sleep(2 * STEP)
    assert oned.vm_state(vm) == ("ACTIVE", "SHUTDOWN_POWEROFF")
    act(call, "poweroff-hard", vm)
    wait_for(oned, vm, "POWEROFF")


def test_hold_and_release(oned, call):
    oned.set_scheduler(False)
    vm = oned.add_vm(state="PENDING")
    act(call, "hold", vm)
    assert oned.vm_state(vm)[0] == "HOLD"
    act(call, "release", vm)
    assert oned.vm_state(vm)[0] == "PENDING"


def test_dispatch_delay_keeps_the_old_state_for_a_moment(oned, call):
    oned.set_delays(dispatch=0.1)
    vm = oned.add_vm(state="RUNNING")
    act(call, "terminate", vm)
    assert oned.vm_state(vm) == ("ACTIVE", "RUNNING")
    wait_for(oned, vm, "DONE")


def test_a_new_pending_vm_is_deployed_by_the_scheduler(oned):
    vm = oned.add_vm(state="PENDING")
    wait_for(oned, vm, "RUNNING")
    assert oned.transitions(vm) == ["PENDING", "PROLOG", "BOOT", "RUNNING"]


# --- the ceph driver's deletions -------------------------------------------------------------


def test_terminate_deletes_clones_and_volatile_disks_not_persistent_images():
    deleted: list[tuple[str, str]] = []
    with OnedStandIn(
        delays=Delays.uniform(STEP),
        delete_rbd_image=lambda pool, image: deleted.append((pool, image)),
    ) as oned:
        call = Client(oned)
        clone = oned.add_image(persistent=False)
        kept = oned.add_image(persistent=True)
        vm = oned.add_vm(disks=[clone, kept, VolatileDisk()])
        act(call, "terminate", vm)
        wait_for(oned, vm, "DONE")
        expected = [("one", f"one-{clone}-{vm}-0"), ("one", f"one-sys-{vm}-2")]
        assert deleted == expected
        assert oned.deleted_images == expected
        # The image is free again once its VM is DONE.
        assert ET.fromstring(call.ok("one.image.info", kept)).findtext("STATE") == "1"


def test_stop_undeploy_and_poweroff_delete_nothing(oned, call):
    clone = oned.add_image(persistent=False)
    vms = [oned.add_vm(disks=[clone, VolatileDisk()]) for _ in range(3)]
    for action, vm in zip(["stop", "undeploy", "poweroff"], vms, strict=True):
        act(call, action, vm)
    oned.wait_idle()
    assert oned.deleted_images == []


def test_ssh_mode_and_non_ceph_disks_delete_no_rbd_image(oned, call):
    ceph_clone = oned.add_image(persistent=False)
    local = oned.add_image(persistent=False, datastore_id=1)
    vm = oned.add_vm(disks=[ceph_clone, local, VolatileDisk()], system_datastore_id=0)
    act(call, "terminate", vm)
    wait_for(oned, vm, "DONE")
    assert oned.deleted_images == []


def test_failing_deletion_leaves_the_vm_in_epilog_failure():
    def refuse(pool: str, image: str) -> None:
        raise RuntimeError("rbd: error removing image")

    with OnedStandIn(delays=Delays.uniform(STEP), delete_rbd_image=refuse) as oned:
        vm = oned.add_vm(disks=[oned.add_image(persistent=False)])
        act(Client(oned), "terminate", vm)
        wait_for(oned, vm, "EPILOG_FAILURE")
        assert oned.deleted_images == []
        # terminate from a *_FAILURE state cleans up and ends DONE.
        oned.delete_rbd_image = None
        act(Client(oned), "terminate", vm)
        wait_for(oned, vm, "DONE")
        assert oned.transitions(vm)[-2:] == ["CLEANUP_DELETE", "DONE"]


def test_a_persistent_image_cannot_be_used_by_two_live_vms(oned):
    image = oned.add_image(persistent=True)
    oned.add_vm(disks=[image])
    with pytest.raises(ValueError, match="already used"):
        oned.add_vm(disks=[image])
    oned.add_vm(disks=[image], state="DONE")  # history is fine


def test_setup_mistakes_are_refused(oned):
    with pytest.raises(ValueError, match="unknown VM state"):
        oned.add_vm(state="ACTIVE")
    with pytest.raises(ValueError, match="image 99"):
        oned.add_vm(disks=[99])
    with pytest.raises(ValueError, match="system datastore"):
        oned.add_image(persistent=True, datastore_id=101)


# --- faults and lifecycle --------------------------------------------------------------------


def test_refusing_and_accepting_connections_keeps_port_and_records(oned, call):
    vm = oned.add_vm(state="POWEROFF")
    port = oned.port
    oned.refuse_connections()
    with pytest.raises(ConnectionRefusedError):
        call("one.system.version")
    oned.accept_connections()
    assert oned.port == port
    assert ET.fromstring(call.ok("one.vm.info", vm)).findtext("STATE") == "8"


def test_slow_answers(oned, call):
    oned.set_call_delay(0.2)
    started = time.monotonic()
    call.ok("one.system.version")
    assert time.monotonic() - started >= 0.2


def test_port_zero_picks_a_free_port_and_two_stand_ins_coexist():
    with OnedStandIn(name="a") as a, OnedStandIn(name="b") as b:
        assert a.port and b.port and a.port != b.port
        assert a.endpoint.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", a.port), timeout=0.5).close()


def test_command_line_serves_a_scenario(tmp_path):
    scenario = tmp_path / "site.json"
    scenario.write_text(
        json.dumps(
            {
                "images": [{"name": "data", "persistent": True, "source": "one/one-7"}],
                "vms": [{"name": "web", "state": "POWEROFF", "disks": [0, {"volatile": 256}]}],
            }
        )
    )
    proc = subprocess.Popen(  # noqa: S603 (fixed arguments)
        [
            sys.executable,
            "-m",
            "ceph_failback.lab.oned",
            "--scenario",
            str(scenario),
            "--user",
            "oneadmin:pw",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("ONE_XMLRPC=http://127.0.0.1:")
        proxy = xmlrpc.client.ServerProxy(line.split("=", 1)[1])
        reply: list = proxy.one.vm.info("oneadmin:pw", 0)  # type: ignore[assignment]
        assert reply[0] is True and "<NAME>web</NAME>" in reply[1] and "one/one-7" in reply[1]
    finally:
        proc.terminate()
        assert proc.wait(timeout=5) == 0
