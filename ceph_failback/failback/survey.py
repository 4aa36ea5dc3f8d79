"""What :meth:`Failback.plan() <ceph_failback.failback.Failback.plan>` reads: both sites' mirror
state, the daemons, the lock, the scope and its start order, side by side; then the steps' own
decisions on it (:func:`~.planner.build_plan`)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..ceph.pools import parts_of, unserved_pools
from ..ceph.rbd_journal import JournalHeader
from ..errors import CephError, MirroringNotEnabledError
from .plan import Blocker, Plan
from .planner import build_plan
from .protection import outside_scope, unprotected_warning
from .safety import ImageView
from .scope import lock_blockers
from .steps import resync_a

if TYPE_CHECKING:
    from .core import Failback

__all__ = ["survey"]


def survey(fb: Failback) -> Plan:
    """The plan of ``fb`` (see :meth:`~ceph_failback.failback.Failback.plan`)."""
    blockers: list[Blocker] = []
    warnings: list[str] = []
    pa, pb = fb.pool_a(), fb.pool_b()
    # Both sites' listings in the background, side by side and beside OpenNebula's (the
    # scope): each reads every image's promotion state (ceph/promotion.py).
    # Leaving the block waits for them, an error included: a librbd call must never outlive
    # plan(), as the caller may close the cluster handle next (which would hang the call).
    with ThreadPoolExecutor(3, thread_name_prefix="plan") as ex:
        read_a: dict[str, JournalHeader] = {}  # the journal headers the listings read:
        read_b: dict[str, JournalHeader] = {}  # step 2's proof below reads them too
        overview_a = ex.submit(pa.overview, journals=read_a)
        overview_b = ex.submit(pb.overview, journals=read_b)
        health = ex.submit(unserved_pools, pa, beacon_grace=fb.timeouts.daemon_beacon_grace)
        for site, side in ((fb.site_a, pa), (fb.site_b, pb)):
            for name, part in parts_of(side).items():
                try:
                    part.require_mirroring()
                except MirroringNotEnabledError as exc:
                    target = (f"pool@{site.name}" if len(fb.pools) == 1
                              else f"pool:{name}@{site.name}")
                    blockers.append(Blocker("mirroring-not-enabled", target, str(exc)))
        lock_blockers(fb._pool_lock, blockers, warnings, site=fb.site_a.name)
        fresh = fb._scope.cached is None  # the scope read now holds the VMs' present states
        scope = fb.scope()
        found, noted = fb._scope.blockers(scope)
        blockers += found
        order, problems, noted = fb._scope.order(scope)
        blockers += problems + fb.hooks.blockers(order, scope.pairs)
        warnings += noted
        warnings += noted
        if not scope.images:
            warnings.append("nothing in scope: no VM on site B uses a mirrored image of the pool")
        infos_a, stat_a = overview_a.result()
        infos_b, stat_b = overview_b.result()
        try:
            unserved = health.result()
            if unserved:
                blockers.append(Blocker(
                    "rbd-mirror-down", f"rbd-mirror@{fb.site_a.name}",
                    f"no healthy rbd-mirror daemon on {fb.site_a.name} reports pool(s) "
                    f"{', '.join(unserved)}: their images cannot resync or replay from "
                    f"{fb.site_b.name}"))
        except CephError as exc:
            blockers.append(Blocker("daemon-health-unknown", f"rbd-mirror@{fb.site_a.name}",
                                    f"cannot read the rbd-mirror service status: {exc}",
                                    waivable=True))
        try:
            epochs = resync_a.undecided_epochs(fb.pool_a(), fb.pool_b(), scope.images,
                                               infos_a, infos_b, stat_a, fb.ledger.image,
                                               read_a=read_a, read_b=read_b)
        except CephError as exc:
            epochs = {}
            blockers.append(Blocker(
                "journal-unreadable", f"journal@{exc.site or fb.site_a.name}",
                f"cannot read the images' journal headers ({exc}): step 2 proves from "
                "them which images need no resync, and would fail"))
        views = [ImageView(n, infos_a.get(n), infos_b.get(n), stat_a.get(n), stat_b.get(n),
                           epochs.get(n)) for n in scope.images]
        outside = outside_scope(scope.images, infos_a, infos_b)
        if outside:
            warnings.append(unprotected_warning(outside, fb.site_b.name))
        present = list(scope.pairs) if fresh else fb._scope.present(scope.pairs)
        return build_plan(fb.names, views, fb.ledger.images(scope.images), present,
                          blockers=blockers, warnings=warnings, waived=fb.waive, order=order)

