"""A typed view of the journal: what this failback did to each image and VM, and its proofs.

The journal (:mod:`.journal`) is the durable record, one JSON line per event. The steps and the
safety rules never query it with strings: they ask the :class:`Ledger` for an image's or a VM's
history (:class:`ImageHistory`, :class:`VMHistory`), small frozen records that pure decision
functions take as input, and they write through the ledger's typed methods. Every step and event
name the journal holds is spelled here, once.

The journal format is unchanged by this view: a journal written before it reads the same.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .journal import Journal, Record

__all__ = ["STEPS", "STEP_TITLES", "Step", "Mark", "ImageHistory", "VMHistory", "Ledger",
           "image_target", "vm_target", "REPLAYING_FROM_A", "SPLIT_BRAIN_ON_B"]

#: The protection states after the flip that rules read back from the journal (the report's
#: protection column, recorded by the run's check and by ``reprotect``); any other state
#: recorded is descriptive (``not replaying from A after 60s (...)``, ``unknown (...)``).
REPLAYING_FROM_A = "replaying from A"
SPLIT_BRAIN_ON_B = "split-brain on B"


class Step(StrEnum):
    """The documented steps as the journal names them, and ``run`` for run-level records."""

    DEMOTE_A = "demote_a"
    RESYNC_A = "resync_a"
    TERMINATE_B = "terminate_b"
    DEMOTE_B = "demote_b"
    PROMOTE_A = "promote_a"
    RESUME_A = "resume_a"
    RUN = "run"
    REPROTECT = "reprotect"  # after the failback, not a documented step: resync B from A
    HOOK = "hook"  # an operator's hook (failback/hooks.py), not a documented step
    VERIFY = "verify"  # the optional comparison of both copies (failback/verify.py)


#: The documented steps, in order, as the journal and events name them.
STEPS = tuple(step.value for step in Step
              if step not in (Step.RUN, Step.REPROTECT, Step.HOOK, Step.VERIFY))

#: Each step's title, as OpenNebula's failback page words it.
STEP_TITLES = {
    "demote_a": "Site A: demote the images",
    "resync_a": "Site A: flag the images for resync (and wait until they replay from B)",
    "terminate_b": "Site B: terminate the VMs (and wait until their images are mirrored to A)",
    "demote_b": "Site B: demote the images",
    "promote_a": "Site A: promote the images",
    "resume_a": "Site A: resume the VMs",
    "reprotect": "Site B: resync the images B cannot replay from A (after the failback)",
}



class Mark(StrEnum):
    """The kinds of journal record (``event`` in the file)."""

    INTENT = "intent"  # about to act on a target (written before the action)
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"
    OBSERVED = "observed"  # a fact seen, not an action: a replay proof, a terminate under way
    STARTED = "started"
    FINISHED = "finished"
    MIRRORED = "mirrored"  # a VM's images were mirrored to A after it stopped on B
    READY = "ready"  # a VM's guest reported READY=YES on A (OneGate) after this failback's resume
    SCOPE = "scope"
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    LOCK_BROKEN = "lock-broken"
    PROTECTION = "protection"  # after the flip: whether B replays the image from A


def image_target(name: str) -> str:
    """The journal/event target for an image."""
    return f"image:{name}"


def vm_target(site: str, vm_id: int) -> str:
    """The journal/event target for a VM."""
    return f"vm:{site}:{vm_id}"


@dataclass(frozen=True)
class ImageHistory:
    """What this failback's journal says of one image.

    Attributes:
        name: the image.
        demoted_a: step 1 demoted it on A (A was primary: it diverged from B).
        resync_attempted_at: when this failback requested (``intent`` or ``done``) a resync on A,
            epoch seconds; ``None``: never. An intent without its outcome means the request may
            or may not have reached librbd (the process died around it).
        resync_requested_at: when a resync request is recorded as done; ``None``: never.
        resync_from_image_id: A's image id when this failback last asked for a resync (journals
            of earlier versions do not say): rbd-mirror recreates the image under a new id
            (``CreateLocalImageRequest``, src/tools/rbd_mirror/image_replayer/{journal,
            snapshot}), so a copy with another id is the resynced one.
        proven: A was seen replaying B's copy during this failback, after the last resync this
            failback requested (see :func:`~ceph_failback.failback.safety.promote_proof`).
        demote_b_attempted: step 4 started demoting it on B (its outcome may be unrecorded).
        promoted_at: when step 5 promoted it on A (ISO time), if it did.
        protection: the state the last protection check recorded (after the flip: ``replaying
            from A``, ``split-brain on B``, ...; ``None``: never checked).
        protected: that check's answer (``None``: unknown or never checked).
        ever_protected: a protection check after this failback's promote saw B replay it from
            A (any record, not only the last: a later run or reprotect appends, never erases).
        split_seen: a protection check after the promote recorded it split-brained on B
            (exactly :data:`~ceph_failback.failback.safety.SPLIT_BRAIN_ON_B`).
    """

    name: str
    demoted_a: bool = False
    resync_attempted_at: float | None = None
    resync_requested_at: float | None = None
    resync_from_image_id: str | None = None
    proven: bool = False
    demote_b_attempted: bool = False
    promoted_at: str | None = None
    protection: str | None = None
    protected: bool | None = None
    ever_protected: bool = False
    split_seen: bool = False

    @property
    def target(self) -> str:
        """The image's journal target."""
        return image_target(self.name)

    @property
    def resync_interrupted(self) -> bool:
        """A resync intent with no recorded outcome: whether it reached librbd is unknown."""
        return self.resync_attempted_at is not None and self.resync_requested_at is None


@dataclass(frozen=True)
class VMHistory:
    """What this failback's journal says of one VM (on B for ``terminate_b``, on A for
    ``resume_a``).

    Attributes:
        target: the VM's journal target.
        terminate_attempted: step 3 sent (or was about to send) its terminate.
        mirrored: step 3 saw its images mirrored to A after it stopped.
        resume_attempted: step 6 sent (or was about to send) its resume (it may be running on A
            with its outcome unrecorded: the process can die while oned boots it).
        ready: step 6 saw its guest report ``READY=YES`` after the resume.
    """

    target: str
    terminate_attempted: bool = False
    mirrored: bool = False
    resume_attempted: bool = False
    ready: bool = False


class Ledger:
    """Typed reads and writes of a failback's :class:`Journal`."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    # -- reads ---------------------------------------------------------------------------------

    def _has(self, step: Step, mark: Mark, target: str) -> bool:
        return self.journal.last(step=step, event=mark, target=target) is not None

    def attempted(self, step: Step, target: str) -> bool:
        """``step`` was started on ``target`` (intent or done recorded)."""
        return self._has(step, Mark.INTENT, target) or self._has(step, Mark.DONE, target)

    def image(self, name: str) -> ImageHistory:
        """The history of one image."""
        t = image_target(name)
        j = self.journal
        resync_done = j.last(step=Step.RESYNC_A, event=Mark.DONE, target=t)
        resync_intent = j.last(step=Step.RESYNC_A, event=Mark.INTENT, target=t)
        attempted = max((r for r in (resync_done, resync_intent) if r is not None),
                        key=lambda r: r.time, default=None)
        proof = j.last(step=Step.RESYNC_A, event=Mark.OBSERVED, target=t)  # Ledger.prove's
        promoted = j.last(step=Step.PROMOTE_A, event=Mark.DONE, target=t)
        every_check = self.protection_checks(name)
        checked = every_check[-1] if every_check else None
        checks = [r for r in every_check if promoted is not None and r.time >= promoted.time]
        return ImageHistory(
            name=name,
            demoted_a=self._has(Step.DEMOTE_A, Mark.DONE, t),
            resync_attempted_at=attempted.time if attempted is not None else None,
            resync_requested_at=resync_done.time if resync_done is not None else None,
            resync_from_image_id=(resync_intent.data.get("image_id")
                                  if resync_intent is not None else None),
            # A proof counts only if it is newer than the last resync this failback asked for
            # (even one whose outcome went unrecorded): a resync recreates the image, and what
            # was proven of the old one says nothing of the new.
            proven=proof is not None and (attempted is None or proof.time >= attempted.time),
            demote_b_attempted=self.attempted(Step.DEMOTE_B, t),
            promoted_at=promoted.ts if promoted is not None else None,
            protection=str(checked.data.get("state")) if checked is not None else None,
            protected=checked.data.get("protected") if checked is not None else None,
            ever_protected=any(r.data.get("protected") is True for r in checks),
            split_seen=any(r.data.get("state") == SPLIT_BRAIN_ON_B for r in checks),
        )

    def protection_checks(self, name: str) -> list[Record]:
        """Every protection record of one image, oldest first (written after the flip by the
        run's check and by ``reprotect``: appended, never erased)."""
        return self.journal.find(step=Step.RUN, event=Mark.PROTECTION, target=image_target(name))

    def images(self, names: Iterable[str]) -> dict[str, ImageHistory]:
        """The histories of several images."""
        return {name: self.image(name) for name in names}

    def vm(self, site: str, vm_id: int) -> VMHistory:
        """The history of one VM."""
        t = vm_target(site, vm_id)
        return VMHistory(
            target=t,
            terminate_attempted=self.attempted(Step.TERMINATE_B, t),
            mirrored=self._has(Step.TERMINATE_B, Mark.MIRRORED, t),
            resume_attempted=self.attempted(Step.RESUME_A, t),
            ready=self._has(Step.RESUME_A, Mark.READY, t),
        )

    def vm_ids(self, site: str) -> set[int]:
        """The ids of the VMs at ``site`` that this journal has records for."""
        prefix = vm_target(site, 0)[:-1]
        return {int(r.target[len(prefix):]) for r in self.journal.records
                if r.target.startswith(prefix) and r.target[len(prefix):].isdigit()}

    def scope(self) -> Record | None:
        """The scope this failback recorded at its first step, if any."""
        return self.journal.last(step=Step.RUN, event=Mark.SCOPE)

    # -- writes --------------------------------------------------------------------------------

    def write(self, step: Step, mark: Mark, target: str = "", **data: Any) -> Record:
        """Append one record (see :meth:`Journal.write`)."""
        return self.journal.write(step.value, mark.value, target, **data)

    def prove(self, name: str, how: str) -> None:
        """Record that A was seen replaying B's copy of ``name`` (the promote proof)."""
        self.write(Step.RESYNC_A, Mark.OBSERVED, image_target(name), proof=how)
