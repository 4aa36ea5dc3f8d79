"""What the safety rules (:mod:`~ceph_failback.failback.safety`) read and answer: the names their
messages use, one image as both sites show it, a rule's objection; and the plan's
:class:`Blocker` (import it from :mod:`~ceph_failback.failback.plan`). Import the others from
:mod:`~ceph_failback.failback.safety`, which re-exports them."""

from __future__ import annotations

from dataclasses import dataclass

from ..ceph.rbd_journal import ReplayEpoch
from ..ceph.status import MirrorImageInfo, MirrorStatus
from ..errors import FailbackError, ImageNotFoundError, SafetyError

__all__ = ["Names", "ImageView", "Refusal", "Blocker"]


@dataclass(frozen=True)
class Names:
    """The names a rule's message uses: the two sites, the pool (several: joined by ``+``), the
    journal's path, and the failback's pools."""

    site_a: str
    site_b: str
    pool: str
    journal: str = ""
    pools: tuple[str, ...] = ()

    @property
    def pool_list(self) -> tuple[str, ...]:
        """The failback's pools."""
        return self.pools or (self.pool,)


@dataclass(frozen=True)
class ImageView:
    """One image as both sites show it now. ``None`` where a site does not list it (missing,
    or not mirror-enabled) or where the status, or the journals (``epoch``), were not read."""

    name: str
    info_a: MirrorImageInfo | None
    info_b: MirrorImageInfo | None
    status_a: MirrorStatus | None = None
    status_b: MirrorStatus | None = None
    epoch: ReplayEpoch | None = None

    @property
    def primary_a(self) -> bool:
        """Primary on A (``False`` when not listed)."""
        return bool(self.info_a is not None and self.info_a.primary)

    @property
    def primary_b(self) -> bool:
        """Primary on B (``False`` when not listed)."""
        return bool(self.info_b is not None and self.info_b.primary)

    @property
    def mode(self) -> str | None:
        """The image's mirroring mode (``journal``/``snapshot``), from either site."""
        known = self.info_a or self.info_b
        return known.mode if known is not None else None


@dataclass(frozen=True)
class Refusal:
    """A rule's objection.

    Attributes:
        kind: the rule (and the plan's blocker kind): ``image-missing``, ``stale-promote``...
        message: what is wrong, naming the site.
        site: the site the message is about.
        hint: what to do next.
        missing: the image does not exist (or is not mirrored) there: the step's error is an
            :class:`ImageNotFoundError` rather than a :class:`SafetyError`.
    """

    kind: str
    message: str
    site: str
    hint: str | None = None
    missing: bool = False

    def error(self, *, pool: str, image: str | None = None,
              vm: int | None = None) -> FailbackError:
        """The exception a step records for the refused target."""
        cls = ImageNotFoundError if self.missing else SafetyError
        return cls(self.message, site=self.site, pool=pool, image=image, vm=vm, hint=self.hint)


@dataclass(frozen=True)
class Blocker:
    """A reason not to run the failback.

    Attributes:
        kind: a short identifier (``non-persistent-disk``, ``image-missing``...).
        target: what it concerns (``image:one-3``, ``vm:site-b:12``, ``pool``).
        message: what is wrong and what to do.
        waivable: whether :meth:`Failback.run` may proceed when the caller waives this kind
            explicitly (only kinds where proceeding cannot lose data).
    """

    kind: str
    target: str
    message: str
    waivable: bool = False

    def __str__(self) -> str:
        return f"{self.kind} [{self.target}]: {self.message}"
