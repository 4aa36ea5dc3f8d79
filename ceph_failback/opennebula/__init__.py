"""The OpenNebula side of the failback: sites, their VMs and disks, and how the two sites match.

* :class:`OpenNebulaSite` talks to one oned (queries, terminate / resume / poweroff with waits);
* :class:`VM`, :class:`Disk`, :class:`Image`, :class:`Datastore` are the typed records it returns;
* :func:`map_sites` pairs the VMs of site B with those of site A through their RBD images and
  reports what makes the failback unsafe.
"""

from __future__ import annotations

from .config import Credentials
from .mapping import Finding, FindingKind, Mapping, Pair, Severity, map_sites
from .naming import (
    DEFAULT_POOL,
    Disk,
    DiskKind,
    DiskNamingError,
    disk_from_attributes,
    disks_of,
    read_disks,
)
from .records import VM, Datastore, Image, lcm_state_name, vm_state_name
from .site import OpenNebulaSite

__all__ = [
    "OpenNebulaSite",
    "Credentials",
    "VM",
    "Image",
    "Datastore",
    "Disk",
    "DiskKind",
    "DiskNamingError",
    "DEFAULT_POOL",
    "disk_from_attributes",
    "disks_of",
    "read_disks",
    "vm_state_name",
    "lcm_state_name",
    "map_sites",
    "Mapping",
    "Pair",
    "Finding",
    "FindingKind",
    "Severity",
]
