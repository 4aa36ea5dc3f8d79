"""Hooks (failback/hooks.py) on in-memory sites: where each runs, once each across a failure and
a resume, the error policies, time limits, commands with their environment, the configuration
file and the command line."""

from __future__ import annotations

import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.errors import (
    ConfigurationError,
    HookFailedError,
    SafetyError,
    StepFailedError,
)
from ceph_failback.failback.hooks import Hook, HookCall
from ceph_failback.testing import MemoryWorld

warnings.filterwarnings("ignore", module="requests")

NEW = b"written on B after the failover"


class Recorder:
    """Callable hooks that note (name, vm_b, state of that VM on B and A) when they run."""

    def __init__(self, world: MemoryWorld) -> None:
        self.world = world
        self.calls: list[tuple[str, int | None, tuple[str, str] | None, tuple[str, str] | None,
                               dict[str, tuple[str, str]]]] = []
        self.lock = threading.Lock()
        self.fail: set[str] = set()

    def hook(self, when: str, name: str, **kw) -> Hook:
        def action(call: HookCall) -> None:
            vm = next((v for v in self.world.vms if v.vm_b == call.vm_b), None)
            with self.lock:
                self.calls.append((name, call.vm_b,
                                   self.world.oned_b.vm_state(vm.vm_b) if vm else None,
                                   self.world.oned_a.vm_state(vm.vm_a) if vm else None,
                                   {v.name: self.world.oned_a.vm_state(v.vm_a)
                                    for v in self.world.vms}))
            if name in self.fail:
                raise RuntimeError(f"{name} says no")
        action.__name__ = name
        return Hook(when, action, **kw)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


@pytest.fixture
def web() -> Iterator[MemoryWorld]:
    with MemoryWorld() as world:
        for name in ("db", "app", "mail"):
            world.add_vm(name)
        db, app, _ = world.vms
        world.oned_a.add_service("web", {"db": [db.vm_a], "app": [app.vm_a]},
                                 parents={"app": ["db"]})
        world.disaster("unplanned", new_data=NEW)
        yield world


def hooks_for(rec: Recorder, world: MemoryWorld) -> list[Hook]:
    db, app, mail = world.vms
    return [rec.hook("before_run", "start"),
            rec.hook("before_terminate", "drain-all"),
            rec.hook("before_terminate", "drain-app", group="web/app"),
            rec.hook("before_terminate", "stop-mail", vm=mail.vm_b),
            rec.hook("after_resume", "check-db", vm=db.vm_b),
            rec.hook("after_resume", "web-up", group="web/app"),
            rec.hook("after_resume", "all-up"),
            rec.hook("after_run", "end")]


@pytest.mark.parametrize("pipeline", [True, False])
def test_each_hook_runs_once_at_its_point(web: MemoryWorld, tmp_path: Path,
                                          pipeline: bool) -> None:
    rec = Recorder(web)
    db, app, mail = web.vms
    fb = web.failback(tmp_path / "j.jsonl", hooks=hooks_for(rec, web))
    report = fb.run(pipeline=pipeline)
    assert report.complete, report
    assert sorted(rec.names()) == sorted(["start", "drain-all", "drain-app", "stop-mail",
                                          "check-db", "web-up", "all-up", "end"])
    by = {c[0]: c for c in rec.calls}
    names = rec.names()
    assert names[0] == "start" and names[-1] == "end"
    assert names.index("drain-all") == 1  # before the first VM stops
    running, done = ("ACTIVE", "RUNNING"), ("DONE", "LCM_INIT")
    assert by["drain-app"][1] is None  # a group's hook runs for the group, told no VM
    drained = fb.journal.last(step="hook", event="done",
                              target="hook:before_terminate:drain-app@group:web/app")
    stopped = fb.journal.last(step="terminate_b", event="intent", target=f"vm:site-b:{app.vm_b}")
    assert drained is not None and stopped is not None and drained.time <= stopped.time
    assert by["drain-all"][1] is None
    assert by["stop-mail"][2] == running
    assert by["check-db"][3] == running  # after db runs on A
    assert by["web-up"][1] is None and by["web-up"][4]["app"] == running  # the group's, after
    assert by["drain-all"][4] == {"db": ("POWEROFF", "LCM_INIT"), "app": ("POWEROFF", "LCM_INIT"),
                                  "mail": ("POWEROFF", "LCM_INIT")}
    assert set(by["all-up"][4].values()) == {running}
    assert names.index("all-up") > max(names.index("check-db"), names.index("web-up"))
    assert all(web.oned_a.vm_state(v.vm_a) == running for v in (db, app, mail))
    assert web.oned_b.vm_state(app.vm_b) == done
    assert [h.outcome for h in report.hooks] == ["done"] * 8
    # A second run repeats no hook.
    web.failback(tmp_path / "j.jsonl", hooks=hooks_for(rec, web)).run(pipeline=pipeline)
    assert len(rec.calls) == 8


def test_a_failing_hook_stops_what_waits_for_it_and_the_rerun_goes_on(
        web: MemoryWorld, tmp_path: Path) -> None:
    rec = Recorder(web)
    rec.fail.add("check-db")  # db runs on A, but the hook says the database is not right
    db, app, mail = web.vms
    fb = web.failback(tmp_path / "j.jsonl", hooks=hooks_for(rec, web))
    with pytest.raises(StepFailedError) as info:
        fb.run()
    failures = info.value.failures
    assert "check-db" in failures[f"vm:site-a:{db.vm_a}"]
    assert "not resumed on site-a" in failures[f"vm:site-a:{app.vm_a}"]
    assert web.oned_a.vm_state(app.vm_a) == ("POWEROFF", "LCM_INIT")
    assert "end" not in rec.names() and "all-up" not in rec.names()
    report = fb.report()
    assert not report.complete
    assert {h.target: h.outcome for h in report.hooks}[
        f"hook:after_resume:check-db@vm:{db.vm_b}"] == "failed"
    rec.fail.clear()
    report = web.failback(tmp_path / "j.jsonl", hooks=hooks_for(rec, web)).run()
    assert report.complete, report
    counts = {n: rec.names().count(n) for n in set(rec.names())}
    assert counts == {"start": 1, "drain-all": 1, "drain-app": 1, "stop-mail": 1,
                      "check-db": 2, "web-up": 1, "all-up": 1, "end": 1}
    assert web.oned_a.vm_state(app.vm_a) == ("ACTIVE", "RUNNING")


def test_a_failing_hook_under_continue_is_journaled_and_the_run_goes_on(
        web: MemoryWorld, tmp_path: Path) -> None:
    rec = Recorder(web)
    rec.fail.add("drain-all")
    hooks = [rec.hook("before_terminate", "drain-all", on_error="continue")]
    report = web.failback(tmp_path / "j.jsonl", hooks=hooks).run()
    assert report.complete, report
    (hook,) = report.hooks
    assert hook.outcome == "failed" and "says no" in (hook.error or "")


def test_a_before_run_hook_that_fails_changes_nothing(web: MemoryWorld, tmp_path: Path) -> None:
    rec = Recorder(web)
    rec.fail.add("start")
    with pytest.raises(HookFailedError, match="hook 'start' .before_run, failback. failed"):
        web.failback(tmp_path / "j.jsonl", hooks=[rec.hook("before_run", "start")]).run()
    assert not [c for c in web.ceph.calls if c[1] in ("demote", "resync")]
    assert all(web.oned_b.vm_state(v.vm_b) == ("ACTIVE", "RUNNING") for v in web.vms)


def test_a_command_hook_gets_its_environment_and_its_output_is_kept(
        web: MemoryWorld, tmp_path: Path) -> None:
    script = tmp_path / "hook.py"
    script.write_text("import os, sys\n"
                      "print('vm', os.environ['FAILBACK_VM_B'], os.environ['FAILBACK_GROUP'],"
                      " os.environ['FAILBACK_WHEN'], os.environ['FAILBACK_SITE_A'])\n"
                      "sys.exit(int(os.environ.get('HOOK_EXIT', '0')))\n")
    db = web.vms[0]
    hook = Hook("before_terminate", [sys.executable, str(script)], vm=db.vm_b, name="drain")
    fb = web.failback(tmp_path / "j.jsonl", hooks=[hook])
    assert fb.run().complete
    done = fb.journal.last(step="hook", event="done")
    assert done is not None
    assert done.data["output"].strip() == f"vm {db.vm_b} web/db before_terminate site-a"


def test_a_command_that_fails_or_hangs_is_a_failure(tmp_path: Path) -> None:
    from ceph_failback.failback.hooks import _execute

    call = HookCall("h", "after_run", "site-a", "site-b", "one", "j.jsonl")
    error, output = _execute(Hook("after_run", [sys.executable, "-c",
                                                "print('boom'); raise SystemExit(3)"]), call)
    assert error == "exited with 3" and output.strip() == "boom"
    error, _ = _execute(Hook("after_run", [sys.executable, "-c", "import time; time.sleep(30)"],
                             timeout=0.5), call)
    assert error == "killed after 0.5s"
    error, _ = _execute(Hook("after_run", "/nonexistent/hook"), call)
    assert error is not None and "cannot run '/nonexistent/hook'" in error
    error, _ = _execute(Hook("after_run", lambda c: threading.Event().wait(5), timeout=0.2), call)
    assert error == "did not return within 0.2s (left running)"


def test_a_hook_naming_an_unknown_group_or_vm_is_a_blocker(web: MemoryWorld,
                                                            tmp_path: Path) -> None:
    hooks = [Hook("before_terminate", "true", group="web/nosuch"),
             Hook("after_resume", "true", vm=999)]
    fb = web.failback(tmp_path / "j.jsonl", hooks=hooks)
    assert [b.kind for b in fb.plan().unwaived] == ["hook-target-unknown"] * 2
    with pytest.raises(SafetyError):
        fb.run()


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"when": "later"}, "unknown point 'later'"),
    ({"on_error": "ignore"}, "on_error must be"),
    ({"group": "g", "vm": 3}, "not both"),
    ({"when": "after_run", "vm": 3}, "takes no group or VM"),
    ({"timeout": 0}, "timeout must be positive"),
    ({"action": ""}, "empty command"),
])
def test_a_malformed_hook_is_refused(kwargs: dict, says: str) -> None:
    args = {"when": "after_resume", "action": "true", **kwargs}
    with pytest.raises(ConfigurationError, match=says):
        Hook(args.pop("when"), args.pop("action"), **args)


def test_hooks_from_the_configuration_file_and_the_command_line(tmp_path: Path) -> None:
    from ceph_failback.cli_parser import build_parser
    from ceph_failback.config import load_config

    from .test_cli import write_config

    path = write_config(tmp_path)
    path.write_text(path.read_text() + '\n[[hooks]]\nwhen = "before_terminate"\n'
                    'command = ["/usr/local/bin/drain", "--fast"]\ngroup = "web/lb"\n'
                    'timeout = 30\non_error = "continue"\n')
    (hook,) = load_config(path).hooks
    assert (hook.point.value, hook.argv, hook.group, hook.timeout, hook.on_error, hook.label) == (
        "before_terminate", ["/usr/local/bin/drain", "--fast"], "web/lb", 30.0, "continue",
        "drain")
    path.write_text(path.read_text() + '\n[[hooks]]\nwhen = "soon"\ncommand = "x"\n')
    with pytest.raises(ConfigurationError, match=r"hooks\[2\]: hook 'x': unknown point 'soon'"):
        load_config(path)
    args = build_parser().parse_args(["run", "--config", "x.toml",
                                      "--hook", "after_run=/usr/bin/notify done"])
    (cli_hook,) = args.hook
    assert cli_hook.argv == ["/usr/bin/notify", "done"] and cli_hook.point.value == "after_run"


def test_a_continue_hook_that_fails_runs_once_not_once_per_vm(web: MemoryWorld,
                                                               tmp_path: Path) -> None:
    rec = Recorder(web)
    rec.fail.add("drain-all")
    hooks = [rec.hook("before_terminate", "drain-all", on_error="continue")]
    assert web.failback(tmp_path / "j.jsonl", hooks=hooks).run().complete
    web.failback(tmp_path / "j.jsonl", hooks=hooks).run()
    assert rec.names() == ["drain-all"]  # three VMs, two runs: its failure was accepted once


def test_hooks_of_one_name_at_one_point_are_told_apart(web: MemoryWorld, tmp_path: Path) -> None:
    ran: list[str] = []
    hooks = [Hook("before_run", lambda c: ran.append("one"), name="x"),
             Hook("before_run", lambda c: ran.append("two"), name="x")]
    report = web.failback(tmp_path / "j.jsonl", hooks=hooks).run()
    assert sorted(ran) == ["one", "two"]
    assert [h.target for h in report.hooks] == ["hook:before_run:x@failback",
                                                 "hook:before_run:x-2@failback"]


def test_a_fixed_hook_runs_again_on_the_same_failback(web: MemoryWorld, tmp_path: Path) -> None:
    rec = Recorder(web)
    rec.fail.add("start")
    fb = web.failback(tmp_path / "j.jsonl", hooks=[rec.hook("before_run", "start")])
    with pytest.raises(HookFailedError):
        fb.run()
    rec.fail.clear()
    assert fb.run().complete  # the same object, as in a notebook
    assert rec.names() == ["start", "start"]
