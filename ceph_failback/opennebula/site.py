"""One OpenNebula site: queries and VM actions over oned's XML-RPC API (through pyone).

Actions in OpenNebula are asynchronous: ``one.vm.action`` only says that oned accepted the
request, and the VM then walks through intermediate LCM states (``SHUTDOWN``, ``EPILOG``,
``BOOT_POWEROFF``...).
Each action here is therefore "request, then wait" with :func:`~ceph_failback.waiting.wait_until`:
it returns once the VM is in the wanted state, fails at once when OpenNebula reports a failure or
the VM goes somewhere that does not lead there, and times out saying the last state seen.

Actions are safe to repeat: a VM already in (or on its way to) the wanted state is not asked again,
so an interrupted failback can simply be run once more.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import urlsplit

import tenacity

from ..errors import (
    ConfigurationError,
    OpenNebulaError,
    OpenNebulaUnavailableError,
    VMActionError,
    WaitFailedError,
    WaitTimeoutError,
)
from ..waiting import Judgement, Verdict, wait_until
from ._client import call_xml, make_client, translate_error
from .config import Credentials, resolve_credentials, resolve_endpoint, resolve_timeout, resolve_verify
from .listing import PoolReader
from .records import (
    TERMINATING_STATES,
    VM,
    Datastore,
    Image,
    datastore_from_binding,
    image_from_binding,
    vm_from_binding,
)

__all__ = ["OpenNebulaSite"]

log = logging.getLogger(__name__)

# LCM states (of an ACTIVE VM) on the way to each goal. Being in one means the action is already
# under way: it is not requested again (oned would refuse it anyway), only waited for.
_POWERING_OFF = frozenset({"SHUTDOWN_POWEROFF"})
_RESUMING = frozenset({"PROLOG", "PROLOG_RESUME", "PROLOG_UNDEPLOY", "BOOT", "BOOT_POWEROFF",
                       "BOOT_SUSPENDED", "BOOT_STOPPED", "BOOT_UNDEPLOY", "BOOT_UNKNOWN"})
# Where terminate-hard is accepted (DispatchManager::terminate): the guest may still be running.
_HARD_TERMINABLE = frozenset({"RUNNING", "UNKNOWN", "SHUTDOWN"})


def _active_in(vm: VM, lcm_states: Collection[str]) -> bool:
    return vm.state == "ACTIVE" and vm.lcm_state in lcm_states


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _operation(error: str) -> str:
    """The driver operation of a ``USER_TEMPLATE/ERROR`` (``"<ctime>: DEPLOY: <output>"``, as
    VirtualMachineManager::log_error writes it), ``""`` when it names none."""
    parts = error.split(": ", 2)
    return parts[1].strip() if len(parts) == 3 else ""


def _vm_id(vm: int | VM) -> int:
    return vm.id if isinstance(vm, VM) else int(vm)


class OpenNebulaSite(PoolReader):
    """One OpenNebula endpoint, i.e. one site ("site-a", "site-b") of the failback.

    Args:
        name: the site's name, used in every log line and error.
        endpoint: oned's XML-RPC URL (``https://host:2633/RPC2``); default ``$ONE_XMLRPC``, else
            ``~/.one/one_endpoint``, else ``/var/lib/one/.one/one_endpoint``. Must start with
            ``http://`` or ``https://``.
        credentials: ``"user:password"`` (or a :class:`Credentials`); default the file named by
            ``$ONE_AUTH``, else ``~/.one/one_auth``, else ``/var/lib/one/.one/one_auth``.
        verify: https certificate verification: True, False (logs a warning, once per endpoint),
            or the path of a CA bundle to verify against; default: off if
            ``$ONE_DISABLE_SSL_VERIFY`` is set, else the system's CAs plus those in
            ``$ONE_CERT_DIR`` if set, else on. An ``http://`` endpoint has nothing to verify;
            one that is not on loopback logs a warning (credentials sent in clear text).
        timeout: seconds each XML-RPC call may take to connect and between bytes of the answer
            (default ``$ONE_XMLRPC_TIMEOUT``, else 30). It applies to this site's calls only:
            the process-wide socket default is untouched.
        poll_interval: seconds between two state reads while waiting for a VM.

    Raises:
        ConfigurationError: no or bad endpoint, no or malformed credentials, bad numbers.
    """

    def __init__(
        self,
        name: str,
        endpoint: str | None = None,
        *,
        credentials: str | Credentials | None = None,
        verify: bool | str | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if not name:
            raise ConfigurationError("a site needs a name (e.g. 'site-b')")
        if poll_interval <= 0:
            raise ConfigurationError(
                f"poll_interval must be positive, not {poll_interval!r}", site=name
            )
        self._name = name
        self._endpoint = resolve_endpoint(endpoint, site=name)
        self._credentials = resolve_credentials(credentials, site=name)
        self._timeout = resolve_timeout(timeout, site=name)
        self._poll_interval = float(poll_interval)
        verify = resolve_verify(verify, self._endpoint, site=name)
        parts = urlsplit(self._endpoint)
        if parts.scheme.lower() != "https" and not _is_loopback(parts.hostname or ""):
            # Plain http: there is no certificate to verify (``verify`` does not apply).
            log.warning(
                "%s: %s is plain http: the OpenNebula credentials and every answer cross the "
                "network unencrypted; use an https endpoint",
                name,
                self._endpoint,
            )
        self._client = make_client(
            self._endpoint, self._credentials.session, verify=verify, timeout=self._timeout
        )

    @property
    def name(self) -> str:
        """The site's name."""
        return self._name

    @property
    def endpoint(self) -> str:
        """oned's XML-RPC URL."""
        return self._endpoint

    @property
    def user(self) -> str:
        """The OpenNebula user this site acts as."""
        return self._credentials.user

    @property
    def timeout(self) -> float:
        """Seconds allowed per XML-RPC call."""
        return self._timeout

    def __repr__(self) -> str:
        return (
            f"OpenNebulaSite(name={self._name!r}, endpoint={self._endpoint!r}, "
            f"user={self._credentials.user!r})"
        )

    # --- calls ------------------------------------------------------------------------------

    def _call(self, method: str, *params: Any, what: str, vm: int | None = None,
              xml: bool = False) -> Any:
        """Call ``one.<method>`` and map any failure to the library's errors (``xml``: return
        the XML answer as text, not as pyone's bindings)."""
        func: Any = self._client
        for part in method.split("."):
            func = getattr(func, part)
        log.debug("%s: one.%s%r", self._name, method, params)
        try:
            if xml:
                return call_xml(self._client, method, *params)
            return func(*params)
        except Exception as exc:
            error = translate_error(
                exc,
                site=self._name,
                endpoint=self._endpoint,
                what=what,
                timeout=self._timeout,
                vm=vm,
                user=self._credentials.user,
            )
            if error is None:
                raise
            raise error from exc

    # --- queries ----------------------------------------------------------------------------

    def version(self) -> str:
        """oned's version (``one.system.version``), e.g. ``"7.4.0"``."""
        return str(self._call("system.version", what="read oned's version"))

    def vm(self, vm_id: int | VM) -> VM:
        """One VM (``one.vm.info``); DONE VMs are still readable.

        Raises:
            VMNotFoundError: no VM with that id at this site.
        """
        vm_id = _vm_id(vm_id)
        binding = self._call("vm.info", vm_id, what=f"read VM {vm_id}", vm=vm_id)
        return vm_from_binding(binding)

    def image(self, image_id: int) -> Image:
        """One image record (``one.image.info``).

        Raises:
            VMNotFoundError: no image with that id at this site.
        """
        binding = self._call("image.info", int(image_id), what=f"read image {image_id}")
        return image_from_binding(binding)

    def datastore(self, datastore_id: int) -> Datastore:
        """One datastore record (``one.datastore.info``).

        Raises:
            VMNotFoundError: no datastore with that id at this site.
        """
        binding = self._call(
            "datastore.info", int(datastore_id), what=f"read datastore {datastore_id}"
        )
        return datastore_from_binding(binding)

    # --- actions ----------------------------------------------------------------------------

    def _action(self, vm: VM, action: str) -> None:
        """Request ``action`` on ``vm``; oned answers the VM id, which is 0 (falsy) for VM 0."""
        log.info("%s: VM %d (%s): requesting %s", self._name, vm.id, vm.status, action)
        try:
            self._call("vm.action", action, vm.id, what=f"{action} VM {vm.id}", vm=vm.id)
        except VMActionError as err:
            # The state oned refused in is the one worth reporting, not the one read before.
            try:
                status = self.vm(vm.id).status
            except OpenNebulaError:
                status = f"{vm.status} (last read)"
            cause = err.__cause__ if err.__cause__ is not None else err
            raise VMActionError(
                f"oned refused to {action} VM {vm.id} while it is {status}: {cause}",
                code=err.code,
                site=self._name,
                vm=vm.id,
                hint=f"see 'onevm show {vm.id}' at {self._name}; an action in progress must "
                "end first",
            ) from cause

    def _begin(self, vm_id: int, action: str, *, deadline: float,
               under_way: Callable[[VM], bool]) -> VM:
        """Read the VM and request ``action`` unless ``under_way(vm)`` (reached, or on its way):
        what each action starts with. A transient failure (:class:`OpenNebulaUnavailableError`)
        of the read or of the request is retried with backoff until ``deadline``, and every
        retry reads the VM again first: a request whose answer was lost may have been carried
        out, and is never sent twice blindly. Returns the VM as read before the request."""
        def attempt() -> VM:
            current = self.vm(vm_id)
            if not under_way(current):
                self._action(current, action)
            return current

        def retrying(state: tenacity.RetryCallState) -> None:
            log.warning("%s: VM %d: %s; trying again (%s)", self._name, vm_id,
                        state.outcome.exception() if state.outcome else "?", action)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(OpenNebulaUnavailableError),
            stop=tenacity.stop_after_delay(max(deadline - time.monotonic(), 0.0)),
            wait=tenacity.wait_exponential(multiplier=self._poll_interval,
                                           min=self._poll_interval, max=5.0),
            before_sleep=retrying,
            reraise=True,
        )(attempt)

    def _wait(
        self,
        vm_id: int,
        *,
        goal: str,
        reached: Callable[[VM], bool],
        on_the_way: Callable[[VM], bool],
        origin: VM,
        timeout: float,
        hint: str,
        operations: Collection[str],
        seen: list[VM] | None = None,
    ) -> VM:
        """Poll the VM until ``reached``; see the module docstring for the rules.
        ``operations``: the driver operations the action runs (``SHUTDOWN``, ``DEPLOY``...): a
        new ``USER_TEMPLATE/ERROR`` of one of them is its failure; oned writes others there too
        (a security group update, say) that say nothing of this action."""
        progressed = False
        last_status = origin.status

        def judge(vm: VM) -> Judgement[VM]:
            nonlocal progressed
            if reached(vm):
                return Judgement(Verdict.DONE, f"VM {vm.id} is {vm.status}")
            if on_the_way(vm):
                progressed = True
                return Judgement(Verdict.RETRY, f"VM {vm.id} is {vm.status}")
            back_at_origin = (vm.state, vm.lcm_state) == (origin.state, origin.lcm_state)
            # oned's record of a driver failure since the request (USER_TEMPLATE/ERROR): a
            # failure that came and went between two polls is not waited out.
            failed = vm.error if (vm.error and vm.error != origin.error
                                  and _operation(vm.error) in operations) else ""
            says = f"; oned says: {failed}" if failed else ""
            if back_at_origin and not progressed and not failed:
                # oned dispatches the action asynchronously: the old state lingers a moment
                # (even a *_FAILURE state, which terminate cleans up).
                return Judgement(Verdict.RETRY, f"VM {vm.id} still {vm.status}")
            if vm.state == "FAILED" or vm.lcm_state.endswith("_FAILURE"):
                return Judgement(Verdict.FAIL, f"OpenNebula reports a failure: {vm.status}{says}")
            if back_at_origin:
                return Judgement(
                    Verdict.FAIL, f"VM {vm.id} went back to {vm.status}: the action failed{says}"
                )
            return Judgement(
                Verdict.FAIL,
                f"VM {vm.id} went to {vm.status}, which does not lead to {goal}{says}",
            )

        def observed(vm: VM, judgement: Judgement[VM]) -> None:
            nonlocal last_status
            if seen is not None:
                seen.append(vm)
            if vm.status != last_status:
                log.info("%s: VM %d is now %s", self._name, vm.id, vm.status)
                last_status = vm.status

        return wait_until(
            lambda: self.vm(vm_id),
            judge,
            what=f"VM {vm_id} to reach {goal}",
            timeout=timeout,
            interval=self._poll_interval,
            describe=lambda vm: {f"VM {vm.id}": vm.status},
            retry_on=(OpenNebulaUnavailableError,),
            on_observation=observed,
            where={"site": self._name, "vm": vm_id},
            hint=hint,
        )

    def terminate(
        self, vm: int | VM, *, hard_after: float | None = None, timeout: float = 600.0
    ) -> VM:
        """Terminate a VM gracefully (ACPI shutdown, then epilog) and wait until it is DONE.

        WARNING: at DONE, OpenNebula's ceph driver deletes the RBD images of the VM's
        non-persistent (clone) and volatile disks. Check :attr:`Disk.is_persistent` first.

        Args:
            vm: the VM (id or record).
            hard_after: opt-in fallback: if the VM is not DONE after this many seconds (or the
                guest's shutdown failed), request ``terminate-hard`` (power cut) and keep waiting.
                ``None`` (default) never forces.
            timeout: seconds to wait in all, the fallback included.

        Returns:
            The VM as last read (state DONE). A VM already DONE is returned at once.

        Raises:
            VMActionError: oned refused (e.g. the VM is booting, or busy with another action).
            WaitFailedError: OpenNebula reported a failure (e.g. EPILOG_FAILURE) or the VM went
                to a state that does not lead to DONE (shutdown failed, without ``hard_after``).
            WaitTimeoutError: not DONE in time; the error says the last state seen.
        """
        vm_id = _vm_id(vm)
        if hard_after is not None and not 0 <= hard_after < timeout:
            raise ConfigurationError(
                f"hard_after ({hard_after}s) must be >= 0 and less than timeout ({timeout}s)",
                site=self._name,
                vm=vm_id,
            )
        deadline = time.monotonic() + timeout
        current = self._begin(vm_id, "terminate", deadline=deadline,
                              under_way=lambda v: v.is_done or _active_in(v, TERMINATING_STATES))
        if current.is_done:
            log.info("%s: VM %d is already DONE", self._name, vm_id)
            return current

        def wait(origin: VM, seconds: float, seen: list[VM] | None = None) -> VM:
            return self._wait(
                vm_id,
                goal="DONE",
                reached=lambda v: v.is_done,
                on_the_way=lambda v: _active_in(v, TERMINATING_STATES),
                origin=origin,
                timeout=seconds,
                operations=("SHUTDOWN", "CANCEL"),
                seen=seen,
                hint="the guest may ignore the ACPI shutdown: pass hard_after= to force "
                f"terminate-hard, or run 'onevm terminate --hard {vm_id}' at {self._name}",
            )

        if hard_after is None:
            return wait(current, max(deadline - time.monotonic(), 0.0))
        seen: list[VM] = []
        try:
            return wait(current, hard_after, seen)
        except WaitTimeoutError:
            pass
        except WaitFailedError:
            # A failed guest shutdown puts the VM back to RUNNING: what the fallback is for.
            # Any other failure (EPILOG_FAILURE...) needs an operator, not a harder terminate.
            if not seen or not _active_in(seen[-1], _HARD_TERMINABLE):
                raise
        latest = self.vm(vm_id)
        if latest.is_done:
            return latest
        if _active_in(latest, _HARD_TERMINABLE):
            log.warning(
                "%s: VM %d is still %s after %gs: forcing terminate-hard",
                self._name,
                vm_id,
                latest.status,
                hard_after,
            )
            self._action(latest, "terminate-hard")
        return wait(latest, max(deadline - time.monotonic(), 0.0))

    def resume(self, vm: int | VM, *, timeout: float = 600.0) -> VM:
        """Resume a VM (from POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED or UNKNOWN) and wait
        until it is RUNNING.

        From STOPPED or UNDEPLOYED the VM goes back to PENDING and must be scheduled on a host
        first; a VM that stays PENDING times out with that state in the error.

        Returns:
            The VM as last read (ACTIVE/RUNNING). A VM already RUNNING is returned at once.

        Raises:
            VMActionError: oned refused (the VM is in a state resume does not apply to).
            WaitFailedError: the boot failed (e.g. back to POWEROFF, or BOOT_FAILURE).
            WaitTimeoutError: not RUNNING in time; the error says the last state seen.
        """
        vm_id = _vm_id(vm)
        deadline = time.monotonic() + timeout

        def resuming(v: VM) -> bool:
            return v.state == "PENDING" or _active_in(v, _RESUMING)

        current = self._begin(vm_id, "resume", deadline=deadline,
                              under_way=lambda v: v.is_running or resuming(v))
        if current.is_running:
            log.info("%s: VM %d is already RUNNING", self._name, vm_id)
            return current
        return self._wait(
            vm_id,
            goal="RUNNING",
            reached=lambda v: v.is_running,
            on_the_way=resuming,
            origin=current,
            timeout=max(deadline - time.monotonic(), 0.0),
            operations=("DEPLOY", "RESTORE"),
            hint=f"see 'onevm show {vm_id}' at {self._name} (a PENDING VM waits for a host)",
        )

    def update_user_template(self, vm: int | VM, text: str, *, merge: bool = True) -> None:
        """Merge ``text`` (``NAME="value"`` lines) into the VM's user template (``one.vm.update``,
        type 1; ``merge=False``: replace it, type 0), as OneGate does for the guest."""
        vm_id = _vm_id(vm)
        self._call("vm.update", vm_id, text, 1 if merge else 0,
                   what=f"update VM {vm_id}'s user template", vm=vm_id)

    def wait_ready(self, vm: int | VM, *, timeout: float = 600.0) -> VM:
        """Wait until the VM's guest reports ``READY=YES`` through OneGate (OneFlow's ready
        status gate: ``USER_TEMPLATE/READY``, stripped, exactly ``YES``) while it runs.

        Raises:
            WaitFailedError: the VM stopped running (it cannot become ready).
            WaitTimeoutError: no report in time; the error says what the VM last showed.
        """
        vm_id = _vm_id(vm)

        def judge(v: VM) -> Judgement[VM]:
            if not v.is_running:
                return Judgement(Verdict.FAIL, f"VM {vm_id} is {v.status}, not RUNNING: its "
                                 "guest cannot report ready")
            if v.is_ready:
                return Judgement(Verdict.DONE, f"VM {vm_id}'s guest reported READY=YES")
            return Judgement(Verdict.RETRY, f"VM {vm_id} runs, READY={v.ready or '(none)'}")

        return wait_until(
            lambda: self.vm(vm_id), judge, what=f"VM {vm_id}'s guest to report READY=YES",
            timeout=timeout, interval=self._poll_interval,
            describe=lambda v: {f"VM {v.id}": f"{v.status}, READY={v.ready or '(none)'}"},
            retry_on=(OpenNebulaUnavailableError,), where={"site": self._name, "vm": vm_id},
            hint="the guest reports READY=YES through OneGate when its context has "
                 "REPORT_READY=\"YES\" (or by `onegate vm update --data READY=YES`); check "
                 "that it booted and reaches OneGate, or raise Timeouts.ready")

    def poweroff(self, vm: int | VM, *, timeout: float = 300.0) -> VM:
        """Power a VM off gracefully (ACPI) and wait until it is POWEROFF.

        Returns:
            The VM as last read (POWEROFF). A VM already POWEROFF is returned at once.

        Raises:
            VMActionError: oned refused (the VM is not RUNNING or UNKNOWN).
            WaitFailedError: the guest did not shut down (the VM went back to RUNNING).
            WaitTimeoutError: not POWEROFF in time; the error says the last state seen.
        """
        vm_id = _vm_id(vm)
        deadline = time.monotonic() + timeout
        current = self._begin(
            vm_id, "poweroff", deadline=deadline,
            under_way=lambda v: v.state == "POWEROFF" or _active_in(v, _POWERING_OFF))
        if current.state == "POWEROFF":
            log.info("%s: VM %d is already POWEROFF", self._name, vm_id)
            return current
        return self._wait(
            vm_id,
            goal="POWEROFF",
            reached=lambda v: v.state == "POWEROFF",
            on_the_way=lambda v: _active_in(v, _POWERING_OFF),
            origin=current,
            timeout=max(deadline - time.monotonic(), 0.0),
            operations=("SHUTDOWN", "CANCEL"),
            hint=f"the guest may ignore the ACPI shutdown: 'onevm poweroff --hard {vm_id}' "
            f"at {self._name}",
        )
