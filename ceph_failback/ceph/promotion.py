"""Every mirrored image's mirror info (global id, state, mode, primary) in parallel reads.

librbd's ``mirror_image_info_list`` reads each image's promotion state one image after another
(``Mirror::image_info_list`` waits for one ``mirror::GetInfoRequest`` before the next), about
1-2 ms per image on this project's lab: 20 s for a pool of 10,000 images. This module reads
the same facts with many reads in flight:

1. The pool's mirrored images with their global id, state and mode: the ``image_<id>`` keys of
   the pool's ``rbd_mirroring`` object (``cls::rbd::MirrorImage``, src/cls/rbd/cls_rbd_types.cc),
   a few paged omap reads for the whole pool.
2. Journal mode, enabled: the image's owner is the newest tag of its journal's image client
   class, which is what ``GetInfoRequest`` asks librbd (``Journal::get_tag_owner``): one
   omap read of ``journal.<id>`` per image (:attr:`JournalHeader.owner
   <ceph_failback.ceph.rbd_journal.JournalHeader.owner>`). Primary means the owner is the
   image itself.
3. Anything else (snapshot mode, a journal that cannot be read or cannot say): librbd's own
   ``mirror_image_get_info`` on the image opened by id, read-only.

Reads 2 are librados' asynchronous reads, ``window`` in flight at once (no Python thread per
read); reads 3 run on ``concurrency`` threads (the bindings release the GIL for each call).
``benchmarks/scale.py`` measures both ways on the lab side by side (``info_reads``).
Images whose mirroring is not enabled are left out, as librbd's listing leaves them out.
``tests/lab/test_ceph_adapter*.py`` compare the result with librbd's listing on images
primary, replaying, demoted, flipped and force-promoted, in both modes, and on whatever else
the pool holds then; ``tests/unit/test_promotion.py`` covers the decoding and the fallbacks.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .rbd_journal import LOCAL_OWNER, JournalHeader, _Decoder, parse_header

__all__ = ["decode_mirror_image", "omap_pages", "read_mirror_infos", "read_omaps"]

#: librbd's MirrorImageState and MirrorImageMode values.
ENABLED = 1
JOURNAL, SNAPSHOT = 0, 1

_IMAGE_KEY_PREFIX = "image_"
_PAGE = 1024


def decode_mirror_image(raw: bytes) -> tuple[str, int, int]:
    """``cls::rbd::MirrorImage``: (global image id, state, mode). Version 1 has no mode: those
    images are journal-based (the only mode then)."""
    body = _Decoder(raw)
    version = raw[0] if raw else 0
    block = body.block()
    global_id = block.string()
    state = block.u8()
    mode = block.u8() if version >= 2 else JOURNAL
    return global_id, state, mode


def omap_pages(ioctx: Any, rados: Any, oid: str, prefix: str) -> Iterator[dict[str, bytes]]:
    """The object's omap keys starting with ``prefix`` and their values, a page at a time
    (a missing object raises ``rados.ObjectNotFound``)."""
    start = ""
    while True:
        with rados.ReadOpCtx() as op:
            it, _ = ioctx.get_omap_vals(op, start, prefix, _PAGE)
            ioctx.operate_read_op(op, oid)
            page = {str(k): bytes(v) for k, v in it}
        yield page
        if len(page) < _PAGE:
            return
        start = max(page)


def read_omaps(ioctx: Any, rados: Any, oids: list[str], *, window: int
               ) -> dict[str, dict[str, bytes] | None]:
    """Each object's first omap page (up to 1,024 keys), ``window`` reads in flight at once
    through librados' asynchronous reads (no thread per read: the callbacks run on librados'
    own thread); ``None`` for an object whose read failed (missing, denied...).

    Every read submitted is waited for (``wait_for_complete_and_cb``) before its operation is
    released, an exception or an interrupt included; a read whose submission was interrupted
    before its completion was known keeps its operation (a leak, never a use after free)."""
    out: dict[str, dict[str, bytes] | None] = {}
    slots = threading.Semaphore(max(1, window))
    # [op, completion, never submitted]: each op lives until its read has completed.
    pending: list[list[Any]] = []

    def submit(oid: str) -> None:
        op = rados.ReadOpCtx()
        op.__enter__()
        entry = [op, None, False]
        pending.append(entry)
        try:
            values, _ = ioctx.get_omap_vals(op, "", "", _PAGE)
        except Exception:
            entry[2] = True
            raise

        def done(completion: Any) -> None:
            try:
                page: dict[str, bytes] | None = (
                    {str(k): bytes(v) for k, v in values}
                    if completion.get_return_value() >= 0 else None)
            except Exception:  # noqa: BLE001 - decided below as unreadable
                page = None
            out[oid] = page
            slots.release()

        try:
            entry[1] = ioctx.operate_aio_read_op(op, oid, oncomplete=done)
        except Exception:  # refused: never in flight
            entry[2] = True
            raise

    try:
        for oid in oids:
            slots.acquire()
            try:
                submit(oid)
            except BaseException:
                slots.release()
                raise
    finally:
        for op, completion, unsent in pending:
            if completion is not None:
                completion.wait_for_complete_and_cb()
                op.__exit__(None, None, None)
            elif unsent:
                op.__exit__(None, None, None)
    return out


def read_mirror_infos(ioctx: Any, rados: Any, rbd: Any, *, concurrency: int,
                      window: int = 128, counts: dict[str, int] | None = None,
                      headers: dict[str, JournalHeader] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Image id -> ``{"global_id", "state", "mode", "primary"}``, as librbd's
    ``mirror_image_info_list`` returns them, for every mirror-enabled image of ``ioctx``'s pool.

    As librbd's listing (``Mirror::image_info_list``), images whose mirroring is not enabled
    (being enabled, or being disabled: an image moved to the trash by a resync) are left out,
    and so is an image that disappears before its read. A journal that cannot be read or
    decided sends its image to librbd's own read. Other binding errors propagate (the caller
    maps them), the reads not yet started cancelled; an ``rbd_mirroring`` entry that does not
    decode raises :class:`ValueError`.

    The journal headers are read ``window`` at once (:func:`read_omaps`); librbd's reads run
    on ``concurrency`` threads.

    ``counts`` (optional) receives how many images each way decided: ``journal``, ``librbd``;
    ``headers`` (optional) receives image id -> the journal header each journal-decided
    image's owner was read from, for a caller that needs the headers too.
    """
    tally = counts if counts is not None else {}
    tally.setdefault("journal", 0)
    tally.setdefault("librbd", 0)
    tally_lock = threading.Lock()

    def count(way: str) -> None:
        with tally_lock:
            tally[way] += 1

    entries: dict[str, tuple[str, int, int]] = {}
    try:
        for page in omap_pages(ioctx, rados, "rbd_mirroring", _IMAGE_KEY_PREFIX):
            for key, raw in page.items():
                entry = decode_mirror_image(raw)
                if entry[1] == ENABLED:
                    entries[key[len(_IMAGE_KEY_PREFIX):]] = entry
    except rados.ObjectNotFound:
        return {}  # mirroring never enabled in this pool: nothing mirrored

    def by_librbd(image_id: str) -> dict[str, Any] | None:
        count("librbd")
        try:
            with rbd.Image(ioctx, image_id=image_id, read_only=True) as image:
                info = dict(image.mirror_image_get_info())
        except (rbd.ImageNotFound, rados.ObjectNotFound):
            return None
        if info.get("state") != ENABLED:  # disabled or being disabled since the listing
            return None
        info["mode"] = entries[image_id][2]
        return info

    journal_ids = [i for i, (_, _, mode) in entries.items() if mode == JOURNAL]
    omaps = read_omaps(ioctx, rados, [f"journal.{i}" for i in journal_ids], window=window)
    out: dict[str, dict[str, Any]] = {}
    to_librbd = [i for i in entries if entries[i][2] != JOURNAL]
    for image_id in journal_ids:
        omap = omaps.get(f"journal.{image_id}")
        try:
            header = parse_header(omap) if omap is not None and len(omap) < _PAGE else None
        except Exception:  # noqa: BLE001 - undecodable: ask librbd
            header = None
        owner = header.owner if header is not None else None
        if owner is None:
            to_librbd.append(image_id)
            continue
        tally["journal"] += 1
        if headers is not None:
            headers[image_id] = header  # type: ignore[assignment]
        global_id, state, mode = entries[image_id]
        out[image_id] = {"global_id": global_id, "state": state, "mode": mode,
                         "primary": owner == LOCAL_OWNER}
    if to_librbd:
        with ThreadPoolExecutor(max(1, min(concurrency, len(to_librbd))),
                                thread_name_prefix="mirror-info") as ex:
            futures = [ex.submit(by_librbd, image_id) for image_id in to_librbd]
            try:
                for image_id, future in zip(to_librbd, futures, strict=True):
                    info = future.result()
                    if info is not None:
                        out[image_id] = info
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
    # In the pool listing's order, as librbd's listing gives them.
    return {i: out[i] for i in entries if i in out}
