"""The image journal headers of the in-memory Ceph model (:mod:`.ceph`), as
:mod:`~ceph_failback.ceph.rbd_journal` decodes the real ones, and its statuses as librbd
answers them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from ..ceph.rbd_journal import (
    LOCAL_OWNER,
    MASTER_CLIENT,
    ORPHAN_OWNER,
    JournalClient,
    JournalHeader,
    JournalTag,
    ObjectPosition,
)
from ..ceph.status import MirrorState

__all__ = ["header", "mirror_uuid_of", "site_report"]


def mirror_uuid_of(site: str, pool: str) -> str:
    """The model's mirror uuid of ``pool`` on ``site`` (each pool of a cluster has its own)."""
    return f"mirror-uuid-{pool}@{site}"


def header(entries: Sequence[Any], site: str, peer_entries: Sequence[Any] | None,
           peer_site: str, mirror_uuid: Callable[[str], str], *,
           peer_client_at: int | None = 0) -> JournalHeader:
    """The header of one site's copy, current at every read as the real one is.

    - One tag per epoch: owned by this site (a promotion here: ``""``), by the peer's mirror
      uuid (a promotion replayed from it, as rbd-mirror allocates its local tags), or the
      orphan (a demotion, here or replayed); its predecessor is the entry before it.
    - The copy's own client at its last entry; the peer's rbd-mirror client, registered under
      the peer's mirror uuid, at the last entry the peer replayed from this copy (their common
      prefix; a copy that diverged keeps the position it committed before), or at the entry
      where it registered (``peer_client_at``) if that is newer; absent until it registers
      (``None``).
    """
    tags: dict[int, JournalTag] = {}
    for index, entry in enumerate(entries):
        if entry.tag_tid in tags:
            continue
        if entry.kind == "demote":
            owner = ORPHAN_OWNER
        elif entry.site == site:
            owner = LOCAL_OWNER
        else:
            owner = mirror_uuid(entry.site)
        # The epoch follows the entry before it (librbd's TagPredecessor: a demotion follows
        # the last committed entry of the image's own epoch, a promotion the demotion).
        previous = entries[index - 1] if index else None
        tags[entry.tag_tid] = JournalTag(
            entry.tag_tid, 0, owner,
            predecessor_owner=tags[previous.tag_tid].owner if previous is not None else "",
            predecessor=(ObjectPosition(previous.tag_tid, index - 1)
                         if previous is not None else None))

    def at(index: int) -> tuple[ObjectPosition, ...]:
        return (ObjectPosition(entries[index].tag_tid, index),) if index >= 0 else ()

    clients = {MASTER_CLIENT: JournalClient(MASTER_CLIENT, at(len(entries) - 1), True,
                                            tag_class=0)}
    if peer_entries is not None and peer_client_at is not None:
        common = 0
        for mine, theirs in zip(entries, peer_entries, strict=False):
            if mine != theirs:
                break
            common += 1
        peer_id = mirror_uuid(peer_site)
        clients[peer_id] = JournalClient(peer_id, at(max(common - 1, peer_client_at)), True)
    return JournalHeader(clients, tags)


def site_report(published: tuple[MirrorState, str, dict[str, Any] | None] | None,
                published_at: float, up: bool) -> dict[str, Any]:
    """One site's part of librbd's status dict, from what its daemon last published (state,
    head of the description, replay positions) and when (``None``: nothing published)."""
    if published is None:
        return {"state": int(MirrorState.UNKNOWN), "description": "status not found", "up": False}
    state, head, positions = published
    description = f"{head}, {json.dumps(positions)}" if positions else head
    return {"state": int(state), "description": description,
            "last_update": datetime.fromtimestamp(published_at, UTC).replace(tzinfo=None),
            "up": up}
