"""The Jupyter renderings (plan, status, step result, report, progress) and their plain-text
forms, built directly without a lab: every image and VM shows, names are escaped, the HTML is
well formed, and the progress listener updates one output per cell in place."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ceph_failback.ceph.status import (
    MirrorImageInfo,
    MirrorState,
    MirrorStatus,
    ReplayDetail,
    ReplayKind,
    SiteStatus,
)
from ceph_failback.failback import (
    Action,
    Blocker,
    EventKind,
    ImageOutcome,
    ImagePlan,
    ImageSide,
    ImageState,
    NotebookProgress,
    Plan,
    Report,
    Status,
    StepResult,
    VMOutcome,
    VMPlan,
    VMState,
)
from ceph_failback.failback.events import Emitter
from ceph_failback.opennebula import VM

ROOT = Path(__file__).resolve().parents[2]
EVIL = '<img src=x onerror="alert(1)">&'  # a hostile name: must come out as text
IMAGES = ("one-100", "one-101", f"one-{EVIL}")
VOID = {"br", "img", "hr", "meta", "input", "col"}


class _Checker(HTMLParser):
    """Fails on unbalanced tags and on any tag a site could inject."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def well_formed(html: str) -> str:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.stack == [], f"unclosed: {checker.stack}"
    assert not checker.tags & {"img", "script", "style", "iframe"}, checker.tags
    assert "onerror=" not in html.replace("onerror=&quot;", "")
    return html


def escaped(name: str) -> str:
    return (name.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def mirror(site: str, image: str, *, primary: bool, state: MirrorState, description: str = "",
           up: bool = True, percent: float | None = None) -> MirrorStatus:
    replay = None
    if state is MirrorState.REPLAYING:
        replay = ReplayDetail(ReplayKind.JOURNAL, entries_behind_primary=0)
    local = SiteStatus(None, state, up, description, datetime(2026, 11, 25, 3, 0, tzinfo=UTC),
                       replay, "IMAGE_COPY" if percent is not None else None, percent)
    return MirrorStatus(site, "one", image, "gid-" + image, primary, local)


def vm(vm_id: int, state: str, lcm: str = "LCM_INIT", name: str = "web") -> VM:
    return VM(vm_id, name, state, lcm)


# -- objects built by hand ---------------------------------------------------------------------


def sample_plan(blockers: tuple[Blocker, ...] = ()) -> Plan:
    images = []
    for n, name in enumerate(IMAGES):
        sa = mirror("site-a", name, primary=True, state=MirrorState.STOPPED,
                    description="local image is primary")
        sb = mirror("site-b", name, primary=True, state=MirrorState.STOPPED,
                    description="local image is primary") if n else None
        t = f"image:{name}"
        images.append(ImagePlan(name, "journal", sa, sb, (
            Action("demote_a", t, True, "primary on A"),
            Action("resync_a", t, True, "A was primary (diverged): resync from B"),
            Action("demote_b", t, True, "primary on B"),
            Action("promote_a", t, True, "non-forced, after proving A replayed B"))))
    vms = (VMPlan(vm(12, "ACTIVE", "RUNNING", name=EVIL), vm(3, "POWEROFF"), IMAGES[:2], (
        Action("terminate_b", "vm:site-b:12", True, "ACTIVE/RUNNING on B"),
        Action("resume_a", "vm:site-a:3", True, "POWEROFF on A"))),
        VMPlan(vm(13, "DONE"), vm(4, "ACTIVE", "RUNNING"), IMAGES[2:], (
            Action("terminate_b", "vm:site-b:13", False, "already DONE"),
            Action("resume_a", "vm:site-a:4", False, "already RUNNING"))))
    return Plan("one", "site-a", "site-b", tuple(images), vms, blockers,
                (f"warning about {EVIL}",), frozenset({"partial-pair"}))


def sample_status() -> Status:
    def state(name: str, n: int) -> ImageState:
        info_a = MirrorImageInfo(name, "g", True, n == 0, "journal")
        info_b = MirrorImageInfo(name, "g", True, n != 0, "journal")
        if n == 0:    # home
            sa = mirror("site-a", name, primary=True, state=MirrorState.STOPPED,
                        description="local image is primary")
            sb = mirror("site-b", name, primary=False, state=MirrorState.REPLAYING)
        elif n == 1:  # being resynced on A
            sa = mirror("site-a", name, primary=False, state=MirrorState.SYNCING,
                        description="bootstrapping, IMAGE_COPY/COPY_OBJECT 42%", percent=42)
            sb = mirror("site-b", name, primary=True, state=MirrorState.STOPPED,
                        description="local image is primary")
        else:         # split-brain, stale
            sa = mirror("site-a", name, primary=False, state=MirrorState.ERROR,
                        description="split-brain detected", up=False)
            sb = None
        return ImageState(name, ImageSide("site-a", info_a, sa), ImageSide("site-b", info_b, sb))

    images = tuple(state(name, n) for n, name in enumerate(IMAGES))
    vms = (VMState(vm(12, "DONE", name=EVIL), vm(3, "ACTIVE", "RUNNING"), IMAGES[:2]),
           VMState(vm(13, "ACTIVE", "EPILOG"), vm(4, "POWEROFF"), IMAGES[2:]))
    return Status("one", "site-a", "site-b", images, vms, datetime(2026, 11, 25, tzinfo=UTC))


def sample_report(complete: bool = False) -> Report:
    images = tuple(ImageOutcome(name, True, True, True, complete or n == 0,
                                2 if complete or n == 0 else None,
                                None if complete or n != 2 else f"boom {EVIL}")
                   for n, name in enumerate(IMAGES))
    vms = (VMOutcome(12, 3, IMAGES[:2], True, True, 4.25, None),
           VMOutcome(13, 4, IMAGES[2:], True, complete, 7.5 if complete else None,
                     None if complete else f"failed {EVIL}"))
    return Report("one", "site-a", "site-b", images, vms, 2, 31.5 if complete else None)


# -- the plan ----------------------------------------------------------------------------------


def test_plan_html_shows_every_image_vm_and_blocker() -> None:
    blockers = (Blocker("non-persistent-disk", "vm:site-b:12", f"disk {EVIL} is a clone"),
                Blocker("partial-pair", "vm:site-a:3", "waived one", waivable=True))
    plan = sample_plan(blockers)
    html = well_formed(plan._repr_html_())
    for name in IMAGES:
        assert escaped(name) in html
    assert EVIL not in html and escaped(EVIL) in html
    for vm_id in (12, 3, 13, 4):
        assert f">{vm_id} " in html or f">{vm_id}<" in html or f"{vm_id} <span" in html
    assert "REFUSED: 1 blocker(s)" in html and "waived" in html
    assert "non-persistent-disk" in html and "warning about" in html
    for step in ("DEMOTE_A", "RESYNC_A", "DEMOTE_B", "PROMOTE_A", "TERMINATE_B", "RESUME_A"):
        assert step in html
    assert "role unknown" in html  # one image has no status on B yet


def test_plan_without_blockers_says_ready_and_prints_as_text() -> None:
    plan = sample_plan()
    html = well_formed(plan._repr_html_())
    assert "ready: no blocker" in html
    text = str(plan)
    assert repr(plan) == text and "pool 'one'" in text and "ready: no blocker" in text
    refused = sample_plan((Blocker("no-primary", "image:one-100", "neither"),))
    assert "REFUSED: 1 blocker(s) in force" in str(refused) and "no-primary" in str(refused)
    for name in IMAGES:
        assert name in text  # every image is to do in some step


# -- the status --------------------------------------------------------------------------------


def test_status_html_shows_both_sites_states_and_progress() -> None:
    status = sample_status()
    html = well_formed(status._repr_html_())
    for name in IMAGES:
        assert escaped(name) in html
    assert EVIL not in html
    for vm_id in (12, 3, 13, 4):
        assert f"{vm_id} " in html
    assert "1/3 primary on A" in html and "1/2 running on A" in html
    assert "split-brain" in html and "42%" in html and "ACTIVE/EPILOG" in html
    assert "home (primary on A)" in html and "copying to A 42%" in html
    assert "not failed back" in html


def test_status_text_and_json_forms() -> None:
    status = sample_status()
    text = str(status)
    assert repr(status) == text
    for name in IMAGES:
        assert name in text
    assert "12 -> 3" in text and "13 -> 4" in text and "1/3 images home" in text
    d = status.to_dict()
    assert dict(status) == d and status["images"] == d["images"]
    assert d["images"]["one-100"] == {
        "site-a": "primary up+stopped (local image is primary) @03:00:00",
        "site-b": "non-primary up+replaying behind=0 @03:00:00"}
    assert d["images"][IMAGES[2]]["site-b"] == "primary (no status)"
    assert d["vms"]["12->3"] == {"site-b": "DONE", "site-a": "ACTIVE/RUNNING",
                                 "images": list(IMAGES[:2])}
    assert not status.complete
    assert status.image("one-101").phase == "copying to A 42%"
    with pytest.raises(KeyError):
        status.image("nope")


def test_status_complete_when_everything_is_home() -> None:
    s = sample_status()
    home = Status(s.pool, s.site_a, s.site_b, s.images[:1],
                  (VMState(vm(12, "DONE"), vm(3, "ACTIVE", "RUNNING"), ("one-100",)),), s.taken)
    assert home.complete
    assert "failed back" in well_formed(home._repr_html_())


# -- the report and a step's result ------------------------------------------------------------


@pytest.mark.parametrize("complete", [True, False])
def test_report_html_shows_every_image_and_vm(complete: bool) -> None:
    report = sample_report(complete)
    html = well_formed(report._repr_html_())
    for name in IMAGES:
        assert escaped(name) in html
    for pair in ("12 \u2192 3", "13 \u2192 4"):
        assert pair in html
    assert EVIL not in html
    if complete:
        assert "COMPLETE" in html and "7.5s" in html and "median" in html
        assert "3/3 promoted on A" in html and "2/2 running on A" in html
    else:
        assert "NOT complete" in html and escaped(f"failed {EVIL}") in html
        assert "1/3 promoted on A" in html
    text = str(report)
    assert repr(report) == text
    for name in IMAGES:
        assert name in text
    assert "12 -> 3" in text and "13 -> 4" in text


def test_step_result_html() -> None:
    result = StepResult("resync_a")
    result.add(f"image:{IMAGES[0]}", "done", "resync requested on A")
    result.add(f"image:{IMAGES[1]}", "skipped", "already replaying from B")
    result.add(f"image:{IMAGES[2]}", "failed", f"split-brain {EVIL}")
    html = well_formed(result._repr_html_())
    for name in IMAGES:
        assert escaped(name) in html
    assert "1 done" in html and "1 skipped" in html and "1 failed" in html
    assert "flag the images for resync" in html


# -- progress ----------------------------------------------------------------------------------


class FakeDisplay:
    """IPython's display(obj, display_id=True) and its handle's update(obj)."""

    def __init__(self) -> None:
        self.outputs: list[list[str]] = []  # one list of renderings per display

    def __call__(self, obj: object, display_id: bool = False) -> FakeDisplay.Handle:
        assert display_id is True
        self.outputs.append([obj._repr_html_()])  # type: ignore[attr-defined]
        return FakeDisplay.Handle(self.outputs[-1])

    class Handle:
        def __init__(self, renders: list[str]) -> None:
            self.renders = renders

        def update(self, obj: object) -> None:
            self.renders.append(obj._repr_html_())  # type: ignore[attr-defined]


def test_progress_updates_one_output_per_cell_in_place() -> None:
    shown = FakeDisplay()
    cell = [1]
    progress = NotebookProgress(display=shown, cell=lambda: cell[0], min_interval=3600)
    events = Emitter()
    events.subscribe(progress)
    events.emit(EventKind.STEP_STARTED, "Site A: flag the images for resync", step="resync_a")
    for pct in (10, 20, 30, 40):  # throttled: no redraw for each
        events.emit(EventKind.IMAGE_PROGRESS, f"image:{IMAGES[2]}: bootstrapping {pct}%",
                    step="resync_a", target=f"image:{IMAGES[2]}", percent=pct)
    events.emit(EventKind.IMAGE_PROGRESS, f"{IMAGES[1]}: replaying from B", step="resync_a",
                target=f"image:{IMAGES[1]}", percent=100)
    events.emit(EventKind.ACTION, f"image:{IMAGES[0]}: resync requested on A", step="resync_a",
                target=f"image:{IMAGES[0]}", outcome="done")
    events.emit(EventKind.STEP_FINISHED, "resync_a: 1 done", step="resync_a",
                done=[f"image:{IMAGES[0]}"], skipped=[f"image:{IMAGES[1]}"], failed={})
    assert len(shown.outputs) == 1, "one output for the cell"
    renders = shown.outputs[0]
    assert len(renders) == 3  # step start, the action, the step's end: progress was throttled
    last = well_formed(renders[-1])
    assert "resync_a" in last and "1 done" in last and "1 skipped" in last
    assert escaped(f"image:{IMAGES[2]}") in last and "40%" in last and EVIL not in last
    assert "finished" in last
    assert progress._targets[f"image:{IMAGES[1]}"].outcome == "skipped"  # was waiting

    # Another step in the same cell (run()): same output.
    events.emit(EventKind.STEP_STARTED, "Site B: terminate", step="terminate_b")
    assert len(shown.outputs) == 1
    # A new cell: a new output, a fresh table.
    cell[0] = 2
    events.emit(EventKind.STEP_STARTED, "Site B: demote", step="demote_b")
    events.emit(EventKind.WARNING, "image:x: FAILED: boom", step="demote_b", target="image:x",
                outcome="failed")
    assert len(shown.outputs) == 2
    fresh = well_formed(shown.outputs[1][-1])
    assert "demote_b" in fresh and "resync_a" not in fresh and "1 failed" in fresh
    assert progress.redraws == len(shown.outputs[0]) + len(shown.outputs[1])
    assert "demote_b" in progress.text() and "NotebookProgress(" in repr(progress)


def test_progress_outside_a_kernel_prints_a_line_per_step() -> None:
    out = io.StringIO()
    progress = NotebookProgress(stream=out)
    events = Emitter()
    events.subscribe(progress)
    events.emit(EventKind.STEP_STARTED, "Site A: demote the images", step="demote_a")
    for pct in range(0, 100, 10):
        events.emit(EventKind.IMAGE_PROGRESS, "image:a: 10%", step="demote_a", target="image:a",
                    percent=pct)
    events.emit(EventKind.WARNING, "image:b: FAILED: boom", step="demote_a", target="image:b",
                outcome="failed")
    events.emit(EventKind.STEP_FINISHED, "demote_a: 0 done", step="demote_a", done=[],
                skipped=[], failed={"image:b": "boom"})
    lines = out.getvalue().splitlines()
    assert lines == ["[demote_a] Site A: demote the images", "[demote_a] ! image:b: FAILED: boom",
                     "[demote_a] demote_a: 0 done"]
    assert "1 failed" in well_formed(progress._repr_html_())


def test_display_module_imports_without_ipython() -> None:
    code = ("import sys; sys.modules['IPython'] = None\n"
            "from ceph_failback.failback import NotebookProgress\n"
            "from ceph_failback.failback.events import Emitter, EventKind\n"
            "e = Emitter(); e.subscribe(NotebookProgress())\n"
            "e.emit(EventKind.STEP_STARTED, 'go', step='demote_a')\n")
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[demote_a] go\n"
