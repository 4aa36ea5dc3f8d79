"""Step 5, site A: promote the images, never forced.

Before promoting, the image must be demoted on B and proven to have replayed from B during this
failback (:func:`~ceph_failback.failback.safety.promote_proof`, the stale-promote trap). In
snapshot mode A's newest mirror snapshot must also be the complete copy of B's demotion
snapshot. Then the non-forced promote is retried while librbd says the demotion has not arrived.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ...errors import NotReadyError, SafetyError
from ...waiting import Judgement, wait_until
from ...waiting import Verdict as WaitVerdict
from ..ledger import ImageHistory, Step, image_target
from ..safety import (
    FORCE_PROMOTE,
    ImageView,
    Names,
    already_home,
    image_missing,
    promotable,
    promote_proof,
)
from ..waits import DEMOTION_COPIED, PEER_REGISTERED, Registered, Snapshotted
from .base import (
    Choice,
    Decision,
    Recorder,
    StepContext,
    StepResult,
    guarded,
    parallel,
    registered_in_a,
)

STEP = Step.PROMOTE_A


def decide(view: ImageView, history: ImageHistory, names: Names) -> Decision:
    """Step 5's decision for one image (``view`` with A's status)."""
    if view.info_a is None or view.info_b is None:
        # Not even an image being recreated by a resync can be promoted.
        missing = image_missing(view, names, ImageHistory(view.name))
        assert missing is not None
        return Decision.refuse(missing)
    if already_home(view):
        return Decision.skip("already primary on A")
    for refusal in (promotable(view, names), promote_proof(names, history)):
        if refusal is not None:
            return Decision.refuse(refusal)
    return Decision.do("non-forced, after proving A replayed B")


def effect(view: ImageView, history: ImageHistory, decision: Decision
           ) -> tuple[ImageView, ImageHistory]:
    """The state after the decision took effect."""
    if decision.choice is not Choice.DO:
        return view, history
    assert view.info_a is not None
    return (dataclasses.replace(view, info_a=dataclasses.replace(view.info_a, primary=True)),
            dataclasses.replace(history, promoted_at="(planned)"))


def run(ctx: StepContext, names: Sequence[str]) -> StepResult:
    """Promote on A what :func:`decide` says to."""
    rec = Recorder(STEP, ctx)
    parallel(names, lambda n: guarded(rec, image_target(n), lambda: _one(ctx, rec, n)),
             ctx.concurrency)
    return rec.finish()


def _one(ctx: StepContext, rec: Recorder, name: str) -> None:
    t = image_target(name)
    pa, pb = ctx.pool_a(), ctx.pool_b()
    infos_a, infos_b = pa.infos([name]), pb.infos([name])
    view = ImageView(name, infos_a.get(name), infos_b.get(name))
    history = ctx.ledger.image(name)
    decision = decide(view, history, ctx.names)
    if decision.choice is Choice.DO:
        # Split-brain is read only when every other rule allows the promote.
        view = dataclasses.replace(view, status_a=pa.status(name))
        decision = decide(view, history, ctx.names)
    if decision.choice is Choice.SKIP:
        rec.skip(t, decision.reason)
        return
    if decision.choice is Choice.REFUSE:
        assert decision.refusal is not None
        raise decision.refusal.error(pool=ctx.pool, image=name)
    if view.mode == "snapshot":
        wait_demotion_copied(ctx, name)
    else:
        wait_peer_registered(ctx, name)
    rec.intent(t)
    attempts = [0]

    def attempt() -> bool:
        attempts[0] += 1
        pa.promote(name, force=FORCE_PROMOTE)
        return True

    # Journal mode: step 3 does not wait for A to catch up (see terminate_b.wait_mirrored);
    # this wait does, so it may take as long as the mirroring wait.
    limit = (ctx.timeouts.promote if view.mode == "snapshot"
             else max(ctx.timeouts.promote, ctx.timeouts.mirror))
    wait_until(attempt, lambda _: Judgement(WaitVerdict.DONE),
               what=f"a non-forced promote of {name} to be accepted",
               timeout=limit, interval=min(0.25, ctx.timeouts.poll),
               retry_on=(NotReadyError,),
               where={"site": ctx.site_a.name, "pool": ctx.pool, "image": name},
               hint="rbd-mirror on A has not replayed B's demotion yet; run again")
    rec.done(t, "promoted on A (not forced)", attempts=attempts[0], force=FORCE_PROMOTE)


def wait_demotion_copied(ctx: StepContext, name: str) -> None:
    """Snapshot mode: wait until A's newest mirror snapshot is the complete copy of B's
    demotion snapshot (what Ceph's QA checks with ``rbd snap ls --all``)."""
    pa, pb = ctx.pool_a(), ctx.pool_b()
    b_uuid = pb.mirror_uuid(name)
    b_snaps = pb.mirror_snapshots(name)
    if not b_snaps or b_snaps[-1].state != "primary-demoted":
        raise SafetyError("B's newest mirror snapshot is not its demotion",
                          site=ctx.site_b.name, pool=ctx.pool, image=name)
    demotion = b_snaps[-1].id

    def observe(_: list[str]) -> dict[str, Snapshotted]:
        snaps = pa.mirror_snapshots(name)
        return {name: Snapshotted(snaps[-1] if snaps else None, demotion, b_uuid)}

    DEMOTION_COPIED.run([name], observe, timeouts=ctx.timeouts,
                        interval=min(0.5, ctx.timeouts.poll),
                        what=f"B's demotion snapshot of {name} to be copied to A",
                        where={"site": ctx.site_a.name, "pool": ctx.pool, "image": name})


def wait_peer_registered(ctx: StepContext, name: str) -> None:
    """Journal mode: wait until B's rbd-mirror is registered in A's journal of the image
    (rule :func:`~ceph_failback.failback.safety.peer_unregistered`): promoted before, A would
    leave B split-brained. At most one rbd-mirror image check on B
    (``rbd_mirror_image_state_check_interval``) when it is not yet."""
    pb = ctx.pool_b()
    b_uuid = pb.mirror_uuid(name)

    def observe(_: list[str]) -> dict[str, Registered]:
        return {name: registered_in_a(ctx, name, b_uuid)}

    PEER_REGISTERED.run([name], observe, timeouts=ctx.timeouts,
                        interval=min(0.5, ctx.timeouts.poll),
                        what=f"{ctx.site_b.name}'s rbd-mirror to register in "
                             f"{ctx.site_a.name}'s journal of {name}",
                        where={"site": ctx.site_a.name, "pool": ctx.pool, "image": name},
                        hint=f"{ctx.site_b.name}'s rbd-mirror registers when it next checks "
                             "the image (rbd_mirror_image_state_check_interval); check that it "
                             f"runs and has {ctx.site_a.name} as its peer, then run again")

