"""A failback's two sites and its wait limits: what a configuration file, a script or a notebook
gives :class:`~ceph_failback.failback.Failback`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..ceph.seams import CephBackend
from ..errors import ConfigurationError
from ..opennebula.seams import CloudSite
from ..siteconf import site_arguments

__all__ = ["Site", "Timeouts"]


@dataclass
class Site:
    """One site: its Ceph cluster and its OpenNebula endpoint.

    Attributes:
        name: the site's name (``site-a``), used in messages, the journal and reports.
        ceph: the site's Ceph cluster: a :class:`~ceph_failback.ceph.CephSite`, or anything
            with the :class:`~ceph_failback.ceph.seams.CephBackend` methods (the in-memory
            model of :mod:`ceph_failback.testing`, say).
        one: the site's OpenNebula endpoint (:class:`~ceph_failback.opennebula.OpenNebulaSite`,
            or anything with the :class:`~ceph_failback.opennebula.seams.CloudSite` methods).
    """

    name: str
    ceph: CephBackend
    one: CloudSite

    @classmethod
    def connect(cls, name: str, *, ceph_conf: str | os.PathLike[str],
                ceph_client: str = "client.admin",
                ceph_keyring: str | os.PathLike[str] | None = None,
                one_endpoint: str | None = None, one_auth: str | os.PathLike[str] | None = None,
                one_verify: bool | str | os.PathLike[str] | None = None,
                one_timeout: float | None = None) -> Site:
        """A site from its connection settings, without a configuration file::

            site_a = Site.connect("site-a", ceph_conf="/etc/ceph/site-a.conf",
                                  ceph_client="client.failback",
                                  one_endpoint="https://one-a.example:2633/RPC2",
                                  one_auth="~/.one/site-a.auth")

        The arguments are the keys of a ``[site.a]`` table (:doc:`/configuration`), checked the
        same way, with the same conventions as the command line: without ``one_endpoint``,
        ``$ONE_XMLRPC`` then ``~/.one/one_endpoint``; without ``one_auth`` (the path of a file
        holding ``user:password``, never the password itself), ``$ONE_AUTH``, then
        ``~/.one/one_auth``, then ``/var/lib/one/.one/one_auth``; ``one_verify`` and
        ``one_timeout`` default to ``$ONE_DISABLE_SSL_VERIFY``/``$ONE_CERT_DIR`` and
        ``$ONE_XMLRPC_TIMEOUT`` (else 30 s). Relative paths are relative to the working
        directory.

        Raises:
            ConfigurationError: a file is missing, a value has the wrong form, or no credentials
                are found; the message names the site and the argument, never a secret.
                Nothing is contacted until the failback's first plan or step.
        """
        cfg = site_arguments(name, ceph_conf=ceph_conf, ceph_client=ceph_client,
                             ceph_keyring=ceph_keyring, one_endpoint=one_endpoint,
                             one_auth=one_auth, one_verify=one_verify, one_timeout=one_timeout)
        return cls(*cfg.parts())


@dataclass(frozen=True)
class Timeouts:
    """How long each wait may take, in seconds. Production rbd-mirror intervals are slow (status
    reports every ~30 s); the defaults leave room for them.

    Attributes:
        settle: after demoting site A, how long to wait until an image is proven to replay
            cleanly from B (else it is resynced). In journal mode the proof is read from both
            copies' journals, where A's rbd-mirror commits its replay position every
            ``rbd_mirror_journal_commit_age`` (5 s by default): it holds seconds after the flip
            reaches A. The default leaves room for a busy daemon; below ~20 s images that need
            no resync may get one.
        resync: until a resynced image replays from B (a full copy: size-dependent).
        mirror: after a VM stopped on B, until its images are mirrored to A.
        promote: retrying a non-forced promote on A until librbd accepts it (journal mode:
            at least ``mirror``, as A's catch-up after the VM stopped happens in this wait;
            before it, until B's rbd-mirror is registered in A's journal).
        terminate: until a VM on B is DONE.
        resume: until a VM on A is RUNNING.
        ready: after a VM of a group that waits for readiness runs on A, until its guest
            reports ``READY=YES`` through OneGate (:doc:`/recovery-plans`).
        poll: seconds between polls.
        writer: before demoting on B, how long to wait for a client holding the image's
            exclusive lock to let go (a killed client's watch lingers ~30 s).
        daemon_beacon_grace: an rbd-mirror daemon whose last beacon is older is considered down.
        protect: after the last VM resumed on A, how long :meth:`~.Failback.run` waits until
            site B replays each image from A (the report's protection; the VMs already run):
            B's rbd-mirror notices A's promotion on its own schedule. ``0`` only reads it once.
        catch_up: before a VM is terminated on B, how long to wait until A has nearly caught
            up with its images while it still runs (journal mode: at most
            :data:`~.waits.CATCH_UP_ENTRIES` entries behind as A's status reports it; snapshot
            mode: a mirror snapshot taken on B then is completely copied to A), so that the
            backlog is not replayed while the VM is down; journal mode also until B's
            rbd-mirror is registered in A's journal (rule ``peer-registered``). At the limit
            the VM is left running on B and the step fails (run again to keep waiting).
            ``0``: no such wait (the backlog is then replayed with the VM down).
    """

    settle: float = 120.0
    resync: float = 3600.0
    mirror: float = 900.0
    promote: float = 300.0
    terminate: float = 600.0
    resume: float = 600.0
    ready: float = 600.0
    poll: float = 1.0
    daemon_beacon_grace: float = 30.0
    writer: float = 90.0
    protect: float = 300.0
    catch_up: float = 900.0


def check_distinct_clusters(site_a: Site, site_b: Site, pool: str) -> None:
    """Refuse two sites that reach the same Ceph cluster (two conf files naming the same
    monitors): every "site A" action would hit site B's copies."""
    fsid_a, fsid_b = site_a.ceph.fsid(), site_b.ceph.fsid()
    if fsid_a == fsid_b:
        raise ConfigurationError(
            f"{site_a.name} and {site_b.name} reach the same Ceph cluster (fsid {fsid_a}): "
            f"{site_a.ceph.describe()} and {site_b.ceph.describe()} name the same monitors",
            pool=pool, hint="give each site the configuration file of its own cluster")


def pool_names(pool: str | Sequence[str], site: str) -> tuple[str, ...]:
    """The failback's pools, checked: at least one, each named once, no ``/``, ``+`` or ``,``
    in a name (``pool/image`` names the images, ``a+b`` the pool set, ``--pool a,b`` the list;
    Ceph's pool names may hold them, but such a pool cannot be failed back by this tool)."""
    pools = (pool,) if isinstance(pool, str) else tuple(pool)
    bad = [p for p in pools if not isinstance(p, str) or not p or set(p) & set("/+,")]
    if not pools or bad or len(set(pools)) != len(pools):
        raise ConfigurationError(f"pool must name one RBD pool or several distinct ones, got "
                                 f"{pool!r}", site=site,
                                 hint="e.g. pool='one' or pool=['one', 'one-ssd']")
    return pools


def image_names(images: Iterable[str] | None, pools: Sequence[str],
                site: str) -> tuple[str, ...] | None:
    """The images asked for (``None``: all), checked: with several pools each is named
    ``pool/image`` (``rbd``'s way), its pool one of the failback's."""
    if images is None:
        return None
    names = (images,) if isinstance(images, str) else tuple(images)
    if len(pools) > 1:
        bad = [n for n in names if n.partition("/")[0] not in pools or not n.partition("/")[2]]
        if bad:
            raise ConfigurationError(
                f"with several pools, name each image pool/image (its pool one of "
                f"{', '.join(pools)}): {', '.join(map(repr, bad))}", site=site,
                hint=f"e.g. --image {pools[0]}/one-42")
    return names
