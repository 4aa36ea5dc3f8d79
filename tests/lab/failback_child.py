"""Run a failback in a separate process, optionally SIGKILLing itself at a chosen point.

Used by the resumption tests: ``python -m tests.lab.failback_child '<json>'``.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from ceph_failback.ceph import CephConfig, CephSite
from ceph_failback.failback import Event, EventKind, Failback, Site, Timeouts
from ceph_failback.failback.hooks import Hook
from ceph_failback.opennebula import OpenNebulaSite


def _site(d: dict) -> Site:
    ceph = CephSite(d["name"], CephConfig(conffile=d["conf"], client=d["client"],
                                          keyring=d["keyring"])).connect()
    one = OpenNebulaSite(d["name"], d["endpoint"], credentials=d["session"], poll_interval=0.1)
    return Site(d["name"], ceph, one)


def main() -> int:
    cfg = json.loads(sys.argv[1])
    kill_after = cfg.get("kill_after")  # a step name: die when it finishes (the first time)
    kill_at = cfg.get("kill_at_action")  # [step, n]: die at the n-th action of that step
    seen = [0]

    def listener(ev: Event) -> None:
        if kill_after and ev.kind is EventKind.STEP_FINISHED and ev.step == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        if kill_at and ev.kind is EventKind.ACTION and ev.step == kill_at[0]:
            seen[0] += 1
            if seen[0] >= kill_at[1]:
                os.kill(os.getpid(), signal.SIGKILL)

    hooks = [Hook(h["when"], h["command"], vm=h.get("vm")) for h in cfg.get("hooks", [])]
    fb = Failback(_site(cfg["a"]), _site(cfg["b"]), cfg["pool"], journal=cfg["journal"],
                  timeouts=Timeouts(**cfg["timeouts"]), listeners=[listener], hooks=hooks,
                  vm_concurrency=cfg.get("vm_concurrency", 10))
    report = fb.run(pipeline=cfg.get("pipeline", True))
    print(json.dumps(report.to_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
