"""Step 2, site A: flag the images for resync, and wait until they replay from B.

Only images that need it are resynced: those that were primary on A (they diverged from B), and
those that are split-brained or do not prove within ``timeouts.settle`` that they replay from B
(:func:`~ceph_failback.failback.safety.replay_proof`; journal mode reads the proof from both
copies' journals at each poll, :func:`read_epochs`). A resync this failback recorded is never
requested again, and a copy rbd-mirror recreated (new image id) is never resynced; a request
interrupted before its record is repeated only on the same image id, which is harmless (librbd's
resync only sets a flag on the image). B must be the primary (never resync the only current
copy).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence

from ...ceph.rbd_journal import JournalHeader, ReplayEpoch
from ...ceph.seams import MirrorSide
from ...ceph.status import MirrorImageInfo, MirrorStatus
from ...errors import FailbackError, ImageNotFoundError, WaitFailedError
from ..epochs import read_epochs
from ..events import EventKind
from ..ledger import ImageHistory, Step, image_target
from ..safety import (
    ImageView,
    Names,
    Refusal,
    already_home,
    being_recreated,
    image_missing,
    needs_resync,
    only_current_copy,
    replay_proof,
)
from ..waits import REPLAY_PROOF, RESYNCED, Replay, Resynced
from .base import Choice, Decision, Recorder, StepContext, StepResult

STEP = Step.RESYNC_A


def decide(view: ImageView, history: ImageHistory, names: Names) -> Decision:
    """Step 2's decision for one image (``view`` with A's status)."""
    if being_recreated(view, history):
        return Decision.wait("resync under way (image being recreated)")
    missing = image_missing(view, names, history)
    if missing is not None:
        return Decision.refuse(missing)
    if already_home(view):
        return Decision.skip("primary on A and not on B: already home")
    if history.resync_requested_at is not None:
        if history.proven:
            return Decision.skip("resynced by this failback, replaying from B")
        return Decision.wait("resync requested by this failback: waiting until it replays")
    if history.proven:
        # Proven after the last resync this failback asked for, even an interrupted one.
        return Decision.skip("seen replaying from B by this failback")
    if not view.primary_b:
        # Before anything that could resync: never resync when B is not the primary.
        if history.demote_b_attempted:
            return Decision.skip("B already demoted by this failback")
        refusal = only_current_copy(view, names)
        assert refusal is not None
        return Decision.refuse(refusal)
    if history.resync_interrupted:
        if recreated(view, history):
            return Decision.wait("resync under way: A's copy was recreated since the request")
        # Whether the request reached librbd is unknown: the status decides (a resync under way
        # replays; one not yet acted on stays split-brained and is asked again on the same image,
        # which only sets librbd's resync flag again).
        return Decision.settle("interrupted around its resync request: the status decides")
    if view.primary_a:
        return Decision.refuse(Refusal("still-primary-on-a", "still primary on A: demote it "
                                       "first (step 1)", site=names.site_a))
    if history.demoted_a:
        return Decision.do("A was primary (diverged): resync from B")
    if needs_resync(view.status_a):
        return Decision.do("split-brain on A: resync from B")
    proof = replay_proof(view.status_a, view.epoch)
    if proof is not None:
        return Decision.skip(f"already {proof}", proof=f"{proof} before the failback")
    label = view.status_a.local.label if view.status_a is not None else "no status"
    return Decision.settle(f"not proven replaying from B yet ({label}): resync unless it "
                           "proves it within the settle limit")


def nothing_recorded(history: ImageHistory) -> bool:
    """Nothing this failback recorded decides the image: no demotion on A, no resync asked,
    no proof yet."""
    return not (history.demoted_a or history.proven or history.resync_attempted_at is not None)


def recreated(view: ImageView, history: ImageHistory) -> bool:
    """A's copy is no longer the one this failback asked to resync: rbd-mirror recreated it
    under a new image id, so the request reached librbd (journals of earlier versions do not
    record the old id: then this cannot tell)."""
    return (view.info_a is not None and view.info_a.image_id is not None
            and history.resync_from_image_id is not None
            and view.info_a.image_id != history.resync_from_image_id)


def effect(view: ImageView, history: ImageHistory, decision: Decision
           ) -> tuple[ImageView, ImageHistory]:
    """After step 2, an image it resynced, settled or waited for replays from B (proven); the
    step fails for any that does not."""
    if decision.proof:
        return view, dataclasses.replace(history, proven=True)
    if decision.choice not in (Choice.DO, Choice.SETTLE, Choice.WAIT):
        return view, history
    # A resynced image is a new, non-primary copy of B's, with a new status.
    info_a = view.info_a
    if info_a is None and view.info_b is not None:
        info_a = dataclasses.replace(view.info_b, primary=False, image_id=None)
    return (dataclasses.replace(view, info_a=info_a, status_a=None),
            dataclasses.replace(history, proven=True))


def run(ctx: StepContext, names: Sequence[str], *, wait: bool = True,
        on_ready: Callable[[str], None] | None = None) -> StepResult:
    """Resync on A what :func:`decide` says to, then wait (``wait``) until the resynced images
    replay from B; ``on_ready(image)`` is called as soon as each image is ready for steps 3-5."""
    rec = Recorder(STEP, ctx)
    pa = ctx.pool_a()
    infos_a, statuses_a = pa.overview(names)
    infos_b = ctx.pool_b().infos(names)
    ctx.require_daemon_a("resync")
    epochs = undecided_epochs(pa, ctx.pool_b(), names, infos_a, infos_b, statuses_a,
                              ctx.ledger.image)
    to_resync: list[str] = []
    to_settle: list[str] = []
    # image -> when its resync was requested, and A's image id before it
    waiting: dict[str, tuple[float, str | None]] = {}
    for name in names:
        t = image_target(name)
        history = ctx.ledger.image(name)
        view = ImageView(name, infos_a.get(name), infos_b.get(name), statuses_a.get(name),
                         epoch=epochs.get(name))
        decision = decide(view, history, ctx.names)
        if decision.choice is Choice.WAIT:
            assert history.resync_attempted_at is not None
            waiting[name] = (history.resync_attempted_at, history.resync_from_image_id)
        elif decision.choice is Choice.REFUSE:
            rec.refuse(t, decision, image=name)
        elif decision.choice is Choice.SKIP:
            if decision.proof is not None:
                ctx.ledger.prove(name, decision.proof)
            rec.skip(t, decision.reason)
        elif decision.choice is Choice.DO:
            to_resync.append(name)
        else:
            to_settle.append(name)
    undecided = []
    for name, proof in settle(ctx, to_settle).items():
        if proof is None:
            undecided.append(name)
        else:
            ctx.ledger.prove(name, f"{proof} before the failback")
            rec.skip(image_target(name), f"already {proof}")
    # An interrupted request that did reach librbd shows up late: rbd-mirror moves the image to
    # the trash when it next checks the image's state, after the settle limit perhaps. Gone
    # from A now: it is being recreated, and is waited for, never requested again.
    present = pa.infos(undecided) if undecided else {}
    interrupted: dict[str, tuple[float, str | None]] = {}  # its unrecorded request's
    for name in undecided:
        history = ctx.ledger.image(name)
        if history.resync_interrupted:
            assert history.resync_attempted_at is not None
            interrupted[name] = (history.resync_attempted_at, history.resync_from_image_id)
            now_a = present.get(name)
            if now_a is None or recreated(ImageView(name, now_a, None), history):
                waiting[name] = interrupted[name]
                continue
        to_resync.append(name)
    now = time.time()
    before = {name: (info.image_id if (info := infos_a.get(name)) is not None else None)
              for name in to_resync}
    for name in to_resync:
        rec.intent(image_target(name), image_id=before[name])
    for name, r in pa.resync_many(to_resync).items():
        if r.ok:
            rec.done(image_target(name), "resync requested on A")
            waiting[name] = (now, before[name])
        elif name in interrupted and isinstance(r.error, ImageNotFoundError):
            # Gone between the check and the request: the earlier request is being carried out.
            waiting[name] = interrupted[name]
        else:
            assert r.error is not None
            rec.fail(image_target(name), r.error)
    if on_ready is not None:
        for name in names:
            if rec.result.outcomes.get(image_target(name), ("",))[0] == "skipped":
                on_ready(name)
    if wait and waiting:
        _wait_resynced(ctx, waiting, rec, on_ready)
    return rec.finish()


def undecided_epochs(pool_a: MirrorSide, pool_b: MirrorSide, names: Sequence[str],
                     infos_a: dict[str, MirrorImageInfo], infos_b: dict[str, MirrorImageInfo],
                     statuses_a: Mapping[str, MirrorStatus],
                     history: Callable[[str], ImageHistory], *,
                     read_a: Mapping[str, JournalHeader] | None = None,
                     read_b: Mapping[str, JournalHeader] | None = None
                     ) -> dict[str, ReplayEpoch]:
    """:func:`read_epochs` of the images only the journals can decide (B primary, A not, no
    split-brain, nothing recorded): the DR-test case. The plan and the step both read them, so
    the plan shows what the step will do."""
    candidates = [n for n in names if (b := infos_b.get(n)) is not None and b.primary
                  and (a := infos_a.get(n)) is not None and not a.primary
                  and not needs_resync(statuses_a.get(n)) and nothing_recorded(history(n))]
    return read_epochs(pool_a, pool_b, candidates, infos_a, infos_b, read_a=read_a,
                       read_b=read_b)


def settle(ctx: StepContext, names: Sequence[str]) -> dict[str, str | None]:
    """For images with no proof yet: wait up to ``timeouts.settle`` until A's status and the
    journals decide (:data:`~ceph_failback.failback.waits.REPLAY_PROOF`), reading both at each
    poll. Returns the proof per image, ``None`` where a resync is needed (split-brained, or
    undecided: B is primary, so the resync is safe)."""
    proofs: dict[str, str | None] = {}
    if not names:
        return proofs

    def observe(pending: list[str]) -> dict[str, Replay]:
        statuses = ctx.pool_a().statuses(pending)
        listed = list(statuses)
        epochs = read_epochs(ctx.pool_a(), ctx.pool_b(), listed, ctx.pool_a().infos(listed),
                             ctx.pool_b().infos(listed))
        return {n: Replay(st, epochs.get(n)) for n, st in statuses.items()}

    def done(name: str, obs: Replay, _: object) -> None:
        proofs[name] = obs.proof()  # None: split-brained

    # Undecided at the limit: resynced (REPLAY_PROOF does not need to finish). A failed read
    # is no answer: it fails the step (a resync is a full copy, never a reaction to an error).
    REPLAY_PROOF.run(names, observe, timeouts=ctx.timeouts, on_done=done,
                     where={"site": ctx.site_a.name, "pool": ctx.pool})
    return {name: proofs.get(name) for name in names}


def _wait_resynced(ctx: StepContext, waiting: dict[str, tuple[float, str | None]],
                   rec: Recorder, on_ready: Callable[[str], None] | None) -> None:
    """Wait until each resynced image replays from B (:data:`~.waits.RESYNCED`)."""
    pa = ctx.pool_a()
    ready: set[str] = set()

    def observe(pending: list[str]) -> dict[str, Resynced]:
        if not ctx.daemon_a_ok():
            raise WaitFailedError(
                f"no healthy rbd-mirror daemon on {ctx.site_a.name} while resyncing",
                site=ctx.site_a.name, pool=ctx.pool,
                hint="start rbd-mirror on site A, then run again: requested resyncs are "
                     "not repeated")
        statuses = pa.statuses(pending)
        infos = pa.infos(pending)
        return {n: Resynced(statuses[n], *waiting[n],
                            image_id=info.image_id if (info := infos.get(n)) else None)
                for n in pending if n in statuses}

    def seen(name: str, obs: Resynced) -> None:
        local = obs.status.local
        pct = local.bootstrap_percent
        if pct is None and local.replay is not None:
            pct = local.replay.syncing_percent
        if pct is not None:
            ctx.events.emit(EventKind.IMAGE_PROGRESS, f"{name}: {local.summary()}",
                            step=STEP.value, target=image_target(name), percent=pct)

    def done(name: str, obs: Resynced, _: object) -> None:
        ctx.ledger.prove(name, "resynced from B")
        ctx.events.emit(EventKind.IMAGE_PROGRESS, f"{name}: replaying from B", step=STEP.value,
                        target=image_target(name), percent=100)
        ready.add(name)
        if on_ready is not None:
            on_ready(name)

    try:
        RESYNCED.run(waiting, observe, timeouts=ctx.timeouts, on_done=done, on_seen=seen,
                     missing="being recreated (not listed)",
                     where={"site": ctx.site_a.name, "pool": ctx.pool},
                     hint="the resync goes on in rbd-mirror; run again later to keep waiting "
                          "(resyncs are not requested twice)")
    except FailbackError as exc:
        for name in waiting:
            if name not in ready:
                rec.fail(image_target(name), exc)
