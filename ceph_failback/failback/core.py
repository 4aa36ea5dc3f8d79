"""The ``Failback`` orchestrator: OpenNebula's failback procedure, one method per step."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..ceph.connection import CephSite
from ..ceph.lock import Holder, PoolLock
from ..ceph.mirror import DEFAULT_CONCURRENCY, MirrorPool
from ..ceph.status import MirrorImageInfo, MirrorStatus, ReplayKind
from ..errors import (
    CephError,
    ConfigurationError,
    FailbackError,
    ImageNotFoundError,
    MirroringNotEnabledError,
    NotReadyError,
    SafetyError,
    StepFailedError,
    VMNotFoundError,
    WaitFailedError,
    WaitTimeoutError,
)
from ..opennebula.mapping import FindingKind, Mapping, Pair, Severity, map_sites
from ..opennebula.records import VM
from ..opennebula.site import OpenNebulaSite
from ..waiting import Judgement, Verdict, wait_until
from .events import Emitter, EventKind, Listener
from .journal import Journal
from .plan import STEP_TITLES, Action, Blocker, ImagePlan, Plan, VMPlan, image_target, unique, vm_target
from .report import Report, build_report
from .status import ImageSide, ImageState, Status, VMState

__all__ = ["Site", "Timeouts", "StepResult", "Failback", "WAIVABLE"]

log = logging.getLogger("ceph_failback.failback")

#: Blocker kinds that may be waived: proceeding despite them cannot lose data.
WAIVABLE = frozenset({
    FindingKind.PARTIAL_PAIR.value,
    FindingKind.EXPLICIT_PAIR.value,
    "daemon-health-unknown",
})


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _exclusive(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a step under the pool's failback lock (see :meth:`Failback.locked`)."""
    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        self = args[0]
        assert isinstance(self, Failback)
        with self.locked():
            return method(*args, **kwargs)
    return wrapper


#: Up to this many VM pairs, plan() and status() read the VMs one by one; beyond, they list each
#: site's VMs once (a listing costs about as much as a few hundred single reads).
_PER_VM_READS = 20

# LCM states of a VM whose terminate is under way.
_TERMINATING = frozenset({"SHUTDOWN", "EPILOG", "CLEANUP_DELETE"})


@dataclass
class Site:
    """One site: its Ceph cluster and its OpenNebula endpoint.

    Attributes:
        name: the site's name (``site-a``), used in messages, the journal and reports.
        ceph: the site's Ceph connection.
        one: the site's OpenNebula endpoint.
    """

    name: str
    ceph: CephSite
    one: OpenNebulaSite


@dataclass(frozen=True)
class Timeouts:
    """How long each wait may take, in seconds. Production rbd-mirror intervals are slow (status
    reports every ~30 s); the defaults leave room for them.

    Attributes:
        settle: after demoting site A, how long to wait for a status that says whether an image
            already replays cleanly from B (else it is resynced). In journal mode the proof is
            A's replay position, which rbd-mirror reports on its ~30 s cycle: keep this well
            above 30 s, or images that need no resync get one.
        resync: until a resynced image replays from B (a full copy: size-dependent).
        mirror: after a VM stopped on B, until its images are mirrored to A.
        promote: retrying a non-forced promote on A until librbd accepts it (journal mode:
            at least ``mirror``, as A's catch-up after the VM stopped happens in this wait).
        terminate: until a VM on B is DONE.
        resume: until a VM on A is RUNNING.
        poll: seconds between polls.
        writer: before demoting on B, how long to wait for a client holding the image's
            exclusive lock to let go (a killed client's watch lingers ~30 s).
        daemon_beacon_grace: an rbd-mirror daemon whose last beacon is older is considered down.
    """

    settle: float = 120.0
    resync: float = 3600.0
    mirror: float = 900.0
    promote: float = 300.0
    terminate: float = 600.0
    resume: float = 600.0
    poll: float = 1.0
    daemon_beacon_grace: float = 30.0
    writer: float = 90.0


@dataclass
class StepResult:
    """What one step call did: per target, ``done``, ``skipped`` or ``failed``, with the reason."""

    step: str
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, target: str, outcome: str, reason: str = "") -> None:
        """Record one target's outcome."""
        self.outcomes[target] = (outcome, reason)

    @property
    def done(self) -> list[str]:
        """Targets acted on."""
        return [t for t, (o, _) in self.outcomes.items() if o == "done"]

    @property
    def skipped(self) -> list[str]:
        """Targets left alone (already in the wanted state)."""
        return [t for t, (o, _) in self.outcomes.items() if o == "skipped"]

    @property
    def failed(self) -> dict[str, str]:
        """Targets that failed, with the error."""
        return {t: r for t, (o, r) in self.outcomes.items() if o == "failed"}

    def __str__(self) -> str:
        return (f"{self.step}: {len(self.done)} done, {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed in {self.seconds:.1f}s")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text("\n".join([str(self), *(f"  {t}: {o}" + (f" ({r})" if r else "")
                                       for t, (o, r) in self.outcomes.items())]))

    def _repr_html_(self) -> str:
        from .html import step_result_html
        return step_result_html(self)


@dataclass(frozen=True)
class _Scope:
    pairs: tuple[Pair, ...]
    images: tuple[str, ...]
    mapping: Mapping | None


class Failback:
    """Fail a pool's VMs and images back from site B to site A.

    Each documented step is a method that can be called alone (cell by cell in Jupyter): it
    looks at the present state first, skips what is already done, acts on the rest, waits until
    the action took effect, and writes every action to the journal. :meth:`run` calls them all,
    in order, per VM as soon as its images are ready (``pipeline=True``).

    Args:
        site_a: the home site (the VMs come back here).
        site_b: the site the VMs run on now.
        pool: the mirrored RBD pool.
        images: restrict the scope to these images (and the VMs that use them).
        vms: restrict the scope to these VMs on site B (ids).
        pairs: an explicit mapping ``{vm_b_id: vm_a_id}`` that overrides or completes the one
            read from the disks.
        journal: the journal file (resumption reads it); default
            ``failback-<site_a>-<site_b>-<pool>.jsonl`` in the working directory.
        timeouts: wait limits.
        concurrency: images worked on at once (like ``rbd_concurrent_management_ops``).
        vm_concurrency: VMs moved through steps 3-6 at once in :meth:`run`.
        hard_terminate_after: opt-in: ``terminate-hard`` a VM on B still not DONE after this many
            seconds. ``None`` (default) never forces.
        waive: blocker kinds to waive (only those in :data:`WAIVABLE` can be).
        listeners: progress callbacks (see :mod:`ceph_failback.failback.events`).
    """

    def __init__(
        self,
        site_a: Site,
        site_b: Site,
        pool: str,
        *,
        images: Iterable[str] | None = None,
        vms: Iterable[int] | None = None,
        pairs: dict[int, int] | None = None,
        journal: str | Path | Journal | None = None,
        timeouts: Timeouts | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        vm_concurrency: int = DEFAULT_CONCURRENCY,
        hard_terminate_after: float | None = None,
        waive: Iterable[str] = (),
        listeners: Iterable[Listener] = (),
    ) -> None:
        if site_a.name == site_b.name:
            raise FailbackError("site A and site B must have different names", site=site_a.name)
        if site_a.one.endpoint == site_b.one.endpoint:
            raise ConfigurationError(f"{site_a.name} and {site_b.name} have the same OpenNebula "
                                     f"endpoint {site_a.one.endpoint}", site=site_b.name,
                                     hint="give each site its own oned endpoint")
        self.site_a = site_a
        self.site_b = site_b
        self.pool = pool
        self.image_filter = tuple(images) if images is not None else None
        self.vm_filter = tuple(int(v) for v in vms) if vms is not None else None
        self.explicit_pairs = dict(pairs or {})
        if isinstance(journal, Journal):
            self.journal = journal
        else:
            self.journal = Journal(journal or f"failback-{site_a.name}-{site_b.name}-{pool}.jsonl")
        self.timeouts = timeouts or Timeouts()
        self.concurrency = concurrency
        self.vm_concurrency = vm_concurrency
        self.hard_terminate_after = hard_terminate_after
        if hard_terminate_after is not None and not (
                0 <= hard_terminate_after < self.timeouts.terminate):
            raise ConfigurationError(
                f"hard_terminate_after ({hard_terminate_after}s) must be >= 0 and less than "
                f"timeouts.terminate ({self.timeouts.terminate}s)", site=site_b.name,
                hint="lower hard_terminate_after or raise Timeouts.terminate")
        self.waive = frozenset(waive)
        bad = self.waive - WAIVABLE
        if bad:
            raise FailbackError(f"these blockers cannot be waived: {sorted(bad)}; "
                                f"waivable: {sorted(WAIVABLE)}", pool=pool)
        self.events = Emitter()
        for listener in listeners:
            self.events.subscribe(listener)
        self._scope_cache: _Scope | None = None
        self._pools: dict[str, MirrorPool] = {}
        self._lock = threading.Lock()
        self._pool_lock = PoolLock(site_a.ceph, pool,
                                   purpose=f"failback {site_b.name} -> {site_a.name}, journal "
                                           f"{self.journal.path.absolute()}")
        self._lock_depth = 0
        self._lock_guard = threading.Lock()
        self._checked = False  # check() passed: the step methods do not plan again

    def __repr__(self) -> str:
        return (f"Failback({self.site_b.name!r} -> {self.site_a.name!r}, pool={self.pool!r}, "
                f"journal={str(self.journal.path)!r})")

    # -- plumbing ------------------------------------------------------------------------------

    def pool_a(self) -> MirrorPool:
        """Site A's mirror adapter for the pool."""
        return self._pool(self.site_a)

    def pool_b(self) -> MirrorPool:
        """Site B's mirror adapter for the pool."""
        return self._pool(self.site_b)

    def _pool(self, site: Site) -> MirrorPool:
        with self._lock:
            if site.name not in self._pools:
                if not self._pools:
                    self._check_distinct_clusters()
                self._pools[site.name] = MirrorPool(site.ceph, self.pool,
                                                    concurrency=self.concurrency)
            return self._pools[site.name]

    def _check_distinct_clusters(self) -> None:
        """Refuse two sites that reach the same Ceph cluster (two conf files naming the same
        monitors): every "site A" action would hit site B's copies."""
        fsid_a, fsid_b = self.site_a.ceph.fsid(), self.site_b.ceph.fsid()
        if fsid_a == fsid_b:
            raise ConfigurationError(
                f"{self.site_a.name} and {self.site_b.name} reach the same Ceph cluster (fsid "
                f"{fsid_a}): {self.site_a.ceph.config.conffile!r} and "
                f"{self.site_b.ceph.config.conffile!r} name the same monitors",
                pool=self.pool, hint="give each site the configuration file of its own cluster")

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a progress listener; returns a function that removes it."""
        return self.events.subscribe(listener)

    # -- the pool's lock -----------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[Holder]:
        """Hold the pool's failback lock (a RADOS object lock in site A's pool) for the block.

        :meth:`run` and every step method take it themselves; hold it around several step calls
        (``with fb.locked(): ...``) so that no other failback can slip in between them. Another
        holder makes this raise :class:`~ceph_failback.errors.LockedError` naming it and its
        start time, before anything changes. Taking the lock re-reads the journal, so a run that
        waited for the lock never works from a stale picture.
        """
        with self._lock_guard:
            if self._lock_depth == 0:
                holder = self._pool_lock.acquire()
                self.journal.reload()
                self._scope_cache = None
                self.journal.write("run", "locked", holder=str(holder), cookie=holder.cookie)
            self._lock_depth += 1
            held = self._pool_lock.held
        assert held is not None
        try:
            yield held
        finally:
            with self._lock_guard:
                self._lock_depth -= 1
                if self._lock_depth == 0:
                    self._pool_lock.release()
                    self.journal.write("run", "unlocked", cookie=held.cookie)

    def lock_holder(self) -> Holder | None:
        """Who holds the pool's failback lock now (``None``: nobody)."""
        return self._pool_lock.holder()

    def break_lock(self) -> Holder | None:
        """Break the pool's failback lock, whoever holds it; returns the holder that was broken.

        Only for a stale lock: its holder died on a machine that is gone or cannot be reached
        (a holder that died on this machine is taken over automatically). Breaking the lock of
        a live run lets two failbacks act at once. The break is written to the journal.
        """
        holder = self._pool_lock.break_()
        if holder is not None:
            self.journal.write("run", "lock-broken", holder=str(holder), cookie=holder.cookie)
        return holder

    def _vm_t(self, site: Site, vm_id: int) -> str:
        return vm_target(site.name, vm_id)

    # -- scope ---------------------------------------------------------------------------------

    def mapping(self) -> Mapping:
        """The cross-site VM/image mapping as OpenNebula shows it now."""
        return self._map(self.site_a.one.vms(), self.site_b.one.vms(include_done=True))

    def _map(self, vms_a: list[VM], vms_b: list[VM]) -> Mapping:
        return map_sites(vms_a, vms_b, self.pool, pairs=self.explicit_pairs or None,
                         site_a=self.site_a.name, site_b=self.site_b.name)

    def _present(self, pairs: Sequence[Pair]) -> list[Pair]:
        """The pairs with their VMs as OpenNebula shows them now: read VM by VM for a few pairs,
        else with one pool listing per site (one call per VM would be thousands of calls)."""
        if len(pairs) <= _PER_VM_READS:
            return [Pair(self.site_a.one.vm(p.vm_a.id), self.site_b.one.vm(p.vm_b.id), p.images,
                         p.explicit) for p in pairs]
        vms = self._from_listings([(p.vm_a.id, p.vm_b.id) for p in pairs], self.site_a.one.vms(),
                                  self.site_b.one.vms(include_done=True))
        return [Pair(a, b, p.images, p.explicit) for (a, b), p in zip(vms, pairs, strict=True)]

    def _from_listings(self, ids: Sequence[tuple[int, int]], vms_a: list[VM], vms_b: list[VM]
                       ) -> list[tuple[VM, VM]]:
        """The VMs of each (id on A, id on B) from the two sites' listings; one a listing leaves
        out (a DONE VM on A) is read by itself."""
        on_a, on_b = {vm.id: vm for vm in vms_a}, {vm.id: vm for vm in vms_b}
        return [(on_a.get(a) or self.site_a.one.vm(a), on_b.get(b) or self.site_b.one.vm(b))
                for a, b in ids]

    def _scope(self) -> _Scope:
        """The pairs and images this failback works on. Fixed at the first call and written to
        the journal, so that a resumed failback works on the same set even after the VMs on B
        are DONE."""
        if self._scope_cache is not None:
            return self._scope_cache
        recorded = self.journal.last(step="run", event="scope")
        if recorded is not None:
            # One listing per site, not one read per VM (a scope can hold thousands of VMs).
            vms_a, vms_b = self.site_a.one.vms(), self.site_b.one.vms(include_done=True)
            entries = recorded.data.get("pairs", [])
            vms = self._from_listings([(int(p["vm_a"]), int(p["vm_b"])) for p in entries],
                                      vms_a, vms_b)
            pairs = [Pair(a, b, tuple(p["images"]), bool(p.get("explicit")))
                     for (a, b), p in zip(vms, entries, strict=True)]
            self._scope_cache = _Scope(tuple(pairs), tuple(recorded.data.get("images", [])),
                                       self._map(vms_a, vms_b))
            return self._scope_cache
        mapping = self.mapping()
        mirrored = self.pool_b().mirrored_names()
        pairs = []
        for pair in mapping.pairs:
            if self.vm_filter is not None and pair.vm_b.id not in self.vm_filter:
                continue
            if self.image_filter is not None and not set(pair.images) & set(self.image_filter):
                continue
            if self.image_filter is None and self.vm_filter is None and not (
                    set(pair.images) & mirrored):
                continue  # not a mirrored VM: not ours
            pairs.append(pair)
        images = unique(i for p in pairs for i in p.images)
        if self.image_filter is not None:
            images = unique([*images, *self.image_filter])
        self._scope_cache = _Scope(tuple(pairs), tuple(images), mapping)
        return self._scope_cache

    def _record_scope(self) -> None:
        if self.journal.last(step="run", event="scope") is not None:
            return
        scope = self._scope()
        self.journal.write("run", "scope", pool=self.pool, images=list(scope.images),
                           pairs=[{"vm_a": p.vm_a.id, "vm_b": p.vm_b.id,
                                   "images": list(p.images), "explicit": p.explicit}
                                  for p in scope.pairs])

    @property
    def images(self) -> list[str]:
        """The images in scope."""
        return list(self._scope().images)

    @property
    def pairs(self) -> list[Pair]:
        """The VM pairs in scope (VM on B -> VM on A)."""
        return list(self._scope().pairs)

    def _select_images(self, images: Iterable[str] | None) -> list[str]:
        scope = self._scope()
        if images is None:
            return list(scope.images)
        chosen = unique(images)
        unknown = [i for i in chosen if i not in scope.images]
        if unknown:
            raise FailbackError(f"images not in this failback's scope: {unknown}",
                                pool=self.pool, site=self.site_a.name)
        return chosen

    def _select_pairs(self, vms: Iterable[int] | None) -> list[Pair]:
        scope = self._scope()
        if vms is None:
            return list(scope.pairs)
        wanted = [int(v) for v in vms]
        chosen = [p for p in scope.pairs if p.vm_b.id in wanted]
        missing = set(wanted) - {p.vm_b.id for p in chosen}
        if missing:
            raise FailbackError(f"VMs on site B not in this failback's scope: {sorted(missing)}",
                                site=self.site_b.name, pool=self.pool)
        return chosen

    # -- plan ----------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The state of every image and VM in scope on both sites, what each step will do or
        skip, and every blocker. Changes nothing."""
        blockers: list[Blocker] = []
        warnings: list[str] = []
        pa, pb = self.pool_a(), self.pool_b()
        # Both sites' listings in the background, side by side and beside OpenNebula's (the
        # scope): librbd reads each image's promotion state for them, ~2 ms per image.
        # Leaving the block waits for them, an error included: a librbd call must never outlive
        # plan(), as the caller may close the cluster handle next (which would hang the call).
        with ThreadPoolExecutor(3, thread_name_prefix="plan") as ex:
            overview_a, overview_b = ex.submit(pa.overview), ex.submit(pb.overview)
            health = ex.submit(pa.daemon_health, beacon_grace=self.timeouts.daemon_beacon_grace)
            for site, pool in ((self.site_a, pa), (self.site_b, pb)):
                try:
                    pool.require_mirroring()
                except MirroringNotEnabledError as exc:
                    blockers.append(Blocker("mirroring-not-enabled", f"pool@{site.name}", str(exc)))
            try:
                holder = self._pool_lock.holder()
            except CephError as exc:
                holder = None
                warnings.append(f"cannot read the failback lock on {self.site_a.name}: {exc}")
            mine = self._pool_lock.held
            if holder is not None and (mine is None or holder.cookie != mine.cookie):
                if holder.is_provably_dead():
                    warnings.append(f"a dead failback on this machine left the lock of pool "
                                    f"{self.pool!r} ({holder}); it will be taken over")
                else:
                    blockers.append(Blocker(
                        "locked", f"lock@{self.site_a.name}",
                        f"another failback holds the lock of pool {self.pool!r}: {holder}; wait for "
                        "it, or if it is dead break the lock (Failback.break_lock(), "
                        "`ceph-failback unlock --yes`)"))
            fresh = self._scope_cache is None  # the scope read now holds the VMs' present states
            scope = self._scope()
            if scope.mapping is not None:
                # A scope recorded in the journal is a filter too: resuming a failback of some VMs
                # must not be blocked by VMs it does not touch (another failback's, say).
                filtered = (self.image_filter is not None or self.vm_filter is not None
                            or self.journal.last(step="run", event="scope") is not None)
                for f in scope.mapping.findings:
                    # VM ids are per site: VM 0 on B is not VM 0 on A. A finding about a VM out of
                    # scope (one running on A after an earlier failback, say) is not this one's.
                    vm_in_scope = f.vm is not None and any(
                        (f.site, f.vm) in ((self.site_a.name, p.vm_a.id), (self.site_b.name, p.vm_b.id))
                        for p in scope.pairs)
                    relevant = (not filtered or f.kind is FindingKind.UNKNOWN_VM or vm_in_scope
                                or (f.image in scope.images if f.image is not None else f.vm is None))
                    if not relevant:
                        continue
                    target = (image_target(f.image) if f.image else
                              vm_target(f.site, f.vm) if f.vm is not None else "pool")
                    if f.kind is FindingKind.VM_NOT_STOPPED and f.vm is not None and (
                            self._attempted("resume_a", vm_target(f.site, f.vm))):
                        # Running on A because this failback resumed it (step 6 checked its
                        # images were primary on A first): done, not unsafe. Its outcome may be
                        # unrecorded: the process can die while oned boots the VM.
                        continue
                    if f.severity is Severity.BLOCKER:
                        blockers.append(Blocker(f.kind.value, target, f.message,
                                                waivable=f.kind.value in WAIVABLE))
                    else:
                        warnings.append(str(f))
            if self.vm_filter is not None and scope.mapping is not None:
                for vm_id in dict.fromkeys(self.vm_filter):
                    if not any(p.vm_b.id == vm_id for p in scope.pairs):
                        blockers.append(Blocker(FindingKind.UNKNOWN_VM.value,
                                                vm_target(self.site_b.name, vm_id),
                                                self._why_not_in_scope(vm_id)))
            if not scope.images:
                warnings.append("nothing in scope: no VM on site B uses a mirrored image of the pool")
            infos_a, stat_a = overview_a.result()
            infos_b, stat_b = overview_b.result()
            try:
                healthy = [d for d in health.result() if d.healthy]
                if not healthy:
                    blockers.append(Blocker(
                        "rbd-mirror-down", f"rbd-mirror@{self.site_a.name}",
                        f"no healthy rbd-mirror daemon on {self.site_a.name} reports pool "
                        f"{self.pool!r}: images cannot resync or replay from {self.site_b.name}"))
            except CephError as exc:
                blockers.append(Blocker("daemon-health-unknown", f"rbd-mirror@{self.site_a.name}",
                                        f"cannot read the rbd-mirror service status: {exc}",
                                        waivable=True))
            image_plans = [self._plan_image(n, infos_a.get(n), infos_b.get(n), stat_a.get(n),
                                            stat_b.get(n), blockers) for n in scope.images]
            present = list(scope.pairs) if fresh else self._present(scope.pairs)
            vm_plans = [self._plan_vm(p, blockers) for p in present]
            blockers = list({(b.kind, b.target): b for b in blockers}.values())
            return Plan(self.pool, self.site_a.name, self.site_b.name, tuple(image_plans),
                        tuple(vm_plans), tuple(blockers), tuple(warnings), self.waive)

    def _why_not_in_scope(self, vm_id: int) -> str:
        """Why a VM asked for (``vms=``) on B is not in the scope."""
        try:
            vm = self.site_b.one.vm(vm_id)
        except VMNotFoundError:
            return f"no VM {vm_id} exists on {self.site_b.name} (--vm takes ids on site B)"
        also = " (or none of its images is among the images asked for)" if (
            self.image_filter is not None) else ""
        return (f"VM {vm_id} on {self.site_b.name} ({vm.status}) shares no persistent image of "
                f"pool {self.pool!r} with a VM on {self.site_a.name}: nothing to fail back for "
                f"it{also}")

    def _plan_image(self, name: str, ia: MirrorImageInfo | None, ib: MirrorImageInfo | None,
                    sa: MirrorStatus | None, sb: MirrorStatus | None,
                    blockers: list[Blocker]) -> ImagePlan:
        t = image_target(name)
        known = ia or ib
        mode = known.mode if known is not None else None
        acts: list[Action] = []
        if ia is None and ib is not None and (
                self.journal.has(step="resync_a", event="done", target=t)
                or self.journal.has(step="resync_a", event="intent", target=t)):
            # rbd-mirror is recreating it for the resync this failback requested.
            acts = [Action("demote_a", t, False, "already demoted"),
                    Action("resync_a", t, False, "resync under way (image being recreated)"),
                    Action("demote_b", t, bool(ib.primary), "primary on B" if ib.primary
                           else "already non-primary on B"),
                    Action("promote_a", t, True, "non-forced, after proving A replayed B")]
            return ImagePlan(name, ib.mode, sa, sb, tuple(acts))
        if ia is None or ib is None:
            missing = [s.name for s, i in ((self.site_a, ia), (self.site_b, ib)) if i is None]
            blockers.append(Blocker("image-missing", t, f"not a mirrored image on "
                                    f"{' and '.join(missing)} (missing, or mirroring disabled)"))
            return ImagePlan(name, mode, sa, sb, ())
        a_primary, b_primary = bool(ia.primary), bool(ib.primary)
        b_demoted_by_us = self._attempted("demote_b", t)
        if sb is not None and sb.local.is_split_brain() and not b_demoted_by_us:
            # B's copy diverged from A's (e.g. B was demoted by hand after writes there): which
            # one is current is a decision for a person, not for this tool.
            blockers.append(Blocker("split-brain-on-b", t, f"split-brain reported for "
                                    f"{self.site_b.name}'s copy: the two copies diverged; decide "
                                    "which one is current and resync the other by hand"))
            return ImagePlan(name, mode, sa, sb, ())
        promoted = self.journal.last(step="promote_a", event="done", target=t)
        if b_primary and promoted is not None:
            # Primary on B again after this journal's failback promoted it on A: a new failover
            # happened since. The journal's resyncs and replay proofs belong to that earlier
            # failback; trusting them could skip a needed resync and promote A's old copy.
            blockers.append(Blocker(
                "stale-journal", t,
                f"journal {self.journal.path} records that a failback already promoted it on "
                f"{self.site_a.name} (at {promoted.ts}), yet it is primary on "
                f"{self.site_b.name} again: a new failover happened since; start this "
                "failback with a new journal"))
            return ImagePlan(name, mode, sa, sb, ())
        if a_primary and not b_primary:
            for step in ("demote_a", "resync_a", "demote_b", "promote_a"):
                acts.append(Action(step, t, False, f"done: primary on {self.site_a.name}"))
            return ImagePlan(name, mode, sa, sb, tuple(acts))
        if not a_primary and not b_primary and not b_demoted_by_us:
            blockers.append(Blocker("no-primary", t, f"primary on neither site; this failback "
                                    f"did not demote it on {self.site_b.name}, so which copy is "
                                    "current is unknown: promote the right one by hand first"))
        acts.append(Action("demote_a", t, a_primary, "primary on A" if a_primary
                           else "already non-primary on A"))
        if self.journal.has(step="resync_a", event="done", target=t):
            acts.append(Action("resync_a", t, False, "resync already requested by this failback"))
        elif a_primary:
            acts.append(Action("resync_a", t, True, "A was primary (diverged): resync from B"))
        elif sa is not None and sa.is_split_brain():
            acts.append(Action("resync_a", t, True, "split-brain on A: resync from B"))
        elif sa is not None and sa.local.up and sa.local.is_replaying():
            acts.append(Action("resync_a", t, False, "already replaying from B"))
        else:
            acts.append(Action("resync_a", t, True,
                               f"not replaying from B ({sa.local.label if sa else 'no status'}): "
                               "resync unless it starts replaying"))
        acts.append(Action("demote_b", t, b_primary, "primary on B" if b_primary
                           else "already non-primary on B"))
        acts.append(Action("promote_a", t, True, "non-forced, after proving A replayed B"))
        return ImagePlan(name, mode, sa, sb, tuple(acts))

    def _plan_vm(self, pair: Pair, blockers: list[Blocker]) -> VMPlan:
        """``pair`` holds the VMs' present states."""
        tb, ta = self._vm_t(self.site_b, pair.vm_b.id), self._vm_t(self.site_a, pair.vm_a.id)
        unsafe = [d for d in pair.vm_b.disks_in(self.pool) if not d.is_persistent]
        if unsafe and not pair.vm_b.is_done:
            blockers.append(Blocker(
                FindingKind.NON_PERSISTENT_DISK.value, tb,
                f"disks {[d.image for d in unsafe]} are not persistent: terminating the VM makes "
                "OpenNebula delete them and rbd-mirror would delete the copies on A"))
        acts = [
            Action("terminate_b", tb, not pair.vm_b.is_done,
                   "already DONE" if pair.vm_b.is_done else f"{pair.vm_b.status} on B"),
            Action("resume_a", ta, not pair.vm_a.is_running,
                   "already RUNNING" if pair.vm_a.is_running else f"{pair.vm_a.status} on A"),
        ]
        return VMPlan(pair.vm_b, pair.vm_a, pair.images, tuple(acts))

    def check(self) -> Plan:
        """:meth:`plan`, raising :class:`SafetyError` if any blocker is not waived.

        :meth:`run` starts with it; the first step method called on this object calls it too
        (once), so the steps called one by one keep the same rules."""
        plan = self.plan()
        if not plan.ok:
            raise SafetyError(
                f"{len(plan.unwaived)} blocker(s): " + "; ".join(str(b) for b in plan.unwaived),
                pool=self.pool,
                hint="fix them (see plan()); waivable kinds: " + ", ".join(sorted(WAIVABLE)))
        self._checked = True
        return plan

    # -- step helpers --------------------------------------------------------------------------

    def _step(self, step: str) -> StepResult:
        if not self._checked:
            # The step methods called one by one keep the plan's rules too (a VM running on A,
            # an image used twice, a clone disk...): the first step of this object checks.
            self.check()
        self._record_scope()
        self.events.emit(EventKind.STEP_STARTED, STEP_TITLES[step], step=step)
        self.journal.write(step, "started")
        return StepResult(step)

    def _finish(self, result: StepResult, started: float) -> StepResult:
        result.seconds = time.monotonic() - started
        self.journal.write(result.step, "finished", done=result.done, skipped=result.skipped,
                           failed=result.failed)
        self.events.emit(EventKind.STEP_FINISHED, str(result), step=result.step,
                         done=result.done, skipped=result.skipped, failed=result.failed)
        if result.failed:
            raise StepFailedError(
                f"step {result.step} failed for {len(result.failed)} target(s)",
                failures=result.failed, pool=self.pool,
                hint="fix the cause and call the step (or run()) again: finished work is skipped")
        return result

    def _skip(self, result: StepResult, target: str, reason: str) -> None:
        result.add(target, "skipped", reason)
        self.journal.write(result.step, "skipped", target, reason=reason)
        self.events.emit(EventKind.ACTION, f"{target}: skipped ({reason})", step=result.step,
                         target=target, outcome="skipped")

    def _done(self, result: StepResult, target: str, reason: str = "", **data: Any) -> None:
        result.add(target, "done", reason)
        self.journal.write(result.step, "done", target, reason=reason, **data)
        self.events.emit(EventKind.ACTION, f"{target}: {reason or 'done'}", step=result.step,
                         target=target, outcome="done")

    def _fail(self, result: StepResult, target: str, exc: BaseException) -> None:
        result.add(target, "failed", str(exc))
        self.journal.write(result.step, "failed", target, error=str(exc),
                           error_type=type(exc).__name__)
        self.events.emit(EventKind.WARNING, f"{target}: FAILED: {exc}", step=result.step,
                         target=target, outcome="failed")

    def _parallel(self, items: Sequence[Any], fn: Callable[[Any], None], workers: int) -> None:
        if not items:
            return
        with ThreadPoolExecutor(max(1, min(workers, len(items))),
                                thread_name_prefix="failback") as ex:
            for future in [ex.submit(fn, i) for i in items]:
                future.result()

    def _daemon_a_ok(self) -> bool:
        try:
            return any(d.healthy for d in self.pool_a().daemon_health(
                beacon_grace=self.timeouts.daemon_beacon_grace))
        except CephError:
            return True  # cannot tell (caps): do not fail on that alone

    def _require_daemon_a(self, what: str) -> None:
        if not self._daemon_a_ok():
            raise WaitFailedError(
                f"no healthy rbd-mirror daemon on {self.site_a.name}: {what} cannot progress",
                site=self.site_a.name, pool=self.pool,
                hint=f"start rbd-mirror on {self.site_a.name}, then run again (finished work is "
                     "skipped)")

    # -- step 1 --------------------------------------------------------------------------------

    @_exclusive
    def demote_site_a(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 1: demote the images on site A that are primary there.

        An image already non-primary on A (a DR test demotes A before failing over) is skipped.
        """
        started = time.monotonic()
        result = self._step("demote_a")
        names = self._select_images(images)
        infos, infos_b = self.pool_a().images(), self.pool_b().images()
        todo = []
        for name in names:
            t = image_target(name)
            info, info_b = infos.get(name), infos_b.get(name)
            if info is None and info_b is not None and self.journal.has(
                    step="resync_a", event="done", target=t):
                self._skip(result, t, "being recreated by this failback's resync")
            elif info is None or info_b is None:
                where = self.site_a if info is None else self.site_b
                self._fail(result, t, ImageNotFoundError(
                    "not a mirrored image", site=where.name, pool=self.pool, image=name))
            elif not info.primary:
                self._skip(result, t, "already non-primary on A")
            elif not info_b.primary:
                # Demoting A now would leave no primary: the image is home (failed back, or it
                # never failed over).
                self._skip(result, t, "primary on A and not on B: already home")
            else:
                todo.append(name)
        for name in todo:
            self.journal.write("demote_a", "intent", image_target(name), before="primary")
        for name, r in self.pool_a().demote_many(todo).items():
            if r.ok:
                self._done(result, image_target(name), "demoted on A", was_primary=True)
            else:
                assert r.error is not None
                self._fail(result, image_target(name), r.error)
        return self._finish(result, started)

    # -- step 2 --------------------------------------------------------------------------------

    @_exclusive
    def resync_site_a(self, images: Iterable[str] | None = None, *, wait: bool = True,
                      on_ready: Callable[[str], None] | None = None) -> StepResult:
        """Step 2: flag the images on site A for resync, and wait until they replay from B.

        Only images that need it are resynced: those that were primary on A (they diverged from
        B) and those that are split-brained or do not start replaying from B within
        ``timeouts.settle``. An image already replaying cleanly from B is left alone (a DR test
        resyncs nothing). Before any resync the step checks that B holds the primary (never
        resync the only current copy) and that A's rbd-mirror daemon is up. A resync already
        requested by this failback (journal) is never requested again.

        ``on_ready`` is called (from this step's thread) with each image as soon as it is ready
        for steps 3-5: at once for an image that needs no resync, else when it replays from B
        during the wait. :meth:`run` uses it to start each VM's steps as soon as its own images
        are ready.
        """
        started = time.monotonic()
        result = self._step("resync_a")
        names = self._select_images(images)
        pa, pb = self.pool_a(), self.pool_b()
        infos_a, infos_b = pa.images(), pb.images()
        self._require_daemon_a("resync")
        to_resync: list[str] = []
        to_settle: list[str] = []
        waiting: dict[str, float] = {}  # image -> resync request time (or 0: no resync)
        for name in names:
            t = image_target(name)
            ia, ib = infos_a.get(name), infos_b.get(name)
            requested = self.journal.last(step="resync_a", event="done", target=t)
            if ia is None and ib is not None and requested is not None:
                waiting[name] = requested.time  # being recreated by the resync we requested
                continue
            if ia is None or ib is None:
                self._fail(result, t, ImageNotFoundError(
                    f"not a mirrored image on {self.site_a.name if ia is None else self.site_b.name}",
                    pool=self.pool, image=name))
                continue
            if ia.primary and not ib.primary:
                self._skip(result, t, "primary on A and not on B: already home")
                continue
            if requested is not None:
                if self._proven(name):
                    self._skip(result, t, "resynced by this failback, replaying from B")
                else:
                    waiting[name] = requested.time
                continue
            if self.journal.has(step="resync_a", event="intent", target=t):
                # Interrupted around the request: whether it reached librbd is unknown. Let the
                # status decide (a resync under way replays; one never requested stays
                # split-brained), so a resync is never requested twice.
                to_settle.append(name)
                continue
            if ia.primary:
                self._fail(result, t, SafetyError(
                    "still primary on A: demote it first (step 1)", site=self.site_a.name,
                    pool=self.pool, image=name))
                continue
            if not ib.primary:
                if self._attempted("demote_b", t):
                    self._skip(result, t, "B already demoted by this failback")
                else:
                    self._fail(result, t, SafetyError(
                        f"not primary on {self.site_b.name}: resyncing A now could discard the "
                        "only current copy", site=self.site_b.name, pool=self.pool, image=name))
                continue
            if self.journal.has(step="demote_a", event="done", target=t):
                to_resync.append(name)  # A was primary: diverged from B, the documented resync
            else:
                to_settle.append(name)
        if to_settle:
            settled = self._settle(to_settle, result)
            to_resync.extend(n for n, needs in settled.items() if needs)
            for name, needs in settled.items():
                if not needs:
                    self._skip(result, image_target(name), "already replaying from B")
                    self._prove(name, "replaying from B before the failback")
        now = time.time()
        for name in to_resync:
            self.journal.write("resync_a", "intent", image_target(name))
        for name, r in pa.resync_many(to_resync).items():
            if r.ok:
                self._done(result, image_target(name), "resync requested on A")
                waiting[name] = now
            else:
                assert r.error is not None
                self._fail(result, image_target(name), r.error)
        if on_ready is not None:
            for name in names:
                if result.outcomes.get(image_target(name), ("",))[0] == "skipped":
                    on_ready(name)
        if wait and waiting:
            self._wait_resynced(waiting, result, on_ready)
        return self._finish(result, started)

    def _settle(self, names: list[str], result: StepResult) -> dict[str, bool]:
        """For images non-primary on A that this failback did not demote: wait for a status that
        says replaying (no resync needed) or split-brain (resync); undecided after
        ``timeouts.settle``: resync (B is primary, so that is safe)."""
        pa = self.pool_a()
        decided: dict[str, bool] = {}

        def observe() -> dict[str, MirrorStatus]:
            return pa.statuses([n for n in names if n not in decided])

        def judge(st: dict[str, MirrorStatus]) -> Judgement[dict[str, MirrorStatus]]:
            for name, s in st.items():
                if s.is_split_brain():
                    decided[name] = True
                elif s.local.up and s.local.is_replaying() and (
                        s.local.replay is not None and (
                            s.local.replay.kind is ReplayKind.SNAPSHOT
                            or s.local.replay.in_primary_epoch())):
                    # Journal mode: "replaying" alone is not enough; right after a flip A may
                    # not have replayed B's promotion yet (an orphan of its own demotion, which
                    # librbd would promote without B's writes). Snapshot mode: step 5 checks
                    # the mirror snapshots.
                    decided[name] = False
            return Judgement(Verdict.DONE if len(decided) == len(names) else Verdict.RETRY)

        try:
            wait_until(observe, judge, what="site A to report how it replays",
                       timeout=self.timeouts.settle, interval=self.timeouts.poll)
        except FailbackError:
            pass
        for name in names:
            decided.setdefault(name, True)
        return decided

    def _prove(self, name: str, how: str) -> None:
        """Record that A was seen replaying from B: such an image is no orphan of its own
        demotion, so a non-forced promote that librbd accepts after B's demotion is safe."""
        self.journal.write("resync_a", "observed", image_target(name), proof=how)

    def _attempted(self, step: str, target: str) -> bool:
        """This failback started ``step`` on ``target`` (its outcome may be unknown: the
        process can die between the intent record and the done record)."""
        return (self.journal.has(step=step, event="intent", target=target)
                or self.journal.has(step=step, event="done", target=target))

    def _proven(self, name: str) -> bool:
        t = image_target(name)
        proof = self.journal.last(event="observed", target=t)
        resync = self.journal.last(step="resync_a", event="done", target=t)
        return proof is not None and (resync is None or proof.time >= resync.time)

    def _wait_resynced(self, waiting: dict[str, float], result: StepResult,
                       on_ready: Callable[[str], None] | None = None) -> None:
        pa = self.pool_a()
        pending = dict(waiting)
        last: dict[str, str] = {}

        def observe() -> dict[str, MirrorStatus]:
            if not self._daemon_a_ok():
                raise WaitFailedError(
                    f"no healthy rbd-mirror daemon on {self.site_a.name} while resyncing",
                    site=self.site_a.name, pool=self.pool,
                    hint="start rbd-mirror on site A, then run again: requested resyncs are "
                         "not repeated")
            return pa.statuses(list(pending))

        def judge(st: dict[str, MirrorStatus]) -> Judgement[dict[str, MirrorStatus]]:
            for name, since in list(pending.items()):
                s = st.get(name)
                last[name] = s.local.summary() if s else "being recreated (not listed)"
                if s is None:
                    continue
                if s.local.bootstrap_percent is not None or (
                        s.local.replay and s.local.replay.syncing_percent is not None):
                    pct = s.local.bootstrap_percent
                    if pct is None and s.local.replay is not None:
                        pct = s.local.replay.syncing_percent
                    self.events.emit(EventKind.IMAGE_PROGRESS, f"{name}: {last[name]}",
                                     step="resync_a", target=image_target(name), percent=pct)
                fresh = s.local.last_update is not None and s.local.last_update.timestamp() >= since
                if fresh and s.is_split_brain():
                    return Judgement(Verdict.FAIL, f"{name} is split-brained after resync")
                if fresh and s.local.up and s.local.is_replaying():
                    self._prove(name, "resynced from B")
                    self.events.emit(EventKind.IMAGE_PROGRESS, f"{name}: replaying from B",
                                     step="resync_a", target=image_target(name), percent=100)
                    del pending[name]
                    if on_ready is not None:
                        on_ready(name)
            return Judgement(Verdict.DONE if not pending else Verdict.RETRY,
                             f"{len(pending)} image(s) not replaying yet")

        try:
            wait_until(observe, judge, what="the resynced images on site A to replay from B",
                       timeout=self.timeouts.resync, interval=self.timeouts.poll,
                       describe=lambda _: {n: last.get(n, "?") for n in pending},
                       where={"site": self.site_a.name, "pool": self.pool},
                       hint="the resync goes on in rbd-mirror; run again later to keep waiting "
                            "(resyncs are not requested twice)")
        except FailbackError as exc:
            for name in list(pending):
                self._fail(result, image_target(name), exc)

    # -- step 3 --------------------------------------------------------------------------------

    @_exclusive
    def terminate_site_b(self, vms: Iterable[int] | None = None) -> StepResult:
        """Step 3: terminate the VMs on site B and wait until their images are mirrored to A.

        A VM with a non-persistent (clone) or volatile disk in the pool is refused: OpenNebula
        would delete those images and rbd-mirror the copies on A. A VM already DONE is not
        terminated again. Mirrored means, after the VM stopped: in journal mode A replays from B
        (its latest report: up, replaying, no split-brain) and was proven to replay B's copy during
        this failback (step 2), else its latest report says nothing is behind; what proves that A
        has every write is librbd's non-forced promote in step 5, which succeeds only once A has
        replayed B's demotion, so step 5 waits for the catch-up (rbd-mirror reports a replaying
        image every ~30 s: no newer report need come). In snapshot mode, a mirror snapshot taken
        on B after the stop is completely copied to A.
        """
        started = time.monotonic()
        result = self._step("terminate_b")
        pairs = self._select_pairs(vms)
        self._parallel(pairs, lambda p: self._terminate_one(p, result), self.vm_concurrency)
        return self._finish(result, started)

    def _terminate_one(self, pair: Pair, result: StepResult) -> None:
        t = self._vm_t(self.site_b, pair.vm_b.id)
        one_b = self.site_b.one
        try:
            vm = one_b.vm(pair.vm_b.id)
            if vm.is_done:
                self._skip(result, t, "already DONE")
            else:
                unsafe = [d.image for d in vm.disks_in(self.pool) if not d.is_persistent]
                if unsafe:
                    raise SafetyError(
                        f"disks {unsafe} are not persistent: terminating would delete them "
                        "(and rbd-mirror the copies on A)", site=self.site_b.name, vm=vm.id,
                        hint="make the images persistent, or fail this VM back by hand")
                if vm.state == "ACTIVE" and vm.lcm_state in _TERMINATING:
                    # A terminate sent by an interrupted run: wait for it, do not send another.
                    self.journal.write("terminate_b", "observed", t, state=vm.status)
                else:
                    unready = self._not_ready_on_a(pair)
                    if unready:
                        raise SafetyError(
                            f"{self.site_a.name} is not ready to take over images {unready}: "
                            "this failback has not seen them replay from "
                            f"{self.site_b.name} (steps 1 and 2); stopping the VM now would "
                            "leave it down with no copy on A to resume from",
                            site=self.site_b.name, vm=vm.id, pool=self.pool,
                            hint="run demote_site_a() and resync_site_a() first (or run())")
                    self.journal.write("terminate_b", "intent", t, state=vm.status)
                self.events.emit(EventKind.VM_STATE, f"{t}: terminating ({vm.status})",
                                 step="terminate_b", target=t)
                final = one_b.terminate(vm, hard_after=self.hard_terminate_after,
                                        timeout=self.timeouts.terminate)
                self._done(result, t, "terminated", state=final.status)
            self._wait_mirrored(pair)
        except FailbackError as exc:
            self._fail(result, t, exc)

    def _not_ready_on_a(self, pair: Pair) -> list[str]:
        """The pair's images that site A could not take over if the VM on B stopped now: not
        proven (journal) to replay from B, not already demoted on B by this failback, and not
        already home (primary on A only)."""
        unready = []
        for name in pair.images:
            if self._proven(name) or self._attempted("demote_b", image_target(name)):
                continue
            try:
                home = self.pool_a().info(name).primary and not self.pool_b().info(name).primary
            except FailbackError:
                home = False
            if not home:
                unready.append(name)
        return unready

    def _wait_mirrored(self, pair: Pair) -> None:
        """After the VM on B stopped: wait until its images are mirrored to A (journal mode: see
        :meth:`terminate_site_b`)."""
        t = self._vm_t(self.site_b, pair.vm_b.id)
        if self.journal.has(step="terminate_b", event="mirrored", target=t):
            return
        pa, pb = self.pool_a(), self.pool_b()
        infos = pb.infos(pair.images)
        journal_mode = [i for i in pair.images if (infos.get(i) and infos[i].mode != "snapshot")]
        snap_mode = [i for i in pair.images if i not in journal_mode]
        # Snapshot mode: one mirror snapshot on B after the stop (still primary there).
        snaps: dict[str, int] = {}
        for name in snap_mode:
            if infos.get(name) is not None and infos[name].primary:
                snaps[name] = pb.create_mirror_snapshot(name)
        b_uuid = pb.mirror_uuid() if snap_mode else ""
        last: dict[str, str] = {}
        # Journal mode: an image proven to replay from B during this failback (step 2: resynced
        # from B, or seen replaying from B) is not an orphan of its own demotion, so the
        # non-forced promote of step 5 is accepted only once A has replayed B's demotion, the
        # last entry of B's journal: that promote waits for the catch-up itself. rbd-mirror
        # reports a replaying image only every ~30 s, so waiting here for a report that says
        # "caught up" would add up to that much to every VM's downtime, and prove no more.
        proven = {name for name in journal_mode if self._proven(name)}

        def observe() -> dict[str, bool]:
            self._require_daemon_a("mirroring")
            st = pa.statuses(journal_mode, each=True) if journal_mode else {}
            ok: dict[str, bool] = {}
            for name in journal_mode:
                s = st.get(name)
                last[name] = s.local.summary() if s else "no status"
                if s is not None and s.is_split_brain():
                    raise WaitFailedError("split-brain on A", site=self.site_a.name,
                                          pool=self.pool, image=name)
                # Caught up as of the latest report. rbd-mirror only reports when something
                # changes, so no report newer than the stop may ever come; what guarantees that
                # A has every write is librbd's non-forced promote (step 5), which it accepts
                # only once A has replayed B's demotion, the last entry of B's journal.
                ok[name] = bool(s and s.local.up and (
                    s.is_caught_up() or (name in proven and s.local.is_replaying())))
            for name in snap_mode:
                if name not in snaps:
                    ok[name] = True  # B already demoted: promote_a checks the demotion snapshot
                    continue
                newest = pa.mirror_snapshots(name)
                top = newest[-1] if newest else None
                last[name] = (f"newest mirror snapshot {top.state} "
                              f"{'complete' if top.complete else 'copying'}") if top else "none"
                ok[name] = bool(top and top.complete and top.primary_mirror_uuid == b_uuid
                                and top.primary_snap_id == snaps[name])
            return ok

        wait_until(observe, lambda ok: Judgement(Verdict.DONE if all(ok.values())
                                                 else Verdict.RETRY),
                   what=f"the images of {t} to be mirrored to {self.site_a.name}",
                   timeout=self.timeouts.mirror, interval=self.timeouts.poll,
                   describe=lambda ok: {n: last.get(n, "?") for n, v in ok.items() if not v},
                   where={"site": self.site_a.name, "pool": self.pool},
                   hint="run again to keep waiting (the VM is not terminated twice)")
        for name in pair.images:
            if name in journal_mode and name not in proven:
                self._prove(name, "replaying from B, caught up after the VM stopped")
        self.journal.write("terminate_b", "mirrored", t, images=list(pair.images))

    # -- step 4 --------------------------------------------------------------------------------

    @_exclusive
    def demote_site_b(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 4: demote the images on site B.

        Refused for an image that site A was not seen replaying from B during this failback
        (steps 1 and 2 not done), for one that a VM on B not yet DONE uses, or whose exclusive
        lock a client holds (a running VM, a mapped device): demoting under a writer loses its
        last writes.
        The image's watchers are recorded in the journal (rbd-mirror itself watches it).
        """
        started = time.monotonic()
        result = self._step("demote_b")
        names = self._select_images(images)
        pb = self.pool_b()
        infos = pb.infos(names)
        users: dict[str, list[Pair]] = {}
        for p in self._scope().pairs:
            for i in p.images:
                users.setdefault(i, []).append(p)
        todo = []
        watchers: dict[str, list[str]] = {}
        for name in names:
            t = image_target(name)
            try:
                info = infos.get(name)
                if info is None:
                    raise ImageNotFoundError("not a mirrored image", site=self.site_b.name,
                                             pool=self.pool, image=name)
                if not info.primary:
                    self._skip(result, t, "already non-primary on B")
                    continue
                if not self._proven(name):
                    # Demoting B before A replays from B would leave A's old copy the only
                    # candidate for primary, and B's last writes split-brained.
                    raise SafetyError(
                        f"{self.site_a.name} has not been seen replaying it from "
                        f"{self.site_b.name} (steps 1 and 2): demoting B now could leave A's "
                        "old copy as the one to promote", site=self.site_b.name, pool=self.pool,
                        image=name, hint="run demote_site_a() and resync_site_a() first")
                for p in users.get(name, []):
                    vm = self.site_b.one.vm(p.vm_b.id)
                    if not vm.is_done:
                        raise SafetyError(f"VM {vm.id} on B still uses it ({vm.status})",
                                          site=self.site_b.name, pool=self.pool, image=name,
                                          hint="terminate the VM first (step 3)")
                self._wait_no_writer(name)
                watchers[name] = [str(w.get("addr")) for w in pb.watchers(name)]
                todo.append(name)
            except FailbackError as exc:
                self._fail(result, t, exc)
        for name in todo:
            self.journal.write("demote_b", "intent", image_target(name), watchers=watchers[name])
        for name, r in pb.demote_many(todo).items():
            if r.ok:
                self._done(result, image_target(name), "demoted on B")
            else:
                assert r.error is not None
                self._fail(result, image_target(name), r.error)
        return self._finish(result, started)

    def _wait_no_writer(self, name: str) -> None:
        """Wait until no live client holds the image's exclusive lock on B.

        A writer (a running VM, a mapped device) owns the exclusive lock and keeps a watch on the
        image. A lock whose owner no longer watches belongs to a dead client (librbd breaks it when
        the demote takes the lock); a killed client's watch lingers until the OSD's watch timeout
        (30 s by default), hence the wait. Watchers alone are readers (rbd-mirror on A watches the
        primary it replays from in snapshot mode) and do not block."""
        pb = self.pool_b()

        def writers() -> list[str]:
            owners = [str(o.get("owner")) for o in pb.lock_owners(name)]
            if not owners:
                return []
            watching = {str(w.get("addr")) for w in pb.watchers(name)}
            return [o for o in owners if o in watching]

        try:
            wait_until(writers, lambda w: Judgement(Verdict.RETRY if w else Verdict.DONE),
                       what=f"the writer of {name} on {self.site_b.name} to let go",
                       timeout=self.timeouts.writer, interval=self.timeouts.poll,
                       describe=lambda w: {name: f"exclusive lock held by {w}"},
                       where={"site": self.site_b.name, "pool": self.pool, "image": name})
        except WaitTimeoutError as exc:
            raise SafetyError(
                f"still in use: {exc.last_seen.get(name, 'a client holds its exclusive lock')}",
                site=self.site_b.name, pool=self.pool, image=name,
                hint="stop the writer (a VM or a mapped device) that has it open") from exc

    # -- step 5 --------------------------------------------------------------------------------

    @_exclusive
    def promote_site_a(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 5: promote the images on site A, never forced.

        Before promoting, the image must be demoted on B and proven to have replayed from B
        during this failback (resynced from B, or seen replaying from B): an image on A whose
        last event is its own demotion would accept a non-forced promote with stale data (the
        stale-promote trap), so without that proof the promote is refused. In snapshot mode,
        A's newest mirror snapshot must also be the complete copy of B's demotion snapshot.
        Then the non-forced promote is retried while librbd says the demotion has not arrived.
        """
        started = time.monotonic()
        result = self._step("promote_a")
        names = self._select_images(images)
        self._parallel(names, lambda n: self._promote_one(n, result), self.concurrency)
        return self._finish(result, started)

    def _promote_one(self, name: str, result: StepResult) -> None:
        t = image_target(name)
        pa, pb = self.pool_a(), self.pool_b()
        try:
            ia, ib = pa.info(name), pb.info(name)
            if ia.primary and not ib.primary:
                self._skip(result, t, "already primary on A")
                return
            if ib.primary:
                raise SafetyError(f"still primary on {self.site_b.name}: demote it there first "
                                  "(step 4)", site=self.site_a.name, pool=self.pool, image=name)
            if ia.primary:
                raise SafetyError("primary on A and B demoted?", site=self.site_a.name,
                                  pool=self.pool, image=name)
            if not self._proven(name):
                raise SafetyError(
                    f"no proof that A replayed {self.site_b.name}'s copy during this failback "
                    "(never resynced from B, never seen replaying from B): a non-forced promote "
                    "could succeed with stale data (the stale-promote trap)",
                    site=self.site_a.name, pool=self.pool, image=name,
                    hint="run resync_site_a() (step 2) for it; never force-promote")
            status = pa.status(name)
            if status.is_split_brain():
                raise SafetyError("split-brain on A", site=self.site_a.name, pool=self.pool,
                                  image=name, hint="resync A from B (step 2)")
            if ia.mode == "snapshot":
                self._wait_demotion_copied(name)
            self.journal.write("promote_a", "intent", t)
            attempts = [0]

            def attempt() -> bool:
                attempts[0] += 1
                pa.promote(name)  # never forced
                return True

            # Journal mode: step 3 does not wait for A to catch up (see _wait_mirrored), this
            # wait does, so it may take as long as the mirroring wait.
            limit = (self.timeouts.promote if ia.mode == "snapshot"
                     else max(self.timeouts.promote, self.timeouts.mirror))
            wait_until(attempt, lambda _: Judgement(Verdict.DONE),
                       what=f"a non-forced promote of {name} to be accepted",
                       timeout=limit, interval=min(0.25, self.timeouts.poll),
                       retry_on=(NotReadyError,),
                       where={"site": self.site_a.name, "pool": self.pool, "image": name},
                       hint="rbd-mirror on A has not replayed B's demotion yet; run again")
            self._done(result, t, "promoted on A (not forced)", attempts=attempts[0], force=False)
        except FailbackError as exc:
            self._fail(result, t, exc)

    def _wait_demotion_copied(self, name: str) -> None:
        pa, pb = self.pool_a(), self.pool_b()
        b_uuid = pb.mirror_uuid()
        b_snaps = pb.mirror_snapshots(name)
        if not b_snaps or b_snaps[-1].state != "primary-demoted":
            raise SafetyError("B's newest mirror snapshot is not its demotion",
                              site=self.site_b.name, pool=self.pool, image=name)
        demotion = b_snaps[-1].id

        def observe() -> bool:
            snaps = pa.mirror_snapshots(name)
            top = snaps[-1] if snaps else None
            return bool(top and top.state == "non-primary-demoted" and top.complete
                        and top.primary_mirror_uuid == b_uuid and top.primary_snap_id == demotion)

        wait_until(observe, lambda ok: Judgement(Verdict.DONE if ok else Verdict.RETRY),
                   what=f"B's demotion snapshot of {name} to be copied to A",
                   timeout=self.timeouts.promote, interval=min(0.5, self.timeouts.poll),
                   where={"site": self.site_a.name, "pool": self.pool, "image": name})

    # -- step 6 --------------------------------------------------------------------------------

    @_exclusive
    def resume_site_a(self, vms: Iterable[int] | None = None) -> StepResult:
        """Step 6: resume the VMs on site A and wait until they run.

        ``vms`` are ids of VMs on **site B** (the scope's key); their partners on A are resumed.
        A VM whose images are not all primary on A is refused.
        """
        started = time.monotonic()
        result = self._step("resume_a")
        pairs = self._select_pairs(vms)
        self._parallel(pairs, lambda p: self._resume_one(p, result), self.vm_concurrency)
        return self._finish(result, started)

    def _resume_one(self, pair: Pair, result: StepResult) -> None:
        t = self._vm_t(self.site_a, pair.vm_a.id)
        try:
            vm = self.site_a.one.vm(pair.vm_a.id)
            if vm.is_running:
                self._skip(result, t, "already RUNNING")
                return
            infos = self.pool_a().infos(pair.images)
            not_primary = [i for i in pair.images if not (infos.get(i) and infos[i].primary)]
            if not_primary:
                raise SafetyError(f"images {not_primary} are not primary on A yet",
                                  site=self.site_a.name, vm=vm.id,
                                  hint="promote them first (step 5)")
            self.journal.write("resume_a", "intent", t, state=vm.status)
            final = self.site_a.one.resume(vm, timeout=self.timeouts.resume)
            self._done(result, t, "running on A", state=final.status, vm_b=pair.vm_b.id)
        except FailbackError as exc:
            self._fail(result, t, exc)

    # -- run -----------------------------------------------------------------------------------

    @_exclusive
    def run(self, *, pipeline: bool = True) -> Report:
        """Every step in order, after :meth:`check`. Safe to call again after an interruption:
        finished work is skipped (nothing is resynced or terminated twice).

        With ``pipeline`` (default), steps 3-6 run per VM: each VM is terminated, mirrored,
        demoted, promoted and resumed as soon as its own images are ready (step 2 requests every
        resync, then one wait watches them all and starts each VM's steps the moment its images
        replay from B), ``vm_concurrency`` VMs at a time, so one slow image does not keep every
        VM down.

        Returns:
            The :class:`Report`. Raises :class:`StepFailedError` if anything failed (the
            journal and :meth:`report` say what).
        """
        self.check()
        self._record_scope()
        self.journal.write("run", "started", pipeline=pipeline)
        failures: dict[str, str] = {}
        try:
            self.demote_site_a()
            if pipeline:
                def one_vm(pair: Pair) -> None:
                    try:
                        self.terminate_site_b(vms=[pair.vm_b.id])
                        self.demote_site_b(images=pair.images)
                        self.promote_site_a(images=pair.images)
                        self.resume_site_a(vms=[pair.vm_b.id])
                    except StepFailedError as exc:
                        with self._lock:
                            failures.update(exc.failures)
                    except FailbackError as exc:  # a step that could not start for this VM
                        with self._lock:
                            failures[self._vm_t(self.site_b, pair.vm_b.id)] = str(exc)

                self._dispatch_when_ready(self.pairs, one_vm, failures)
                # Images of no VM (``images=``): step 2 above waited for them too.
                leftover = [i for i in self.images if image_target(i) not in failures
                            and not any(i in p.images for p in self.pairs)]
                for step in (self.demote_site_b, self.promote_site_a):
                    if not leftover:
                        break
                    try:
                        step(images=leftover)
                    except StepFailedError as exc:
                        failures.update(exc.failures)
                        leftover = [i for i in leftover if image_target(i) not in exc.failures]
                if failures:
                    raise StepFailedError(f"{len(failures)} target(s) failed", failures=failures,
                                          pool=self.pool, hint="fix the cause and run again")
            else:
                self.resync_site_a()
                self.terminate_site_b()
                self.demote_site_b()
                self.promote_site_a()
                self.resume_site_a()
        except FailbackError as exc:
            self.journal.write("run", "failed", error=str(exc))
            raise
        self.journal.write("run", "finished")
        return self.report()

    def _dispatch_when_ready(self, pairs: Sequence[Pair], fn: Callable[[Pair], None],
                             failures: dict[str, str]) -> None:
        """Step 2 over every image, starting ``fn`` for each pair (``vm_concurrency`` at a time)
        as soon as all its images are ready: one wait polls for every image, and a VM whose
        images are ready never waits behind one whose resync is slow."""
        missing = [set(p.images) for p in pairs]
        users: dict[str, list[int]] = {}
        for index, pair in enumerate(pairs):
            for name in pair.images:
                users.setdefault(name, []).append(index)
        started: set[int] = set()
        futures = []
        ex = ThreadPoolExecutor(max(1, min(self.vm_concurrency, len(pairs))),
                                thread_name_prefix="failback")

        def start(index: int) -> None:
            if index not in started:
                started.add(index)
                futures.append(ex.submit(fn, pairs[index]))

        def ready(name: str) -> None:
            for index in users.get(name, ()):
                missing[index].discard(name)
                if not missing[index]:
                    start(index)

        for index, images in enumerate(missing):
            if not images:
                start(index)  # a pair with no image of the pool: nothing to wait for
        try:
            self.resync_site_a(on_ready=ready)
        except StepFailedError as exc:
            failures.update(exc.failures)  # the VMs of those images are not started
        except BaseException:
            # Interrupted (Ctrl-C) or step 2 could not run: no VM not yet started is stopped.
            ex.shutdown(wait=True, cancel_futures=True)
            raise
        ex.shutdown(wait=True)
        for future in futures:
            future.result()

    def resume(self, *, pipeline: bool = True) -> Report:
        """Finish an interrupted failback (same as :meth:`run`: every step skips what is done)."""
        return self.run(pipeline=pipeline)

    # -- status and report ---------------------------------------------------------------------

    def status(self) -> Status:
        """Both sites side by side for the scope: per image the role and rbd-mirror report on A
        and B, per VM pair the states on B and A. Changes nothing.

        Returns:
            A :class:`~ceph_failback.failback.status.Status`: a table when printed, coloured
            HTML in Jupyter, :meth:`~ceph_failback.failback.status.Status.to_dict` for JSON.
        """
        pa, pb = self.pool_a(), self.pool_b()
        scope = self._scope()
        # The two sites' listings side by side, beside OpenNebula's (see plan()).
        with ThreadPoolExecutor(2, thread_name_prefix="status") as ex:  # see plan()
            overview_a = ex.submit(pa.overview, scope.images)
            overview_b = ex.submit(pb.overview, scope.images)
            present = self._present(scope.pairs)
            (ia, sa), (ib, sb) = overview_a.result(), overview_b.result()
            a, b = self.site_a.name, self.site_b.name
            images = tuple(ImageState(name, ImageSide(a, ia.get(name), sa.get(name)),
                                      ImageSide(b, ib.get(name), sb.get(name)))
                           for name in scope.images)
            vms = tuple(VMState(p.vm_b, p.vm_a, tuple(p.images)) for p in present)
            return Status.now(self.pool, a, b, images, vms)

    def report(self) -> Report:
        """What this failback did, from the journal: per image outcome, per VM downtime."""
        return build_report(self.journal, self._scope().pairs, list(self._scope().images),
                            site_a=self.site_a.name, site_b=self.site_b.name, pool=self.pool)
