"""What a failback would do, computed from the present state with nothing changed."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from rich.console import RenderableType

from ..ceph.status import MirrorStatus
from ..opennebula.records import VM
from .ledger import STEP_TITLES, STEPS, image_target, vm_target
from .observed import Blocker
from .order import NO_ORDER, StartOrder
from .render import Rendered, plan_view

__all__ = ["STEPS", "STEP_TITLES", "Action", "Blocker", "ImagePlan", "VMPlan", "Plan",
           "image_target", "vm_target", "unique"]

@dataclass(frozen=True)
class Action:
    """What one step will do to one image or VM: ``do`` it, or ``skip`` it and why."""

    step: str
    target: str
    do: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.step} {self.target}: {'DO' if self.do else 'skip'} ({self.reason})"


@dataclass(frozen=True)
class ImagePlan:
    """One image in scope: its status on both sites and the image steps' actions."""

    name: str
    mode: str | None
    status_a: MirrorStatus | None
    status_b: MirrorStatus | None
    actions: tuple[Action, ...]

    def action(self, step: str) -> Action | None:
        """This image's action for ``step``, if the step concerns images."""
        return next((a for a in self.actions if a.step == step), None)


@dataclass(frozen=True)
class VMPlan:
    """One VM pair in scope: the VM on B, the VM on A, their images and the VM steps' actions."""

    vm_b: VM
    vm_a: VM
    images: tuple[str, ...]
    actions: tuple[Action, ...]


@dataclass(frozen=True)
class Plan(Rendered):
    """Everything a failback would do, and everything that stops it.

    Attributes:
        pool: the pool.
        site_a: site A's name.
        site_b: site B's name.
        images: the images in scope.
        vms: the VM pairs in scope.
        blockers: reasons not to run; see :attr:`unwaived`.
        warnings: things worth a look that do not stop the failback.
        waived: blocker kinds the caller waived.
        order: the start order (:mod:`~ceph_failback.failback.order`): the groups the VMs stop
            in on B (the last first) and resume in on A.
    """

    pool: str
    site_a: str
    site_b: str
    images: tuple[ImagePlan, ...]
    vms: tuple[VMPlan, ...]
    blockers: tuple[Blocker, ...]
    warnings: tuple[str, ...] = ()
    waived: frozenset[str] = field(default_factory=frozenset)
    order: StartOrder = NO_ORDER

    @property
    def unwaived(self) -> tuple[Blocker, ...]:
        """Blockers still in force: not waivable, or waivable but not waived."""
        return tuple(b for b in self.blockers if not (b.waivable and b.kind in self.waived))

    @property
    def ok(self) -> bool:
        """True when nothing stops the failback."""
        return not self.unwaived

    def actions(self, step: str | None = None) -> list[Action]:
        """Every action (of one step), images first then VMs."""
        out: list[Action] = []
        for acts in [i.actions for i in self.images] + [v.actions for v in self.vms]:
            out.extend(a for a in acts if step is None or a.step == step)
        return out

    def to_dict(self) -> dict[str, object]:
        """A JSON-able form (for ``--json`` and the journal)."""
        return {
            "pool": self.pool, "site_a": self.site_a, "site_b": self.site_b, "ok": self.ok,
            "blockers": [{"kind": b.kind, "target": b.target, "message": b.message,
                          "waivable": b.waivable, "waived": b.waivable and b.kind in self.waived}
                         for b in self.blockers],
            "warnings": list(self.warnings),
            "order": self.order.to_dict(),
            "images": [{"name": i.name, "mode": i.mode,
                        "site_a": i.status_a.summary() if i.status_a else None,
                        "site_b": i.status_b.summary() if i.status_b else None,
                        "actions": [_action(a) for a in i.actions]} for i in self.images],
            "vms": [{"vm_b": v.vm_b.id, "vm_a": v.vm_a.id, "state_b": v.vm_b.status,
                     "state_a": v.vm_a.status, "images": list(v.images),
                     "actions": [_action(a) for a in v.actions]} for v in self.vms],
        }

    def view(self, journal: str | None = None) -> RenderableType:
        """The plan as a rich renderable (:func:`~.render.plan_view`): what ``str()``, the
        command line and Jupyter show."""
        return plan_view(self, journal)

    def __repr__(self) -> str:
        return str(self)


def _action(a: Action) -> dict[str, object]:
    return {"step": a.step, "target": a.target, "do": a.do, "reason": a.reason}


def unique(items: Iterable[str]) -> list[str]:
    """Items without repeats, in order."""
    return list(dict.fromkeys(items))
