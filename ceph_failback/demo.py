"""``python -m ceph_failback.demo``: the rehearsal (``python -m ceph_failback.lab rehearse``), kept
under the name the docs gave it. The lab comes with a checkout of the repository
(``pip install -e .``); a production install of the package does not carry it."""

from __future__ import annotations

import sys


def main() -> int:
    """Run the rehearsal, or say where to get it."""
    try:
        from .lab.demo import main as rehearse
    except ImportError:
        print("ceph_failback.demo: the lab and its rehearsal come with a checkout of the "
              "repository (pip install -e .), not with a production install", file=sys.stderr)
        return 2
    return rehearse(prog="python -m ceph_failback.demo")


if __name__ == "__main__":
    raise SystemExit(main())
