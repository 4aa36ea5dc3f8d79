"""Journal mode: both copies' journal headers read together, for the tag-epoch proofs
(step 2's :func:`~ceph_failback.failback.safety.replay_proof`, the plan's preview of it, and the
protection check after the flip, :func:`~ceph_failback.failback.safety.protection_proof`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from ..ceph.mirror import READ_CONCURRENCY
from ..ceph.rbd_journal import JournalHeader, ReplayEpoch
from ..ceph.seams import MirrorSide
from ..ceph.status import MirrorImageInfo
from ..errors import CephError

__all__ = ["read_epochs", "read_protection_epochs"]

log = logging.getLogger(__name__)


def read_epochs(pool_a: MirrorSide, pool_b: MirrorSide, names: Sequence[str],
                infos_a: dict[str, MirrorImageInfo], infos_b: dict[str, MirrorImageInfo],
                *, read_a: Mapping[str, JournalHeader] | None = None,
                read_b: Mapping[str, JournalHeader] | None = None,
                source: str = "B", replica: str = "A") -> dict[str, ReplayEpoch]:
    """Journal mode: both copies' journal headers, read now, for the images listed on both
    sites in journal mode (:class:`~ceph_failback.ceph.rbd_journal.ReplayEpoch`); a failed read
    raises (a failed read is no proof, and no reason to resync either). ``read_a`` and
    ``read_b``: headers the caller read with the infos (``overview(journals=...)``), used
    instead of reading them again. ``pool_a`` is the replica's side, ``pool_b`` the source's:
    after the flip, the protection check reads them the other way round (``source="A",
    replica="B"``)."""
    wanted = [n for n in names if (a := infos_a.get(n)) is not None
              and (b := infos_b.get(n)) is not None and "snapshot" not in (a.mode, b.mode)]
    if not wanted:
        return {}
    # Each pool's uuids, read once (several pools: each has its own; ``pool/image`` names).
    per_pool: dict[str, tuple[str, str]] = {}
    uuids: dict[str, tuple[str, str]] = {}
    for n in wanted:
        pool = n.partition("/")[0] if "/" in n else ""
        if pool not in per_pool:
            per_pool[pool] = (pool_a.mirror_uuid(n), pool_b.mirror_uuid(n))
        uuids[n] = per_pool[pool]

    def one(name: str) -> ReplayEpoch:
        a_uuid, b_uuid = uuids[name]
        a = (read_a or {}).get(name) or pool_a.journal_header(name, infos_a[name].image_id)
        b = (read_b or {}).get(name) or pool_b.journal_header(name, infos_b[name].image_id)
        return ReplayEpoch.read(a, b, a_uuid=a_uuid, b_uuid=b_uuid, source=source,
                                replica=replica)

    out: dict[str, ReplayEpoch] = {}
    for name, r in pool_a.run_many(wanted, one, concurrency=READ_CONCURRENCY).items():
        if not r.ok:
            assert r.error is not None
            raise r.error
        out[name] = r.value
    return out


def read_protection_epochs(pool_a: MirrorSide, pool_b: MirrorSide, names: Sequence[str],
                           infos_a: dict[str, MirrorImageInfo],
                           infos_b: dict[str, MirrorImageInfo]) -> dict[str, ReplayEpoch]:
    """After the flip: :func:`read_epochs` the other way round (B replaying A), for
    :func:`~ceph_failback.failback.safety.protection_proof`; nothing where the journals cannot
    be read now (B's status may still prove it)."""
    try:
        return read_epochs(pool_b, pool_a, names, infos_b, infos_a, source="A", replica="B")
    except CephError as exc:
        log.debug("journals unreadable after the flip (the status decides alone): %s", exc)
        return {}
