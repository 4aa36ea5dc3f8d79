"""The benchmark's clock on the oned stand-in (benchmarks/instrument.py) wraps the stand-in's
state changes: it must keep up with their signature (a mismatch once broke every baseline run,
and CI does not run the benchmark)."""

from __future__ import annotations

import inspect

from benchmarks.instrument import StandInClock
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
