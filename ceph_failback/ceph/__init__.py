"""The Ceph side: site connections and the RBD mirror adapter (librados/librbd bindings)."""

from __future__ import annotations

from .connection import CephConfig, CephSite
from .mirror import (
    DEFAULT_CONCURRENCY,
    DaemonHealth,
    MirrorPool,
    MirrorSnapshot,
    OperationResult,
    Peer,
)
from .status import (
    MirrorImageInfo,
    MirrorState,
    MirrorStatus,
    ReplayDetail,
    ReplayKind,
    SiteStatus,
    parse_mirror_status,
    parse_site_status,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "CephConfig",
    "CephSite",
    "DaemonHealth",
    "MirrorImageInfo",
    "MirrorPool",
    "MirrorSnapshot",
    "MirrorState",
    "MirrorStatus",
    "OperationResult",
    "Peer",
    "ReplayDetail",
    "ReplayKind",
    "SiteStatus",
    "parse_mirror_status",
    "parse_site_status",
]
