"""Step 4, site B: demote the images.

Refused for an image that A was not seen replaying from B during this failback (the promote
proof: demoting B first would leave A's old copy the one to promote), for one that a VM on B not
yet DONE uses, and for one whose exclusive lock a live client holds (a running VM, a mapped
device): demoting under a writer loses its last writes. The image's watchers are recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from ...errors import FailbackError, SafetyError, WaitTimeoutError
from ...opennebula.records import VM
from ..ledger import ImageHistory, Step, image_target
from ..safety import ImageView, Names, Refusal, promote_proof, writer_on_b
from ..waits import WRITER_RELEASED
from .base import Choice, Decision, Recorder, StepContext, StepResult

STEP = Step.DEMOTE_B


def decide(view: ImageView, history: ImageHistory, users: Iterable[VM], names: Names) -> Decision:
    """Step 4's decision for one image (``users``: the VMs on B that use it, as read now)."""
    if view.info_b is None:  # the step reads B only: A's side is not in the view
        return Decision.refuse(Refusal("image-missing", f"not a mirrored image on "
                                       f"{names.site_b} (missing, or mirroring disabled)",
                                       site=names.site_b, missing=True))
    if not view.primary_b:
        return Decision.skip("already non-primary on B")
    # Demoting B before A replays from B would leave A's old copy the only candidate for
    # primary, and B's last writes split-brained: the same proof as the promote's.
    unproven = promote_proof(names, history)
    if unproven is not None:
        return Decision.refuse(unproven)
    busy = writer_on_b(users, names)
    if busy is not None:
        return Decision.refuse(busy)
    return Decision.do("primary on B")


def effect(view: ImageView, history: ImageHistory, decision: Decision
           ) -> tuple[ImageView, ImageHistory]:
    """The state after the decision took effect."""
    if decision.choice is not Choice.DO:
        return view, history
    assert view.info_b is not None
    return (dataclasses.replace(view, info_b=dataclasses.replace(view.info_b, primary=False)),
            dataclasses.replace(history, demote_b_attempted=True))


def run(ctx: StepContext, names: Sequence[str]) -> StepResult:
    """Demote on B what :func:`decide` says to, once no live client holds the image."""
    rec = Recorder(STEP, ctx)
    pb = ctx.pool_b()
    infos = pb.infos(names)
    users: dict[str, list[int]] = {}
    for p in ctx.scope_pairs():
        for i in p.images:
            users.setdefault(i, []).append(p.vm_b.id)
    todo = []
    watchers: dict[str, list[str]] = {}
    for name in names:
        t = image_target(name)
        try:
            view = ImageView(name, None, infos.get(name))
            history = ctx.ledger.image(name)
            decision = decide(view, history, (), ctx.names)
            if decision.choice is Choice.DO and users.get(name):
                # Read the users only when the rest allows the demote (one oned call each).
                vms = [ctx.site_b.one.vm(v) for v in users[name]]
                decision = decide(view, history, vms, ctx.names)
            if decision.choice is Choice.SKIP:
                rec.skip(t, decision.reason)
                continue
            if decision.choice is Choice.REFUSE:
                rec.refuse(t, decision, image=name)
                continue
            wait_no_writer(ctx, name)
            watchers[name] = [str(w.get("addr")) for w in pb.watchers(name)]
            todo.append(name)
        except FailbackError as exc:
            rec.fail(t, exc)
    for name in todo:
        rec.intent(image_target(name), watchers=watchers[name])
    for name, r in pb.demote_many(todo).items():
        if r.ok:
            rec.done(image_target(name), "demoted on B")
        else:
            assert r.error is not None
            rec.fail(image_target(name), r.error)
    return rec.finish()


def wait_no_writer(ctx: StepContext, name: str) -> None:
    """Wait until no live client holds the image's exclusive lock on B.

    A writer (a running VM, a mapped device) owns the exclusive lock and keeps a watch on the
    image. A lock whose owner no longer watches belongs to a dead client (librbd breaks it when
    the demote takes the lock); a killed client's watch lingers until the OSD's watch timeout
    (30 s by default), hence the wait. Watchers alone are readers (rbd-mirror on A watches the
    primary it replays from in snapshot mode) and do not block."""
    pb = ctx.pool_b()

    def writers() -> list[str]:
        owners = [str(o.get("owner")) for o in pb.lock_owners(name)]
        if not owners:
            return []
        watching = {str(w.get("addr")) for w in pb.watchers(name)}
        return [o for o in owners if o in watching]

    try:
        WRITER_RELEASED.run([name], lambda _: {name: writers()}, timeouts=ctx.timeouts,
                            what=f"the writer of {name} on {ctx.site_b.name} to let go",
                            where={"site": ctx.site_b.name, "pool": ctx.pool, "image": name})
    except WaitTimeoutError as exc:
        raise SafetyError(
            f"still in use: {exc.last_seen.get(name, 'a client holds its exclusive lock')}",
            site=ctx.site_b.name, pool=ctx.pool, image=name,
            hint="stop the writer (a VM or a mapped device) that has it open") from exc
