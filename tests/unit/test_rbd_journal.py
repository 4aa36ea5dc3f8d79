"""Decoding an RBD image's journal header, against headers read from the lab's real clusters
(Ceph 16) right after a DR-test flip (tests/unit/data/journal_headers_dr_test.json: site A
demoted, site B promoted, A's rbd-mirror replaying B's promotion)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from ceph_failback.ceph.rbd_journal import (
    LOCAL_OWNER,
    ORPHAN_OWNER,
    ObjectPosition,
    ReplayEpoch,
    parse_header,
)
from ceph_failback.errors import CephError
from ceph_failback.failback.safety import journal_replay_proof

DATA = json.loads((Path(__file__).parent / "data" / "journal_headers_dr_test.json").read_text())


def header(site: str):  # type: ignore[no-untyped-def]
    return parse_header({k: bytes.fromhex(v) for k, v in DATA[site]["omap"].items()})


def test_the_real_headers_decode_as_ceph_prints_them() -> None:
    a, b = header("a"), header("b")
    a_uuid, b_uuid = DATA["a"]["mirror_uuid"], DATA["b"]["mirror_uuid"]
    # B, promoted: its current epoch is its own and follows A's demotion (the orphan).
    assert b.newest_tag is not None and b.newest_tag.owner == LOCAL_OWNER
    assert b.newest_tag.predecessor_owner == ORPHAN_OWNER
    assert b.master is not None and b.master.position is not None
    assert b.master.position.tag_tid == b.newest_tag.tid
    # A's rbd-mirror is registered in B's journal under A's mirror uuid, and committed B's
    # promotion (the first entry of B's epoch).
    client = b.client(a_uuid)
    assert client is not None and client.connected
    assert client.position == ObjectPosition(b.newest_tag.tid, 0)
    # A's own current epoch is the one rbd-mirror allocated for B's, after its own demotion.
    assert a.newest_tag is not None and a.newest_tag.owner == b_uuid
    assert ORPHAN_OWNER in {t.owner for t in a.tags.values()}
    # B's rbd-mirror is registered in A's journal (from when A was primary).
    assert a.client(b_uuid) is not None
    # A client's commit position lists one position per journal object, newest first: A's
    # own client last committed its demotion (the orphan epoch, 4), before its writes in 2.
    assert a.master is not None and len(a.master.positions) == 4
    assert a.master.position == ObjectPosition(4, 0, 0)
    assert a.tags[4].owner == ORPHAN_OWNER
    assert [p.tag_tid for p in a.master.positions[1:]] == [2, 2, 2]
    # The positions agree with what rbd-mirror later published in A's status.
    published = json.loads(DATA["status_a"].split(", ", 1)[1])
    assert published["non_primary_position"]["tag_tid"] == client.position.tag_tid
    assert published["primary_position"]["tag_tid"] == b.master.position.tag_tid
    epoch = ReplayEpoch.read(a, b, a_uuid=a_uuid, b_uuid=b_uuid)
    assert journal_replay_proof(epoch) is not None
    # Swapped sites prove nothing: A is not primary in its epoch.
    assert journal_replay_proof(ReplayEpoch.read(b, a, a_uuid=b_uuid, b_uuid=a_uuid)) is None


def test_a_value_that_does_not_decode_is_an_error_naming_the_key() -> None:
    omap = {k: bytes.fromhex(v) for k, v in DATA["b"]["omap"].items()}
    key = next(k for k in omap if k.startswith("client_") and k != "client_")
    omap[key] = omap[key][:20]
    with pytest.raises(CephError, match=key):
        parse_header(omap, site="site-b", pool="one", image="img2")


def test_fields_a_newer_version_appends_are_skipped() -> None:
    # ENCODE_START blocks carry their length: a newer struct with more fields still decodes.
    position = struct.pack("<BBI", 2, 1, 24 + 4) + struct.pack("<QQQ", 7, 5, 3) + b"\0" * 4
    commit = struct.pack("<BBI", 1, 1, 4 + len(position)) + struct.pack("<I", 1) + position
    cid = b"peer"
    body = (struct.pack("<I", len(cid)) + cid + struct.pack("<I", 0) + commit + b"\x01"
            + b"future")
    raw = struct.pack("<BBI", 2, 1, len(body)) + body
    client = parse_header({"client_peer": raw}).client("peer")
    assert client is not None and not client.connected
    assert client.position == ObjectPosition(5, 3, 7)


def test_an_encoding_for_a_newer_decoder_or_a_short_client_is_refused() -> None:
    omap = {k: bytes.fromhex(v) for k, v in DATA["b"]["omap"].items()}
    raw = bytearray(omap["client_"])
    raw[1] = 2  # compat: needs a newer decoder
    with pytest.raises(CephError, match="version 2"):
        parse_header({"client_": bytes(raw)})
    cid = b"peer"
    commit = struct.pack("<BBI", 1, 1, 4) + struct.pack("<I", 0)
    body = struct.pack("<I", len(cid)) + cid + struct.pack("<I", 0) + commit  # no state byte
    with pytest.raises(CephError, match="truncated"):
        parse_header({"client_peer": struct.pack("<BBI", 1, 1, len(body)) + body})


def test_the_owner_is_the_newest_tag_of_the_image_clients_class() -> None:
    """What librbd's promotion state reads (Journal::get_tag_owner), from the same headers:
    A demoted and replaying B (B's mirror uuid owns A's epoch), B primary."""
    a, b = header("a"), header("b")
    assert a.master is not None and a.master.tag_class == 0
    assert b.master is not None and b.master.tag_class == 0
    assert a.owner == DATA["b"]["mirror_uuid"]
    assert b.owner == LOCAL_OWNER
    # A peer's registration carries no tag class.
    peer = b.client(DATA["a"]["mirror_uuid"])
    assert peer is not None and peer.tag_class is None
    # A tag of another class is never the owner; no image client: no owner.
    omap = {k: bytes.fromhex(v) for k, v in DATA["b"]["omap"].items()}
    newest = max(k for k in omap if k.startswith("tag_"))
    raw = bytearray(omap[newest])
    raw[6 + 8:6 + 16] = struct.pack("<Q", 7)  # the tag's class, after its tid
    changed = parse_header({**omap, newest: bytes(raw)})
    assert changed.owner is not None and changed.owner != LOCAL_OWNER
    assert parse_header({k: v for k, v in omap.items() if k != "client_"}).owner is None


def test_the_chain_reads_as_rbd_mirror_compares_it() -> None:
    a, b = header("a"), header("b")
    names = {DATA["a"]["mirror_uuid"]: "A", DATA["b"]["mirror_uuid"]: "B"}
    # B promoted after A's demotion: B's newest epoch is its own, after A's orphan.
    assert b.chain(names).split(", ")[-1].startswith(f"{b.newest_tag.tid} own<-orphan ")
    # A's newest epoch is the one it replays from B.
    assert a.chain(names).split(", ")[-1].startswith(f"{a.newest_tag.tid} B<-")
    assert len(a.chain(names, last=2).split(", ")) == 2
    assert parse_header({}).chain() == "no tags"


@pytest.mark.parametrize("site", ["a", "b"])
def test_every_cut_short_value_of_a_real_header_is_refused(site: str) -> None:
    """The decoders read at offsets (struct.unpack_from): a value cut anywhere short, or a
    tag whose owner string claims more bytes than it has, is an error, never a decoded
    header with made-up fields."""
    omap = {k: bytes.fromhex(v) for k, v in DATA[site]["omap"].items()}
    for key, raw in omap.items():
        if not key.startswith(("client_", "tag_")):
            continue
        for cut in range(len(raw)):
            with pytest.raises(CephError, match=key):
                parse_header({key: raw[:cut]})
    key = max(k for k in omap if k.startswith("tag_"))
    raw = bytearray(omap[key])
    owner_length = 6 + 16 + 4  # block header, tid and class, the TagData blob's length
    raw[owner_length:owner_length + 4] = struct.pack("<I", 1 << 20)
    with pytest.raises(CephError, match="truncated"):
        parse_header({key: bytes(raw)})
