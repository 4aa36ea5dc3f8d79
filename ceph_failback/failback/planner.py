"""The plan, computed from observations by the steps' own decisions.

:func:`build_plan` is pure: given what both sites show now (:class:`~.safety.ImageView` per
image, the VM pairs as OpenNebula shows them) and what the journal says, it runs each step's
``decide`` in the documented order, each on the state the earlier steps' decisions leave (their
``effect``): step 4 sees the VMs that step 3 stops as DONE, step 5 sees the images step 4 demotes
as demoted, and so on. So the plan shows what the steps will do, and a step that would refuse a
target shows up in the plan as a blocker of that kind, before anything changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..opennebula.mapping import Pair
from ..opennebula.records import VM
from .ledger import ImageHistory, image_target, vm_target
from .order import NO_ORDER, StartOrder
from .plan import Action, Blocker, ImagePlan, Plan, VMPlan
from .safety import ImageView, Names, image_missing, no_primary, split_brain_on_b, stale_journal
from .scope import WAIVABLE
from .steps import demote_a, demote_b, promote_a, resume_a, resync_a, terminate_b
from .steps.base import Choice, Decision

__all__ = ["build_plan", "image_blockers"]


def image_blockers(view: ImageView, history: ImageHistory, names: Names) -> list[Blocker]:
    """The rules that stop the whole failback for one image (before any step decides)."""
    found = []
    for rule in (image_missing, split_brain_on_b, stale_journal, no_primary):
        refusal = rule(view, names, history)
        if refusal is not None:
            found.append(Blocker(refusal.kind, image_target(view.name), refusal.message))
            if rule is not no_primary:
                break  # the image is unusable: later rules would only repeat it
    return found


def build_plan(
    names: Names,
    views: Sequence[ImageView],
    histories: Mapping[str, ImageHistory],
    pairs: Sequence[Pair],
    *,
    blockers: Sequence[Blocker] = (),
    warnings: Sequence[str] = (),
    waived: frozenset[str] = frozenset(),
    order: StartOrder = NO_ORDER,
) -> Plan:
    """The plan for ``views`` (the images in scope, with both sites' infos and statuses) and
    ``pairs`` (the VM pairs in scope, with the VMs' present states), in the start ``order``
    (step 3 decides B's VMs last group first, step 6 A's first group first, each on the state
    the groups decided before it leave). ``blockers`` and ``warnings`` found elsewhere (the
    mapping, the daemons, the lock, the order) are added as given."""
    found: list[Blocker] = list(blockers)
    state = {v.name: (v, histories[v.name]) for v in views}
    image_acts: dict[str, list[Action]] = {v.name: [] for v in views}
    vm_acts: dict[int, list[Action]] = {i: [] for i in range(len(pairs))}
    blocked: set[str] = set()  # images a rule stopped: no step decides them

    def note(step: str, target: str, decision: Decision, acts: list[Action]) -> bool:
        if decision.choice is Choice.REFUSE:
            assert decision.refusal is not None
            kind = decision.refusal.kind
            found.append(Blocker(kind, target, decision.refusal.message,
                                 waivable=kind in WAIVABLE))
            return False
        acts.append(Action(step, target, decision.acts, decision.reason))
        return True

    for view in views:
        for b in image_blockers(view, histories[view.name], names):
            found.append(b)
            blocked.add(view.name)

    def image_step(module: object, step: str) -> None:
        for name, (view, history) in list(state.items()):
            if name in blocked:
                continue
            decision = module.decide(view, history, names)  # type: ignore[attr-defined]
            if note(step, image_target(name), decision, image_acts[name]):
                state[name] = module.effect(view, history, decision)  # type: ignore[attr-defined]
            else:
                blocked.add(name)

    image_step(demote_a, "demote_a")
    image_step(resync_a, "resync_a")

    # A VM whose image is stopped by a rule is not decided: it cannot be failed back.
    vm_b_after: dict[int, VM] = {}
    index_of = {p.vm_b.id: i for i, p in enumerate(pairs)}
    live = [i for i, p in enumerate(pairs) if not blocked & set(p.images)]
    alive = set(live)
    for index in _in_order(order, pairs, alive, stopping=True):
        pair = pairs[index]
        images = [state[i] for i in pair.images if i in state]
        target = vm_target(names.site_b, pair.vm_b.id)
        later = [vm_b_after.get(index_of[v], pairs[index_of[v]].vm_b)
                 for v in order.stops_after(pair.vm_b.id) if v in index_of]
        decision = terminate_b.decide(pair.vm_b, images, names, later=later)
        refusal = decision.refusal
        if refusal is not None and refusal.kind in WAIVABLE and refusal.kind in waived:
            # Shown as waived, and the step goes on.
            found.append(Blocker(refusal.kind, target, refusal.message, waivable=True))
            decision = terminate_b.decide(pair.vm_b, images, names, waived, later)
        if note("terminate_b", target, decision, vm_acts[index]):
            vm_b_after[index] = (pair.vm_b if decision.choice is Choice.SKIP else
                                 VM(pair.vm_b.id, pair.vm_b.name, "DONE", "LCM_INIT",
                                    pair.vm_b.disks))

    users: dict[str, list[VM]] = {}
    held: set[str] = set()  # images of a VM that will not be stopped: steps 4-5 cannot come
    for index, pair in enumerate(pairs):
        for name in pair.images:
            users.setdefault(name, []).append(vm_b_after.get(index, pair.vm_b))
        if index not in vm_b_after:
            held |= set(pair.images)
    blocked |= held  # the VM's (or its other image's) blocker says why
    for name, (view, history) in list(state.items()):
        if name in blocked:
            continue
        decision = demote_b.decide(view, history, users.get(name, ()), names)
        if note("demote_b", image_target(name), decision, image_acts[name]):
            state[name] = demote_b.effect(view, history, decision)
        else:
            blocked.add(name)
    image_step(promote_a, "promote_a")

    vm_a_after: dict[int, VM] = {}
    for index in _in_order(order, pairs, alive, stopping=False):
        pair = pairs[index]
        if index not in vm_b_after or blocked & set(pair.images):
            continue
        infos_a = {i: state[i][0].info_a for i in pair.images if i in state}
        earlier = [(vm_a_after.get(index_of[v], pairs[index_of[v]].vm_a), order.needs_ready(v))
                   for v in order.starts_after(pair.vm_b.id) if v in index_of]
        decision = resume_a.decide(pair.vm_a, pair.images, infos_a, names, earlier)
        if note("resume_a", vm_target(names.site_a, pair.vm_a.id), decision, vm_acts[index]):
            vm_a_after[index] = resume_a.effect(pair.vm_a, decision)

    deduped = list({(b.kind, b.target): b for b in found}.values())
    return Plan(
        names.pool, names.site_a, names.site_b,
        tuple(ImagePlan(v.name, v.mode, v.status_a, v.status_b, tuple(image_acts[v.name]))
              for v in views),
        tuple(VMPlan(p.vm_b, p.vm_a, p.images, tuple(vm_acts[i])) for i, p in enumerate(pairs)),
        tuple(deduped), tuple(warnings), waived, order)


def _in_order(order: StartOrder, pairs: Sequence[Pair], chosen: set[int], *,
              stopping: bool) -> list[int]:
    """The indexes of ``chosen`` pairs, wave by wave in the start order."""
    index_of = {id(p): i for i, p in enumerate(pairs)}
    return [index_of[id(p)] for wave in order.waves(pairs, stopping=stopping) for p in wave
            if index_of[id(p)] in chosen]
