"""The main job: a failback rehearsal on a local two-site lab (``python -m ceph_failback.demo``).

The rehearsal lives with the lab, in :mod:`ceph_failback.lab.demo`; this module keeps the
documented command and names working.
"""

from __future__ import annotations

from .lab.demo import *  # noqa: F403 (the documented names)
from .lab.demo import __all__ as _names
from .lab.demo import main

__all__ = list(_names)

if __name__ == "__main__":
    raise SystemExit(main())
