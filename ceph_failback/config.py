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

A start order (optional, :doc:`/recovery-plans`) is a top-level key, before the tables:
``order = [["db-1", "db-2"], ["app"], [17]]`` (groups of VM names or ids on site B, each resumed
after the one before it), ``wait_ready = true`` makes those groups wait for their guests'
``READY=YES`` (OneGate), and ``oneflow = false`` takes none from site A's OneFlow services.

Relative paths are relative to the configuration file's directory; ``~`` is expanded.
The file never holds a password: ``one_auth`` names a file holding ``user:password``, read with
the OpenNebula CLI's conventions (:mod:`ceph_failback.opennebula.config`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .failback.hooks import Hook
from .failback.sites import Site, Timeouts
from .failback.verify import Verify
from .siteconf import SITE_KEYS, Reader, SiteConfig, read_site, type_name

__all__ = ["SiteConfig", "FailbackConfig", "load_config", "SITE_KEYS", "TOP_KEYS"]

#: Top-level keys and tables.
TOP_KEYS = ("pool", "journal", "order", "oneflow", "wait_ready", "site", "timeouts", "hooks",
            "verify")

_VERIFY_KEYS = ("sample", "bandwidth_mb", "workers")

_HOOK_KEYS = ("when", "command", "name", "group", "vm", "timeout", "on_error")

_TIMEOUT_KEYS = tuple(f.name for f in dataclasses.fields(Timeouts))


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
        order: the explicit start order (groups of VM names or ids on B), if any.
        oneflow: take the start order from site A's OneFlow services.
        wait_ready: the explicit order's groups wait for their guests' ``READY=YES``.
        hooks: the ``[[hooks]]`` commands.
        verify: the ``[verify]`` table's verification, if any.
    """

    path: Path
    pool: str | tuple[str, ...]
    site_a: SiteConfig
    site_b: SiteConfig
    journal: Path | None = None
    timeouts: Timeouts = dataclasses.field(default_factory=Timeouts)
    order: tuple[tuple[int | str, ...], ...] | None = None
    oneflow: bool = True
    wait_ready: bool = False
    hooks: tuple[Hook, ...] = ()
    verify: Verify | None = None

    def sites(self) -> tuple[Site, Site]:
        """Site A and site B as :class:`~ceph_failback.failback.Site` objects."""
        return Site(*self.site_a.parts()), Site(*self.site_b.parts())


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
    r = Reader(path, overridden)

    r.table(raw, "", TOP_KEYS)
    pool = r.pools(raw)
    journal = r.string(raw, "", "journal", required=False)

    sites_raw = raw.get("site")
    if sites_raw is None:
        raise r.error("site", "missing: the file needs a [site.a] and a [site.b] table")
    if not isinstance(sites_raw, dict):
        raise r.error("site", f"must be a table ([site.a], [site.b]), not {type_name(sites_raw)}")
    r.table(sites_raw, "site", ("a", "b"))
    sites = {}
    for letter in ("a", "b"):
        table = sites_raw.get(letter)
        if table is None:
            raise r.error(f"site.{letter}", f"missing: add a [site.{letter}] table")
        if not isinstance(table, dict):
            raise r.error(f"site.{letter}", f"must be a table, not {type_name(table)}")
        sites[letter] = read_site(r, letter, table)
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

    order = _order(r, raw.get("order"))
    flags = {}
    for key, default in (("oneflow", True), ("wait_ready", False)):
        flags[key] = raw.get(key, default)
        if not isinstance(flags[key], bool):
            raise r.error(key, f"must be true or false, not {type_name(flags[key])}")

    timeouts = Timeouts()
    if "timeouts" in raw:
        t_raw = raw["timeouts"]
        if not isinstance(t_raw, dict):
            raise r.error("timeouts", f"must be a table, not {type_name(t_raw)}")
        r.table(t_raw, "timeouts", _TIMEOUT_KEYS)
        values = {k: r.seconds(t_raw, "timeouts", k) for k in t_raw}
        timeouts = Timeouts(**{k: v for k, v in values.items() if v is not None})

    return FailbackConfig(path=path, pool=pool, site_a=a, site_b=b,
                          journal=Path(r.path_value(journal)) if journal else None,
                          timeouts=timeouts, order=order, hooks=_hooks(r, raw.get("hooks")),
                          verify=_verify(r, raw.get("verify")), **flags)


def _verify(r: Reader, value: Any) -> Verify | None:
    """``[verify]``: compare both copies before each VM resumes; ``sample`` (chunks per image,
    default the whole image), ``bandwidth_mb`` (MB/s for all reads), ``workers``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise r.error("verify", f"must be a table ([verify]), not {type_name(value)}")
    r.table(value, "verify", _VERIFY_KEYS)
    numbers = {}
    for key in _VERIFY_KEYS:
        if key in value:
            v = value[key]
            if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0 or (
                    key != "bandwidth_mb" and not isinstance(v, int)):
                raise r.error(f"verify.{key}", f"must be a positive "
                              f"{'number' if key == 'bandwidth_mb' else 'whole number'}, not {v!r}")
            numbers[key] = v
    sample = numbers.get("sample")
    return Verify(sample=int(sample) if sample is not None else None, workers=int(numbers.get("workers", 4)),
                  bandwidth=numbers["bandwidth_mb"] * 1e6 if "bandwidth_mb" in numbers else None)


def _hooks(r: Reader, value: Any) -> tuple[Hook, ...]:
    """``[[hooks]]``: each a table with ``when`` and ``command`` (a string or a list of
    strings), and optionally ``name``, ``group`` or ``vm``, ``timeout``, ``on_error``."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise r.error("hooks", "must be tables: [[hooks]] with when = ... and command = ...")
    hooks = []
    for index, table in enumerate(value, 1):
        key = f"hooks[{index}]"
        r.table(table, key, _HOOK_KEYS)
        for required in ("when", "command"):
            if required not in table:
                raise r.error(f"{key}.{required}", "missing (required)")
        command = table["command"]
        if not (isinstance(command, str) or (isinstance(command, list) and all(
                isinstance(a, str) for a in command))):
            raise r.error(f"{key}.command", "must be a string or a list of strings, not "
                          f"{type_name(command)}")
        for text_key in ("name", "group", "when", "on_error"):
            if text_key in table and not isinstance(table[text_key], str):
                raise r.error(f"{key}.{text_key}", f"must be a string, not "
                              f"{type_name(table[text_key])}")
        vm = table.get("vm")
        if vm is not None and (isinstance(vm, bool) or not isinstance(vm, int) or vm < 0):
            raise r.error(f"{key}.vm", "must be a VM id on site B (a number)")
        timeout = r.seconds(table, key, "timeout")
        try:
            hooks.append(Hook(str(table["when"]), command, name=table.get("name"),
                              group=table.get("group"), vm=vm,
                              timeout=timeout if timeout is not None else 300.0,
                              on_error=str(table.get("on_error", "stop"))))
        except ConfigurationError as exc:
            raise r.error(key, exc.message) from None
    return tuple(hooks)


def _order(r: Reader, value: Any) -> tuple[tuple[int | str, ...], ...] | None:
    """``order``: a list of groups, each a non-empty list of VM names or ids (on site B)."""
    if value is None:
        return None
    shape = "a list of groups, each a list of VM names or ids: [[\"db\"], [\"app\", 17]]"
    if not isinstance(value, list):
        raise r.error("order", f"must be {shape}, not {type_name(value)}")
    groups = []
    for index, group in enumerate(value, 1):
        if not isinstance(group, list) or not group:
            raise r.error("order", f"group {index} must be a non-empty list, not "
                          f"{type_name(group)}: the order is {shape}")
        for entry in group:
            if isinstance(entry, bool) or not isinstance(entry, int | str) or entry == "" or (
                    isinstance(entry, int) and entry < 0):
                raise r.error("order", f"group {index}: {entry!r} is neither a VM name nor a VM "
                              "id (ids are site B's, not negative)")
        groups.append(tuple(group))
    return tuple(groups)


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


