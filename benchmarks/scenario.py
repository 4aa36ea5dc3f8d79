"""Building the benchmark's world on the lab, and the measured floor.

Every contender run gets the same scenario on a fresh lab: ``n`` VMs on site A, each with one
persistent RBD image holding data, mirrored to B; then a disaster (unplanned: B force-promoted;
planned: A demoted first, as a DR test does), the VMs re-created and running on B, new writes on
B. The stand-ins' VM transitions then take :class:`~ceph_failback.lab.oned.Delays`' defaults
(0.2 s per step: terminate from RUNNING 0.4 s, resume from POWEROFF 0.2 s) for both contenders.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from ceph_failback.ceph.connection import import_bindings
from ceph_failback.lab import Lab
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import Disaster, VMPair, World

__all__ = ["Sizes", "build_world", "allocated_bytes", "measure_floor", "wait_all_running"]


@dataclass(frozen=True)
class Sizes:
    """Image size, the data written on A before the disaster and on B after it (bytes)."""

    image: int = 8 << 20
    data_a: int = 2 << 20
    data_b: int = 1 << 20


def _pattern(tag: str, size: int) -> bytes:
    line = f"{tag} ".encode()
    return (line * (size // len(line) + 1))[:size]


def build_world(lab: Lab, n: int, kind: Disaster, sizes: Sizes) -> tuple[World, dict[str, str]]:
    """``n`` VMs with one image each, mirrored, then the disaster with new writes on B.

    Setup runs with instant stand-in transitions; the benchmark delays (Delays()) are set before
    returning. Returns the started world and each image's checksum on B (B's last writes)."""
    world = World(lab, delays=Delays.uniform(0.0)).start()
    try:
        for i in range(n):
            world.add_vm(f"vm{i}", size=sizes.image, data=_pattern(f"vm{i}-on-a", sizes.data_a))
        world.wait_replicated(timeout=300)
        world.disaster(kind, new_data=_pattern("written-on-b", sizes.data_b))
        expected = world.expected_checksums()
        for oned in (world.oned_a, world.oned_b):
            oned.wait_idle()
            oned.set_delays(Delays())
    except BaseException:
        world.stop()
        raise
    return world, expected


def allocated_bytes(lab: Lab, site: str, images: Iterable[str]) -> dict[str, int]:
    """Bytes of data each image holds on ``site`` (its allocated extents): what a full resync
    from that site copies."""
    _, rbd = import_bindings()
    out = {}
    with lab.site(site).admin().ioctx(lab.pool) as ioctx:
        for name in images:
            total = [0]

            def extent(offset: int, length: int, exists: bool, total: list[int] = total) -> int:
                if exists:
                    total[0] += length
                return 0

            image = rbd.Image(ioctx, name, read_only=True)
            try:
                image.diff_iterate(0, image.size(), None, extent)
            finally:
                image.close()
            out[name] = total[0]
    return out


def wait_all_running(world: World, pairs: Iterable[VMPair], timeout: float = 300.0) -> None:
    """Wait (reading the stand-in directly: no XML-RPC) until each VM on A is RUNNING."""
    deadline = time.monotonic() + timeout
    vms = [p.vm_a for p in pairs]
    while any(world.oned_a.vm_state(v) != ("ACTIVE", "RUNNING") for v in vms):
        if time.monotonic() > deadline:
            raise TimeoutError(f"VMs on A not RUNNING after {timeout}s")
        time.sleep(0.05)


def measure_floor(lab: Lab, k: int = 5, *, sizes: Sizes | None = None,
                  interval: float = 0.02, timeout: float = 180.0) -> dict[str, Any]:
    """The floor: from demoting an image on B to A's first successful *safe* promote.

    ``k`` fresh images go A -> B, then a clean flip makes B primary with new writes there; once A
    has reported replaying from B after B's promotion (the proof a failback requires before it
    promotes), each image in turn is demoted on B and promoted on A, never forced, retried every
    ``interval`` seconds. Returns the per-image seconds with median/min/max.
    """
    sizes = sizes or Sizes()
    _, rbd = import_bindings()
    tag = uuid.uuid4().hex[:6]
    names = [f"floor-{tag}-{i}" for i in range(k)]
    for name in names:
        lab.create_image(name, sizes.image, data=_pattern(f"{name}-on-a", sizes.data_a))
    lab.wait_replicated(names, timeout=timeout)
    lab.planned_disaster(names, new_data=_pattern("floor-on-b", sizes.data_b))
    promoted = time.time()
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending:
        for name in sorted(pending):
            st = lab.raw_status("a", name)
            stamp = st.get("last_update")
            # Reports carry whole seconds: one from the second after the promotion is newer.
            fresh = stamp is not None and _epoch(stamp) >= int(promoted) + 1
            if st.get("up") and st.get("state") == rbd.MIRROR_IMAGE_STATUS_STATE_REPLAYING and fresh:
                pending.discard(name)
        if pending:
            if time.monotonic() > deadline:
                raise TimeoutError(f"A never reported replaying from B for {sorted(pending)}")
            time.sleep(0.2)
    seconds = {}
    with lab.site("a").admin().ioctx(lab.pool) as ioctx_a, \
            lab.site("b").admin().ioctx(lab.pool) as ioctx_b:
        for name in names:
            started = time.monotonic()
            image = rbd.Image(ioctx_b, name)
            try:
                image.mirror_image_demote()
            finally:
                image.close()
            while True:
                image = rbd.Image(ioctx_a, name)
                try:
                    image.mirror_image_promote(False)  # never forced
                    break
                except (rbd.ImageBusy, rbd.ReadOnlyImage):
                    pass
                finally:
                    image.close()
                if time.monotonic() - started > timeout:
                    raise TimeoutError(f"{name}: A never accepted the promote")
                time.sleep(interval)
            seconds[name] = time.monotonic() - started
    values = list(seconds.values())
    return {"images": k, "retry_interval": interval, "seconds": seconds,
            "median": statistics.median(values), "min": min(values), "max": max(values)}


def _epoch(stamp: Any) -> float:
    # librbd's last_update: naive UTC (Ceph 16) or aware (Ceph 20).
    return float(stamp.replace(tzinfo=UTC).timestamp() if stamp.tzinfo is None
                 else stamp.timestamp())


def parallel(fn: Any, items: Iterable[Any], workers: int = 8) -> list[Any]:
    """``fn`` over ``items`` on a small thread pool (setup only)."""
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))
