"""A whole two-site world in memory: the Ceph model (:class:`~.ceph.MemoryCeph`) plus one oned
stand-in per site, wired like the lab's world (OpenNebula's deletions hit the model's pool).

It builds what OpenNebula's DR guide leaves after a failover: on site A, persistent images and
VMs using them (powered off after the disaster); on site B, the mirrored images registered as
persistent images and VMs created from them, running.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..ceph.lock import Holder
from ..ceph.seams import CephBackend, JournalCopySide, MirrorSide, PoolLockSide
from ..errors import PoolNotFoundError
from ..failback.core import Failback, Site, Timeouts
from ..lab.oned import Delays, OnedStandIn
from ..opennebula.site import OpenNebulaSite
from .ceph import MemoryCeph

__all__ = ["MemoryWorld", "MemoryVM", "FAST"]

#: Wait limits for in-memory worlds: the model progresses on every poll.
FAST = Timeouts(settle=5, resync=10, mirror=10, promote=10, terminate=10, resume=10, ready=10,
                poll=0.005, writer=0.5, protect=10, catch_up=10)


@dataclass(frozen=True)
class MemoryVM:
    """A VM of the world: its id on A, its id on B (after the disaster), and its images (of the
    world's pool; ``other``: its image in the pool ``elsewhere``, when that pool is modelled)."""

    name: str
    vm_a: int
    vm_b: int | None
    images: tuple[str, ...]
    cdrom: bool = False
    elsewhere: str | None = None
    other: str | None = None


class _NoPoolLock:
    """The lock of a pool that does not exist: every read or take fails as librados does."""

    def __init__(self, fail: Callable[[], object]) -> None:
        self._fail = fail
        self.held = None

    def holder(self) -> None:
        self._fail()

    def acquire(self) -> Holder:
        self._fail()
        raise AssertionError("unreachable")

    def release(self) -> None:
        pass

    def break_(self, expected: Holder | None = None) -> None:
        self._fail()


class MultiPoolSite:
    """One site's cluster with several mirrored pools, each an independent :class:`MemoryCeph`
    (a :class:`~ceph_failback.ceph.seams.CephBackend`)."""

    def __init__(self, models: dict[str, MemoryCeph], name: str) -> None:
        self.models, self.name = models, name
        self._first = next(iter(models.values())).site(name)

    def fsid(self) -> str:
        return self._first.fsid()

    def describe(self) -> str:
        return self._first.describe()

    def _model(self, pool: str) -> MemoryCeph:
        if pool not in self.models:
            raise PoolNotFoundError("pool does not exist", site=self.name, pool=pool, errno=2)
        return self.models[pool]

    def mirror_pool(self, pool: str, *, concurrency: int = 10) -> MirrorSide:
        return self._model(pool).site(self.name).mirror_pool(pool, concurrency=concurrency)

    def pool_lock(self, pool: str, *, purpose: str = "failback") -> PoolLockSide:
        if pool not in self.models:  # as librados: made without I/O, fails at the first use
            return _NoPoolLock(lambda: self._model(pool))
        return self._model(pool).site(self.name).pool_lock(pool, purpose=purpose)

    def journal_copy(self, pool: str, name: str) -> JournalCopySide:
        return self._model(pool).site(self.name).journal_copy(pool, name)

    def close(self) -> None:
        pass


class MemoryWorld:
    """Two sites, in memory, for fast tests and rehearsals of scripts.

    Args:
        delays: the oned stand-ins' transition delays (default: 10 ms each).
        pool: the mirrored pool.
        other_pools: further mirrored pools (each its own :class:`~.ceph.MemoryCeph`, in
            :attr:`cephs`): a VM's disk ``elsewhere`` in one of them is a mirrored image there.
        ceph: options of :class:`~.ceph.MemoryCeph` (``status_period``, ``auto_tick``...).
    """

    def __init__(self, *, delays: Delays | None = None, pool: str = "one",
                 other_pools: Iterable[str] = (), **ceph: Any) -> None:
        self.cephs = {p: MemoryCeph(("site-a", "site-b"), p, **ceph)
                      for p in dict.fromkeys([pool, *other_pools])}
        self.ceph = self.cephs[pool]
        self.pool = pool
        delays = delays or Delays.uniform(0.01)
        self.oned_a = OnedStandIn(name="site-a", delays=delays, ceph_pool=pool,
                                  delete_rbd_image=self._deleter("site-a"))
        self.oned_b = OnedStandIn(name="site-b", delays=delays, ceph_pool=pool,
                                  delete_rbd_image=self._deleter("site-b"))
        self.vms: list[MemoryVM] = []
        self._ids = itertools.count(100)
        self._cdrom: tuple[int, int, str] | None = None
        self._datastores: dict[tuple[str, str], int] = {}

    def _deleter(self, site: str):  # type: ignore[no-untyped-def]
        def delete(pool: str, image: str) -> None:
            self.cephs[pool].remove_image(image, site=site)
        return delete

    def start(self) -> MemoryWorld:
        """Start both stand-ins."""
        self.oned_a.start()
        self.oned_b.start()
        return self

    def stop(self) -> None:
        """Stop both stand-ins."""
        self.oned_a.stop()
        self.oned_b.stop()

    def __enter__(self) -> MemoryWorld:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def site(self, which: str) -> Site:
        """Site ``a`` or ``b`` as a failback :class:`~ceph_failback.failback.Site`."""
        name = {"a": "site-a", "b": "site-b"}[which]
        oned = self.oned_a if which == "a" else self.oned_b
        one = OpenNebulaSite(name, oned.endpoint, credentials=oned.session, timeout=5,
                             poll_interval=0.005)
        ceph: CephBackend = (self.ceph.site(name) if len(self.cephs) == 1
                             else MultiPoolSite(self.cephs, name))
        return Site(name, ceph, one)

    def failback(self, journal: str | Path, **kwargs: Any) -> Failback:
        """A :class:`~ceph_failback.failback.Failback` B -> A over this world (fast timeouts
        unless given; ``pool=`` for another pool or several)."""
        kwargs.setdefault("timeouts", FAST)
        pool = kwargs.pop("pool", self.pool)
        return Failback(self.site("a"), self.site("b"), pool, journal=journal, **kwargs)

    def cdrom(self) -> str:
        """The world's ISO: a CDROM image in the mirrored pool, registered on both sites (as an
        operator registers the mirrored images on B). Returns its RBD image name."""
        if self._cdrom is None:
            image_id = self.oned_a.add_image("iso", persistent=False, type="CDROM",
                                             image_id=next(self._ids))
            rbd = f"one-{image_id}"
            self.ceph.create_image(rbd, data=b"ISO 9660")
            on_b = self.oned_b.add_image("iso", persistent=False, type="CDROM",
                                         source=f"{self.pool}/{rbd}")
            self._cdrom = (image_id, on_b, rbd)
        return self._cdrom[2]

    def _pool_datastore(self, oned: OnedStandIn, pool: str) -> int:
        """The image datastore of ``pool`` on that site (added the first time)."""
        key = (oned.name, pool)
        if key not in self._datastores:
            self._datastores[key] = oned.add_datastore(f"ceph_{pool}", ceph_pool=pool)
        return self._datastores[key]

    def add_vm(self, name: str, *, disks: int = 1, data: bytes | None = None,
               state_a: str = "RUNNING", cdrom: bool = False,
               elsewhere: str | None = None, ssh: bool = False) -> MemoryVM:
        """On site A: ``disks`` persistent images with data and a VM using them (and the
        world's :meth:`cdrom` as its last disk when ``cdrom``; and a persistent disk in Ceph pool
        ``elsewhere``, which the model does not hold, when given; in the ssh system datastore,
        which runs the VM on host copies of its images, when ``ssh``)."""
        ids, images = [], []
        for _ in range(disks):
            image_id = self.oned_a.add_image(f"{name}-disk", persistent=True,
                                             image_id=next(self._ids))
            rbd = f"one-{image_id}"
            self.ceph.create_image(rbd, data=data or f"{name}:{rbd}".encode())
            ids.append(image_id)
            images.append(rbd)
        if cdrom:
            self.cdrom()
            assert self._cdrom is not None
            ids.append(self._cdrom[0])
        other = None
        if elsewhere:
            image_id = self.oned_a.add_image(
                f"{name}-{elsewhere}", persistent=True, image_id=next(self._ids),
                datastore_id=self._pool_datastore(self.oned_a, elsewhere))
            ids.append(image_id)
            if elsewhere in self.cephs:
                other = f"one-{image_id}"
                self.cephs[elsewhere].create_image(other, data=(data or b"") + b"@" +
                                                   elsewhere.encode())
        vm = MemoryVM(name, self.oned_a.add_vm(name, disks=ids, state=state_a,
                                               system_datastore_id=0 if ssh else 101),
                      None, tuple(images), cdrom, elsewhere, other)
        self.vms.append(vm)
        return vm

    def disaster(self, kind: Literal["unplanned", "planned"] = "unplanned", *,
                 new_data: bytes | None = None, vms: Iterable[MemoryVM] | None = None,
                 persistent_on_b: bool = True, state_b: str = "RUNNING",
                 ssh_b: bool = False, extra_b: Iterable[int] = ()) -> None:
        """Fail over to B: A's VMs powered off, the images primary on B (forced for an unplanned
        disaster, after A's demotion for a planned one), registered in B's OpenNebula, and VMs
        running there from them (in ``state_b``: ``"UNKNOWN"`` for a VM whose host oned lost;
        in B's ssh system datastore when ``ssh_b``; with B's images ``extra_b`` as further
        disks);
        ``new_data`` written on B. ``persistent_on_b=False`` registers non-persistent images
        (B's VMs then use clones, which a failback must refuse)."""
        chosen = list(vms) if vms is not None else list(self.vms)
        one_a = self.site("a").one
        for vm in chosen:
            assert isinstance(one_a, OpenNebulaSite)
            one_a.poweroff(vm.vm_a, timeout=5)
        self.ceph.failover([i for vm in chosen for i in vm.images], planned=kind == "planned",
                           data=new_data)
        for pool, model in self.cephs.items():
            others = [vm.other for vm in chosen if vm.elsewhere == pool and vm.other]
            if others:
                model.failover(others, planned=kind == "planned",
                               data=None if new_data is None else new_data + b"@" + pool.encode())
        if self._cdrom is not None and any(vm.cdrom for vm in chosen):
            # The documented failover promotes the whole pool: the ISO too (nobody writes it).
            self.ceph.failover([self._cdrom[2]], planned=kind == "planned")
        for vm in chosen:
            ids = [self.oned_b.add_image(f"{vm.name}-{img}", persistent=persistent_on_b,
                                         source=f"{self.pool}/{img}") for img in vm.images]
            if vm.cdrom and self._cdrom is not None:
                ids.append(self._cdrom[1])
            ids += list(extra_b)
            if vm.elsewhere:
                ids.append(self.oned_b.add_image(
                    f"{vm.name}-{vm.elsewhere}", persistent=True,
                    datastore_id=self._pool_datastore(self.oned_b, vm.elsewhere),
                    source=f"{vm.elsewhere}/{vm.other}" if vm.other else None))
            vm_b = self.oned_b.add_vm(vm.name, disks=ids, state=state_b,
                                      system_datastore_id=0 if ssh_b else 101)
            if not persistent_on_b:
                for disk_id, img in enumerate(vm.images):
                    clone = f"{img}-{vm_b}-{disk_id}"
                    self.ceph.create_image(clone, primary="site-b")
            self.vms[self.vms.index(vm)] = MemoryVM(vm.name, vm.vm_a, vm_b, vm.images, vm.cdrom,
                                                    vm.elsewhere, vm.other)

    def images(self) -> list[str]:
        """Every image of every VM."""
        return [i for vm in self.vms for i in vm.images]
