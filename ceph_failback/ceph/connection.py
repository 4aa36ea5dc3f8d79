"""A connection to one site's Ceph cluster through librados."""

from __future__ import annotations

import errno as errno_mod
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    CephConnectionError,
    ConfigurationError,
    PoolNotFoundError,
)
from .bindings import APT_HINT, caps_hint, import_bindings, map_ceph_error
from .journal_copy import RadosJournalCopy
from .lock import PoolLock
from .mirror import MirrorPool

if TYPE_CHECKING:
    import rados

__all__ = ["APT_HINT", "CephConfig", "CephSite", "caps_hint", "import_bindings", "map_ceph_error"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class CephConfig:
    """How to reach one site's cluster.

    Attributes:
        conffile: path of the site's ``ceph.conf`` (``None``: librados' default search path).
        client: the client name, ``client.<id>`` (default ``client.admin``).
        keyring: path of the client's keyring (``None``: as the conf file says).
        cluster: the cluster name (default ``ceph``).
        mount_timeout: seconds ``connect()`` may take (``client_mount_timeout``).
        mon_op_timeout: seconds a monitor operation may take (``rados_mon_op_timeout``).
            librados' default is 0, wait forever; a failback must not hang, so it is bounded here.
        osd_op_timeout: seconds an OSD operation may take (``rados_osd_op_timeout``).
        options: any other librados option, passed as is (left out of the repr: it may hold
            a ``key``).
    """

    conffile: str | None = None
    client: str = "client.admin"
    keyring: str | None = None
    cluster: str = "ceph"
    mount_timeout: float = 15.0
    mon_op_timeout: float = 30.0
    osd_op_timeout: float = 60.0
    options: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.client.startswith("client.") or self.client == "client.":
            # Not quoted: a key pasted in the wrong place must not reach a log.
            raise ConfigurationError(
                "Ceph client name must look like 'client.<id>' (e.g. client.failback)"
            )
        for name in ("mount_timeout", "mon_op_timeout", "osd_op_timeout"):
            if getattr(self, name) <= 0:
                raise ConfigurationError(f"{name} must be positive seconds")

    def librados_options(self) -> dict[str, str]:
        """The options given to ``rados.Rados(conf=...)``."""
        opts = {
            "client_mount_timeout": f"{self.mount_timeout:g}",
            "rados_mon_op_timeout": f"{self.mon_op_timeout:g}",
            "rados_osd_op_timeout": f"{self.osd_op_timeout:g}",
        }
        if self.keyring:
            opts["keyring"] = self.keyring
        opts.update(self.options)
        return opts


def _check_keyring(path: str, client: str, *, site: str) -> None:
    """Refuse a keyring that holds no key for ``client``, naming its entities (never its keys).

    librados reports such a keyring as a bare I/O error at connect time, which reads like an
    unreachable monitor. Binary keyrings are left to librados.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read Ceph keyring {path!r}: {exc.strerror or exc}", site=site
        ) from None
    if b"\0" in data:
        return
    text = data.decode(errors="replace")
    entities = [m.strip() for m in re.findall(r"^\s*\[([^\]\n]*)\]", text, re.MULTILINE)]
    if client in entities:
        return
    # Only names that look like Ceph entities are shown: a section header could hold anything.
    shown = sorted({e for e in entities if re.fullmatch(r"(client|mon|mgr|osd|mds)\.[\w.-]+", e)})
    held = f"it holds keys for {', '.join(shown)}" if shown else (
        "it is not a keyring: no [client.<id>] section")
    raise ConfigurationError(
        f"Ceph keyring {path!r} holds no key for {client} ({held})", site=site,
        hint=f"give the keyring of {client} (ceph auth get {client} -o FILE), or the client "
        "name that matches this keyring",
    )


class CephSite:
    """One site's Ceph cluster, connected through librados.

    Use it as a context manager, or call :meth:`connect` and :meth:`close`. Two sites in one
    process are two ``CephSite`` objects. The object is thread-safe: librados serialises what
    needs it, and the bindings release the GIL while they wait.

    Args:
        name: the site's name used in messages and reports (e.g. ``"site-a"``).
        config: how to reach the cluster.
    """

    def __init__(self, name: str, config: CephConfig) -> None:
        self.name = name
        self.config = config
        self._cluster: rados.Rados | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = "connected" if self._cluster is not None else "not connected"
        return (
            f"CephSite({self.name!r}, conffile={self.config.conffile!r}, "
            f"client={self.config.client!r}, {state})"
        )

    # -- connection ------------------------------------------------------------------------

    def connect(self) -> CephSite:
        """Connect to the cluster; bounded by ``config.mount_timeout``."""
        rados_mod, _ = import_bindings()
        with self._lock:
            if self._cluster is not None:
                return self
            cfg = self.config
            if cfg.conffile is not None and not os.path.isfile(cfg.conffile):
                raise ConfigurationError(
                    f"Ceph configuration file {cfg.conffile!r} does not exist", site=self.name
                )
            if cfg.keyring is not None and not os.path.isfile(cfg.keyring):
                raise ConfigurationError(
                    f"Ceph keyring {cfg.keyring!r} does not exist", site=self.name
                )
            if cfg.keyring is not None and not {"key", "keyfile"} & set(cfg.options):
                _check_keyring(cfg.keyring, cfg.client, site=self.name)
            try:
                cluster = rados_mod.Rados(
                    conffile=cfg.conffile or "",
                    name=cfg.client,
                    clustername=cfg.cluster,
                    conf=cfg.librados_options(),
                )
            except rados_mod.Error as exc:
                raise ConfigurationError(
                    f"cannot load Ceph configuration {cfg.conffile!r}: {exc}", site=self.name
                ) from exc
            try:
                cluster.connect()
            except rados_mod.Error as exc:
                cluster.shutdown()
                err = getattr(exc, "errno", None)
                if err in (errno_mod.EACCES, errno_mod.EPERM, -errno_mod.EACCES):
                    raise CephConnectionError(
                        f"authentication as {cfg.client} failed: {exc}",
                        site=self.name,
                        errno=errno_mod.EACCES,
                        hint="check the keyring and client name",
                    ) from exc
                raise CephConnectionError(
                    f"cannot connect as {cfg.client} within {cfg.mount_timeout:g}s: {exc}",
                    site=self.name,
                    errno=abs(err) if isinstance(err, int) else None,
                    hint="check that the monitors in the conf file are up and reachable",
                ) from exc
            self._cluster = cluster
            log.debug("connected to %s as %s", self.name, cfg.client)
            return self

    def close(self) -> None:
        """Disconnect (idempotent)."""
        with self._lock:
            if self._cluster is not None:
                self._cluster.shutdown()
                self._cluster = None

    def __enter__(self) -> CephSite:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fsid(self) -> str:
        """The cluster's fsid (from the monitor map: any authenticated client may read it)."""
        rados_mod, _ = import_bindings()
        try:
            return str(self.rados.get_fsid())
        except rados_mod.Error as exc:
            raise map_ceph_error(exc, "reading the cluster's fsid", site=self.name) from exc

    @property
    def rados(self) -> rados.Rados:
        """The connected ``rados.Rados`` handle (connects on first use)."""
        if self._cluster is None:
            self.connect()
        assert self._cluster is not None
        return self._cluster

    # -- pools -------------------------------------------------------------------------------

    @contextmanager
    def ioctx(self, pool: str) -> Iterator[Any]:
        """An I/O context on ``pool``; a missing pool is :class:`PoolNotFoundError`."""
        rados_mod, _ = import_bindings()
        try:
            ctx = self.rados.open_ioctx(pool)
        except rados_mod.ObjectNotFound as exc:
            raise PoolNotFoundError(
                "pool does not exist", site=self.name, pool=pool, errno=errno_mod.ENOENT
            ) from exc
        except rados_mod.Error as exc:
            raise map_ceph_error(exc, "opening the pool", site=self.name, pool=pool) from exc
        try:
            yield ctx
        finally:
            ctx.close()

    def pool(self, pool: str) -> MirrorPool:
        """The mirror adapter for ``pool`` on this site (checks that the pool exists)."""
        return self.mirror_pool(pool)

    def mirror_pool(self, pool: str, *, concurrency: int = 10) -> MirrorPool:
        """The mirror adapter for ``pool`` (the Ceph seam's
        :meth:`~ceph_failback.ceph.seams.CephBackend.mirror_pool`)."""
        return MirrorPool(self, pool, concurrency=concurrency)

    def pool_lock(self, pool: str, *, purpose: str = "failback") -> PoolLock:
        """The failback lock of ``pool`` on this site (a RADOS object lock)."""
        return PoolLock(self, pool, purpose=purpose)

    def journal_copy(self, pool: str, name: str) -> RadosJournalCopy:
        """The copy in ``pool`` of the journal file called ``name`` (a RADOS object beside
        the lock: :mod:`~ceph_failback.ceph.journal_copy`)."""
        return RadosJournalCopy(self, pool, name)

    def describe(self) -> str:
        """Where this site's cluster is configured, for messages."""
        return f"configuration file {self.config.conffile!r}"

    # -- commands ----------------------------------------------------------------------------

    def mon_command(self, cmd: Mapping[str, Any], inbuf: bytes = b"") -> Any:
        """Run a monitor command (JSON form) and return its parsed JSON output (or text)."""
        return self._command("mon", cmd, inbuf)

    def mgr_command(self, cmd: Mapping[str, Any], inbuf: bytes = b"") -> Any:
        """Run a manager command (JSON form) and return its parsed JSON output (or text)."""
        return self._command("mgr", cmd, inbuf)

    def _command(self, target: str, cmd: Mapping[str, Any], inbuf: bytes) -> Any:
        rados_mod, _ = import_bindings()
        body = dict(cmd)
        body.setdefault("format", "json")
        send = self.rados.mon_command if target == "mon" else self.rados.mgr_command
        timeout = int(self.config.mon_op_timeout)
        try:
            ret, out, errs = send(json.dumps(body), inbuf, timeout=timeout)
        except rados_mod.Error as exc:
            raise map_ceph_error(exc, f"{target} command {body['prefix']!r}", site=self.name) from exc
        if ret != 0:
            code = -ret if ret < 0 else ret
            fake = OSError(code, errs.strip() or os.strerror(code))
            raise map_ceph_error(fake, f"{target} command {body['prefix']!r}", site=self.name)
        if not out:
            return None
        try:
            return json.loads(out)
        except ValueError:
            return out.decode(errors="replace")
