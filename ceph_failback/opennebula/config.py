"""Where a site's endpoint, credentials, timeout and TLS settings come from, with the precedence
of OpenNebula's own clients (the Ruby OCA that ``onevm`` uses: src/oca/ruby/opennebula/lib/
client.rb and xml_client.rb, release-7.4.0):

* endpoint: the argument, else ``$ONE_XMLRPC``, else the first line of ``~/.one/one_endpoint``,
  else of ``/var/lib/one/.one/one_endpoint``. There is deliberately no ``localhost`` default
  (the OCA's last resort): with two sites, a silent default could make both names point at the
  same oned.
* credentials (``user:password``, or ``user:token`` for a login token): the argument, else the
  file named by ``$ONE_AUTH`` if it is a file, else ``~/.one/one_auth``, else
  ``/var/lib/one/.one/one_auth`` (oneadmin's).
* timeout: the argument, else ``$ONE_XMLRPC_TIMEOUT`` (seconds), else 30 s.
* TLS: ``verify`` as given, else off when ``$ONE_DISABLE_SSL_VERIFY`` is set (warned about once
  per endpoint), else the system's CAs plus every file in ``$ONE_CERT_DIR`` when it is set.

The password never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import atexit
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = [
    "Credentials",
    "resolve_endpoint",
    "resolve_credentials",
    "find_credentials",
    "resolve_timeout",
    "resolve_verify",
    "DEFAULT_AUTH_FILE",
    "AUTH_FILES",
    "ENDPOINT_FILES",
    "DEFAULT_TIMEOUT",
]

log = logging.getLogger(__name__)

#: Where the OpenNebula CLI looks for credentials when ``$ONE_AUTH`` is not set.
DEFAULT_AUTH_FILE = Path("~/.one/one_auth")

#: Where the OpenNebula clients look for credentials when ``$ONE_AUTH`` names no file, in order.
AUTH_FILES = (DEFAULT_AUTH_FILE, Path("/var/lib/one/.one/one_auth"))

#: Where they look for the endpoint when ``$ONE_XMLRPC`` is not set, in order.
ENDPOINT_FILES = (Path("~/.one/one_endpoint"), Path("/var/lib/one/.one/one_endpoint"))

#: Seconds per XML-RPC call when neither the argument nor ``$ONE_XMLRPC_TIMEOUT`` says.
DEFAULT_TIMEOUT = 30.0

_warned: set[str] = set()


def _warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning once per process for ``key`` (a setting does not change between calls)."""
    if key not in _warned:
        _warned.add(key)
        log.warning(message, *args)


@dataclass(frozen=True)
class Credentials:
    """An OpenNebula user and password (or login token). ``repr`` hides the password."""

    user: str
    password: str = field(repr=False)

    @classmethod
    def parse(cls, text: str, *, origin: str, site: str | None = None) -> Credentials:
        """Parse ``user:password`` (the password may itself contain ``:``).

        Args:
            text: the credentials.
            origin: where they came from, for the error message ("argument", a file path).
            site: the site name, for the error message.

        Raises:
            ConfigurationError: not of the form ``user:password``; the message never quotes it.
        """
        user, sep, password = text.strip().partition(":")
        if not sep or not user or not password:
            raise ConfigurationError(
                f"credentials from {origin} are not of the form user:password",
                site=site,
            )
        return cls(user, password)

    @property
    def session(self) -> str:
        """The ``user:password`` string oned expects as every call's first parameter."""
        return f"{self.user}:{self.password}"

    def __str__(self) -> str:
        return f"{self.user}:***"


def resolve_endpoint(endpoint: str | None, *, site: str | None = None) -> str:
    """The XML-RPC endpoint: ``endpoint``, else ``$ONE_XMLRPC``, else the first line of the first
    of :data:`ENDPOINT_FILES` that exists; checked to be http(s).

    pyone picks its gRPC client for anything that does not start with ``http://`` or
    ``https://``, so such an endpoint is refused here rather than misread.

    Raises:
        ConfigurationError: no endpoint, a non-http(s) one, or one with ``user:password@`` in it.
    """
    origin = "argument"
    if endpoint is None and os.environ.get("ONE_XMLRPC"):
        endpoint, origin = os.environ["ONE_XMLRPC"], "ONE_XMLRPC"
    if endpoint is None:
        for candidate in ENDPOINT_FILES:
            path = candidate.expanduser()
            if _is_file(path):
                endpoint, origin = _first_line(path, site=site), str(path)
                break
    if not endpoint or not endpoint.strip():
        raise ConfigurationError(
            "no OpenNebula endpoint given",
            site=site,
            hint="pass the endpoint (http(s)://host:2633/RPC2), set ONE_XMLRPC, or write it in "
            "~/.one/one_endpoint",
        )
    endpoint = endpoint.strip()
    parts = urlsplit(endpoint)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        shown = _without_userinfo(endpoint)
        # "user:password" put here by mistake must not be echoed: quote only what has a
        # scheme ("ftp://...") or no colon at all ("oned-host").
        quoted = f" {shown!r}" if "://" in shown or ":" not in shown else ""
        raise ConfigurationError(
            f"endpoint{quoted} (from {origin}) is not an http:// or https:// URL",
            site=site,
            hint="write the full XML-RPC URL, e.g. https://oned.example.org:2633/RPC2",
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"endpoint {_without_userinfo(endpoint)!r} (from {origin}) carries credentials",
            site=site,
            hint="put user:password in ONE_AUTH or pass credentials=, not in the URL",
        )
    return endpoint


def _without_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def _is_file(path: Path) -> bool:
    """A readable-looking file; ``False`` for one behind a directory this user may not enter
    (``/var/lib/one`` is oneadmin's, mode 750): such a candidate is passed over like a missing
    one, as the OpenNebula clients do."""
    try:
        return path.is_file()
    except OSError:
        return False


def _first_line(path: Path, *, site: str | None) -> str:
    """The first non-empty line of a settings file (never quoted in an error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}", site=site) from None
    return next((ln.strip() for ln in text.splitlines() if ln.strip()), "")


def find_credentials(
    credentials: str | Credentials | None, *, site: str | None = None
) -> tuple[Credentials, str]:
    """The credentials and where they came from (``"the credentials argument"`` or a file):
    ``credentials``, else the file named by ``$ONE_AUTH`` if it is a file, else the first of
    :data:`AUTH_FILES` that exists, as the OpenNebula clients look. The file's first non-empty
    line holds ``user:password``.

    Raises:
        ConfigurationError: none found, unreadable, or malformed (the message names the files,
            never their content).
    """
    argument = "the credentials argument"
    if isinstance(credentials, Credentials):
        return credentials, argument
    if credentials is not None:
        return Credentials.parse(credentials, origin=argument, site=site), argument
    candidates: list[tuple[Path, str]] = []
    missing: list[str] = []
    env = os.environ.get("ONE_AUTH")
    if env:
        path = Path(env).expanduser()
        if _is_file(path):
            candidates.append((path, f"{path} (from ONE_AUTH)"))
        else:
            missing.append(f"{path} (from ONE_AUTH)")
    candidates += [(p.expanduser(), str(p.expanduser())) for p in AUTH_FILES]
    for path, origin in candidates:
        if not _is_file(path):
            missing.append(origin)
            continue
        if env and not origin.endswith("(from ONE_AUTH)"):
            _warn_once(f"one_auth:{env}", "ONE_AUTH names %s, which is not a file: using %s "
                       "instead, as the OpenNebula CLI does", env, path)
        return Credentials.parse(_first_line(path, site=site), origin=origin, site=site), origin
    raise ConfigurationError(
        f"no credentials: {', '.join(missing)} does not exist" if len(missing) == 1 else
        f"no credentials: none of {', '.join(missing)} exists",
        site=site,
        hint="pass credentials='user:password', set ONE_AUTH to a file holding them, "
        "or create ~/.one/one_auth",
    )


def resolve_credentials(
    credentials: str | Credentials | None, *, site: str | None = None
) -> Credentials:
    """The credentials, as :func:`find_credentials` finds them."""
    return find_credentials(credentials, site=site)[0]


def resolve_timeout(timeout: float | None, *, site: str | None = None) -> float:
    """Seconds per XML-RPC call: ``timeout``, else ``$ONE_XMLRPC_TIMEOUT``, else
    :data:`DEFAULT_TIMEOUT`.

    Raises:
        ConfigurationError: not a positive number (the variable's value is quoted: it is no
            secret).
    """
    origin = "timeout"
    if timeout is None and os.environ.get("ONE_XMLRPC_TIMEOUT", "").strip():
        raw = os.environ["ONE_XMLRPC_TIMEOUT"].strip()
        origin = "ONE_XMLRPC_TIMEOUT"
        try:
            timeout = float(raw)
        except ValueError:
            raise ConfigurationError(f"ONE_XMLRPC_TIMEOUT={raw!r} is not a number of seconds",
                                     site=site) from None
    if timeout is None:
        return DEFAULT_TIMEOUT
    if timeout <= 0:
        raise ConfigurationError(f"{origin} must be positive, not {timeout!r}", site=site)
    return float(timeout)


def resolve_verify(verify: bool | str | None, endpoint: str, *,
                   site: str | None = None) -> bool | str:
    """TLS verification for ``endpoint``: ``verify`` when given (True, False, a CA bundle's
    path); else False when ``$ONE_DISABLE_SSL_VERIFY`` is set to anything; else, when
    ``$ONE_CERT_DIR`` is set, a bundle of the system's CAs and every file in that directory (as
    the OCA adds each file to its default store); else True. Turning verification off is logged
    once per endpoint, not once per call.

    Raises:
        ConfigurationError: ``$ONE_CERT_DIR`` is not a readable directory.
    """
    if verify is None:
        if os.environ.get("ONE_DISABLE_SSL_VERIFY"):
            verify = False
        elif os.environ.get("ONE_CERT_DIR"):
            verify = _bundle_with(Path(os.environ["ONE_CERT_DIR"]).expanduser(), site=site)
        else:
            verify = True
    if verify is False and urlsplit(endpoint).scheme.lower() == "https":
        _warn_once(f"verify:{endpoint}", "%s: TLS certificate verification is turned OFF for %s: "
                   "anyone on the path can impersonate oned and read the credentials",
                   site or "site", endpoint)
    return verify


_bundles: dict[Path, str] = {}


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _bundle_with(directory: Path, *, site: str | None) -> str:
    """A CA bundle file: the system's default CAs plus every file in ``directory`` (made once
    per directory and process)."""
    if directory in _bundles:
        return _bundles[directory]
    if not directory.is_dir():
        raise ConfigurationError(f"ONE_CERT_DIR={str(directory)!r} is not a directory",
                                 site=site)
    parts = []
    default = ssl.get_default_verify_paths().cafile
    for path in ([Path(default)] if default else []) + sorted(directory.iterdir()):
        if path.is_file():
            try:
                parts.append(path.read_text(encoding="ascii", errors="ignore").strip())
            except OSError as exc:
                raise ConfigurationError(f"cannot read {path} (ONE_CERT_DIR): "
                                         f"{exc.strerror or exc}", site=site) from None
    handle, name = tempfile.mkstemp(prefix="ceph-failback-ca-", suffix=".pem")
    atexit.register(_remove, name)
    with os.fdopen(handle, "w", encoding="ascii") as out:
        out.write("\n".join(parts) + "\n")
    _bundles[directory] = name
    return name
