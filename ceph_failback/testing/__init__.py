"""In-memory sites for fast tests and rehearsals: no cluster, no oned.

:class:`MemoryCeph` models two clusters mirroring a pool with journal-based RBD mirroring (the
failback's Ceph seam); :class:`MemoryWorld` adds an oned stand-in per site and builds the state
OpenNebula's DR procedure leaves, so a whole failback runs in a second::

    from ceph_failback.testing import MemoryWorld

    with MemoryWorld() as world:
        vm = world.add_vm("db", disks=2)
        world.disaster("unplanned", new_data=b"written on B")
        report = world.failback("journal.jsonl").run()
        assert report.complete and world.ceph.data("site-a", vm.images[0]) == b"written on B"
"""

from __future__ import annotations

from .ceph import MemoryCeph, MemoryCephSite, MemoryMirrorPool
from .lock import MemoryPoolLock
from .world import FAST, MemoryVM, MemoryWorld

__all__ = ["FAST", "MemoryCeph", "MemoryCephSite", "MemoryMirrorPool", "MemoryPoolLock",
           "MemoryVM", "MemoryWorld"]
