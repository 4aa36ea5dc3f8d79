"""Progress events: what a failback tells the callbacks that listen to it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = ["EventKind", "Event", "Listener", "Emitter"]

log = logging.getLogger("ceph_failback.failback")


class EventKind(Enum):
    """What happened."""

    STEP_STARTED = "step_started"
    STEP_FINISHED = "step_finished"
    ACTION = "action"  # one change made (or skipped) on one image or VM
    IMAGE_PROGRESS = "image_progress"  # a wait observed an image (resync %, replay...)
    VM_STATE = "vm_state"  # a wait observed a VM's state
    WARNING = "warning"


@dataclass(frozen=True)
class Event:
    """One progress event.

    Attributes:
        kind: what happened.
        step: the documented step it belongs to (``demote_a``... ``resume_a``), if any.
        target: ``image:<name>`` or ``vm:<site>:<id>``, if any.
        message: a human sentence.
        data: details (states, percentages, seconds).
        time: epoch seconds.
    """

    kind: EventKind
    step: str | None
    target: str | None
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    time: float = field(default_factory=time.time)


Listener = Callable[[Event], None]


class Emitter:
    """Delivers events to listeners and to stdlib logging. A failing listener is logged and
    never stops the failback."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def emit(self, kind: EventKind, message: str, *, step: str | None = None,
             target: str | None = None, **data: Any) -> Event:
        """Build, log and deliver one event."""
        event = Event(kind, step, target, message, data)
        level = logging.WARNING if kind is EventKind.WARNING else (
            logging.DEBUG if kind in (EventKind.IMAGE_PROGRESS, EventKind.VM_STATE)
            else logging.INFO)
        log.log(level, "%s%s", f"[{step}] " if step else "", message)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken progress bar must not break a failback
                log.exception("progress listener %r failed", listener)
        return event
