"""A real, disposable, single-node Ceph cluster on a loopback address.

One :class:`LabCluster` is one site: a monitor, a manager, one in-memory (memstore) OSD and,
once mirroring is configured, an rbd-mirror daemon. Everything lives in one directory; the
daemons are this process's children started in their own session, recorded by PID in
``state.json`` so that another process can stop them. Nothing here is for production.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ceph.connection import CephConfig, CephSite
from ..errors import CephError, CephNotInstalledError, LabError

__all__ = ["LabCluster", "DAEMON_BINARIES", "APT_COMMAND", "check_installed", "TEST_SPEED_SETTINGS"]

log = logging.getLogger(__name__)

APT_PACKAGES = (
    "ceph-mon ceph-osd ceph-mgr rbd-mirror ceph-common python3-rbd python3-rados"
).split()
APT_COMMAND = "apt-get install -y --no-install-recommends " + " ".join(APT_PACKAGES)
DAEMON_BINARIES = ("ceph-mon", "ceph-mgr", "ceph-osd", "rbd-mirror", "ceph-authtool", "monmaptool")

#: rbd-mirror settings that make the lab react in seconds instead of tens of seconds. The library
#: never assumes them: production runs with Ceph's defaults.
TEST_SPEED_SETTINGS = {
    "rbd_mirror_journal_poll_age": "1",
    "rbd_mirror_pool_replayers_refresh_interval": "3",
    "rbd_mirror_image_state_check_interval": "3",
    "rbd_mirror_sync_point_update_age": "1",
}


#: Where Debian's ceph-osd packages put the RADOS object classes (libcls_rbd.so: rbd, mirroring,
#: journals), newest layout first.
CLASS_DIRS = ("/usr/lib/x86_64-linux-gnu/rados-classes", "/usr/lib/aarch64-linux-gnu/rados-classes",
              "/usr/lib/rados-classes", "/usr/lib64/rados-classes")


def rados_class_dir() -> str | None:
    """The installed object class directory, set explicitly in the lab's OSD configuration:
    Debian 13's Ceph 18.2.7 defaults ``osd_class_dir`` to a relative path
    (``lib/x86_64-linux-gnu/rados-classes``), so its OSD loads no class and every rbd call
    fails with EOPNOTSUPP. ``None``: none found (the default is left)."""
    for d in CLASS_DIRS:
        if os.path.exists(os.path.join(d, "libcls_rbd.so")):
            return d
    return None


def check_installed() -> None:
    """Raise :class:`CephNotInstalledError` naming the apt command if a daemon is missing."""
    missing = [b for b in DAEMON_BINARIES if shutil.which(b) is None]
    if missing:
        raise CephNotInstalledError(
            f"Ceph programs not found: {', '.join(missing)}",
            hint=f"as root: apt-get update && {APT_COMMAND}",
        )
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError as exc:
        raise CephNotInstalledError(
            f"the Ceph Python bindings are not importable ({exc})",
            hint=f"as root: apt-get update && {APT_COMMAND}; use /usr/bin/python3 or a venv "
            "made from it with --system-site-packages",
        ) from exc


@dataclass
class _Daemon:
    name: str
    pid: int


def _pid_alive(pid: int, marker: str) -> bool:
    """True if ``pid`` is running and its command line mentions ``marker`` (our directory), so a
    recycled PID belonging to somebody else is never signalled."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and marker in cmdline


class LabCluster:
    """One single-node Ceph cluster of the lab.

    Args:
        name: the site name (``site-a``); also the rbd-mirror site name.
        ip: the loopback address its daemons bind to (``127.0.0.2``).
        directory: where conf, keyrings, data, logs and sockets live (created).
        osd_bytes: size of the in-memory OSD.
        test_speed: apply :data:`TEST_SPEED_SETTINGS` to rbd-mirror.
    """

    def __init__(
        self,
        name: str,
        ip: str,
        directory: Path,
        *,
        osd_bytes: int = 2 << 30,
        test_speed: bool = True,
    ) -> None:
        self.name = name
        self.ip = ip
        self.directory = Path(directory)
        self.osd_bytes = osd_bytes
        self.test_speed = test_speed
        self.daemons: dict[str, _Daemon] = {}
        self.fsid = ""
        self._admin: CephSite | None = None

    # -- paths -------------------------------------------------------------------------------

    @property
    def conf_path(self) -> Path:
        """The site's ``ceph.conf``."""
        return self.directory / "ceph.conf"

    @property
    def admin_keyring(self) -> Path:
        """The ``client.admin`` keyring."""
        return self.directory / "client.admin.keyring"

    @property
    def mirror_client(self) -> str:
        """The rbd-mirror daemon's client name."""
        return f"client.rbd-mirror.{self.name}"

    def keyring_for(self, client: str) -> Path:
        """Where the lab keeps ``client``'s keyring."""
        return self.directory / f"{client}.keyring"

    def ceph_config(self, client: str = "client.admin", **kwargs: Any) -> CephConfig:
        """A :class:`CephConfig` that reaches this site as ``client``."""
        kwargs.setdefault("mount_timeout", 10.0)
        return CephConfig(
            conffile=str(self.conf_path), client=client, keyring=str(self.keyring_for(client)),
            **kwargs,
        )

    def admin(self) -> CephSite:
        """A shared, connected admin connection (closed by :meth:`stop`)."""
        if self._admin is None:
            self._admin = CephSite(self.name, self.ceph_config()).connect()
        return self._admin

    def _close_admin(self) -> None:
        if self._admin is not None:
            self._admin.close()
            self._admin = None

    # -- state persistence -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """A JSON-able description (used by :class:`~ceph_failback.lab.Lab`)."""
        return {
            "name": self.name,
            "ip": self.ip,
            "directory": str(self.directory),
            "fsid": self.fsid,
            "osd_bytes": self.osd_bytes,
            "test_speed": self.test_speed,
            "daemons": {k: d.pid for k, d in self.daemons.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LabCluster:
        """Rebuild from :meth:`to_state` output."""
        c = cls(
            state["name"], state["ip"], Path(state["directory"]),
            osd_bytes=state["osd_bytes"], test_speed=state["test_speed"],
        )
        c.fsid = state["fsid"]
        c.daemons = {k: _Daemon(k, pid) for k, pid in state["daemons"].items()}
        return c

    # -- bootstrapping -----------------------------------------------------------------------

    def _write_conf(self) -> None:
        d = self.directory
        debug = ("debug_rbd_mirror = 15\ndebug_rbd = 10\ndebug_journaler = 10\n"
                 if os.environ.get("CEPH_FAILBACK_LAB_DEBUG") else "")
        knobs = "".join(f"{k} = {v}\n" for k, v in TEST_SPEED_SETTINGS.items()) if (
            self.test_speed
        ) else ""
        classes = rados_class_dir()
        class_dir = f"osd_class_dir = {classes}" if classes else ""
        self.conf_path.write_text(
            f"""[global]
fsid = {self.fsid}
mon_host = v2:{self.ip}:3300
public_addr = {self.ip}
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
auth_allow_insecure_global_id_reclaim = false
ms_bind_msgr1 = false
ms_bind_msgr2 = true
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
mon_data_avail_warn = 1
mon_data_avail_crit = 0
osd_crush_chooseleaf_type = 0
run_dir = {d}/run
keyring = {self.admin_keyring}

[mon]
mon_data = {d}/mon
keyring = {d}/mon.keyring
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok

[mgr]
mgr_data = {d}/mgr
keyring = {d}/mgr.keyring
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok

[osd]
osd_data = {d}/osd
keyring = {d}/osd.keyring
osd_objectstore = memstore
memstore_device_bytes = {self.osd_bytes}
{class_dir}
osd_memory_target = 939524096
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok

[{self.mirror_client}]
keyring = {self.keyring_for(self.mirror_client)}
{debug}
log_file = {d}/log/$name.log
admin_socket = {d}/run/$name.asok

[client]
{knobs}"""
        )

    def _run(self, *argv: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603 - fixed argument lists, no shell
                list(argv), check=True, capture_output=True, text=True, timeout=60,
                env=self._env(),
            )
        except FileNotFoundError as exc:
            check_installed()
            raise LabError(f"cannot run {argv[0]}: {exc}", site=self.name) from exc
        except subprocess.CalledProcessError as exc:
            raise LabError(
                f"{' '.join(argv[:3])} failed ({exc.returncode}): {exc.stderr.strip()[-500:]}",
                site=self.name,
            ) from exc
        return done.stdout

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # rbd-mirror finds its local cluster through the default search path, ignoring -c.
        env["CEPH_CONF"] = str(self.conf_path)
        return env

    def _spawn(self, key: str, argv: list[str]) -> None:
        logf = open(self.directory / "log" / f"{key}.stdout", "ab")  # noqa: SIM115
        try:
            proc = subprocess.Popen(  # noqa: S603 - fixed argument lists, no shell
                argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self._env(), cwd=self.directory, start_new_session=True,
            )
        finally:
            logf.close()
        self.daemons[key] = _Daemon(key, proc.pid)
        log.debug("%s: started %s (pid %d)", self.name, key, proc.pid)

    def create(self) -> None:
        """Create and start the cluster (mon, mgr, OSD). Takes a few seconds."""
        check_installed()
        if self.directory.exists() and any(self.directory.iterdir()):
            raise LabError(f"lab directory {self.directory} is not empty", site=self.name)
        if _port_in_use(self.ip, 3300):
            raise LabError(
                f"{self.ip}:3300 is already in use: another lab (or a monitor) runs on this "
                "address", site=self.name,
                hint="stop it (python -m ceph_failback.lab down --dir DIR) or choose other ips")
        for sub in ("mon", "mgr", "osd", "log", "run"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        self.fsid = str(uuid.uuid4())
        self._write_conf()
        d = self.directory
        monkr = d / "mon.keyring"
        self._run("ceph-authtool", "--create-keyring", str(monkr), "--gen-key", "-n", "mon.",
                  "--cap", "mon", "allow *")
        self._run("ceph-authtool", "--create-keyring", str(self.admin_keyring), "--gen-key",
                  "-n", "client.admin", "--cap", "mon", "allow *", "--cap", "osd", "allow *",
                  "--cap", "mds", "allow *", "--cap", "mgr", "allow *")
        self._run("ceph-authtool", str(monkr), "--import-keyring", str(self.admin_keyring))
        monmap = d / "monmap"
        self._run("monmaptool", "--create", "--fsid", self.fsid,
                  "--addv", "a", f"[v2:{self.ip}:3300]", str(monmap))
        self._run("ceph-mon", "-c", str(self.conf_path), "--mkfs", "-i", "a",
                  "--monmap", str(monmap), "--keyring", str(monkr))
        self.start_mon()
        admin = self.admin()
        mgr_key = admin.mon_command({
            "prefix": "auth get-or-create", "entity": "mgr.x",
            "caps": ["mon", "allow profile mgr", "osd", "allow *", "mds", "allow *"],
            "format": "plain",
        })
        (d / "mgr.keyring").write_text(_as_text(mgr_key))
        self._spawn("mgr", ["ceph-mgr", "-f", "-c", str(self.conf_path), "-i", "x"])
        # OSD: register it with a cephx secret, then make its store.
        osd_uuid = str(uuid.uuid4())
        secret = self._run("ceph-authtool", "--gen-print-key").strip()
        out = admin.mon_command({"prefix": "osd new", "uuid": osd_uuid},
                                inbuf=json.dumps({"cephx_secret": secret}).encode())
        osd_id = str(out["osdid"] if isinstance(out, dict) else int(str(out).strip()))
        (d / "osd.keyring").write_text(f"[osd.{osd_id}]\n\tkey = {secret}\n")
        self._run("ceph-osd", "-c", str(self.conf_path), "-i", osd_id, "--mkfs",
                  "--osd-uuid", osd_uuid, "--no-mon-config")
        self._spawn("osd", ["ceph-osd", "-f", "-c", str(self.conf_path), "-i", osd_id])
        self._osd_id = osd_id
        # Quiet health warnings that only a single-node test cluster raises.
        for who, key, value in (
            ("mon", "mon_warn_on_pool_no_redundancy", "false"),
            ("mon", "auth_allow_insecure_global_id_reclaim", "false"),
        ):
            admin.mon_command({"prefix": "config set", "who": who, "name": key, "value": value})

    def wait_osd_up(self, timeout: float = 30.0) -> None:
        """Wait until the OSD is up and in."""
        deadline = time.monotonic() + timeout
        while True:
            stat = self.admin().mon_command({"prefix": "osd stat"})
            if stat.get("num_up_osds", 0) >= 1 and stat.get("num_in_osds", 0) >= 1:
                return
            if time.monotonic() > deadline:
                raise LabError(f"OSD not up after {timeout:g}s: {stat}", site=self.name)
            time.sleep(0.2)

    def health(self) -> dict[str, Any]:
        """``ceph health`` as JSON."""
        result: dict[str, Any] = self.admin().mon_command({"prefix": "health"})
        return result

    # -- daemons -----------------------------------------------------------------------------

    def start_mon(self, timeout: float = 30.0) -> None:
        """Start the monitor and wait until it answers."""
        self._spawn("mon", ["ceph-mon", "-f", "-c", str(self.conf_path), "-i", "a"])
        deadline = time.monotonic() + timeout
        while True:
            try:
                probe = CephSite(self.name, self.ceph_config(mount_timeout=2.0)).connect()
                probe.close()
                return
            except CephError:
                if time.monotonic() > deadline or not self.is_running("mon"):
                    raise LabError(
                        f"monitor did not come up; see {self.directory}/log", site=self.name
                    ) from None
                time.sleep(0.2)

    def stop_mon(self) -> None:
        """Stop the monitor (clients then time out; :meth:`start_mon` brings it back)."""
        self._close_admin()
        self._stop("mon")

    def create_mirror_key(self) -> None:
        """Create the rbd-mirror daemon's key (``profile rbd-mirror`` / ``profile rbd``)."""
        key = self.admin().mon_command({
            "prefix": "auth get-or-create", "entity": self.mirror_client,
            "caps": ["mon", "profile rbd-mirror", "osd", "profile rbd"], "format": "plain",
        })
        self.keyring_for(self.mirror_client).write_text(_as_text(key))

    def start_rbd_mirror(self) -> None:
        """Start this site's rbd-mirror daemon."""
        self._spawn("rbd-mirror", [
            "rbd-mirror", "-f", "--id", self.mirror_client.removeprefix("client."),
            "-c", str(self.conf_path),
        ])

    def stop_rbd_mirror(self, sig: int = signal.SIGTERM) -> None:
        """Stop (or with ``SIGKILL``, kill) this site's rbd-mirror daemon."""
        self._stop("rbd-mirror", sig)

    def is_running(self, key: str) -> bool:
        """Whether daemon ``key`` (mon, mgr, osd, rbd-mirror) is alive."""
        d = self.daemons.get(key)
        return d is not None and _pid_alive(d.pid, str(self.directory))

    def _stop(self, key: str, sig: int = signal.SIGTERM, timeout: float = 5.0) -> None:
        d = self.daemons.pop(key, None)
        if d is None or not _pid_alive(d.pid, str(self.directory)):
            return
        try:
            os.kill(d.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while _pid_alive(d.pid, str(self.directory)):
            _reap(d.pid)
            if time.monotonic() > deadline:
                os.kill(d.pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)
        _reap(d.pid)

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every daemon of this cluster, by PID: SIGTERM to all, SIGKILL to any still
        alive after ``timeout`` seconds (the lab is disposable)."""
        self._close_admin()
        marker = str(self.directory)
        daemons = [d for d in self.daemons.values() if _pid_alive(d.pid, marker)]
        self.daemons.clear()
        for d in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.kill(d.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while True:
            for d in daemons:
                _reap(d.pid)
            alive = [d for d in daemons if _pid_alive(d.pid, marker)]
            if not alive:
                return
            if time.monotonic() > deadline:
                for d in alive:
                    log.debug("%s: %s ignored SIGTERM, killing it", self.name, d.name)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(d.pid, signal.SIGKILL)
                deadline = time.monotonic() + timeout
            time.sleep(0.05)

    def running_pids(self) -> list[int]:
        """PIDs of this cluster's daemons that are still alive."""
        return [d.pid for d in self.daemons.values() if _pid_alive(d.pid, str(self.directory))]


def _port_in_use(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((ip, port)) == 0


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _as_text(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if text.endswith("\n") else text + "\n"
