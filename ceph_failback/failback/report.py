"""The final report of a failback, built from its journal (so it survives resumption)."""

from __future__ import annotations

import statistics
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from rich.console import RenderableType

from ..opennebula.mapping import Pair
from .journal import Journal
from .ledger import Ledger, Mark, Step, image_target, vm_target
from .render import Rendered, report_view

__all__ = ["ImageOutcome", "VMOutcome", "HookOutcome", "Report", "build_report"]


@dataclass(frozen=True)
class ImageOutcome:
    """What happened to one image.

    Attributes:
        name: the image.
        demoted_a: demoted on A by this failback.
        resynced: resync requested by this failback.
        demoted_b: demoted on B by this failback.
        promoted: promoted on A by this failback (never forced).
        promote_attempts: non-forced promote attempts until librbd accepted.
        error: the last error recorded for it, if it did not finish.
        protection: after the flip, whether site B replays it from A (``replaying from A``,
            ``split-brain on B``, ``not replaying from A after ...``), as last recorded;
            ``None``: not observed (the run did not get that far).
        protected: ``True``/``False`` as that state says; ``None`` when unknown.
        verification: the last comparison of its copies (``verify=``), if any.
        verified: ``True`` equal, ``False`` different, ``None`` not compared.
    """

    name: str
    demoted_a: bool
    resynced: bool
    demoted_b: bool
    promoted: bool
    promote_attempts: int | None
    error: str | None
    protection: str | None = None
    protected: bool | None = None
    verification: str | None = None
    verified: bool | None = None

    @property
    def outcome(self) -> str:
        """``failed back``, ``failed`` or ``in progress``."""
        if self.error:
            return "failed"
        return "failed back" if self.promoted else "in progress"


@dataclass(frozen=True)
class VMOutcome:
    """What happened to one VM pair; ``downtime`` runs from the terminate request on B to the
    VM running on A (``None`` while unknown). ``group`` is its start order group (``None``: no
    group, or no order recorded); ``stopped`` and ``started`` are when it was DONE on B and
    RUNNING on A (Unix time, as the journal recorded them; ``None`` if it was not, or was
    already before the failback)."""

    vm_b: int
    vm_a: int
    images: tuple[str, ...]
    terminated: bool
    resumed: bool
    downtime: float | None
    error: str | None
    group: str | None = None
    stopped: float | None = None
    started: float | None = None
    needs_ready: bool = False
    ready: float | None = None


@dataclass(frozen=True)
class HookOutcome:
    """A hook's last outcome (``hook:<point>:<name>@<scope>``): ``done``, ``failed`` or
    ``running`` (its intent recorded, no outcome: the run stopped while it ran), with its time,
    error and policy."""

    target: str
    outcome: str
    seconds: float | None
    error: str | None
    on_error: str
    configured: bool = True  # still among the failback's hooks (one removed counts no more)


@dataclass(frozen=True)
class Report(Rendered):
    """A failback's outcome: per image, per VM (with downtime), and the runs it took."""

    pool: str
    site_a: str
    site_b: str
    images: tuple[ImageOutcome, ...]
    vms: tuple[VMOutcome, ...]
    runs: int
    wall_time: float | None
    unprotected: tuple[tuple[str, str], ...] = ()
    """Images outside the scope that no mirroring protected at the end of the last run, with
    why (:func:`~ceph_failback.failback.safety.unprotected`): the failback did not touch them."""
    hooks: tuple[HookOutcome, ...] = ()
    """The hooks run, each with its last outcome, in the order they first ran."""

    @property
    def complete(self) -> bool:
        """Every image promoted on A, every VM running on A, and no image that site B was seen
        unable to replay from A afterwards (split-brain on B, or not picked up within
        ``Timeouts.protect``: see :meth:`~ceph_failback.failback.Failback.reprotect`), and
        every VM whose start order group waits for readiness seen ready, no image whose copies
        a verification found different, and no hook with
        ``on_error="stop"`` (still configured) failed or cut off as its last outcome."""
        return (all(i.promoted and i.protected is not False and i.verified is not False
                    for i in self.images)
                and all(v.resumed and (v.ready is not None or not v.needs_ready)
                        for v in self.vms)
                and not any(h.outcome != "done" and h.on_error == "stop" and h.configured
                            for h in self.hooks))

    def order_followed(self) -> tuple[list[int], list[int]]:
        """The order actually followed: the VMs on B in the order they stopped, and the VMs on A
        in the order they started (ids), as the journal recorded it."""
        stops = sorted((v for v in self.vms if v.stopped is not None),
                       key=lambda v: v.stopped or 0.0)
        starts = sorted((v for v in self.vms if v.started is not None),
                        key=lambda v: v.started or 0.0)
        return [v.vm_b for v in stops], [v.vm_a for v in starts]

    def downtimes(self) -> list[float]:
        """Per-VM downtimes known, in seconds."""
        return [v.downtime for v in self.vms if v.downtime is not None]

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form."""
        d = self.downtimes()
        return {
            "pool": self.pool, "site_a": self.site_a, "site_b": self.site_b,
            "complete": self.complete, "runs": self.runs, "wall_time": self.wall_time,
            "unprotected": dict(self.unprotected),
            "downtime": {"median": statistics.median(d) if d else None,
                         "max": max(d) if d else None},
            "hooks": [{"target": h.target, "outcome": h.outcome, "seconds": h.seconds,
                       "error": h.error, "on_error": h.on_error} for h in self.hooks],
            "images": [{"name": i.name, "outcome": i.outcome, "resynced": i.resynced,
                        "promote_attempts": i.promote_attempts, "error": i.error,
                        "protection": i.protection, "protected": i.protected,
                        "verification": i.verification, "verified": i.verified}
                       for i in self.images],
            "vms": [{"vm_b": v.vm_b, "vm_a": v.vm_a, "images": list(v.images),
                     "resumed": v.resumed, "downtime": v.downtime, "error": v.error,
                     "group": v.group, "stopped": v.stopped, "started": v.started,
                     "needs_ready": v.needs_ready, "ready": v.ready}
                    for v in self.vms],
        }

    def view(self) -> RenderableType:
        """The report as a rich renderable (:func:`~.render.report_view`)."""
        return report_view(self)

    def __repr__(self) -> str:
        return str(self)


def build_report(journal: Journal, pairs: Sequence[Pair], images: Sequence[str], *,
                 site_a: str, site_b: str, pool: str,
                 hooks: Collection[str] | None = None) -> Report:
    """Build the report from ``journal`` for the given scope (``hooks``: the journal targets of
    the hooks configured now; ``None``: every hook the journal names)."""
    def last_error(target: str) -> str | None:
        failed = journal.last(event=Mark.FAILED, target=target)
        if failed is None:
            return None
        later_done = [r for r in journal.find(event=Mark.DONE, target=target)
                      if r.time > failed.time]
        later_skip = [r for r in journal.find(event=Mark.SKIPPED, target=target)
                      if r.time > failed.time]
        return None if (later_done or later_skip) else str(failed.data.get("error"))

    ledger = Ledger(journal)
    started = journal.last(step=Step.RUN, event=Mark.STARTED)
    groups = started.data.get("order") or [] if started else []
    group_of = {vm: str(g["name"]) for g in groups for vm in g.get("vms", [])}
    needs_ready = {vm for g in groups if g.get("ready") for vm in g.get("vms", [])}
    image_outcomes = []
    for name in images:
        t = image_target(name)
        promoted = journal.last(step=Step.PROMOTE_A, event=Mark.DONE, target=t)
        skipped = journal.last(step=Step.PROMOTE_A, event=Mark.SKIPPED, target=t)
        history = ledger.image(name)
        image_outcomes.append(ImageOutcome(
            name=name,
            demoted_a=journal.has(step=Step.DEMOTE_A, event=Mark.DONE, target=t),
            resynced=journal.has(step=Step.RESYNC_A, event=Mark.DONE, target=t),
            demoted_b=journal.has(step=Step.DEMOTE_B, event=Mark.DONE, target=t),
            promoted=promoted is not None or skipped is not None,
            promote_attempts=int(promoted.data.get("attempts", 0)) if promoted else None,
            error=last_error(t),
            protection=history.protection,
            protected=history.protected,
            verification=(check := _verification(journal, t))[0],
            verified=check[1],
        ))
    vm_outcomes = []
    for p in pairs:
        tb, ta = vm_target(site_b, p.vm_b.id), vm_target(site_a, p.vm_a.id)
        intents = journal.find(step=Step.TERMINATE_B, event=Mark.INTENT, target=tb)
        resumed = journal.last(step=Step.RESUME_A, event=Mark.DONE, target=ta)
        resumed_skip = journal.last(step=Step.RESUME_A, event=Mark.SKIPPED, target=ta)
        downtime = (resumed.time - intents[0].time) if (intents and resumed) else None
        stopped = journal.last(step=Step.TERMINATE_B, event=Mark.DONE, target=tb)
        ready = journal.last(step=Step.RESUME_A, event=Mark.READY, target=ta)
        vm_outcomes.append(VMOutcome(
            vm_b=p.vm_b.id, vm_a=p.vm_a.id, images=tuple(p.images),
            terminated=journal.has(step=Step.TERMINATE_B, event=Mark.DONE, target=tb) or bool(
                journal.last(step=Step.TERMINATE_B, event=Mark.SKIPPED, target=tb)),
            resumed=resumed is not None or resumed_skip is not None,
            downtime=downtime,
            error=last_error(tb) or last_error(ta),
            group=group_of.get(p.vm_b.id),
            stopped=stopped.time if stopped else None,
            started=resumed.time if resumed else None,
            needs_ready=p.vm_b.id in needs_ready,
            ready=ready.time if ready else None,
        ))
    runs = journal.find(step=Step.RUN, event=Mark.STARTED)
    finished = journal.last(step=Step.RUN, event=Mark.FINISHED)
    wall = (finished.time - runs[0].time) if (runs and finished) else None
    seen = journal.last(step=Step.RUN, event=Mark.OBSERVED, target="pool")
    unprotected = dict(seen.data.get("unprotected") or {}) if seen is not None else {}
    return Report(pool, site_a, site_b, tuple(image_outcomes), tuple(vm_outcomes),
                  len(journal.runs()), wall, tuple(unprotected.items()),
                  _hooks(journal, hooks))


def _verification(journal: Journal, target: str) -> tuple[str | None, bool | None]:
    last = max((r for r in (journal.last(step=Step.VERIFY, event=Mark.DONE, target=target),
                            journal.last(step=Step.VERIFY, event=Mark.FAILED, target=target))
                if r is not None), key=lambda r: r.time, default=None)
    if last is None:
        return None, None
    done = last.event == Mark.DONE
    return str(last.data.get("detail" if done else "error")), done


def _hooks(journal: Journal, configured: Collection[str] | None) -> tuple[HookOutcome, ...]:
    last: dict[str, HookOutcome] = {}
    for r in journal.find(step=Step.HOOK):
        outcome = {"intent": "running", "done": "done", "failed": "failed"}.get(r.event)
        if outcome is None:
            continue
        on_error = str(r.data.get("on_error") or (last[r.target].on_error if r.target in last
                                                  else "stop"))
        seconds = r.data.get("seconds")
        last[r.target] = HookOutcome(r.target, outcome, float(seconds) if seconds is not None
                                     else None, r.data.get("error"), on_error,
                                     configured is None or r.target in configured)
    return tuple(last.values())
