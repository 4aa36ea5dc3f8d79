"""Measuring instruments for the benchmark, used the same way for both contenders.

- :class:`StandInClock` timestamps, from the oned stand-ins' own view, every VM action they accept
  and every state a VM enters. Per-VM downtime is read from it for both contenders alike: from the
  ``terminate`` oned accepted on site B to the VM entering RUNNING on site A.
- :class:`CallCounter` counts calls at the seams a failback talks through: librbd (the ``rbd``
  binding behind :class:`~ceph_failback.ceph.mirror.MirrorPool`), RADOS commands (mgr/mon),
  XML-RPC (``OpenNebulaSite._call``) and, for the baseline, ``rbd`` CLI runs. Each call is charged
  to the step running at the time (a context variable that follows work onto worker threads).

Nothing here changes what is measured: the proxies forward every call unchanged.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from ceph_failback.ceph.pools import parts_of
from ceph_failback.failback import Failback
from ceph_failback.lab.oned import OnedStandIn

__all__ = ["STEP", "StandInClock", "CallCounter", "step", "instrument_failback",
           "propagate_context_to_threads"]

#: The step calls are charged to (``demote_a``... or ``plan``, ``other``).
STEP: contextvars.ContextVar[str] = contextvars.ContextVar("bench_step", default="other")


@contextmanager
def step(name: str) -> Iterator[None]:
    """Charge the calls made in the block (and in threads it starts) to step ``name``."""
    token = STEP.set(name)
    try:
        yield
    finally:
        STEP.reset(token)


_PATCHED = False


def propagate_context_to_threads() -> None:
    """Make ``ThreadPoolExecutor`` run each task in a copy of the submitter's context, so the
    current step follows the orchestrator's work onto its worker threads. Benchmark process only."""
    global _PATCHED
    if _PATCHED:
        return
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any,
               **kwargs: Any) -> Any:
        return original(self, contextvars.copy_context().run, fn, *args, **kwargs)

    ThreadPoolExecutor.submit = submit  # type: ignore[method-assign]
    _PATCHED = True


class StandInClock:
    """Timestamps (epoch seconds) of what one oned stand-in accepted and of each state change."""

    def __init__(self, oned: OnedStandIn) -> None:
        self.oned = oned
        self.actions: list[tuple[float, int, str]] = []
        self.states: list[tuple[float, int, str]] = []
        self._lock = threading.Lock()
        action = oned.vm_action
        enter = oned._enter

        def vm_action(user: Any, name: str, vm_id: int) -> int:
            requested = time.time()
            result = action(user, name, vm_id)  # raises when refused: not recorded
            with self._lock:
                self.actions.append((requested, vm_id, name))
            return result

        def enter_state(vm: Any, state: Any, lcm: Any, error: str = "") -> None:
            before = vm.state_str()
            enter(vm, state, lcm, error)
            after = vm.state_str()
            if after != before:
                with self._lock:
                    self.states.append((time.time(), vm.id, after))

        oned.vm_action = vm_action  # type: ignore[method-assign]
        oned._enter = enter_state  # type: ignore[method-assign]

    def first_action(self, vm_id: int, name: str, after: float = 0.0) -> float | None:
        """When oned first accepted ``name`` on ``vm_id`` (at or after ``after``)."""
        with self._lock:
            return next((t for t, v, a in self.actions if v == vm_id and a == name and t >= after),
                        None)

    def first_state(self, vm_id: int, state: str, after: float = 0.0) -> float | None:
        """When ``vm_id`` first entered ``state`` (``RUNNING``, ``DONE``...) at or after ``after``."""
        with self._lock:
            return next((t for t, v, s in self.states if v == vm_id and s == state and t >= after),
                        None)


def downtime(clock_b: StandInClock, clock_a: StandInClock, vm_b: int, vm_a: int) -> float | None:
    """Terminate accepted on B -> RUNNING on A, in seconds (``None`` if either is missing)."""
    down = clock_b.first_action(vm_b, "terminate")
    if down is None:
        return None
    up = clock_a.first_state(vm_a, "RUNNING", after=down)
    return None if up is None else up - down


class CallCounter:
    """Calls per (step, kind, name); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def add(self, kind: str, name: str) -> None:
        key = (STEP.get(), kind, name)
        with self._lock:
            self.counts[key] += 1

    def wrap(self, kind: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` counted as one ``kind`` call named ``name`` each time it is called."""
        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.add(kind, name)
            return fn(*args, **kwargs)
        return counted

    def by_step(self) -> dict[str, dict[str, int]]:
        """``{step: {kind: calls}}``."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (st, kind, _), n in self.counts.items():
                out.setdefault(st, {}).setdefault(kind, 0)
                out[st][kind] += n
        return out

    def detail(self) -> dict[str, dict[str, int]]:
        """``{step: {"kind:name": calls}}``."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            for (st, kind, name), n in sorted(self.counts.items()):
                out.setdefault(st, {})[f"{kind}:{name}"] = n
        return out


class _Counted:
    """Forwards every attribute of ``target``; calls of its methods are counted."""

    _UNCOUNTED = frozenset({"close", "__enter__", "__exit__"})

    def __init__(self, target: Any, counter: CallCounter, prefix: str) -> None:
        self._target = target
        self._counter = counter
        self._prefix = prefix

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr) or name in self._UNCOUNTED:
            return attr
        return self._counter.wrap("librbd", f"{self._prefix}.{name}", attr)

    # ``with`` looks these up on the type, never through __getattr__.
    def __enter__(self) -> _Counted:
        self._target.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._target.__exit__(*exc)


class _CountedRbd:
    """The ``rbd`` module as MirrorPool sees it, with ``RBD()`` and ``Image()`` counted."""

    def __init__(self, rbd: Any, counter: CallCounter) -> None:
        self._rbd = rbd
        self._counter = counter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rbd, name)

    def RBD(self) -> Any:  # noqa: N802 (the binding's name)
        return _Counted(self._rbd.RBD(), self._counter, "RBD")

    def Image(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802 (the binding's name)
        self._counter.add("librbd", "Image.open")
        return _Counted(self._rbd.Image(*args, **kwargs), self._counter, "Image")


_STEP_METHODS = {
    "plan": "plan", "demote_site_a": "demote_a", "resync_site_a": "resync_a",
    "terminate_site_b": "terminate_b", "demote_site_b": "demote_b",
    "promote_site_a": "promote_a", "resume_site_a": "resume_a",
}


def instrument_failback(fb: Failback, counter: CallCounter) -> None:
    """Count ``fb``'s librbd, RADOS-command and XML-RPC calls per step (bench only)."""
    propagate_context_to_threads()
    for pool in (fb.pool_a(), fb.pool_b()):
        pool._rbd = _CountedRbd(pool._rbd, counter)
        # The pool's mirror infos read by the library itself (RADOS reads of every image).
        for part in parts_of(pool).values():
            part_: Any = part
            part_._mirror_infos = counter.wrap("rados", "MirrorPool._mirror_infos",
                                               part_._mirror_infos)
    for site in (fb.site_a, fb.site_b):
        ceph: Any = site.ceph
        ceph.mgr_command = counter.wrap("rados", "mgr_command", ceph.mgr_command)
        ceph.mon_command = counter.wrap("rados", "mon_command", ceph.mon_command)
        one: Any = site.one
        call = one._call

        def counted_call(method: str, *params: Any, _call: Any = call, **kw: Any) -> Any:
            counter.add("xmlrpc", f"one.{method}")
            return _call(method, *params, **kw)

        one._call = counted_call
    for method, name in _STEP_METHODS.items():
        original = getattr(fb, method)

        def charged(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            with step(_name):
                return _original(*args, **kw)

        setattr(fb, method, charged)
