"""Cross-site mapping: pairs through RBD images, and every unsafe or ambiguous case as a finding."""

from __future__ import annotations

import pytest

from ceph_failback.errors import SafetyError
from ceph_failback.lab.oned import Delays, OnedStandIn, VolatileDisk
from ceph_failback.opennebula import (
    VM,
    Disk,
    DiskKind,
    FindingKind,
    OpenNebulaSite,
    Severity,
    map_sites,
)

POOL = "one"


def pers(disk_id: int, image: str, pool: str = POOL) -> Disk:
    return Disk(disk_id, int(image.split("-")[1]), pool, image, DiskKind.PERSISTENT)


def clone(disk_id: int, image: str) -> Disk:
    return Disk(disk_id, 1, POOL, image, DiskKind.CLONE)


def volatile(disk_id: int, vm_id: int) -> Disk:
    return Disk(disk_id, None, POOL, f"one-sys-{vm_id}-{disk_id}", DiskKind.VOLATILE)


def off(vm_id: int, *disks: Disk, state: str = "POWEROFF") -> VM:
    return VM(vm_id, f"a{vm_id}", state, "LCM_INIT", disks)


def running(vm_id: int, *disks: Disk) -> VM:
    return VM(vm_id, f"b{vm_id}", "ACTIVE", "RUNNING", disks)


def ids(entry: tuple[VM | None, VM | None]) -> tuple[int | None, int | None]:
    return tuple(None if vm is None else vm.id for vm in entry)  # type: ignore[return-value]


def kinds(mapping) -> list[tuple[FindingKind, Severity, str, int | None, str | None]]:
    return [(f.kind, f.severity, f.site, f.vm, f.image) for f in mapping.findings]


def test_clean_two_site_setup():
    a = [off(3, pers(0, "one-2"), pers(1, "one-5")), off(4, pers(0, "one-7"), state="UNDEPLOYED")]
    b = [running(10, pers(0, "one-2"), pers(1, "one-5")), running(11, pers(0, "one-7"))]
    mapping = map_sites(a, b, POOL)
    assert mapping.findings == ()
    assert mapping.is_safe
    assert [(p.vm_a.id, p.vm_b.id, p.images, p.explicit) for p in mapping.pairs] == [
        (3, 10, ("one-2", "one-5"), False),
        (4, 11, ("one-7",), False),
    ]
    assert {k: ids(v) for k, v in mapping.images.items()} == {
        "one-2": (3, 10),
        "one-5": (3, 10),
        "one-7": (4, 11),
    }
    pair_b, pair_a = mapping.pair_for_b(11), mapping.pair_for_a(3)
    assert pair_b is not None and pair_b.vm_a.id == 4
    assert pair_a is not None and pair_a.vm_b.id == 10
    assert mapping.pair_for_b(99) is None
    mapping.raise_for_blockers()  # nothing to raise


def test_disks_in_other_pools_pair_nothing_but_are_not_ignored():
    # Issue 13 case 2: the pairing uses the pool's images only; a clone in another pool is still
    # deleted by terminate (blocker), and a data disk of A's VM in another pool would resume
    # stale (partial pair; a volatile one is scratch space: a warning).
    a = [off(3, pers(0, "one-2"), pers(1, "one-9", pool="other")),
         off(4, pers(0, "one-7"), Disk(1, None, "other", "one-sys-4-1", DiskKind.VOLATILE))]
    b = [running(10, pers(0, "one-2"), Disk(1, 1, "other", "one-1-10-1", DiskKind.CLONE)),
         running(11, pers(0, "one-7"))]
    mapping = map_sites(a, b, POOL, site_a="site-a", site_b="site-b")
    assert [(p.vm_a.id, p.vm_b.id, p.images) for p in mapping.pairs] == [
        (3, 10, ("one-2",)), (4, 11, ("one-7",))]
    assert kinds(mapping) == [
        (FindingKind.NON_PERSISTENT_DISK, Severity.BLOCKER, "site-b", 10, None),
        (FindingKind.PARTIAL_PAIR, Severity.BLOCKER, "site-a", 3, None),
        (FindingKind.PARTIAL_PAIR, Severity.WARNING, "site-a", 4, None),
    ]
    assert "other/one-1-10-1" in mapping.findings[0].message
    assert "1 (other/one-9)" in mapping.findings[1].message
    # A VM on B that does not use the pool is none of this failback's business.
    alone = map_sites([], [running(12, Disk(0, 1, "other", "one-1-12-0", DiskKind.CLONE))], POOL)
    assert alone.findings == ()


def test_image_used_by_two_vms_at_one_site_is_a_blocker():
    a = [off(3, pers(0, "one-2")), off(4, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2"))]
    mapping = map_sites(a, b, POOL, site_a="site-a", site_b="site-b")
    assert kinds(mapping) == [
        (FindingKind.IMAGE_USED_TWICE, Severity.BLOCKER, "site-a", 3, "one-2"),
        (FindingKind.IMAGE_USED_TWICE, Severity.BLOCKER, "site-a", 4, "one-2"),
    ]
    assert mapping.pairs == ()
    assert mapping.images["one-2"] == (None, b[0])
    assert "VMs 3, 4" in mapping.findings[0].message


def test_image_used_twice_on_b_is_a_blocker():
    a = [off(3, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2")), running(11, pers(0, "one-2"))]
    mapping = map_sites(a, b, POOL)
    assert {(f.kind, f.site, f.vm) for f in mapping.blockers} == {
        (FindingKind.IMAGE_USED_TWICE, "site-b", 10),
        (FindingKind.IMAGE_USED_TWICE, "site-b", 11),
    }


def test_clone_or_volatile_disk_on_b_is_a_blocker():
    a = [off(3, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2"), clone(1, "one-1-10-1"), volatile(2, 10))]
    mapping = map_sites(a, b, POOL)
    assert kinds(mapping) == [
        (FindingKind.NON_PERSISTENT_DISK, Severity.BLOCKER, "site-b", 10, "one-1-10-1"),
        (FindingKind.NON_PERSISTENT_DISK, Severity.BLOCKER, "site-b", 10, "one-sys-10-2"),
    ]
    assert "delete one/one-1-10-1" in mapping.findings[0].message
    assert "copy on site-a" in mapping.findings[0].message
    # The VM is still paired through its persistent disk; the blockers stop the failback.
    assert mapping.pairs[0].images == ("one-2",)
    assert not mapping.is_safe


def test_clone_on_an_already_done_vm_on_b_is_only_a_warning():
    b = [VM(10, "b", "DONE", "LCM_INIT", [pers(0, "one-2"), clone(1, "one-1-10-1")])]
    mapping = map_sites([off(3, pers(0, "one-2"))], b, POOL)
    assert kinds(mapping) == [
        (FindingKind.NON_PERSISTENT_DISK, Severity.WARNING, "site-b", 10, "one-1-10-1")
    ]
    assert mapping.is_safe and mapping.pairs[0].vm_b.id == 10


@pytest.mark.parametrize(
    "state, lcm, words",
    [
        # Each advice is an action oned accepts in that state (DispatchManagerActions.cc).
        ("ACTIVE", "RUNNING", "'onevm poweroff 3'"),
        ("ACTIVE", "UNKNOWN", "fence the host), then 'onevm poweroff --hard 3'"),
        ("PENDING", "LCM_INIT", "'onevm hold 3'"),
        ("HOLD", "LCM_INIT", "'onevm terminate 3'"),
        ("SUSPENDED", "LCM_INIT", "saved memory"),
        ("SUSPENDED", "LCM_INIT", "'onevm terminate 3'"),
        ("STOPPED", "LCM_INIT", "refuses poweroff and undeploy"),
        ("ACTIVE", "BOOT_FAILURE", "'onevm recover --failure 3'"),
        ("ACTIVE", "PROLOG", "wait for it to end"),
        ("DONE", "LCM_INIT", "cannot be resumed"),
    ],
)
def test_vm_on_a_not_safely_stopped_is_a_blocker(state, lcm, words):
    a = [VM(3, "a", state, lcm, [pers(0, "one-2")])]
    mapping = map_sites(a, [running(10, pers(0, "one-2"))], POOL)
    assert kinds(mapping) == [(FindingKind.VM_NOT_STOPPED, Severity.BLOCKER, "site-a", 3, None)]
    assert words in mapping.findings[0].message


def test_unpaired_running_vm_on_a_using_the_pool_is_a_blocker_too():
    a = [off(3, pers(0, "one-2")), running(4, pers(0, "one-8"))]
    mapping = map_sites(a, [running(10, pers(0, "one-2"))], POOL)
    assert (FindingKind.VM_NOT_STOPPED, Severity.BLOCKER, "site-a", 4, None) in kinds(mapping)
    assert (FindingKind.NO_VM_ON_B, Severity.WARNING, "site-a", 4, "one-8") in kinds(mapping)


def test_image_with_no_vm_on_a_is_a_blocker():
    mapping = map_sites(
        [off(3, pers(0, "one-2"))],
        [running(10, pers(0, "one-2")), running(11, pers(0, "one-9"))],
        POOL,
    )
    assert kinds(mapping) == [(FindingKind.NO_VM_ON_A, Severity.BLOCKER, "site-b", 11, "one-9")]
    assert ids(mapping.images["one-9"]) == (None, 11)


def test_image_with_no_vm_on_b_is_a_warning():
    mapping = map_sites(
        [off(3, pers(0, "one-2")), off(4, pers(0, "one-4"))], [running(10, pers(0, "one-2"))], POOL
    )
    assert kinds(mapping) == [(FindingKind.NO_VM_ON_B, Severity.WARNING, "site-a", 4, "one-4")]
    assert mapping.is_safe
    assert ids(mapping.images["one-4"]) == (4, None)


def test_vm_on_b_split_across_two_vms_on_a_is_a_blocker():
    a = [off(3, pers(0, "one-2")), off(4, pers(0, "one-5"))]
    b = [running(10, pers(0, "one-2"), pers(1, "one-5"))]
    mapping = map_sites(a, b, POOL)
    assert kinds(mapping) == [(FindingKind.SPLIT_VM, Severity.BLOCKER, "site-b", 10, None)]
    assert mapping.pairs == ()


def test_two_vms_on_b_leading_to_one_vm_on_a_is_a_blocker():
    a = [off(3, pers(0, "one-2"), pers(1, "one-5"))]
    b = [running(10, pers(0, "one-2")), running(11, pers(0, "one-5"))]
    mapping = map_sites(a, b, POOL)
    assert (FindingKind.SPLIT_VM, Severity.BLOCKER, "site-a", 3, None) in kinds(mapping)


def test_partial_pair_blocks_for_image_disks_and_warns_for_volatile_ones():
    a = [off(3, pers(0, "one-2"), clone(1, "one-1-3-1"), volatile(2, 3))]
    mapping = map_sites(a, [running(10, pers(0, "one-2"))], POOL)
    assert kinds(mapping) == [
        (FindingKind.PARTIAL_PAIR, Severity.BLOCKER, "site-a", 3, "one-1-3-1"),
        (FindingKind.PARTIAL_PAIR, Severity.WARNING, "site-a", 3, "one-sys-3-2"),
    ]


def test_clone_on_a_matches_its_persistent_registration_on_b():
    # The failover registered A's clone one-1-3-0 as a persistent image on B.
    mapping = map_sites([off(3, clone(0, "one-1-3-0"))], [running(10, pers(0, "one-1-3-0"))], POOL)
    assert mapping.findings == ()
    assert mapping.pairs[0].images == ("one-1-3-0",)


def test_rerun_after_terminating_on_b_keeps_the_pairs():
    done_b = VM(10, "b", "DONE", "LCM_INIT", [pers(0, "one-2")])
    older = VM(7, "b-old", "DONE", "LCM_INIT", [pers(0, "one-2")])
    mapping = map_sites([off(3, pers(0, "one-2"))], [done_b, older], POOL)
    assert mapping.findings == ()
    assert mapping.pairs[0].vm_b.id == 10  # the newest DONE VM; history is not a competitor
    live = running(12, pers(0, "one-2"))
    mapping = map_sites([off(3, pers(0, "one-2"))], [done_b, live], POOL)
    assert mapping.findings == () and mapping.pairs[0].vm_b.id == 12


def test_done_vms_on_a_are_history_unless_they_are_the_only_owner():
    old = VM(1, "old", "DONE", "LCM_INIT", [pers(0, "one-2")])
    mapping = map_sites([old, off(3, pers(0, "one-2"))], [running(10, pers(0, "one-2"))], POOL)
    assert mapping.findings == () and mapping.pairs[0].vm_a.id == 3
    mapping = map_sites([old], [running(10, pers(0, "one-2"))], POOL)
    assert kinds(mapping) == [(FindingKind.VM_NOT_STOPPED, Severity.BLOCKER, "site-a", 1, None)]


def test_explicit_pair_resolves_an_ambiguity():
    a = [off(3, pers(0, "one-2")), off(4, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2"))]
    mapping = map_sites(a, b, POOL, pairs={10: 4})
    assert mapping.is_safe
    assert [(p.vm_a.id, p.vm_b.id, p.explicit) for p in mapping.pairs] == [(4, 10, True)]
    assert kinds(mapping) == [
        (FindingKind.IMAGE_USED_TWICE, Severity.WARNING, "site-a", 4, "one-2")
    ]
    assert ids(mapping.images["one-2"]) == (4, 10)


def test_explicit_pair_completes_a_missing_correspondence():
    a = [off(3, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-9"))]
    assert not map_sites(a, b, POOL).is_safe
    mapping = map_sites(a, b, POOL, pairs={10: 3})
    assert [(p.vm_a.id, p.vm_b.id, p.images) for p in mapping.pairs] == [(3, 10, ("one-9",))]
    assert (FindingKind.EXPLICIT_PAIR, Severity.WARNING, "site-a", 3, "one-9") in kinds(mapping)
    # VM 3's own disk one-2 is not part of the pair: resuming it would use a stale one-2.
    assert (FindingKind.PARTIAL_PAIR, Severity.BLOCKER, "site-a", 3, "one-2") in kinds(mapping)


def test_explicit_pair_does_not_bypass_safety():
    a = [running(3, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2"), volatile(1, 10))]
    mapping = map_sites(a, b, POOL, pairs={10: 3})
    assert {f.kind for f in mapping.blockers} == {
        FindingKind.VM_NOT_STOPPED,
        FindingKind.NON_PERSISTENT_DISK,
    }


def test_explicit_pair_naming_unknown_or_reused_vms():
    a = [off(3, pers(0, "one-2"))]
    b = [running(10, pers(0, "one-2")), running(11, pers(0, "one-5")), running(12)]
    mapping = map_sites(a, b, POOL, pairs={10: 3, 11: 3, 99: 3, 12: 98})
    found = kinds(mapping)
    assert (FindingKind.UNKNOWN_VM, Severity.BLOCKER, "site-b", 99, None) in found
    assert (FindingKind.UNKNOWN_VM, Severity.BLOCKER, "site-a", 98, None) in found
    assert (FindingKind.EXPLICIT_PAIR, Severity.BLOCKER, "site-a", 3, None) in found
    assert [(p.vm_a.id, p.vm_b.id) for p in mapping.pairs] == [(3, 10)]


def test_findings_are_sorted_blockers_first_and_raise_for_blockers():
    a = [off(3, pers(0, "one-2")), off(4, pers(0, "one-4")), running(5, pers(0, "one-6"))]
    b = [running(10, pers(0, "one-2")), running(6, pers(0, "one-6"))]
    mapping = map_sites(a, b, POOL)
    severities = [f.severity for f in mapping.findings]
    assert severities == sorted(severities, key=lambda s: s is Severity.WARNING)
    assert mapping.warnings and mapping.blockers
    with pytest.raises(SafetyError) as err:
        mapping.raise_for_blockers()
    assert "VM 5" in str(err.value) and "blocker" in str(err.value)
    assert err.value.pool == POOL
    assert str(mapping.blockers[0]).startswith("blocker: site 'site-a', VM 5")


def test_mapping_two_stand_in_sites_end_to_end():
    """Two oned stand-ins (site A after the disaster, site B after the failover), read through
    OpenNebulaSite, then mapped."""
    with (
        OnedStandIn(name="site-a", delays=Delays.uniform(0.02)) as oned_a,
        OnedStandIn(name="site-b", delays=Delays.uniform(0.02)) as oned_b,
    ):
        # Site A: the original VMs, powered off; a clone disk and a persistent one.
        os_a = oned_a.add_image("os", persistent=False)
        data_a = oned_a.add_image("data", persistent=True)
        web = oned_a.add_vm("web", disks=[os_a, data_a], state="POWEROFF")
        # Site B: the mirrored images registered as persistent images, under A's RBD names.
        os_b = oned_b.add_image("os-copy", persistent=True, source=f"one/one-{os_a}-{web}-0")
        data_b = oned_b.add_image("data-copy", persistent=True, source=f"one/one-{data_a}")
        web_b = oned_b.add_vm("web", disks=[data_b, os_b, VolatileDisk()])
        site_a = OpenNebulaSite("site-a", oned_a.endpoint, credentials=oned_a.session)
        site_b = OpenNebulaSite("site-b", oned_b.endpoint, credentials=oned_b.session)
        mapping = map_sites(site_a.vms(), site_b.vms(), "one", site_a="site-a", site_b="site-b")
        assert [(p.vm_a.id, p.vm_b.id, sorted(p.images)) for p in mapping.pairs] == [
            (web, web_b, sorted([f"one-{os_a}-{web}-0", f"one-{data_a}"]))
        ]
        # B's volatile disk would be deleted (and its mirror on A with it) by the terminate.
        assert kinds(mapping) == [
            (
                FindingKind.NON_PERSISTENT_DISK,
                Severity.BLOCKER,
                "site-b",
                web_b,
                f"one-sys-{web_b}-2",
            )
        ]


def iso(disk_id: int, image: str = "one-9") -> Disk:
    return Disk(disk_id, 9, POOL, image, DiskKind.READ_ONLY)


def test_read_only_images_pair_nothing_and_block_nothing():
    # A CDROM (or IMMUTABLE) image shared by several VMs on both sites, and a running VM on A
    # whose only disk in the pool is that ISO: no image-used-twice, no split VM, no
    # vm-not-stopped, no partial pair; the ISO is in no pair and in no image list.
    a = [off(3, pers(0, "one-2"), iso(1)), off(4, pers(0, "one-7"), iso(1)),
         VM(5, "a5", "ACTIVE", "RUNNING", (iso(0),))]
    b = [running(10, pers(0, "one-2"), iso(1)), running(11, pers(0, "one-7"), iso(1))]
    mapping = map_sites(a, b, POOL)
    assert mapping.findings == ()
    assert [(p.vm_a.id, p.vm_b.id, p.images) for p in mapping.pairs] == [
        (3, 10, ("one-2",)), (4, 11, ("one-7",))]
    assert "one-9" not in mapping.images
