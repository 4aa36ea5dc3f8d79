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

from ...ceph.rbd_journal import ReplayEpoch
from ...errors import FailbackError
from ..epochs import read_protection_epochs
from ..ledger import ImageHistory, Mark, Step, image_target
from ..safety import (
    REPLAYING_FROM_A,
    SPLIT_BRAIN_ON_B,
    ImageView,
    Names,
    protection_proof,
    reprotect_proof,
)
from ..waits import RESYNCED, Resynced
from .base import Choice, Decision, Recorder, StepContext, StepResult

STEP = Step.REPROTECT


def decide(view: ImageView, history: ImageHistory, names: Names,
           epoch: ReplayEpoch | None = None) -> Decision:
    """The decision for one image (``view`` with A's and B's infos and B's status; ``epoch``:
    journal mode, both journals read as B replaying A, for
    :func:`~ceph_failback.failback.safety.protection_proof`)."""
    refusal = reprotect_proof(view, history, names)
    if refusal is not None:
        return Decision.refuse(refusal)
    status = view.status_b
    if status is not None and status.is_split_brain():
        return Decision.do(f"split-brain on {names.site_b}: resync it from {names.site_a}")
    if protection_proof(status, epoch) is not None:
        return Decision.skip(f"{names.site_b} replays it from {names.site_a}")
    if status is None:
        return Decision.skip(f"no mirror status on {names.site_b}: nothing to decide")
    return Decision.skip(f"not split-brained on {names.site_b} ({status.local.summary()}): "
                         f"nothing to resync; if it stays so, check {names.site_b}'s rbd-mirror")


def views_of(ctx: StepContext, names: Sequence[str]
             ) -> tuple[dict[str, ImageView], dict[str, ReplayEpoch]]:
    """Each image's view (A's and B's infos and B's status) and, journal mode, both journals
    read as B replaying A (none where they cannot be read: B's status decides), read now."""
    infos_a = ctx.pool_a().infos(names)
    infos_b, statuses_b = ctx.pool_b().overview(names)
    epochs = read_protection_epochs(ctx.pool_a(), ctx.pool_b(), names, infos_a, infos_b)
    return {name: ImageView(name, infos_a.get(name), infos_b.get(name), None,
                            statuses_b.get(name)) for name in names}, epochs


def preview(ctx: StepContext, names: Sequence[str]) -> dict[str, Decision]:
    """What :func:`run` would do now, per image (changes nothing)."""
    views, epochs = views_of(ctx, names)
    return {name: decide(view, ctx.ledger.image(name), ctx.names, epochs.get(name))
            for name, view in views.items()}


def _state(view: ImageView, epoch: ReplayEpoch | None) -> tuple[str, bool] | None:
    """The protection state to record for an image left alone (``None``: nothing to say).

    A split seen here is recorded in other words than the run's check's
    (:data:`~ceph_failback.failback.safety.SPLIT_BRAIN_ON_B`), which the rule reads as "seen
    by this failback's check": a split found by a refused reprotect must not become one."""
    status = view.status_b
    if status is not None and status.is_split_brain():
        return f"{SPLIT_BRAIN_ON_B}, not resynced (reprotect refused it)", False
    if protection_proof(status, epoch) is not None:
        return REPLAYING_FROM_A, True
    if status is None:
        return None
    return f"not replaying from A ({status.local.summary()})", False


def run(ctx: StepContext, names: Sequence[str]) -> StepResult:
    """Resync on B what :func:`decide` says to, then wait until B replays it from A."""
    rec = Recorder(STEP, ctx)
    pb = ctx.pool_b()
    todo: list[str] = []
    views, epochs = views_of(ctx, names)
    for name, view in views.items():
        history = ctx.ledger.image(name)
        decision = decide(view, history, ctx.names, epochs.get(name))
        if decision.choice is Choice.DO:
            todo.append(name)
            continue
        if decision.choice is Choice.REFUSE:
            rec.refuse(image_target(name), decision, image=name)
        else:
            rec.skip(image_target(name), decision.reason)
        state = _state(view, epochs.get(name))
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
