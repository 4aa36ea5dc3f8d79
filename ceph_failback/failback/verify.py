"""Verification: is the data on A, which the VMs are about to boot from, B's last data?

rbd-mirror's status and librbd's non-forced promote say A replayed B's journal (or copied its
demotion snapshot); a verification does not take their word for it. It reads both copies through
librbd and compares them chunk by chunk (:mod:`ceph_failback.ceph.content`):

* B's copy right after step 4 demoted it: the VM is DONE, B is read-only, and nothing replays
  into it until A is promoted, so this is B's last data;
* A's copy right after step 5 promoted it, before step 6 resumes the VM: what it will boot from.

Equal: the VM is resumed. Different (a chunk, or the size): the image's step fails with the first
offset that differs, and its VM is not resumed; nothing else changes. It costs what it reads:
both copies of each image (whole, or ``sample`` chunks of 4 MiB each, the first and last always
in), at most ``bandwidth`` bytes per second for both sites together, ``workers`` images at a
time, while the VM is down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..ceph.content import CHUNK, ContentDigest, sample_offsets
from ..ceph.seams import MirrorSide
from ..errors import ConfigurationError, StepFailedError
from .events import Emitter, EventKind
from .ledger import Ledger, Mark, Step, image_target

__all__ = ["Verify", "ImageCheck", "Bandwidth", "Verifier", "compare", "read_digests",
           "verify_now"]


@dataclass(frozen=True)
class Verify:
    """How to verify (``Failback(verify=Verify(...))``).

    Attributes:
        sample: chunks read per image (``None``: the whole image).
        bandwidth: bytes per second for every read of the failback together (``None``: as fast
            as the clusters answer).
        workers: images read at a time (each image's two copies are read side by side).
        chunk: bytes per chunk (RBD's object size by default).
    """

    sample: int | None = None
    bandwidth: float | None = None
    workers: int = 4
    chunk: int = CHUNK

    def __post_init__(self) -> None:
        if self.sample is not None and self.sample < 1:
            raise ConfigurationError(f"verify: sample must be at least 1 chunk, not {self.sample}")
        if self.bandwidth is not None and not self.bandwidth > 0:
            raise ConfigurationError(f"verify: bandwidth must be positive, not {self.bandwidth}")
        if self.workers < 1 or self.chunk < 4096:
            raise ConfigurationError("verify: workers must be >= 1 and chunk >= 4096 bytes")


@dataclass(frozen=True)
class ImageCheck:
    """One image's verification.

    Attributes:
        image: the image.
        equal: every chunk read is equal on both sites, and so is the size.
        read: bytes read from each site.
        detail: what was compared, or where the copies differ.
    """

    image: str
    equal: bool
    read: int
    detail: str


class Bandwidth:
    """A shared limit of bytes per second (a token bucket, one second deep)."""

    def __init__(self, per_second: float | None) -> None:
        self.rate = per_second
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def __call__(self, n: int) -> None:
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(self._next, now - 1.0)
            self._next = start + n / self.rate
            wait = self._next - now - 1.0
        if wait > 0:
            time.sleep(wait)


def compare(image: str, b: ContentDigest, a: ContentDigest, *, site_a: str,
            site_b: str) -> ImageCheck:
    """The verdict on one image from B's and A's digests."""
    where = b.first_difference(a)
    whole = len(b.chunks) * b.chunk >= b.size
    what = "whole image" if whole else f"{len(b.chunks)} chunks of {b.chunk >> 20} MiB sampled"
    if where is None:
        return ImageCheck(image, True, a.read, f"equal ({what}, {_size(a.read)} read per site)")
    if where == -1:
        return ImageCheck(image, False, a.read, f"sizes differ: {b.size} bytes on {site_b}, "
                                                f"{a.size} on {site_a}")
    return ImageCheck(image, False, a.read, f"content differs at offset {where} ({what}): "
                                            f"{site_a}'s copy is not {site_b}'s last data")


def _size(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


def read_digests(side: MirrorSide, images: Sequence[str], options: Verify,
                 throttle: Bandwidth, like: dict[str, ContentDigest] | None = None
                 ) -> dict[str, ContentDigest]:
    """The digests of ``images`` on one site, ``options.workers`` at a time: whole, a sample
    (chosen from the image's name, so both sites read the same chunks), or the chunks ``like``
    read for the same image on the other site."""
    def one(name: str) -> ContentDigest:
        offsets: Iterable[int] | None = None
        if like is not None and name in like:
            offsets = sorted(like[name].chunks)
        elif options.sample is not None:
            size = side.digest(name, chunk=options.chunk, offsets=[]).size
            offsets = sample_offsets(size, options.sample, name, options.chunk)
        return side.digest(name, chunk=options.chunk, offsets=offsets, throttle=throttle)

    with ThreadPoolExecutor(max(1, min(options.workers, len(images))),
                            thread_name_prefix="verify") as ex:
        return dict(zip(images, ex.map(one, images), strict=True))


class Verifier:
    """A failback's verification: B's digests read after step 4, A's after step 5, compared,
    journaled (``step`` ``verify``)."""

    def __init__(self, options: Verify, ledger: Ledger, events: Emitter, *, site_a: str,
                 site_b: str, pool: str) -> None:
        self.options = options
        self.ledger, self.events = ledger, events
        self.site_a, self.site_b, self.pool = site_a, site_b, pool
        self.throttle = Bandwidth(options.bandwidth)
        self._b: dict[str, ContentDigest] = {}
        self._lock = threading.Lock()

    def pending(self, images: Iterable[str]) -> list[str]:
        """The images not yet verified equal by this journal."""
        return [i for i in images if self.ledger.journal.last(
            step=Step.VERIFY, event=Mark.DONE, target=image_target(i)) is None]

    def _promoted(self, name: str) -> bool:
        return self.ledger.attempted(Step.PROMOTE_A, image_target(name))

    def read_b(self, pool_b: MirrorSide, images: Sequence[str]) -> None:
        """After step 4, before step 5: B's digests (kept for :meth:`check`, journaled with
        what :meth:`check` needs to compare without B). Never once A's promote was attempted:
        B then follows A, and reading it would prove nothing (a copy altered on A would pass)."""
        todo = [n for n in self.pending(images) if not self._promoted(n)]
        if not todo:
            return
        digests = read_digests(pool_b, todo, self.options, self.throttle)
        with self._lock:
            self._b.update(digests)
        for name, d in digests.items():
            self.ledger.write(Step.VERIFY, Mark.OBSERVED, image_target(name), site=self.site_b,
                              size=d.size, chunk=d.chunk, chunks=len(d.chunks),
                              sample=self.options.sample, digest=d.combined())

    def _recorded_b(self, name: str) -> dict[str, object] | None:
        """B's digest as journaled before A's promote (a run resumed after step 5)."""
        t = image_target(name)
        j = self.ledger.journal
        promote = j.find(step=Step.PROMOTE_A, target=t)
        first = min((r.time for r in promote), default=None)
        seen = [r for r in j.find(step=Step.VERIFY, event=Mark.OBSERVED, target=t)
                if first is None or r.time <= first]
        return dict(seen[-1].data) if seen else None

    def check(self, pool_a: MirrorSide, pool_b: MirrorSide, images: Sequence[str]
              ) -> dict[str, ImageCheck]:
        """After step 5: A's digests against B's taken after step 4; raises
        :class:`StepFailedError` naming each image whose copies differ (its VM must not be
        resumed). A run resumed after step 5 compares with B's digest journaled before the
        promote (never with B now, which follows A); without one, the image fails: nothing can
        prove its copy any more."""
        todo = self.pending(images)
        if not todo:
            return {}
        with self._lock:
            b = {n: self._b[n] for n in todo if n in self._b}
        checks: dict[str, ImageCheck] = {}
        if b:
            a = read_digests(pool_a, list(b), self.options, self.throttle, like=b)
            checks = {n: compare(n, b[n], a[n], site_a=self.site_a, site_b=self.site_b)
                      for n in b}
        for name in (n for n in todo if n not in b):
            checks[name] = self._against_record(pool_a, name)
        failures = {}
        for name in todo:
            c, t = checks[name], image_target(name)
            if c.equal:
                self.ledger.write(Step.VERIFY, Mark.DONE, t, detail=c.detail, read=c.read)
                self.events.emit(EventKind.ACTION, f"{t}: verified, {c.detail}",
                                 step=Step.VERIFY.value, target=t, outcome="done")
            else:
                self.ledger.write(Step.VERIFY, Mark.FAILED, t, error=c.detail, read=c.read)
                self.events.emit(EventKind.WARNING, f"{t}: VERIFICATION FAILED: {c.detail}",
                                 step=Step.VERIFY.value, target=t, outcome="failed")
                failures[t] = (f"verification: {c.detail}; its VM is not resumed (compare the "
                               "copies; to resume it anyway, run again without verify)")
        if failures:
            raise StepFailedError(f"{len(failures)} image(s) differ between the sites",
                                  failures=failures, pool=self.pool, site=self.site_a)
        return checks

    def _against_record(self, pool_a: MirrorSide, name: str) -> ImageCheck:
        """A's copy against B's digest journaled before the promote."""
        record = self._recorded_b(name)
        if record is None or not isinstance(record.get("digest"), str):
            return ImageCheck(name, False, 0, f"cannot be verified: no digest of {self.site_b}'s "
                                              "copy was taken before the promote (the run "
                                              "stopped between them), and B now follows A")
        size, chunk = int(str(record["size"])), int(str(record.get("chunk") or CHUNK))
        sample = record.get("sample")
        offsets = (None if sample is None else
                   sample_offsets(size, int(str(sample)), name, chunk))
        a = pool_a.digest(name, chunk=chunk, offsets=offsets, throttle=self.throttle)
        if a.size != size:
            return ImageCheck(name, False, a.read, f"sizes differ: {size} bytes on "
                                                   f"{self.site_b} (its digest taken before the "
                                                   f"promote), {a.size} on {self.site_a}")
        if a.combined() != record["digest"]:
            return ImageCheck(name, False, a.read, f"content differs from {self.site_b}'s "
                                                   "digest taken before the promote: "
                                                   f"{self.site_a}'s copy is not {self.site_b}'s "
                                                   "last data")
        return ImageCheck(name, True, a.read, f"equal to {self.site_b}'s digest taken before the "
                                              f"promote ({_size(a.read)} read on "
                                              f"{self.site_a})")


def verify_now(pool_a: MirrorSide, pool_b: MirrorSide, images: Sequence[str], options: Verify,
               *, site_a: str, site_b: str) -> dict[str, ImageCheck]:
    """Both sites' present contents compared (nothing journaled); meaningful only while
    neither copy is written (no VM running on either, no replay under way)."""
    throttle = Bandwidth(options.bandwidth)
    b = read_digests(pool_b, images, options, throttle)
    a = read_digests(pool_a, images, options, throttle, like=b)
    return {n: compare(n, b[n], a[n], site_a=site_a, site_b=site_b) for n in images}
