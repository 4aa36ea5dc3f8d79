"""What every step shares: its decision type, its result, and how it records outcomes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import RenderableType

from ...errors import CephError, FailbackError, StepFailedError
from ..events import Emitter, EventKind
from ..ledger import STEP_TITLES, Ledger, Mark, Step
from ..render import Rendered, step_result_view, to_text
from ..safety import Names, Refusal
from ..waits import Registered

_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from ...ceph.seams import MirrorSide
    from ...opennebula.mapping import Pair
    from ...opennebula.records import VM
    from ...opennebula.seams import CloudSite
    from ..core import Site, Timeouts
    from ..order import StartOrder

__all__ = ["Choice", "Decision", "StepResult", "Recorder", "StepContext", "STEP_TITLES",
           "parallel", "read_vms", "registered_in_a"]


class Choice(StrEnum):
    """What a step decides for one target."""

    DO = "do"  # act now
    SKIP = "skip"  # already in the wanted state (or not this step's business)
    REFUSE = "refuse"  # a safety rule objects: leave it untouched, record a failure
    WAIT = "wait"  # an action this failback already made is under way: wait for its outcome
    SETTLE = "settle"  # (step 2) no proof yet: wait for one, act if none comes in time


@dataclass(frozen=True)
class Decision:
    """A step's decision for one target, with the reason in words.

    Attributes:
        choice: what to do.
        reason: why, as the plan and the journal show it.
        refusal: the objecting rule, for ``REFUSE``.
        proof: (step 2) the replay proof the observation carries, to record on ``SKIP``.
    """

    choice: Choice
    reason: str = ""
    refusal: Refusal | None = None
    proof: str | None = None

    @property
    def acts(self) -> bool:
        """The plan's "do": the step will (or, for ``SETTLE``, may) change the target."""
        return self.choice in (Choice.DO, Choice.SETTLE)

    @classmethod
    def do(cls, reason: str) -> Decision:
        """Act on the target."""
        return cls(Choice.DO, reason)

    @classmethod
    def skip(cls, reason: str, *, proof: str | None = None) -> Decision:
        """Leave the target alone."""
        return cls(Choice.SKIP, reason, proof=proof)

    @classmethod
    def refuse(cls, refusal: Refusal) -> Decision:
        """A rule objects."""
        return cls(Choice.REFUSE, refusal.message, refusal)

    @classmethod
    def wait(cls, reason: str) -> Decision:
        """Wait for an action already made."""
        return cls(Choice.WAIT, reason)

    @classmethod
    def settle(cls, reason: str) -> Decision:
        """Wait for a proof; act if none comes."""
        return cls(Choice.SETTLE, reason)


@dataclass
class StepResult(Rendered):
    """What one step call did: per target, ``done``, ``skipped`` or ``failed``, with the reason."""

    step: str
    outcomes: dict[str, tuple[str, str]] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, target: str, outcome: str, reason: str = "") -> None:
        """Record one target's outcome."""
        self.outcomes[target] = (outcome, reason)

    @property
    def done(self) -> list[str]:
        """Targets acted on."""
        return [t for t, (o, _) in self.outcomes.items() if o == "done"]

    @property
    def skipped(self) -> list[str]:
        """Targets left alone (already in the wanted state)."""
        return [t for t, (o, _) in self.outcomes.items() if o == "skipped"]

    @property
    def failed(self) -> dict[str, str]:
        """Targets that failed, with the error."""
        return {t: r for t, (o, r) in self.outcomes.items() if o == "failed"}

    def __str__(self) -> str:
        return (f"{self.step}: {len(self.done)} done, {len(self.skipped)} skipped, "
                f"{len(self.failed)} failed in {self.seconds:.1f}s")

    def view(self) -> RenderableType:
        """Each target's outcome as a rich renderable (:func:`~..render.step_result_view`);
        ``str()`` stays the one-line summary."""
        return step_result_view(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(to_text(self.view()))


class StepContext(Protocol):
    """What a step's execution needs from the :class:`~ceph_failback.failback.Failback` that
    runs it (the facade provides it)."""

    site_a: Site
    site_b: Site
    pool: str
    timeouts: Timeouts
    events: Emitter
    ledger: Ledger
    concurrency: int
    vm_concurrency: int
    hard_terminate_after: float | None
    waive: frozenset[str]

    @property
    def names(self) -> Names: ...

    def pool_a(self) -> MirrorSide: ...

    def pool_b(self) -> MirrorSide: ...

    def scope_pairs(self) -> Sequence[Pair]: ...

    def start_order(self) -> StartOrder: ...

    def daemon_a_ok(self) -> bool: ...

    def require_daemon_a(self, what: str) -> None: ...

    def fence(self) -> None: ...


class Recorder:
    """One step call's outcomes, written to its :class:`StepResult`, the journal and the
    progress events alike (so the three never disagree)."""

    def __init__(self, step: Step, ctx: StepContext) -> None:
        self.step = step
        self.ctx = ctx
        self.result = StepResult(step.value)
        self.started = time.monotonic()
        ctx.events.emit(EventKind.STEP_STARTED, STEP_TITLES[step], step=step.value)
        ctx.ledger.write(step, Mark.STARTED)

    def intent(self, target: str, **data: Any) -> None:
        """Written before the action: a crash after it leaves the outcome unknown, not lost.
        A run whose lock was broken stops here (:meth:`~ceph_failback.failback.Failback.fence`)."""
        self.ctx.fence()
        self.ctx.ledger.write(self.step, Mark.INTENT, target, **data)

    def observed(self, target: str, **data: Any) -> None:
        """A fact seen (not an action)."""
        self.ctx.ledger.write(self.step, Mark.OBSERVED, target, **data)

    def skip(self, target: str, reason: str) -> None:
        """The target is left alone."""
        self.result.add(target, "skipped", reason)
        self.ctx.ledger.write(self.step, Mark.SKIPPED, target, reason=reason)
        self.ctx.events.emit(EventKind.ACTION, f"{target}: skipped ({reason})",
                             step=self.step.value, target=target, outcome="skipped")

    def done(self, target: str, reason: str = "", **data: Any) -> None:
        """The action took effect."""
        self.result.add(target, "done", reason)
        self.ctx.ledger.write(self.step, Mark.DONE, target, reason=reason, **data)
        self.ctx.events.emit(EventKind.ACTION, f"{target}: {reason or 'done'}",
                             step=self.step.value, target=target, outcome="done")

    def fail(self, target: str, exc: BaseException) -> None:
        """The target failed (or was refused); the others go on."""
        self.result.add(target, "failed", str(exc))
        self.ctx.ledger.write(self.step, Mark.FAILED, target, error=str(exc),
                              error_type=type(exc).__name__)
        self.ctx.events.emit(EventKind.WARNING, f"{target}: FAILED: {exc}", step=self.step.value,
                             target=target, outcome="failed")

    def refuse(self, target: str, decision: Decision, *, image: str | None = None,
               vm: int | None = None) -> None:
        """Record a ``REFUSE`` decision as the target's failure."""
        assert decision.refusal is not None
        self.fail(target, decision.refusal.error(pool=self.ctx.pool, image=image, vm=vm))

    def finish(self) -> StepResult:
        """Close the step; raise :class:`StepFailedError` if any target failed."""
        result = self.result
        result.seconds = time.monotonic() - self.started
        self.ctx.ledger.write(self.step, Mark.FINISHED, done=result.done, skipped=result.skipped,
                              failed=result.failed)
        self.ctx.events.emit(EventKind.STEP_FINISHED, str(result), step=result.step,
                             done=result.done, skipped=result.skipped, failed=result.failed)
        if result.failed:
            raise StepFailedError(
                f"step {result.step} failed for {len(result.failed)} target(s)",
                failures=result.failed, pool=self.ctx.pool,
                hint="fix the cause and call the step (or run()) again: finished work is skipped")
        return result


def parallel(items: Sequence[Any], fn: Callable[[Any], None], workers: int) -> None:
    """``fn`` on each item, ``workers`` at a time; the first exception is raised after all ran."""
    if not items:
        return
    with ThreadPoolExecutor(max(1, min(workers, len(items))), thread_name_prefix="failback") as ex:
        for future in [ex.submit(fn, i) for i in items]:
            future.result()


def guarded(recorder: Recorder, target: str, fn: Callable[[], None]) -> None:
    """Run one target's work; a :class:`FailbackError` becomes that target's failure."""
    try:
        fn()
    except FailbackError as exc:
        recorder.fail(target, exc)


def read_vms(one: CloudSite, ids: Sequence[int]) -> list[VM]:
    """The VMs with these ids as the site shows them now: one by one for a few, else in one
    ``vms_by_id`` call (a VM it leaves out is read by itself, which raises if it is gone)."""
    if len(ids) <= 3:
        return [one.vm(i) for i in ids]
    found = {vm.id: vm for vm in one.vms_by_id(ids)}
    return [found.get(i) or one.vm(i) for i in ids]


def registered_in_a(ctx: StepContext, name: str, b_uuid: str) -> Registered:
    """A's journal header of the image, read now, against B's mirror uuid (a header that cannot
    be read is not known yet: waits go on until it is)."""
    try:
        return Registered(ctx.pool_a().journal_header(name), b_uuid, ctx.names)
    except CephError as exc:
        _log.debug("cannot read %s's journal of %s: %s", ctx.site_a.name, name, exc)
        return Registered(None, b_uuid, ctx.names, error=str(exc))
