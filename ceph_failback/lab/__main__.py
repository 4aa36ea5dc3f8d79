"""``python -m ceph_failback.lab up|status|down``: manage a lab from the shell."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import FailbackError
from .lab import Lab

DEFAULT_DIR = "/tmp/ceph-failback-lab"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m ceph_failback.lab", description=__doc__)
    parser.add_argument("command", choices=["up", "status", "down"])
    parser.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default {DEFAULT_DIR})")
    parser.add_argument("--pool", default="one")
    parser.add_argument("--mode", choices=["journal", "snapshot"], default="journal",
                        help="rbd mirroring mode (default journal)")
    parser.add_argument("--production-speed", action="store_true",
                        help="keep Ceph's default rbd-mirror intervals (slower, like production)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "up":
            lab = Lab(args.dir, pool=args.pool, mode=args.mode,
                      test_speed=not args.production_speed).up()
            print(json.dumps({"directory": str(lab.directory), "timings": lab.timings,
                              **lab.status()}, indent=2))
        elif args.command == "status":
            print(json.dumps(Lab.load(args.dir).status(), indent=2))
        else:
            Lab.load(args.dir).down()
            print(f"lab at {args.dir} stopped and removed")
    except FailbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
