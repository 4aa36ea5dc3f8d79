"""The package's exception hierarchy.

Every error the library raises derives from :class:`FailbackError`. Each one says *where* it happened
(site, pool, image, VM) and, when there is one, *what to do next* (``hint``). Errors from librados,
librbd and pyone never escape unwrapped: they are mapped to the classes below, with the original
exception chained as ``__cause__``.

Messages never contain secrets (passwords, sessions, Ceph keys).
"""

from __future__ import annotations

__all__ = [
    "FailbackError",
    "ConfigurationError",
    "JournalError",
    "CephError",
    "CephConnectionError",
    "CephPermissionError",
    "PoolNotFoundError",
    "MirroringNotEnabledError",
    "ImageNotFoundError",
    "NotReadyError",
    "CephOperationError",
    "OpenNebulaError",
    "OpenNebulaConnectionError",
    "OpenNebulaUnavailableError",
    "OpenNebulaAuthenticationError",
    "OpenNebulaAuthorizationError",
    "VMNotFoundError",
    "VMActionError",
    "WaitTimeoutError",
    "WaitFailedError",
    "SafetyError",
    "StepFailedError",
    "LockedError",
    "HookFailedError",
    "LabError",
    "CephNotInstalledError",
]


class FailbackError(Exception):
    """Root of every error raised by ``ceph_failback``.

    Attributes:
        message: what went wrong, in plain words.
        site: the site's name (e.g. ``"site-a"``), when the error belongs to one.
        pool: the RBD pool, when relevant.
        image: the RBD image name, when relevant.
        vm: the OpenNebula VM id, when relevant.
        hint: what the operator can do next, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        site: str | None = None,
        pool: str | None = None,
        image: str | None = None,
        vm: int | str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.site = site
        self.pool = pool
        self.image = image
        self.vm = vm
        self.hint = hint
        super().__init__(self._render())

    def where(self) -> str:
        """The location part of the message: ``site 'a', pool 'one', image 'one-0'``."""
        parts = []
        if self.site is not None:
            parts.append(f"site {self.site!r}")
        if self.pool is not None:
            parts.append(f"pool {self.pool!r}")
        if self.image is not None:
            parts.append(f"image {self.image!r}")
        if self.vm is not None:
            parts.append(f"VM {self.vm}")
        return ", ".join(parts)

    def _render(self) -> str:
        where = self.where()
        text = f"{where}: {self.message}" if where else self.message
        text += self._details()
        if self.hint:
            text += f" (hint: {self.hint})"
        return text

    def __reduce__(self):  # type: ignore[no-untyped-def]
        # Keep errors picklable (keyword-only arguments defeat the default reduction).
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "site": self.site,
                    "pool": self.pool,
                    "image": self.image,
                    "vm": self.vm,
                    "hint": self.hint,
                    **self._extra_state(),
                },
            ),
        )

    def _details(self) -> str:
        return ""

    def _extra_state(self) -> dict[str, object]:
        return {}


def _rebuild(cls: type[FailbackError], message: str, kwargs: dict[str, object]) -> FailbackError:
    return cls(message, **kwargs)  # type: ignore[arg-type]


class ConfigurationError(FailbackError):
    """Bad input: a missing or malformed configuration file, an invalid argument or option."""


# --- Ceph -----------------------------------------------------------------------------------


class JournalError(ConfigurationError):
    """The journal file cannot be trusted: a line other than the last is not a journal record
    (the file was edited or damaged). Only a torn last line, left by a crash mid-write, is
    skipped (and cut off before the next record is appended)."""


class CephError(FailbackError):
    """An error talking to a Ceph cluster (librados / librbd)."""

    def __init__(self, message: str, *, errno: int | None = None, **kwargs: object) -> None:
        self.errno = errno
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _extra_state(self) -> dict[str, object]:
        return {"errno": self.errno}


class CephConnectionError(CephError):
    """The cluster could not be reached (monitor down, timeout, bad conf or keyring)."""


class CephPermissionError(CephError):
    """The Ceph client lacks the capabilities for an operation (EPERM/EACCES)."""


class PoolNotFoundError(CephError):
    """The pool does not exist on that site."""


class MirroringNotEnabledError(CephError):
    """The pool (or image) is not mirrored, or has no peer configured."""


class ImageNotFoundError(CephError):
    """The RBD image does not exist in the pool on that site."""


class NotReadyError(CephError):
    """A non-forced promote was refused because the peer's demotion has not arrived yet.

    librbd answers EBUSY (journal mode) or EROFS (snapshot mode). It is safe to retry.
    """


class CephOperationError(CephError):
    """Any other librbd/librados failure of an operation."""


# --- OpenNebula -------------------------------------------------------------------------------


class OpenNebulaError(FailbackError):
    """An error talking to an OpenNebula endpoint (oned's XML-RPC API)."""

    def __init__(self, message: str, *, code: int | None = None, **kwargs: object) -> None:
        self.code = code
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _extra_state(self) -> dict[str, object]:
        return {"code": self.code}


class OpenNebulaConnectionError(OpenNebulaError):
    """The endpoint could not be reached, refused the connection, or did not answer in time."""


class OpenNebulaUnavailableError(OpenNebulaConnectionError):
    """oned cannot serve the call now, for a reason that passes: a refused or reset connection,
    a call that timed out, an HTTP 5xx from a proxy in front of oned, or an HA cluster with no
    leader (oned's ``Cannot process request, ...`` replies, src/rm/xml-rpc/RequestXRPC.cc).

    The site's actions (terminate, resume, poweroff) retry these with backoff within their
    limit, re-reading the VM before any resend. A TLS failure or a wrong endpoint path is a plain
    :class:`OpenNebulaConnectionError`: retrying would not help.
    """


class OpenNebulaAuthenticationError(OpenNebulaError):
    """oned rejected the credentials (error 0x100)."""


class OpenNebulaAuthorizationError(OpenNebulaError):
    """The user is not allowed to perform that call (error 0x200)."""


class VMNotFoundError(OpenNebulaError):
    """No VM (or image, datastore) with that id exists at that site (error 0x400)."""


class VMActionError(OpenNebulaError):
    """oned refused an action, usually because it is not valid in the VM's state (0x800)."""


# --- Waits and safety -------------------------------------------------------------------------


class WaitTimeoutError(FailbackError):
    """A wait ran out of time. ``last_seen`` maps each object still waited on to what was last
    observed for it (a status, a state), so the operator knows where things stand."""

    def __init__(
        self, message: str, *, last_seen: dict[str, str] | None = None, **kwargs: object
    ) -> None:
        self.last_seen = dict(last_seen or {})
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _details(self) -> str:
        if not self.last_seen:
            return ""
        return "; last seen: " + "; ".join(f"{k}: {v}" for k, v in self.last_seen.items())

    def _extra_state(self) -> dict[str, object]:
        return {"last_seen": self.last_seen}


class WaitFailedError(FailbackError):
    """A wait ended early because a terminal failure was observed (split-brain, daemon down,
    VM FAILED...). Waiting longer would not help."""


class SafetyError(FailbackError):
    """The library refused to act because acting could lose data. The message says which rule."""


class StepFailedError(FailbackError):
    """A failback step finished with some images or VMs failed. ``failures`` maps each failed
    target (``image:one-3``, ``vm:site-b:12``) to its error; the others completed. Fix the cause
    and run the step (or ``run()``) again: what is done is skipped."""

    def __init__(
        self, message: str, *, failures: dict[str, str] | None = None, **kwargs: object
    ) -> None:
        self.failures = dict(failures or {})
        super().__init__(message, **kwargs)  # type: ignore[arg-type]

    def _details(self) -> str:
        if not self.failures:
            return ""
        return "; " + "; ".join(f"{k}: {v}" for k, v in self.failures.items())

    def _extra_state(self) -> dict[str, object]:
        return {"failures": self.failures}


class LockedError(FailbackError):
    """Another failback holds the pool's lock (its holder and start time are in the message)."""


class HookFailedError(FailbackError):
    """An operator's hook (:mod:`ceph_failback.failback.hooks`) with ``on_error="stop"``
    failed or timed out: the VM stage that ran it failed, and what waits for it was held back.
    Fix the hook and run again; a hook done is never run again."""


# --- Lab --------------------------------------------------------------------------------------


class LabError(FailbackError):
    """The disposable test lab could not be started, queried or stopped."""


class CephNotInstalledError(LabError):
    """The Ceph daemons or Python bindings are missing; the message names the apt command."""

