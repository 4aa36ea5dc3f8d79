"""A disposable two-site Ceph lab (and OpenNebula stand-ins) for tests, demos and rehearsals.

Nothing here is used by a real failback; it exists so that the library can be exercised
against real Ceph daemons. See :class:`Lab`.
"""

from __future__ import annotations

from .cluster import APT_COMMAND, TEST_SPEED_SETTINGS, LabCluster, check_installed
from .lab import FAILBACK_CLIENT, Lab, MirrorKind, unique_journal

__all__ = [
    "APT_COMMAND",
    "FAILBACK_CLIENT",
    "TEST_SPEED_SETTINGS",
    "Lab",
    "LabCluster",
    "MirrorKind",
    "check_installed",
    "unique_journal",
]
