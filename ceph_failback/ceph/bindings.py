"""The Ceph Python bindings (librados, librbd) and how their errors become the package's."""

from __future__ import annotations

import errno as errno_mod
from typing import Any

from ..errors import (
    CephConnectionError,
    CephError,
    CephNotInstalledError,
    CephOperationError,
    CephPermissionError,
    ImageNotFoundError,
    PoolNotFoundError,
)

__all__ = ["APT_HINT", "import_bindings", "map_ceph_error", "caps_hint"]

APT_HINT = "apt-get install -y python3-rados python3-rbd (Debian's packages, for /usr/bin/python3)"


def import_bindings() -> tuple[Any, Any]:
    """Import and return the ``rados`` and ``rbd`` modules, or explain how to install them."""
    try:
        import rados
        import rbd
    except ImportError as exc:
        raise CephNotInstalledError(
            f"the Ceph Python bindings are not importable ({exc})",
            hint=f"{APT_HINT}; then run with /usr/bin/python3 or a venv made with "
            "--system-site-packages",
        ) from exc
    return rados, rbd


def map_ceph_error(
    exc: BaseException,
    what: str,
    *,
    site: str | None = None,
    pool: str | None = None,
    image: str | None = None,
) -> CephError:
    """Turn a ``rados.Error``/``rbd.Error`` into the package's error, naming where it happened."""
    err = getattr(exc, "errno", None)
    if isinstance(err, int) and err < 0:
        err = -err
    text = f"{what} failed: {exc}"
    where: dict[str, Any] = {"site": site, "pool": pool, "image": image, "errno": err}
    if err in (errno_mod.EPERM, errno_mod.EACCES):
        return CephPermissionError(text, hint=caps_hint(pool), **where)
    if err == errno_mod.ENOENT:
        if image is not None:
            return ImageNotFoundError(text, **where)
        if pool is not None:
            return PoolNotFoundError(text, **where)
    if err == errno_mod.ETIMEDOUT and pool is not None:
        # An operation on a pool that timed out: the OSDs did not answer, or the client has no
        # osd caps at all (Ceph 18 and later then time out instead of refusing with EPERM).
        return CephConnectionError(text, hint="check that the site's OSDs are up and reachable; "
                                   "or " + caps_hint(pool), **where)
    if err in (errno_mod.ETIMEDOUT, errno_mod.ENOTCONN, errno_mod.ESHUTDOWN):
        return CephConnectionError(text, **where)
    return CephOperationError(text, **where)


def caps_hint(pool: str | None = None) -> str:
    """What a Ceph client needs for a failback of ``pool`` (docs/safety.rst, "The Ceph client")."""
    p = pool or "POOL"
    return (f"check the Ceph client's capabilities: a failback needs mon 'profile rbd', "
            f"osd 'profile rbd pool={p}', mgr 'profile rbd pool={p}, allow command \"service "
            f"status\"'")
