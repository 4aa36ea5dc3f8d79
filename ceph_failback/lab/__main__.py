"""``python -m ceph_failback.lab up|status|down|rehearse``: manage a lab, rehearse a failback.

  up        start a two-site lab in --dir and leave it running (prints its conf paths)
  status    what runs in the lab at --dir, and its images
  down      stop the lab's daemons (by PID) and remove --dir
  rehearse  a whole failback rehearsal: lab, VMs, disaster, failback, report, what to expect
            in production (the demo, with every option; see rehearse --help)
"""

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
    from . import demo
    from .demo import add_arguments, options_from, parse_ips, parse_size, rehearse

    parser = argparse.ArgumentParser(prog="python -m ceph_failback.lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser("up", parents=[common], help="start a lab and leave it running")
    up.add_argument("--dir", default=DEFAULT_DIR, help=f"lab directory (default {DEFAULT_DIR})")
    up.add_argument("--pool", default="one", help="the mirrored pool (default one)")
    up.add_argument("--mode", choices=["journal", "snapshot"], default="journal",
                    help="rbd mirroring mode (default journal)")
    up.add_argument("--ips", type=parse_ips, default=("127.0.0.2", "127.0.0.3"),
                    metavar="IP_A,IP_B",
                    help="loopback addresses of the two sites (default 127.0.0.2,127.0.0.3)")
    up.add_argument("--osd-size", type=parse_size, default=2 << 30, metavar="SIZE",
                    help="each site's in-memory OSD (default 2G)")
    up.add_argument("--production-speed", action="store_true",
                    help="keep Ceph's default rbd-mirror intervals (slower, like production)")
    for name, text in (("status", "what runs in a lab, and its images"),
                       ("down", "stop a lab and remove its directory")):
        p = sub.add_parser(name, parents=[common], help=text)
        p.add_argument("--dir", default=DEFAULT_DIR,
                       help=f"lab directory (default {DEFAULT_DIR})")
    rehearsal = sub.add_parser(
        "rehearse", parents=[common], help="a whole failback rehearsal (see rehearse --help)",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(rehearsal)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else (
        logging.WARNING if args.command == "rehearse" else logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.command == "up":
            lab = Lab(args.dir, pool=args.pool, mode=args.mode, ips=args.ips,
                      test_speed=not args.production_speed, osd_bytes=args.osd_size).up()
            print(json.dumps({"directory": str(lab.directory), "timings": lab.timings,
                              **lab.status()}, indent=2))
        elif args.command == "status":
            print(json.dumps(Lab.load(args.dir).status(), indent=2))
        elif args.command == "down":
            Lab.load(args.dir).down()
            print(f"lab at {args.dir} stopped and removed")
        else:
            return rehearse(options_from(args))
    except FailbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
