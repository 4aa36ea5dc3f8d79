"""Which VM on site A each VM on site B goes back to, through the RBD images of their disks.

VM ids differ between the sites (the failover re-created the VMs on B), but RBD mirroring keeps
image names: a VM on B and a VM on A that use the same images of the mirrored pool are the same
machine. :func:`map_sites` pairs them and reports, as :class:`Finding` objects rather than
exceptions, everything that makes the failback unsafe (``BLOCKER``) or worth a look (``WARNING``),
so that a dry run can show all problems at once.

Pure logic: no I/O. Feed it :meth:`OpenNebulaSite.vms` of both sites.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from enum import Enum

from ..errors import SafetyError
from .naming import Disk, DiskKind
from .records import VM

__all__ = ["Severity", "FindingKind", "Finding", "Pair", "Mapping", "map_sites"]


class Severity(Enum):
    """How much a finding matters."""

    BLOCKER = "blocker"
    """Failing back as things stand could lose data or corrupt a VM: do not proceed."""

    WARNING = "warning"
    """Not dangerous by itself, but probably not what the operator expects."""


class FindingKind(Enum):
    """What a finding is about."""

    IMAGE_USED_TWICE = "image-used-twice"
    """One RBD image is a disk of two VMs at the same site: which one owns it is ambiguous."""

    NON_PERSISTENT_DISK = "non-persistent-disk"
    """A VM on B that uses the pool has a clone or volatile disk (in any pool): terminating it
    makes OpenNebula delete that RBD image, and rbd-mirror then deletes the copy on A too."""

    VM_NOT_STOPPED = "vm-not-stopped"
    """A VM on A that uses the pool is not safely stopped (POWEROFF or UNDEPLOYED)."""

    NO_VM_ON_A = "no-vm-on-a"
    """An image used on B by no VM on A: nothing on A would resume with it."""

    NO_VM_ON_B = "no-vm-on-b"
    """An image used on A by no VM on B: it did not fail over, the failback leaves it alone."""

    SPLIT_VM = "split-vm"
    """The images of one VM belong to several VMs on the other site."""

    PARTIAL_PAIR = "partial-pair"
    """A paired VM on A uses an image of the pool that its VM on B does not, or has a disk in
    another pool (which the failback does not move): it would resume with that disk not failed
    back."""

    EXPLICIT_PAIR = "explicit-pair"
    """An explicit pair overrides or contradicts what the disks say."""

    UNKNOWN_VM = "unknown-vm"
    """An explicit pair names a VM that is not in the lists given."""

    UNREADABLE_DISK = "unreadable-disk"
    """A live VM has a Ceph disk whose RBD image cannot be named from its attributes: whether it
    uses the pool's images cannot be checked."""


@dataclass(frozen=True)
class Finding:
    """One reason the failback is unsafe or ambiguous.

    Attributes:
        kind: what it is about.
        severity: blocker or warning.
        site: the site's name where it was seen.
        vm: the VM id at that site, if one is concerned.
        image: the RBD image (in the mapping's pool; ``pool/image`` for several), if one is
            concerned.
        message: the explanation, with what to do.
    """

    kind: FindingKind
    severity: Severity
    site: str
    vm: int | None
    image: str | None
    message: str

    def __str__(self) -> str:
        where = [f"site {self.site!r}"]
        if self.vm is not None:
            where.append(f"VM {self.vm}")
        if self.image is not None:
            where.append(f"image {self.image!r}")
        return f"{self.severity.value}: {', '.join(where)}: {self.message}"


@dataclass(frozen=True)
class Pair:
    """A VM on B and the VM on A it fails back to.

    Attributes:
        vm_a: the VM on site A (resumed at the end).
        vm_b: the VM on site B (terminated first).
        images: the RBD images (in the pool) to fail back for it: those of ``vm_b``'s
            persistent disks.
        explicit: True when the pair came from the caller's explicit mapping.
    """

    vm_a: VM
    vm_b: VM
    images: tuple[str, ...]
    explicit: bool = False


@dataclass(frozen=True)
class Mapping:
    """The cross-site correspondence for one pool, and what stands in its way.

    Attributes:
        pool: the RBD pool (several: their names joined by ``+``; images are then named
            ``pool/image``).
        site_a: site A's name.
        site_b: site B's name.
        pairs: one per VM on B that has persistent disks in the pool.
        images: every image of the pool in use on either site -> (VM on A, VM on B); ``None``
            where no (single) VM uses it.
        findings: everything unsafe or ambiguous, blockers first.
    """

    pool: str
    site_a: str
    site_b: str
    pairs: tuple[Pair, ...]
    images: dict[str, tuple[VM | None, VM | None]]
    findings: tuple[Finding, ...]

    @property
    def blockers(self) -> tuple[Finding, ...]:
        """The findings that forbid failing back."""
        return tuple(f for f in self.findings if f.severity is Severity.BLOCKER)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings that only deserve a look."""
        return tuple(f for f in self.findings if f.severity is Severity.WARNING)

    @property
    def is_safe(self) -> bool:
        """True when no finding is a blocker."""
        return not self.blockers

    def pair_for_b(self, vm_id: int) -> Pair | None:
        """The pair whose VM on B has this id."""
        return next((p for p in self.pairs if p.vm_b.id == vm_id), None)

    def pair_for_a(self, vm_id: int) -> Pair | None:
        """The pair whose VM on A has this id."""
        return next((p for p in self.pairs if p.vm_a.id == vm_id), None)

    def raise_for_blockers(self) -> None:
        """Raise :class:`~ceph_failback.errors.SafetyError` listing the blockers, if any."""
        blockers = self.blockers
        if not blockers:
            return
        lines = "; ".join(str(f) for f in blockers)
        raise SafetyError(
            f"{len(blockers)} problem(s) make the failback unsafe: {lines}",
            pool=self.pool,
            hint="fix them, or give an explicit VM mapping where the disks are ambiguous",
        )


class _Builder:
    """Collects findings while :func:`map_sites` works, then sorts them."""

    def __init__(self) -> None:
        self.findings: list[Finding] = []

    def add(
        self,
        kind: FindingKind,
        severity: Severity,
        site: str,
        vm: int | None,
        image: str | None,
        message: str,
    ) -> None:
        finding = Finding(kind, severity, site, vm, image, message)
        if finding not in self.findings:
            self.findings.append(finding)

    def sorted(self) -> tuple[Finding, ...]:
        order = {Severity.BLOCKER: 0, Severity.WARNING: 1}
        return tuple(sorted(self.findings, key=lambda f: order[f.severity]))


def _is(vm: VM | None, other: VM) -> bool:
    return vm is not None and vm.id == other.id


@dataclass(frozen=True)
class _Pools:
    """The failback's pools, and how an image is named: bare for one pool, ``pool/image`` for
    several (:func:`~ceph_failback.ceph.pools.image_key`)."""

    names: tuple[str, ...]

    def key(self, disk: Disk) -> str:
        return f"{disk.pool}/{disk.image}" if len(self.names) > 1 else disk.image

    def spec(self, key: str) -> str:
        """``pool/image`` for a key."""
        return key if len(self.names) > 1 else f"{self.names[0]}/{key}"

    def __str__(self) -> str:
        return "+".join(self.names)


def _data_disks(vm: VM, pools: _Pools) -> tuple[Disk, ...]:
    """The VM's disks in the pools that hold its data: a read-only image (a CDROM, an immutable
    image) is written by no VM and may be shared by many; it has nothing to fail back."""
    return tuple(d for d in vm.disks_in(pools.names) if not d.is_read_only)


def _owners(vms: Iterable[VM], pools: _Pools, *, persistent_only: bool) -> dict[str, list[VM]]:
    owners: dict[str, list[VM]] = defaultdict(list)
    for vm in vms:
        for disk in _data_disks(vm, pools):
            if persistent_only and not disk.is_persistent:
                continue
            if vm not in owners[pools.key(disk)]:
                owners[pools.key(disk)].append(vm)
    return owners


def _single_owner(
    owners: list[VM], image: str, site: str, out: _Builder, *, preferred: set[int]
) -> VM | None:
    """The one VM owning ``image`` at ``site``, or None (and a finding) when ambiguous.

    DONE VMs count only when no live VM uses the image (a rerun after terminating on B), and then
    the newest wins: older DONE VMs are history, not competing owners.
    """
    live = [vm for vm in owners if not vm.is_done]
    candidates = live or sorted(owners, key=lambda vm: vm.id, reverse=True)[:1]
    if len(candidates) == 1:
        return candidates[0]
    chosen = [vm for vm in candidates if vm.id in preferred]
    ids = ", ".join(str(vm.id) for vm in candidates)
    if len(chosen) == 1:
        out.add(
            FindingKind.IMAGE_USED_TWICE,
            Severity.WARNING,
            site,
            chosen[0].id,
            image,
            f"image is a disk of VMs {ids}; the explicit mapping picks VM {chosen[0].id}, the "
            "others must stay stopped",
        )
        return chosen[0]
    for vm in candidates:
        out.add(
            FindingKind.IMAGE_USED_TWICE,
            Severity.BLOCKER,
            site,
            vm.id,
            image,
            f"image is a disk of VMs {ids} at the same site: which one owns it is ambiguous "
            "(give an explicit mapping)",
        )
    return None


def _not_stopped(vm: VM, site_b: str) -> str:
    """Why a VM on A that is not POWEROFF or UNDEPLOYED stops the failback, and what to do, in
    actions oned accepts in that state (src/dm/DispatchManagerActions.cc: poweroff and undeploy
    take RUNNING or UNKNOWN only, terminate any state, hold only PENDING)."""
    terminate = (f"terminate it ('onevm terminate {vm.id}': its persistent images stay) and "
                 "instantiate it again after the failback")
    if vm.is_done:
        return "it is DONE and cannot be resumed"
    if vm.state in ("SUSPENDED", "STOPPED"):
        return (f"its resume would restore saved memory over disks that changed on {site_b}, "
                "which corrupts file systems; oned refuses poweroff and undeploy in this state: "
                + terminate)
    if vm.state in ("PENDING", "HOLD"):
        hold = f"'onevm hold {vm.id}' keeps the scheduler from booting it on stale disks; " if (
            vm.state == "PENDING") else ""
        return (f"it is not deployed, and the failback resumes only POWEROFF or UNDEPLOYED VMs: "
                f"{hold}{terminate}")
    if vm.lcm_state == "RUNNING":
        return ("it may be writing to its disks, which the failback demotes and overwrites: "
                f"power it off ('onevm poweroff {vm.id}') or undeploy it")
    if vm.lcm_state == "UNKNOWN":
        return ("oned lost touch with its host, and the guest may still be running and writing "
                "to its disks: make sure it is off (fence the host), then "
                f"'onevm poweroff --hard {vm.id}'")
    if vm.lcm_state.endswith("_FAILURE"):
        return ("oned recorded a failed operation and refuses poweroff in this state: "
                f"'onevm recover --failure {vm.id}' or '--success' (as 'onevm show {vm.id}' "
                f"says) until it is POWEROFF or UNDEPLOYED, or {terminate}")
    return ("an operation is under way: wait for it to end, then power the VM off "
            f"('onevm poweroff {vm.id}') if it is RUNNING")


def map_sites(
    vms_a: Iterable[VM],
    vms_b: Iterable[VM],
    pool: str | Sequence[str],
    *,
    pairs: AbcMapping[int, int] | None = None,
    site_a: str = "site-a",
    site_b: str = "site-b",
) -> Mapping:
    """Pair the VMs of site B with those of site A through the images of ``pool`` (or of
    several pools: images are then named ``pool/image``).

    Args:
        vms_a: the VMs of site A (the home site, where VMs are resumed).
        vms_b: the VMs of site B (where VMs run now and are terminated).
        pool: the mirrored RBD pool, or several; disks in other pools are not failed back.
        pairs: an explicit mapping ``{vm_b_id: vm_a_id}`` that overrides or completes the
            automatic one (its images are then VM B's persistent images). Safety checks still
            apply to explicitly paired VMs.
        site_a: site A's name, for findings.
        site_b: site B's name, for findings.

    Returns:
        The :class:`Mapping`; look at ``mapping.blockers`` before acting.
    """
    vms_a = list(vms_a)
    vms_b = list(vms_b)
    pools = _Pools((pool,) if isinstance(pool, str) else tuple(pool))
    explicit = dict(pairs or {})
    out = _Builder()
    by_id_a = {vm.id: vm for vm in vms_a}
    by_id_b = {vm.id: vm for vm in vms_b}

    # A disk that cannot be named could be one of the pool's images: its VM is a blocker (and
    # the other VMs of the site are still mapped).
    for site, vms in ((site_a, vms_a), (site_b, vms_b)):
        for vm in vms:
            if vm.unreadable and not vm.is_done:
                out.add(
                    FindingKind.UNREADABLE_DISK,
                    Severity.BLOCKER,
                    site,
                    vm.id,
                    None,
                    "cannot tell which RBD image backs some of its disks ("
                    + "; ".join(vm.unreadable)
                    + f"): whether it uses pool {str(pools)!r}'s images cannot be checked (fix the "
                    "disk's attributes in oned, or waive unreadable-disk if it does not)",
                )

    # Terminating B's VM deletes its clones and volatile disks (in any pool), and their mirrored
    # copies on A.
    for vm in vms_b:
        if not vm.disks_in(pools.names):
            continue  # the failback does not concern it
        for disk in vm.disks:
            if not disk.deleted_on_terminate:
                continue
            image = pools.key(disk) if disk.pool in pools.names else None
            what = "a non-persistent clone" if disk.kind is DiskKind.CLONE else "a volatile disk"
            if vm.is_done:
                out.add(
                    FindingKind.NON_PERSISTENT_DISK,
                    Severity.WARNING,
                    site_b,
                    vm.id,
                    image,
                    f"disk {disk.disk_id} was {what} ({disk.spec}); the VM is DONE, so "
                    "OpenNebula has already deleted that image",
                )
                continue
            out.add(
                FindingKind.NON_PERSISTENT_DISK,
                Severity.BLOCKER,
                site_b,
                vm.id,
                image,
                f"disk {disk.disk_id} is {what}: terminating the VM makes OpenNebula delete "
                f"{disk.spec}, and rbd-mirror then deletes the copy on {site_a} "
                "(save it as a persistent image first)",
            )

    # Explicit pairs first: they decide ownership where the disks are ambiguous.
    chosen_pairs: list[Pair] = []
    paired_b: set[int] = set()
    paired_a: set[int] = set()
    for b_id, a_id in explicit.items():
        vm_b, vm_a = by_id_b.get(b_id), by_id_a.get(a_id)
        if vm_b is None:
            out.add(
                FindingKind.UNKNOWN_VM,
                Severity.BLOCKER,
                site_b,
                b_id,
                None,
                f"the explicit mapping names VM {b_id}, which is not among {site_b}'s VMs",
            )
        if vm_a is None:
            out.add(
                FindingKind.UNKNOWN_VM,
                Severity.BLOCKER,
                site_a,
                a_id,
                None,
                f"the explicit mapping names VM {a_id}, which is not among {site_a}'s VMs",
            )
        if vm_b is None or vm_a is None:
            continue
        if a_id in paired_a:
            out.add(
                FindingKind.EXPLICIT_PAIR,
                Severity.BLOCKER,
                site_a,
                a_id,
                None,
                f"the explicit mapping sends several VMs of {site_b} to VM {a_id}",
            )
            continue
        images = tuple(pools.key(d) for d in vm_b.disks_in(pools.names) if d.is_persistent)
        images_a = {pools.key(d) for d in _data_disks(vm_a, pools)}
        for image in images:
            if image not in images_a:
                out.add(
                    FindingKind.EXPLICIT_PAIR,
                    Severity.WARNING,
                    site_a,
                    a_id,
                    image,
                    f"explicitly paired with VM {b_id} of {site_b}, but VM {a_id} has no disk "
                    f"on {pools.spec(image)}: it will not see that image's failed-back data",
                )
        chosen_pairs.append(Pair(vm_a, vm_b, images, explicit=True))
        paired_b.add(b_id)
        paired_a.add(a_id)

    owners_a = _owners(vms_a, pools, persistent_only=False)
    owners_b = _owners(vms_b, pools, persistent_only=True)
    image_a: dict[str, VM | None] = {
        image: _single_owner(vms, image, site_a, out, preferred=paired_a)
        for image, vms in owners_a.items()
    }
    image_b: dict[str, VM | None] = {
        image: _single_owner(vms, image, site_b, out, preferred=paired_b)
        for image, vms in owners_b.items()
    }

    # Automatic pairs: every image of a VM on B must lead to one and the same VM on A.
    for vm_b in vms_b:
        if vm_b.id in paired_b:
            continue
        images = tuple(
            pools.key(d)
            for d in vm_b.disks_in(pools.names)
            if d.is_persistent and _is(image_b.get(pools.key(d)), vm_b)
        )
        if not images:
            continue
        targets: dict[int, VM] = {}
        for image in images:
            owner = image_a.get(image)
            if owner is not None:
                targets[owner.id] = owner
            elif image not in owners_a:
                out.add(
                    FindingKind.NO_VM_ON_A,
                    Severity.BLOCKER,
                    site_b,
                    vm_b.id,
                    image,
                    f"no VM on {site_a} has a disk on {pools.spec(image)}: nothing would resume with "
                    "it (give an explicit mapping)",
                )
        if len(targets) > 1:
            ids = ", ".join(str(i) for i in sorted(targets))
            out.add(
                FindingKind.SPLIT_VM,
                Severity.BLOCKER,
                site_b,
                vm_b.id,
                None,
                f"its disks belong to several VMs on {site_a} ({ids}): give an explicit mapping",
            )
            continue
        if not targets:
            continue
        vm_a = next(iter(targets.values()))
        if vm_a.id in paired_a:
            other = next(p.vm_b.id for p in chosen_pairs if p.vm_a.id == vm_a.id)
            out.add(
                FindingKind.SPLIT_VM,
                Severity.BLOCKER,
                site_a,
                vm_a.id,
                None,
                f"VMs {other} and {vm_b.id} of {site_b} both lead to this VM: give an explicit "
                "mapping",
            )
            continue
        chosen_pairs.append(Pair(vm_a, vm_b, images))
        paired_a.add(vm_a.id)
        paired_b.add(vm_b.id)

    # Site A: the VMs that would resume, and any other VM using the pool, must be shut down.
    for vm_a in vms_a:
        if not _data_disks(vm_a, pools):
            continue
        pair = next((p for p in chosen_pairs if p.vm_a.id == vm_a.id), None)
        if vm_a.is_done and pair is None:
            continue  # history (listed with include_done): it neither runs nor resumes
        if not vm_a.is_safely_stopped:
            out.add(
                FindingKind.VM_NOT_STOPPED,
                Severity.BLOCKER,
                site_a,
                vm_a.id,
                None,
                f"VM is {vm_a.status}: {_not_stopped(vm_a, site_b)}",
            )
        for disk in _data_disks(vm_a, pools):
            image = pools.key(disk)
            if pair is not None:
                if image in pair.images:
                    continue
                message = (
                    f"paired with VM {pair.vm_b.id} of {site_b}, which has no persistent disk "
                    f"on {pools.spec(image)}: VM {vm_a.id} would resume with that disk not "
                    "failed back"
                )
                # A volatile disk is scratch space (swap, tmp) by design: stale content there is
                # worth a look, not a stop; a stale image disk is lost data.
                if disk.kind is DiskKind.VOLATILE:
                    severity = Severity.WARNING
                    message += " (a volatile disk: swap or scratch space keeps its old content)"
                else:
                    severity = Severity.BLOCKER
                out.add(FindingKind.PARTIAL_PAIR, severity, site_a, vm_a.id, image, message)
            elif image not in owners_b:
                out.add(
                    FindingKind.NO_VM_ON_B,
                    Severity.WARNING,
                    site_a,
                    vm_a.id,
                    image,
                    f"no VM on {site_b} uses {pools.spec(image)}: the failback leaves it alone",
                )

        elsewhere = [d for d in vm_a.disks if d.pool not in pools.names and not d.is_read_only]
        if pair is not None and elsewhere:
            specs = ", ".join(f"{d.disk_id} ({d.spec})" for d in elsewhere)
            only_scratch = all(d.kind is DiskKind.VOLATILE for d in elsewhere)
            out.add(
                FindingKind.PARTIAL_PAIR,
                Severity.WARNING if only_scratch else Severity.BLOCKER,
                site_a,
                vm_a.id,
                None,
                f"disks {specs} are in other pools than {str(pools)!r}, which this failback does "
                f"not fail back (add their pools to it): VM {vm_a.id} would resume with them "
                f"as {site_a} left them"
                + (" (volatile: swap or scratch space keeps its old content)"
                   if only_scratch else ""),
            )

    by_image: dict[str, tuple[VM | None, VM | None]] = {}
    for image in sorted(set(owners_a) | set(owners_b)):
        by_image[image] = (image_a.get(image), image_b.get(image))
    for pair in chosen_pairs:
        for image in pair.images:
            by_image[image] = (pair.vm_a, pair.vm_b)

    return Mapping(
        pool=str(pools),
        site_a=site_a,
        site_b=site_b,
        pairs=tuple(chosen_pairs),
        images=by_image,
        findings=out.sorted(),
    )
