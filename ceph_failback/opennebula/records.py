"""Typed records of what an OpenNebula site reports: VMs, images, datastores.

The adapter turns pyone's generated bindings into these small frozen objects, so that nothing else
in the library parses XML-RPC replies or compares state numbers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import pyone

from .naming import DEFAULT_POOL, Disk, read_disks

__all__ = [
    "VM",
    "Image",
    "Datastore",
    "vm_state_name",
    "lcm_state_name",
    "pool_vms",
    "vm_from_element",
    "SAFELY_STOPPED_STATES",
    "TERMINATING_STATES",
]

# LCM states newer than pyone's table (OpenNebula 7 include/VirtualMachine.h).
_EXTRA_LCM_STATES = {69: "BACKUP", 70: "BACKUP_POWEROFF", 71: "RESTORE"}

#: VM states in which the guest is shut down and its disks are not written, and whose resume
#: boots from the disks instead of restoring saved memory (see :attr:`VM.is_safely_stopped`).
SAFELY_STOPPED_STATES = frozenset({"POWEROFF", "UNDEPLOYED"})

#: LCM states of an ACTIVE VM whose terminate is under way (SHUTDOWN, then EPILOG; CLEANUP_DELETE
#: for one terminated from a ``*_FAILURE`` state): not requested again, only waited for.
TERMINATING_STATES = frozenset({"SHUTDOWN", "EPILOG", "CLEANUP_DELETE"})


def vm_state_name(value: int) -> str:
    """The name of a VM ``STATE`` number (``8`` -> ``"POWEROFF"``), per ``pyone.VM_STATE``."""
    try:
        return pyone.VM_STATE(int(value)).name
    except ValueError:
        return f"STATE_{value}"


def lcm_state_name(value: int) -> str:
    """The name of an ``LCM_STATE`` number (``12`` -> ``"SHUTDOWN"``), per ``pyone.LCM_STATE``."""
    value = int(value)
    if value in _EXTRA_LCM_STATES:
        return _EXTRA_LCM_STATES[value]
    try:
        return pyone.LCM_STATE(value).name
    except ValueError:
        return f"LCM_STATE_{value}"


@dataclass(frozen=True)
class VM:
    """A VM as one site reports it.

    Attributes:
        id: the VM id at that site (ids differ between sites).
        name: the VM's name.
        state: the VM state name (``"ACTIVE"``, ``"POWEROFF"``, ``"DONE"``...).
        lcm_state: the LCM state name (``"RUNNING"``, ``"SHUTDOWN"``; ``"LCM_INIT"`` when the VM
            is not ACTIVE).
        disks: its Ceph disks, in ``DISK_ID`` order (other disks are left out); any sequence
            may be given, it is kept as a tuple.
        unreadable: for each Ceph disk whose RBD image cannot be named (left out of
            ``disks``), why: the failback's mapping makes it a blocker for this VM.
        error: ``USER_TEMPLATE/ERROR``: oned's record of the last failed driver operation,
            ``"<time>: <OPERATION>: <driver output>"`` (VirtualMachineManager::log_error); oned
            keeps it after later successes, so only a change means a new failure.
        ready: ``USER_TEMPLATE/READY``: what the guest last reported through OneGate
            (``"YES"`` once up, with ``REPORT_READY`` in its context); ``""`` when absent.
    """

    id: int
    name: str
    state: str
    lcm_state: str = "LCM_INIT"
    disks: Sequence[Disk] = field(default=())
    unreadable: Sequence[str] = field(default=())
    error: str = ""
    ready: str = ""

    def __post_init__(self) -> None:
        # Accept any iterable (a list is the natural thing to pass) but keep the record immutable.
        object.__setattr__(self, "disks", tuple(self.disks))
        object.__setattr__(self, "unreadable", tuple(self.unreadable))

    @property
    def is_ready(self) -> bool:
        """The guest reported ``READY=YES`` (OneFlow's test: the value, stripped, is exactly
        ``YES``; src/flow/lib/EventManager.rb)."""
        return self.ready.strip() == "YES"

    @property
    def state_str(self) -> str:
        """The state as oned words it: the LCM state for an ACTIVE VM, else the VM state."""
        return self.lcm_state if self.state == "ACTIVE" else self.state

    @property
    def status(self) -> str:
        """``STATE/LCM_STATE`` (``"ACTIVE/RUNNING"``), or the state alone when not ACTIVE."""
        return f"{self.state}/{self.lcm_state}" if self.state == "ACTIVE" else self.state

    @property
    def is_done(self) -> bool:
        """True once the VM is terminated (state DONE)."""
        return self.state == "DONE"

    @property
    def is_running(self) -> bool:
        """True when the VM is ACTIVE and RUNNING."""
        return self.state == "ACTIVE" and self.lcm_state == "RUNNING"

    @property
    def is_safely_stopped(self) -> bool:
        """True when the guest is shut down (POWEROFF, UNDEPLOYED).

        SUSPENDED and STOPPED VMs are not: their resume restores the saved memory of the guest,
        which would not match disks that changed on the other site meanwhile.
        """
        return self.state in SAFELY_STOPPED_STATES

    def disks_in(self, pool: str | Collection[str]) -> tuple[Disk, ...]:
        """The disks whose RBD image lives in ``pool`` (or in one of several pools)."""
        pools = {pool} if isinstance(pool, str) else set(pool)
        return tuple(d for d in self.disks if d.pool in pools)

    def images_in(self, pool: str) -> tuple[str, ...]:
        """The RBD image names (without pool) of the disks in ``pool``."""
        return tuple(d.image for d in self.disks_in(pool))

    def __str__(self) -> str:
        return f"VM {self.id} ({self.name}, {self.status})"


@dataclass(frozen=True)
class Image:
    """An OpenNebula image record (``one.image.info``).

    Attributes:
        id: the image id.
        name: the image name.
        source: ``SOURCE`` (``pool/one-<id>`` for a ceph image).
        persistent: True for a persistent image.
        datastore_id: the image datastore holding it.
        state: the image state name (``"READY"``, ``"USED"``, ``"USED_PERS"``...).
        vm_ids: the VMs using it.
    """

    id: int
    name: str
    source: str
    persistent: bool
    datastore_id: int
    state: str
    vm_ids: tuple[int, ...] = ()

    @property
    def pool(self) -> str:
        """The RBD pool in ``source`` (the default pool when ``source`` names no pool)."""
        pool, sep, _ = self.source.partition("/")
        return pool if sep else DEFAULT_POOL

    @property
    def rbd_image(self) -> str:
        """The RBD image name in ``source``, without the pool."""
        return self.source.partition("/")[2] or self.source


@dataclass(frozen=True)
class Datastore:
    """An OpenNebula datastore record (``one.datastore.info``); secrets are left out.

    Attributes:
        id: the datastore id.
        name: its name.
        type: ``"IMAGE"``, ``"SYSTEM"`` or ``"FILE"``.
        ds_mad: the datastore driver (``"ceph"``; ``"-"`` for a system datastore).
        tm_mad: the transfer driver (``"ceph"``).
        pool_name: ``POOL_NAME`` from its template, if any.
        ceph_host: ``CEPH_HOST`` (monitors), if any.
        ceph_user: ``CEPH_USER``, if any.
    """

    id: int
    name: str
    type: str
    ds_mad: str
    tm_mad: str
    pool_name: str | None = None
    ceph_host: str | None = None
    ceph_user: str | None = None

    @property
    def is_ceph(self) -> bool:
        """True when the ceph transfer driver manages it."""
        return self.tm_mad.lower() == "ceph"


# --- from pyone bindings ----------------------------------------------------------------------


def _opt(template: Any, key: str) -> str | None:
    if not template:
        return None
    value = template.get(key)
    text = "" if value is None else str(value).strip()
    return text or None


def vm_from_binding(obj: Any) -> VM:
    """Build a :class:`VM` from a pyone ``VM`` binding (``one.vm.info`` or a pool entry)."""
    vm_id = int(obj.ID)
    disks, unreadable = read_disks(vm_id, obj.TEMPLATE)
    return VM(
        id=vm_id,
        name=str(obj.NAME),
        state=vm_state_name(obj.STATE),
        lcm_state=lcm_state_name(obj.LCM_STATE),
        disks=disks,
        unreadable=tuple(unreadable),
        error=_text_of(getattr(obj, "USER_TEMPLATE", None), "ERROR"),
        ready=_text_of(getattr(obj, "USER_TEMPLATE", None), "READY"),
    )


def _text_of(template: Any, key: str) -> str:
    """A template attribute's text as pyone parses templates (a dict), ``""`` when absent."""
    if not isinstance(template, Mapping):
        return ""
    value = template.get(key)
    return "" if value is None else str(value).strip()


def _attributes(element: ElementTree.Element) -> dict[str, Any]:
    """A template vector's attributes as pyone parses them (xmltodict): text, ``None`` when
    empty, a list for a repeated attribute."""
    out: dict[str, Any] = {}
    for child in element:
        value = (child.text or "").strip() or None
        if child.tag in out:
            previous = out[child.tag]
            out[child.tag] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            out[child.tag] = value
    return out


def pool_vms(text: str) -> list[VM]:
    """The VMs of a ``one.vmpool.infoextended`` answer (``<VM_POOL>``): the document's tree is
    built by ElementTree in C and dropped once its ``<VM>`` elements are records
    (:func:`vm_from_element`); it weighs ~30 MB per 1,000 VMs while it lives, which is why
    :meth:`~ceph_failback.opennebula.site.OpenNebulaSite.vms` reads a large pool in pages.
    Raises ElementTree's ``ParseError`` for a document that is not XML."""
    return [vm_from_element(node) for node in ElementTree.fromstring(text).iterfind("VM")]


def vm_from_element(node: ElementTree.Element) -> VM:
    """Build a :class:`VM` from a ``<VM>`` element of a pool listing: the same record as
    :func:`vm_from_binding` gives for pyone's binding of it.

    pyone's generated bindings take ~0.5 s of CPU per 1,000 VMs; ElementTree (in C) reads only
    the fields the records need, many times faster. ``tests/unit`` checks both give the same
    records on oned's own replies.
    """
    vm_id = int(node.findtext("ID", ""))
    template = node.find("TEMPLATE")
    attrs = [_attributes(d) for d in template.findall("DISK")] if template is not None else []
    disks, unreadable = read_disks(vm_id, {"DISK": attrs} if attrs else None)
    return VM(
        id=vm_id,
        name=node.findtext("NAME", ""),
        state=vm_state_name(int(node.findtext("STATE", "-1"))),
        lcm_state=lcm_state_name(int(node.findtext("LCM_STATE", "-1"))),
        disks=disks,
        unreadable=tuple(unreadable),
        error=(node.findtext("USER_TEMPLATE/ERROR") or "").strip(),
        ready=(node.findtext("USER_TEMPLATE/READY") or "").strip(),
    )


def image_from_binding(obj: Any) -> Image:
    """Build an :class:`Image` from a pyone ``IMAGE`` binding."""
    try:
        state = pyone.IMAGE_STATES(int(obj.STATE)).name
    except ValueError:
        state = f"STATE_{obj.STATE}"
    vms: Iterable[Any] = obj.VMS.ID if obj.VMS is not None else ()
    return Image(
        id=int(obj.ID),
        name=str(obj.NAME),
        source=str(obj.SOURCE or ""),
        persistent=bool(int(obj.PERSISTENT)),
        datastore_id=int(obj.DATASTORE_ID),
        state=state,
        vm_ids=tuple(int(v) for v in vms),
    )


def datastore_from_binding(obj: Any) -> Datastore:
    """Build a :class:`Datastore` from a pyone ``DATASTORE`` binding."""
    try:
        ds_type = pyone.DATASTORE_TYPES(int(obj.TYPE)).name
    except ValueError:
        ds_type = f"TYPE_{obj.TYPE}"
    return Datastore(
        id=int(obj.ID),
        name=str(obj.NAME),
        type=ds_type,
        ds_mad=str(obj.DS_MAD or ""),
        tm_mad=str(obj.TM_MAD or ""),
        pool_name=_opt(obj.TEMPLATE, "POOL_NAME"),
        ceph_host=_opt(obj.TEMPLATE, "CEPH_HOST"),
        ceph_user=_opt(obj.TEMPLATE, "CEPH_USER"),
    )
