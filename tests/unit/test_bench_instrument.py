"""The benchmark's clock on the oned stand-in (benchmarks/instrument.py) wraps the stand-in's
state changes: it must keep up with their signature (a mismatch once broke every baseline run,
and CI does not run the benchmark)."""

from __future__ import annotations

import inspect

import pytest

from benchmarks.instrument import CallCounter, StandInClock, _Counted
from ceph_failback.lab.oned import Delays, OnedStandIn


def test_the_clock_wraps_the_stand_ins_state_changes_and_actions() -> None:
    oned = OnedStandIn(name="site-x", delays=Delays.uniform(0.0))
    original_enter = inspect.signature(oned._enter)
    original_action = inspect.signature(oned.vm_action)
    clock = StandInClock(oned)
    def shape(sig: inspect.Signature) -> list[tuple[object, bool]]:
        return [(p.kind, p.default is p.empty) for p in sig.parameters.values()]

    assert shape(inspect.signature(oned._enter)) == shape(original_enter)
    assert shape(inspect.signature(oned.vm_action)) == shape(original_action)
    assert clock.oned is oned


def test_a_counted_image_is_a_context_manager_like_the_bindings() -> None:
    """``with rbd.Image(...) as image`` (ceph/promotion.py) must work on a counted image."""
    events: list[str] = []

    class Image:
        def __enter__(self) -> Image:
            events.append("enter")
            return self

        def __exit__(self, *exc: object) -> None:
            events.append("exit")

        def mirror_image_get_info(self) -> dict[str, object]:
            return {"primary": True}

    with _Counted(Image(), CallCounter(), "Image") as image:
        assert image.mirror_image_get_info() == {"primary": True}
    assert events == ["enter", "exit"]


def test_the_benchmark_runs_each_kind_of_mirroring_asked_for() -> None:
    from benchmarks.bench import parse_args

    args = parse_args([])
    assert args.kinds == [("journal", "lab"), ("journal", "default"), ("snapshot", "default")]
    assert args.ns == [1, 10, 50]
    assert parse_args(["--kinds", "snapshot@lab"]).kinds == [("snapshot", "lab")]
    with pytest.raises(SystemExit):
        parse_args(["--kinds", "snapshot"])
