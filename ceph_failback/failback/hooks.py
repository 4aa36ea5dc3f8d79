"""Hooks: the operator's own actions at the points of a failback.

A :class:`Hook` runs at one point of :meth:`~ceph_failback.failback.Failback.run`:

* ``before_run`` and ``after_run``: once, around the whole run;
* ``before_terminate``: before a VM is terminated on B; for the whole failback (once, before the
  first VM), for one start order group (once, before its first VM), or for one VM;
* ``after_resume``: after a VM runs on A (and reported ready, when its group waits for that);
  for one VM, for a group (once, after its last VM), or for the whole failback (once, after the
  last VM).

A hook is a Python callable (given a :class:`HookCall`) or a command (run without a shell, with
the ``FAILBACK_*`` environment variables of :meth:`HookCall.environment`), with a time limit
and an error policy: ``stop`` (its failure fails the VM's stage that triggered it, which holds
back what waits for it, and everything stays resumable) or ``continue`` (the failure is
journaled and shown, the failback goes on, and that hook is not run again). Each run of a hook is
journaled (its intent, then its outcome and output), and a hook done is never run again when the
failback is resumed. A
hook the process was killed in the middle of (its intent journaled, no outcome) may or may not
have done its work: it runs again on the next run, so write hooks that may run twice.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ..errors import ConfigurationError, HookFailedError
from ..opennebula.mapping import Pair
from .events import Emitter, EventKind
from .ledger import Ledger, Mark, Step
from .observed import Blocker
from .order import StartOrder

__all__ = ["When", "Hook", "HookCall", "HookRunner", "OUTPUT_LIMIT"]

#: The last characters of a hook's output kept in the journal.
OUTPUT_LIMIT = 4000


class When(StrEnum):
    """Where a hook runs."""

    BEFORE_RUN = "before_run"
    BEFORE_TERMINATE = "before_terminate"
    AFTER_RESUME = "after_resume"
    AFTER_RUN = "after_run"


@dataclass(frozen=True)
class HookCall:
    """What a hook is told: where it runs, and for what.

    Attributes:
        hook: the hook's name.
        when: its point (``before_terminate``...).
        site_a: site A's name.
        site_b: site B's name.
        pool: the pool (several: joined by ``+``).
        journal: the failback's journal file.
        group: the start order group it runs for, if any.
        vm_b: the VM on B it runs for (id), if any.
        vm_a: that VM's partner on A (id), if any.
        vm_name: that VM's name on B, if any.
    """

    hook: str
    when: str
    site_a: str
    site_b: str
    pool: str
    journal: str
    group: str | None = None
    vm_b: int | None = None
    vm_a: int | None = None
    vm_name: str | None = None

    def environment(self) -> dict[str, str]:
        """The ``FAILBACK_*`` variables a command hook gets (on top of this process's
        environment): ``FAILBACK_HOOK``, ``FAILBACK_WHEN``, ``FAILBACK_SITE_A``,
        ``FAILBACK_SITE_B``, ``FAILBACK_POOL``, ``FAILBACK_JOURNAL``, and when they apply
        ``FAILBACK_GROUP``, ``FAILBACK_VM_B``, ``FAILBACK_VM_A``, ``FAILBACK_VM_NAME``."""
        values = {"HOOK": self.hook, "WHEN": self.when, "SITE_A": self.site_a,
                  "SITE_B": self.site_b, "POOL": self.pool, "JOURNAL": self.journal,
                  "GROUP": self.group, "VM_B": self.vm_b, "VM_A": self.vm_a,
                  "VM_NAME": self.vm_name}
        return {f"FAILBACK_{k}": str(v) for k, v in values.items() if v is not None}


Action = Callable[[HookCall], object] | Sequence[str] | str


@dataclass(frozen=True)
class Hook:
    """One hook.

    Args:
        when: its point: ``before_run``, ``before_terminate``, ``after_resume``, ``after_run``.
        action: a callable (given a :class:`HookCall`; an exception fails it), a command as an
            argument list, or a command line split like a shell's words (no shell runs it).
            A command fails when it exits non-zero.
        name: its name in the journal, the events and the report (default: the command's
            program, or the callable's name).
        group: run for this start order group (``"web/db"``, ``"group 2"``) only, once.
        vm: run for this VM (id on site B) only.
        timeout: seconds it may take (a command is killed then; a callable is left running in
            its thread and counted failed).
        on_error: ``"stop"`` (default) or ``"continue"``.

    Raises:
        ConfigurationError: an unknown point or policy, both ``group`` and ``vm``, or a group or
            VM given for ``before_run``/``after_run``.
    """

    when: When | str
    action: Action
    name: str | None = None
    group: str | None = None
    vm: int | None = None
    timeout: float = 300.0
    on_error: str = "stop"
    _when: When = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_when", When(self.when))
        except ValueError:
            raise ConfigurationError(f"hook {self.label!r}: unknown point {self.when!r}; use one "
                                     f"of {', '.join(w.value for w in When)}") from None
        if self.on_error not in ("stop", "continue"):
            raise ConfigurationError(f"hook {self.label!r}: on_error must be 'stop' or "
                                     f"'continue', not {self.on_error!r}")
        if self.group is not None and self.vm is not None:
            raise ConfigurationError(f"hook {self.label!r}: give a group or a VM, not both")
        if (self.group is not None or self.vm is not None) and self._when in (
                When.BEFORE_RUN, When.AFTER_RUN):
            raise ConfigurationError(f"hook {self.label!r}: {self._when.value} runs once for "
                                     "the whole failback: it takes no group or VM")
        if not self.timeout > 0:
            raise ConfigurationError(f"hook {self.label!r}: timeout must be positive")
        if not callable(self.action) and not self.argv:
            raise ConfigurationError(f"hook {self.label!r}: empty command")

    @property
    def point(self) -> When:
        """Its point, as a :class:`When`."""
        return self._when

    @property
    def argv(self) -> list[str]:
        """The command's arguments (empty for a callable)."""
        if callable(self.action):
            return []
        if isinstance(self.action, str):
            return shlex.split(self.action)
        return [str(a) for a in self.action]

    @property
    def label(self) -> str:
        """Its name: given, else the command's program or the callable's name."""
        if self.name:
            return self.name
        if callable(self.action):
            return str(getattr(self.action, "__name__", "hook"))
        argv = self.argv if not isinstance(self.action, str) else self.action.split()
        return Path(argv[0]).name if argv else "hook"

    @property
    def scope(self) -> str:
        """What it runs for: ``failback``, ``group:<name>`` or ``vm:<id on B>``."""
        if self.group is not None:
            return f"group:{self.group}"
        return f"vm:{self.vm}" if self.vm is not None else "failback"


class HookRunner:
    """Runs a failback's hooks at their points, once each, journaled."""

    def __init__(self, hooks: Iterable[Hook], ledger: Ledger, events: Emitter, *,
                 call: Callable[..., HookCall], fence: Callable[[], None]) -> None:
        # Two hooks of one point and scope with one name would share a journal target (the
        # second would pass for done): the later ones are numbered (``notify-2``).
        named: list[Hook] = []
        for hook in hooks:
            label, n = hook.label, 1
            while any(h.label == label and h.point is hook.point and h.scope == hook.scope
                      for h in named):
                n += 1
                label = f"{hook.label}-{n}"
            named.append(hook if label == hook.label else dataclasses.replace(hook, name=label))
        self.hooks = tuple(named)
        self.ledger = ledger
        self.events = events
        self._call = call
        self._fence = fence
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}  # one per hook target: each runs once
        self._failed: dict[str, str] = {}  # this run's failed hooks (``stop``): not run again

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def reset(self) -> None:
        """At the start of a run: a hook that failed in an earlier run of this object runs
        again (unless its policy was ``continue``: that failure is final)."""
        with self._lock:
            self._failed.clear()

    def targets(self) -> set[str]:
        """The journal targets of these hooks (a group's or the failback's: one each; a VM's:
        one each)."""
        return {self.target(h, h.scope) for h in self.hooks}

    def blockers(self, order: StartOrder, pairs: Sequence[Pair]) -> list[Blocker]:
        """Hooks naming a group or a VM this failback does not have (the plan's
        ``hook-target-unknown``)."""
        groups = {g.name for g in order.groups}
        vms = {p.vm_b.id for p in pairs}
        return [Blocker("hook-target-unknown", self.target(h, h.scope),
                        f"hook {h.label!r} ({h.point.value}) names {h.scope}, which "
                        f"{'no start order group' if h.group is not None else 'no VM in scope'}"
                        " of this failback is")
                for h in self.hooks if (h.group is not None and h.group not in groups)
                or (h.vm is not None and h.vm not in vms)]

    # -- the points ------------------------------------------------------------------------

    def around_run(self, when: When) -> None:
        """``before_run`` or ``after_run``."""
        for hook in self._at(when, "failback"):
            self._once(hook, "failback")

    def before_terminate(self, pair: Pair, order: StartOrder) -> None:
        """Before ``pair``'s VM is terminated on B: the failback's hooks (once, first VM), its
        group's (once, the group's first VM), its own."""
        group = order.group_of(pair.vm_b.id)
        name = group.name if group else None
        for hook in self._at(When.BEFORE_TERMINATE, "failback"):
            self._once(hook, "failback")  # told no VM: it runs for all of them
        if group is not None:
            for hook in self._at(When.BEFORE_TERMINATE, f"group:{group.name}"):
                self._once(hook, f"group:{group.name}", group=name)
        for hook in self._at(When.BEFORE_TERMINATE, f"vm:{pair.vm_b.id}"):
            self._once(hook, f"vm:{pair.vm_b.id}", pair=pair, group=name)

    def after_resume(self, pair: Pair, order: StartOrder, started: Callable[[int], bool],
                     pairs: Sequence[Pair]) -> None:
        """After ``pair``'s VM runs on A: its own hooks, its group's once every VM of the group
        started (``started(vm_b)``), the failback's once every VM of ``pairs`` did."""
        group = order.group_of(pair.vm_b.id)
        for hook in self._at(When.AFTER_RESUME, f"vm:{pair.vm_b.id}"):
            self._once(hook, f"vm:{pair.vm_b.id}", pair=pair,
                       group=group.name if group else None)
        # The last VM of a group (of the failback) to start sees all of them started; two that
        # finish together both do, and the hook's own lock runs it once. Asked only where a hook
        # waits for the answer.
        if group is not None and (hooks := self._at(When.AFTER_RESUME, f"group:{group.name}")):
            if all(started(v) for v in group.vms):
                for hook in hooks:
                    self._once(hook, f"group:{group.name}", group=group.name)
        if (hooks := self._at(When.AFTER_RESUME, "failback")) and all(
                started(p.vm_b.id) for p in pairs):
            for hook in hooks:
                self._once(hook, "failback")

    # -- running one ---------------------------------------------------------------------------

    def _at(self, when: When, scope: str) -> list[Hook]:
        return [h for h in self.hooks if h.point is when and h.scope == scope]

    @staticmethod
    def target(hook: Hook, scope: str) -> str:
        """The hook's journal target: ``hook:<point>:<name>@<scope>``."""
        return f"hook:{hook.point.value}:{hook.label}@{scope}"

    def _once(self, hook: Hook, scope: str, *, pair: Pair | None = None,
              group: str | None = None) -> None:
        t = self.target(hook, scope)
        with self._lock:
            lock = self._locks.setdefault(t, threading.Lock())
        with lock:  # a VM waits while its group's hook runs for a sibling
            if self.ledger.journal.last(step=Step.HOOK, event=Mark.DONE, target=t) is not None:
                return
            if hook.on_error == "continue" and self.ledger.journal.last(
                    step=Step.HOOK, event=Mark.FAILED, target=t) is not None:
                return  # its failure was journaled and accepted: it is not run again
            if t in self._failed:
                raise HookFailedError(f"hook {hook.label!r} ({hook.point.value}, {scope}) failed "
                                      f"earlier in this run: {self._failed[t]}",
                                      hint="fix it, then run again (a hook done is not rerun)")
            call = self._call(hook=hook.label, when=hook.point.value, group=group,
                              vm_b=pair.vm_b.id if pair else None,
                              vm_a=pair.vm_a.id if pair else None,
                              vm_name=pair.vm_b.name if pair else None)
            self._fence()
            self.ledger.write(Step.HOOK, Mark.INTENT, t, scope=scope, on_error=hook.on_error)
            self.events.emit(EventKind.ACTION, f"{t}: running", step=Step.HOOK.value, target=t)
            started = time.monotonic()
            error, output = _execute(hook, call)
            seconds = round(time.monotonic() - started, 3)
            if error is None:
                self.ledger.write(Step.HOOK, Mark.DONE, t, seconds=seconds, output=output)
                self.events.emit(EventKind.ACTION, f"{t}: done in {seconds:.1f}s",
                                 step=Step.HOOK.value, target=t, outcome="done")
                return
            self.ledger.write(Step.HOOK, Mark.FAILED, t, seconds=seconds, output=output,
                              error=error, on_error=hook.on_error)
            self.events.emit(EventKind.WARNING, f"{t}: FAILED ({hook.on_error}): {error}",
                             step=Step.HOOK.value, target=t, outcome="failed")
            if hook.on_error == "stop":
                self._failed[t] = error
                raise HookFailedError(f"hook {hook.label!r} ({hook.point.value}, {scope}) "
                                      f"failed: {error}",
                                      hint="fix it, then run again (what is done is skipped; "
                                           "the hook runs again)")


def _execute(hook: Hook, call: HookCall) -> tuple[str | None, str]:
    """Run the hook: ``(None, output)`` or ``(why it failed, output)``."""
    if callable(hook.action):
        outcome: list[BaseException | None] = []
        fn = hook.action

        def target() -> None:
            try:
                fn(call)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 (reported as the hook's failure)
                outcome.append(exc)

        thread = threading.Thread(target=target, name=f"hook-{hook.label}", daemon=True)
        thread.start()
        thread.join(hook.timeout)
        if thread.is_alive():
            return f"did not return within {hook.timeout:g}s (left running)", ""
        exc = outcome[0] if outcome else None
        return (None if exc is None else f"{type(exc).__name__}: {exc}"), ""
    env = {**os.environ, **call.environment()}
    try:
        done = subprocess.run(hook.argv, env=env, stdin=subprocess.DEVNULL,  # noqa: S603
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=hook.timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        return (f"killed after {hook.timeout:g}s",
                _tail(exc.stdout if isinstance(exc.stdout, bytes) else b""))
    except OSError as exc:
        return f"cannot run {hook.argv[0]!r}: {exc.strerror or exc}", ""
    output = _tail(done.stdout)
    if done.returncode != 0:
        return f"exited with {done.returncode}", output
    return None, output


def _tail(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= OUTPUT_LIMIT else "..." + text[-OUTPUT_LIMIT:]
