"""A stand-in for OpenNebula's ``oned`` XML-RPC API, for tests and lab rehearsals.

It serves the calls the failback uses, on loopback, with the replies a real oned 7.4 sends:
``[True, body, 0]`` on success and ``[False, message, code, object_id, -1]`` on failure (the layout
of ``src/rm/xml-rpc/RequestXRPC.cc``), bodies in OpenNebula's XML schema, compact, values in CDATA
where oned puts them (see ``opennebula-samples/``), messages worded as ``src/rm/Request.cc`` and
``src/dm/DispatchManagerActions.cc`` word them.

VM actions are asynchronous, as in oned: the call only says the action was accepted, and the VM
then walks through OpenNebula's LCM states on a timer (:class:`Delays`)::

    terminate   RUNNING/UNKNOWN -> SHUTDOWN -> EPILOG -> DONE
                POWEROFF, SUSPENDED, STOPPED, UNDEPLOYED -> EPILOG -> DONE
                PENDING, HOLD -> DONE at once; DONE -> nothing (accepted)
    terminate-hard  as terminate, also accepted during SHUTDOWN (overrides a hung shutdown)
    poweroff    RUNNING/UNKNOWN -> SHUTDOWN_POWEROFF -> POWEROFF (-hard also in SHUTDOWN_POWEROFF)
    suspend     RUNNING -> SAVE_SUSPEND -> SUSPENDED
    stop        RUNNING -> SAVE_STOP -> EPILOG_STOP -> STOPPED; SUSPENDED -> EPILOG_STOP -> STOPPED
    undeploy    RUNNING/UNKNOWN -> SHUTDOWN_UNDEPLOY -> EPILOG_UNDEPLOY -> UNDEPLOYED;
                POWEROFF -> EPILOG_UNDEPLOY -> UNDEPLOYED (-hard also in SHUTDOWN_UNDEPLOY)
    resume      POWEROFF -> BOOT_POWEROFF -> RUNNING; SUSPENDED -> BOOT_SUSPENDED -> RUNNING;
                UNKNOWN -> BOOT_UNKNOWN -> RUNNING; STOPPED/UNDEPLOYED -> PENDING, then the
                scheduler: PROLOG_RESUME/PROLOG_UNDEPLOY -> BOOT_STOPPED/BOOT_UNDEPLOY -> RUNNING
    hold/release  PENDING <-> HOLD

Like OpenNebula's ceph transfer driver, the epilog of a terminate deletes the RBD image of each
non-persistent (clone) and volatile disk: ``delete_rbd_image(pool, image)`` is called for each
(wire it to a real lab pool) and every deletion is logged and recorded in :attr:`deleted_images`.
If the callback raises, the VM ends in EPILOG_FAILURE, as a failed TM ``delete`` leaves it.

Test setup is plain Python (:meth:`OnedStandIn.add_image`, :meth:`OnedStandIn.add_vm`, ...), not
XML-RPC; so are the faults: :meth:`~OnedStandIn.refuse_connections`, :meth:`~OnedStandIn.busy`,
:meth:`~OnedStandIn.answer_http`, :meth:`~OnedStandIn.lose_replies`,
:meth:`~OnedStandIn.set_call_delay`, :meth:`~OnedStandIn.ignore_shutdown`,
:meth:`~OnedStandIn.reject_credentials`.

Run one from a shell with ``python -m ceph_failback.lab.oned --help``.

Not modelled: ownership and ACLs beyond "admin or not", quotas, hosts and capacity, NICs,
snapshots, the ceph system datastore's memory checkpoint image (``one-sys-<vm>-checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import ssl
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import IntEnum
from socketserver import ThreadingMixIn
from typing import Any
from xml.sax.saxutils import escape
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

__all__ = ["OnedStandIn", "Delays", "VolatileDisk", "VmState", "LcmState", "ErrorCode", "main"]

log = logging.getLogger(__name__)

VERSION = "7.4.0"


class VmState(IntEnum):
    """VM states (``include/VirtualMachine.h``)."""

    INIT = 0
    PENDING = 1
    HOLD = 2
    ACTIVE = 3
    STOPPED = 4
    SUSPENDED = 5
    DONE = 6
    FAILED = 7
    POWEROFF = 8
    UNDEPLOYED = 9
    CLONING = 10
    CLONING_FAILURE = 11


class LcmState(IntEnum):
    """LCM states of an ACTIVE VM (``include/VirtualMachine.h``; 13 and 14 are retired)."""

    LCM_INIT = 0
    PROLOG = 1
    BOOT = 2
    RUNNING = 3
    MIGRATE = 4
    SAVE_STOP = 5
    SAVE_SUSPEND = 6
    SAVE_MIGRATE = 7
    PROLOG_MIGRATE = 8
    PROLOG_RESUME = 9
    EPILOG_STOP = 10
    EPILOG = 11
    SHUTDOWN = 12
    CLEANUP_RESUBMIT = 15
    UNKNOWN = 16
    HOTPLUG = 17
    SHUTDOWN_POWEROFF = 18
    BOOT_UNKNOWN = 19
    BOOT_POWEROFF = 20
    BOOT_SUSPENDED = 21
    BOOT_STOPPED = 22
    CLEANUP_DELETE = 23
    SHUTDOWN_UNDEPLOY = 29
    EPILOG_UNDEPLOY = 30
    PROLOG_UNDEPLOY = 31
    BOOT_UNDEPLOY = 32
    BOOT_FAILURE = 36
    PROLOG_FAILURE = 39
    EPILOG_FAILURE = 40
    EPILOG_STOP_FAILURE = 41
    EPILOG_UNDEPLOY_FAILURE = 42
    BOOT_UNDEPLOY_FAILURE = 47
    BOOT_STOPPED_FAILURE = 48
    PROLOG_RESUME_FAILURE = 49
    PROLOG_UNDEPLOY_FAILURE = 50


class ErrorCode(IntEnum):
    """oned's XML-RPC error codes (``include/Request.h``)."""

    SUCCESS = 0x0000
    AUTHENTICATION = 0x0100
    AUTHORIZATION = 0x0200
    NO_EXISTS = 0x0400
    ACTION = 0x0800
    RPC_API = 0x1000
    INTERNAL = 0x2000


# terminate on these goes through the LCM's delete (recover --delete): cleanup, then DONE.
_FAILURE_STATES = frozenset(s for s in LcmState if s.name.endswith("_FAILURE"))


@dataclass
class Delays:
    """Seconds each asynchronous step of oned takes in the stand-in.

    Attributes:
        dispatch: from an accepted action to the first state change (oned's LCM queue); 0 makes
            the first change visible as soon as the call returns.
        shutdown: the guest's ACPI shutdown (SHUTDOWN, SHUTDOWN_POWEROFF, SHUTDOWN_UNDEPLOY).
        cancel: a hard power-off (the ``-hard`` actions).
        epilog: the transfer driver's epilog (EPILOG, EPILOG_STOP, EPILOG_UNDEPLOY, CLEANUP).
        save: saving the guest's memory (SAVE_SUSPEND, SAVE_STOP).
        prolog: the transfer driver's prolog (PROLOG, PROLOG_RESUME, PROLOG_UNDEPLOY).
        boot: the hypervisor's boot (BOOT, BOOT_POWEROFF, BOOT_SUSPENDED...).
        schedule: a PENDING VM waiting for the scheduler to place it.
    """

    dispatch: float = 0.0
    shutdown: float = 0.2
    cancel: float = 0.1
    epilog: float = 0.2
    save: float = 0.2
    prolog: float = 0.2
    boot: float = 0.2
    schedule: float = 0.2

    @classmethod
    def uniform(cls, seconds: float, *, dispatch: float = 0.0) -> Delays:
        """Every step takes ``seconds`` (handy in tests: ``Delays.uniform(0.05)``)."""
        values = {f.name: seconds for f in fields(cls)}
        values["dispatch"] = dispatch
        return cls(**values)


@dataclass(frozen=True)
class VolatileDisk:
    """A volatile disk for :meth:`OnedStandIn.add_vm`: created in the VM's system datastore.

    Attributes:
        size: size in MB.
        type: ``"fs"`` or ``"swap"``.
    """

    size: int = 512
    type: str = "fs"


# The ceph datastore attributes oned copies into each disk of that datastore.
_CEPH_DISK_KEYS = (
    "ALLOW_ORPHANS",
    "CEPH_CONF",
    "CEPH_HOST",
    "CEPH_SECRET",
    "CEPH_USER",
    "PERSISTENT_SNAPSHOTS",
    "POOL_NAME",
)


def _ceph_disk_attrs(ds: _Datastore) -> dict[str, str]:
    return {key: ds.template[key] for key in _CEPH_DISK_KEYS if key in ds.template}


# --- internal records -------------------------------------------------------------------------


@dataclass
class _Datastore:
    id: int
    name: str
    system: bool
    ds_mad: str
    tm_mad: str
    template: dict[str, str]

    @property
    def is_ceph(self) -> bool:
        return self.tm_mad == "ceph"


#: oned's image types (include/Image.h ``ImageType``) that a disk may use.
_IMAGE_TYPES = {"OS": 0, "CDROM": 1, "DATABLOCK": 2}


@dataclass
class _Image:
    id: int
    name: str
    persistent: bool
    source: str
    datastore_id: int
    size: int
    regtime: int
    type: str = "OS"
    persistent_type: str = ""

    @property
    def read_only(self) -> bool:
        """Image::disk_attribute (src/image/Image.cc) attaches a CDROM or IMMUTABLE image
        read-only, the image itself, and without PERSISTENT."""
        return self.type == "CDROM" or self.persistent_type == "IMMUTABLE"

    @property
    def shareable(self) -> bool:
        """ImageManager::acquire_image lets several live VMs use a persistent image only when
        its PERSISTENT_TYPE is SHAREABLE."""
        return self.persistent_type == "SHAREABLE"


@dataclass
class _Disk:
    disk_id: int
    attrs: dict[str, str]

    @property
    def image_id(self) -> int | None:
        text = self.attrs.get("IMAGE_ID", "")
        return int(text) if text else None


@dataclass
class _History:
    seq: int
    stime: int
    etime: int = 0
    action: int = 0


#: (delay after the previous step, state, lcm, delete disks[, driver error]).
_PlanStep = tuple[float, VmState, LcmState, bool] | tuple[float, VmState, LcmState, bool, str]


@dataclass
class _Step:
    due: float
    state: VmState
    lcm: LcmState
    delete_disks: bool = False
    error: str = ""  # a driver failure: what oned then writes to USER_TEMPLATE/ERROR


@dataclass
class _VM:
    id: int
    name: str
    state: VmState
    lcm: LcmState
    disks: list[_Disk]
    system_ds: int
    stime: int
    uuid: str
    prev_state: VmState = VmState.INIT
    prev_lcm: LcmState = LcmState.LCM_INIT
    etime: int = 0
    history: list[_History] = field(default_factory=list)
    plan: list[_Step] = field(default_factory=list)
    busy: bool = False
    ignore_shutdown: bool = False
    shutdown_fails_after: float | None = None
    shutdown_destroyed_after: float | None = None
    boot_fails: str | None = None
    # USER_TEMPLATE/ERROR: VirtualMachine::set_template_error_message, "<ctime>: <message>".
    error: str = ""
    # The rest of USER_TEMPLATE (one.vm.update): OneGate's READY, say.
    user: dict[str, str] = field(default_factory=dict)
    # The guest reports READY=YES this many seconds after each boot (one-context's
    # REPORT_READY through OneGate); None: it never does.
    reports_ready: float | None = None
    # The action that sent it to STOPPED/UNDEPLOYED decides its PROLOG_* when rescheduled.
    last_action: str = ""

    def state_str(self) -> str:
        return self.lcm.name if self.state is VmState.ACTIVE else self.state.name


@dataclass
class _Document:
    id: int
    name: str
    type: int
    body: str  # TEMPLATE/BODY (OneFlow: the service's JSON)


@dataclass
class _User:
    id: int
    name: str
    password: str
    admin: bool


class _Reply(Exception):
    """A failure reply: ``[False, message, code, resp_id, -1]``."""

    def __init__(self, code: ErrorCode, message: str, resp_id: int = -1) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resp_id = resp_id


# --- XML --------------------------------------------------------------------------------------


def _el(tag: str, value: object = None, *, cdata: bool = False) -> str:
    if value is None or value == "":
        return f"<{tag}/>"
    text = str(value)
    if cdata:
        return f"<{tag}><![CDATA[{text.replace(']]>', ']]]]><![CDATA[>')}]]></{tag}>"
    return f"<{tag}>{escape(text)}</{tag}>"


def _group(tag: str, *children: str) -> str:
    inner = "".join(children)
    return f"<{tag}>{inner}</{tag}>" if inner else f"<{tag}/>"


def _attrs(attrs: Mapping[str, object]) -> str:
    # oned keeps template attributes in a sorted multimap: they come out in name order.
    return "".join(_el(k, v, cdata=True) for k, v in sorted(attrs.items()))


def _permissions(group_u: int = 0) -> str:
    bits = {
        "OWNER_U": 1,
        "OWNER_M": 1,
        "OWNER_A": 0,
        "GROUP_U": group_u,
        "GROUP_M": 0,
        "GROUP_A": 0,
        "OTHER_U": 0,
        "OTHER_M": 0,
        "OTHER_A": 0,
    }
    return _group("PERMISSIONS", *(_el(k, v) for k, v in bits.items()))


_OWNER = _el("UID", 0) + _el("GID", 0) + _el("UNAME", "oneadmin") + _el("GNAME", "oneadmin")

_SHORT_DISK_KEYS = (
    "DISK_ID",
    "DATASTORE",
    "DATASTORE_ID",
    "IMAGE",
    "IMAGE_ID",
    "SIZE",
    "TYPE",
    "CLONE",
    "CLONE_TARGET",
    "LN_TARGET",
    "DISK_SNAPSHOT_TOTAL_SIZE",
)


# --- the XML-RPC server -----------------------------------------------------------------------


@dataclass
class _Fault:
    kind: str  # "busy", "http" or "late"
    count: int
    methods: frozenset[str]
    detail: str


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    # oned (xmlrpc-c's Abyss server) never compresses its answers (xmlrpc_server_abyss.c
    # sendResponse); Python's server would gzip any answer over 1,400 bytes.
    encode_threshold = None  # type: ignore[assignment]

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        oned: OnedStandIn | None = getattr(self.server, "oned", None)
        fault = oned._take_fault("http", None) if oned is not None else None
        if fault is not None:
            length = int(self.headers.get("content-length", 0))
            self.rfile.read(length)
            self.send_response(int(fault.detail))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_POST()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib's name)
        log.debug("oned stand-in: " + format, *args)


class _Server(ThreadingMixIn, SimpleXMLRPCServer):
    daemon_threads = True
    # A slow answer (set_call_delay) must not hold up stop().
    block_on_close = False
    allow_reuse_address = True


class OnedStandIn:
    """An in-process oned for one site, serving XML-RPC on loopback.

    Args:
        name: the site's name, in logs.
        host: the address to listen on (loopback by default).
        port: the port; 0 picks a free one (see :attr:`endpoint` once started).
        users: ``{user: password}`` of administrators; default ``{"oneadmin": "opennebula"}``.
        delays: the timing of asynchronous transitions (default :class:`Delays`).
        delete_rbd_image: called as ``(pool, image)`` for each RBD image OpenNebula's ceph driver
            would delete (clones and volatile disks at the end of a terminate).
        ceph_pool: ``POOL_NAME`` of the default ceph datastores 100 (images) and 101 (system).
        ssl_context: serve https with this server-side context.

    The default datastores are OpenNebula's 0 (system, ssh), 1 (default, fs), 2 (files), plus
    100 ``ceph_img`` and 101 ``ceph_sys`` on ``ceph_pool``, as in the samples.
    """

    def __init__(
        self,
        *,
        name: str = "oned",
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, str] | None = None,
        delays: Delays | None = None,
        delete_rbd_image: Callable[[str, str], None] | None = None,
        ceph_pool: str = "one",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._host = host
        self._port = port
        self._ssl_context = ssl_context
        #: The deletion hook (see ``delete_rbd_image`` above); may be replaced at any time.
        self.delete_rbd_image = delete_rbd_image
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._delays = delays or Delays()
        self._users: dict[str, _User] = {}
        for user, password in (users or {"oneadmin": "opennebula"}).items():
            self.add_user(user, password)
        self._datastores: dict[int, _Datastore] = {}
        self._images: dict[int, _Image] = {}
        self._vms: dict[int, _VM] = {}
        self._next_image = 0
        self._next_vm = 0
        self._documents: dict[int, _Document] = {}
        self._scheduler = True
        self._call_delay = 0.0
        self._faults: list[_Fault] = []
        self._reject_credentials = False
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._ticker: threading.Thread | None = None
        self._closing = False
        #: ``(pool, image)`` of every RBD image deleted by a terminate, in order.
        self.deleted_images: list[tuple[str, str]] = []
        #: ``(vm_id, action, accepted)`` of every action oned accepted, or refused for the VM's
        #: state (refusals for a missing VM, rights or an unknown action are not listed).
        self.actions: list[tuple[int, str, bool]] = []
        #: The XML-RPC methods called, in order (``"one.vm.info"``...).
        self.calls: list[str] = []
        self._transitions: dict[int, list[str]] = {}
        self._add_default_datastores(ceph_pool)

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The XML-RPC URL (``http://127.0.0.1:PORT/RPC2``); the port is known once started."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}/RPC2"

    @property
    def session(self) -> str:
        """``user:password`` of the first user, for clients."""
        user = next(iter(self._users.values()))
        return f"{user.name}:{user.password}"

    @property
    def port(self) -> int:
        """The port listened on (0 until started with ``port=0``)."""
        return self._port

    def start(self) -> OnedStandIn:
        """Listen and run the state machine. Restarting after :meth:`stop` keeps the port and
        every record."""
        with self._lock:
            self._closing = False
            if self._ticker is None or not self._ticker.is_alive():
                self._ticker = threading.Thread(
                    target=self._run_transitions, name=f"{self.name}-lcm", daemon=True
                )
                self._ticker.start()
        self.accept_connections()
        return self

    def stop(self) -> None:
        """Stop listening and stop the state machine (pending transitions freeze)."""
        self.refuse_connections()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
            self._ticker = None

    def __enter__(self) -> OnedStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accept_connections(self) -> None:
        """(Re)open the listening socket, on the same port as before if there was one."""
        if self._server is not None:
            return
        server = _Server(
            (self._host, self._port),
            requestHandler=_Handler,
            logRequests=False,
            allow_none=False,
        )
        if self._ssl_context is not None:
            server.socket = self._ssl_context.wrap_socket(server.socket, server_side=True)
        server.register_instance(_Dispatcher(self))
        server.oned = self  # type: ignore[attr-defined]
        self._port = server.server_address[1]
        self._server = server
        self._serve_thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"{self.name}-xmlrpc",
            daemon=True,
        )
        self._serve_thread.start()
        log.info("%s: oned stand-in listening on %s", self.name, self.endpoint)

    def refuse_connections(self) -> None:
        """Fault: close the listening socket; clients get "connection refused" until
        :meth:`accept_connections`."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=5)
            self._serve_thread = None
        log.info("%s: oned stand-in no longer listening", self.name)

    # --- faults and knobs ----------------------------------------------------------------

    def set_delays(self, delays: Delays | None = None, **seconds: float) -> None:
        """Replace the delays, or change some (``set_delays(shutdown=2.0)``); affects the
        transitions planned from now on."""
        with self._lock:
            self._delays = replace(delays or self._delays, **seconds)

    def set_call_delay(self, seconds: float) -> None:
        """Fault: answer every call ``seconds`` late (a slow or overloaded oned)."""
        self._call_delay = float(seconds)

    def busy(self, count: int, *, reason: str = "oned cluster in election mode",
             methods: Collection[str] = ()) -> None:
        """Fault: the next ``count`` calls (of ``methods``, all if empty) are answered as an
        HA oned answers while it cannot take them (RequestXRPC::execute): error 0x2000,
        ``[method] Cannot process request, <reason>`` (also ``no leader found``, ``oned cluster
        is replicating log``), and nothing is done."""
        self._add_fault(_Fault("busy", count, frozenset(methods), reason))

    def answer_http(self, status: int, count: int) -> None:
        """Fault: the next ``count`` HTTP requests get ``status`` and no XML-RPC answer (a proxy
        in front of oned answering 502/503/504); nothing is done."""
        self._add_fault(_Fault("http", count, frozenset(), str(status)))

    def lose_replies(self, seconds: float, count: int, *,
                     methods: Collection[str] = ()) -> None:
        """Fault: the next ``count`` calls (of ``methods``, all if empty) are carried out, then
        answered ``seconds`` late (past a client's timeout, the answer is lost)."""
        self._add_fault(_Fault("late", count, frozenset(methods), str(seconds)))

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, kind: str, method: str | None) -> _Fault | None:
        """The first pending fault of ``kind`` for ``method`` (used up once per call)."""
        with self._lock:
            for fault in self._faults:
                if fault.kind == kind and fault.count > 0 and (
                        method is None or not fault.methods or method in fault.methods):
                    fault.count -= 1
                    return fault
        return None

    def reject_credentials(self, reject: bool = True) -> None:
        """Fault: answer every call with an authentication failure (0x100)."""
        self._reject_credentials = reject

    def ignore_shutdown(self, vm_id: int, *, fail_after: float | None = None,
                        destroy_after: float | None = None) -> None:
        """Fault: the guest of VM ``vm_id`` ignores ACPI shutdowns.

        A graceful terminate, poweroff or undeploy then stays in SHUTDOWN(_POWEROFF/_UNDEPLOY);
        with ``fail_after``, the driver gives up after that many seconds and the VM is back to
        RUNNING with ``USER_TEMPLATE/ERROR``, as oned does on a shutdown failure (kvmrc with
        ``FORCE_DESTROY`` off); with ``destroy_after``, the driver destroys the domain after
        that many seconds and the action goes on as if the guest had shut down (kvm's defaults:
        ``SHUTDOWN_TIMEOUT=180``, ``FORCE_DESTROY=yes``; src/vmm_mad/remotes/kvm/shutdown and
        scripts_common.sh ``force_shutdown``). The ``-hard`` actions still work.
        """
        if fail_after is not None and destroy_after is not None:
            raise ValueError("a shutdown either fails or ends in a destroy, not both")
        with self._lock:
            vm = self._vm(vm_id)
            vm.ignore_shutdown = True
            vm.shutdown_fails_after = fail_after
            vm.shutdown_destroyed_after = destroy_after

    def fail_boot(self, vm_id: int, message: str = "error: Failed to create domain") -> None:
        """Fault: the next boot of VM ``vm_id`` from POWEROFF, SUSPENDED or UNKNOWN fails in the
        driver: the VM goes back to that state (LifeCycleManager::deploy_failure_action) with
        ``USER_TEMPLATE/ERROR`` = ``<ctime>: DEPLOY: <message>``."""
        with self._lock:
            self._vm(vm_id).boot_fails = message

    def set_scheduler(self, enabled: bool) -> None:
        """Turn the scheduler on (default) or off: when off, PENDING VMs stay PENDING."""
        with self._cond:
            self._scheduler = enabled
            for vm in self._vms.values():
                if vm.state is VmState.PENDING:
                    if enabled and not vm.plan:
                        self._schedule(vm, time.monotonic())
                    elif not enabled:
                        vm.plan.clear()
            self._cond.notify_all()

    # --- setup API -----------------------------------------------------------------------

    def add_user(self, name: str, password: str, *, admin: bool = True) -> int:
        """Add a user; a non-admin may read everything but not act on VMs (0x200). Returns its
        id."""
        with self._lock:
            if name in self._users:
                raise ValueError(f"user {name!r} exists")
            uid = 0 if not self._users else max(u.id for u in self._users.values()) + 1
            if uid == 1:
                uid = 2  # 1 is serveradmin in a real oned
            self._users[name] = _User(uid, name, password, admin)
            return uid

    def add_datastore(
        self,
        name: str,
        *,
        system: bool = False,
        ceph_pool: str | None = "one",
        datastore_id: int | None = None,
    ) -> int:
        """Add a datastore. Returns its id.

        Args:
            name: its name.
            system: a system datastore (VM disks live there) rather than an image one.
            ceph_pool: its ``POOL_NAME``; ``""`` for a ceph datastore without one (the drivers
                then use pool ``one``); ``None`` for a non-ceph (fs/ssh) datastore.
            datastore_id: force the id (default: the next one).
        """
        with self._lock:
            ds_id = datastore_id if datastore_id is not None else max(self._datastores) + 1
            if ds_id in self._datastores:
                raise ValueError(f"datastore {ds_id} exists")
            if ceph_pool is None:
                self._datastores[ds_id] = _Datastore(
                    ds_id,
                    name,
                    system,
                    "-" if system else "fs",
                    "ssh",
                    {"ALLOW_ORPHANS": "NO", "DS_MIGRATE": "YES", "SHARED": "NO"}
                    | ({"TYPE": "SYSTEM_DS"} if system else {"TYPE": "IMAGE_DS"}),
                )
            else:
                self._datastores[ds_id] = self._ceph_datastore(ds_id, name, system, ceph_pool)
            return ds_id

    def add_image(
        self,
        name: str | None = None,
        *,
        persistent: bool,
        datastore_id: int = 100,
        source: str | None = None,
        size: int = 1024,
        image_id: int | None = None,
        type: str = "OS",
        persistent_type: str | None = None,
    ) -> int:
        """Register an image. Returns its id.

        Args:
            name: its name (default ``image-<id>``).
            persistent: persistent (disks use the image itself) or not (disks use a clone).
            datastore_id: its image datastore (default 100, ceph).
            source: ``SOURCE``; default ``<pool>/one-<id>`` as the ceph datastore names it. Give
                another one to register an existing RBD image, e.g. a mirrored one on site B.
            size: size in MB.
            image_id: force the id (default: the next one).
            type: ``OS``, ``DATABLOCK`` or ``CDROM`` (an ISO: attached read-only).
            persistent_type: the image template's ``PERSISTENT_TYPE``: ``IMMUTABLE`` (attached
                read-only) or ``SHAREABLE`` (a persistent image several VMs may use; oned drops
                it from a non-persistent image).
        """
        type = type.upper()
        if type not in _IMAGE_TYPES:
            raise ValueError(f"image type {type!r} cannot be used as a disk")
        ptype = (persistent_type or "").upper()
        if ptype not in ("", "IMMUTABLE", "SHAREABLE"):
            raise ValueError(f"unknown PERSISTENT_TYPE {persistent_type!r}")
        if ptype == "SHAREABLE" and not persistent:
            ptype = ""  # Image::is_persistent erases it from a non-persistent image
        with self._lock:
            ds = self._datastore(datastore_id)
            if ds.system:
                raise ValueError(f"datastore {datastore_id} is a system datastore")
            img_id = image_id if image_id is not None else self._next_image
            if img_id in self._images:
                raise ValueError(f"image {img_id} exists")
            self._next_image = max(self._next_image, img_id + 1)
            if source is None:
                if ds.is_ceph:
                    # The ceph drivers fall back to pool "one" when POOL_NAME is not set.
                    source = f"{ds.template.get('POOL_NAME') or 'one'}/one-{img_id}"
                else:
                    source = f"/var/lib/one//datastores/{ds.id}/{uuid.uuid4().hex}"
            self._images[img_id] = _Image(
                img_id, name or f"image-{img_id}", persistent, source, ds.id, size,
                int(time.time()), type, ptype,
            )
            return img_id

    def add_vm(
        self,
        name: str | None = None,
        *,
        disks: Sequence[int | VolatileDisk] = (),
        state: str = "RUNNING",
        system_datastore_id: int = 101,
        vm_id: int | None = None,
    ) -> int:
        """Create a VM already in ``state``. Returns its id.

        Args:
            name: its name (default ``vm-<id>``).
            disks: image ids (the image's persistence decides CLONE) and :class:`VolatileDisk`.
            state: a VM state name (``"POWEROFF"``, ``"PENDING"``...) or, for an ACTIVE VM, an LCM
                state name (``"RUNNING"``, ``"UNKNOWN"``, ``"BOOT"``, ``"EPILOG_FAILURE"``...).
            system_datastore_id: the VM's system datastore (101 ceph; 0 for ssh mode).
            vm_id: force the id (default: the next one).

        Raises:
            ValueError: unknown image or state; a persistent image already used by a live VM
                (oned refuses to attach it twice).
        """
        with self._cond:
            vm_state, lcm = _parse_state(state)
            sys_ds = self._datastore(system_datastore_id)
            if not sys_ds.system:
                raise ValueError(f"datastore {system_datastore_id} is not a system datastore")
            new_id = vm_id if vm_id is not None else self._next_vm
            if new_id in self._vms:
                raise ValueError(f"VM {new_id} exists")
            built = []
            for disk_id, spec in enumerate(disks):
                if isinstance(spec, VolatileDisk):
                    built.append(_Disk(disk_id, self._volatile_attrs(disk_id, spec, sys_ds)))
                    continue
                image = self._images.get(int(spec))
                if image is None:
                    raise ValueError(f"image {spec} does not exist")
                if image.persistent and not image.shareable and vm_state is not VmState.DONE:
                    users = self._live_users(image.id)
                    if users:
                        raise ValueError(
                            f"image {image.id} is persistent and already used by VM {users[0]}"
                        )
                built.append(_Disk(disk_id, self._image_attrs(disk_id, image, sys_ds)))
            self._next_vm = max(self._next_vm, new_id + 1)
            now = int(time.time())
            vm = _VM(
                id=new_id,
                name=name or f"vm-{new_id}",
                state=vm_state,
                lcm=lcm,
                disks=built,
                system_ds=sys_ds.id,
                stime=now,
                uuid=str(uuid.uuid4()),
                prev_state=vm_state,
                prev_lcm=lcm,
            )
            if vm_state not in (VmState.PENDING, VmState.HOLD):
                vm.history.append(_History(seq=0, stime=now))
            if vm_state is VmState.DONE:
                vm.etime = now
            if vm_state in (VmState.STOPPED, VmState.UNDEPLOYED):
                vm.last_action = "stop" if vm_state is VmState.STOPPED else "undeploy"
            self._vms[new_id] = vm
            self._transitions[new_id] = [vm.state_str()]
            if vm_state is VmState.PENDING and self._scheduler:
                self._schedule(vm, time.monotonic())
                self._cond.notify_all()
            return new_id

    def add_service(
        self,
        name: str,
        roles: Mapping[str, Sequence[int]],
        *,
        parents: Mapping[str, Sequence[str]] | None = None,
        deployment: str = "straight",
        ready_status_gate: bool = False,
    ) -> int:
        """Store a running OneFlow service as oneflow-server does: a document of type 100 owned
        by oneadmin, its ``TEMPLATE/BODY`` the service's JSON (src/flow/lib/models/service.rb,
        role.rb: each node ``{"deploy_id": <vm id>, "vm_info": {"VM": {...}}}``, the VM fields
        as strings). Returns the document id.

        Args:
            name: the service's name (the document's ``NAME``).
            roles: role name -> the ids of its VMs (its nodes), in the service's role order.
            parents: role name -> its parent roles (deployed first with ``straight``).
            deployment: ``"straight"`` or ``"none"``.
            ready_status_gate: OneFlow waits for each VM's ``READY=YES`` (OneGate).

        Raises:
            ValueError: an unknown VM.
        """
        with self._lock:
            body_roles = []
            for template_id, (role, vm_ids) in enumerate(roles.items()):
                nodes = []
                for vm_id in vm_ids:
                    vm = self._vm(vm_id)
                    nodes.append({"deploy_id": vm_id, "vm_info": {"VM": {
                        "ID": str(vm_id), "UID": "0", "GID": "0", "UNAME": "oneadmin",
                        "GNAME": "oneadmin", "NAME": vm.name}}})
                entry: dict[str, Any] = {"name": role, "type": "vm", "cardinality": len(nodes),
                                         "template_id": template_id}
                if (parents or {}).get(role):
                    entry["parents"] = list((parents or {})[role])
                entry.update({"state": 2, "nodes": nodes, "on_hold": False,
                              "template_contents": {}, "last_vmname": len(nodes)})
                body_roles.append(entry)
            now = int(time.time())
            body = {"name": name, "deployment": deployment, "description": "",
                    "ready_status_gate": ready_status_gate, "registration_time": now,
                    "state": 2, "start_time": now, "roles": body_roles,
                    "log": [{"timestamp": now, "severity": "I", "message": "New state: RUNNING"}]}
            doc_id = max(self._documents, default=-1) + 1
            self._documents[doc_id] = _Document(doc_id, name, 100, json.dumps(body))
            return doc_id

    def documentpool_info(self, user: _User, filter_flag: int, start: int, end: int,
                          doc_type: int) -> str:
        """DocumentPoolAPI (src/rm/xml-rpc/DocumentXRPC.cc, PoolSharedAPI::dump): the documents
        of type ``doc_type`` (an exact match), newest first (API_LIST_ORDER's default, DESC);
        oneadmin's documents (permissions 1,1,0 / 0,0,0 / 0,0,0) only for an administrator.
        An empty pool is ``<DOCUMENT_POOL></DOCUMENT_POOL>`` (PoolSQL::dump)."""
        if filter_flag < -4:
            raise _Reply(ErrorCode.RPC_API, "[one.documentpool.info] Incorrect filter_flag")
        with self._lock:
            chosen = [d for _, d in sorted(self._documents.items(), reverse=True)
                      if d.type == doc_type and user.admin]
            rows = "".join(
                "<DOCUMENT>" + _el("ID", d.id) + _OWNER + _el("NAME", d.name)
                + _el("TYPE", d.type) + _permissions()
                + _group("TEMPLATE", _el("BODY", d.body, cdata=True)) + "</DOCUMENT>"
                for d in _page(chosen, start, end))
            return f"<DOCUMENT_POOL>{rows}</DOCUMENT_POOL>"

    def guest_reports_ready(self, vm_id: int, after: float = 0.0) -> None:
        """Model a guest with ``REPORT_READY="YES"`` in its context: ``after`` seconds into each
        boot (each entry into RUNNING) it reports ``READY=YES`` through OneGate."""
        with self._lock:
            vm = self._vm(vm_id)
            vm.reports_ready = after
            if (vm.state, vm.lcm) == (VmState.ACTIVE, LcmState.RUNNING):
                vm.user["READY"] = "YES"  # it booted, and reported, before

    def vm_update(self, user: _User, vm_id: int, text: str, update_type: int) -> int:
        """SharedAPI::update on a VM's user template (src/rm/api/SharedAPI.cc): type 0 replaces
        it, 1 merges into it (VirtualMachine::append_template), in any state; names are upper
        case (Attribute's constructor). Only single attributes (``NAME = "value"``, one per
        line) are modelled."""
        if update_type not in (0, 1):
            raise _Reply(ErrorCode.RPC_API, "[one.vm.update] Wrong update type")
        with self._lock:
            vm = self._vms.get(vm_id)
            if vm is None:
                raise _Reply(ErrorCode.NO_EXISTS,
                             f"[one.vm.update] Error getting virtual machine [{vm_id}].", vm_id)
            parsed: dict[str, str] = {}
            for line in text.splitlines():
                if not line.strip():
                    continue
                match = re.fullmatch(r'\s*(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^"\[\s]*))\s*',
                                     line)
                if match is None:
                    raise _Reply(ErrorCode.INTERNAL, "[one.vm.update] Cannot update template. "
                                 f"(the stand-in models single attributes only: {line!r})")
                value = match.group(2) if match.group(2) is not None else match.group(3)
                parsed[match.group(1).upper()] = re.sub(r"\\(.)", r"\1", value)
            if update_type == 0:
                vm.user = parsed
            else:
                vm.user.update(parsed)
            return vm_id

    # --- inspection ----------------------------------------------------------------------

    def vm_state(self, vm_id: int) -> tuple[str, str]:
        """``(STATE, LCM_STATE)`` names of a VM, e.g. ``("ACTIVE", "SHUTDOWN")``."""
        with self._lock:
            vm = self._vm(vm_id)
            return vm.state.name, vm.lcm.name

    def transitions(self, vm_id: int) -> list[str]:
        """Every state the VM has been in, oned-style (LCM name when ACTIVE), oldest first."""
        with self._lock:
            self._vm(vm_id)
            return list(self._transitions[vm_id])

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until no transition is pending (for tests that check final states)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if not any(vm.plan or vm.busy for vm in self._vms.values()):
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: transitions still pending after {timeout}s")
            time.sleep(0.01)

    # --- the state machine ----------------------------------------------------------------

    def _plan(self, vm: _VM, steps: Sequence[_PlanStep]) -> None:
        """Queue ``steps`` of (delay after the previous one, state, lcm, delete disks[, the
        driver's error on entering it]).

        The first change happens after the dispatch delay; with none, at once, so that a read
        right after the accepted call already sees it (oned's LCM is that quick)."""
        now = time.monotonic()
        due = now + self._delays.dispatch
        vm.plan = []
        for planned in steps:
            due += planned[0]
            error = planned[4] if len(planned) > 4 else ""
            vm.plan.append(_Step(due, planned[1], planned[2], planned[3], error))
        if vm.plan and vm.plan[0].due <= now and not vm.plan[0].delete_disks:
            first = vm.plan.pop(0)
            self._enter(vm, first.state, first.lcm, first.error)
        self._cond.notify_all()

    def _enter(self, vm: _VM, state: VmState, lcm: LcmState, error: str = "") -> None:
        if error:
            # VirtualMachineManager::log_error: the driver's failure, stamped with ctime().
            vm.error = f"{time.ctime()}: {error}"
        if (state, lcm) == (vm.state, vm.lcm):
            return
        vm.prev_state, vm.prev_lcm = vm.state, vm.lcm
        vm.state = state
        vm.lcm = lcm if state is VmState.ACTIVE else LcmState.LCM_INIT
        now = int(time.time())
        if state is VmState.DONE:
            vm.etime = now
            if vm.history:
                vm.history[-1].etime = now
        if state is VmState.PENDING and self._scheduler:
            self._schedule(vm, time.monotonic())
        if (state, lcm) == (VmState.ACTIVE, LcmState.RUNNING) and vm.reports_ready is not None:
            self._report_ready_later(vm)
        self._transitions[vm.id].append(vm.state_str())
        log.info("%s: VM %d is now %s", self.name, vm.id, vm.state_str())

    def _report_ready_later(self, vm: _VM) -> None:
        """The guest's boot ends with OneGate's ``PUT /vm`` of ``READY=YES``, which
        onegate-server turns into ``one.vm.update(id, 'READY="YES"', 1)``."""
        boot = len(self._transitions[vm.id])

        def report() -> None:
            with self._lock:
                # Only if it still runs the boot that reports (no shutdown in between).
                if (vm.state, vm.lcm) == (VmState.ACTIVE, LcmState.RUNNING) and len(
                        self._transitions[vm.id]) == boot + 1:
                    vm.user["READY"] = "YES"

        timer = threading.Timer(vm.reports_ready or 0.0, report)
        timer.daemon = True
        timer.start()

    def _schedule(self, vm: _VM, now: float) -> None:
        d = self._delays
        if vm.last_action == "stop":
            prolog, boot = LcmState.PROLOG_RESUME, LcmState.BOOT_STOPPED
        elif vm.last_action in ("undeploy", "undeploy-hard"):
            prolog, boot = LcmState.PROLOG_UNDEPLOY, LcmState.BOOT_UNDEPLOY
        else:
            prolog, boot = LcmState.PROLOG, LcmState.BOOT
        due = now + d.schedule
        vm.plan = [
            _Step(due, VmState.ACTIVE, prolog),
            _Step(due + d.prolog, VmState.ACTIVE, boot),
            _Step(due + d.prolog + d.boot, VmState.ACTIVE, LcmState.RUNNING),
        ]
        self._cond.notify_all()

    def _run_transitions(self) -> None:
        """The LCM: apply due steps; run disk deletions outside the lock, as a driver would."""
        while True:
            with self._cond:
                effects: list[tuple[_VM, _Step]] = []
                while not self._closing:
                    now = time.monotonic()
                    effects = self._apply_due(now)
                    if effects:
                        break
                    due = [vm.plan[0].due for vm in self._vms.values() if vm.plan and not vm.busy]
                    self._cond.wait(max(min(due) - now, 0.0) if due else None)
                if self._closing:
                    return
            for vm, step in effects:
                ok = self._delete_disks(vm)
                with self._cond:
                    vm.busy = False
                    # oned's cleanup after a failure ends in DONE even if the driver fails.
                    if ok or vm.lcm is LcmState.CLEANUP_DELETE:
                        self._enter(vm, step.state, step.lcm)
                    else:
                        vm.plan.clear()
                        self._enter(vm, VmState.ACTIVE, LcmState.EPILOG_FAILURE)
                    self._cond.notify_all()

    def _apply_due(self, now: float) -> list[tuple[_VM, _Step]]:
        effects = []
        for vm in self._vms.values():
            while vm.plan and not vm.busy and vm.plan[0].due <= now:
                step = vm.plan.pop(0)
                if step.delete_disks:
                    vm.busy = True
                    effects.append((vm, step))
                    break
                self._enter(vm, step.state, step.lcm, step.error)
        return effects

    def _delete_disks(self, vm: _VM) -> bool:
        """The ceph TM ``delete`` of each disk: clones and volatile disks only (CLONE=NO is
        kept), and only RBD ones (an ssh-mode copy lives on the host)."""
        for disk in vm.disks:
            attrs = disk.attrs
            if attrs.get("TM_MAD") != "ceph" or attrs.get("DISK_TYPE") != "RBD":
                continue
            if attrs.get("CLONE") == "NO":
                continue
            if attrs.get("SOURCE"):
                pool, _, base = attrs["SOURCE"].partition("/")
                image = f"{base}-{vm.id}-{disk.disk_id}"
            else:
                pool = attrs.get("POOL_NAME") or "one"
                image = f"one-sys-{vm.id}-{disk.disk_id}"
            log.info("%s: VM %d epilog: deleting RBD image %s/%s", self.name, vm.id, pool, image)
            if self.delete_rbd_image is not None:
                try:
                    self.delete_rbd_image(pool, image)
                except Exception:
                    log.exception("%s: VM %d: deleting %s/%s failed", self.name, vm.id, pool, image)
                    return False
            with self._lock:
                self.deleted_images.append((pool, image))
        return True

    # --- XML-RPC methods (called by _Dispatcher, under no lock) ----------------------------

    def _authenticate(self, method: str, session: object) -> _User:
        user_name, _, password = str(session).partition(":")
        user = self._users.get(user_name)
        if self._reject_credentials or user is None or user.password != password:
            raise _Reply(
                ErrorCode.AUTHENTICATION,
                f"[{method}] User couldn't be authenticated, aborting call.",
            )
        return user

    def vm_info(self, user: _User, vm_id: int) -> str:
        with self._lock:
            vm = self._vms.get(vm_id)
            if vm is None:
                raise _Reply(
                    ErrorCode.NO_EXISTS,
                    f"[one.vm.info] Error getting virtual machine [{vm_id}].",
                    vm_id,
                )
            return self._vm_xml(vm, monitoring=True)

    def vmpool_info(
        self, method: str, filter_flag: int, start: int, end: int, state: int, extended: bool
    ) -> str:
        if filter_flag < -4:
            raise _Reply(ErrorCode.RPC_API, f"[{method}] Incorrect filter_flag")
        if state < -2 or state > int(VmState.CLONING_FAILURE):
            raise _Reply(ErrorCode.RPC_API, f"[{method}] Incorrect state filter {state}")
        with self._lock:
            vms = [
                vm
                for vm in self._vms.values()
                if (state == -2)
                or (state == -1 and vm.state is not VmState.DONE)
                or (state >= 0 and vm.state == state)
            ]
            return self._pool_xml(_page(sorted(vms, key=lambda v: v.id, reverse=True), start, end),
                                  extended)

    def _pool_xml(self, chosen: list[_VM], extended: bool) -> str:
        if extended:
            body = "".join(self._vm_xml(vm, monitoring=False) for vm in chosen)
        else:
            body = "".join(self._vm_short_xml(vm) for vm in chosen)
        return _group("VM_POOL", body)

    def vmpool_infoset(self, ids: str, extended: bool) -> str:
        """VirtualMachinePoolAPI::info_set (src/rm/api/VirtualMachinePoolAPI.cc): the VMs whose
        ids the comma-separated ``ids`` names, in any state, newest first (API_LIST_ORDER's
        default); tokens that are not numbers are skipped (one_util::split_unique), no id at
        all answers an empty pool."""
        wanted = set()
        for token in ids.split(","):
            match = re.match(r"\s*\+?(\d+)", token)
            if match:
                wanted.add(int(match.group(1)))
        with self._lock:
            return self._pool_xml(sorted((vm for vm in self._vms.values() if vm.id in wanted),
                                         key=lambda v: v.id, reverse=True), extended)

    def vm_action(self, user: _User, action: str, vm_id: int) -> int:
        with self._cond:
            vm = self._vms.get(vm_id)
            if vm is None:
                raise _Reply(
                    ErrorCode.NO_EXISTS,
                    f"[one.vm.action] Error getting virtual machine [{vm_id}].",
                    vm_id,
                )
            if not user.admin:
                raise _Reply(
                    ErrorCode.AUTHORIZATION,
                    f"[one.vm.action] User [{user.id}] : Not authorized to perform MANAGE VM "
                    f"[{vm_id}].",
                )
            handler = _ACTIONS.get(action)
            if handler is None:
                if action in _KNOWN_UNMODELLED:
                    raise _Reply(
                        ErrorCode.INTERNAL,
                        f'[one.vm.action] the oned stand-in does not model action "{action}"',
                    )
                raise _Reply(
                    ErrorCode.ACTION, f'[one.vm.action] Action "{action}" is not supported'
                )
            try:
                handler(self, vm, action)
            except _WrongState as exc:
                self.actions.append((vm_id, action, False))
                raise _Reply(
                    ErrorCode.ACTION,
                    f'[one.vm.action] Error performing action "{action}": {exc}',
                ) from None
            self.actions.append((vm_id, action, True))
            log.info("%s: VM %d: %s accepted", self.name, vm_id, action)
            return vm_id

    def vm_recover(self, user: _User, vm_id: int, operation: int) -> int:
        """``one.vm.recover`` (VirtualMachineAPI::recover): operation 3, ``delete``, as
        DispatchManager::delete_vm does it: an ACTIVE VM is cleaned up (the TM ``delete`` of
        its clones and volatile disks, no EPILOG copy-back) and DONE; a POWEROFF, SUSPENDED,
        STOPPED or UNDEPLOYED VM goes through the epilog delete to DONE; a PENDING or HOLD one
        is freed at once. The other operations are not modelled."""
        with self._cond:
            vm = self._vms.get(vm_id)
            if vm is None:
                raise _Reply(ErrorCode.NO_EXISTS,
                             f"[one.vm.recover] Error getting virtual machine [{vm_id}].", vm_id)
            if not 0 <= operation <= 5:
                raise _Reply(ErrorCode.RPC_API, "[one.vm.recover] Wrong recovery operation code")
            if not user.admin:
                raise _Reply(ErrorCode.AUTHORIZATION,
                             f"[one.vm.recover] User [{user.id}] : Not authorized to perform "
                             f"ADMIN VM [{vm_id}].")
            if operation != 3:
                raise _Reply(ErrorCode.INTERNAL, "[one.vm.recover] the oned stand-in models "
                             "only operation 3 (delete)")
            d = self._delays
            done = (d.epilog, VmState.DONE, LcmState.LCM_INIT, True)
            if vm.state is VmState.ACTIVE:
                self._plan(vm, [(0.0, VmState.ACTIVE, LcmState.CLEANUP_DELETE, False), done])
            elif vm.state in (VmState.SUSPENDED, VmState.POWEROFF, VmState.STOPPED,
                              VmState.UNDEPLOYED):
                self._plan(vm, [done])
            elif vm.state is not VmState.DONE:
                vm.plan.clear()
                self._enter(vm, VmState.DONE, LcmState.LCM_INIT)
            self.actions.append((vm_id, "recover-delete", True))
            return vm_id

    def image_info(self, image_id: int) -> str:
        with self._lock:
            image = self._images.get(image_id)
            if image is None:
                raise _Reply(
                    ErrorCode.NO_EXISTS,
                    f"[one.image.info] Error getting image [{image_id}].",
                    image_id,
                )
            return self._image_xml(image)

    def imagepool_info(self, filter_flag: int, start: int, end: int) -> str:
        if filter_flag < -4:
            raise _Reply(ErrorCode.RPC_API, "[one.imagepool.info] Incorrect filter_flag")
        with self._lock:
            images = sorted(self._images.values(), key=lambda i: i.id, reverse=True)
            return _group("IMAGE_POOL", *(self._image_xml(i) for i in _page(images, start, end)))

    def datastore_info(self, ds_id: int) -> str:
        with self._lock:
            ds = self._datastores.get(ds_id)
            if ds is None:
                raise _Reply(
                    ErrorCode.NO_EXISTS,
                    f"[one.datastore.info] Error getting datastore [{ds_id}].",
                    ds_id,
                )
            return self._datastore_xml(ds)

    # --- actions (under the lock) -----------------------------------------------------------

    def _shutdown_steps(
        self, vm: _VM, hard: bool, lcm: LcmState, then: list[_PlanStep]
    ) -> list[_PlanStep]:
        d = self._delays
        first = (0.0, VmState.ACTIVE, lcm, False)
        if hard:
            return [first, (d.cancel, *then[0][1:]), *then[1:]]
        if vm.ignore_shutdown:
            if vm.shutdown_destroyed_after is not None:
                return [first, (vm.shutdown_destroyed_after, *then[0][1:]), *then[1:]]
            if vm.shutdown_fails_after is None:
                return [first]
            return [first, (vm.shutdown_fails_after, VmState.ACTIVE, LcmState.RUNNING, False,
                            f"SHUTDOWN: Timeout reached and VM one-{vm.id} is still alive")]
        return [first, (d.shutdown, *then[0][1:]), *then[1:]]

    def _do_terminate(self, vm: _VM, action: str) -> None:
        hard = action == "terminate-hard"
        d = self._delays
        done = (d.epilog, VmState.DONE, LcmState.LCM_INIT, True)
        if vm.state in (VmState.SUSPENDED, VmState.POWEROFF, VmState.STOPPED, VmState.UNDEPLOYED):
            self._plan(vm, [(0.0, VmState.ACTIVE, LcmState.EPILOG, False), done])
        elif vm.state in (
            VmState.INIT,
            VmState.PENDING,
            VmState.HOLD,
            VmState.CLONING,
            VmState.CLONING_FAILURE,
        ):
            # DispatchManager frees the VM synchronously: no epilog, no driver call.
            vm.plan.clear()
            self._enter(vm, VmState.DONE, LcmState.LCM_INIT)
        elif vm.state is VmState.DONE:
            pass
        elif vm.lcm in (LcmState.RUNNING, LcmState.UNKNOWN) or (
            hard and vm.lcm is LcmState.SHUTDOWN
        ):
            if vm.lcm is LcmState.SHUTDOWN:
                self._plan(vm, [(d.cancel, VmState.ACTIVE, LcmState.EPILOG, False), done])
            else:
                self._plan(
                    vm,
                    self._shutdown_steps(
                        vm,
                        hard,
                        LcmState.SHUTDOWN,
                        [(0, VmState.ACTIVE, LcmState.EPILOG, False), done],
                    ),
                )
        elif vm.lcm in _FAILURE_STATES:
            self._plan(
                vm,
                [
                    (0.0, VmState.ACTIVE, LcmState.CLEANUP_DELETE, False),
                    (d.epilog, VmState.DONE, LcmState.LCM_INIT, True),
                ],
            )
        else:
            raise _WrongState(f"Could not terminate VM {vm.id}, wrong state {vm.state_str()}.")

    def _do_poweroff(self, vm: _VM, action: str) -> None:
        hard = action == "poweroff-hard"
        d = self._delays
        if vm.state is VmState.ACTIVE and vm.lcm in (LcmState.RUNNING, LcmState.UNKNOWN):
            self._plan(
                vm,
                self._shutdown_steps(
                    vm,
                    hard,
                    LcmState.SHUTDOWN_POWEROFF,
                    [(0, VmState.POWEROFF, LcmState.LCM_INIT, False)],
                ),
            )
        elif hard and vm.state is VmState.ACTIVE and vm.lcm is LcmState.SHUTDOWN_POWEROFF:
            self._plan(vm, [(d.cancel, VmState.POWEROFF, LcmState.LCM_INIT, False)])
        else:
            raise _not_available(vm)

    def _do_undeploy(self, vm: _VM, action: str) -> None:
        hard = action == "undeploy-hard"
        d = self._delays
        epilog: list[_PlanStep] = [
            (0, VmState.ACTIVE, LcmState.EPILOG_UNDEPLOY, False),
            (d.epilog, VmState.UNDEPLOYED, LcmState.LCM_INIT, False),
        ]
        if vm.state is VmState.ACTIVE and vm.lcm in (LcmState.RUNNING, LcmState.UNKNOWN):
            self._plan(vm, self._shutdown_steps(vm, hard, LcmState.SHUTDOWN_UNDEPLOY, epilog))
        elif vm.state is VmState.POWEROFF:
            self._plan(vm, epilog)
        elif hard and vm.state is VmState.ACTIVE and vm.lcm is LcmState.SHUTDOWN_UNDEPLOY:
            self._plan(vm, [(d.cancel, *epilog[0][1:]), epilog[1]])
        else:
            raise _not_available(vm)
        vm.last_action = action

    def _do_suspend(self, vm: _VM, action: str) -> None:
        if not (vm.state is VmState.ACTIVE and vm.lcm is LcmState.RUNNING):
            raise _not_available(vm)
        self._plan(
            vm,
            [
                (0.0, VmState.ACTIVE, LcmState.SAVE_SUSPEND, False),
                (self._delays.save, VmState.SUSPENDED, LcmState.LCM_INIT, False),
            ],
        )

    def _do_stop(self, vm: _VM, action: str) -> None:
        d = self._delays
        epilog = [
            (0.0, VmState.ACTIVE, LcmState.EPILOG_STOP, False),
            (d.epilog, VmState.STOPPED, LcmState.LCM_INIT, False),
        ]
        if vm.state is VmState.ACTIVE and vm.lcm is LcmState.RUNNING:
            self._plan(
                vm,
                [
                    (0.0, VmState.ACTIVE, LcmState.SAVE_STOP, False),
                    (d.save, *epilog[0][1:]),
                    epilog[1],
                ],
            )
        elif vm.state is VmState.SUSPENDED:
            self._plan(vm, epilog)
        else:
            raise _not_available(vm)
        vm.last_action = action

    def _do_resume(self, vm: _VM, action: str) -> None:
        d = self._delays
        if vm.state in (VmState.STOPPED, VmState.UNDEPLOYED):
            # DispatchManager sets PENDING itself; the scheduler takes it from there.
            vm.plan.clear()
            self._enter(vm, VmState.PENDING, LcmState.LCM_INIT)
            vm.history.append(_History(seq=len(vm.history), stime=int(time.time())))
        elif vm.state in (VmState.SUSPENDED, VmState.POWEROFF) or (
            vm.state is VmState.ACTIVE and vm.lcm is LcmState.UNKNOWN
        ):
            boot = {VmState.SUSPENDED: LcmState.BOOT_SUSPENDED,
                    VmState.POWEROFF: LcmState.BOOT_POWEROFF}.get(vm.state, LcmState.BOOT_UNKNOWN)
            if vm.boot_fails is not None:
                # LifeCycleManager::deploy_failure_action: back to where it came from.
                back = (d.boot, vm.state, vm.lcm, False, f"DEPLOY: {vm.boot_fails}")
                vm.boot_fails = None
                self._plan(vm, [(0.0, VmState.ACTIVE, boot, False), back])
                return
            self._plan(
                vm,
                [
                    (0.0, VmState.ACTIVE, boot, False),
                    (d.boot, VmState.ACTIVE, LcmState.RUNNING, False),
                ],
            )
        else:
            raise _not_available(vm)

    def _do_hold(self, vm: _VM, action: str) -> None:
        if vm.state is not VmState.PENDING:
            raise _not_available(vm)
        vm.plan.clear()
        self._enter(vm, VmState.HOLD, LcmState.LCM_INIT)

    def _do_release(self, vm: _VM, action: str) -> None:
        if vm.state is not VmState.HOLD:
            raise _not_available(vm)
        self._enter(vm, VmState.PENDING, LcmState.LCM_INIT)

    # --- records -> XML ---------------------------------------------------------------------

    def _vm_xml(self, vm: _VM, *, monitoring: bool) -> str:
        deployed = bool(vm.history)
        template: dict[str, Any] = {
            "AUTOMATIC_DS_REQUIREMENTS": '("CLUSTERS/ID" @> 0)',
            "AUTOMATIC_NIC_REQUIREMENTS": '("CLUSTERS/ID" @> 0)',
            "AUTOMATIC_REQUIREMENTS": "(CLUSTER_ID = 0) & !(PIN_POLICY = PINNED)",
            "CPU": "0.1",
            "MEMORY": "128",
            "TEMPLATE_ID": "0",
            "TM_MAD_SYSTEM": self._datastores[vm.system_ds].tm_mad,
            "VCPU": "1",
            "VMID": str(vm.id),
        }
        parts: list[str] = []
        for key in sorted([*template, "DISK", "OS"]):
            if key == "DISK":
                parts.extend(_group("DISK", _attrs(disk.attrs)) for disk in vm.disks)
            elif key == "OS":
                parts.append(_group("OS", _attrs({"MACHINE": "q35", "UUID": vm.uuid})))
            else:
                parts.append(_el(key, template[key], cdata=True))
        if monitoring and deployed and vm.state is not VmState.DONE:
            mon = _group(
                "MONITORING",
                _attrs(
                    {
                        "CPU": 0,
                        "DISKRDBYTES": 579,
                        "DISKRDIOPS": 521,
                        "DISKWRBYTES": 947,
                        "DISKWRIOPS": 154,
                        "ID": vm.id,
                        "MEMORY": 45875,
                        "NETRX": 5467,
                        "NETTX": 5417,
                        "TIMESTAMP": int(time.time()),
                    }
                ),
            )
        else:
            mon = "<MONITORING/>"
        return _group(
            "VM",
            _el("ID", vm.id),
            _OWNER,
            _el("NAME", vm.name),
            _permissions(),
            _el("LAST_POLL", int(time.time()) if monitoring and deployed else 0),
            _el("STATE", int(vm.state)),
            _el("LCM_STATE", int(vm.lcm)),
            _el("PREV_STATE", int(vm.prev_state)),
            _el("PREV_LCM_STATE", int(vm.prev_lcm)),
            _el("RESCHED", 0),
            _el("STIME", vm.stime),
            _el("ETIME", vm.etime),
            _el("DEPLOY_ID", f"localhost:{vm.name}:dummy" if deployed else None),
            mon,
            "<SCHED_ACTIONS/>",
            _group("TEMPLATE", *parts),
            self._user_template_xml(vm),
            _group("HISTORY_RECORDS", *(self._history_xml(vm, h) for h in vm.history)),
            "<BACKUPS><BACKUP_CONFIG/><BACKUP_IDS/></BACKUPS>",
        )

    @staticmethod
    def _user_template_xml(vm: _VM) -> str:
        # A template's attributes come out in name order (oned's multimap).
        attrs = {"SCHED_DS_REQUIREMENTS": f"ID={vm.system_ds}", **vm.user}
        if vm.error:
            attrs["ERROR"] = vm.error
        return _group("USER_TEMPLATE", _attrs(attrs))

    def _history_xml(self, vm: _VM, h: _History) -> str:
        return _group(
            "HISTORY",
            _el("OID", vm.id),
            _el("SEQ", h.seq),
            _el("HOSTNAME", "localhost"),
            _el("HID", 0),
            _el("CID", 0),
            _el("STIME", h.stime),
            _el("ETIME", h.etime),
            _el("VM_MAD", "dummy", cdata=True),
            _el("TM_MAD", self._datastores[vm.system_ds].tm_mad, cdata=True),
            _el("DS_ID", vm.system_ds),
            _el("PLAN_ID", -1),
            _el("ACTION_ID", 0),
            _el("PSTIME", h.stime),
            _el("PETIME", h.stime),
            _el("RSTIME", h.stime),
            _el("RETIME", h.etime),
            _el("ESTIME", 0),
            _el("EETIME", 0),
            _el("ACTION", h.action),
            _el("UID", -1),
            _el("GID", -1),
            _el("REQUEST_ID", -1),
        )

    def _vm_short_xml(self, vm: _VM) -> str:
        # one.vmpool.info: a fixed subset; disks lose SOURCE, POOL_NAME, CEPH_*, PERSISTENT.
        disks = [
            _group("DISK", *(_el(k, d.attrs.get(k), cdata=True) for k in _SHORT_DISK_KEYS))
            for d in vm.disks
        ]
        history = [
            _group(
                "HISTORY",
                _el("OID", vm.id),
                _el("SEQ", h.seq),
                _el("HOSTNAME", "localhost", cdata=True),
                _el("HID", 0),
                _el("CID", 0),
                _el("DS_ID", vm.system_ds),
                _el("VM_MAD", "dummy", cdata=True),
                _el("TM_MAD", self._datastores[vm.system_ds].tm_mad, cdata=True),
                _el("ACTION", h.action, cdata=True),
            )
            for h in vm.history
        ]
        return _group(
            "VM",
            _el("ID", vm.id),
            _OWNER,
            _el("NAME", vm.name),
            _el("LAST_POLL", 0),
            _el("STATE", int(vm.state)),
            _el("LCM_STATE", int(vm.lcm)),
            _el("RESCHED", 0),
            _el("STIME", vm.stime),
            _el("ETIME", vm.etime),
            _el("DEPLOY_ID", f"localhost:{vm.name}:dummy" if vm.history else None),
            _group("TEMPLATE", _el("CPU", "0.1"), _el("MEMORY", 128), _el("VCPU", 1), *disks),
            "<MONITORING/>",
            self._user_template_xml(vm),
            _group("HISTORY_RECORDS", *history),
        )

    def _image_xml(self, image: _Image) -> str:
        users = self._live_users(image.id)
        if not users:
            state = 1  # READY
        else:
            state = 8 if image.persistent else 2  # USED_PERS / USED
        ds = self._datastores[image.datastore_id]
        return _group(
            "IMAGE",
            _el("ID", image.id),
            _OWNER,
            _el("NAME", image.name),
            _permissions(),
            _el("TYPE", _IMAGE_TYPES[image.type]),
            _el("DISK_TYPE", 3 if ds.is_ceph else 0),
            _el("PERSISTENT", int(image.persistent)),
            _el("REGTIME", image.regtime),
            _el("MODTIME", image.regtime),
            _el("SOURCE", image.source, cdata=True),
            "<PATH/>",
            _el("FORMAT", "raw", cdata=True),
            "<FS/>",
            _el("SIZE", image.size),
            _el("STATE", state),
            _el("PREV_STATE", state),
            _el("RUNNING_VMS", len(users)),
            _el("CLONING_OPS", 0),
            _el("CLONING_ID", -1),
            _el("TARGET_SNAPSHOT", -1),
            _el("DATASTORE_ID", ds.id),
            _el("DATASTORE", ds.name),
            _group("VMS", *(_el("ID", u) for u in sorted(users))),
            "<CLONES/><APP_CLONES/>",
            _group("TEMPLATE", _attrs({"DEV_PREFIX": "sd", "DRIVER": "raw"}
                                      | ({"PERSISTENT_TYPE": image.persistent_type}
                                         if image.persistent_type else {}))),
            _group(
                "SNAPSHOTS",
                _attrs({"ALLOW_ORPHANS": "NO", "CURRENT_BASE": -1, "NEXT_SNAPSHOT": 0}),
            ),
            "<BACKUP_INCREMENTS/><BACKUP_DISK_IDS/>",
        )

    def _datastore_xml(self, ds: _Datastore) -> str:
        images = sorted(i.id for i in self._images.values() if i.datastore_id == ds.id)
        ds_type = 1 if ds.system else 0
        return _group(
            "DATASTORE",
            _el("ID", ds.id),
            _OWNER,
            _el("NAME", ds.name),
            _permissions(group_u=1),
            _el("DS_MAD", ds.ds_mad, cdata=True),
            _el("TM_MAD", ds.tm_mad, cdata=True),
            _el("BASE_PATH", f"/var/lib/one//datastores/{ds.id}", cdata=True),
            _el("TYPE", ds_type),
            _el("DISK_TYPE", 3 if ds.is_ceph else 0),
            _el("STATE", 0),
            _group("CLUSTERS", _el("ID", 0)),
            _el("TOTAL_MB", 20480),
            _el("FREE_MB", 10760),
            _el("USED_MB", 9720),
            _group("IMAGES", *(_el("ID", i) for i in images)),
            _group("TEMPLATE", _attrs(ds.template)),
        )

    # --- helpers ----------------------------------------------------------------------------

    def _add_default_datastores(self, ceph_pool: str) -> None:
        self.add_datastore("system", system=True, ceph_pool=None, datastore_id=0)
        self.add_datastore("default", ceph_pool=None, datastore_id=1)
        self._datastores[2] = _Datastore(2, "files", False, "fs", "ssh", {"TYPE": "FILE_DS"})
        self.add_datastore("ceph_img", ceph_pool=ceph_pool, datastore_id=100)
        self.add_datastore("ceph_sys", system=True, ceph_pool=ceph_pool, datastore_id=101)

    @staticmethod
    def _ceph_datastore(ds_id: int, name: str, system: bool, pool: str) -> _Datastore:
        template = {
            "ALLOW_ORPHANS": "mixed",
            "BRIDGE_LIST": "localhost",
            "CEPH_CONF": "/etc/ceph/ceph.conf",
            "CEPH_HOST": "ceph-mon-1:6789 ceph-mon-2:6789 ceph-mon-3:6789",
            "CEPH_SECRET": "6f0b1b5e-3b0a-4d0e-9f57-2f7c7d0a1c11",
            "CEPH_USER": "libvirt",
            "DISK_TYPE": "RBD",
            "PERSISTENT_SNAPSHOTS": "YES",
            "RESTRICTED_DIRS": "/",
            "SAFE_DIRS": "/var/tmp",
            "TM_MAD": "ceph",
        }
        if pool:
            template["POOL_NAME"] = pool
        if system:
            template |= {
                "DS_LIVE_MIGRATE": "NO",
                "DS_MIGRATE": "NO",
                "DS_MIGRATE_SNAP": "NO",
                "SHARED": "YES",
                "TYPE": "SYSTEM_DS",
            }
        else:
            template |= {
                "CLONE_TARGET": "SELF",
                "CLONE_TARGET_SSH": "SYSTEM",
                "DISK_TYPE_SSH": "FILE",
                "DRIVER": "raw",
                "DS_MAD": "ceph",
                "LN_TARGET": "NONE",
                "LN_TARGET_SSH": "SYSTEM",
                "TM_MAD_SYSTEM": "ssh",
                "TYPE": "IMAGE_DS",
            }
        return _Datastore(ds_id, name, system, "-" if system else "ceph", "ceph", template)

    def _image_attrs(self, disk_id: int, image: _Image, sys_ds: _Datastore) -> dict[str, str]:
        ds = self._datastores[image.datastore_id]
        # Image::disk_attribute (src/image/Image.cc): a CDROM or IMMUTABLE image is attached
        # itself, read-only, with no PERSISTENT; otherwise persistence decides CLONE and SAVE.
        shared_image = image.persistent or image.read_only
        attrs = {
            "CLONE": "NO" if shared_image else "YES",
            "CLUSTER_ID": "0",
            "DATASTORE": ds.name,
            "DATASTORE_ID": str(ds.id),
            "DEV_PREFIX": "sd",
            "DISK_ID": str(disk_id),
            "DISK_SNAPSHOT_TOTAL_SIZE": "0",
            "DRIVER": "raw",
            "FORMAT": "raw",
            "IMAGE": image.name,
            "IMAGE_ID": str(image.id),
            "IMAGE_STATE": "8" if image.persistent else "2",
            "ORIGINAL_SIZE": str(image.size),
            "READONLY": "YES" if image.read_only else "NO",
            "SAVE": "YES" if image.persistent and not image.read_only else "NO",
            "SIZE": str(image.size),
            "SOURCE": image.source,
            "TARGET": _target(disk_id),
            "TM_MAD": ds.tm_mad,
        }
        if image.persistent and not image.read_only:
            attrs["PERSISTENT"] = "YES"
            if image.shareable:
                attrs["SHAREABLE"] = "YES"
        if ds.is_ceph:
            attrs |= _ceph_disk_attrs(ds)
            # In ssh mode (non-ceph system datastore) the image is copied to the host.
            ssh_mode = not sys_ds.is_ceph
            attrs["CLONE_TARGET"] = "SYSTEM" if ssh_mode else "SELF"
            attrs["LN_TARGET"] = "SYSTEM" if ssh_mode else "NONE"
            attrs["DISK_TYPE"] = "FILE" if ssh_mode else "RBD"
            attrs["TYPE"] = "FILE" if ssh_mode else "RBD"
            if ssh_mode:
                # VirtualMachineDisks::check_tm_mad: a disk whose TM_MAD differs from the
                # system datastore's gets that datastore's *_SSH targets and TM_MAD_SYSTEM.
                attrs["TM_MAD_SYSTEM"] = sys_ds.tm_mad
            if image.type == "CDROM":
                # Image.cc types it RBD_CDROM; VirtualMachineDisk::set_types makes it CDROM when
                # DISK_TYPE_SSH (FILE) applies.
                attrs["TYPE"] = "CDROM" if ssh_mode else "RBD_CDROM"
        else:
            attrs |= {
                "CLONE_TARGET": "SYSTEM",
                "LN_TARGET": "SYSTEM",
                "DISK_TYPE": "FILE",
                "TYPE": "CDROM" if image.type == "CDROM" else "FILE",
            }
        return attrs

    def _volatile_attrs(
        self, disk_id: int, spec: VolatileDisk, sys_ds: _Datastore
    ) -> dict[str, str]:
        attrs = {
            "CLUSTER_ID": "0",
            "DATASTORE": sys_ds.name,
            "DATASTORE_ID": str(sys_ds.id),
            "DEV_PREFIX": "sd",
            "DISK_ID": str(disk_id),
            "DRIVER": "raw",
            "FORMAT": "raw",
            "SIZE": str(spec.size),
            "TARGET": _target(disk_id),
            "TM_MAD": sys_ds.tm_mad,
            "TYPE": spec.type,
        }
        if sys_ds.is_ceph:
            attrs |= _ceph_disk_attrs(sys_ds)
            attrs["DISK_TYPE"] = "RBD"
        else:
            attrs["DISK_TYPE"] = "FILE"
        return attrs

    def _live_users(self, image_id: int) -> list[int]:
        return [
            vm.id
            for vm in self._vms.values()
            if vm.state is not VmState.DONE and any(d.image_id == image_id for d in vm.disks)
        ]

    def _vm(self, vm_id: int) -> _VM:
        try:
            return self._vms[vm_id]
        except KeyError:
            raise ValueError(f"VM {vm_id} does not exist") from None

    def _datastore(self, ds_id: int) -> _Datastore:
        try:
            return self._datastores[ds_id]
        except KeyError:
            raise ValueError(f"datastore {ds_id} does not exist") from None


class _WrongState(Exception):
    """An action that DispatchManager refuses in the VM's current state."""


def _not_available(vm: _VM) -> _WrongState:
    return _WrongState(f"This action is not available for state {vm.state_str()}")


_ACTIONS: dict[str, Callable[[OnedStandIn, _VM, str], None]] = {
    "terminate": OnedStandIn._do_terminate,
    "terminate-hard": OnedStandIn._do_terminate,
    "poweroff": OnedStandIn._do_poweroff,
    "poweroff-hard": OnedStandIn._do_poweroff,
    "undeploy": OnedStandIn._do_undeploy,
    "undeploy-hard": OnedStandIn._do_undeploy,
    "suspend": OnedStandIn._do_suspend,
    "stop": OnedStandIn._do_stop,
    "resume": OnedStandIn._do_resume,
    "hold": OnedStandIn._do_hold,
    "release": OnedStandIn._do_release,
}
# Valid in oned (VMActions) but not modelled here: answered as an internal error, not as oned's
# "not supported", so that a test never mistakes the stand-in's gap for OpenNebula's behaviour.
_KNOWN_UNMODELLED = frozenset({"reboot", "reboot-hard", "resched", "unresched"})


def _target(disk_id: int) -> str:
    return "sd" + chr(ord("a") + disk_id) if disk_id < 26 else f"sd{disk_id}"


def _page(items: list[Any], start: int, end: int) -> list[Any]:
    """oned's pool range: ``end < -1`` pages (offset ``start``, size ``-end``); otherwise an id
    range where -1 means open."""
    if end < -1:
        offset = max(start, 0)
        return items[offset : offset - end]
    return [
        item for item in items if (start < 0 or item.id >= start) and (end == -1 or item.id <= end)
    ]


def _parse_state(name: str) -> tuple[VmState, LcmState]:
    key = name.upper()
    if key in VmState.__members__ and key not in ("ACTIVE", "INIT"):
        return VmState[key], LcmState.LCM_INIT
    if key in LcmState.__members__ and key != "LCM_INIT":
        return VmState.ACTIVE, LcmState[key]
    raise ValueError(f"unknown VM state {name!r}")


class _Dispatcher:
    """Routes XML-RPC calls: the session check, the call delay, types, then the method."""

    def __init__(self, oned: OnedStandIn) -> None:
        self._oned = oned

    def _dispatch(self, method: str, params: tuple[Any, ...]) -> list[Any]:
        oned = self._oned
        if oned._call_delay:
            time.sleep(oned._call_delay)
        with oned._lock:
            oned.calls.append(method)
        busy = oned._take_fault("busy", method)
        if busy is not None:
            return [False, f"[{method}] Cannot process request, {busy.detail}",
                    int(ErrorCode.INTERNAL), -1, -1]
        late = oned._take_fault("late", method)
        answer = self._answer(method, params)
        if late is not None:
            time.sleep(float(late.detail))
        return answer

    def _answer(self, method: str, params: tuple[Any, ...]) -> list[Any]:
        oned = self._oned
        route = _ROUTES.get(method)
        if route is None:
            raise xmlrpc.client.Fault(-506, f"Method '{method}' not defined")
        signature, func = route
        if len(params) < len(signature) or len(params) > len(signature) + 1:
            raise xmlrpc.client.Fault(
                -501, f"Method '{method}' expects {len(signature)} parameters, got {len(params)}"
            )
        for index, (kind, value) in enumerate(zip(signature, params, strict=False)):
            if not _is_type(kind, value):
                raise xmlrpc.client.Fault(
                    -501, f"Type mismatch: parameter {index} of {method} must be {kind}"
                )
        try:
            user = oned._authenticate(method, params[0])
            result = func(oned, user, *params[1 : len(signature)])
        except _Reply as reply:
            return [False, reply.message, int(reply.code), reply.resp_id, -1]
        return [True, result, 0]


def _is_type(kind: str, value: object) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    return True


_Route = tuple[tuple[str, ...], Callable[..., Any]]
_ROUTES: dict[str, _Route] = {
    "one.system.version": (("string",), lambda oned, user: VERSION),
    "one.vm.info": (("string", "int"), lambda oned, user, i: oned.vm_info(user, i)),
    "one.vm.action": (
        ("string", "string", "int"),
        lambda oned, user, action, i: oned.vm_action(user, action, i),
    ),
    "one.vmpool.info": (
        ("string", "int", "int", "int", "int"),
        lambda oned, user, f, s, e, st: oned.vmpool_info("one.vmpool.info", f, s, e, st, False),
    ),
    "one.vmpool.infoextended": (
        ("string", "int", "int", "int", "int"),
        lambda oned, user, f, s, e, st: oned.vmpool_info(
            "one.vmpool.infoextended", f, s, e, st, True
        ),
    ),
    "one.vmpool.infoset": (
        ("string", "string", "bool"),
        lambda oned, user, ids, extended: oned.vmpool_infoset(ids, extended),
    ),
    "one.vm.recover": (
        ("string", "int", "int"),
        lambda oned, user, i, op: oned.vm_recover(user, i, op),
    ),
    "one.image.info": (("string", "int"), lambda oned, user, i: oned.image_info(i)),
    "one.imagepool.info": (
        ("string", "int", "int", "int"),
        lambda oned, user, f, s, e: oned.imagepool_info(f, s, e),
    ),
    "one.datastore.info": (("string", "int"), lambda oned, user, i: oned.datastore_info(i)),
    "one.vm.update": (
        ("string", "int", "string", "int"),
        lambda oned, user, i, text, kind: oned.vm_update(user, i, text, kind),
    ),
    "one.documentpool.info": (
        ("string", "int", "int", "int", "int"),
        lambda oned, user, f, s, e, t: oned.documentpool_info(user, f, s, e, t),
    ),
}


# --- command line -----------------------------------------------------------------------------


def _load_scenario(oned: OnedStandIn, path: str) -> None:
    """Images and VMs from a JSON file::

    {"images": [{"name": "os", "persistent": true, "source": "one/one-0"}],
     "vms": [{"name": "web", "state": "POWEROFF", "disks": [0, {"volatile": 512}]}]}
    """
    with open(path, encoding="utf-8") as handle:
        scenario = json.load(handle)
    for spec in scenario.get("images", []):
        oned.add_image(**spec)
    for spec in scenario.get("vms", []):
        spec = dict(spec)
        spec["disks"] = [
            VolatileDisk(size=int(d["volatile"])) if isinstance(d, dict) else int(d)
            for d in spec.get("disks", [])
        ]
        oned.add_vm(**spec)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ceph_failback.lab.oned``: serve a stand-in until SIGINT/SIGTERM.

    Prints ``ONE_XMLRPC=<endpoint>`` on the first line once listening.
    """
    parser = argparse.ArgumentParser(
        prog="python -m ceph_failback.lab.oned",
        description="Serve a stand-in for OpenNebula's oned XML-RPC API on loopback.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--name", default="oned")
    parser.add_argument("--user", default="oneadmin:opennebula", help="user:password (admin)")
    parser.add_argument("--pool", default="one", help="POOL_NAME of the ceph datastores")
    parser.add_argument("--delay", type=float, default=None, help="every transition's delay (s)")
    parser.add_argument("--scenario", help="JSON file of images and VMs to create")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    user, _, password = args.user.partition(":")
    oned = OnedStandIn(
        name=args.name,
        host=args.host,
        port=args.port,
        users={user: password},
        ceph_pool=args.pool,
        delays=Delays.uniform(args.delay) if args.delay is not None else None,
    )
    if args.scenario:
        _load_scenario(oned, args.scenario)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with oned:
        print(f"ONE_XMLRPC={oned.endpoint}", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
