"""ceph_failback: bring OpenNebula VMs and their Ceph RBD disks home after a disaster."""

from __future__ import annotations

from . import errors
from .errors import *  # noqa: F403

__version__ = "0.1.0"

__all__ = ["__version__", *errors.__all__]
