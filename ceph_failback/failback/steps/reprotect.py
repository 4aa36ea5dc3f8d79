"""After the failback (not one of the documented steps): restore protection where site B cannot
replay an image from A.

Once A is promoted, B's rbd-mirror replays each image from A. If B reports split-brain instead
(its copy diverged), nothing protects the image until B's copy is resynced from A. That resync
discards B's copy, so it is done only under :func:`~ceph_failback.failback.safety.reprotect_proof`
(A primary, B not, this failback promoted A, and its own check after the flip saw the split), and
only for a split-brained B whose split this failback's own check saw, and that no check ever saw
replaying from A. It then waits until B replays from A (the new copy's image id proves the status
is the new copy's). Each failed-back image it leaves alone, refused ones included, gets its present
state recorded, so the report follows B (a B that caught up since the run's check is then
protected; a B that split later shows as split and unprotected).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ...errors import FailbackError
from ..ledger import ImageHistory, Mark, Step, image_target
from ..safety import (
    REPLAYING_FROM_A,
    SPLIT_BRAIN_ON_B,
    ImageView,
    Names,
    replays_from_a,
    reprotect_proof,
)
from ..waits import RESYNCED, Resynced
from .base import Choice, Decision, Recorder, StepContext, StepResult

STEP = Step.REPROTECT


def decide(view: ImageView, history: ImageHistory, names: Names) -> Decision:
    """The decision for one image (``view`` with A's and B's infos and B's status)."""
    refusal = reprotect_proof(view, history, names)
    if refusal is not None:
        return Decision.refuse(refusal)
    status = view.status_b
    if status is None:
        return Decision.skip(f"no mirror status on {names.site_b}: nothing to decide")
    if status.is_split_brain():
        return Decision.do(f"split-brain on {names.site_b}: resync it from {names.site_a}")
    if replays_from_a(status):
        return Decision.skip(f"{names.site_b} replays it from {names.site_a}")
    return Decision.skip(f"not split-brained on {names.site_b} ({status.local.summary()}): "
                         f"nothing to resync; if it stays so, check {names.site_b}'s rbd-mirror")


def views_of(ctx: StepContext, names: Sequence[str]) -> dict[str, ImageView]:
    """Each image's view: A's and B's infos and B's status, read now."""
    infos_a = ctx.pool_a().infos(names)
    infos_b, statuses_b = ctx.pool_b().overview(names)
    return {name: ImageView(name, infos_a.get(name), infos_b.get(name), None,
                            statuses_b.get(name)) for name in names}


def preview(ctx: StepContext, names: Sequence[str]) -> dict[str, Decision]:
    """What :func:`run` would do now, per image (changes nothing)."""
    return {name: decide(view, ctx.ledger.image(name), ctx.names)
            for name, view in views_of(ctx, names).items()}


def _state(view: ImageView) -> tuple[str, bool] | None:
    """The protection state to record for an image left alone (``None``: nothing to say).

    A split seen here is recorded in other words than the run's check's
    (:data:`~ceph_failback.failback.safety.SPLIT_BRAIN_ON_B`), which the rule reads as "seen
    by this failback's check": a split found by a refused reprotect must not become one."""
    status = view.status_b
    if status is None:
        return None
    if status.is_split_brain():
        return f"{SPLIT_BRAIN_ON_B}, not resynced (reprotect refused it)", False
    if replays_from_a(status):
        return REPLAYING_FROM_A, True
    return f"not replaying from A ({status.local.summary()})", False


def run(ctx: StepContext, names: Sequence[str]) -> StepResult:
    """Resync on B what :func:`decide` says to, then wait until B replays it from A."""
    rec = Recorder(STEP, ctx)
    pb = ctx.pool_b()
    todo: list[str] = []
    views = views_of(ctx, names)
    for name, view in views.items():
        history = ctx.ledger.image(name)
        decision = decide(view, history, ctx.names)
        if decision.choice is Choice.DO:
            todo.append(name)
            continue
        if decision.choice is Choice.REFUSE:
            rec.refuse(image_target(name), decision, image=name)
        else:
            rec.skip(image_target(name), decision.reason)
        state = _state(view)
        if state is not None and history.promoted_at is not None:
            ctx.ledger.write(Step.RUN, Mark.PROTECTION, image_target(name), state=state[0],
                             protected=state[1])
    now = time.time()
    before = {n: (info.image_id if (info := views[n].info_b) is not None else None) for n in todo}
    for name in todo:
        rec.intent(image_target(name), image_id=before[name])
    waiting: dict[str, tuple[float, str | None]] = {}
    for name, r in pb.resync_many(todo).items():
        if r.ok:
            rec.done(image_target(name), f"resync requested on {ctx.site_b.name}")
            waiting[name] = (now, before[name])
        else:
            assert r.error is not None
            rec.fail(image_target(name), r.error)

    def observe(pending: list[str]) -> dict[str, Resynced]:
        statuses, infos = pb.statuses(pending), pb.infos(pending)
        return {n: Resynced(statuses[n], *waiting[n],
                            image_id=info.image_id if (info := infos.get(n)) else None)
                for n in pending if n in statuses}

    def done(name: str, _: Resynced, __: object) -> None:
        ctx.ledger.write(Step.RUN, Mark.PROTECTION, image_target(name),
                         state=f"{REPLAYING_FROM_A} (reprotected)", protected=True)

    if waiting:
        try:
            RESYNCED.run(waiting, observe, timeouts=ctx.timeouts, on_done=done,
                         what=f"the resynced images on {ctx.site_b.name} to replay from "
                              f"{ctx.site_a.name}", missing="being recreated (not listed)",
                         where={"site": ctx.site_b.name, "pool": ctx.pool},
                         hint="the resync goes on in rbd-mirror; call reprotect() again later "
                              "(a copy being recreated is no longer split-brained: it is not "
                              "resynced again)")
        except FailbackError as exc:
            for name in waiting:
                if not ctx.ledger.journal.last(step=Step.RUN, event=Mark.PROTECTION,
                                               target=image_target(name)):
                    rec.fail(image_target(name), exc)
    return rec.finish()
