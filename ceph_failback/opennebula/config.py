"""Where a site's endpoint and credentials come from, following the ``onevm`` CLI conventions.

* endpoint: the argument, else ``$ONE_XMLRPC``. There is deliberately no ``localhost`` default:
  with two sites, a silent default could make both names point at the same oned.
* credentials (``user:password``): the argument, else the file named by ``$ONE_AUTH``, else
  ``~/.one/one_auth``.

The password never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError

__all__ = ["Credentials", "resolve_endpoint", "resolve_credentials", "DEFAULT_AUTH_FILE"]

#: Where the OpenNebula CLI looks for credentials when ``$ONE_AUTH`` is not set.
DEFAULT_AUTH_FILE = Path("~/.one/one_auth")


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
    """The XML-RPC endpoint: ``endpoint``, else ``$ONE_XMLRPC``; checked to be http(s).

    pyone picks its gRPC client for anything that does not start with ``http://`` or
    ``https://``, so such an endpoint is refused here rather than misread.

    Raises:
        ConfigurationError: no endpoint, a non-http(s) one, or one with ``user:password@`` in it.
    """
    origin = "argument"
    if endpoint is None:
        endpoint = os.environ.get("ONE_XMLRPC")
        origin = "ONE_XMLRPC"
    if not endpoint or not endpoint.strip():
        raise ConfigurationError(
            "no OpenNebula endpoint given",
            site=site,
            hint="pass the endpoint (http(s)://host:2633/RPC2) or set ONE_XMLRPC",
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


def resolve_credentials(
    credentials: str | Credentials | None, *, site: str | None = None
) -> Credentials:
    """The credentials: ``credentials``, else the ``$ONE_AUTH`` file, else ``~/.one/one_auth``.

    The file's first non-empty line holds ``user:password``.

    Raises:
        ConfigurationError: none found, unreadable, or malformed (the message names the file,
            never its content).
    """
    if isinstance(credentials, Credentials):
        return credentials
    if credentials is not None:
        return Credentials.parse(credentials, origin="the credentials argument", site=site)
    env = os.environ.get("ONE_AUTH")
    path = Path(env).expanduser() if env else DEFAULT_AUTH_FILE.expanduser()
    origin = f"{path} (from ONE_AUTH)" if env else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(
            f"no credentials: {origin} does not exist",
            site=site,
            hint="pass credentials='user:password', set ONE_AUTH to a file holding them, "
            "or create ~/.one/one_auth",
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read credentials file {origin}: {exc.strerror or exc}", site=site
        ) from None
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    return Credentials.parse(line, origin=origin, site=site)
