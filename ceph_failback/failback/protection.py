"""Protection after the failback: whether site B replays each image of the scope from A again
(:func:`watch_protection`, the report's protection column, ``reprotect`` for a split-brained B),
and the images outside the scope that no mirroring protects (rule
:func:`~ceph_failback.failback.safety.unprotected`): listed in the plan as a warning with the fix,
and recorded at the end of a run so that the report says so.

OpenNebula's documented failover force-promotes every image of the pool on site B. The images no
VM on B uses are not in the failback's scope, so they stay primary on both sites, and nothing
mirrors them either way; a failback that said COMPLETE without naming them would hide that.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor

from ..ceph.seams import MirrorSide
from ..ceph.status import MirrorImageInfo
from ..errors import CephError
from .epochs import read_protection_epochs
from .ledger import Ledger, Mark, Step, image_target
from .safety import ImageView, unprotected
from .sites import Timeouts
from .waits import PROTECTED, REPLAYING_FROM_A, SPLIT_BRAIN_ON_B, Protection

__all__ = ["outside_scope", "unprotected_warning", "report_line", "record_unprotected",
           "watch_protection", "split_brain_evidence", "SHOWN"]

log = logging.getLogger(__name__)

#: At most this many images are named in a message (the count says the rest).
SHOWN = 10


def outside_scope(scope: Collection[str], infos_a: Mapping[str, MirrorImageInfo],
                  infos_b: Mapping[str, MirrorImageInfo]) -> dict[str, str]:
    """Each unprotected image outside ``scope`` -> why (from both sites' listings)."""
    found: dict[str, str] = {}
    for name in sorted((set(infos_a) | set(infos_b)) - set(scope)):
        why = unprotected(ImageView(name, infos_a.get(name), infos_b.get(name)))
        if why is not None:
            found[name] = why
    return found


def _named(found: Mapping[str, str]) -> str:
    shown = [f"{name} ({why})" for name, why in list(found.items())[:SHOWN]]
    more = len(found) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def unprotected_warning(found: Mapping[str, str], site_b: str) -> str:
    """The plan's warning for :func:`outside_scope`'s images, with the fix."""
    first = next(iter(found))
    return (f"{len(found)} image(s) outside this failback's scope (no VM in scope uses them) "
            f"are unprotected, and stay so after it: {_named(found)}. If {site_b}'s copy is "
            f"the current one, include them (images=[..., {first!r}], --image {first}): they "
            f"are then failed back like the others; otherwise keep the current copy primary, "
            "demote the other and resync it (by hand)")


def report_line(found: Mapping[str, str]) -> str:
    """The report's line for the images recorded unprotected at the end of a run."""
    return (f"  WARNING: {len(found)} image(s) outside the scope are unprotected (no mirroring "
            f"either way): {_named(found)}; include them in a failback or resolve them by hand")


def record_unprotected(pool_a: MirrorSide, pool_b: MirrorSide, scope: Collection[str],
           ledger: Ledger) -> None:
    """At the end of a run: list both sites and record :func:`outside_scope`'s images in the
    journal, for the report (:attr:`~ceph_failback.failback.report.Report.unprotected`)."""
    with ThreadPoolExecutor(2, thread_name_prefix="protection") as ex:
        a, b = ex.submit(pool_a.infos), ex.submit(pool_b.infos)
        try:
            found = outside_scope(scope, a.result(), b.result())
        except CephError as exc:  # the failback is done: a failed listing only goes unsaid
            log.warning("cannot list the images outside the scope: %s", exc)
            return
    ledger.write(Step.RUN, Mark.OBSERVED, "pool", unprotected=found)


def split_brain_evidence(pool_a: MirrorSide, pool_b: MirrorSide, name: str) -> str | None:
    """For an image B reports split-brained after the flip: both journals' newest tags
    (:meth:`~ceph_failback.ceph.rbd_journal.JournalHeader.chain`), what rbd-mirror compared
    to decide it, and where B's client in A's journal stands (rbd-mirror sees A's tags only
    from there on: rule :func:`~.safety.peer_unregistered`); ``None`` in snapshot mode."""
    try:
        a, b = pool_a.journal_header(name), pool_b.journal_header(name)
        if a is None or b is None:
            return None
        b_uuid = pool_b.mirror_uuid(name)
        names = {pool_a.mirror_uuid(name): "A", b_uuid: "B"}
    except CephError as exc:
        return f"(journals unreadable: {exc})"
    client = a.client(b_uuid)
    pos = client.position if client is not None else None
    where = ("not registered" if client is None else
             f"at {pos.tag_tid}/{pos.entry_tid}" if pos is not None else "at no position")
    return (f"B's journal: {b.chain(names)}; A's journal: {a.chain(names)}; "
            f"B's client in A's journal: {where}")


def watch_protection(pool_b: MirrorSide, names: Collection[str], *, timeouts: Timeouts,
                     ledger: Ledger, site_b: str, pool: str,
                     pool_a: MirrorSide | None = None) -> dict[str, str]:
    """After the flip: wait up to ``timeouts.protect`` until site B replays each image from A
    (:data:`~.waits.PROTECTED`, rule :func:`~.safety.protection_proof`: with ``pool_a``, in
    journal mode, the journals prove it as soon as B has replayed A's promotion; B's status
    otherwise), and record each image's state in the journal for the report.

    Returns image -> state: ``replaying from A``, ``split-brain on B`` (resync B from A:
    :meth:`~ceph_failback.failback.Failback.reprotect`), ``not replaying from A after Ns (what
    B last showed)``, or ``unknown (...)`` when B's status cannot be read (the failback itself
    is done; this only goes unsaid)."""
    states: dict[str, str] = {}
    last: dict[str, Protection] = {}
    infos: tuple[dict[str, MirrorImageInfo], dict[str, MirrorImageInfo]] | None = None
    if pool_a is not None:
        try:  # image ids do not change after the flip (nothing is resynced here)
            infos = (pool_a.infos(list(names)), pool_b.infos(list(names)))
        except CephError as exc:
            log.debug("cannot list the images after the flip (the status decides): %s", exc)

    def observe(pending: list[str]) -> dict[str, Protection]:
        statuses = pool_b.statuses(pending)
        epochs = (read_protection_epochs(pool_a, pool_b, list(statuses), *infos)
                  if pool_a is not None and infos is not None else {})
        read = {n: Protection(st, epochs.get(n)) for n, st in statuses.items()}
        last.update(read)
        return read

    try:
        decided = PROTECTED.run(list(names), observe, timeouts=timeouts,
                                where={"site": site_b, "pool": pool})
    except CephError as exc:
        log.warning("cannot read %s's mirror statuses after the failback: %s", site_b, exc)
        decided = {}
        states = {n: f"unknown (cannot read {site_b}'s status: {exc})" for n in names}
    for name in names:
        if name in states:
            continue
        acc = decided.get(name)
        seen = str(last[name]) if name in last else "no status"
        states[name] = acc.reason if acc is not None else (
            f"not replaying from A after {timeouts.protect:g}s ({seen})")
    for name in names:
        state = states[name]
        protected = None if state.startswith("unknown") else state == REPLAYING_FROM_A
        extra = {}
        if state == SPLIT_BRAIN_ON_B and pool_a is not None:
            evidence = split_brain_evidence(pool_a, pool_b, name)
            if evidence is not None:
                extra["journals"] = evidence
                log.warning("%s is split-brained on %s after the flip: %s", name, site_b,
                            evidence)
        if protected and name in last and (proof := last[name].proof()) is not None:
            extra["proof"] = proof
        ledger.write(Step.RUN, Mark.PROTECTION, image_target(name), state=state,
                     protected=protected, **extra)
    return states
