"""ceph_failback: bring OpenNebula VMs and their Ceph RBD disks home after a disaster.

The names a user needs are here::

    import ceph_failback as cf

    cfg = cf.load_config("one.toml")
    fb = cf.Failback(*cfg.sites(), cfg.pool, journal=cfg.journal)
    print(fb.plan())
"""

from __future__ import annotations

__version__ = "0.1.0"

from . import errors  # noqa: E402 (after __version__, which submodules import)
from .config import FailbackConfig, load_config  # noqa: E402
from .errors import *  # noqa: E402,F403
from .failback import (  # noqa: E402
    WAIVABLE,
    Event,
    EventKind,
    Failback,
    Journal,
    NotebookProgress,
    Plan,
    Progress,
    Record,
    Report,
    Site,
    Status,
    StepResult,
    Timeouts,
)

__all__ = [
    "__version__",
    "WAIVABLE",
    "Event",
    "EventKind",
    "Failback",
    "FailbackConfig",
    "Journal",
    "NotebookProgress",
    "Plan",
    "Progress",
    "Record",
    "Report",
    "Site",
    "Status",
    "StepResult",
    "Timeouts",
    "load_config",
    *errors.__all__,
]
