"""Step 6, site A: resume the VMs, and wait until they run (and, for a VM whose start order
group waits for readiness, until its guest reports ``READY=YES`` through OneGate).

A VM whose images are not all primary on A is refused (it would boot on stale, read-only disks),
and so is one whose turn in the start order has not come
(:func:`~ceph_failback.failback.safety.start_order`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from ...ceph.status import MirrorImageInfo
from ...opennebula.mapping import Pair
from ...opennebula.records import VM
from ..events import EventKind
from ..ledger import Mark, Step, vm_target
from ..safety import (
    Names,
    Refusal,
    host_copy_on_a,
    not_primary_on_a,
    start_order,
    unreadable_disks,
)
from .base import Choice, Decision, Recorder, StepContext, StepResult, guarded, parallel, read_vms

STEP = Step.RESUME_A


def decide(vm_a: VM, images: Sequence[str], infos_a: Mapping[str, MirrorImageInfo | None],
           names: Names, earlier: Iterable[tuple[VM, bool]] = ()) -> Decision:
    """Step 6's decision for one VM on A (``earlier``: the VMs on A of the groups it starts
    after, each with whether its group waits for readiness,
    :func:`~ceph_failback.failback.safety.start_order`)."""
    if vm_a.is_running:
        return Decision.skip("already RUNNING")
    refusal = unreadable_disks(vm_a, names, names.site_a) or host_copy_on_a(vm_a, names)
    if refusal is not None:
        return Decision.refuse(refusal)
    not_primary = not_primary_on_a(images, dict(infos_a))
    if not_primary:
        return Decision.refuse(Refusal("resume-order", f"images {not_primary} are not primary "
                                       "on A yet", site=names.site_a,
                                       hint="promote them first (step 5)"))
    out_of_order = start_order(vm_a, earlier, names)
    if out_of_order is not None:
        return Decision.refuse(out_of_order)
    return Decision.do(f"{vm_a.status} on A")


def effect(vm_a: VM, decision: Decision) -> VM:
    """The VM after the decision took effect (running, its guest taken as ready: the step
    waits for that where its group asks for it)."""
    if decision.choice is not Choice.DO:
        return vm_a
    return dataclasses.replace(vm_a, state="ACTIVE", lcm_state="RUNNING", ready="YES")


def run(ctx: StepContext, pairs: Sequence[Pair]) -> StepResult:
    """Resume on A the partners of ``pairs`` as :func:`decide` says."""
    rec = Recorder(STEP, ctx)
    parallel(pairs, lambda p: guarded(rec, vm_target(ctx.site_a.name, p.vm_a.id),
                                      lambda: _one(ctx, rec, p)), ctx.vm_concurrency)
    return rec.finish()


def _one(ctx: StepContext, rec: Recorder, pair: Pair) -> None:
    t = vm_target(ctx.site_a.name, pair.vm_a.id)
    vm = ctx.site_a.one.vm(pair.vm_a.id)
    order = ctx.start_order()
    infos: Mapping[str, MirrorImageInfo | None] = {}
    earlier: list[tuple[VM, bool]] = []
    if not vm.is_running:
        infos = ctx.pool_a().infos(pair.images)
        first = set(order.starts_after(pair.vm_b.id))
        before = [p for p in ctx.scope_pairs() if p.vm_b.id in first] if first else []
        earlier = list(zip(read_vms(ctx.site_a.one, [p.vm_a.id for p in before]),
                           [order.needs_ready(p.vm_b.id) for p in before], strict=True))
    decision = decide(vm, pair.images, infos, ctx.names, earlier)
    if decision.choice is Choice.REFUSE:
        assert decision.refusal is not None
        raise decision.refusal.error(pool=ctx.pool, vm=vm.id)
    needs_ready = order.needs_ready(pair.vm_b.id)
    if decision.choice is Choice.SKIP:
        rec.skip(t, decision.reason)
    else:
        # A READY=YES from before the disaster would pass for this boot's: cleared first.
        stale = needs_ready and vm.is_ready
        rec.intent(t, state=vm.status, clears_ready=stale)
        if stale:
            ctx.site_a.one.update_user_template(vm, 'READY="NO"')
        final = ctx.site_a.one.resume(vm, timeout=ctx.timeouts.resume)
        rec.done(t, "running on A", state=final.status, vm_b=pair.vm_b.id)
    if needs_ready and not ctx.ledger.vm(ctx.site_a.name, vm.id).ready:
        ctx.events.emit(EventKind.VM_STATE, f"{t}: waiting for its guest to report READY=YES",
                        step=STEP.value, target=t)
        ready = ctx.site_a.one.wait_ready(vm, timeout=ctx.timeouts.ready)
        ctx.ledger.write(STEP, Mark.READY, t, ready=ready.ready)
