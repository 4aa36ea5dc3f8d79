"""Waits as data, built on tenacity.

A wait polls an observation (a mirror status, a VM state...) and judges each one with a function
that answers :class:`Verdict`: ``DONE`` ends the wait successfully, ``RETRY`` polls again after the
interval, ``FAIL`` ends it at once with :class:`~ceph_failback.errors.WaitFailedError` (a terminal
failure such as split-brain or a VM in FAILED: waiting longer would not help). When the timeout runs
out, :class:`~ceph_failback.errors.WaitTimeoutError` says what was last observed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

import tenacity

from .errors import WaitFailedError, WaitTimeoutError

__all__ = ["Verdict", "Judgement", "wait_until", "Acceptor", "Waiter"]

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


@dataclass(frozen=True)
class Acceptor(Generic[T]):
    """One rule of a :class:`Waiter`: when ``matcher(observation)`` holds, that target's wait
    ends with ``verdict`` (``DONE``: success; ``FAIL``: a terminal failure, the whole wait fails
    at once) for ``reason``."""

    verdict: Verdict
    matcher: Callable[[T], bool]
    reason: str


@dataclass(frozen=True)
class Waiter(Generic[T]):
    """A wait declared once, like a botocore waiter: what it waits for, per target (an image, a
    VM), its acceptors (the first that matches decides; none: poll again), which
    :class:`~ceph_failback.failback.Timeouts` field limits it, and how an observation reads in an
    error. The judge is pure: side effects (journal records, progress, the next step) belong to
    the caller's ``on_done``, called after each target's wait ended.

    Attributes:
        name: a short identifier.
        what: what is waited for, in words (``"the resynced images on A to replay from B"``).
        acceptors: the rules, in order.
        limit: the name of the :class:`~ceph_failback.failback.Timeouts` field that limits it.
        describe: an observation in words, for errors and progress.
        must_finish: ``False`` for a wait whose undecided targets are an answer, not an error
            (:meth:`run` returns them as ``None`` when the limit runs out).
    """

    name: str
    what: str
    acceptors: tuple[Acceptor[T], ...]
    limit: str
    describe: Callable[[T], str]
    must_finish: bool = True

    def judge(self, observation: T) -> Acceptor[T] | None:
        """The acceptor that decides this observation, if any."""
        return next((a for a in self.acceptors if a.matcher(observation)), None)

    def run(
        self,
        targets: Iterable[str],
        observe: Callable[[list[str]], Mapping[str, T]],
        *,
        timeouts: Any = None,
        timeout: float | None = None,
        interval: float | None = None,
        on_done: Callable[[str, T, Acceptor[T]], None] | None = None,
        on_seen: Callable[[str, T], None] | None = None,
        what: str | None = None,
        missing: str = "not listed",
        where: dict[str, object] | None = None,
        hint: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> dict[str, Acceptor[T] | None]:
        """Poll ``observe(pending targets)`` until every target is decided.

        The limit is ``timeouts.<limit>`` and the interval ``timeouts.poll`` (a
        :class:`~ceph_failback.failback.Timeouts`), unless ``timeout``/``interval`` are given.
        ``on_seen(target, observation)`` is called with every observation (progress),
        ``on_done(target, observation, acceptor)`` once per target whose wait ended well;
        ``what`` words the wait for its errors (default :attr:`what`).

        Returns each target's deciding acceptor (``None``: undecided when the limit ran out,
        only for a wait that need not finish). Raises :class:`WaitFailedError` at once when an
        acceptor says ``FAIL``, and :class:`WaitTimeoutError` when the limit runs out; both say
        what was last observed of each target still waited for (``missing`` for a target the
        observation did not hold).
        """
        if timeout is None:
            timeout = float(getattr(timeouts, self.limit))
        if interval is None:
            interval = float(getattr(timeouts, "poll", 1.0))
        pending = list(dict.fromkeys(targets))
        decided: dict[str, Acceptor[T] | None] = {}
        last: dict[str, str] = {}
        if not pending:
            return decided

        def look() -> dict[str, tuple[T | None, Acceptor[T] | None]]:
            seen = observe(list(pending))
            return {t: (seen[t], self.judge(seen[t])) if t in seen else (None, None)
                    for t in pending}

        def verdict(judged: dict[str, tuple[T | None, Acceptor[T] | None]]) -> Judgement[Any]:
            failed = [(t, a) for t, (_, a) in judged.items()
                      if a is not None and a.verdict is Verdict.FAIL]
            if failed:
                return Judgement(Verdict.FAIL, f"{failed[0][0]}: {failed[0][1].reason}")
            left = [t for t, (_, a) in judged.items() if a is None]
            return Judgement(Verdict.DONE if not left else Verdict.RETRY,
                             f"{len(left)} of {len(judged)} not yet")

        def settle(judged: dict[str, tuple[T | None, Acceptor[T] | None]],
                   _: Judgement[Any]) -> None:
            for target, (obs, acceptor) in judged.items():
                last[target] = self.describe(obs) if obs is not None else missing
                if obs is not None and on_seen is not None:
                    on_seen(target, obs)
                if acceptor is not None and acceptor.verdict is Verdict.DONE:
                    pending.remove(target)
                    decided[target] = acceptor
                    if on_done is not None:
                        assert obs is not None
                        on_done(target, obs, acceptor)

        try:
            wait_until(look, verdict, what=what or self.what, timeout=timeout, interval=interval,
                       describe=lambda _: {t: last.get(t, "?") for t in pending},
                       on_observation=settle, sleep=sleep, where=where, hint=hint)
        except WaitTimeoutError:
            if self.must_finish:
                raise
            decided.update({t: None for t in pending})
        return decided
