"""Step 3, site B: terminate the VMs, and wait until their images are mirrored to A.

A VM with a non-persistent (clone) or volatile disk in the pool is refused: OpenNebula would
delete those images and rbd-mirror the copies on A. A VM is stopped only when A can take over
each of its images (:func:`~ceph_failback.failback.safety.takeover_unready`). A VM already DONE
is not terminated again; one whose terminate an interrupted run sent is waited for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ...opennebula.mapping import Pair
from ...opennebula.records import TERMINATING_STATES, VM
from ..events import EventKind
from ..ledger import ImageHistory, Mark, Step, vm_target
from ..safety import (
    ImageView,
    Names,
    Refusal,
    host_copy_on_b,
    other_pool_disks,
    saved_memory_on_b,
    stop_order,
    takeover_unready,
    unknown_on_b,
    unreadable_disks,
    unsafe_disks,
)
from ..waits import CAUGHT_UP, MIRRORED, Mirrored
from .base import (
    Choice,
    Decision,
    Recorder,
    StepContext,
    StepResult,
    guarded,
    parallel,
    read_vms,
    registered_in_a,
)

STEP = Step.TERMINATE_B


def decide(vm_b: VM, images: Iterable[tuple[ImageView, ImageHistory]], names: Names,
           waived: frozenset[str] = frozenset(), later: Iterable[VM] = ()) -> Decision:
    """Step 3's decision for one VM on B (``images``: its images as both sites show them;
    ``waived``: the waivable rule kinds the caller waived; ``later``: the VMs on B of the groups
    that start after its group, :func:`~ceph_failback.failback.safety.stop_order`)."""
    if vm_b.is_done:
        return Decision.skip("already DONE")
    unresolved = unreadable_disks(vm_b, names, names.site_b)
    if unresolved is not None:
        return Decision.refuse(unresolved)
    unsafe = unsafe_disks(vm_b)
    if unsafe:
        return Decision.refuse(Refusal(
            "non-persistent-disk", f"VM {vm_b.id}'s disks {unsafe} are not persistent: "
            f"terminating it on {names.site_b} would delete them (and rbd-mirror the copies on "
            f"{names.site_a})", site=names.site_b,
            hint="save them as persistent images, or fail this VM back by hand"))
    elsewhere = other_pool_disks(vm_b, names.pool_list)
    if elsewhere:
        wanted = list(dict.fromkeys([*names.pool_list, *(s.split("/")[0] for s in elsewhere)]))
        return Decision.refuse(Refusal(
            "other-pool-disk", f"VM {vm_b.id}'s disks {elsewhere} on {names.site_b} are in "
            f"other pools than {names.pool!r}, which this failback does not fail back: "
            f"stopping the VM would leave their latest data on {names.site_b} and resume the VM "
            f"on {names.site_a}'s stale copies; fail those pools back in the same failback "
            f"(pool={wanted!r}, in a configuration file pool = {wanted!r}; each must be "
            "mirrored)", site=names.site_b,
            hint=f"give the failback every pool its VMs use: pool={wanted!r}; or move those "
                 "disks into the failback's pools"))
    saved = saved_memory_on_b(vm_b, names)
    if saved is not None and saved.kind not in waived:
        return Decision.refuse(saved)
    lost = unknown_on_b(vm_b, names) or host_copy_on_b(vm_b, names)
    if lost is not None:
        return Decision.refuse(lost)
    if terminating(vm_b):
        return Decision.do("terminate under way (sent by an earlier run)")
    out_of_order = stop_order(vm_b, later, names)
    if out_of_order is not None:
        return Decision.refuse(out_of_order)
    unready = takeover_unready(images)
    if unready:
        return Decision.refuse(Refusal(
            "takeover-unready", f"{names.site_a} is not ready to take over images {unready}: "
            f"this failback has not seen them replay from {names.site_b} (steps 1 and 2); "
            "stopping the VM now would leave it down with no copy on A to resume from",
            site=names.site_b, hint="run demote_site_a() and resync_site_a() first (or run())"))
    return Decision.do(f"{vm_b.status} on B")


def terminating(vm: VM) -> bool:
    """A terminate is under way (sent by this or an interrupted run): wait, do not resend."""
    return vm.state == "ACTIVE" and vm.lcm_state in TERMINATING_STATES


def run(ctx: StepContext, pairs: Sequence[Pair]) -> StepResult:
    """Terminate each pair's VM on B as :func:`decide` says, then wait for its images."""
    rec = Recorder(STEP, ctx)
    parallel(pairs, lambda p: guarded(rec, vm_target(ctx.site_b.name, p.vm_b.id),
                                      lambda: _one(ctx, rec, p)), ctx.vm_concurrency)
    return rec.finish()


def _one(ctx: StepContext, rec: Recorder, pair: Pair) -> None:
    t = vm_target(ctx.site_b.name, pair.vm_b.id)
    one_b = ctx.site_b.one
    vm = one_b.vm(pair.vm_b.id)
    images: list[tuple[ImageView, ImageHistory]] = []
    later: list[VM] = []  # the VMs on B that must be DONE first (the start order)
    if not vm.is_done and not terminating(vm):
        later = read_vms(one_b, ctx.start_order().stops_after(vm.id))
        histories = ctx.ledger.images(pair.images)
        if not all(h.proven or h.demote_b_attempted for h in histories.values()):
            # Only then does the rule need the images' roles (are they home already?).
            infos_a, infos_b = ctx.pool_a().infos(pair.images), ctx.pool_b().infos(pair.images)
            images = [(ImageView(i, infos_a.get(i), infos_b.get(i)), histories[i])
                      for i in pair.images]
        else:
            images = [(ImageView(i, None, None), histories[i]) for i in pair.images]
    decision = decide(vm, images, ctx.names, ctx.waive, later)
    if decision.choice is Choice.REFUSE:
        assert decision.refusal is not None
        raise decision.refusal.error(pool=ctx.pool, vm=vm.id)
    if decision.choice is Choice.SKIP:
        rec.skip(t, decision.reason)
    else:
        if terminating(vm):
            rec.observed(t, state=vm.status)
        else:
            wait_caught_up(ctx, pair)
            rec.intent(t, state=vm.status)
        ctx.events.emit(EventKind.VM_STATE, f"{t}: terminating ({vm.status})",
                        step=STEP.value, target=t)
        final = one_b.terminate(vm, hard_after=ctx.hard_terminate_after,
                                timeout=ctx.timeouts.terminate)
        rec.done(t, "terminated", state=final.status)
    wait_mirrored(ctx, pair)


def _observer(ctx: StepContext, pair: Pair, *, proven: set[str] | None = None,
              registration: bool = False
              ) -> tuple[Callable[[list[str]], dict[str, Mirrored]], set[str]]:
    """How A shows the images of ``pair`` (journal mode: A's status, and with
    ``registration`` whether B's rbd-mirror is registered in A's journal, rule
    :func:`~ceph_failback.failback.safety.peer_unregistered`; snapshot mode: A's mirror
    snapshots against one taken on B now, for each image still primary on B), and which
    images are in snapshot mode (or not listed on B: nothing to copy)."""
    pa, pb = ctx.pool_a(), ctx.pool_b()
    infos = pb.infos(pair.images)
    snap_mode = {i for i in pair.images if not ((info := infos.get(i)) and info.mode != "snapshot")}
    snaps = {name: pb.create_mirror_snapshot(name) for name in snap_mode
             if (info := infos.get(name)) is not None and info.primary}
    uuids: dict[str, str] = {}  # B's mirror uuid (per pool), read once per image

    def b_uuid(name: str) -> str:
        if name not in uuids:
            uuids[name] = pb.mirror_uuid(name)
        return uuids[name]

    for name in snap_mode:
        b_uuid(name)
    registered: set[str] = set()

    def _unregistered(name: str) -> str | None:
        if name in registered:
            return None
        why = registered_in_a(ctx, name, b_uuid(name)).why_not()
        if why is None:
            registered.add(name)
        return why

    def observe(pending: list[str]) -> dict[str, Mirrored]:
        ctx.require_daemon_a("mirroring")
        journal = [n for n in pending if n not in snap_mode]
        statuses = pa.statuses(journal, each=True) if journal else {}
        seen = {n: Mirrored(status=statuses.get(n), proven=n in (proven or ()),
                            unregistered=_unregistered(n) if registration else None)
                for n in journal}
        for n in pending:
            if n in snap_mode:
                copies = pa.mirror_snapshots(n) if n in snaps else []
                seen[n] = Mirrored(snapshots=tuple(copies),
                                   expected=snaps.get(n), source=b_uuid(n), snapshot_mode=True)
        return seen

    return observe, snap_mode


def wait_caught_up(ctx: StepContext, pair: Pair) -> None:
    """Before the VM stops on B (limit ``Timeouts.catch_up``, ``0``: no wait): until A has
    nearly caught up with its images while it still runs (:data:`~.waits.CAUGHT_UP`), so the
    backlog is replayed with the VM up, not down. Snapshot mode takes a mirror snapshot on B
    for it (the one after the stop then carries only the last writes). At the limit the VM is
    left running and :class:`~ceph_failback.errors.WaitTimeoutError` names the images."""
    if ctx.timeouts.catch_up <= 0:
        return
    t = vm_target(ctx.site_b.name, pair.vm_b.id)
    seen: dict[str, str] = {}
    CAUGHT_UP.run(pair.images, _observer(ctx, pair, registration=True)[0],
                  timeouts=ctx.timeouts,
                  on_done=lambda name, o, _: seen.__setitem__(name, str(o)),
                  what=f"{ctx.site_a.name} to catch up with the images of {t} before it stops",
                  where={"site": ctx.site_a.name, "pool": ctx.pool, "vm": pair.vm_b.id},
                  hint=f"the VM still runs on {ctx.site_b.name}; run again to keep waiting, "
                       "or raise Timeouts.catch_up (0: stop it anyway and replay the backlog "
                       "with it down). When the wait names the registration of "
                       f"{ctx.site_b.name}'s rbd-mirror in {ctx.site_a.name}'s journal, check "
                       f"that rbd-mirror runs on {ctx.site_b.name}")
    ctx.ledger.write(STEP, Mark.OBSERVED, t, caught_up=seen)


def wait_mirrored(ctx: StepContext, pair: Pair) -> None:
    """After the VM on B stopped: wait until its images are mirrored to A.

    Journal mode: A replays from B (its latest report: up, replaying, no split-brain) and was
    proven to replay B's copy during this failback (step 2), else its latest report says nothing
    is behind. What proves that A has every write is librbd's non-forced promote in step 5,
    which succeeds only once A has replayed B's demotion (the last entry of B's journal), so
    step 5 waits for the catch-up: rbd-mirror reports a replaying image only every ~30 s, and
    waiting here for a report that says "caught up" would add that much to every VM's downtime
    and prove no more. Snapshot mode: a mirror snapshot taken on B after the stop is completely
    copied to A."""
    t = vm_target(ctx.site_b.name, pair.vm_b.id)
    if ctx.ledger.vm(ctx.site_b.name, pair.vm_b.id).mirrored:
        return
    histories = ctx.ledger.images(pair.images)
    proven = {name for name in pair.images if histories[name].proven}
    observe, snap_mode = _observer(ctx, pair, proven=proven)  # snapshot: one taken after the stop
    MIRRORED.run(pair.images, observe, timeouts=ctx.timeouts,
                 what=f"the images of {t} to be mirrored to {ctx.site_a.name}",
                 where={"site": ctx.site_a.name, "pool": ctx.pool},
                 hint="run again to keep waiting (the VM is not terminated twice)")
    for name in pair.images:
        if name not in proven and name not in snap_mode:
            ctx.ledger.prove(name, "replaying from B, caught up after the VM stopped")
    ctx.ledger.write(STEP, Mark.MIRRORED, t, images=list(pair.images))
