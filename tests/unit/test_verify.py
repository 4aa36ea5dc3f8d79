"""Verification (failback/verify.py, ceph/content.py): both copies compared chunk by chunk before
a VM resumes, on in-memory sites; a copy altered on A behind the library's back is caught and its
VM stays down."""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.ceph.content import ContentDigest, digest, sample_offsets
from ceph_failback.errors import ConfigurationError, StepFailedError
from ceph_failback.failback import Event, EventKind
from ceph_failback.failback.verify import Bandwidth, Verify, compare
from ceph_failback.testing import MemoryWorld

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover" * 1000


def test_a_digest_reads_every_chunk_or_a_sample_the_same_on_both_sites() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    whole = digest(len(data), lambda o, n: data[o:o + n], chunk=65536)
    assert sorted(whole.chunks) == list(range(0, len(data), 65536)) and whole.read == len(data)
    offsets = sample_offsets(len(data), 4, "one-7", chunk=65536)
    assert offsets == sample_offsets(len(data), 4, "one-7", chunk=65536)  # the same each time
    assert len(offsets) == 4 and offsets[0] == 0 and offsets[-1] == len(data) - 65536
    assert sample_offsets(len(data), 100, "x", chunk=65536) == sorted(whole.chunks)
    some = digest(len(data), lambda o, n: data[o:o + n], chunk=65536, offsets=offsets)
    assert some.chunks == {o: whole.chunks[o] for o in offsets}


def test_the_first_difference_and_the_verdict() -> None:
    a = ContentDigest(10, 4, {0: "x", 4: "y", 8: "z"})
    assert a.first_difference(ContentDigest(10, 4, {0: "x", 4: "y", 8: "z"})) is None
    assert a.first_difference(ContentDigest(10, 4, {0: "x", 4: "Y", 8: "Z"})) == 4
    assert a.first_difference(ContentDigest(12, 4, a.chunks)) == -1
    check = compare("one-1", a, ContentDigest(10, 4, {0: "x", 4: "Y", 8: "z"}), site_a="a",
                    site_b="b")
    assert not check.equal and "offset 4" in check.detail
    assert compare("one-1", a, a, site_a="a", site_b="b").detail.startswith("equal (whole image")


def test_the_bandwidth_limit_holds() -> None:
    limit = Bandwidth(1_000_000)
    started = time.monotonic()
    for _ in range(3):
        limit(500_000)  # one second's worth passes at once, the rest at the rate
    assert 0.4 < time.monotonic() - started < 1.5


@pytest.mark.parametrize("kwargs", [{"sample": 0}, {"bandwidth": 0}, {"workers": 0},
                                    {"chunk": 10}])
def test_bad_options_are_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigurationError):
        Verify(**kwargs)


@pytest.fixture
def world() -> Iterator[MemoryWorld]:
    with MemoryWorld() as w:
        w.add_vm("db", disks=2)
        w.add_vm("web")
        w.disaster("unplanned", new_data=NEW)
        yield w


@pytest.mark.parametrize("pipeline", [True, False])
def test_equal_copies_are_verified_and_the_vms_resume(world: MemoryWorld, tmp_path: Path,
                                                      pipeline: bool) -> None:
    report = world.failback(tmp_path / "j.jsonl", verify=Verify()).run(pipeline=pipeline)
    assert report.complete, report
    assert all(i.verified for i in report.images)
    assert all(i.verification and i.verification.startswith("equal (whole image")
               for i in report.images)


@pytest.mark.parametrize("pipeline", [True, False])
def test_a_copy_altered_on_a_after_the_promote_keeps_its_vm_down(
        world: MemoryWorld, tmp_path: Path, pipeline: bool) -> None:
    db, web = world.vms
    victim = db.images[1]

    def tamper(event: Event) -> None:  # behind the library's back, right after the promote
        if (event.kind is EventKind.ACTION and event.step == "promote_a"
                and event.target == f"image:{victim}" and event.data.get("outcome") == "done"):
            world.ceph.write("site-a", victim, b"tampered on A")

    fb = world.failback(tmp_path / "j.jsonl", verify=Verify(), listeners=[tamper])
    with pytest.raises(StepFailedError) as info:
        fb.run(pipeline=pipeline)
    assert "differs" in info.value.failures[f"image:{victim}"] or "sizes differ" in (
        info.value.failures[f"image:{victim}"])
    assert world.oned_a.vm_state(db.vm_a) == ("POWEROFF", "LCM_INIT")  # not booted on it
    assert world.oned_a.vm_state(web.vm_a) == ("ACTIVE", "RUNNING")  # the other VM is home
    report = fb.report()
    assert not report.complete
    assert {i.name: i.verified for i in report.images} == {
        db.images[0]: True, victim: False, web.images[0]: True}


def test_verify_now_compares_the_present_copies(world: MemoryWorld, tmp_path: Path) -> None:
    fb = world.failback(tmp_path / "j.jsonl")
    assert fb.run().complete
    # The VMs run on A and write nothing here: both copies are B's last data.
    checks = fb.verify()
    assert set(checks) == set(world.images()) and all(c.equal for c in checks.values())
    sampled = fb.verify(world.images()[:1], Verify(sample=1))
    assert list(sampled) == world.images()[:1] and sampled[world.images()[0]].equal


def test_the_configuration_file_s_verify_table(tmp_path: Path) -> None:
    from ceph_failback.config import load_config

    from .test_cli import write_config

    path = write_config(tmp_path)
    path.write_text(path.read_text() + "\n[verify]\nsample = 8\nbandwidth_mb = 200\n")
    assert load_config(path).verify == Verify(sample=8, bandwidth=200e6)
    path.write_text(path.read_text().replace("sample = 8", "sample = 0.5"))
    with pytest.raises(ConfigurationError, match="verify.sample: must be a positive whole"):
        load_config(path)


def test_the_command_line_s_verify_options(tmp_path: Path) -> None:
    from ceph_failback.cli import _verify
    from ceph_failback.cli_parser import build_parser

    parse = build_parser().parse_args
    assert _verify(parse(["run", "--config", "x"]), None) is None
    assert _verify(parse(["run", "--config", "x", "--verify"]), None) == Verify()
    assert _verify(parse(["run", "--config", "x", "--verify-sample", "8"]),
                   Verify(bandwidth=1e6)) == Verify(sample=8, bandwidth=1e6)


def test_a_rerun_does_not_accept_a_copy_the_verification_rejected(world: MemoryWorld,
                                                                  tmp_path: Path) -> None:
    # After A's promote, B follows A: reading B again would make the altered copy pass. The
    # rerun compares A with B's digest journaled before the promote, and the VM stays down.
    db, _ = world.vms
    victim = db.images[1]

    def tamper(event: Event) -> None:
        if (event.kind is EventKind.ACTION and event.step == "promote_a"
                and event.target == f"image:{victim}" and event.data.get("outcome") == "done"):
            world.ceph.write("site-a", victim, b"tampered on A")

    with pytest.raises(StepFailedError):
        world.failback(tmp_path / "j.jsonl", verify=Verify(), listeners=[tamper]).run()
    assert world.ceph.data("site-b", victim) == b"tampered on A"  # B followed A
    again = world.failback(tmp_path / "j.jsonl", verify=Verify())
    with pytest.raises(StepFailedError) as info:
        again.run()
    assert "before the promote" in info.value.failures[f"image:{victim}"]
    assert world.oned_a.vm_state(db.vm_a) == ("POWEROFF", "LCM_INIT")


def test_a_rerun_verifies_an_unaltered_copy_against_b_s_earlier_digest(
        world: MemoryWorld, tmp_path: Path) -> None:
    # A crash between the promote and the check: the rerun compares with the journaled digest.
    calls: list[str] = []

    def crash(event: Event) -> None:
        if event.kind is EventKind.ACTION and event.step == "promote_a" and not calls:
            calls.append("x")
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        world.failback(tmp_path / "j.jsonl", verify=Verify(sample=1), listeners=[crash]).run(
            pipeline=False)
    report = world.failback(tmp_path / "j.jsonl", verify=Verify(sample=1)).run(pipeline=False)
    assert report.complete, report
    assert any("digest taken before the promote" in (i.verification or "")
               for i in report.images), report
