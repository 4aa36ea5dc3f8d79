"""Both sites side by side: what :meth:`Failback.status` returns.

A :class:`Status` is a snapshot: per image in scope its role and rbd-mirror report on site A and
on site B, per VM pair the VM's state on B and on A. It prints as a table in a terminal, renders as
the same coloured table in Jupyter, and :meth:`Status.to_dict` gives the JSON form the command line
prints with ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import RenderableType

from ..ceph.seams import MirrorSide
from ..ceph.status import MirrorImageInfo, MirrorStatus
from ..opennebula.mapping import Pair
from ..opennebula.records import VM
from .render import Rendered, status_view

__all__ = ["ImageSide", "ImageState", "VMState", "Status"]


@dataclass(frozen=True)
class ImageSide:
    """One image on one site.

    Attributes:
        site: the site's name.
        info: librbd's mirror info (``None``: the image is not mirrored there, or missing).
        status: the site's rbd-mirror report (``None``: none yet).
    """

    site: str
    info: MirrorImageInfo | None
    status: MirrorStatus | None

    @property
    def exists(self) -> bool:
        """The image is a mirrored image on this site."""
        return self.info is not None

    @property
    def primary(self) -> bool:
        """Primary on this site."""
        return bool(self.info is not None and self.info.primary)

    @property
    def role(self) -> str:
        """``primary``, ``non-primary`` or ``missing``."""
        if self.info is None:
            return "missing"
        return "primary" if self.info.primary else "non-primary"

    @property
    def state(self) -> str:
        """The rbd-mirror state as the ``rbd`` CLI prints it (``up+replaying``)."""
        return self.status.local.label if self.status is not None else "(no status)"

    @property
    def percent(self) -> float | None:
        """Copy progress while the image bootstraps (resync) or syncs a snapshot."""
        if self.status is None:
            return None
        local = self.status.local
        if local.bootstrap_percent is not None:
            return local.bootstrap_percent
        if local.replay is not None and local.replay.syncing_percent is not None:
            return local.replay.syncing_percent
        return None

    def summary(self) -> str:
        """``primary up+stopped (local image is primary) @12:00:01``, or ``missing``."""
        if self.info is None:
            return "missing"
        return f"{self.role} {self.status.local.summary() if self.status else '(no status)'}"


@dataclass(frozen=True)
class ImageState:
    """One image in scope on both sites."""

    name: str
    a: ImageSide
    b: ImageSide

    @property
    def mode(self) -> str | None:
        """``journal`` or ``snapshot``, when known."""
        info = self.a.info or self.b.info
        return info.mode if info is not None else None

    @property
    def home(self) -> bool:
        """Primary on A and not on B: failed back."""
        return self.a.primary and self.b.exists and not self.b.primary

    @property
    def phase(self) -> str:
        """Where the image stands, in a few words."""
        a, b = self.a, self.b
        if not a.exists or not b.exists:
            missing = " and ".join(s.site for s in (a, b) if not s.exists)
            return f"missing on {missing}"
        if self.home:
            return "home (primary on A)"
        if a.primary and b.primary:
            return "primary on both sites"
        if not a.primary and not b.primary:
            return "demoted on both sites"
        st = a.status
        if st is not None and st.is_split_brain():
            return "split-brain on A"
        if a.percent is not None:
            return f"copying to A {a.percent:g}%"
        if st is not None and st.local.up and st.local.is_replaying():
            return "A replays from B"
        return "on B"


@dataclass(frozen=True)
class VMState:
    """One VM pair: the VM on B (where it ran since the disaster) and its partner on A."""

    vm_b: VM
    vm_a: VM
    images: tuple[str, ...]

    @property
    def key(self) -> str:
        """``<id on B>-><id on A>``, the key of :meth:`Status.to_dict`."""
        return f"{self.vm_b.id}->{self.vm_a.id}"

    @property
    def home(self) -> bool:
        """RUNNING on A and DONE on B."""
        return self.vm_a.is_running and self.vm_b.is_done


@dataclass(frozen=True)
class Status(Rendered):
    """Both sites side by side for a failback's scope.

    Attributes:
        pool: the pool.
        site_a: site A's name (the home site).
        site_b: site B's name.
        images: each image in scope.
        vms: each VM pair in scope.
        taken: when the snapshot was read (aware UTC).
    """

    pool: str
    site_a: str
    site_b: str
    images: tuple[ImageState, ...]
    vms: tuple[VMState, ...]
    taken: datetime

    @classmethod
    def now(cls, pool: str, site_a: str, site_b: str, images: tuple[ImageState, ...],
            vms: tuple[VMState, ...]) -> Status:
        """A status taken now."""
        return cls(pool, site_a, site_b, images, vms, datetime.now(UTC))

    @property
    def complete(self) -> bool:
        """Every image home (primary on A, not on B) and every VM running on A, DONE on B."""
        return all(i.home for i in self.images) and all(v.home for v in self.vms)

    def image(self, name: str) -> ImageState:
        """One image's state, by name."""
        for i in self.images:
            if i.name == name:
                return i
        raise KeyError(name)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The JSON form: ``{"images": {name: {site_a: cell, site_b: cell}}, "vms": {"B->A":
        {site_b: state, site_a: state, "images": [...]}}}``, each cell a one-line summary."""
        return {
            "images": {i.name: {self.site_a: i.a.summary(), self.site_b: i.b.summary()}
                       for i in self.images},
            "vms": {v.key: {self.site_b: v.vm_b.status, self.site_a: v.vm_a.status,
                            "images": list(v.images)} for v in self.vms},
        }

    # Dict-style reading of to_dict(), for code written when status() returned a dict.
    def __getitem__(self, key: str) -> dict[str, Any]:
        return self.to_dict()[key]

    def keys(self) -> tuple[str, ...]:
        """``("images", "vms")``: with ``__getitem__``, ``dict(status)`` gives :meth:`to_dict`."""
        return ("images", "vms")

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def view(self) -> RenderableType:
        """Both sites side by side as a rich renderable (:func:`~.render.status_view`)."""
        return status_view(self)

    def __repr__(self) -> str:
        return str(self)


def read_status(pool_a: MirrorSide, pool_b: MirrorSide, images: Sequence[str],
                present: Callable[[], Sequence[Pair]], *, pool: str, site_a: str,
                site_b: str) -> Status:
    """Both sites side by side for ``images`` and the pairs ``present()`` reads: the two sites'
    listings in the background, beside OpenNebula's. Leaving the block waits for them, an error
    included (a librbd call must never outlive the caller's cluster handle)."""
    with ThreadPoolExecutor(2, thread_name_prefix="status") as ex:
        overview_a = ex.submit(pool_a.overview, images)
        overview_b = ex.submit(pool_b.overview, images)
        pairs = present()
        (ia, sa), (ib, sb) = overview_a.result(), overview_b.result()
    states = tuple(ImageState(name, ImageSide(site_a, ia.get(name), sa.get(name)),
                              ImageSide(site_b, ib.get(name), sb.get(name))) for name in images)
    vms = tuple(VMState(p.vm_b, p.vm_a, tuple(p.images)) for p in pairs)
    return Status.now(pool, site_a, site_b, states, vms)
