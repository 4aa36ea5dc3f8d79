"""Waits as data, built on tenacity.

A wait polls an observation (a mirror status, a VM state...) and judges each one with a function
that answers :class:`Verdict`: ``DONE`` ends the wait successfully, ``RETRY`` polls again after the
interval, ``FAIL`` ends it at once with :class:`~ceph_failback.errors.WaitFailedError` (a terminal
failure such as split-brain or a VM in FAILED: waiting longer would not help). When the timeout runs
out, :class:`~ceph_failback.errors.WaitTimeoutError` says what was last observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

import tenacity

from .errors import WaitFailedError, WaitTimeoutError

__all__ = ["Verdict", "Judgement", "wait_until"]

T = TypeVar("T")


class Verdict(Enum):
    """What one observation means for a wait."""

    DONE = "done"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class Judgement(Generic[T]):
    """A verdict with the reason for it (shown in errors and progress)."""

    verdict: Verdict
    reason: str = ""


class _NotYet(Exception):
    def __init__(self, observation: object, reason: str) -> None:
        self.observation = observation
        self.reason = reason


def wait_until(
    observe: Callable[[], T],
    judge: Callable[[T], Judgement[T]],
    *,
    what: str,
    timeout: float,
    interval: float = 1.0,
    max_interval: float | None = None,
    describe: Callable[[T], dict[str, str]] | None = None,
    retry_on: tuple[type[BaseException], ...] = (),
    on_observation: Callable[[T, Judgement[T]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    where: dict[str, object] | None = None,
    hint: str | None = None,
) -> T:
    """Poll ``observe()`` until ``judge`` says DONE, and return that observation.

    Args:
        observe: takes one observation (may raise one of ``retry_on`` to mean "try again").
        judge: decides what an observation means.
        what: what is being waited for, in words ("VM 12 to reach DONE").
        timeout: seconds before giving up with :class:`WaitTimeoutError`.
        interval: seconds between polls; with ``max_interval`` it grows exponentially up to that.
        describe: maps an observation to ``{object: state}`` for the error's ``last_seen``.
        retry_on: exceptions from ``observe`` that count as "not yet" instead of failing the wait.
        on_observation: called with every observation and its judgement (progress reporting).
        sleep: the sleep function (tests pass a fake clock).
        where: ``site``/``pool``/``image``/``vm`` for the error messages.
        hint: what to do after a timeout (e.g. how to resume).

    Raises:
        WaitFailedError: ``judge`` answered FAIL.
        WaitTimeoutError: the timeout ran out; ``last_seen`` holds the last observation.
    """
    where = dict(where or {})
    last: dict[str, object] = {}

    def attempt() -> T:
        try:
            observation = observe()
        except retry_on as exc:
            last["error"] = exc
            raise _NotYet(None, f"{type(exc).__name__}: {exc}") from exc
        judgement = judge(observation)
        last["observation"] = observation
        last["judgement"] = judgement
        last.pop("error", None)
        if on_observation is not None:
            on_observation(observation, judgement)
        if judgement.verdict is Verdict.DONE:
            return observation
        if judgement.verdict is Verdict.FAIL:
            seen = describe(observation) if describe else {}
            detail = "; ".join(f"{k}: {v}" for k, v in seen.items())
            message = f"gave up waiting for {what}: {judgement.reason}"
            if detail:
                message += f" ({detail})"
            raise WaitFailedError(message, hint=hint, **where)  # type: ignore[arg-type]
        raise _NotYet(observation, judgement.reason)

    if max_interval is not None:
        waiter: tenacity.wait.wait_base = tenacity.wait_exponential(
            multiplier=interval, min=interval, max=max_interval
        )
    else:
        waiter = tenacity.wait_fixed(interval)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_NotYet),
        stop=tenacity.stop_after_delay(timeout),
        wait=waiter,
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except _NotYet as exc:
        seen: dict[str, str] = {}
        if "observation" in last and describe is not None:
            seen = describe(last["observation"])  # type: ignore[arg-type]
        if "error" in last:
            seen.setdefault("error", exc.reason)
        reason = f" ({exc.reason})" if exc.reason else ""
        raise WaitTimeoutError(
            f"timed out after {timeout:g}s waiting for {what}{reason}",
            last_seen=seen,
            hint=hint,
            **where,  # type: ignore[arg-type,unused-ignore]
        ) from None
