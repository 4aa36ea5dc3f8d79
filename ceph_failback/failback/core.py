"""The ``Failback`` facade: OpenNebula's failback procedure, one method per step.

The steps live in :mod:`.steps` (one module each, with its pure decision), the safety rules in
:mod:`.safety`, the plan in :mod:`.planner`, the scope in :mod:`.scope`, the pipelined run in
:mod:`.pipeline`. This module ties them to two :class:`Site` objects, the journal and the pool's
failback lock.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from ..ceph.lock import Holder
from ..ceph.mirror import DEFAULT_CONCURRENCY
from ..ceph.pools import PoolLocks, PoolSet, break_locks, lock_holders, unserved_pools
from ..ceph.seams import MirrorSide, PoolLockSide
from ..errors import CephError, ConfigurationError, FailbackError, SafetyError, WaitFailedError
from ..opennebula.mapping import Mapping, Pair
from .events import Emitter, Listener
from .hooks import Hook, HookCall, HookRunner, When
from .journal import Journal, Synced
from .ledger import Ledger, Mark, Step
from .locking import RunLock
from .order import StartOrder
from .pipeline import run_in_sequence, run_pipelined
from .plan import Plan
from .protection import record_unprotected, watch_protection
from .report import Report, build_report
from .safety import Names
from .scope import WAIVABLE, Scope, ScopeReader
from .sites import Site, Timeouts, check_distinct_clusters, image_names, pool_names
from .status import Status, read_status
from .steps import demote_a, demote_b, promote_a, resume_a, resync_a, terminate_b
from .steps import reprotect as reprotect_step
from .steps.base import Decision, StepResult  # noqa: F401 (StepResult: importable from here)
from .survey import survey
from .verify import ImageCheck, Verifier, Verify, verify_now
from .waits import SPLIT_BRAIN_ON_B

__all__ = ["Failback", "WAIVABLE"]  # Site and Timeouts: .sites (importable from here too)

log = logging.getLogger("ceph_failback.failback")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _step(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A step method: under the pool's failback lock (see :meth:`Failback.locked`), after the
    plan's blockers were checked once and the scope recorded."""
    @functools.wraps(method)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        self = args[0]
        assert isinstance(self, Failback)
        with self.locked():
            self._begin()
            return method(*args, **kwargs)
    return wrapper


class Failback:
    """Fail a pool's VMs and images back from site B to site A.

    Each documented step is a method that can be called alone (cell by cell in Jupyter): it
    looks at the present state first, skips what is already done, acts on the rest, waits until
    the action took effect, and writes every action to the journal. :meth:`run` calls them all,
    in order, per VM as soon as its images are ready (``pipeline=True``).

    Args:
        site_a: the home site (the VMs come back here).
        site_b: the site the VMs run on now.
        pool: the mirrored RBD pool, or several (a list): the VMs whose disks are in several
            Ceph datastores fail back with all of them; images are then named ``pool/image``,
            and the failback holds every pool's lock.
        images: restrict the scope to these images (and the VMs that use them).
        vms: restrict the scope to these VMs on site B (ids).
        pairs: an explicit mapping ``{vm_b_id: vm_a_id}`` that overrides or completes the one
            read from the disks.
        order: the start order, explicitly: a list of groups, each a list of VMs (ids on site B,
            or VM names), each group resumed on A only once the one before it runs there, and
            stopped on B only after it (:mod:`~ceph_failback.failback.order`). VMs it does not
            name follow their OneFlow service's roles.
        oneflow: take the start order of VMs the explicit ``order`` does not name from site A's
            OneFlow services (a role after its parent roles); ``False``: no order from them.
        wait_ready: the explicit ``order``'s groups count as started on A once their guests
            report ``READY=YES`` through OneGate (limit ``timeouts.ready``), not once they run;
            a OneFlow service's roles follow its own ``ready_status_gate``.
        hooks: the operator's own actions at the points of :meth:`run`
            (:mod:`~ceph_failback.failback.hooks`), each run once, journaled.
        verify: compare each image's copies before its VM resumes (B's read after step 4, A's
            after step 5; :mod:`~ceph_failback.failback.verify`); ``None`` (default): no
            verification.
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
        pool: str | Sequence[str],
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
        order: Sequence[Sequence[int | str]] | None = None,
        oneflow: bool = True,
        wait_ready: bool = False,
        hooks: Iterable[Hook] = (),
        verify: Verify | None = None,
    ) -> None:
        if site_a.name == site_b.name:
            raise FailbackError("site A and site B must have different names", site=site_a.name)
        if site_a.one.endpoint == site_b.one.endpoint:
            raise ConfigurationError(f"{site_a.name} and {site_b.name} have the same OpenNebula "
                                     f"endpoint {site_a.one.endpoint}", site=site_b.name,
                                     hint="give each site its own oned endpoint")
        self.site_a = site_a
        self.site_b = site_b
        self.pools = pool_names(pool, site_a.name)
        self.pool = "+".join(self.pools)
        if isinstance(journal, Journal):
            self.journal = journal
        else:
            self.journal = Journal(journal or
                                   f"failback-{site_a.name}-{site_b.name}-{self.pool}.jsonl")
        self.ledger = Ledger(self.journal)
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
                                f"waivable: {sorted(WAIVABLE)}", pool=self.pool)
        self.events = Emitter()
        for listener in listeners:
            self.events.subscribe(listener)
        self._scope = ScopeReader(
            site_a, site_b, self.pools, self.ledger,
            images=image_names(images, self.pools, site_b.name),
            vms=tuple(int(v) for v in vms) if vms is not None else None,
            pairs=dict(pairs or {}), order=order, oneflow=oneflow, wait_ready=wait_ready)
        self._pools: dict[str, MirrorSide] = {}
        self._lock = threading.Lock()
        purpose = (f"failback {site_b.name} -> {site_a.name}, journal "
                   f"{self.journal.path.absolute()}")
        locks = [site_a.ceph.pool_lock(p, purpose=purpose) for p in self.pools]
        self._pool_lock: PoolLockSide = locks[0] if len(locks) == 1 else PoolLocks(locks)
        self._run_lock = RunLock(self._pool_lock, self.ledger, lambda: site_a.ceph.journal_copy(
            self.pools[0], self.journal.path.name), site=site_a.name, pool=self.pool)
        self._checked = False  # check() passed: the step methods do not plan again
        self.verification = None if verify is None else Verifier(
            verify, self.ledger, self.events, site_a=site_a.name, site_b=site_b.name,
            pool=self.pool)
        self.hooks = HookRunner(hooks, self.ledger, self.events, fence=self.fence,
                                call=functools.partial(
                                    HookCall, site_a=site_a.name, site_b=site_b.name,
                                    pool=self.pool, journal=str(self.journal.path.absolute())))

    @classmethod
    def from_config(cls, path: str | Path, *, pool: str | None = None,
                    journal: str | Path | Journal | None = None,
                    timeouts: Timeouts | None = None, **kwargs: Any) -> Failback:
        """A failback from a configuration file (the CLI's, :doc:`/configuration`), in one line::

            fb = ceph_failback.Failback.from_config("one.toml")

        Args:
            path: the TOML file.
            pool: instead of the file's ``pool``.
            journal: instead of the file's ``journal`` (else the default name).
            timeouts: instead of the file's ``[timeouts]``.
            kwargs: the other arguments of :class:`Failback` (``images``, ``vms``, ``pairs``,
                ``waive``, ``listeners``, ``hard_terminate_after``, ``concurrency``...).

        Raises:
            ConfigurationError: as :func:`~ceph_failback.config.load_config` says. Nothing is
                contacted until the first plan or step.
        """
        from ..config import load_config

        cfg = load_config(path, {"pool": pool})
        kwargs.setdefault("order", cfg.order)
        kwargs.setdefault("oneflow", cfg.oneflow)
        kwargs.setdefault("wait_ready", cfg.wait_ready)
        kwargs.setdefault("hooks", cfg.hooks)
        kwargs.setdefault("verify", cfg.verify)
        return cls(*cfg.sites(), cfg.pool, journal=journal if journal is not None
                   else cfg.journal, timeouts=timeouts or cfg.timeouts, **kwargs)

    def __repr__(self) -> str:
        return (f"Failback({self.site_b.name!r} -> {self.site_a.name!r}, pool={self.pool!r}, "
                f"journal={str(self.journal.path)!r})")

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def image_filter(self) -> tuple[str, ...] | None:
        """The images asked for (``images=``), if any."""
        return self._scope.image_filter

    @property
    def vm_filter(self) -> tuple[int, ...] | None:
        """The VMs on B asked for (``vms=``), if any."""
        return self._scope.vm_filter

    @property
    def explicit_pairs(self) -> dict[int, int]:
        """The explicit mapping asked for (``pairs=``): VM on B -> VM on A."""
        return dict(self._scope.explicit_pairs)

    @property
    def names(self) -> Names:
        """The names the safety rules' messages use."""
        return Names(self.site_a.name, self.site_b.name, self.pool, str(self.journal.path),
                     pools=self.pools)

    def pool_a(self) -> MirrorSide:
        """Site A's mirror adapter for the pool."""
        return self._pool(self.site_a)

    def pool_b(self) -> MirrorSide:
        """Site B's mirror adapter for the pool."""
        return self._pool(self.site_b)

    def _pool(self, site: Site) -> MirrorSide:
        with self._lock:
            if site.name not in self._pools:
                if not self._pools:
                    check_distinct_clusters(self.site_a, self.site_b, self.pool)
                sides = {p: site.ceph.mirror_pool(p, concurrency=self.concurrency)
                         for p in self.pools}
                self._pools[site.name] = (sides[self.pool] if len(sides) == 1
                                          else PoolSet(sides))
            return self._pools[site.name]

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a progress listener; returns a function that removes it."""
        return self.events.subscribe(listener)

    def daemon_a_ok(self) -> bool:
        """A healthy rbd-mirror daemon on A reports each pool (``True`` when unreadable: the
        caps may not allow it, and that alone must not fail a step)."""
        return not self._unserved_a()

    def _unserved_a(self) -> list[str]:
        try:
            return unserved_pools(self.pool_a(), beacon_grace=self.timeouts.daemon_beacon_grace)
        except CephError:
            return []

    def require_daemon_a(self, what: str) -> None:
        """Raise :class:`WaitFailedError` when no healthy rbd-mirror daemon on A reports one
        of the pools (naming them)."""
        unserved = self._unserved_a()
        if unserved:
            raise WaitFailedError(
                f"no healthy rbd-mirror daemon on {self.site_a.name} reports pool(s) "
                f"{', '.join(unserved)}: {what} cannot progress",
                site=self.site_a.name, pool=self.pool,
                hint=f"start rbd-mirror on {self.site_a.name}, then run again (finished work is "
                     "skipped)")

    # -- the pool's lock -----------------------------------------------------------------------

    @contextmanager
    def locked(self) -> Iterator[Holder]:
        """Hold the pool's failback lock (a RADOS object lock in site A's pool) for the block.

        :meth:`run` and every step method take it themselves; hold it around several step calls
        (``with fb.locked(): ...``) so that no other failback can slip in between them. Another
        holder makes this raise :class:`~ceph_failback.errors.LockedError` naming it and its
        start time, before anything changes. Taking the lock brings the journal file and its
        copy in site A's pool level (:meth:`Journal.attach`), so a run that waited for the lock,
        or runs on another machine, never works from a stale picture; every record written
        while it is held goes to both.
        """
        held, taken = self._run_lock.enter()
        if taken:
            # Whatever happened while the lock was free (another failback, a failover, a VM
            # started by hand) is read and checked again before the next step.
            self._scope.cached = None
            self._checked = False
        try:
            yield held
        finally:
            self._run_lock.exit()

    def fence(self) -> None:
        """Before each action (its journal intent): raise
        :class:`~ceph_failback.errors.LockedError` if this run no longer holds every lock it took
        (one was broken by another operator): it then changes nothing more (one read of each
        pool's lock per action; once lost, every later action is refused)."""
        self._run_lock.fence()

    def pull_journal(self) -> Synced:
        """Add to the journal file the records its copy in site A's pool holds and the file
        does not (a failback run from another machine or directory, with the same journal file
        name), without taking the lock. ``resume`` on a new machine starts with this; taking
        the lock does it too (and copies the file's own records over)."""
        return self.journal.sync(self._run_lock.copy(), push=False)

    def lock_holder(self) -> Holder | None:
        """Who holds the failback lock now: another failback's holder of any pool's lock
        first, else this run's (``None``: nobody). :meth:`lock_holders` names each pool's."""
        return self._pool_lock.holder()

    def lock_holders(self) -> dict[str, Holder]:
        """Who holds each pool's failback lock now (pool -> holder; a free pool is left out)."""
        return lock_holders(self._pool_lock)

    def break_locks(self, expected: dict[str, Holder] | None = None) -> dict[str, Holder]:
        """Break the pools' failback locks (journaled); returns pool -> the holder broken.
        With ``expected`` (pool -> holder, as :meth:`lock_holders` showed them), only those
        pools' locks, each only while that taking (cookie) still holds it.

        Only for a stale lock: its holder died on a machine that is gone or unreachable (one
        that died on this machine is taken over by itself). Breaking a live run's lock lets
        two failbacks act at once. Each break is journaled as it happens; a pool that cannot be
        broken raises :class:`CephError` once the others were tried (naming those broken)."""
        return break_locks(self._pool_lock, expected, on_broken=lambda pool, h: self.ledger.write(
            Step.RUN, Mark.LOCK_BROKEN, holder=str(h), cookie=h.cookie, pool=pool))

    def break_lock(self) -> Holder | None:
        """:meth:`break_locks` of every pool; returns the first holder broken (or ``None``)."""
        return next(iter(self.break_locks().values()), None)

    # -- scope ---------------------------------------------------------------------------------

    def mapping(self) -> Mapping:
        """The cross-site VM/image mapping as OpenNebula shows it now."""
        return self._scope.mapping()

    def scope(self) -> Scope:
        """The pairs and images this failback works on (fixed at its first step and written to
        the journal, so that a resumed failback works on the same set)."""
        return self._scope.scope(self.pool_b())

    def scope_pairs(self) -> list[Pair]:
        """The VM pairs in scope (the steps' view of :attr:`pairs`)."""
        return list(self.scope().pairs)

    def start_order(self) -> StartOrder:
        """The scope's start order: in which groups the VMs stop on B (in reverse) and resume
        on A (:mod:`~ceph_failback.failback.order`). Its problems are :meth:`plan` blockers."""
        return self._scope.order(self.scope())[0]

    @property
    def images(self) -> list[str]:
        """The images in scope."""
        return list(self.scope().images)

    @property
    def pairs(self) -> list[Pair]:
        """The VM pairs in scope (VM on B -> VM on A)."""
        return list(self.scope().pairs)

    # -- plan ----------------------------------------------------------------------------------

    def plan(self) -> Plan:
        """The state of every image and VM in scope on both sites, what each step will do or
        skip, and every blocker. Changes nothing.

        The plan runs the steps' own decisions (:mod:`ceph_failback.failback.steps`), each on
        the state the earlier steps leave, so it shows what the steps will do; a target a step
        would refuse is a blocker."""
        return survey(self)

    def check(self) -> Plan:
        """:meth:`plan`, raising :class:`SafetyError` if any blocker is not waived.

        :meth:`run` starts with it; a step method called by itself calls it too, each time it
        takes the lock (once for several steps inside ``with fb.locked():``), so the steps
        called one by one keep the same rules, on the sites as they are then."""
        plan = self.plan()
        if not plan.ok:
            raise SafetyError(
                f"{len(plan.unwaived)} blocker(s): " + "; ".join(str(b) for b in plan.unwaived),
                pool=self.pool,
                hint="fix them (see plan()); waivable kinds: " + ", ".join(sorted(WAIVABLE)))
        self._checked = True
        return plan

    def _begin(self) -> None:
        if not self._checked:
            # The step methods called one by one keep the plan's rules too (a VM running on A,
            # an image used twice, a clone disk...): checked at each taking of the lock.
            self.check()
        self._scope.record(self.pool_b())

    # -- the six steps -------------------------------------------------------------------------

    @_step
    def demote_site_a(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 1: demote the images on site A that are primary there; one already non-primary
        (a DR test demotes A first) is skipped. See :mod:`~ceph_failback.failback.steps.demote_a`."""
        return demote_a.run(self, self._scope.select_images(self.scope(), images))

    @_step
    def resync_site_a(self, images: Iterable[str] | None = None, *, wait: bool = True,
                      on_ready: Callable[[str], None] | None = None) -> StepResult:
        """Step 2: flag the images on site A for resync where needed, and wait until they replay
        from B. See :mod:`~ceph_failback.failback.steps.resync_a`.

        Resynced: images that were primary on A, and those split-brained or not proven to replay
        from B within ``timeouts.settle``; an image proven replaying is left alone (a DR test
        resyncs nothing). B must be primary, A's rbd-mirror healthy; a resync is never
        requested twice. ``on_ready(image)`` is called (from this step's thread) as soon as
        each image is ready for steps 3-5; :meth:`run` uses it to start each VM's steps."""
        return resync_a.run(self, self._scope.select_images(self.scope(), images), wait=wait,
                            on_ready=on_ready)

    @_step
    def terminate_site_b(self, vms: Iterable[int] | None = None) -> StepResult:
        """Step 3: terminate the VMs on site B and wait until their images are mirrored to A.
        See :mod:`~ceph_failback.failback.steps.terminate_b`.

        A VM with a clone or volatile disk in the pool is refused (OpenNebula would delete it,
        and rbd-mirror A's copy), and so is one that A could not take over; a VM already DONE is
        not terminated again."""
        return self._in_waves(terminate_b.run, vms, stopping=True)

    @_step
    def demote_site_b(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 4: demote the images on site B. See
        :mod:`~ceph_failback.failback.steps.demote_b`.

        Refused for an image A was not seen replaying from B during this failback, one a VM on
        B not yet DONE uses, or whose exclusive lock a live client holds (a writer would lose
        its last writes). The image's watchers are recorded in the journal."""
        return demote_b.run(self, self._scope.select_images(self.scope(), images))

    @_step
    def promote_site_a(self, images: Iterable[str] | None = None) -> StepResult:
        """Step 5: promote the images on site A, never forced. See
        :mod:`~ceph_failback.failback.steps.promote_a`.

        Refused unless the image is demoted on B and this failback proved A replayed B's copy
        (the stale-promote trap); in snapshot mode A must also hold the complete copy of B's
        demotion snapshot. The non-forced promote is retried until librbd accepts it."""
        return promote_a.run(self, self._scope.select_images(self.scope(), images))

    @_step
    def resume_site_a(self, vms: Iterable[int] | None = None) -> StepResult:
        """Step 6: resume the VMs on site A and wait until they run. ``vms`` are ids of VMs on
        **site B** (the scope's key); their partners on A are resumed. A VM whose images are not
        all primary on A is refused. See :mod:`~ceph_failback.failback.steps.resume_a`."""
        return self._in_waves(resume_a.run, vms, stopping=False)

    def _in_waves(self, step: Callable[[Failback, Sequence[Pair]], StepResult],
                  vms: Iterable[int] | None, *, stopping: bool) -> StepResult:
        """A VM step over the pairs of ``vms`` wave by wave in the start order (B: the last
        group first); a wave with a failure raises before the next one starts."""
        waves = self.start_order().waves(self._scope.select_pairs(self.scope(), vms),
                                         stopping=stopping)
        result = None
        for wave in waves:
            done = step(self, wave)
            if result is None:
                result = done
            else:
                result.outcomes.update(done.outcomes)
                result.seconds += done.seconds
        return result or step(self, [])

    # -- run -----------------------------------------------------------------------------------

    def run(self, *, pipeline: bool = True, reprotect: bool = False) -> Report:
        """Every step in order, after :meth:`check`. Safe to call again after an interruption:
        finished work is skipped (nothing is resynced or terminated twice).

        Then, with the VMs running on A, it waits up to ``timeouts.protect`` until site B
        replays each image from A (the report's protection column); an image B cannot replay
        makes the report NOT complete. With ``reprotect``, a split-brained copy on B is then
        resynced from A at once (:meth:`reprotect`).

        With ``pipeline`` (default), steps 3-6 run per VM: each VM is terminated, mirrored,
        demoted, promoted and resumed as soon as its own images are ready (step 2 requests every
        resync, then one wait watches them all and starts each VM's steps the moment its images
        replay from B), ``vm_concurrency`` VMs at a time, so one slow image does not keep every
        VM down.

        Returns:
            The :class:`Report`. Raises :class:`StepFailedError` if anything failed (the
            journal and :meth:`report` say what).
        """
        with self.locked():
            self.check()
            self._scope.record(self.pool_b())
            self.ledger.write(Step.RUN, Mark.STARTED, pipeline=pipeline,
                              order=self.start_order().to_dict())
            self.hooks.reset()
            try:
                self.hooks.around_run(When.BEFORE_RUN)
                self.demote_site_a()
                if pipeline:
                    run_pipelined(self)
                else:
                    run_in_sequence(self)
            except FailbackError as exc:
                self.ledger.write(Step.RUN, Mark.FAILED, error=str(exc))
                raise
            states = watch_protection(self.pool_b(), self.images, timeouts=self.timeouts,
                                      ledger=self.ledger, site_b=self.site_b.name, pool=self.pool,
                                      pool_a=self.pool_a())
            if reprotect and (split := [n for n, s in states.items() if s == SPLIT_BRAIN_ON_B]):
                self.reprotect(split)
            record_unprotected(self.pool_a(), self.pool_b(), self.images, self.ledger)
            try:
                self.hooks.around_run(When.AFTER_RUN)
            except FailbackError as exc:
                self.ledger.write(Step.RUN, Mark.FAILED, error=str(exc))
                raise
            self.ledger.write(Step.RUN, Mark.FINISHED)
            return self.report()

    def resume(self, *, pipeline: bool = True, reprotect: bool = False) -> Report:
        """Finish an interrupted failback (same as :meth:`run`: every step skips what is done)."""
        return self.run(pipeline=pipeline, reprotect=reprotect)

    def reprotect(self, images: Iterable[str] | None = None) -> StepResult:
        """After the failback: resync on site B each image that B reports split-brained, so
        that B replays it from A again, and wait until it does. Refused for an image this
        failback did not promote on A, one not primary on A, or one primary on B too
        (:func:`~ceph_failback.failback.safety.reprotect_proof`); other images are skipped.
        See :mod:`~ceph_failback.failback.steps.reprotect`."""
        with self.locked():
            return reprotect_step.run(self, self._scope.select_images(self.scope(), images))

    def verify(self, images: Iterable[str] | None = None, options: Verify | None = None
               ) -> dict[str, ImageCheck]:
        """Compare the images' copies on both sites now, chunk by chunk
        (:func:`~ceph_failback.failback.verify.verify_now`; ``options``: the failback's
        ``verify``, else whole images). Changes and journals nothing. Meaningful only while
        neither copy is written: a VM running on A writes its copy, and B replays it later."""
        chosen = self._scope.select_images(self.scope(), images)
        return verify_now(self.pool_a(), self.pool_b(), chosen, options or (
            self.verification.options if self.verification else Verify()),
            site_a=self.site_a.name, site_b=self.site_b.name)

    def reprotect_preview(self, images: Iterable[str] | None = None) -> dict[str, Decision]:
        """What :meth:`reprotect` would do now, per image (do, skip or refuse, and why), from
        both sites' present state and this journal. Changes nothing."""
        return reprotect_step.preview(self, self._scope.select_images(self.scope(), images))

    # -- status and report ---------------------------------------------------------------------

    def status(self) -> Status:
        """Both sites side by side for the scope: per image the role and rbd-mirror report on A
        and B, per VM pair the states on B and A. Changes nothing.

        Returns:
            A :class:`~ceph_failback.failback.status.Status`: a table when printed, coloured
            HTML in Jupyter, :meth:`~ceph_failback.failback.status.Status.to_dict` for JSON.
        """
        scope = self.scope()
        return read_status(self.pool_a(), self.pool_b(), scope.images,
                           lambda: self._scope.present(scope.pairs), pool=self.pool,
                           site_a=self.site_a.name, site_b=self.site_b.name)

    def report(self) -> Report:
        """What this failback did, from the journal: per image outcome, per VM downtime."""
        scope = self.scope()
        return build_report(self.journal, scope.pairs, list(scope.images),
                            site_a=self.site_a.name, site_b=self.site_b.name, pool=self.pool,
                            hooks=self.hooks.targets())

