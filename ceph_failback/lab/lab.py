"""A disposable two-site Ceph lab with real rbd-mirror daemons, for tests, demos and rehearsals.

Site A and site B are two single-node clusters on two loopback addresses; one pool (``one``) is
mirrored between them (journal-based in pool mode by default, snapshot-based as an option), with
peers bootstrapped rx-tx and one rbd-mirror daemon per site.

This module uses the Python bindings for everything after the daemons are started (no ``rbd``
subprocess). It is test tooling: it never runs against clusters it did not create.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from ..ceph.connection import CephConfig, CephSite, import_bindings
from ..errors import CephError, ConfigurationError, LabError
from .cluster import LabCluster

__all__ = ["Lab", "MirrorKind", "unique_journal"]

log = logging.getLogger(__name__)

MirrorKind = Literal["journal", "snapshot"]
STATE_FILE = "state.json"
FAILBACK_CLIENT = "client.failback"

#: Health checks the lab is ready despite: the manager's Python modules failing to load
#: (Debian 13's Ceph 18.2.7 with its python3-cryptography: "PyO3 modules do not yet support
#: subinterpreters"). The failback needs none of them (``service status`` is the manager's
#: own); snapshot schedules (rbd_support) then do not work on that build.
TOLERATED_HEALTH_CHECKS = frozenset({"MGR_MODULE_DEPENDENCY", "MGR_MODULE_ERROR"})


class Lab:
    """Two real Ceph clusters with rbd-mirror between them.

    Args:
        directory: the lab's directory (created; removed by :meth:`down`). ``None``: a new
            temporary directory.
        pool: the mirrored pool's name.
        mode: ``"journal"`` (journal-based, pool mirror mode) or ``"snapshot"`` (snapshot-based,
            image mirror mode: each image is enabled explicitly).
        pool_mirror_mode: override the pool mirror mode (``"pool"`` or ``"image"``); journal mode
            supports both, snapshot mode needs ``"image"``.
        ips: the loopback addresses of site A and site B.
        names: the site names (also the rbd-mirror site names).
        test_speed: apply the fast rbd-mirror intervals (see
            :data:`~ceph_failback.lab.cluster.TEST_SPEED_SETTINGS`); production uses Ceph's defaults.
        osd_bytes: size of each site's in-memory OSD.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        pool: str = "one",
        mode: MirrorKind = "journal",
        pool_mirror_mode: Literal["pool", "image"] | None = None,
        ips: tuple[str, str] = ("127.0.0.2", "127.0.0.3"),
        names: tuple[str, str] = ("site-a", "site-b"),
        test_speed: bool = True,
        osd_bytes: int = 2 << 30,
    ) -> None:
        if mode not in ("journal", "snapshot"):
            raise ConfigurationError(f"mirroring mode must be 'journal' or 'snapshot', not {mode!r}")
        if pool_mirror_mode is None:
            pool_mirror_mode = "pool" if mode == "journal" else "image"
        if mode == "snapshot" and pool_mirror_mode != "image":
            raise ConfigurationError("snapshot-based mirroring needs pool mirror mode 'image'")
        if names[0] == names[1] or ips[0] == ips[1]:
            raise ConfigurationError("the two sites need different names and addresses")
        self.directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="cfb-lab-"))
        self.pool = pool
        self.extra_pools: list[str] = []  # further mirrored pools (add_pool)
        self.mode: MirrorKind = mode
        self.pool_mirror_mode = pool_mirror_mode
        self.test_speed = test_speed
        self.site_a = LabCluster(names[0], ips[0], self.directory / "a", osd_bytes=osd_bytes,
                                 test_speed=test_speed)
        self.site_b = LabCluster(names[1], ips[1], self.directory / "b", osd_bytes=osd_bytes,
                                 test_speed=test_speed)
        self.timings: dict[str, float] = {}

    def __repr__(self) -> str:
        return (f"Lab({str(self.directory)!r}, pool={self.pool!r}, mode={self.mode!r}, "
                f"sites=({self.site_a.name!r}, {self.site_b.name!r}))")

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def sites(self) -> tuple[LabCluster, LabCluster]:
        """Site A and site B."""
        return (self.site_a, self.site_b)

    def site(self, which: str) -> LabCluster:
        """A site by name (``site-a``) or letter (``a``/``b``)."""
        for s, letter in ((self.site_a, "a"), (self.site_b, "b")):
            if which in (s.name, letter, letter.upper()):
                return s
        raise ConfigurationError(f"no lab site {which!r}; the sites are "
                                 f"{self.site_a.name!r} and {self.site_b.name!r}")

    def up(self, timeout: float = 90.0) -> Lab:
        """Create both clusters, configure mirroring, start rbd-mirror; wait until ready.

        On any failure the lab is torn down again before the error is raised.
        """
        started = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            with ThreadPoolExecutor(2) as ex:
                list(ex.map(lambda c: (c.create(), c.wait_osd_up()), self.sites))
            self._save()
            self.timings["clusters"] = time.monotonic() - started
            self._configure_mirroring()
            self._save()
            self.wait_ready(timeout=max(5.0, timeout - (time.monotonic() - started)))
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - started
        log.info("lab up in %.1fs at %s", self.timings["up"], self.directory)
        return self

    def _configure_mirroring(self) -> None:
        _, rbd = import_bindings()
        mode = rbd.RBD_MIRROR_MODE_POOL if self.pool_mirror_mode == "pool" else (
            rbd.RBD_MIRROR_MODE_IMAGE)
        for site in self.sites:
            admin = site.admin()
            admin.mon_command({"prefix": "osd pool create", "pool": self.pool, "pg_num": 8})
            with admin.ioctx(self.pool) as ioctx:
                rbd.RBD().pool_init(ioctx, True)
                rbd.RBD().mirror_mode_set(ioctx, mode)
            rbd.RBD().mirror_site_name_set(admin.rados, site.name)
            site.create_mirror_key()
            self._create_failback_client(site)
        with self.site_a.admin().ioctx(self.pool) as ioctx_a:
            token = rbd.RBD().mirror_peer_bootstrap_create(ioctx_a)
        with self.site_b.admin().ioctx(self.pool) as ioctx_b:
            rbd.RBD().mirror_peer_bootstrap_import(
                ioctx_b, rbd.RBD_MIRROR_PEER_DIRECTION_RX_TX, token)
        for site in self.sites:
            site.start_rbd_mirror()

    @property
    def pools(self) -> list[str]:
        """Every mirrored pool of the lab: :attr:`pool`, then those :meth:`add_pool` added."""
        return [self.pool, *self.extra_pools]

    def _failback_caps(self) -> list[str]:
        rbd_pools = ", ".join(f"profile rbd pool={p}" for p in self.pools)
        return ["mon", "profile rbd", "osd", rbd_pools,
                "mgr", f"{rbd_pools}, allow command \"service status\""]

    def add_pool(self, name: str, timeout: float = 60.0) -> None:
        """Another mirrored pool on both sites (an OpenNebula site's second Ceph datastore),
        with its own peer, in the lab's mode; the failback client's caps extended to it. Waits
        until both rbd-mirror daemons report it. Images in it are named ``pool/image`` by the
        lab's image methods. Idempotent."""
        if name in self.pools:
            return
        _, rbd = import_bindings()
        mode = rbd.RBD_MIRROR_MODE_POOL if self.pool_mirror_mode == "pool" else (
            rbd.RBD_MIRROR_MODE_IMAGE)
        for site in self.sites:
            admin = site.admin()
            admin.mon_command({"prefix": "osd pool create", "pool": name, "pg_num": 8})
            with admin.ioctx(name) as ioctx:
                rbd.RBD().pool_init(ioctx, True)
                rbd.RBD().mirror_mode_set(ioctx, mode)
        with self.site_a.admin().ioctx(name) as ioctx_a:
            token = rbd.RBD().mirror_peer_bootstrap_create(ioctx_a)
        with self.site_b.admin().ioctx(name) as ioctx_b:
            rbd.RBD().mirror_peer_bootstrap_import(
                ioctx_b, rbd.RBD_MIRROR_PEER_DIRECTION_RX_TX, token)
        self.extra_pools.append(name)
        for site in self.sites:
            site.admin().mon_command({"prefix": "auth caps", "entity": FAILBACK_CLIENT,
                                      "caps": self._failback_caps()})
        self._save()
        self._poll(f"rbd-mirror reporting pool {name} on both sites",
                   lambda: all(any(d["pools"].get(name) for d in self.mirror_daemons(s))
                               for s in self.sites), timeout)

    def _create_failback_client(self, site: LabCluster) -> None:
        # The least-privileged client a failback needs (documented in docs/safety.rst, "The Ceph
        # client"; tests/lab/test_security.py checks the two agree).
        key = site.admin().mon_command({
            "prefix": "auth get-or-create", "entity": FAILBACK_CLIENT,
            "caps": self._failback_caps(),
            "format": "plain",
        })
        text = key if isinstance(key, str) else json.dumps(key)
        site.keyring_for(FAILBACK_CLIENT).write_text(text if text.endswith("\n") else text + "\n")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait until both clusters are healthy and both rbd-mirror daemons report the pool."""
        deadline = time.monotonic() + timeout
        while True:
            problems = self._readiness_problems()
            if not problems:
                return
            if time.monotonic() > deadline:
                raise LabError(f"lab not ready after {timeout:g}s: " + "; ".join(problems))
            time.sleep(0.5)

    def _readiness_problems(self) -> list[str]:
        """What keeps the lab from being ready; health checks in
        :data:`TOLERATED_HEALTH_CHECKS` do not count."""
        problems = []
        for site in self.sites:
            for key in ("mon", "mgr", "osd", "rbd-mirror"):
                if not site.is_running(key):
                    problems.append(f"{site.name}: {key} is not running (see {site.directory}/log)")
            if problems:
                continue
            try:
                health = site.health()
                checks = sorted(set(health.get("checks", {})) - TOLERATED_HEALTH_CHECKS)
                if health.get("status") != "HEALTH_OK" and checks:
                    problems.append(f"{site.name}: {health.get('status')} {checks}")
                daemons = self.mirror_daemons(site)
                if not daemons:
                    problems.append(f"{site.name}: rbd-mirror not in the service map yet")
                elif not any(d.get("pool_ok") for d in daemons):
                    problems.append(f"{site.name}: rbd-mirror does not report pool {self.pool}")
            except CephError as exc:
                problems.append(str(exc))
        return problems

    def mirror_daemons(self, site: LabCluster) -> list[dict[str, Any]]:
        """rbd-mirror daemons of ``site`` from the manager's service status, with whether each
        reports the pool."""
        status = site.admin().mgr_command({"prefix": "service status"}) or {}
        out = []
        for gid, info in status.get("rbd-mirror", {}).items():
            raw = (info.get("status") or {}).get("json")
            pools = json.loads(raw) if raw else {}
            names = [p.get("name") for p in pools.values() if isinstance(p, dict)]
            out.append({"gid": gid, "last_beacon": info.get("last_beacon"),
                        "pool_ok": self.pool in names,
                        "pools": {p: p in names for p in self.pools}})
        return out

    def down(self) -> None:
        """Stop every lab daemon (by PID) and remove the lab's directory."""
        def stop(site: LabCluster) -> None:
            try:
                site.stop()
            except Exception as exc:  # keep going: the other site must stop too
                log.warning("%s: stop failed: %s", site.name, exc)

        with ThreadPoolExecutor(2) as ex:
            list(ex.map(stop, self.sites))
        shutil.rmtree(self.directory, ignore_errors=True)

    def running_pids(self) -> list[int]:
        """PIDs of the lab's daemons still alive."""
        return self.site_a.running_pids() + self.site_b.running_pids()

    def _save(self) -> None:
        state = {
            "pool": self.pool, "mode": self.mode, "pool_mirror_mode": self.pool_mirror_mode,
            "test_speed": self.test_speed, "extra_pools": self.extra_pools,
            "sites": [s.to_state() for s in self.sites],
        }
        (self.directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> Lab:
        """Attach to a lab started by another process (e.g. ``python -m ceph_failback.lab up``)."""
        path = Path(directory) / STATE_FILE
        try:
            state = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab at {directory} ({STATE_FILE} missing)") from None
        a, b = (LabCluster.from_state(s) for s in state["sites"])
        lab = cls(directory, pool=state["pool"], mode=state["mode"],
                  pool_mirror_mode=state["pool_mirror_mode"], ips=(a.ip, b.ip),
                  names=(a.name, b.name), test_speed=state["test_speed"])
        lab.site_a, lab.site_b = a, b
        lab.extra_pools = list(state.get("extra_pools", []))
        return lab

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    # -- connecting ----------------------------------------------------------------------------

    def ceph_config(self, which: str, client: str = "client.admin", **kwargs: Any) -> CephConfig:
        """How to reach a site as ``client`` (``client.admin`` or ``client.failback``)."""
        return self.site(which).ceph_config(client, **kwargs)

    def connect(self, which: str, client: str = "client.admin", **kwargs: Any) -> CephSite:
        """A new, connected :class:`CephSite` for a site (close it, or use ``with``)."""
        site = self.site(which)
        return CephSite(site.name, site.ceph_config(client, **kwargs)).connect()

    # -- images --------------------------------------------------------------------------------

    def where(self, name: str) -> tuple[str, str]:
        """``(pool, image)`` of an image name: ``pool/image``, or a bare name in :attr:`pool`."""
        pool, sep, image = name.partition("/")
        return (pool, image) if sep else (self.pool, name)

    @contextmanager
    def _image(self, which: str, name: str, read_only: bool = False) -> Iterator[Any]:
        _, rbd = import_bindings()
        pool, name = self.where(name)
        with self.site(which).admin().ioctx(pool) as ioctx:
            image = rbd.Image(ioctx, name, read_only=read_only)
            try:
                yield image
            finally:
                image.close()

    def image_features(self) -> int:
        """The features images get for this lab's mirroring mode."""
        _, rbd = import_bindings()
        features = rbd.RBD_FEATURE_LAYERING | rbd.RBD_FEATURE_EXCLUSIVE_LOCK
        if self.mode == "journal":
            features |= rbd.RBD_FEATURE_JOURNALING
        else:
            features |= rbd.RBD_FEATURE_OBJECT_MAP | rbd.RBD_FEATURE_FAST_DIFF
        return features

    def create_image(self, name: str, size: int = 4 << 20, *, site: str = "a",
                     data: bytes | None = None, mirrored: bool = True) -> None:
        """Create image ``name`` on ``site`` (primary there), mirrored unless ``mirrored=False``;
        optionally write ``data`` at offset 0 (and, in snapshot mode, take a mirror snapshot)."""
        _, rbd = import_bindings()
        pool, image = self.where(name)
        with self.site(site).admin().ioctx(pool) as ioctx:
            rbd.RBD().create(ioctx, image, size, old_format=False, features=self.image_features())
        if mirrored and self.pool_mirror_mode == "image":
            mode = (rbd.RBD_MIRROR_IMAGE_MODE_JOURNAL if self.mode == "journal"
                    else rbd.RBD_MIRROR_IMAGE_MODE_SNAPSHOT)
            with self._image(site, name) as image:
                image.mirror_image_enable(mode)
        if data:
            self.write(site, name, data)

    def remove_image(self, name: str, *, site: str) -> None:
        """Remove an image on one site (as OpenNebula's ceph driver would)."""
        _, rbd = import_bindings()
        pool, image = self.where(name)
        with self.site(site).admin().ioctx(pool) as ioctx:
            rbd.RBD().remove(ioctx, image)

    def image_exists(self, name: str, *, site: str) -> bool:
        """Whether ``name`` exists in the pool on ``site``."""
        _, rbd = import_bindings()
        pool, image = self.where(name)
        with self.site(site).admin().ioctx(pool) as ioctx:
            return image in rbd.RBD().list(ioctx)

    def write(self, site: str, name: str, data: bytes, offset: int = 0) -> None:
        """Write ``data`` to the (primary) image; in snapshot mode also take a mirror snapshot,
        as a snapshot schedule would, so the write gets mirrored.

        Right after a promotion the site's rbd-mirror may still hold the image's exclusive lock
        for a moment (its replayer is shutting down) and librbd answers EROFS; the write is
        retried for up to 30 s. After that the error is raised with what the image's state
        says (primary or not, who holds the lock, the site's mirror status).
        """
        _, rbd = import_bindings()
        deadline = time.monotonic() + 30
        while True:
            try:
                with self._image(site, name) as image:
                    image.write(data, offset)
                    image.flush()
                    if self.mode == "snapshot":
                        image.mirror_image_create_snapshot()
                return
            except (rbd.ReadOnlyImage, rbd.PermissionError) as exc:
                # EROFS, or (seen once during the test suite) EPERM: the replayer has not
                # released the lock yet.
                if time.monotonic() > deadline:
                    raise LabError(f"{name} on {self.site(site).name} stayed read-only for 30 s "
                                   f"({exc}): {self._lock_story(site, name)}") from exc
                time.sleep(0.2)

    def _lock_story(self, site: str, name: str) -> str:
        """Why an image may refuse writes: its primary flag, lock owners and mirror status."""
        try:
            with self._image(site, name) as image:
                primary = image.mirror_image_get_info()["primary"]
                owners = [o.get("owner") for o in image.lock_get_owners()]
                status = image.mirror_image_get_status()
            return (f"primary={primary}, exclusive lock owners={owners}, mirror status "
                    f"{_state_name(status)} ({status.get('description')!r})")
        except Exception as exc:  # a diagnosis must not hide the original error
            return f"(could not read its state: {exc})"

    def checksum(self, site: str, name: str, chunk: int = 4 << 20) -> str:
        """SHA-256 of the image's whole content on ``site``."""
        digest = hashlib.sha256()
        with self._image(site, name, read_only=True) as image:
            size = image.size()
            offset = 0
            while offset < size:
                n = min(chunk, size - offset)
                digest.update(image.read(offset, n))
                offset += n
        return digest.hexdigest()

    def is_primary(self, site: str, name: str) -> bool:
        """Whether the image is primary on ``site``."""
        with self._image(site, name) as image:
            return bool(image.mirror_image_get_info()["primary"])

    def raw_status(self, site: str, name: str) -> dict[str, Any]:
        """librbd's mirror status dict for an image, as is."""
        with self._image(site, name) as image:
            status: dict[str, Any] = image.mirror_image_get_status()
            return status

    # -- waits used by scenarios ---------------------------------------------------------------

    def _poll(self, what: str, check: Callable[[], bool], timeout: float,
              interval: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        last_exc: Exception | None = None
        while True:
            try:
                if check():
                    return
                last_exc = None
            except Exception as exc:  # the image may not exist yet on the peer
                last_exc = exc
            if time.monotonic() > deadline:
                raise LabError(f"timed out after {timeout:g}s waiting for {what}"
                               + (f" (last error: {last_exc})" if last_exc else ""))
            time.sleep(interval)

    def wait_replicated(self, names: Iterable[str], *, source: str = "a",
                        timeout: float = 120.0) -> None:
        """Wait until every image is replaying on the other site with the source's content
        (checksums equal) and, in journal mode, the source's rbd-mirror is registered in the
        other site's journal of it: until it is, a flip (source demoted, the other promoted)
        leaves the source split-brained for good (rule ``peer-registered``,
        :func:`~ceph_failback.failback.safety.peer_unregistered`), as on a real site where an
        image is flipped within ``rbd_mirror_image_state_check_interval`` of its creation."""
        target = "b" if self.site(source) is self.site_a else "a"
        pending = list(names)
        _, rbd = import_bindings()
        source_uuid: dict[str, str] = {}

        connection = self.connect(target) if self.mode == "journal" else None

        def registered(name: str) -> bool:
            # The library's own read of the header (MirrorPool.journal_header): an image
            # being recreated, or a header not readable yet, is not registered yet.
            pool, image = self.where(name)
            if pool not in source_uuid:
                with self.site(source).admin().ioctx(pool) as ioctx:
                    source_uuid[pool] = str(rbd.RBD().mirror_uuid_get(ioctx))
            assert connection is not None
            try:
                header = connection.pool(pool).journal_header(image)
            except CephError:
                return False
            return header is not None and header.client(source_uuid[pool]) is not None

        def check() -> bool:
            for name in list(pending):
                st = self.raw_status(target, name)
                if not (st.get("up") and "replaying" in _state_name(st)):
                    continue
                if self.mode == "journal" and not registered(name):
                    continue
                if self.checksum(target, name) == self.checksum(source, name):
                    pending.remove(name)
            return not pending

        registration = (f", with {self.site(source).name}'s rbd-mirror registered in its "
                        "journal" if self.mode == "journal" else "")
        try:
            self._poll(f"{pending} replicated to {self.site(target).name}{registration}", check,
                       timeout)
        finally:
            if connection is not None:
                connection.close()

    def promote_when_possible(self, site: str, name: str, *, force: bool = False,
                              timeout: float = 60.0) -> None:
        """Promote an image, retrying while librbd says the peer's demotion has not arrived.

        Any other librbd error is retried too until ``timeout`` (a forced promote racing
        rbd-mirror's replay once failed with EEXIST during the test suite); an image found
        primary already counts as promoted.

        A forced promote counts only once it has stuck: the image is primary and the site's
        rbd-mirror has stopped replaying it (``up+stopped``), or no rbd-mirror runs there. In
        journal mode Ceph can undo a forced promote: when it lands while the site's replayer
        is about to replay the first entry of a new epoch of the peer's journal, the replayer
        allocates its local tag for that epoch right after the promotion's tag
        (src/tools/rbd_mirror/image_replayer/journal/Replayer.cc, ``allocate_local_tag``, does
        not look at who owns the journal now). The image is then non-primary again and the
        replayer goes on replaying and holding the lock, so every write gets EROFS. Seen on
        the lab about once in 30 forced promotes right after an image's first sync; the
        promote is then simply made again.
        """
        _, rbd = import_bindings()
        cluster = self.site(site)
        promotions = 0

        def attempt() -> bool:
            nonlocal promotions
            with self._image(site, name) as image:
                if image.mirror_image_get_info()["primary"]:
                    if not force or not cluster.is_running("rbd-mirror"):
                        return True
                    status = image.mirror_image_get_status()
                    return (bool(status.get("up"))
                            and status.get("state") == rbd.MIRROR_IMAGE_STATUS_STATE_STOPPED)
                if promotions and force:
                    log.warning("%s's forced promotion on %s was undone by its rbd-mirror "
                                "(replaying a new epoch of the peer's journal): promoting "
                                "again", name, cluster.name)
                try:
                    image.mirror_image_promote(force)
                    promotions += 1
                    return not force
                except (rbd.ImageBusy, rbd.ReadOnlyImage):
                    return False

        self._poll(f"promotion of {name} on {cluster.name}", attempt, timeout, 0.25)

    # -- disasters -----------------------------------------------------------------------------

    def planned_disaster(self, names: Iterable[str], *, new_data: bytes | None = None,
                         timeout: float = 60.0) -> None:
        """A DR test's failover: demote each image on A, then promote it on B (not forced),
        optionally writing ``new_data`` on B afterwards."""
        names = list(names)
        for name in names:
            with self._image("a", name) as image:
                image.mirror_image_demote()
        for name in names:
            self.promote_when_possible("b", name, timeout=timeout)
            if new_data:
                self.wait_replay_stopped("b", name)
                self.write("b", name, new_data)

    def unplanned_disaster(self, names: Iterable[str], *, new_data: bytes | None = None) -> None:
        """A real outage's failover: force-promote each image on B while A stays primary
        (split-brain once A is back), optionally writing ``new_data`` on B."""
        for name in names:
            self.promote_when_possible("b", name, force=True)
            if new_data:
                self.write("b", name, new_data)

    def wait_replay_stopped(self, site: str, name: str, timeout: float = 60.0) -> bool:
        """After a promotion on ``site``: wait until its rbd-mirror reports the image primary
        (``up+stopped``, "local image is primary"), as Ceph's QA does before writing to a
        promoted image (qa/workunits/rbd/rbd_mirror_journal.sh, "force promote":
        ``wait_for_image_replay_stopped``, then ``write_image``): until the replayer stopped,
        it holds the image's exclusive lock and a writer gets EROFS. Returns whether it did
        within ``timeout`` (the write's own retries take over if not)."""
        _, rbd = import_bindings()

        def stopped() -> bool:
            st = self.raw_status(site, name)
            return bool(st.get("up")) and st.get("state") == rbd.MIRROR_IMAGE_STATUS_STATE_STOPPED

        try:
            self._poll(f"{name}'s replay on {self.site(site).name} to stop", stopped, timeout)
        except LabError as exc:
            log.warning("%s; writing anyway", exc)
            return False
        return True

    # -- daemons -------------------------------------------------------------------------------

    def stop_rbd_mirror(self, which: str, *, kill: bool = False) -> None:
        """Stop one site's rbd-mirror daemon (``kill``: at once, with SIGKILL)."""
        self.site(which).stop_rbd_mirror(signal.SIGKILL if kill else signal.SIGTERM)
        self._save()

    def start_rbd_mirror(self, which: str) -> None:
        """Start one site's rbd-mirror daemon again."""
        self.site(which).start_rbd_mirror()
        self._save()

    def stop_mon(self, which: str) -> None:
        """Stop one site's monitor (its clients time out until :meth:`start_mon`)."""
        self.site(which).stop_mon()
        self._save()

    def start_mon(self, which: str) -> None:
        """Start one site's monitor again."""
        self.site(which).start_mon()
        self._save()

    def status(self) -> dict[str, Any]:
        """A summary: daemons running, health, rbd-mirror daemons, images on each site."""
        _, rbd = import_bindings()
        out: dict[str, Any] = {"directory": str(self.directory), "pool": self.pool,
                               "mode": self.mode, "sites": {}}
        for site in self.sites:
            info: dict[str, Any] = {
                "ip": site.ip, "conf": str(site.conf_path),
                "daemons": {k: site.is_running(k) for k in ("mon", "mgr", "osd", "rbd-mirror")},
            }
            try:
                info["health"] = site.health().get("status")
                info["rbd_mirror_daemons"] = len(self.mirror_daemons(site))
                with site.admin().ioctx(self.pool) as ioctx:
                    info["images"] = sorted(rbd.RBD().list(ioctx))
            except CephError as exc:
                info["error"] = str(exc)
            out["sites"][site.name] = info
        return out




def unique_journal(prefix: str) -> Path:
    """A journal path in a new temporary directory, under a name no other failback on the lab
    uses: each journal has its copy in site A's pool under its file name
    (:mod:`~ceph_failback.ceph.journal_copy`), and one lab serves many failbacks."""
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    return directory / f"{directory.name}.jsonl"


def _state_name(status: dict[str, Any]) -> str:
    _, rbd = import_bindings()
    names = {
        rbd.MIRROR_IMAGE_STATUS_STATE_UNKNOWN: "unknown",
        rbd.MIRROR_IMAGE_STATUS_STATE_ERROR: "error",
        rbd.MIRROR_IMAGE_STATUS_STATE_SYNCING: "syncing",
        rbd.MIRROR_IMAGE_STATUS_STATE_STARTING_REPLAY: "starting_replay",
        rbd.MIRROR_IMAGE_STATUS_STATE_REPLAYING: "replaying",
        rbd.MIRROR_IMAGE_STATUS_STATE_STOPPING_REPLAY: "stopping_replay",
        rbd.MIRROR_IMAGE_STATUS_STATE_STOPPED: "stopped",
    }
    return names.get(status.get("state"), "unknown")
