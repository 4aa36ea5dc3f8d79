"""Helpers for lab tests: polling real statuses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

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
