"""An RBD image's journal header, read on demand: its registered clients and tags.

Journal-based mirroring keeps its authoritative replay state in the image's journal header
object ``journal.<image id>``, in the omap that Ceph's ``journal`` object class maintains
(src/cls/journal/cls_journal.cc): one key per registered client (``client_<id>``) with its
commit position, and one per tag (``tag_<tid as 16 hex digits>``) with the epoch it opens.

- The primary's own librbd client has the empty id; its commit position is the newest entry
  the primary wrote (what ``rbd mirror image status`` prints as ``primary_position``).
- The peer site's rbd-mirror registers in the primary's journal under *its* pool's mirror
  uuid; its commit position is the newest entry that peer replayed and committed
  (``non_primary_position``). rbd-mirror reads both from this header
  (src/tools/rbd_mirror/image_replayer/journal/ReplayStatusFormatter.cc) but publishes them
  only when it next refreshes the image's status, on its own cycle of up to ~30 s; this header
  is current at every read.
- A tag's data (librbd::journal::TagData, src/librbd/journal/Types.cc) names the epoch's owner:
  ``""`` the image itself while primary, ``"<orphan>"`` after its demotion, or the mirror uuid
  of the peer it replays from.

The formats (Ceph's encoding: little-endian integers, ``u32`` length-prefixed strings and
lists, ``ENCODE_START`` blocks of ``u8`` version, ``u8`` compat, ``u32`` length) are the same in
Ceph 16 to 20. This module decodes; :meth:`~ceph_failback.ceph.MirrorPool.journal_header` reads.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import CephError

__all__ = ["ObjectPosition", "JournalClient", "JournalTag", "JournalHeader", "ReplayEpoch",
           "parse_header", "LOCAL_OWNER", "ORPHAN_OWNER", "MASTER_CLIENT"]

#: librbd::Journal<>::LOCAL_MIRROR_UUID: the tag's image was primary in that epoch.
LOCAL_OWNER = ""
#: librbd::Journal<>::ORPHAN_MIRROR_UUID: the epoch opened by the image's demotion.
ORPHAN_OWNER = "<orphan>"
#: A tag with no librbd data (no owner): never taken for anyone's.
UNKNOWN_OWNER = "<unknown>"
#: librbd::Journal<>::IMAGE_CLIENT_ID: the image's own (primary) client.
MASTER_CLIENT = ""

_CLIENT_PREFIX = "client_"
_TAG_PREFIX = "tag_"


class _Decoder:
    """Reads Ceph's encoding from a byte string."""

    def __init__(self, data: bytes, start: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = start
        self.end = len(data) if end is None else end

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise ValueError(f"truncated: {n} bytes wanted at offset {self.pos} of {self.end}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self._take(1)[0]

    def u32(self) -> int:
        return int(struct.unpack("<I", self._take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack("<Q", self._take(8))[0])

    def blob(self) -> bytes:
        return self._take(self.u32())

    def string(self) -> str:
        return self.blob().decode("utf-8", "replace")

    def block(self) -> _Decoder:
        """An ``ENCODE_START`` block: the decoder of its body (fields a newer version appends
        after the ones read are skipped with it). A block whose compat version is above 1 is
        refused, as Ceph's decoder refuses it."""
        self.u8()  # struct_v
        compat = self.u8()
        if compat > 1:
            raise ValueError(f"encoding needs a decoder of version {compat} (this one: 1)")
        length = self.u32()
        body = _Decoder(self.data, self.pos, self.pos + length)
        self._take(length)
        return body


@dataclass(frozen=True, order=True)
class ObjectPosition:
    """A position in the journal: the entry ``entry_tid`` of the epoch ``tag_tid``."""

    tag_tid: int
    entry_tid: int
    object_number: int = field(default=0, compare=False)


@dataclass(frozen=True)
class JournalClient:
    """A registered client: its commit position (newest first) and whether it is connected (a
    disconnected peer fell too far behind and must be resynced)."""

    id: str
    positions: tuple[ObjectPosition, ...]
    connected: bool
    #: The image's own client only (librbd::journal::ImageClientMeta): the class of the
    #: image's tags, whose newest names the image's owner; ``None`` for any other client.
    tag_class: int | None = None

    @property
    def position(self) -> ObjectPosition | None:
        """The newest committed position, ``None`` before the first commit."""
        return self.positions[0] if self.positions else None


@dataclass(frozen=True)
class JournalTag:
    """An epoch of the journal: its owner (:data:`LOCAL_OWNER`, :data:`ORPHAN_OWNER` or a peer's
    mirror uuid) and the position it follows (``predecessor``, when ``commit_valid``)."""

    tid: int
    tag_class: int
    owner: str
    predecessor_owner: str = ""
    predecessor: ObjectPosition | None = None


@dataclass(frozen=True)
class JournalHeader:
    """The clients and tags of one image's journal, as read at one moment."""

    clients: Mapping[str, JournalClient]
    tags: Mapping[int, JournalTag]

    @property
    def master(self) -> JournalClient | None:
        """The image's own client (its position is the primary's newest entry)."""
        return self.clients.get(MASTER_CLIENT)

    @property
    def newest_tag(self) -> JournalTag | None:
        """The current epoch: the tag with the highest tid (Ceph never prunes the newest)."""
        return self.tags[max(self.tags)] if self.tags else None

    @property
    def owner(self) -> str | None:
        """Who owns the image now, as librbd decides it (``Journal::get_tag_owner``: the
        newest tag of the image client's tag class): :data:`LOCAL_OWNER` (primary),
        :data:`ORPHAN_OWNER` (demoted) or the mirror uuid of the peer it replays from.
        ``None`` when the header cannot say (no image client, or no tag in its class)."""
        master = self.master
        if master is None or master.tag_class is None:
            return None
        mine = [tid for tid, tag in self.tags.items() if tag.tag_class == master.tag_class]
        return self.tags[max(mine)].owner if mine else None

    def client(self, client_id: str) -> JournalClient | None:
        return self.clients.get(client_id)

    def chain(self, names: Mapping[str, str] | None = None, *, last: int = 8) -> str:
        """The newest ``last`` tags as text, oldest first, each ``tid owner<-predecessor``:
        ``7 orphan<-own 5/3`` is epoch 7, opened by a demotion that followed entry 3 of this
        image's own epoch 5. ``names`` names mirror uuids (``{uuid: "B"}``); the owners
        ``""`` and ``"<orphan>"`` read ``own`` and ``orphan``. What rbd-mirror compares to
        decide split-brain (image_replayer/journal/PrepareReplayRequest.cc)."""
        known = {LOCAL_OWNER: "own", ORPHAN_OWNER: "orphan", **(names or {})}

        def who(owner: str) -> str:
            return known.get(owner, owner[:8])

        parts = []
        for tid in sorted(self.tags)[-last:]:
            tag = self.tags[tid]
            pred = tag.predecessor
            after = (f"{who(tag.predecessor_owner)} {pred.tag_tid}/{pred.entry_tid}"
                     if pred is not None else "none")
            parts.append(f"{tid} {who(tag.owner)}<-{after}")
        return ", ".join(parts) if parts else "no tags"


@dataclass(frozen=True)
class ReplayEpoch:
    """What the two copies' journals say, at one moment, of site A replaying site B's image:
    B's current epoch, A's current epoch, and the client A's rbd-mirror registered in B's
    journal (under A's pool mirror uuid). ``b_uuid`` is B's pool mirror uuid: the owner A's
    journal gives the epochs it replays from B. The judgement is
    :func:`~ceph_failback.failback.safety.journal_replay_proof`.

    The same shape, read the other way round (``source="A", replica="B"``: B replaying A's
    image, after the flip), is the journals' proof of protection; ``source`` and ``replica``
    only name the two sites in what is shown."""

    b_epoch: JournalTag | None
    a_epoch: JournalTag | None
    a_client: JournalClient | None
    b_uuid: str
    b_tags: Mapping[int, JournalTag] = field(default_factory=dict)
    source: str = "B"
    replica: str = "A"

    @classmethod
    def read(cls, a: JournalHeader | None, b: JournalHeader | None, *, a_uuid: str,
             b_uuid: str, source: str = "B", replica: str = "A") -> ReplayEpoch:
        """From both headers (``None``: that copy has no journal); ``a`` is the replica's,
        ``b`` the source's."""
        return cls(b.newest_tag if b else None, a.newest_tag if a else None,
                   b.client(a_uuid) if b else None, b_uuid, dict(b.tags) if b else {},
                   source, replica)

    def __str__(self) -> str:
        def owner(tag: JournalTag | None, me: str) -> str:
            if tag is None:
                return "no journal"
            names = {LOCAL_OWNER: me, ORPHAN_OWNER: "orphan", self.b_uuid: self.source}
            return f"{tag.tid} ({names.get(tag.owner, tag.owner)}'s)"

        client = self.a_client
        pos = client.position if client else None
        committed = f"{pos.tag_tid}/{pos.entry_tid}" if pos else "nothing"
        if client is not None and not client.connected:
            committed += " (disconnected)"
        s, r = self.source, self.replica
        return (f"{s}'s epoch {owner(self.b_epoch, s)}, {r} committed {committed}, "
                f"{r}'s epoch {owner(self.a_epoch, r)}")


_HEAD = struct.Struct("<BBI")  # ENCODE_START: struct_v, compat, length
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_U64X2 = struct.Struct("<QQ")
_U64X3 = struct.Struct("<QQQ")
_TAIL = struct.Struct("<BQQ")  # TagData: commit_valid, predecessor tag_tid, entry_tid


def _block(raw: bytes, at: int, end: int) -> tuple[int, int]:
    """The body of the ``ENCODE_START`` block at ``at``: (its first byte, its end). A compat
    version above 1 is refused, as Ceph's decoder refuses it."""
    if at + 6 > end:
        raise ValueError(f"truncated: a block header wanted at offset {at} of {end}")
    _, compat, length = _HEAD.unpack_from(raw, at)
    if compat > 1:
        raise ValueError(f"encoding needs a decoder of version {compat} (this one: 1)")
    body, stop = at + 6, at + 6 + length
    if stop > end:
        raise ValueError(f"truncated: {length} bytes wanted at offset {body} of {end}")
    return body, stop


def _blob(raw: bytes, at: int, end: int) -> tuple[bytes, int]:
    """A ``u32`` length-prefixed byte string at ``at``: (it, the offset after it)."""
    if at + 4 > end:
        raise ValueError(f"truncated: 4 bytes wanted at offset {at} of {end}")
    (length,) = _U32.unpack_from(raw, at)
    stop = at + 4 + length
    if stop > end:
        raise ValueError(f"truncated: {length} bytes wanted at offset {at + 4} of {end}")
    return raw[at + 4:stop], stop


def _client(raw: bytes) -> JournalClient:
    # Decoded with struct.unpack_from at offsets (a plan reads thousands of headers): the same
    # checks as _Decoder's (bounds of each block, compat versions), without its objects.
    at, end = _block(raw, 0, len(raw))
    ident, at = _blob(raw, at, end)
    client_id = ident.decode("utf-8", "replace")
    data, at = _blob(raw, at, end)  # librbd::journal::ClientData
    commit, commit_end = _block(raw, at, end)
    if commit + 4 > commit_end:
        raise ValueError(f"truncated: 4 bytes wanted at offset {commit} of {commit_end}")
    (count,) = _U32.unpack_from(raw, commit)
    positions, pos = [], commit + 4
    for _ in range(count):
        body, stop = _block(raw, pos, commit_end)
        if body + 24 > stop:
            raise ValueError(f"truncated: 24 bytes wanted at offset {body} of {stop}")
        object_number, tag_tid, entry_tid = _U64X3.unpack_from(raw, body)
        positions.append(ObjectPosition(tag_tid, entry_tid, object_number))
        pos = stop
    if commit_end + 1 > end:
        raise ValueError(f"truncated: 1 byte wanted at offset {commit_end} of {end}")
    state = raw[commit_end]  # 0 connected, 1 disconnected
    tag_class = None
    if client_id == MASTER_CLIENT and data:
        try:
            meta, meta_end = _block(data, 0, len(data))
            if meta + 12 > meta_end:
                raise ValueError("truncated client meta")
            # IMAGE_CLIENT_META_TYPE (0): tag_class, resync_requested
            if _U32.unpack_from(data, meta)[0] == 0:
                tag_class = _U64.unpack_from(data, meta + 4)[0]
        except (ValueError, struct.error):
            tag_class = None  # only the owner needs it: it then says nothing
    return JournalClient(client_id, tuple(positions), connected=state == 0, tag_class=tag_class)


def _tag(raw: bytes) -> JournalTag:
    at, end = _block(raw, 0, len(raw))
    if at + 16 > end:
        raise ValueError(f"truncated: 16 bytes wanted at offset {at} of {end}")
    tid, tag_class = _U64X2.unpack_from(raw, at)
    data, _ = _blob(raw, at + 16, end)
    if not data:
        return JournalTag(tid, tag_class, owner=UNKNOWN_OWNER)  # not librbd's: proves nothing
    # librbd::journal::TagData: not versioned.
    owner, at = _blob(data, 0, len(data))
    pred_owner, at = _blob(data, at, len(data))
    if at + _TAIL.size > len(data):
        raise ValueError(f"truncated: {_TAIL.size} bytes wanted at offset {at} of {len(data)}")
    commit_valid, pred_tag, pred_entry = _TAIL.unpack_from(data, at)
    predecessor = ObjectPosition(pred_tag, pred_entry) if commit_valid else None
    return JournalTag(tid, tag_class, owner.decode("utf-8", "replace"),
                      pred_owner.decode("utf-8", "replace"), predecessor)


def parse_header(omap: Mapping[str, bytes], *, site: str | None = None,
                 pool: str | None = None, image: str | None = None) -> JournalHeader:
    """Decode the journal header's omap (``client_*`` and ``tag_*`` keys; others ignored).

    Raises :class:`~ceph_failback.errors.CephError` naming the key if a value does not decode:
    a header this module cannot read proves nothing.
    """
    clients: dict[str, JournalClient] = {}
    tags: dict[int, JournalTag] = {}
    for key, raw in omap.items():
        try:
            if key.startswith(_CLIENT_PREFIX):
                client = _client(bytes(raw))
                clients[client.id] = client
            elif key.startswith(_TAG_PREFIX):
                tag = _tag(bytes(raw))
                tags[tag.tid] = tag
        except (ValueError, struct.error) as exc:
            raise CephError(f"cannot decode the image journal's {key!r}: {exc}",
                            site=site, pool=pool, image=image) from exc
    return JournalHeader(clients, tags)
