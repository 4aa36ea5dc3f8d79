"""One site's connection settings, validated: the ``[site.a]``/``[site.b]`` tables of the
configuration file (:mod:`ceph_failback.config`) and the arguments of
:meth:`Site.connect <ceph_failback.failback.Site.connect>` go through the same checks, with
messages that name where the value came from, the key and the site, never a secret."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ceph.connection import CephConfig, CephSite
from .errors import ConfigurationError
from .opennebula.config import Credentials, find_credentials, resolve_endpoint
from .opennebula.site import OpenNebulaSite

__all__ = ["SITE_KEYS", "SiteConfig", "Reader", "read_site", "site_arguments", "type_name"]

#: Keys of a ``[site.a]`` / ``[site.b]`` table, and whether each is required.
SITE_KEYS: dict[str, bool] = {
    "name": True,
    "ceph_conf": True,
    "ceph_client": False,
    "ceph_keyring": False,
    "one_endpoint": False,
    "one_auth": False,
    "one_verify": False,
    "one_timeout": False,
}


@dataclass(frozen=True)
class SiteConfig:
    """One site as the configuration file describes it, validated and resolved.

    Attributes:
        letter: ``a`` (home) or ``b`` (where the VMs run now); empty for a site given
            directly (:meth:`~ceph_failback.failback.Site.connect`).
        name: the site's name (used in messages, the journal and reports).
        ceph: how to reach the site's Ceph cluster.
        one_endpoint: oned's XML-RPC URL (from the file or ``$ONE_XMLRPC``).
        credentials: the OpenNebula user and password; its repr hides the password.
        credentials_origin: where they were read (a file path, for messages).
        one_verify: https certificate verification: a bool or a CA bundle path; ``None``: as
            ``$ONE_DISABLE_SSL_VERIFY``/``$ONE_CERT_DIR`` say (see :class:`OpenNebulaSite`).
        one_timeout: seconds each XML-RPC call may take; ``None``: ``$ONE_XMLRPC_TIMEOUT``,
            else 30.
    """

    letter: str
    name: str
    ceph: CephConfig
    one_endpoint: str
    credentials: Credentials
    credentials_origin: str
    one_verify: bool | str | None = None
    one_timeout: float | None = None

    def parts(self) -> tuple[str, CephSite, OpenNebulaSite]:
        """The site's name, Ceph cluster and OpenNebula endpoint, as
        :class:`~ceph_failback.failback.Site` takes them (nothing is contacted yet)."""
        ceph = CephSite(self.name, self.ceph)
        one = OpenNebulaSite(self.name, self.one_endpoint, credentials=self.credentials,
                             verify=self.one_verify, timeout=self.one_timeout)
        return self.name, ceph, one


class Reader:
    """Validation helpers that name the origin (a file, a call), the key and the site in every
    message.

    Args:
        path: the configuration file; relative paths in it are relative to its directory.
        overridden: keys given on the command line instead (their errors say so).
        origin: what messages name instead of ``path`` (``Site.connect('site-a')``).
    """

    def __init__(self, path: Path, overridden: set[str], *, origin: str | None = None) -> None:
        self.path = path
        self.overridden = overridden
        self.origin = origin or str(path)

    def error(self, key: str, message: str, *, site: str | None = None,
              hint: str | None = None) -> ConfigurationError:
        origin = "the command line" if key in self.overridden else self.origin
        return ConfigurationError(f"{origin}: {key}: {message}", site=site, hint=hint)

    def table(self, raw: Mapping[str, Any], key: str, allowed: tuple[str, ...] | dict[str, bool],
              *, site: str | None = None) -> None:
        unknown = sorted(set(raw) - set(allowed))
        if unknown:
            # Never quote the values: a misplaced key may hold a secret.
            raise self.error(key or "top level", f"unknown key(s) {unknown}; known keys: "
                             f"{sorted(allowed)}", site=site)

    def string(self, raw: Mapping[str, Any], table: str, key: str, *, required: bool,
               site: str | None = None) -> str | None:
        full = f"{table}.{key}" if table else key
        if key not in raw:
            if required:
                raise self.error(full, "missing (required)", site=site)
            return None
        value = raw[key]
        if not isinstance(value, str):
            raise self.error(full, f"must be a string, not {type_name(value)}", site=site)
        if not value.strip():
            raise self.error(full, "must not be empty", site=site)
        return value.strip()

    def pools(self, raw: Mapping[str, Any]) -> str | tuple[str, ...]:
        """``pool``: one pool's name, or a list of distinct names."""
        value = raw.get("pool")
        if not isinstance(value, list):
            pool = self.string(raw, "", "pool", required=True)
            assert pool is not None
            return pool
        names = [self.string({"pool": v}, "", "pool", required=True) for v in value]
        if not names or len(set(names)) != len(names):
            raise self.error("pool", "must list one or more distinct pools")
        if len(names) == 1:
            assert names[0] is not None
            return names[0]
        return tuple(n for n in names if n is not None)

    def seconds(self, raw: Mapping[str, Any], table: str, key: str, *,
                site: str | None = None) -> float | None:
        full = f"{table}.{key}" if table else key
        if key not in raw:
            return None
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(full, f"must be a number of seconds, not {type_name(value)}",
                             site=site)
        if value <= 0:
            raise self.error(full, f"must be positive seconds, not {value}", site=site)
        return float(value)

    def path_value(self, value: str) -> str:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (self.path.parent / p))


_CEPH_KEY = re.compile(r"AQ[A-Za-z0-9+/]{36}==")


def path_shown(path: str) -> str:
    """A path for a message, unless a Ceph key was pasted in its place."""
    return "the path given (it holds what looks like a Ceph key)" if _CEPH_KEY.search(path) else path


def type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def read_site(r: Reader, letter: str, raw: Mapping[str, Any]) -> SiteConfig:
    """One site's table (``[site.a]``), or the arguments of :meth:`Site.connect
    <ceph_failback.failback.Site.connect>` (``letter`` empty: keys are named bare), validated
    and resolved."""
    key = f"site.{letter}" if letter else ""
    name = r.string(raw, key, "name", required=True)
    assert name is not None
    r.table(raw, key, SITE_KEYS, site=name)
    conf = r.string(raw, key, "ceph_conf", required=True, site=name)
    assert conf is not None
    client = r.string(raw, key, "ceph_client", required=False, site=name) or "client.admin"
    if not client.startswith("client.") or client == "client.":
        raise r.error(_dotted(key, "ceph_client"), "must look like 'client.<id>' (e.g. client.failback)",
                      site=name)
    keyring = r.string(raw, key, "ceph_keyring", required=False, site=name)
    conffile = r.path_value(conf)
    if not os.path.isfile(conffile):
        raise r.error(_dotted(key, "ceph_conf"), f"{path_shown(conffile)} does not exist (or is not a "
                      "file)", site=name)
    if keyring and not os.path.isfile(r.path_value(keyring)):
        raise r.error(_dotted(key, "ceph_keyring"), f"{path_shown(r.path_value(keyring))} does not "
                      "exist (or is not a file)", site=name,
                      hint="ceph_keyring is the path of the client's keyring file, never the key")
    ceph = CephConfig(conffile=conffile, client=client,
                      keyring=r.path_value(keyring) if keyring else None)

    endpoint_raw = r.string(raw, key, "one_endpoint", required=False, site=name)
    try:
        endpoint = resolve_endpoint(endpoint_raw, site=name)
    except ConfigurationError as exc:
        where = _dotted(key, "one_endpoint") if endpoint_raw else _dotted(key, "one_endpoint (not set)")
        raise r.error(where, exc.message, site=name, hint=exc.hint) from None

    verify: bool | str | None = None
    if "one_verify" in raw:
        v = raw["one_verify"]
        if isinstance(v, bool):
            verify = v
        elif isinstance(v, str) and v.strip():
            verify = r.path_value(v.strip())
            if not os.path.isfile(verify):
                raise r.error(_dotted(key, "one_verify"), f"CA bundle {verify} does not exist", site=name)
        else:
            raise r.error(_dotted(key, "one_verify"), f"must be true, false or the path of a CA bundle, "
                          f"not {type_name(v)}", site=name)
    timeout = r.seconds(raw, key, "one_timeout", site=name)

    auth = r.string(raw, key, "one_auth", required=False, site=name)
    credentials, origin = _credentials(r, key, name, auth)
    return SiteConfig(letter=letter, name=name, ceph=ceph, one_endpoint=endpoint,
                      credentials=credentials, credentials_origin=origin, one_verify=verify,
                      one_timeout=timeout)


def _credentials(r: Reader, key: str, site: str, auth: str | None) -> tuple[Credentials, str]:
    """The site's credentials: the ``one_auth`` file, else as the OpenNebula CLI looks for them
    (``$ONE_AUTH``, ``~/.one/one_auth``, ``/var/lib/one/.one/one_auth``)."""
    if auth is None:
        try:
            return find_credentials(None, site=site)
        except ConfigurationError as exc:
            raise r.error(_dotted(key, "one_auth (not set)"), exc.message, site=site,
                          hint=exc.hint) from None
    path = Path(r.path_value(auth))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        # Someone may have written the credentials themselves here: never echo them.
        shown = "the file named there" if ":" in auth else str(path)
        raise r.error(_dotted(key, "one_auth"), f"cannot read {shown}: {exc.strerror or exc}", site=site,
                      hint="one_auth is the path of a file holding user:password (the ONE_AUTH "
                      "convention), never the credentials themselves") from None
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    try:
        return Credentials.parse(line, origin=str(path), site=site), str(path)
    except ConfigurationError as exc:
        raise r.error(_dotted(key, "one_auth"), exc.message, site=site) from None


def _dotted(table: str, key: str) -> str:
    return f"{table}.{key}" if table else key


def site_arguments(name: str, *, ceph_conf: str | os.PathLike[str],
                   ceph_client: str = "client.admin",
                   ceph_keyring: str | os.PathLike[str] | None = None,
                   one_endpoint: str | None = None, one_auth: str | os.PathLike[str] | None = None,
                   one_verify: bool | str | os.PathLike[str] | None = None,
                   one_timeout: float | None = None) -> SiteConfig:
    """One site from arguments (the keys of a ``[site.a]`` table), validated as the file's are;
    relative paths are relative to the working directory. See
    :meth:`Site.connect <ceph_failback.failback.Site.connect>`."""
    raw: dict[str, Any] = {"name": name, "ceph_conf": os.fspath(ceph_conf),
                           "ceph_client": ceph_client}
    for key, value in (("ceph_keyring", ceph_keyring), ("one_endpoint", one_endpoint),
                       ("one_auth", one_auth), ("one_timeout", one_timeout)):
        if value is not None:
            raw[key] = os.fspath(value) if isinstance(value, os.PathLike) else value
    if one_verify is not None:
        raw["one_verify"] = os.fspath(one_verify) if isinstance(one_verify, os.PathLike) \
            else one_verify
    shown = name if isinstance(name, str) else "?"
    r = Reader(Path.cwd() / "arguments", set(), origin=f"Site.connect({shown!r})")
    if not isinstance(name, str) or not name.strip():
        raise r.error("name", "must be a non-empty string")
    return read_site(r, "", raw)
