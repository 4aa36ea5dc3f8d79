"""The RBD mirror adapter: one pool on one site, through librbd's mirror API.

Everything the failback needs from Ceph goes through :class:`MirrorPool`: queries (mode, peers,
daemon health, images, batched statuses, mirror snapshots, watchers) and operations (demote,
promote, resync, mirror snapshot) on one image or many. No ``rbd`` CLI is involved.
"""

from __future__ import annotations

import errno as errno_mod
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    CephError,
    CephOperationError,
    ImageNotFoundError,
    MirroringNotEnabledError,
    NotReadyError,
)
from .bindings import import_bindings, map_ceph_error
from .content import ContentDigest, digest
from .daemons import BEACON_CONFIRM, DaemonHealth, judge_daemon_health
from .promotion import omap_pages, read_mirror_infos
from .rbd_journal import JournalHeader, parse_header
from .status import MirrorImageInfo, MirrorStatus, parse_mirror_status, to_utc

if TYPE_CHECKING:
    from .connection import CephSite

__all__ = ["MirrorPool", "Peer", "DaemonHealth", "MirrorSnapshot", "OperationResult",
           "DEFAULT_CONCURRENCY", "READ_CONCURRENCY", "READ_WINDOW"]

log = logging.getLogger(__name__)

#: Like ``rbd_concurrent_management_ops``: how many images a batch operation works on at once.
DEFAULT_CONCURRENCY = 10
#: How many images a pool-wide read opens through librbd at once (reads only).
READ_CONCURRENCY = 16
#: How many journal headers a pool-wide read has in flight at once (one small omap read each,
#: like rbd_concurrent_management_ops bounds librbd's own).
READ_WINDOW = 128

T = TypeVar("T")

_MIRROR_MODES = {0: "disabled", 1: "image", 2: "pool"}
_IMAGE_MODES = {0: "journal", 1: "snapshot"}
_IMAGE_STATES = {0: "disabling", 1: "enabled", 2: "disabled"}
_ENABLED, _DISABLED = 1, 2  # RBD_MIRROR_IMAGE_ENABLED, RBD_MIRROR_IMAGE_DISABLED
_DIRECTIONS = {0: "rx-only", 1: "tx-only", 2: "rx-tx"}


@dataclass(frozen=True)
class Peer:
    """A mirror peer of the pool."""

    uuid: str
    site_name: str
    mirror_uuid: str
    direction: str
    client_name: str


@dataclass(frozen=True)
class MirrorSnapshot:
    """A mirror snapshot of an image (snapshot-based mirroring)."""

    id: int
    name: str
    state: str
    complete: bool
    primary_mirror_uuid: str
    primary_snap_id: int | None
    mirror_peer_uuids: tuple[str, ...]
    timestamp: datetime | None

    @property
    def is_primary(self) -> bool:
        """Taken on this site while it was primary (``primary`` or ``primary-demoted``)."""
        return self.state.startswith("primary")

    @property
    def is_demotion(self) -> bool:
        """Marks a demotion (``primary-demoted`` or ``non-primary-demoted``)."""
        return self.state.endswith("demoted")


@dataclass(frozen=True)
class OperationResult:
    """The outcome of one image's operation in a batch."""

    image: str
    ok: bool
    error: CephError | None = None
    value: Any = None
    seconds: float = 0.0


@dataclass
class _Ctx:
    site: str
    pool: str
    extra: dict[str, Any] = field(default_factory=dict)


class MirrorPool:
    """RBD mirroring of one pool on one site.

    Args:
        site: the connected site.
        pool: the pool's name; a missing pool raises :class:`PoolNotFoundError` at once.
        concurrency: default worker count of the ``*_many`` operations.
    """

    def __init__(self, site: CephSite, pool: str, *, concurrency: int = DEFAULT_CONCURRENCY) -> None:
        self.site = site
        self.pool = pool
        self.concurrency = concurrency
        self._rados, self._rbd = import_bindings()
        with self.site.ioctx(pool):
            pass  # fail early on a missing pool
        self._peer_names: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"MirrorPool(site={self.site.name!r}, pool={self.pool!r})"

    # -- plumbing ----------------------------------------------------------------------------

    def _where(self, image: str | None = None) -> dict[str, Any]:
        return {"site": self.site.name, "pool": self.pool, "image": image}

    def _call(self, what: str, fn: Callable[[], T], image: str | None = None) -> T:
        try:
            return fn()
        except (self._rbd.Error, self._rados.Error) as exc:
            raise map_ceph_error(exc, what, **self._where(image)) from exc

    @contextmanager
    def _ioctx(self) -> Iterator[Any]:
        with self.site.ioctx(self.pool) as ioctx:
            yield ioctx

    @contextmanager
    def open_image(self, image: str, *, read_only: bool = False) -> Iterator[Any]:
        """An open ``rbd.Image``; a missing one raises :class:`ImageNotFoundError`."""
        with self._ioctx() as ioctx:
            try:
                handle = self._rbd.Image(ioctx, image, read_only=read_only)
            except self._rbd.ImageNotFound as exc:
                raise ImageNotFoundError(
                    "image does not exist", errno=errno_mod.ENOENT, **self._where(image)
                ) from exc
            except (self._rbd.Error, self._rados.Error) as exc:
                raise map_ceph_error(exc, "opening the image", **self._where(image)) from exc
            try:
                yield handle
            finally:
                handle.close()

    # -- pool-level queries ------------------------------------------------------------------

    def mode(self) -> str:
        """The pool's mirror mode: ``disabled``, ``image`` or ``pool``."""
        with self._ioctx() as ioctx:
            value = self._call("reading the mirror mode", lambda: self._rbd.RBD().mirror_mode_get(ioctx))
        return _MIRROR_MODES.get(value, str(value))

    def site_name(self) -> str:
        """This site's mirror site name (as peers know it)."""
        return str(self._call("reading the site name",
                              lambda: self._rbd.RBD().mirror_site_name_get(self.site.rados)))

    def mirror_uuid(self, image: str | None = None) -> str:
        """This pool's mirror uuid (what peers' reports and mirror snapshots refer to); the same
        for every ``image`` of the pool (several pools: :class:`~.pools.PoolSet`)."""
        with self._ioctx() as ioctx:
            return str(self._call("reading the mirror uuid",
                                  lambda: self._rbd.RBD().mirror_uuid_get(ioctx)))

    def peers(self) -> list[Peer]:
        """The pool's mirror peers."""
        with self._ioctx() as ioctx:
            raw = self._call("listing peers", lambda: list(self._rbd.RBD().mirror_peer_list(ioctx)))
        peers = [
            Peer(
                uuid=str(p.get("uuid", "")),
                site_name=str(p.get("site_name") or p.get("cluster_name") or ""),
                mirror_uuid=str(p.get("mirror_uuid", "")),
                direction=_DIRECTIONS.get(p.get("direction"), str(p.get("direction"))),
                client_name=str(p.get("client_name", "")),
            )
            for p in raw
        ]
        self._peer_names = {p.mirror_uuid: p.site_name for p in peers if p.mirror_uuid}
        return peers

    def peer_names(self) -> dict[str, str]:
        """Peer mirror uuid -> peer site name (cached after the first call)."""
        if self._peer_names is None:
            self.peers()
        assert self._peer_names is not None
        return dict(self._peer_names)

    def require_mirroring(self) -> list[Peer]:
        """Check the pool is mirrored with at least one peer; return the peers.

        Raises:
            MirroringNotEnabledError: mirroring disabled, or no peer configured.
        """
        mode = self.mode()
        if mode == "disabled":
            raise MirroringNotEnabledError(
                "mirroring is not enabled on this pool", **self._where(),
                hint="rbd mirror pool enable POOL pool|image, then bootstrap the peers",
            )
        peers = self.peers()
        if not peers:
            raise MirroringNotEnabledError(
                "the pool has no mirror peer", **self._where(),
                hint="rbd mirror pool peer bootstrap create/import",
            )
        return peers

    def daemon_health(self, *, beacon_grace: float = 60.0,
                      confirm: float = BEACON_CONFIRM) -> list[DaemonHealth]:
        """This site's rbd-mirror daemons and how they report this pool (manager service
        status); see :func:`judge_daemon_health`."""
        return judge_daemon_health(
            lambda: self.site.mgr_command({"prefix": "service status"}) or {}, self.pool,
            beacon_grace=beacon_grace, confirm=confirm, site=self.site.name)

    # -- images ------------------------------------------------------------------------------

    #: Up to this many named images, :meth:`infos` and ``statuses(each=True)`` read each image
    #: on its own instead of listing the whole pool: a VM's few images cost a few calls, not one
    #: promotion-state read per image of the pool.
    per_image_limit: int = 8

    #: How many journal headers :meth:`images` and :meth:`overview` read at once (librados'
    #: asynchronous reads, :func:`~ceph_failback.ceph.promotion.read_omaps`).
    read_window: int = READ_WINDOW
    #: How many images :meth:`images` and :meth:`overview` read through librbd at once (the
    #: images whose journal does not say: snapshot mode, an unreadable journal).
    read_concurrency: int = READ_CONCURRENCY

    def _mirror_infos(self, ioctx: Any, counts: dict[str, int] | None = None,
                      headers: dict[str, JournalHeader] | None = None
                      ) -> dict[str, dict[str, Any]]:
        """What librbd's ``mirror_image_info_list`` returns, read in parallel
        (:mod:`~ceph_failback.ceph.promotion`)."""
        try:
            return read_mirror_infos(ioctx, self._rados, self._rbd,
                                     concurrency=self.read_concurrency,
                                     window=self.read_window, counts=counts, headers=headers)
        except ValueError as exc:
            raise CephError(f"cannot decode the pool's mirrored image list (rbd_mirroring): "
                            f"{exc}", **self._where()) from exc

    def images(self) -> dict[str, MirrorImageInfo]:
        """Every mirror-enabled image of the pool with its info (its promotion state read for
        many images at once: :mod:`~ceph_failback.ceph.promotion`)."""
        with self._ioctx() as ioctx:
            infos = self._call("listing mirror image info",
                               lambda: self._mirror_infos(ioctx))
            names = self._call("listing images",
                               lambda: {i["id"]: i["name"] for i in self._rbd.RBD().list2(ioctx)})
        out = {}
        for image_id, info in infos.items():
            name = names.get(image_id)
            if name is None:  # removed between the two listings, or in the trash
                continue
            out[name] = _image_info(name, info, image_id)
        return out

    def image_names(self) -> list[str]:
        """All image names in the pool (mirrored or not)."""
        with self._ioctx() as ioctx:
            return sorted(self._call("listing images", lambda: self._rbd.RBD().list(ioctx)))

    def infos(self, images: Iterable[str] | None = None) -> dict[str, MirrorImageInfo]:
        """:meth:`images`, or only the named ones. Up to :attr:`per_image_limit` names are read
        one by one; more, or ``None``, list the pool. Either way an image that is missing or
        not mirror-enabled (disabled, or being disabled) is left out, as the listing leaves
        it out."""
        if images is None:
            return self.images()
        wanted = list(dict.fromkeys(images))
        if len(wanted) > self.per_image_limit:
            listed = self.images()
            return {name: listed[name] for name in wanted if name in listed}
        out = {}
        for name in wanted:
            read = self._read_one(name, status=False)
            if read is not None:
                out[name] = read[0]
        return out

    def _read_one(self, image: str, *, status: bool
                  ) -> tuple[MirrorImageInfo, MirrorStatus | None] | None:
        """One image's mirror info, or its status, through a read-only handle; ``None`` where
        the pool listings would leave the image out: missing, or (info) not mirror-enabled,
        or (status) mirroring disabled. With ``status`` the info's mode is not read."""
        try:
            with self.open_image(image, read_only=True) as handle:
                info = self._call("reading mirror info", handle.mirror_image_get_info, image)
                state = info.get("state")
                if state == _DISABLED or (not status and state != _ENABLED):
                    return None
                mode = raw = None
                if status:
                    raw = self._call("reading mirror status", handle.mirror_image_get_status,
                                     image)
                else:
                    mode = self._call("reading mirror mode", handle.mirror_image_get_mode, image)
                image_id = handle.id()
        except ImageNotFoundError:
            return None
        parsed = None
        if raw is not None:
            parsed = parse_mirror_status(raw, site=self.site.name, pool=self.pool,
                                         peer_names=self.peer_names(),
                                         primary=bool(info["primary"]) if "primary" in info else None)
        return _image_info(image, {**info, "mode": mode}, image_id), parsed

    def info(self, image: str) -> MirrorImageInfo:
        """Mirror info of one image (``enabled``/``primary``/global id/mode)."""
        with self.open_image(image) as handle:
            info = self._call("reading mirror info", handle.mirror_image_get_info, image)
            mode = None
            if info.get("state") == 1:
                mode = self._call("reading mirror mode", handle.mirror_image_get_mode, image)
            return _image_info(image, {**info, "mode": mode}, handle.id())

    def status(self, image: str) -> MirrorStatus:
        """The mirror status of one image (includes whether it is primary here)."""
        with self.open_image(image) as handle:
            raw = self._call("reading mirror status", handle.mirror_image_get_status, image)
        return parse_mirror_status(raw, site=self.site.name, pool=self.pool,
                                   peer_names=self.peer_names())

    def statuses(self, images: Iterable[str] | None = None, *,
                 each: bool = False) -> dict[str, MirrorStatus]:
        """Mirror statuses of every mirrored image (or of ``images``), in batched calls.

        The batched listing omits whether each image is primary; it is filled in from the
        (also batched) image info listing. ``each=True`` reads up to :attr:`per_image_limit`
        named images one by one instead, a cost that does not grow with the pool (for a VM's
        few images); a missing image, or one whose mirroring is disabled, is left out as the
        listing leaves it out.
        """
        if each and images is not None:
            images = list(dict.fromkeys(images))
            if len(images) > self.per_image_limit:
                return self.overview(images)[1]
            out = {}
            for name in images:
                read = self._read_one(name, status=True)
                if read is not None and read[1] is not None:
                    out[name] = read[1]
            return out
        return self.overview(images)[1]

    def mirrored_names(self) -> set[str]:
        """Names of the pool's mirror-enabled images, from the batched status listing alone (cheap:
        unlike :meth:`images`, it does not read each image's promotion state)."""
        enabled = getattr(self._rbd, "RBD_MIRROR_IMAGE_ENABLED", 1)
        with self._ioctx() as ioctx:
            raw_list = self._call("listing mirror statuses",
                                  lambda: list(self._rbd.RBD().mirror_image_status_list(ioctx)))
        return {str(raw["name"]) for raw in raw_list
                if raw.get("name") and (raw.get("info") or {}).get("state", enabled) == enabled}

    def overview(self, images: Iterable[str] | None = None, *,
                 journals: dict[str, JournalHeader] | None = None
                 ) -> tuple[dict[str, MirrorImageInfo], dict[str, MirrorStatus]]:
        """:meth:`images` and :meth:`statuses` together (of every mirrored image, or of
        ``images``) for the price of one batched info listing and one batched status listing.
        ``journals`` (optional) receives the journal headers (:meth:`journal_header`) the
        listing read the journal-mode images' promotion states from, by image name: read at
        the same moment as the infos, so a caller that needs both reads them once.

        The info listing is the costly one: each image's promotion state is read for it (many
        at once, :mod:`~ceph_failback.ceph.promotion`), so a large pool is best listed once per
        question.
        """
        wanted = set(images) if images is not None else None
        peer_names = self.peer_names()
        with self._ioctx() as ioctx:
            raw_list = self._call("listing mirror statuses",
                                  lambda: list(self._rbd.RBD().mirror_image_status_list(ioctx)))
            by_id: dict[str, JournalHeader] = {}
            infos = self._call("listing mirror image info",
                               lambda: self._mirror_infos(ioctx, headers=by_id))
            names = {raw["id"]: raw["name"] for raw in raw_list if raw.get("id") and raw.get("name")}
            if any(image_id not in names for image_id in infos):
                names.update(self._call(
                    "listing images",
                    lambda: {i["id"]: i["name"] for i in self._rbd.RBD().list2(ioctx)}))
        out_infos = {}
        for image_id, info in infos.items():
            name = names.get(image_id)
            if name is None or (wanted is not None and name not in wanted):
                continue  # removed between the listings, in the trash, or not asked for
            out_infos[name] = _image_info(name, info, image_id)
            if journals is not None and image_id in by_id:
                journals[name] = by_id[image_id]
        out_statuses = {}
        for raw in raw_list:
            name = raw.get("name")
            if name is None or (wanted is not None and name not in wanted):
                continue
            info = infos.get(raw.get("id"), {})
            primary = bool(info["primary"]) if "primary" in info else None
            out_statuses[name] = parse_mirror_status(raw, site=self.site.name, pool=self.pool,
                                                     peer_names=peer_names, primary=primary)
        return out_infos, out_statuses

    def watchers(self, image: str) -> list[dict[str, Any]]:
        """Clients watching the image (a running VM, a mapped device...); rbd-mirror's own
        watch on a non-primary image is included as librbd lists it."""
        with self.open_image(image, read_only=True) as handle:
            return [dict(w) for w in self._call("listing watchers", handle.watchers_list, image)]

    def digest(self, image: str, **kw: Any) -> ContentDigest:
        """The image's content digest now, read through a read-only handle
        (:func:`~ceph_failback.ceph.content.digest`, ``kw``: its options)."""
        with self.open_image(image, read_only=True) as h:
            return self._call("reading the image", lambda: digest(h.size(), h.read, **kw), image)

    def lock_owners(self, image: str) -> list[dict[str, Any]]:
        """Exclusive-lock owners of the image."""
        # librbd refuses to list lock owners through a read-only handle (EINVAL).
        with self.open_image(image) as handle:
            return [dict(o) for o in self._call("listing lock owners", handle.lock_get_owners, image)]

    def journal_header(self, image: str, image_id: str | None = None) -> JournalHeader | None:
        """The image's journal header, read now from its ``journal.<image id>`` object
        (:mod:`~ceph_failback.ceph.rbd_journal`): the registered clients with their commit
        positions, and the tags. ``None`` when the image has no journal (snapshot-based
        mirroring, or journaling off); a missing image raises :class:`ImageNotFoundError`.
        ``image_id`` (from :meth:`infos`) saves opening the image."""
        if image_id is None:
            with self.open_image(image, read_only=True) as handle:
                image_id = str(handle.id())
        oid = f"journal.{image_id}"
        rados = self._rados
        with self._ioctx() as ioctx:
            def read() -> dict[str, bytes]:
                return {k: v for page in omap_pages(ioctx, rados, oid, "") for k, v in page.items()}

            try:
                omap = self._call("reading the image's journal header", read, image)
            except ImageNotFoundError:
                return None  # no journal object: not journal-based
        return parse_header(omap, site=self.site.name, pool=self.pool, image=image)

    def mirror_snapshots(self, image: str) -> list[MirrorSnapshot]:
        """The image's mirror snapshots (snapshot-based mirroring), oldest first."""
        rbd = self._rbd
        states = {
            getattr(rbd, "RBD_SNAP_MIRROR_STATE_PRIMARY", 0): "primary",
            getattr(rbd, "RBD_SNAP_MIRROR_STATE_PRIMARY_DEMOTED", 1): "primary-demoted",
            getattr(rbd, "RBD_SNAP_MIRROR_STATE_NON_PRIMARY", 2): "non-primary",
            getattr(rbd, "RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED", 3): "non-primary-demoted",
        }
        out = []
        with self.open_image(image, read_only=True) as handle:
            for snap in self._call("listing snapshots", lambda: list(handle.list_snaps()), image):
                if snap.get("namespace") != rbd.RBD_SNAP_NAMESPACE_TYPE_MIRROR:
                    continue
                mirror: dict[str, Any] = snap.get("mirror") or self._call(
                    "reading a mirror snapshot",
                    functools.partial(handle.snap_get_mirror_namespace, snap["id"]), image)
                primary_snap = mirror.get("primary_snap_id")
                out.append(MirrorSnapshot(
                    id=int(snap["id"]),
                    name=str(snap.get("name", "")),
                    state=states.get(mirror.get("state"), str(mirror.get("state"))),
                    complete=bool(mirror.get("complete", False)),
                    primary_mirror_uuid=str(mirror.get("primary_mirror_uuid", "")),
                    primary_snap_id=int(primary_snap) if primary_snap is not None else None,
                    mirror_peer_uuids=tuple(mirror.get("mirror_peer_uuids") or ()),
                    timestamp=to_utc(snap.get("timestamp")),
                ))
        out.sort(key=lambda s: s.id)
        return out

    # -- operations on one image --------------------------------------------------------------

    def demote(self, image: str) -> None:
        """Demote the image on this site (it must be primary here)."""
        with self.open_image(image) as handle:
            self._call("demote", handle.mirror_image_demote, image)
        log.info("%s/%s: demoted on %s", self.pool, image, self.site.name)

    def promote(self, image: str, *, force: bool = False) -> None:
        """Promote the image on this site.

        Non-forced by default: librbd refuses while the peer's demotion has not been replayed here,
        which becomes :class:`NotReadyError` (retry later). ``force=True`` promotes even when the
        peer is still primary: that makes split-brain and is never used by a failback.
        """
        with self.open_image(image) as handle:
            try:
                handle.mirror_image_promote(force)
            except (self._rbd.ImageBusy, self._rbd.ReadOnlyImage) as exc:
                raise NotReadyError(
                    "promote refused: the peer's demotion has not been replayed here yet",
                    errno=abs(getattr(exc, "errno", 0) or 0) or None,
                    hint="retry later", **self._where(image),
                ) from exc
            except (self._rbd.Error, self._rados.Error) as exc:
                raise map_ceph_error(exc, "promote", **self._where(image)) from exc
        log.info("%s/%s: promoted on %s%s", self.pool, image, self.site.name,
                 " (FORCED)" if force else "")

    def resync(self, image: str) -> None:
        """Flag the (non-primary) image for resync: rbd-mirror discards and copies it again."""
        with self.open_image(image) as handle:
            self._call("resync", handle.mirror_image_resync, image)
        log.info("%s/%s: resync requested on %s", self.pool, image, self.site.name)

    def create_mirror_snapshot(self, image: str) -> int:
        """Take a mirror snapshot (snapshot-based mirroring); returns its snapshot id."""
        with self.open_image(image) as handle:
            snap_id = self._call("mirror snapshot", handle.mirror_image_create_snapshot, image)
        return int(snap_id)

    # -- operations on many images ------------------------------------------------------------

    def run_many(
        self,
        images: Iterable[str],
        operation: Callable[[str], Any],
        *,
        concurrency: int | None = None,
    ) -> dict[str, OperationResult]:
        """Run ``operation(image)`` for each image on a bounded thread pool.

        One failure never stops the others; each image gets an :class:`OperationResult`.
        """
        names = list(dict.fromkeys(images))
        workers = max(1, min(concurrency or self.concurrency, len(names) or 1))

        def one(name: str) -> OperationResult:
            start = time.monotonic()
            try:
                value = operation(name)
            except CephError as exc:
                return OperationResult(name, False, exc, seconds=time.monotonic() - start)
            except Exception as exc:  # a bug or binding error: report it, keep going
                err = CephOperationError(f"unexpected error: {exc!r}", **self._where(name))
                return OperationResult(name, False, err, seconds=time.monotonic() - start)
            return OperationResult(name, True, None, value, seconds=time.monotonic() - start)

        with ThreadPoolExecutor(workers, thread_name_prefix=f"rbd-{self.site.name}") as ex:
            results = list(ex.map(one, names))
        return {r.image: r for r in results}

    def demote_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        """:meth:`demote` each image (bounded concurrency, per-image results)."""
        return self.run_many(images, self.demote, **kw)

    def promote_many(self, images: Iterable[str], *, force: bool = False,
                     **kw: Any) -> dict[str, OperationResult]:
        """:meth:`promote` each image (bounded concurrency, per-image results)."""
        return self.run_many(images, lambda i: self.promote(i, force=force), **kw)

    def resync_many(self, images: Iterable[str], **kw: Any) -> dict[str, OperationResult]:
        """:meth:`resync` each image (bounded concurrency, per-image results)."""
        return self.run_many(images, self.resync, **kw)

    def create_mirror_snapshot_many(self, images: Iterable[str],
                                    **kw: Any) -> dict[str, OperationResult]:
        """:meth:`create_mirror_snapshot` on each image (bounded concurrency)."""
        return self.run_many(images, self.create_mirror_snapshot, **kw)


def _image_info(name: str, info: Mapping[str, Any], image_id: str | None) -> MirrorImageInfo:
    mode = info.get("mode")
    return MirrorImageInfo(
        name=name,
        global_id=str(info.get("global_id", "")),
        enabled=info.get("state") == 1,
        primary=bool(info["primary"]) if "primary" in info else None,
        mode=None if mode is None else _IMAGE_MODES.get(mode, str(mode)),
        image_id=image_id,
    )
