"""Step 1, site A: demote the images that are primary there.

An image already non-primary on A (a DR test demotes A before failing over) is skipped, and so is
one that is home already (primary on A only: demoting it would leave no primary)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..ledger import ImageHistory, Step, image_target
from ..safety import ImageView, Names, already_home, being_recreated, image_missing
from .base import Choice, Decision, Recorder, StepContext, StepResult

STEP = Step.DEMOTE_A


def decide(view: ImageView, history: ImageHistory, names: Names) -> Decision:
    """Step 1's decision for one image."""
    if being_recreated(view, history):
        return Decision.skip("being recreated by this failback's resync")
    missing = image_missing(view, names, history)
    if missing is not None:
        return Decision.refuse(missing)
    if not view.primary_a:
        return Decision.skip("already non-primary on A")
    if already_home(view):
        return Decision.skip("primary on A and not on B: already home")
    return Decision.do("primary on A")


def effect(view: ImageView, history: ImageHistory, decision: Decision
           ) -> tuple[ImageView, ImageHistory]:
    """The state after the decision took effect (what the plan assumes of later steps)."""
    if decision.choice is not Choice.DO:
        return view, history
    assert view.info_a is not None
    return (dataclasses.replace(view, info_a=dataclasses.replace(view.info_a, primary=False)),
            dataclasses.replace(history, demoted_a=True))


def run(ctx: StepContext, names: Sequence[str]) -> StepResult:
    """Demote on A what :func:`decide` says to."""
    rec = Recorder(STEP, ctx)
    infos_a, infos_b = ctx.pool_a().infos(names), ctx.pool_b().infos(names)
    todo = []
    for name in names:
        t = image_target(name)
        view = ImageView(name, infos_a.get(name), infos_b.get(name))
        decision = decide(view, ctx.ledger.image(name), ctx.names)
        if decision.choice is Choice.DO:
            todo.append(name)
        elif decision.choice is Choice.REFUSE:
            rec.refuse(t, decision, image=name)
        else:
            rec.skip(t, decision.reason)
    for name in todo:
        rec.intent(image_target(name), before="primary")
    for name, r in ctx.pool_a().demote_many(todo).items():
        if r.ok:
            rec.done(image_target(name), "demoted on A", was_primary=True)
        else:
            assert r.error is not None
            rec.fail(image_target(name), r.error)
    return rec.finish()
