"""Images outside a failback's scope that no mirroring protects (rule
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
from .ledger import Ledger, Mark, Step
from .safety import ImageView, unprotected

__all__ = ["outside_scope", "unprotected_warning", "report_line", "record_unprotected", "SHOWN"]

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
