"""The parallel mirror-info read (ceph_failback/ceph/promotion.py) on fake bindings: what it
decides from the journals, what it leaves to librbd, what it leaves out. The lab tests compare
it with librbd's own listing on real clusters."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ceph_failback.ceph.promotion import decode_mirror_image, read_mirror_infos

DATA = json.loads((Path(__file__).parent / "data" / "journal_headers_dr_test.json").read_text())
#: Real journal headers: A demoted and replaying B (non-primary), B primary.
NON_PRIMARY = {k: bytes.fromhex(v) for k, v in DATA["a"]["omap"].items()}
PRIMARY = {k: bytes.fromhex(v) for k, v in DATA["b"]["omap"].items()}


def mirror_image(global_id: str, state: int, mode: int | None) -> bytes:
    body = struct.pack("<I", len(global_id)) + global_id.encode() + bytes([state])
    if mode is not None:
        body += bytes([mode])
    return bytes([1 if mode is None else 2, 1]) + struct.pack("<I", len(body)) + body


class ObjectNotFound(Exception):
    pass


class PermissionDenied(Exception):
    pass


class FakeRados:
    ObjectNotFound = ObjectNotFound

    class ReadOpCtx:
        released = False

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            # Releasing an operation whose read is in flight would be a use after free.
            assert all(c.called.is_set() for c in getattr(self, "completions", []))
            self.released = True


class FakeIoctx:
    def __init__(self, objects: dict[str, dict[str, bytes]],
                 denied: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.objects, self.denied = objects, denied
        self.in_flight = self.most_in_flight = 0
        self.refused: set[str] = set()
        self.submitted: list[Any] = []
        self.lock = threading.Lock()

    def get_omap_vals(self, op: Any, start: str, prefix: str, n: int) -> tuple[Any, int]:
        result: list[tuple[str, bytes]] = []
        op.asked = (result, start, prefix, n)  # one op per read, as librados' ReadOp
        return result, 0

    def operate_read_op(self, op: Any, oid: str) -> None:
        result, start, prefix, n = op.asked
        if oid in self.denied:
            raise PermissionDenied(oid)
        if oid not in self.objects:
            raise ObjectNotFound(oid)
        keys = sorted(k for k in self.objects[oid] if k > start and k.startswith(prefix))
        result.extend((k, self.objects[oid][k]) for k in keys[:n])

    def operate_aio_read_op(self, op: Any, oid: str, oncomplete: Any) -> Any:
        """As librados: the read's outcome is the completion's return value (a negative errno),
        the callback runs on another thread, later; ``refused`` objects fail the submission."""
        if oid in self.refused:
            raise PermissionDenied(oid)
        op.completions = getattr(op, "completions", [])
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

        class Completion:
            value = 0

            def __init__(self) -> None:
                self.called = threading.Event()

            def get_return_value(self) -> int:
                return self.value

            def wait_for_complete_and_cb(self) -> None:
                assert self.called.wait(5)

        completion = Completion()
        op.completions.append(completion)
        self.submitted.append(op)
        try:
            self.operate_read_op(op, oid)
        except PermissionDenied:
            completion.value = -1
        except ObjectNotFound:
            completion.value = -2

        def complete() -> None:
            time.sleep(0.001)
            with self.lock:
                self.in_flight -= 1
            oncomplete(completion)
            completion.called.set()

        threading.Thread(target=complete).start()
        return completion


def fake_rbd(infos: dict[str, dict[str, Any]]) -> Any:
    class ImageNotFound(Exception):
        pass

    class Image:
        def __init__(self, ioctx: Any, *, image_id: str, read_only: bool) -> None:
            assert read_only
            if image_id not in infos:
                raise ImageNotFound(image_id)
            self.image_id = image_id

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def mirror_image_get_info(self) -> dict[str, Any]:
            return dict(infos[self.image_id])

    class Module:
        pass

    module = Module()
    module.Image, module.ImageNotFound = Image, ImageNotFound  # type: ignore[attr-defined]
    return module


def test_entries_decode_in_both_versions() -> None:
    assert decode_mirror_image(mirror_image("g1", 1, 1)) == ("g1", 1, 1)
    assert decode_mirror_image(mirror_image("g0", 1, None)) == ("g0", 1, 0)  # v1: journal
    with pytest.raises(ValueError):
        decode_mirror_image(mirror_image("g", 1, 1)[:7])


def test_what_is_decided_where_and_what_is_left_out() -> None:
    mirroring = {
        "image_primary": mirror_image("g-p", 1, 0),
        "image_replica": mirror_image("g-r", 1, 0),
        "image_nojournal": mirror_image("g-n", 1, 0),     # journal object missing: librbd
        "image_snap": mirror_image("g-s", 1, 1),          # snapshot mode: librbd
        "image_disabling": mirror_image("g-d", 0, 0),     # a resync's trash move: left out
        "image_creating": mirror_image("g-c", 3, 0),      # being created: left out
        "image_gone": mirror_image("g-x", 1, 1),          # removed since the listing
        "image_late": mirror_image("g-l", 1, 1),          # disabled since the listing
        "mirror_uuid": b"not an image entry",
    }
    ioctx = FakeIoctx({"rbd_mirroring": mirroring, "journal.primary": PRIMARY,
                       "journal.replica": NON_PRIMARY, "journal.disabling": PRIMARY})
    rbd = fake_rbd({
        "nojournal": {"global_id": "g-n", "state": 1, "primary": True},
        "snap": {"global_id": "g-s", "state": 1, "primary": False},
        "late": {"global_id": "g-l", "state": 2, "primary": False},
    })
    counts: dict[str, int] = {}
    headers: dict[str, Any] = {}
    out = read_mirror_infos(ioctx, FakeRados, rbd, concurrency=4, counts=counts,
                            headers=headers)
    assert out == {
        "primary": {"global_id": "g-p", "state": 1, "mode": 0, "primary": True},
        "replica": {"global_id": "g-r", "state": 1, "mode": 0, "primary": False},
        "nojournal": {"global_id": "g-n", "state": 1, "mode": 0, "primary": True},
        "snap": {"global_id": "g-s", "state": 1, "mode": 1, "primary": False},
    }
    assert counts == {"journal": 2, "librbd": 4}  # nojournal, snap, gone, late
    assert set(headers) == {"primary", "replica"}


def test_a_journal_too_big_for_one_page_or_unreadable_goes_to_librbd() -> None:
    big = dict(PRIMARY)
    big.update({f"tag_{i:016x}": PRIMARY[max(k for k in PRIMARY if k.startswith("tag_"))]
                for i in range(100, 1200)})
    ioctx = FakeIoctx({"rbd_mirroring": {"image_big": mirror_image("g-b", 1, 0),
                                         "image_denied": mirror_image("g-d", 1, 0)},
                       "journal.big": big, "journal.denied": PRIMARY}, denied={"journal.denied"})
    rbd = fake_rbd({"big": {"global_id": "g-b", "state": 1, "primary": False},
                    "denied": {"global_id": "g-d", "state": 1, "primary": True}})
    counts: dict[str, int] = {}
    out = read_mirror_infos(ioctx, FakeRados, rbd, concurrency=2, counts=counts)
    assert out["big"]["primary"] is False and out["denied"]["primary"] is True
    assert counts == {"journal": 0, "librbd": 2}


def test_a_pool_without_mirroring_lists_nothing_and_other_errors_propagate() -> None:
    assert read_mirror_infos(FakeIoctx({}), FakeRados, fake_rbd({}), concurrency=2) == {}
    ioctx = FakeIoctx({"rbd_mirroring": {"image_a": mirror_image("g", 1, 0)}},
                      denied={"rbd_mirroring"})
    with pytest.raises(PermissionDenied):
        read_mirror_infos(ioctx, FakeRados, fake_rbd({}), concurrency=2)


def test_the_journals_are_read_a_window_at_a_time_and_answer_in_the_listing_order() -> None:
    images = {f"image_{i:04d}": mirror_image(f"g{i}", 1, 0) for i in range(200)}
    objects = {"rbd_mirroring": images}
    objects.update({f"journal.{i:04d}": (PRIMARY if i % 2 else NON_PRIMARY) for i in range(200)})
    ioctx = FakeIoctx(objects)
    out = read_mirror_infos(ioctx, FakeRados, fake_rbd({}), concurrency=2, window=8)
    assert list(out) == [f"{i:04d}" for i in range(200)]
    assert [out[f"{i:04d}"]["primary"] for i in range(200)] == [bool(i % 2) for i in range(200)]
    assert 1 < ioctx.most_in_flight <= 8
    assert ioctx.in_flight == 0


def test_a_refused_read_propagates_once_every_read_in_flight_has_completed() -> None:
    images = {f"image_{i:04d}": mirror_image(f"g{i}", 1, 0) for i in range(40)}
    objects = {"rbd_mirroring": images}
    objects.update({f"journal.{i:04d}": PRIMARY for i in range(40)})
    ioctx = FakeIoctx(objects)
    ioctx.refused = {"journal.0025"}
    with pytest.raises(PermissionDenied):
        read_mirror_infos(ioctx, FakeRados, fake_rbd({}), concurrency=2, window=8)
    assert len(ioctx.submitted) == 25 and ioctx.in_flight == 0
    assert all(op.released for op in ioctx.submitted)  # each after its read completed
