"""Helpers for lab tests: polling real statuses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll(fn: Callable[[], T | None], *, timeout: float = 90.0, interval: float = 0.25,
         what: str = "condition") -> T:
    """Call ``fn`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # e.g. the image is being recreated by a resync
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc})")


def pattern(tag: str, size: int = 1 << 20) -> bytes:
    """Recognisable data for a write."""
    unit = (tag.encode() + b"-") * 64
    return (unit * (size // len(unit) + 1))[:size]


def assert_fast_infos_match_librbd(pool: Any, names: list[str], *, rounds: int = 10
                                   ) -> dict[str, int]:
    """The parallel mirror-info read (ceph_failback/ceph/promotion.py) answers what librbd's
    own sequential listing (``mirror_image_info_list``) answers, for every image of the pool.

    rbd-mirror may change an image's state between two reads; an image counts only when two
    librbd listings around the fast read agree on it. ``names`` (the caller's images, in
    settled states) must all count, and the rest of the pool is compared too. Returns how many
    images each way of the fast read decided (``journal``, ``librbd``).
    """
    import rbd

    for _ in range(rounds):
        with pool.site.ioctx(pool.pool) as ioctx:
            before = dict(rbd.RBD().mirror_image_info_list(ioctx))
            counts: dict[str, int] = {}
            fast = pool._mirror_infos(ioctx, counts)
            after = dict(rbd.RBD().mirror_image_info_list(ioctx))
            ids = {i["id"]: i["name"] for i in rbd.RBD().list2(ioctx)}
        stable = {i for i in before.keys() | after.keys() if before.get(i) == after.get(i)}
        if {ids.get(i) for i in stable} >= set(names):
            break
    else:
        raise AssertionError(f"the images {names} never held still for two librbd listings")
    extra = fast.keys() - before.keys() - after.keys()
    assert not extra, f"the fast read lists images librbd does not: {extra}"
    wrong = {ids.get(i, i): (fast.get(i), before.get(i)) for i in stable
             if fast.get(i) != before.get(i)}
    assert not wrong, f"fast read (left) differs from librbd (right): {wrong}"
    assert set(names) <= {ids.get(i) for i in fast}
    return counts
