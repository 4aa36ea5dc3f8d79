"""Which RBD image backs each disk of a VM, named the way OpenNebula's ceph drivers name them.

OpenNebula's ceph transfer driver (``src/tm_mad/ceph/{clone,mkimage,delete}``) names the RBD image
behind a disk after the disk's attributes in ``one.vm.info``:

* persistent image (``CLONE=NO``): the image itself, ``SOURCE`` (``pool/one-<IMAGE_ID>``);
* read-only image (a ``CDROM`` image, or one whose ``PERSISTENT_TYPE`` is ``IMMUTABLE``): the image
  itself too, attached read-only;
* non-persistent image (``CLONE=YES``): a clone made for this VM, ``SOURCE-<VM_ID>-<DISK_ID>``;
* volatile disk (no ``SOURCE``): ``<POOL_NAME>/one-sys-<VM_ID>-<DISK_ID>``, pool ``one`` when the
  disk carries no ``POOL_NAME``.

Terminating a VM makes that driver delete the clones and the volatile disks, never a persistent
or read-only image: that difference is what the failback's safety rules are about.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from ..errors import OpenNebulaError

__all__ = [
    "DEFAULT_POOL",
    "DiskKind",
    "Disk",
    "DiskNamingError",
    "disk_from_attributes",
    "disks_of",
    "read_disks",
]

#: Pool the ceph drivers use when a disk carries no ``POOL_NAME`` (their ``ceph.conf`` default).
DEFAULT_POOL = "one"


class DiskNamingError(OpenNebulaError, ValueError):
    """A Ceph disk's attributes do not say which RBD image backs it (e.g. no ``SOURCE``).

    An :class:`~ceph_failback.errors.OpenNebulaError` (what oned returned cannot be used), and
    still a :class:`ValueError`. :class:`~ceph_failback.opennebula.OpenNebulaSite` wraps it in
    an ``OpenNebulaError`` that names the site and the VM.
    """


class DiskKind(Enum):
    """How OpenNebula attached the disk, which decides what terminating the VM does to it."""

    PERSISTENT = "persistent"
    """A persistent image (``CLONE=NO``): the VM writes the image itself; terminate keeps it."""

    CLONE = "clone"
    """A per-VM clone of a non-persistent image (``CLONE=YES``): terminate deletes it."""

    VOLATILE = "volatile"
    """A volatile disk made for the VM in the system datastore: terminate deletes it."""

    READ_ONLY = "read-only"
    """A CDROM image, or an image whose ``PERSISTENT_TYPE`` is ``IMMUTABLE``: oned attaches the
    image itself with ``CLONE=NO``, ``READONLY=YES``, ``SAVE=NO`` and no ``PERSISTENT``
    (``Image::disk_attribute``, src/image/Image.cc). No VM writes it, so it holds nothing to fail
    back, and several VMs may share it; terminate keeps it."""


@dataclass(frozen=True)
class Disk:
    """One Ceph-backed disk of a VM and the RBD image behind it.

    Attributes:
        disk_id: the disk's ``DISK_ID`` within its VM.
        image_id: the OpenNebula image id, ``None`` for a volatile disk.
        pool: the RBD pool holding the image.
        image: the RBD image name inside ``pool`` (``one-2``, ``one-1-3-0``, ``one-sys-8-1``).
        kind: persistent, clone, volatile or read-only.
        host_copy: the VM runs on a copy of the image on its host, not on the image: the ssh
            system datastore mode (``TM_MAD_SYSTEM=ssh`` on the disk, ``DISK_TYPE=FILE``).
            oned's ceph driver exports the image to the host at deploy (``tm/ceph/ln.ssh``)
            and writes the copy back only in a terminate's EPILOG (``tm/ceph/mvds.ssh``);
            poweroff keeps the copy on the host, undeploy moves it to the front-end
            (``tm/ceph/mv`` leaves disks to the system datastore's move), and a resume boots
            that copy again.
    """

    disk_id: int
    image_id: int | None
    pool: str
    image: str
    kind: DiskKind
    host_copy: bool = False

    @property
    def is_persistent(self) -> bool:
        """True when terminating the VM leaves the RBD image in place (``CLONE=NO``)."""
        return self.kind is DiskKind.PERSISTENT

    @property
    def is_read_only(self) -> bool:
        """True for a CDROM or immutable image: no VM writes it, it has nothing to fail back."""
        return self.kind is DiskKind.READ_ONLY

    @property
    def deleted_on_terminate(self) -> bool:
        """True when terminating the VM makes the ceph driver delete the RBD image (a clone or a
        volatile disk)."""
        return self.kind in (DiskKind.CLONE, DiskKind.VOLATILE)

    @property
    def spec(self) -> str:
        """``pool/image``, as the ``rbd`` command line spells it."""
        return f"{self.pool}/{self.image}"


def _text(attrs: Mapping[str, Any], key: str) -> str:
    # pyone turns empty elements into "" in dicts but leaves None inside lists of dicts.
    value = attrs.get(key)
    return "" if value is None else str(value).strip()


def _int(vm_id: int, attrs: Mapping[str, Any], key: str) -> int | None:
    text = _text(attrs, key)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise DiskNamingError(
            f"VM {vm_id}: disk attribute {key}={text!r} is not a number"
        ) from None


def disk_from_attributes(vm_id: int, attrs: Mapping[str, Any]) -> Disk | None:
    """Resolve one ``TEMPLATE/DISK`` of VM ``vm_id`` to its RBD image.

    Returns ``None`` for a disk that is not an RBD image in Ceph: another transfer driver, or a
    ceph image that the ``ssh`` system datastore mode copies to the host (``DISK_TYPE`` other
    than ``RBD``; no clone exists in Ceph then). A persistent ceph image is kept in that mode,
    marked :attr:`Disk.host_copy`: the VM runs on a copy that only a terminate writes back.

    Raises:
        DiskNamingError: a Ceph disk lacks what its name is made of (``SOURCE``, ``CLONE``,
            ``DISK_ID``), as in the short ``one.vmpool.info`` listing, which drops ``SOURCE``.
    """
    tm_mad = _text(attrs, "TM_MAD").lower()
    if not tm_mad and "RBD" in (_text(attrs, "TYPE").upper(), _text(attrs, "DISK_TYPE").upper()):
        raise DiskNamingError(
            f"VM {vm_id}: an RBD disk carries no TM_MAD (read VMs with one.vm.info or "
            "one.vmpool.infoextended, not one.vmpool.info)"
        )
    if tm_mad != "ceph":
        return None
    disk_id = _int(vm_id, attrs, "DISK_ID")
    if disk_id is None:
        raise DiskNamingError(f"VM {vm_id}: a ceph disk has no DISK_ID")
    image_id = _int(vm_id, attrs, "IMAGE_ID")
    source = _text(attrs, "SOURCE")
    disk_type = (_text(attrs, "DISK_TYPE") or _text(attrs, "TYPE")).upper()
    in_rbd = disk_type == "RBD"

    if not source:
        if image_id is not None:
            raise DiskNamingError(
                f"VM {vm_id}: disk {disk_id} uses image {image_id} but carries no SOURCE "
                "(read VMs with one.vm.info or one.vmpool.infoextended, not one.vmpool.info)"
            )
        if not in_rbd:
            return None
        pool = _text(attrs, "POOL_NAME") or DEFAULT_POOL
        return Disk(disk_id, None, pool, f"one-sys-{vm_id}-{disk_id}", DiskKind.VOLATILE)

    pool, sep, base = source.partition("/")
    if not sep or not pool or not base:
        raise DiskNamingError(
            f"VM {vm_id}: disk {disk_id} has SOURCE={source!r}, not the pool/image form "
            "that OpenNebula's ceph datastores use"
        )
    clone = _text(attrs, "CLONE").upper()
    if clone == "NO":
        # Image.cc gives a CDROM or IMMUTABLE image READONLY=YES and no PERSISTENT; a persistent
        # image attached read-only keeps PERSISTENT=YES (another VM may write it), so it stays
        # a data disk.
        read_only = (_text(attrs, "READONLY").upper() == "YES"
                     and _text(attrs, "PERSISTENT").upper() != "YES")
        kind = DiskKind.READ_ONLY if read_only else DiskKind.PERSISTENT
        host_copy = (_text(attrs, "TM_MAD_SYSTEM").lower() == "ssh"
                     or disk_type not in ("", "RBD", "RBD_CDROM"))
        return Disk(disk_id, image_id, pool, base, kind, host_copy=host_copy)
    if clone == "YES":
        if not in_rbd:
            return None
        return Disk(disk_id, image_id, pool, f"{base}-{vm_id}-{disk_id}", DiskKind.CLONE)
    raise DiskNamingError(
        f"VM {vm_id}: disk {disk_id} has CLONE={clone!r}; cannot tell whether it is a persistent "
        "image or a per-VM clone"
    )


def read_disks(vm_id: int,
               template: Mapping[str, Any] | None) -> tuple[list[Disk], list[str]]:
    """All Ceph disks of a VM, from its ``TEMPLATE`` (as pyone parses it), in ``DISK_ID`` order,
    and, for each disk whose RBD image cannot be named, why (the other disks are still read: one
    odd disk does not hide the VM's others).

    ``TEMPLATE["DISK"]`` is a dict for a VM with one disk and a list for several; both work.
    """
    if not template:
        return [], []
    raw = template.get("DISK")
    if raw is None or raw == "":
        return [], []
    entries = raw if isinstance(raw, list) else [raw]
    disks, problems = [], []
    for entry in entries:
        if not isinstance(entry, Mapping):
            problems.append(f"VM {vm_id}: a DISK entry is not a set of attributes: {entry!r}")
            continue
        try:
            disk = disk_from_attributes(vm_id, entry)
        except DiskNamingError as exc:
            problems.append(str(exc))
            continue
        if disk is not None:
            disks.append(disk)
    return sorted(disks, key=lambda d: d.disk_id), problems


def disks_of(vm_id: int, template: Mapping[str, Any] | None) -> list[Disk]:
    """:func:`read_disks`, strict: the Ceph disks of a VM.

    Raises:
        DiskNamingError: a Ceph disk's RBD image cannot be named (the first such disk).
    """
    disks, problems = read_disks(vm_id, template)
    if problems:
        raise DiskNamingError(problems[0])
    return disks
