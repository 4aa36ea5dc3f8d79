"""An image's content, digested chunk by chunk: what a verification compares between two sites
(:mod:`ceph_failback.failback.verify`), read through librbd, never trusting rbd-mirror's word.

The adapters only give :func:`digest` the image's size and a ``read(offset, length)``; the
chunking, the sampling and the hash are decided here, once.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = ["ContentDigest", "digest", "sample_offsets", "CHUNK"]

#: Bytes per chunk: RBD's default object size, so a chunk is one object read.
CHUNK = 4 << 20


@dataclass(frozen=True)
class ContentDigest:
    """An image's size and the BLAKE2b digest (128 bits) of each chunk read.

    Attributes:
        size: the image's size in bytes.
        chunk: the chunk size.
        chunks: chunk offset -> hex digest, for the chunks read (all of them, or a sample).
    """

    size: int
    chunk: int
    chunks: dict[int, str]

    @property
    def read(self) -> int:
        """Bytes read."""
        return sum(min(self.chunk, self.size - o) for o in self.chunks)

    def first_difference(self, other: ContentDigest) -> int | None:
        """The first chunk offset where the two differ (``-1``: the sizes differ), ``None`` when
        every chunk both read is equal."""
        if self.size != other.size:
            return -1
        for offset in sorted(set(self.chunks) | set(other.chunks)):
            if self.chunks.get(offset) != other.chunks.get(offset):
                return offset
        return None

    def combined(self) -> str:
        """One digest of all the chunk digests (the journal keeps this, not every chunk's)."""
        h = hashlib.blake2b(f"{self.size}:{self.chunk}".encode(), digest_size=16)
        for offset in sorted(self.chunks):
            h.update(f"{offset}={self.chunks[offset]};".encode())
        return h.hexdigest()


def sample_offsets(size: int, count: int, seed: str, chunk: int = CHUNK) -> list[int]:
    """``count`` chunk offsets of an image of ``size`` bytes, chosen at random but the same for
    the same ``seed`` (the image's name): both sites read the same chunks. The first and the
    last chunk are always in (a partition table, a file system's tail)."""
    n = (size + chunk - 1) // chunk
    if count >= n:
        return [i * chunk for i in range(n)]
    ends = {0, n - 1}
    rest = random.Random(seed).sample(range(1, max(n - 1, 1)), max(count - len(ends), 0))
    return sorted(i * chunk for i in ends | set(rest))


def digest(size: int, read: Callable[[int, int], bytes], *, chunk: int = CHUNK,
           offsets: Iterable[int] | None = None,
           throttle: Callable[[int], None] | None = None) -> ContentDigest:
    """The digest of an image of ``size`` bytes read with ``read(offset, length)``: every
    chunk, or those at ``offsets``; ``throttle(n)`` is called before each read of ``n`` bytes
    (a bandwidth limit)."""
    chunks: dict[int, str] = {}
    for offset in (range(0, size, chunk) if offsets is None else offsets):
        length = min(chunk, size - offset)
        if length <= 0:
            continue
        if throttle is not None:
            throttle(length)
        chunks[offset] = hashlib.blake2b(read(offset, length), digest_size=16).hexdigest()
    return ContentDigest(size, chunk, chunks)
