"""The renderings of the plan, the status, a step's result and the report (render.py, with rich),
built directly without a lab: in plain text and in HTML every image and VM shows, names from a site
are printed as typed (escaped in HTML, never read as rich markup), the HTML is well formed and
self-contained, and colours carry their meaning. Progress displays: test_progress.py."""

from __future__ import annotations

from collections import Counter
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
    ImageOutcome,
    ImagePlan,
    ImageSide,
    ImageState,
    Plan,
    Report,
    Status,
    StepResult,
    VMOutcome,
    VMPlan,
    VMState,
)
from ceph_failback.failback.render import to_html, to_text
from ceph_failback.opennebula import VM

ROOT = Path(__file__).resolve().parents[2]
EVIL = '<img src=x onerror="alert(1)">&[bold]'  # a hostile name: must come out as typed
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


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_text(html: str) -> str:
    """What a browser shows of ``html`` (tags dropped, entities decoded)."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


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


def both(obj: Plan | Status | Report | StepResult) -> tuple[str, str]:
    """``obj`` as plain text and as HTML reduced to what a browser shows, after checking that
    the HTML is well formed, self-contained, and holds no site name unescaped."""
    html = well_formed(obj._repr_html_())
    assert EVIL not in html and escaped(EVIL) in html
    assert html.startswith("<pre") and "<script" not in html and "<style" not in html
    text = to_text(obj.view()) if isinstance(obj, StepResult) else str(obj)
    assert "\x1b" not in text and "\r" not in text
    return text, html_text(html)


def lines_with(text: str, *words: str) -> list[str]:
    return [line for line in text.splitlines() if all(w in line for w in words)]


# -- the plan ----------------------------------------------------------------------------------


def test_plan_shows_every_image_vm_blocker_and_step_in_text_and_html() -> None:
    blockers = (Blocker("non-persistent-disk", "vm:site-b:12", f"disk {EVIL} is a clone"),
                Blocker("partial-pair", "vm:site-a:3", "waived one", waivable=True))
    plan = sample_plan(blockers)
    for form in both(plan):
        for name in IMAGES:
            assert len(lines_with(form, name.split()[0], "journal")) == 1, (name, form)
        assert lines_with(form, "12 ", "ACTIVE/RUNNING", "3 web POWEROFF")
        assert lines_with(form, "13 web DONE", "4 web ACTIVE/RUNNING")
        assert "REFUSED: 1 blocker(s) in force" in form
        assert lines_with(form, "non-persistent-disk", "vm:site-b:12", "no", f"disk {EVIL}")
        assert lines_with(form, "partial-pair", "waived")
        assert f"warning about {EVIL}" in form
        # The steps that will act on each image and VM.
        assert lines_with(form, "one-101", "demote_a resync_a")  # the rest may wrap
        assert lines_with(form, "3 web POWEROFF", "terminate_b resume_a")
        assert lines_with(form, "4 web ACTIVE/RUNNING", "none (all skip)")
        assert "role unknown" in form  # one image has no status on B yet
        assert form.index("BLOCKERS") < form.index("Images (3):") < form.index("VMs (2):") \
            < form.index("Steps:")
        assert lines_with(form, "3", "terminate_b", "do 1", "skip 1", "do 1: ACTIVE/RUNNING on B")


def test_plan_without_blockers_says_it_can_run() -> None:
    plan = sample_plan()
    text, html = both(plan)
    assert repr(plan) == text and "pool 'one'" in text
    assert "No blocker: the failback can run." in text and "No blocker" in html
    assert "BLOCKERS" not in text


def test_colours_carry_meaning_and_names_are_never_markup() -> None:
    def style_of(html: str, words: str) -> str:
        at = html.index(words)
        return html[html.rfind("<span", 0, at):at]

    red, green = "color: #800000", "color: #008000"  # rich's red and green, exported
    refused = sample_plan((Blocker("no-primary", "image:one-100", "neither"),))._repr_html_()
    assert red in style_of(refused, "REFUSED") and red in style_of(refused, "no-primary")
    ready = sample_plan()._repr_html_()
    assert green in style_of(ready, "No blocker")
    status = sample_status()._repr_html_()
    assert green in style_of(status, "home (primary on A)")
    assert red in style_of(status, "split-brain on A")
    assert "[bold]" in str(sample_plan())  # a name's markup printed as typed, not read


# -- the status --------------------------------------------------------------------------------


def test_status_shows_both_sites_states_and_progress_in_text_and_html() -> None:
    status = sample_status()
    for form in both(status):
        for name in IMAGES:
            assert len(lines_with(form, name.split()[0], "journal")) == 1, (name, form)
        assert "1/3 images home" in form and "1/2 VMs home" in form
        assert lines_with(form, "one-100", "primary up+stopped", "non-primary up+replaying",
                          "home (primary on A)")
        assert lines_with(form, "one-101", "non-primary up+syncing 42%", "copying to A 42%")
        assert lines_with(form, IMAGES[2], "split-brain")
        assert lines_with(form, "12 ", "DONE", "3 web ACTIVE/RUNNING", "one-100, one-101", "home")
        assert lines_with(form, "13 web ACTIVE/EPILOG", "4 web POWEROFF", "not yet")
        header = lines_with(form, "IMAGE", "MODE")[0]
        assert header.index("site-a (A)") < header.index("site-b (B)")
    assert repr(status) == str(status)


def test_status_json_form() -> None:
    status = sample_status()
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
    assert "1/1 images home" in str(home) and "1/1 VMs home" in str(home)


def test_status_view_with_the_lock_and_the_journal() -> None:
    from ceph_failback.failback.render import status_view

    status = sample_status()
    assert "lock" not in to_text(status_view(status))
    assert "Failback lock: free" in to_text(status_view(status, lock=None))
    held = to_text(status_view(status, lock="host-1 pid 4242", journal="/j.jsonl",
                               failback={"complete": False, "runs": 2}))
    assert "Failback lock: held by host-1 pid 4242" in held
    assert "Journal /j.jsonl: failback NOT complete, 2 run(s)" in held
    assert "no failback recorded" in to_text(status_view(status, journal="/j.jsonl"))


# -- the report and a step's result ------------------------------------------------------------


@pytest.mark.parametrize("complete", [True, False])
def test_report_shows_every_image_and_vm_in_text_and_html(complete: bool) -> None:
    report = sample_report(complete)
    for form in both(report):
        for name in IMAGES:
            first = name.split()[0]  # a name with spaces wraps there
            assert len([ln for ln in form.splitlines() if ln.startswith(first + " ")]) == 1
        assert lines_with(form, "12 -> 3", "one-100, one-101", "running on A", "4.2s")
        assert lines_with(form, "13 -> 4")
        if complete:
            assert "COMPLETE" in form and "NOT complete" not in form
            assert "median 5.9s, max 7.5s" in form
        else:
            assert "NOT complete" in form and f"failed {EVIL}" in form
            assert lines_with(form, "one-101", "in progress")
    assert repr(report) == str(report)


def test_report_says_what_is_not_protected() -> None:
    r = sample_report(True)
    images = (r.images[0].__class__(**{**r.images[0].__dict__, "protection": "split-brain on B",
                                       "protected": False}), *r.images[1:])
    unprotected = Report(r.pool, r.site_a, r.site_b, images, r.vms, r.runs, r.wall_time,
                         (("one-9", "primary on both sites"),))
    text = str(unprotected)
    assert "NOT complete" in text and "NOT PROTECTED" in text and "reprotect" in text
    assert lines_with(text, "one-100", "split-brain on B")
    assert "one-9" in text


def test_step_result_text_and_html() -> None:
    result = StepResult("resync_a")
    result.add(f"image:{IMAGES[0]}", "done", "resync requested on A")
    result.add(f"image:{IMAGES[1]}", "skipped", "already replaying from B")
    result.add(f"image:{IMAGES[2]}", "failed", f"split-brain {EVIL}")
    assert str(result).startswith("resync_a: 1 done, 1 skipped, 1 failed")
    for form in both(result):
        assert lines_with(form, f"image:{IMAGES[0]}", "done", "resync requested on A")
        assert lines_with(form, f"image:{IMAGES[1]}", "skipped")
        assert lines_with(form, f"image:{IMAGES[2]}", "failed", f"split-brain {EVIL}")
        assert "flag the images for resync" in form


def test_html_is_the_same_view_as_the_text() -> None:
    plan = sample_plan()
    assert html_text(to_html(plan.view())).split() == to_text(plan.view()).split()


def _chars(text: str) -> Counter[str]:
    return Counter(c for c in text if not c.isspace() and c != "\u2500")


@pytest.mark.parametrize("width", [60, 80, 100, 120])
def test_nothing_is_cut_at_any_width(width: int) -> None:
    """A narrow terminal wraps cells, it never drops or truncates text: every character of the
    unwrapped rendering is there (rules aside)."""
    blockers = (Blocker("non-persistent-disk", "vm:site-b:12", f"disk {EVIL} is a clone " * 3),)
    for obj in (sample_plan(blockers), sample_status(), sample_report(False),
                sample_report(True)):
        wide = to_text(obj.view(), width=1000)
        narrow = to_text(obj.view(), width=width)
        assert "\u2026" not in narrow
        assert _chars(narrow) == _chars(wide), (width, _chars(wide) - _chars(narrow))
        assert max(len(line) for line in narrow.splitlines()) <= width


@pytest.mark.parametrize("site", ["[east]", "[/x]", "[bold red]a"])
def test_site_and_pool_names_are_never_markup(site: str) -> None:
    s = sample_status()
    status = Status("[pool]", site, "site-b", s.images, s.vms, s.taken)
    p = sample_plan()
    plan = Plan("[pool]", site, "site-b", p.images, p.vms, p.blockers, p.warnings, p.waived)
    r = sample_report()
    report = Report("[pool]", site, "site-b", r.images, r.vms, r.runs, r.wall_time)
    for obj in (status, plan, report):
        text = str(obj)
        assert f"{site} (A)" in text or f"-> {site}" in text, text
        assert "[pool]" in text
        assert escaped(site) in obj._repr_html_()


def test_large_scopes_show_their_totals_and_first_rows_problems_first() -> None:
    """10,000 images: the tables show ROW_LIMIT rows each (those that need a look first) and
    count the others; the steps' totals count every one; str() stays fast."""
    import time

    from ceph_failback.failback.render import ROW_LIMIT

    s = sample_status()
    home, copying = s.images[0], s.images[1]
    images = tuple(ImageState(f"one-{n}", home.a, home.b) for n in range(10_000)) + (
        ImageState("one-late", copying.a, copying.b),)  # the one not home, listed last
    big = Status("one", "site-a", "site-b", images, (), s.taken)
    started = time.monotonic()
    text = str(big)
    assert time.monotonic() - started < 3
    rows = [line for line in text.splitlines() if line.startswith("one-")]
    assert len(rows) == ROW_LIMIT and rows[0].startswith("one-late ")
    assert f"... and {10_001 - ROW_LIMIT:,} more" in text and "10000/10001 images home" in text
    p = sample_plan()
    plan = Plan("one", "site-a", "site-b", tuple(
        ImagePlan(f"one-{n}", "journal", None, None, p.images[1].actions)
        for n in range(10_000)), (), ())
    text = str(plan)
    assert "do 10000: primary on A" in text and f"... and {10_000 - ROW_LIMIT:,} more" in text
