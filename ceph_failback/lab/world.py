"""A whole two-site world for tests, demos and rehearsals: the Ceph lab plus one oned stand-in
per site, wired so that OpenNebula's side effects hit the real pools.

VMs are created the way OpenNebula's DR guide leaves them: on site A, persistent images
(``one-<IMAGE_ID>``) in the mirrored pool and the VMs that use them; after a disaster, on site B,
the mirrored images registered as persistent images and VMs created from them, running, while
the VMs on A are powered off.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from ..ceph.connection import CephSite
from ..errors import LabError
from ..failback.core import Site
from ..opennebula.site import OpenNebulaSite
from .lab import FAILBACK_CLIENT, Lab
from .oned import Delays, OnedStandIn

__all__ = ["World", "VMPair", "Disaster"]

log = logging.getLogger(__name__)

Disaster = Literal["unplanned", "planned"]

# Image ids are unique across the worlds of one process, and skip RBD images already in the lab,
# so that worlds sharing a lab (from several processes too) never name two RBD images alike
# (OpenNebula names a persistent image's RBD volume one-<IMAGE_ID>).
_IMAGE_IDS = itertools.count(100)


@dataclass(frozen=True)
class VMPair:
    """A VM of the world: its id on A, its id on B (after the disaster), and its images (named
    ``pool/image`` outside the lab's main pool, as :meth:`Lab.where` reads them)."""

    name: str
    vm_a: int
    vm_b: int | None
    images: tuple[str, ...]


class World:
    """A :class:`Lab` with an oned stand-in per site.

    Args:
        lab: a lab that is up.
        delays: the stand-ins' state-transition delays.
        client: the Ceph client the failback sites connect as (default: the least-privileged
            ``client.failback`` the lab creates).
        users: ``{user: password}`` of both stand-ins' administrators (default the stand-in's
            ``oneadmin:opennebula``); the first one is what :meth:`site` connects as.
    """

    def __init__(self, lab: Lab, *, delays: Delays | None = None,
                 client: str = FAILBACK_CLIENT, users: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.client = client
        self.oned_a = OnedStandIn(name=lab.site_a.name, delays=delays, ceph_pool=lab.pool,
                                  delete_rbd_image=self._deleter("a"), users=users)
        self.oned_b = OnedStandIn(name=lab.site_b.name, delays=delays, ceph_pool=lab.pool,
                                  delete_rbd_image=self._deleter("b"), users=users)
        self.vms: list[VMPair] = []
        self._sites: list[Site] = []
        self._other_pools: dict[str, int] = {}

    def _deleter(self, which: str):  # type: ignore[no-untyped-def]
        def delete(pool: str, image: str) -> None:
            if pool not in self.lab.pools:
                raise LabError(f"the lab has no pool {pool!r}")
            log.info("oned %s: deleting RBD image %s/%s", which, pool, image)
            self.lab.remove_image(f"{pool}/{image}", site=which)
        return delete

    def start(self) -> World:
        """Start both stand-ins."""
        self.oned_a.start()
        self.oned_b.start()
        return self

    def stop(self) -> None:
        """Stop both stand-ins and close the site connections handed out."""
        for site in self._sites:
            site.ceph.close()
        self._sites.clear()
        self.oned_a.stop()
        self.oned_b.stop()

    def __enter__(self) -> World:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def site(self, which: str, *, timeout: float = 10.0) -> Site:
        """A failback :class:`~ceph_failback.failback.Site` for ``a`` or ``b`` (new connections,
        closed by :meth:`stop`)."""
        cluster = self.lab.site(which)
        oned = self.oned_a if cluster is self.lab.site_a else self.oned_b
        ceph = CephSite(cluster.name, cluster.ceph_config(self.client)).connect()
        one = OpenNebulaSite(cluster.name, oned.endpoint, credentials=oned.session,
                             timeout=timeout, poll_interval=0.1)
        site = Site(cluster.name, ceph, one)
        self._sites.append(site)
        return site

    # -- building the world ----------------------------------------------------------------

    def _datastore(self, oned: OnedStandIn, pool: str) -> int:
        """The image datastore of a pool (the stand-in's default, 100, for the lab's main one;
        another is added the first time)."""
        if pool == self.lab.pool:
            return 100
        key = f"{oned.name}:{pool}"
        if key not in self._other_pools:
            self._other_pools[key] = oned.add_datastore(f"ceph_{pool}", ceph_pool=pool)
        return self._other_pools[key]

    def add_vm(self, name: str, *, disks: int = 1, size: int = 4 << 20,
               data: bytes | None = None, state_a: str = "RUNNING",
               ssh: bool = False, other_pool: str | None = None) -> VMPair:
        """Create, on site A, ``disks`` persistent images with data and a VM using them (in
        the ssh system datastore, which runs it on host copies of its images, when ``ssh``;
        with one more persistent disk in the lab's mirrored pool ``other_pool``, see
        :meth:`Lab.add_pool`, when given)."""
        ids = []
        images = []
        for pool in [self.lab.pool] * disks + ([other_pool] if other_pool else []):
            ds = self._datastore(self.oned_a, pool)
            image_id = self.oned_a.add_image(f"{name}-disk", persistent=True,
                                             image_id=self._free_image_id(), datastore_id=ds)
            rbd_name = f"one-{image_id}" if pool == self.lab.pool else f"{pool}/one-{image_id}"
            self.lab.create_image(rbd_name, size, data=data or f"{name}:{rbd_name}\n".encode())
            ids.append(image_id)
            images.append(rbd_name)
        vm_a = self.oned_a.add_vm(name, disks=ids, state=state_a,
                                  system_datastore_id=0 if ssh else 101)
        pair = VMPair(name, vm_a, None, tuple(images))
        self.vms.append(pair)
        return pair

    def _free_image_id(self) -> int:
        """The next image id whose RBD image (``one-<id>``) exists on neither site: worlds in
        other processes (a notebook's kernel, a rehearsal script) may share the lab."""
        while True:
            image_id = next(_IMAGE_IDS)
            names = [f"{pool}/one-{image_id}" for pool in self.lab.pools]
            if not any(self.lab.image_exists(n, site=s) for n in names for s in "ab"):
                return image_id

    def all_images(self) -> list[str]:
        """Every image of every VM."""
        return [i for p in self.vms for i in p.images]

    def wait_replicated(self, timeout: float = 180.0) -> None:
        """Wait until every image is mirrored to B."""
        self.lab.wait_replicated(self.all_images(), timeout=timeout)

    def disaster(self, kind: Disaster = "unplanned", *, new_data: bytes | None = None,
                 vms: Iterable[VMPair] | None = None, persistent_on_b: bool = True,
                 state_b: str = "RUNNING", ssh_b: bool = False,
                 elsewhere_b: str | None = None, history_b: bool = False) -> None:
        """Fail over: A's VMs go to POWEROFF, the images become primary on B (forced for an
        unplanned disaster, after A's demotion for a planned one), B's copies are registered in
        B's OpenNebula and VMs created from them run there; ``new_data`` is written on B.

        ``persistent_on_b=False`` registers them as non-persistent images (a VM on B then uses
        clones: the dangerous setup failback must refuse). ``state_b``: the state B's VMs are
        in (``"SUSPENDED"``, ``"BOOT_FAILURE"``...); ``ssh_b``: they run in B's ssh system
        datastore (on host copies); ``elsewhere_b``: each also has a persistent disk in that
        other Ceph pool (registered in oned only); ``history_b``: B keeps, for each VM, a DONE
        VM of an earlier DR test using the same images (oned keeps DONE VMs), which a failback
        must never pair.
        """
        chosen = list(vms) if vms is not None else list(self.vms)
        images = [i for p in chosen for i in p.images]
        one_a = OpenNebulaSite(self.lab.site_a.name, self.oned_a.endpoint,
                               credentials=self.oned_a.session, poll_interval=0.05)
        for p in chosen:
            one_a.poweroff(p.vm_a)
        if kind == "unplanned":
            self.lab.unplanned_disaster(images, new_data=new_data)
        else:
            self.lab.planned_disaster(images, new_data=new_data)
        for p in chosen:
            ids = []
            for img in p.images:
                pool, rbd_name = self.lab.where(img)
                ds = self._datastore(self.oned_b, pool)
                ids.append(self.oned_b.add_image(
                    f"{p.name}-{rbd_name}", persistent=persistent_on_b,
                    source=f"{pool}/{rbd_name}", datastore_id=ds))
            if elsewhere_b:
                ds = self._datastore(self.oned_b, elsewhere_b)
                ids.append(self.oned_b.add_image(f"{p.name}-{elsewhere_b}", persistent=True,
                                                 datastore_id=ds))
            if history_b:
                self.oned_b.add_vm(f"{p.name}-dr-test", disks=ids, state="DONE")
            vm_b = self.oned_b.add_vm(p.name, disks=ids, state=state_b,
                                      system_datastore_id=0 if ssh_b else 101)
            if not persistent_on_b:
                # OpenNebula's ceph driver clones a non-persistent image for the VM:
                # <source>-<vm id>-<disk id>, a new image in the mirrored pool on B.
                for disk_id, img in enumerate(p.images):
                    self.lab.create_image(f"{img}-{vm_b}-{disk_id}", site="b")
            self.vms[self.vms.index(p)] = VMPair(p.name, p.vm_a, vm_b, p.images)

    def expected_checksums(self) -> dict[str, str]:
        """Each image's checksum on B (where the VMs wrote last)."""
        return {i: self.lab.checksum("b", i) for i in self.all_images()}
