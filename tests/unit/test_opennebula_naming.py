"""Disk -> RBD image naming and the typed records, on hand-made attributes and on the replies of a
real oned 7.4 (tests/unit/data/opennebula-samples, copied from the shared samples)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from pyone import bindings

from ceph_failback.opennebula import (
    Disk,
    DiskKind,
    DiskNamingError,
    disk_from_attributes,
    disks_of,
    lcm_state_name,
    read_disks,
    vm_state_name,
)
from ceph_failback.opennebula.records import (
    VM,
    datastore_from_binding,
    image_from_binding,
    vm_from_binding,
)

SAMPLES = Path(__file__).parent / "data" / "opennebula-samples"


def parse_sample(name: str):
    """Parse a sample the way pyone parses oned's (compact) reply."""
    text = (SAMPLES / name).read_text().split("?>", 1)[1].strip()
    return bindings.parseString(re.sub(r">\s+<", "><", text).encode())


CEPH = {"TM_MAD": "ceph", "TYPE": "RBD", "DISK_TYPE": "RBD", "POOL_NAME": "one"}


def test_persistent_disk_is_its_source():
    disk = disk_from_attributes(
        3, CEPH | {"DISK_ID": "1", "IMAGE_ID": "2", "SOURCE": "one/one-2", "CLONE": "NO"}
    )
    assert disk == Disk(1, 2, "one", "one-2", DiskKind.PERSISTENT)
    assert disk.is_persistent
    assert disk.spec == "one/one-2"


def test_clone_disk_is_source_vm_disk():
    disk = disk_from_attributes(
        3, CEPH | {"DISK_ID": "0", "IMAGE_ID": "1", "SOURCE": "one/one-1", "CLONE": "YES"}
    )
    assert disk == Disk(0, 1, "one", "one-1-3-0", DiskKind.CLONE)
    assert not disk.is_persistent


@pytest.mark.parametrize("attrs", [
    {"TYPE": "RBD_CDROM"},  # a CDROM image (Image::disk_attribute types it RBD_CDROM)
    {"TYPE": "RBD"},        # an image whose PERSISTENT_TYPE is IMMUTABLE
    {"TYPE": "CDROM", "DISK_TYPE": "FILE"},  # a CDROM in ssh mode (set_types)
])
def test_cdrom_and_immutable_images_are_read_only(attrs):
    # src/image/Image.cc: CDROM or IMMUTABLE -> SAVE=NO, CLONE=NO, READONLY=YES, no PERSISTENT.
    disk = disk_from_attributes(3, CEPH | attrs | {
        "DISK_ID": "2", "IMAGE_ID": "5", "SOURCE": "one/one-5", "CLONE": "NO",
        "READONLY": "YES", "SAVE": "NO"})
    assert disk is not None
    assert replace(disk, host_copy=False) == Disk(2, 5, "one", "one-5", DiskKind.READ_ONLY)
    assert disk.host_copy is (attrs.get("DISK_TYPE") == "FILE")  # copied to the host, read-only
    assert disk.is_read_only and not disk.is_persistent and not disk.deleted_on_terminate


def test_a_persistent_image_in_ssh_mode_is_a_host_copy():
    # VirtualMachineDisks::check_tm_mad gives it the image datastore's *_SSH targets and
    # TM_MAD_SYSTEM=ssh; tm/ceph/ln.ssh exports the image to the host.
    ssh = {"TM_MAD": "ceph", "TYPE": "FILE", "DISK_TYPE": "FILE", "TM_MAD_SYSTEM": "ssh",
           "LN_TARGET": "SYSTEM", "CLONE_TARGET": "SYSTEM"}
    disk = disk_from_attributes(3, ssh | {"DISK_ID": "0", "IMAGE_ID": "5", "SOURCE": "one/one-5",
                                          "CLONE": "NO", "PERSISTENT": "YES"})
    assert disk is not None and disk.host_copy and disk.kind is DiskKind.PERSISTENT
    rbd = disk_from_attributes(3, CEPH | {"DISK_ID": "0", "IMAGE_ID": "5",
                                          "SOURCE": "one/one-5", "CLONE": "NO"})
    assert rbd is not None and not rbd.host_copy


def test_a_persistent_image_attached_read_only_stays_a_data_disk():
    # READONLY=YES from the VM template on a persistent image: PERSISTENT=YES stays, and another
    # VM may write the image: it is data to fail back.
    disk = disk_from_attributes(3, CEPH | {
        "DISK_ID": "0", "IMAGE_ID": "5", "SOURCE": "one/one-5", "CLONE": "NO",
        "READONLY": "YES", "PERSISTENT": "YES", "SAVE": "YES"})
    assert disk is not None and disk.kind is DiskKind.PERSISTENT


def test_clones_and_volatile_disks_are_deleted_on_terminate():
    clone = disk_from_attributes(
        3, CEPH | {"DISK_ID": "0", "IMAGE_ID": "1", "SOURCE": "one/one-1", "CLONE": "YES"})
    volatile = disk_from_attributes(3, CEPH | {"DISK_ID": "1"})
    assert clone is not None and clone.deleted_on_terminate
    assert volatile is not None and volatile.deleted_on_terminate


def test_source_pool_wins_over_pool_name():
    # Site B registers the mirrored image by SOURCE; the pool is the one in SOURCE.
    disk = disk_from_attributes(
        7, CEPH | {"DISK_ID": "0", "IMAGE_ID": "9", "SOURCE": "mirror/one-2", "CLONE": "NO"}
    )
    assert disk is not None and (disk.pool, disk.image) == ("mirror", "one-2")


def test_volatile_disk_is_one_sys():
    attrs = {"TM_MAD": "ceph", "TYPE": "fs", "DISK_TYPE": "RBD", "DISK_ID": "1", "POOL_NAME": "p"}
    assert disk_from_attributes(8, attrs) == Disk(1, None, "p", "one-sys-8-1", DiskKind.VOLATILE)


def test_volatile_disk_without_pool_name_is_in_pool_one():
    attrs = {"TM_MAD": "ceph", "TYPE": "swap", "DISK_TYPE": "RBD", "DISK_ID": "2"}
    disk = disk_from_attributes(8, attrs)
    assert disk is not None and disk.spec == "one/one-sys-8-2"


def test_non_ceph_disks_are_ignored():
    attrs = {"TM_MAD": "ssh", "TYPE": "FILE", "DISK_ID": "0", "SOURCE": "/var/x", "CLONE": "YES"}
    assert disk_from_attributes(1, attrs) is None


def test_ssh_mode_clone_is_not_an_rbd_image_but_persistent_is():
    ssh = {"TM_MAD": "ceph", "TYPE": "FILE", "DISK_TYPE": "FILE", "DISK_ID": "0"}
    assert disk_from_attributes(1, ssh | {"SOURCE": "one/one-1", "CLONE": "YES"}) is None
    kept = disk_from_attributes(1, ssh | {"SOURCE": "one/one-2", "CLONE": "NO"})
    assert kept is not None and kept.spec == "one/one-2"


@pytest.mark.parametrize(
    "attrs, words",
    [
        ({"DISK_ID": "0", "IMAGE_ID": "1", "CLONE": "YES"}, "no SOURCE"),
        ({"DISK_ID": "0", "SOURCE": "one-1", "CLONE": "NO"}, "pool/image"),
        ({"DISK_ID": "0", "SOURCE": "one/one-1"}, "CLONE"),
        ({"SOURCE": "one/one-1", "CLONE": "NO"}, "DISK_ID"),
        ({"DISK_ID": "x", "SOURCE": "one/one-1", "CLONE": "NO"}, "not a number"),
    ],
)
def test_ceph_disk_missing_name_parts_is_an_error(attrs, words):
    with pytest.raises(DiskNamingError, match=words):
        disk_from_attributes(5, CEPH | attrs)


def test_short_listing_disk_is_refused_not_silently_dropped():
    short = {"DISK_ID": "0", "IMAGE_ID": "1", "TYPE": "RBD", "CLONE": "YES"}
    with pytest.raises(DiskNamingError, match="vmpool.infoextended"):
        disk_from_attributes(8, short)


def test_disks_of_accepts_one_disk_as_a_dict_and_several_as_a_list():
    one = CEPH | {"DISK_ID": "0", "IMAGE_ID": "2", "SOURCE": "one/one-2", "CLONE": "NO"}
    two = CEPH | {"DISK_ID": "1", "IMAGE_ID": "1", "SOURCE": "one/one-1", "CLONE": "YES"}
    assert [d.image for d in disks_of(4, {"DISK": one})] == ["one-2"]
    assert [d.image for d in disks_of(4, {"DISK": [two, one]})] == ["one-2", "one-1-4-1"]
    assert disks_of(4, {"CPU": "1"}) == []
    assert disks_of(4, None) == []


def test_sample_vm_with_clone_and_persistent_disk():
    vm = vm_from_binding(parse_sample("sample_vm_ceph_running.xml"))
    assert (vm.id, vm.name, vm.state, vm.lcm_state) == (3, "ceph-vm-1", "ACTIVE", "RUNNING")
    assert vm.disks == (
        Disk(0, 1, "one", "one-1-3-0", DiskKind.CLONE),
        Disk(1, 2, "one", "one-2", DiskKind.PERSISTENT),
    )


def test_sample_vm_with_volatile_disk():
    vm = vm_from_binding(parse_sample("sample_vm_ceph_volatile_running.xml"))
    assert [(d.spec, d.kind) for d in vm.disks] == [
        ("one/one-1-8-0", DiskKind.CLONE),
        ("one/one-sys-8-1", DiskKind.VOLATILE),
    ]


def test_sample_extended_pool_keeps_disk_names_and_short_pool_does_not():
    pool = parse_sample("sample_vmpool_infoextended.xml")
    assert [d.image for d in vm_from_binding(pool.VM[0]).disks] == ["one-1-8-0", "one-sys-8-1"]
    short = parse_sample("sample_vmpool_info_short.xml")
    vm = vm_from_binding(short.VM[0])  # the short listing drops SOURCE: nothing can be named
    assert vm.disks == () and vm.unreadable
    assert all("one.vmpool.infoextended" in why for why in vm.unreadable)


def test_one_odd_disk_does_not_hide_the_vm_s_others():
    template = {"DISK": [
        CEPH | {"DISK_ID": "0", "IMAGE_ID": "2", "SOURCE": "one/one-2", "CLONE": "NO"},
        CEPH | {"DISK_ID": "1", "IMAGE_ID": "3", "SOURCE": "one-3", "CLONE": "NO"},
        "not a disk",
    ]}
    disks, problems = read_disks(4, template)
    assert disks == [Disk(0, 2, "one", "one-2", DiskKind.PERSISTENT)]
    assert len(problems) == 2 and "disk 1" in problems[0] and "'one-3'" in problems[0]
    with pytest.raises(DiskNamingError, match="disk 1"):
        disks_of(4, template)


def test_sample_image_and_datastore_records():
    image = image_from_binding(parse_sample("sample_image_ceph_2_persistent.xml"))
    assert (image.id, image.name, image.source, image.persistent) == (
        2,
        "ceph-data-persistent",
        "one/one-2",
        True,
    )
    assert (image.pool, image.rbd_image, image.state, image.vm_ids) == (
        "one",
        "one-2",
        "USED_PERS",
        (3,),
    )
    assert image_from_binding(parse_sample("sample_image_ceph_1.xml")).persistent is False
    ds = datastore_from_binding(parse_sample("sample_datastore_ceph_img.xml"))
    assert (ds.id, ds.name, ds.type, ds.ds_mad, ds.tm_mad, ds.pool_name, ds.ceph_user) == (
        100,
        "ceph_img",
        "IMAGE",
        "ceph",
        "ceph",
        "one",
        "libvirt",
    )
    assert ds.is_ceph
    assert "6f0b1b5e" not in repr(ds)  # the libvirt secret's UUID is not carried
    assert datastore_from_binding(parse_sample("sample_datastore_ceph_sys.xml")).type == "SYSTEM"


def test_state_names():
    assert vm_state_name(8) == "POWEROFF"
    assert vm_state_name(6) == "DONE"
    assert lcm_state_name(12) == "SHUTDOWN"
    assert lcm_state_name(18) == "SHUTDOWN_POWEROFF"
    assert lcm_state_name(69) == "BACKUP"  # newer than pyone's table
    assert lcm_state_name(250) == "LCM_STATE_250"
    assert vm_state_name(99) == "STATE_99"


def test_vm_record_helpers():
    running = VM(1, "a", "ACTIVE", "RUNNING", [Disk(0, 1, "one", "one-1", DiskKind.PERSISTENT)])
    assert isinstance(running.disks, tuple)
    assert running.is_running and not running.is_safely_stopped
    assert (running.status, running.state_str) == ("ACTIVE/RUNNING", "RUNNING")
    off = VM(2, "b", "POWEROFF")
    assert (off.status, off.state_str, off.is_safely_stopped) == ("POWEROFF", "POWEROFF", True)
    assert not VM(3, "c", "SUSPENDED").is_safely_stopped
    assert VM(4, "d", "DONE").is_done
    assert running.images_in("one") == ("one-1",) and running.images_in("other") == ()
    assert str(running) == "VM 1 (a, ACTIVE/RUNNING)"
