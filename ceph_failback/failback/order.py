"""The start order: which VMs resume on site A before which, and stop on B after which.

VMs in scope fall into groups; a group may start only after other groups (its ``after``).
Site B stops the groups in reverse (a group's VMs are terminated only once every group that
starts after it is stopped: the load balancer before the application, the application before its
database), and site A resumes them in order (a group's VMs are resumed only once every VM of the
groups it starts after is RUNNING on A). VMs of no group keep no order.

Where the groups come from, first match wins for each VM:

1. the caller's explicit order (``Failback(order=...)``, ``[order] groups`` in the configuration
   file): a list of groups, each a list of VMs (ids on site B, or names), each group starting
   after the one before it, like SRM's priority groups;
2. the OneFlow services of site A: one group per role, starting after its parent roles, as
   OneFlow's own ``straight`` deployment does (a service deployed with ``none`` starts its roles
   together: no order between them).

:func:`build_order` is pure: a VM named twice, an unknown VM, or a cycle is a blocker naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigurationError
from ..opennebula.mapping import Pair
from ..opennebula.services import Service
from .ledger import vm_target
from .observed import Blocker

__all__ = ["Group", "StartOrder", "build_order", "explicit_order", "recorded_order", "NO_ORDER"]


@dataclass(frozen=True)
class Group:
    """VMs that start together.

    Attributes:
        name: ``"group 1"`` (explicit order) or ``"<service>/<role>"`` (OneFlow).
        vms: the VMs of the group in scope (ids on site B).
        after: the names of the groups whose VMs must all run on A before this one starts
            (and that stop on B only once this one is stopped).
        source: ``"order"`` (explicit) or ``"oneflow"``.
        ready: its VMs count as started on A once their guests report ``READY=YES`` through
            OneGate, not once they run (``wait_ready=True``; a OneFlow service's
            ``ready_status_gate``).
    """

    name: str
    vms: tuple[int, ...]
    after: tuple[str, ...] = ()
    source: str = "order"
    ready: bool = False


@dataclass(frozen=True)
class StartOrder:
    """The groups, in an order that starts each after its ``after`` groups."""

    groups: tuple[Group, ...] = ()
    _of: dict[int, Group] = field(default_factory=dict, init=False, repr=False, compare=False)

    _first: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)
    _then: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False,
                                        compare=False)
    _above: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)

    def __post_init__(self) -> None:
        self._of.update({vm: g for g in self.groups for vm in g.vms})
        named = {g.name: g for g in self.groups}
        ancestors: dict[str, set[str]] = {}
        for g in self.groups:  # each group's lists once: a VM's question is then a lookup
            self._first[g.name] = [v for a in g.after if a in named for v in named[a].vms]
            self._then[g.name] = [v for h in self.groups if g.name in h.after for v in h.vms]
            # In start order, a group's ``after`` groups come before it.
            ancestors[g.name] = {a for a in g.after if a in named}.union(
                *(ancestors.get(a, set()) for a in g.after))
            self._above[g.name] = [v for a in sorted(ancestors[g.name]) for v in named[a].vms]

    def __bool__(self) -> bool:
        return any(g.after for g in self.groups)

    def group_of(self, vm_b: int) -> Group | None:
        """The group of a VM (id on B), if any."""
        return self._of.get(vm_b)

    def needs_ready(self, vm_b: int) -> bool:
        """The VM (id on B) counts as started on A only once its guest reports ready."""
        group = self._of.get(vm_b)
        return group is not None and group.ready

    def starts_after(self, vm_b: int) -> list[int]:
        """The VMs (ids on B) whose partners must run on A before this VM's partner resumes."""
        group = self._of.get(vm_b)
        return [] if group is None else list(self._first[group.name])

    def all_before(self, vm_b: int) -> list[int]:
        """Every VM (id on B) of every group this VM's group starts after, transitively: until
        they all run on A, it cannot start there."""
        group = self._of.get(vm_b)
        return [] if group is None else list(self._above[group.name])

    def stops_after(self, vm_b: int) -> list[int]:
        """The VMs (ids on B) that must be DONE on B before this VM is terminated: those of the
        groups that start after this VM's group."""
        group = self._of.get(vm_b)
        return [] if group is None else list(self._then[group.name])

    def waves(self, pairs: Sequence[Pair], *, stopping: bool = False) -> list[list[Pair]]:
        """``pairs`` in waves: each wave's VMs only after the wave before it (to resume on A;
        with ``stopping``, to stop on B: reversed). VMs of no group go in the first wave."""
        level: dict[str, int] = {}
        for g in self.groups:  # in start order: a group's ``after`` groups come before it
            level[g.name] = 1 + max((level[a] for a in g.after if a in level), default=-1)
        top = max(level.values(), default=0)
        waves: dict[int, list[Pair]] = {}
        for pair in pairs:
            group = self._of.get(pair.vm_b.id)
            at = 0 if group is None else level[group.name]
            waves.setdefault(top - at if stopping and group is not None else at, []).append(pair)
        return [waves[k] for k in sorted(waves)]

    def to_dict(self) -> list[dict[str, object]]:
        """A JSON-able form (the plan's ``--json``, the journal)."""
        return [{"name": g.name, "vms": list(g.vms), "after": list(g.after), "source": g.source,
                 "ready": g.ready} for g in self.groups]


#: No order: every VM moves as soon as its images are ready.
NO_ORDER = StartOrder()


def recorded_order(recorded: Sequence[Mapping[str, object]], pairs: Sequence[Pair]
                   ) -> StartOrder:
    """The order a journal recorded (:meth:`StartOrder.to_dict`), for the VMs of ``pairs``."""
    in_scope = {p.vm_b.id for p in pairs}
    drafts = [_Draft(str(g["name"]), [int(v) for v in _list(g.get("vms"))
                                      if int(v) in in_scope],
                     [str(a) for a in _list(g.get("after"))], str(g.get("source", "order")),
                     bool(g.get("ready", False))) for g in recorded]
    return StartOrder(_contract(drafts))


def build_order(pairs: Sequence[Pair], known: Sequence[Pair],
                explicit: Sequence[Sequence[int | str]] | None,
                services: Sequence[Service], *, site_a: str, site_b: str,
                wait_ready: bool = False) -> tuple[StartOrder, list[Blocker]]:
    """The start order of ``pairs`` (the scope), and what is wrong with it.

    Args:
        pairs: the VM pairs in scope.
        known: every pair of the mapping (an explicit entry naming a VM out of scope is left
            out; one naming no VM at all is a blocker).
        explicit: the caller's groups (VM ids on B, or VM names on B or A).
        services: site A's OneFlow services (their nodes are VM ids on A).
        wait_ready: the explicit groups wait for their guests' ``READY=YES`` (a service's
            roles follow its ``ready_status_gate``).
    """
    blockers: list[Blocker] = []
    in_scope = {p.vm_b.id for p in pairs}
    chosen: dict[int, str] = {}  # VM on B -> group name
    groups: list[_Draft] = []
    for index, entries in enumerate(explicit or ()):
        name = f"group {index + 1}"
        members: list[int] = []
        for entry in entries:
            found = _resolve(entry, known)
            if not found:
                blockers.append(Blocker(
                    "order-unknown-vm", f"order:{name}",
                    f"the start order's {name} names {entry!r}, which is no VM of the failback "
                    f"on {site_b} (an id on {site_b}, or a VM name on either site)"))
                continue
            for vm in found:
                if vm in members:
                    continue  # named twice in the same group: once is enough
                if vm in chosen:
                    blockers.append(Blocker(
                        "order-duplicate", vm_target(site_b, vm),
                        f"VM {vm} on {site_b} is in the start order twice ({chosen[vm]} and "
                        f"{name})"))
                elif vm in in_scope:
                    chosen[vm] = name
                    members.append(vm)
        groups.append(_Draft(name, members, [f"group {index}"] if index else [], "order",
                             wait_ready))
    by_a = {p.vm_a.id: p.vm_b.id for p in pairs}
    explicit_vms = set(chosen)
    names = [s.name for s in services]
    for service in services:
        # OneFlow does not make names unique (another user's service): the id tells them apart.
        label = service.name if names.count(service.name) == 1 else f"{service.name}#{service.id}"
        members_of = {r.name: [by_a[v] for v in r.vms if v in by_a
                               and by_a[v] not in explicit_vms] for r in service.roles}
        if not any(members_of.values()):
            continue  # none of its VMs is failed back here (or the explicit order has them all)
        roles = {r.name for r in service.roles}
        for role in service.roles:
            name = f"{label}/{role.name}"
            members = []
            for vm in members_of[role.name]:
                if vm in chosen:
                    blockers.append(Blocker(
                        "order-duplicate", vm_target(site_b, vm),
                        f"VM {vm} on {site_b} is in two OneFlow roles ({chosen[vm]} and {name})"))
                    continue
                chosen[vm] = name
                members.append(vm)
            after = [f"{label}/{p}" for p in role.parents] if service.ordered else []
            for parent in role.parents:
                if parent not in roles and members_of[role.name]:
                    blockers.append(Blocker(
                        "order-unknown-role", f"service:{label}",
                        f"OneFlow service {service.name!r} (document {service.id} on {site_a}): "
                        f"role {role.name!r} names the parent role {parent!r}, which the "
                        "service does not have"))
            groups.append(_Draft(name, members, after, "oneflow", service.ready))
    ordered, cycle = _sorted(groups)
    if cycle:
        blockers.append(Blocker(
            "order-cycle", "order", f"the start order has a cycle: {' -> '.join(cycle)} (each "
            "group starts only after the one before it)"))
    return StartOrder(_contract(ordered)), blockers


def _list(value: object) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def explicit_order(order: object) -> list[list[int | str]] | None:
    """``order=`` checked: a list of groups, each a non-empty list of VM ids (on B, not
    negative) or names.

    Raises:
        ConfigurationError: anything else (a list of names is not a list of groups).
    """
    if order is None:
        return None
    shape = "a list of groups, each a list of VM ids or names: [['db'], ['app', 17]]"
    if isinstance(order, str | bytes) or not isinstance(order, Iterable):
        raise ConfigurationError(f"order must be {shape}, not {order!r}")
    groups: list[list[int | str]] = []
    for index, group in enumerate(order, 1):
        if isinstance(group, str | bytes) or not isinstance(group, Iterable):
            raise ConfigurationError(f"order: group {index} is {group!r}; the order must be "
                                     f"{shape}")
        entries = list(group)
        if not entries or not all(
                (isinstance(e, int) and not isinstance(e, bool) and e >= 0)
                or (isinstance(e, str) and e) for e in entries):
            raise ConfigurationError(f"order: group {index} ({entries!r}) must hold VM ids "
                                     "(site B's, not negative) or names, at least one")
        groups.append(entries)
    return groups


def _resolve(entry: int | str, known: Sequence[Pair]) -> list[int]:
    """The VMs on B an explicit entry names: an id on B, or a VM name on B or A (all such)."""
    if isinstance(entry, int) and not isinstance(entry, bool):
        return [p.vm_b.id for p in known if p.vm_b.id == entry]
    return [p.vm_b.id for p in known if entry in (p.vm_b.name, p.vm_a.name)]


@dataclass
class _Draft:
    """A group as read, before the order is sorted and contracted."""

    name: str
    vms: list[int]
    after: list[str]
    source: str
    ready: bool


def _sorted(groups: list[_Draft]) -> tuple[list[_Draft], list[str]]:
    """The groups with every group after its ``after`` groups, and a cycle if there is one
    (its groups are then left out)."""
    pending = {g.name: g for g in groups}
    done: list[_Draft] = []
    placed: set[str] = set()
    while pending:
        ready = [g for g in pending.values()
                 if all(a in placed or a not in pending for a in g.after)]
        if not ready:
            return done, _cycle(pending)
        for g in ready:
            done.append(g)
            placed.add(g.name)
            del pending[g.name]
    return done, []


def _cycle(pending: Mapping[str, _Draft]) -> list[str]:
    """One cycle among ``pending`` (every group there has an ``after`` group there)."""
    at = next(iter(pending))
    seen: list[str] = []
    while at not in seen:
        seen.append(at)
        at = next(a for a in pending[at].after if a in pending)
    return [*seen[seen.index(at):], at]


def _contract(groups: list[_Draft]) -> tuple[Group, ...]:
    """The groups with VMs in scope; a group without any is left out, its own ``after`` groups
    passed on to the groups after it (db <- app <- lb with app out of scope: lb after db)."""
    after: dict[str, list[str]] = {}
    kept: list[Group] = []
    for g in groups:
        inherited: list[str] = []
        for parent in g.after:
            inherited += after.get(parent, [])
        after[g.name] = [g.name] if g.vms else list(dict.fromkeys(inherited))
        if g.vms:
            kept.append(Group(g.name, tuple(g.vms), tuple(dict.fromkeys(inherited)), g.source,
                              g.ready))
    return tuple(kept)
