"""The failback configuration file: the two sites and the pool, in TOML.

.. code-block:: toml

   pool = "one"                                   # several: pool = ["one", "one-ssd"]
   journal = "/var/lib/ceph-failback/one.jsonl"   # optional

   [site.a]                                       # the home site (VMs come back here)
   name = "site-a"
   ceph_conf = "/etc/ceph/site-a.conf"
   ceph_client = "client.failback"                # optional, default client.admin
   ceph_keyring = "/etc/ceph/site-a.client.failback.keyring"   # optional
   one_endpoint = "https://one-a.example:2633/RPC2"            # optional: $ONE_XMLRPC, ~/.one/one_endpoint
   one_auth = "/root/.one/site-a.auth"            # optional: $ONE_AUTH, ~/.one/one_auth
   one_verify = true                              # optional: see docs/configuration.rst
   one_timeout = 30                               # optional (default: $ONE_XMLRPC_TIMEOUT, else 30)

   [site.b]                                       # the site the VMs run on now
   name = "site-b"
   ceph_conf = "/etc/ceph/site-b.conf"

   [timeouts]                                     # optional: see failback.Timeouts
   resync = 7200

Relative paths are relative to the configuration file's directory; ``~`` is expanded.
The file never holds a password: ``one_auth`` names a file holding ``user:password``, read with
the OpenNebula CLI's conventions (:mod:`ceph_failback.opennebula.config`).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ceph.connection import CephConfig, CephSite
from .errors import ConfigurationError
from .failback.sites import Site, Timeouts
from .opennebula.config import Credentials, find_credentials, resolve_endpoint
from .opennebula.site import OpenNebulaSite

__all__ = ["SiteConfig", "FailbackConfig", "load_config", "SITE_KEYS", "TOP_KEYS"]

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

#: Top-level keys and tables.
TOP_KEYS = ("pool", "journal", "site", "timeouts")

_TIMEOUT_KEYS = tuple(f.name for f in dataclasses.fields(Timeouts))


@dataclass(frozen=True)
class SiteConfig:
    """One site as the configuration file describes it, validated and resolved.

    Attributes:
        letter: ``a`` (home) or ``b`` (where the VMs run now).
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

    def build(self) -> Site:
        """A :class:`~ceph_failback.failback.Site` for this site (connects lazily)."""
        ceph = CephSite(self.name, self.ceph)
        one = OpenNebulaSite(self.name, self.one_endpoint, credentials=self.credentials,
                             verify=self.one_verify, timeout=self.one_timeout)
        return Site(self.name, ceph, one)


@dataclass(frozen=True)
class FailbackConfig:
    """A loaded failback configuration.

    Attributes:
        path: the file it was read from.
        pool: the mirrored RBD pool, or several (a tuple) for VMs with disks in several.
        site_a: the home site.
        site_b: the site the VMs run on now.
        journal: the journal file, if the file (or an override) names one.
        timeouts: wait limits.
    """

    path: Path
    pool: str | tuple[str, ...]
    site_a: SiteConfig
    site_b: SiteConfig
    journal: Path | None = None
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)

    def sites(self) -> tuple[Site, Site]:
        """Site A and site B as :class:`~ceph_failback.failback.Site` objects."""
        return self.site_a.build(), self.site_b.build()


class _Reader:
    """Validation helpers that name the file, the key and the site in every message."""

    def __init__(self, path: Path, overridden: set[str]) -> None:
        self.path = path
        self.overridden = overridden

    def error(self, key: str, message: str, *, site: str | None = None,
              hint: str | None = None) -> ConfigurationError:
        origin = "the command line" if key in self.overridden else str(self.path)
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
            raise self.error(full, f"must be a string, not {_type_name(value)}", site=site)
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
            raise self.error(full, f"must be a number of seconds, not {_type_name(value)}",
                             site=site)
        if value <= 0:
            raise self.error(full, f"must be positive seconds, not {value}", site=site)
        return float(value)

    def path_value(self, value: str) -> str:
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (self.path.parent / p))


_CEPH_KEY = re.compile(r"AQ[A-Za-z0-9+/]{36}==")


def _path_shown(path: str) -> str:
    """A path for a message, unless a Ceph key was pasted in its place."""
    return "the path given (it holds what looks like a Ceph key)" if _CEPH_KEY.search(path) else path


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def load_config(path: str | os.PathLike[str],
                overrides: Mapping[str, Any] | None = None) -> FailbackConfig:
    """Read and validate a failback configuration file.

    Args:
        path: the TOML file.
        overrides: values that replace the file's, by dotted key (``pool``, ``journal``,
            ``site.a.one_endpoint``, ``timeouts.resync``...); ``None`` values are ignored.
            Errors in them name the command line instead of the file.

    Returns:
        The configuration. Nothing is contacted; endpoints and credentials are resolved and
        checked, and connections open on first use (see :meth:`FailbackConfig.sites`).

    Raises:
        ConfigurationError: the file is missing or not TOML, a key is unknown, missing or of
            the wrong type, the two sites are the same, or credentials cannot be read. The
            message names the file, the key and the site, never a secret.
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: configuration file not found",
                                 hint="pass --config with the path of the TOML file") from None
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read the configuration file: "
                                 f"{exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: the configuration file is not UTF-8 text") from None
    try:
        raw: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path}: not valid TOML: {exc}") from None
    overridden = _apply_overrides(raw, overrides or {})
    r = _Reader(path, overridden)

    r.table(raw, "", TOP_KEYS)
    pool = r.pools(raw)
    journal = r.string(raw, "", "journal", required=False)

    sites_raw = raw.get("site")
    if sites_raw is None:
        raise r.error("site", "missing: the file needs a [site.a] and a [site.b] table")
    if not isinstance(sites_raw, dict):
        raise r.error("site", f"must be a table ([site.a], [site.b]), not {_type_name(sites_raw)}")
    r.table(sites_raw, "site", ("a", "b"))
    sites = {}
    for letter in ("a", "b"):
        table = sites_raw.get(letter)
        if table is None:
            raise r.error(f"site.{letter}", f"missing: add a [site.{letter}] table")
        if not isinstance(table, dict):
            raise r.error(f"site.{letter}", f"must be a table, not {_type_name(table)}")
        sites[letter] = _site(r, letter, table)
    a, b = sites["a"], sites["b"]
    if a.name == b.name:
        raise r.error("site.b.name", f"both sites are named {a.name!r}: they need different names")
    if a.one_endpoint == b.one_endpoint:
        raise r.error("site.b.one_endpoint", f"both sites resolve to the same OpenNebula endpoint "
                      f"{a.one_endpoint!r}", site=b.name,
                      hint="give each site its own one_endpoint ($ONE_XMLRPC can serve one site "
                      "at most)")
    if a.ceph.conffile == b.ceph.conffile:
        raise r.error("site.b.ceph_conf", "both sites use the same Ceph configuration file",
                      site=b.name)

    timeouts = Timeouts()
    if "timeouts" in raw:
        t_raw = raw["timeouts"]
        if not isinstance(t_raw, dict):
            raise r.error("timeouts", f"must be a table, not {_type_name(t_raw)}")
        r.table(t_raw, "timeouts", _TIMEOUT_KEYS)
        values = {k: r.seconds(t_raw, "timeouts", k) for k in t_raw}
        timeouts = Timeouts(**{k: v for k, v in values.items() if v is not None})

    return FailbackConfig(path=path, pool=pool, site_a=a, site_b=b,
                          journal=Path(r.path_value(journal)) if journal else None,
                          timeouts=timeouts)


def _apply_overrides(raw: dict[str, Any], overrides: Mapping[str, Any]) -> set[str]:
    done = set()
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # the file has a non-table there: validation reports it
            node = child
        else:
            node[leaf] = value
            done.add(dotted)
    return done


def _site(r: _Reader, letter: str, raw: Mapping[str, Any]) -> SiteConfig:
    key = f"site.{letter}"
    name = r.string(raw, key, "name", required=True)
    assert name is not None
    r.table(raw, key, SITE_KEYS, site=name)
    conf = r.string(raw, key, "ceph_conf", required=True, site=name)
    assert conf is not None
    client = r.string(raw, key, "ceph_client", required=False, site=name) or "client.admin"
    if not client.startswith("client.") or client == "client.":
        raise r.error(f"{key}.ceph_client", "must look like 'client.<id>' (e.g. client.failback)",
                      site=name)
    keyring = r.string(raw, key, "ceph_keyring", required=False, site=name)
    conffile = r.path_value(conf)
    if not os.path.isfile(conffile):
        raise r.error(f"{key}.ceph_conf", f"{_path_shown(conffile)} does not exist (or is not a "
                      "file)", site=name)
    if keyring and not os.path.isfile(r.path_value(keyring)):
        raise r.error(f"{key}.ceph_keyring", f"{_path_shown(r.path_value(keyring))} does not "
                      "exist (or is not a file)", site=name,
                      hint="ceph_keyring is the path of the client's keyring file, never the key")
    ceph = CephConfig(conffile=conffile, client=client,
                      keyring=r.path_value(keyring) if keyring else None)

    endpoint_raw = r.string(raw, key, "one_endpoint", required=False, site=name)
    try:
        endpoint = resolve_endpoint(endpoint_raw, site=name)
    except ConfigurationError as exc:
        where = f"{key}.one_endpoint" if endpoint_raw else f"{key}.one_endpoint (not set)"
        raise r.error(where, exc.message, site=name, hint=exc.hint) from None

    verify: bool | str | None = None
    if "one_verify" in raw:
        v = raw["one_verify"]
        if isinstance(v, bool):
            verify = v
        elif isinstance(v, str) and v.strip():
            verify = r.path_value(v.strip())
            if not os.path.isfile(verify):
                raise r.error(f"{key}.one_verify", f"CA bundle {verify} does not exist", site=name)
        else:
            raise r.error(f"{key}.one_verify", f"must be true, false or the path of a CA bundle, "
                          f"not {_type_name(v)}", site=name)
    timeout = r.seconds(raw, key, "one_timeout", site=name)

    auth = r.string(raw, key, "one_auth", required=False, site=name)
    credentials, origin = _credentials(r, key, name, auth)
    return SiteConfig(letter=letter, name=name, ceph=ceph, one_endpoint=endpoint,
                      credentials=credentials, credentials_origin=origin, one_verify=verify,
                      one_timeout=timeout)


def _credentials(r: _Reader, key: str, site: str, auth: str | None) -> tuple[Credentials, str]:
    """The site's credentials: the ``one_auth`` file, else as the OpenNebula CLI looks for them
    (``$ONE_AUTH``, ``~/.one/one_auth``, ``/var/lib/one/.one/one_auth``)."""
    if auth is None:
        try:
            return find_credentials(None, site=site)
        except ConfigurationError as exc:
            raise r.error(f"{key}.one_auth (not set)", exc.message, site=site,
                          hint=exc.hint) from None
    path = Path(r.path_value(auth))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        # Someone may have written the credentials themselves here: never echo them.
        shown = "the file named there" if ":" in auth else str(path)
        raise r.error(f"{key}.one_auth", f"cannot read {shown}: {exc.strerror or exc}", site=site,
                      hint="one_auth is the path of a file holding user:password (the ONE_AUTH "
                      "convention), never the credentials themselves") from None
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    try:
        return Credentials.parse(line, origin=str(path), site=site), str(path)
    except ConfigurationError as exc:
        raise r.error(f"{key}.one_auth", exc.message, site=site) from None
