"""What a failback works on: its VM pairs and images, fixed at its first step.

The scope is read from OpenNebula (the cross-site mapping of VMs by their RBD images), narrowed
by the caller's filters, and written to the journal at the first step, so that a resumed
failback works on the same set even after the VMs on B are DONE.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ceph.pools import lock_parts
from ..errors import CephError, FailbackError, JournalError, VMNotFoundError
from ..opennebula.mapping import FindingKind, Mapping, Pair, Severity, map_sites
from ..opennebula.records import VM
from .ledger import Ledger, Mark, Step, image_target, vm_target
from .order import StartOrder, build_order, explicit_order, recorded_order
from .plan import Blocker, unique
from .safety import Names, history_on_b, recorded_history, resumed_by_us

if TYPE_CHECKING:
    from ..ceph.seams import MirrorSide, PoolLockSide
    from .core import Site

__all__ = ["Scope", "ScopeReader", "WAIVABLE", "lock_blockers"]

#: Blocker kinds that may be waived: proceeding despite them cannot lose data.
WAIVABLE = frozenset({
    FindingKind.PARTIAL_PAIR.value,
    FindingKind.EXPLICIT_PAIR.value,
    FindingKind.UNREADABLE_DISK.value,  # the operator may know the VM has nothing in the pool
    "daemon-health-unknown",
    "oneflow-unreadable",  # the start order without the services' roles: order, not data
    "saved-memory-on-b",  # loses what a crash of the guest would lose: the operator's call
})

#: Up to this many VM pairs, the VMs are read one by one; beyond, each site's VMs are listed
#: once (a listing costs about as much as a few hundred single reads).
PER_VM_READS = 20


@dataclass(frozen=True)
class Scope:
    """The pairs and images a failback works on, and the mapping they came from."""

    pairs: tuple[Pair, ...]
    images: tuple[str, ...]
    mapping: Mapping | None


class ScopeReader:
    """Reads (and caches) a failback's scope from OpenNebula and its journal."""

    def __init__(self, site_a: Site, site_b: Site, pools: Sequence[str], ledger: Ledger, *,
                 images: tuple[str, ...] | None, vms: tuple[int, ...] | None,
                 pairs: dict[int, int],
                 order: Sequence[Sequence[int | str]] | None = None,
                 oneflow: bool = True, wait_ready: bool = False) -> None:
        self.site_a, self.site_b, self.ledger = site_a, site_b, ledger
        self.pools = tuple(pools)
        self.pool = "+".join(self.pools)
        self.image_filter, self.vm_filter, self.explicit_pairs = images, vms, pairs
        self.explicit_order = explicit_order(order)
        self.oneflow = oneflow
        self.wait_ready = wait_ready
        self.cached: Scope | None = None
        self._order: tuple[Scope, StartOrder, list[Blocker], list[str]] | None = None

    def order(self, scope: Scope) -> tuple[StartOrder, list[Blocker], list[str]]:
        """The scope's start order (:mod:`.order`), what is wrong with it, and warnings. A
        failback whose first ``run()`` recorded an order follows that one, as it works on its
        recorded scope; otherwise it is built from the explicit order and (``oneflow``) site
        A's OneFlow services, read once per scope."""
        if self._order is not None and self._order[0] is scope:
            return self._order[1], list(self._order[2]), list(self._order[3])
        blockers: list[Blocker] = []
        warnings: list[str] = []
        first = next((r for r in self.ledger.journal.find(step=Step.RUN, event=Mark.STARTED)
                      if "order" in r.data), None)
        if first is not None:
            order = recorded_order(first.data["order"], scope.pairs)
            if self.explicit_order is not None or not self.oneflow:
                warnings.append("this failback follows the start order its journal recorded at "
                                "its first run; the order given now is not used (a new order "
                                "needs a new failback, with a new journal)")
        else:
            services = []
            if self.oneflow:
                try:
                    services = self.site_a.one.services()
                except FailbackError as exc:
                    blockers.append(Blocker(
                        "oneflow-unreadable", f"services@{self.site_a.name}",
                        f"cannot read the OneFlow services of {self.site_a.name} ({exc}): the "
                        "start order would leave their roles out", waivable=True))
            known = list(scope.mapping.pairs) if scope.mapping is not None else list(scope.pairs)
            order, found = build_order(scope.pairs, known, self.explicit_order, services,
                                       site_a=self.site_a.name, site_b=self.site_b.name,
                                       wait_ready=self.wait_ready)
            blockers += found
        self._order = (scope, order, blockers, warnings)
        return order, list(blockers), list(warnings)

    def mapping(self) -> Mapping:
        """The cross-site VM/image mapping as OpenNebula shows it now."""
        return self._map(*self._listings())

    def _listings(self) -> tuple[list[VM], list[VM]]:
        """Site A's VMs and :meth:`_vms_b`, read side by side (each is mostly oned's time to
        answer and the parse of its answer)."""
        ex = ThreadPoolExecutor(1, thread_name_prefix="vms-a")
        try:
            vms_a = ex.submit(self.site_a.one.vms)
            vms_b = self._vms_b()
            return vms_a.result(), vms_b
        finally:
            # B's failure (or an interrupt) is raised at once, not after A's whole listing.
            ex.shutdown(wait=False, cancel_futures=True)

    def _vms_b(self) -> list[VM]:
        """Site B's live VMs, and the DONE ones this failback's journal names (read by id with
        ``one.vmpool.infoset``): oned keeps every DONE VM, and a site with years of history
        would not list them all within a call's timeout; the others are history anyway
        (:func:`~.safety.history_on_b`)."""
        live = self.site_b.one.vms()
        named = self.ledger.vm_ids(self.site_b.name) | set(self.explicit_pairs)
        recorded = self.ledger.scope()
        if recorded is not None:
            named |= {int(p["vm_b"]) for p in recorded.data.get("pairs", [])}
        named -= {vm.id for vm in live}
        done = [vm for vm in self.site_b.one.vms_by_id(named) if vm.is_done] if named else []
        return sorted([*live, *done], key=lambda vm: vm.id, reverse=True)

    def _map(self, vms_a: list[VM], vms_b: list[VM]) -> Mapping:
        # B's DONE VMs are history unless this failback terminated them (safety.history_on_b),
        # or the operator pairs one explicitly (ended by hand, with 'onevm recover --delete').
        current_b = [vm for vm in vms_b if not vm.is_done or not history_on_b(
            vm, self.ledger.vm(self.site_b.name, vm.id),
            paired_by_hand=vm.id in self.explicit_pairs)]
        return map_sites(vms_a, current_b, self.pools, pairs=self.explicit_pairs or None,
                         site_a=self.site_a.name, site_b=self.site_b.name)

    def present(self, pairs: Sequence[Pair]) -> list[Pair]:
        """The pairs with their VMs as OpenNebula shows them now: read VM by VM for a few pairs,
        else with one pool listing per site (one call per VM would be thousands of calls)."""
        if len(pairs) <= PER_VM_READS:
            return [Pair(self.site_a.one.vm(p.vm_a.id), self.site_b.one.vm(p.vm_b.id), p.images,
                         p.explicit) for p in pairs]
        vms = self._from_listings([(p.vm_a.id, p.vm_b.id) for p in pairs], *self._listings())
        return [Pair(a, b, p.images, p.explicit) for (a, b), p in zip(vms, pairs, strict=True)]

    def _from_listings(self, ids: Sequence[tuple[int, int]], vms_a: list[VM], vms_b: list[VM]
                       ) -> list[tuple[VM, VM]]:
        """The VMs of each (id on A, id on B) from the two sites' listings; one a listing leaves
        out (a DONE VM on A) is read by itself."""
        on_a, on_b = {vm.id: vm for vm in vms_a}, {vm.id: vm for vm in vms_b}
        return [(on_a.get(a) or self.site_a.one.vm(a), on_b.get(b) or self.site_b.one.vm(b))
                for a, b in ids]

    def scope(self, mirrored: MirrorSide) -> Scope:
        """The scope (``mirrored``: site B's mirror adapter, to tell mirrored VMs)."""
        if self.cached is not None:
            return self.cached
        recorded = self.ledger.scope()
        if recorded is not None:
            # The pools as a set: their order in the configuration does not matter.
            was = recorded.data.get("pools") or str(recorded.data.get("pool", self.pool)
                                                    ).split("+")
            if set(was) != set(self.pools):
                raise JournalError(
                    f"the journal {self.ledger.journal.path} records a failback of pool(s) "
                    f"{', '.join(was)}, not {', '.join(self.pools)}", pool=self.pool,
                    hint="give the journal of this failback, or a new one for a new failback")
            # One listing per site, not one read per VM (a scope can hold thousands of VMs).
            vms_a, vms_b = self._listings()
            entries = recorded.data.get("pairs", [])
            vms = self._from_listings([(int(p["vm_a"]), int(p["vm_b"])) for p in entries],
                                      vms_a, vms_b)
            pairs = [Pair(a, b, tuple(p["images"]), bool(p.get("explicit")))
                     for (a, b), p in zip(vms, entries, strict=True)]
            self.cached = Scope(tuple(pairs), tuple(recorded.data.get("images", [])),
                                self._map(vms_a, vms_b))
            return self.cached
        mapping = self.mapping()
        names = mirrored.mirrored_names()
        chosen = []
        for pair in mapping.pairs:
            if self.vm_filter is not None and pair.vm_b.id not in self.vm_filter:
                continue
            if self.image_filter is not None and not set(pair.images) & set(self.image_filter):
                continue
            if self.image_filter is None and self.vm_filter is None and not (
                    set(pair.images) & names):
                continue  # not a mirrored VM: not ours
            chosen.append(pair)
        images = unique(i for p in chosen for i in p.images)
        if self.image_filter is not None:
            images = unique([*images, *self.image_filter])
        self.cached = Scope(tuple(chosen), tuple(images), mapping)
        return self.cached

    def record(self, mirrored: MirrorSide) -> None:
        """Write the scope to the journal (once)."""
        if self.ledger.scope() is not None:
            return
        scope = self.scope(mirrored)
        self.ledger.write(Step.RUN, Mark.SCOPE, pool=self.pool, pools=list(self.pools),
                          images=list(scope.images),
                          pairs=[{"vm_a": p.vm_a.id, "vm_b": p.vm_b.id,
                                  "images": list(p.images), "explicit": p.explicit}
                                 for p in scope.pairs])

    def select_images(self, scope: Scope, images: Iterable[str] | None) -> list[str]:
        """``images`` (all of the scope's if ``None``), refusing one out of scope."""
        if images is None:
            return list(scope.images)
        chosen = unique(images)
        unknown = [i for i in chosen if i not in scope.images]
        if unknown:
            raise FailbackError(f"images not in this failback's scope: {unknown}",
                                pool=self.pool, site=self.site_a.name)
        return chosen

    def select_pairs(self, scope: Scope, vms: Iterable[int] | None) -> list[Pair]:
        """The pairs of ``vms`` (ids on B; all of the scope's if ``None``)."""
        if vms is None:
            return list(scope.pairs)
        wanted = [int(v) for v in vms]
        chosen = [p for p in scope.pairs if p.vm_b.id in wanted]
        missing = set(wanted) - {p.vm_b.id for p in chosen}
        if missing:
            raise FailbackError(f"VMs on site B not in this failback's scope: {sorted(missing)}",
                                site=self.site_b.name, pool=self.pool)
        return chosen

    def blockers(self, scope: Scope) -> tuple[list[Blocker], list[str]]:
        """The mapping's findings that concern this scope, as blockers and warnings, and a
        blocker per VM asked for (``vms=``) that is not in the scope."""
        blockers: list[Blocker] = []
        warnings: list[str] = []
        if scope.mapping is None:
            return blockers, warnings
        # A scope recorded in the journal is a filter too: resuming a failback of some VMs must
        # not be blocked by VMs it does not touch (another failback's, say).
        filtered = (self.image_filter is not None or self.vm_filter is not None
                    or self.ledger.scope() is not None)
        ids = {(self.site_a.name, p.vm_a.id) for p in scope.pairs} | {
            (self.site_b.name, p.vm_b.id) for p in scope.pairs}
        for f in scope.mapping.findings:
            # VM ids are per site: VM 0 on B is not VM 0 on A. A finding about a VM out of scope
            # (one running on A after an earlier failback, say) is not this one's.
            vm_in_scope = f.vm is not None and (f.site, f.vm) in ids
            # An unreadable disk could be one of the scope's images: it concerns every scope.
            relevant = (not filtered or vm_in_scope
                        or f.kind in (FindingKind.UNKNOWN_VM, FindingKind.UNREADABLE_DISK)
                        or (f.image in scope.images if f.image is not None else f.vm is None))
            if not relevant:
                continue
            target = (image_target(f.image) if f.image else
                      vm_target(f.site, f.vm) if f.vm is not None else "pool")
            if f.kind is FindingKind.VM_NOT_STOPPED and f.vm is not None and resumed_by_us(
                    self.ledger.vm(f.site, f.vm)):
                continue
            if f.severity is Severity.BLOCKER:
                blockers.append(Blocker(f.kind.value, target, f.message,
                                        waivable=f.kind.value in WAIVABLE))
            else:
                warnings.append(str(f))
        if self.ledger.scope() is not None:
            names = Names(self.site_a.name, self.site_b.name, self.pool, pools=self.pools)
            for p in scope.pairs:
                stale = recorded_history(p.vm_b, self.ledger.vm(self.site_b.name, p.vm_b.id),
                                         names, paired_by_hand=p.vm_b.id in self.explicit_pairs)
                if stale is not None:
                    blockers.append(Blocker(stale.kind, vm_target(self.site_b.name, p.vm_b.id),
                                            stale.message))
        if self.vm_filter is not None:
            for vm_id in dict.fromkeys(self.vm_filter):
                if not any(p.vm_b.id == vm_id for p in scope.pairs):
                    blockers.append(Blocker(FindingKind.UNKNOWN_VM.value,
                                            vm_target(self.site_b.name, vm_id),
                                            self._why_not_in_scope(vm_id)))
        return blockers, warnings

    def _why_not_in_scope(self, vm_id: int) -> str:
        """Why a VM asked for (``vms=``) on B is not in the scope."""
        try:
            vm = self.site_b.one.vm(vm_id)
        except VMNotFoundError:
            return f"no VM {vm_id} exists on {self.site_b.name} (--vm takes ids on site B)"
        also = " (or none of its images is among the images asked for)" if (
            self.image_filter is not None) else ""
        return (f"VM {vm_id} on {self.site_b.name} ({vm.status}) shares no persistent image of "
                f"pool {self.pool!r} with a VM on {self.site_a.name}: nothing to fail back for "
                f"it{also}")


def lock_blockers(lock: PoolLockSide, blockers: list[Blocker], warnings: list[str], *,
                  site: str) -> None:
    """The plan's ``locked`` blockers: another live failback holds a pool's lock (a dead one
    on this machine is only a warning: it is taken over). Each pool's lock is judged by
    itself, so a dead holder of one pool never hides a live holder of another."""
    parts = lock_parts(lock)
    for pool, part in parts.items():
        try:
            holder = part.holder()
        except CephError as exc:
            warnings.append(f"cannot read the failback lock of pool {pool!r} on {site}: {exc}")
            continue
        mine = part.held
        if holder is None or (mine is not None and holder.cookie == mine.cookie):
            continue
        if holder.is_provably_dead():
            warnings.append(f"a dead failback on this machine left the lock of pool {pool!r} "
                            f"({holder}); it will be taken over")
        else:
            blockers.append(Blocker(
                "locked", f"lock@{site}" if len(parts) == 1 else f"lock:{pool}@{site}",
                f"another failback holds the lock of pool {pool!r}: {holder}; wait for it, or "
                f"if it is dead break the lock (`ceph-failback unlock --yes --cookie "
                f"{holder.cookie}`, Failback.break_locks(Failback.lock_holders()))"))
