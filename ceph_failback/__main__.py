"""``python -m ceph_failback``: the ``ceph-failback`` command line (see :mod:`ceph_failback.cli`)."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
