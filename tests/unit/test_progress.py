"""Progress, one model shown three ways: live on a terminal (the final screen is read back through a
terminal emulator, pyte), plain lines in pipes and logs, HTML in a notebook cell updated in place."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyte
import pytest

from ceph_failback.failback import EventKind, NotebookProgress, Progress
from ceph_failback.failback.events import Emitter, Event

ROOT = Path(__file__).resolve().parents[2]
EVIL = '<img src=x onerror="alert(1)">&'


def screen(text: str, columns: int = 100, lines: int = 60) -> list[str]:
    """What a terminal shows after ``text``: its lines, trailing spaces trimmed, empty lines at
    the end dropped."""
    s = pyte.Screen(columns, lines)
    pyte.Stream(s).feed(text.replace("\n", "\r\n"))
    out = [line.rstrip() for line in s.display]
    while out and not out[-1]:
        out.pop()
    return out


def _events() -> list[Event]:
    e = [Event(EventKind.STEP_STARTED, "resync_a", None, "title")]
    for pct in (5, 12, 18, 47, 100):
        e.append(Event(EventKind.IMAGE_PROGRESS, "resync_a", "image:one-1",
                       f"one-1: syncing {pct}%", {"percent": pct}))
    e.append(Event(EventKind.ACTION, "resync_a", "image:one-1", "image:one-1: resync requested"))
    e.append(Event(EventKind.WARNING, "resync_a", "image:one-2", "image:one-2: FAILED: boom",
                   {"outcome": "failed"}))
    e.append(Event(EventKind.STEP_FINISHED, "resync_a", None, "resync_a: 1 done, 1 failed",
                   {"done": ["image:one-1"], "skipped": [], "failed": {"image:one-2": "boom"}}))
    return e


def _pipelined() -> list[Event]:
    """Two VMs moved through steps 3 and 6 side by side, their events interleaved."""
    e = []
    for step, site in (("terminate_b", "site-b"), ("resume_a", "site-a")):
        for _vm in (12, 13):
            e.append(Event(EventKind.STEP_STARTED, step, None, step))
        for n in range(3):
            for vm in (12, 13):
                e.append(Event(EventKind.VM_STATE, step, f"vm:{site}:{vm}",
                               f"vm:{site}:{vm}: state {n}"))
        for vm in (12, 13):
            e.append(Event(EventKind.ACTION, step, f"vm:{site}:{vm}", f"vm:{site}:{vm}: done",
                           {"outcome": "done"}))
            e.append(Event(EventKind.STEP_FINISHED, step, None, f"{step}: 1 done",
                           {"done": [f"vm:{site}:{vm}"], "skipped": [], "failed": {}}))
    return e


# -- a terminal -------------------------------------------------------------------------------------


def test_terminal_final_screen_has_one_display_per_step_and_a_row_per_target() -> None:
    stream = io.StringIO()
    with Progress(stream, tty=True, width=100, tick=0.05) as p:
        for event in _events() + _pipelined():
            p(event)
    shown = screen(stream.getvalue())
    text = "\n".join(shown)
    # Each step's title once, in the documented order, whatever the interleaving of its calls.
    titles = [line for line in shown if line.startswith("[")]
    assert [t.split()[1] for t in titles] == ["resync_a", "terminate_b", "resume_a"], text
    assert "finished  1 done, 0 skipped, 1 failed" in titles[0]
    assert "finished  2 done, 0 skipped, 0 failed" in titles[1]
    # One row per image or VM, with its last news.
    for target in ("image:one-1", "image:one-2", "vm:site-b:12", "vm:site-b:13",
                   "vm:site-a:12", "vm:site-a:13"):
        rows = [line for line in shown if line.startswith(target + " ")]
        assert len(rows) == 1, (target, text)
    assert "boom" in next(line for line in shown if line.startswith("image:one-2"))
    assert "\x1b[?25h" in stream.getvalue()  # the cursor shown again at the end


def test_terminal_shows_copy_progress_while_a_step_runs() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True, width=100, tick=0.05).start()
    for event in _events()[:4]:  # started, 5 %, 12 %, 18 %
        p(event)
    deadline = time.monotonic() + 5
    while "18%" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    shown = screen(stream.getvalue())
    row = next(line for line in shown if line.startswith("image:one-1"))
    assert "waiting" in row and "18%" in row and "####" not in row  # 18 %: 3 of 20 cells
    assert "###" in row
    assert any(line.startswith("[2/6] resync_a  running") for line in shown)
    p.close()


def test_terminal_display_is_thread_safe() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True, width=100, tick=0.01).start()  # redraws while fed
    p(Event(EventKind.STEP_STARTED, "resync_a", None, "t"))

    def feed(n: int) -> None:
        for pct in range(0, 101, 5):
            p(Event(EventKind.IMAGE_PROGRESS, "resync_a", f"image:i{n}", "x", {"percent": pct}))
        p(Event(EventKind.ACTION, "resync_a", f"image:i{n}", f"image:i{n}: resync requested"))

    threads = [threading.Thread(target=feed, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.close()
    shown = screen(stream.getvalue())
    for n in range(4):
        rows = [line for line in shown if line.startswith(f"image:i{n} ")]
        assert len(rows) == 1 and "done" in rows[0] and "resync requested" in rows[0], shown


def test_terminal_shows_elapsed_time_of_a_wait_without_news() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True, width=100, tick=0.05).start()
    p(Event(EventKind.STEP_STARTED, "terminate_b", None, "t"))
    time.sleep(1.3)  # the display redraws on its own: the elapsed time moves
    shown = screen(stream.getvalue())
    p.close()
    title = next(line for line in shown if line.startswith("[3/6] terminate_b"))
    assert "running" in title and " 1s " in title, shown


def test_terminal_keeps_site_names_as_typed() -> None:
    stream = io.StringIO()
    with Progress(stream, tty=True, width=120, tick=0.05) as p:
        p(Event(EventKind.STEP_STARTED, "terminate_b", None, "t"))
        p(Event(EventKind.ACTION, "terminate_b", "vm:site-b:1", f"[bold]{EVIL}[/bold]",
                {"outcome": "done"}))
    assert f"[bold]{EVIL}[/bold]" in "\n".join(screen(stream.getvalue(), 120))


# -- a pipe, a log ----------------------------------------------------------------------------------


def test_plain_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    with Progress(stream, tty=False) as p:
        for event in _events():
            p(event)
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert text.count("[2/6] Site A: flag the images for resync") == 1
    # One line per 10 % band: 5 -> 0, 12 and 18 -> 1 (once), 47 -> 4, 100 -> 10.
    assert text.count("one-1: syncing") == 4 and "syncing 18%" not in text
    assert "! image:one-2: FAILED: boom" in text and "resync_a: 1 done, 1 failed" in text


def test_plain_lines_tag_each_line_with_its_step() -> None:
    stream = io.StringIO()
    with Progress(stream, tty=False) as p:
        for event in _pipelined():
            p(event)
    lines = stream.getvalue().splitlines()
    assert lines.count("[3/6] Site B: terminate the VMs (and wait until their images are "
                       "mirrored to A)") == 1
    assert all(line.startswith("[") or line.split()[0] in ("terminate_b", "resume_a")
               for line in lines)


# -- a notebook -------------------------------------------------------------------------------------


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


def test_notebook_updates_one_output_per_cell_in_place() -> None:
    from tests.unit.test_display import html_text, well_formed

    shown = FakeDisplay()
    cell = [1]
    progress = NotebookProgress(display=shown, cell=lambda: cell[0], min_interval=3600)
    events = Emitter()
    events.subscribe(progress)
    events.emit(EventKind.STEP_STARTED, "Site A: flag the images for resync", step="resync_a")
    for pct in (10, 20, 30, 40):  # throttled: no redraw for each
        events.emit(EventKind.IMAGE_PROGRESS, f"image:one-{EVIL}: bootstrapping {pct}%",
                    step="resync_a", target=f"image:one-{EVIL}", percent=pct)
    events.emit(EventKind.IMAGE_PROGRESS, "one-101: replaying from B", step="resync_a",
                target="image:one-101", percent=100)
    events.emit(EventKind.ACTION, "image:one-100: resync requested on A", step="resync_a",
                target="image:one-100", outcome="done")
    events.emit(EventKind.STEP_FINISHED, "resync_a: 1 done", step="resync_a",
                done=["image:one-100"], skipped=["image:one-101"], failed={})
    assert len(shown.outputs) == 1, "one output for the cell"
    renders = shown.outputs[0]
    assert len(renders) == 2  # the step's start and end: news throttled, the action too (0.2 s)
    last = well_formed(renders[-1])
    assert EVIL not in last
    text = html_text(last)
    assert "resync_a" in text and "1 done, 1 skipped" in text and "finished" in text
    assert f"image:one-{EVIL}" in text and "40%" in text

    # Another step in the same cell (run()): same output.
    events.emit(EventKind.STEP_STARTED, "Site B: terminate", step="terminate_b")
    assert len(shown.outputs) == 1
    # A new cell: a new output, a fresh display.
    cell[0] = 2
    events.emit(EventKind.STEP_STARTED, "Site B: demote", step="demote_b")
    events.emit(EventKind.WARNING, "image:x: FAILED: boom", step="demote_b", target="image:x",
                outcome="failed")
    assert len(shown.outputs) == 2
    fresh = html_text(well_formed(shown.outputs[1][-1]))
    assert "demote_b" in fresh and "resync_a" not in fresh and "1 failed" in fresh
    assert progress.redraws == len(shown.outputs[0]) + len(shown.outputs[1])
    assert "demote_b" in progress.text() and "NotebookProgress(" in repr(progress)


def test_notebook_progress_outside_a_kernel_prints_the_plain_lines() -> None:
    out = io.StringIO()
    progress = NotebookProgress(stream=out)
    events = Emitter()
    events.subscribe(progress)
    events.emit(EventKind.STEP_STARTED, "Site A: demote the images", step="demote_a")
    events.emit(EventKind.WARNING, "image:b: FAILED: boom", step="demote_a", target="image:b",
                outcome="failed")
    events.emit(EventKind.STEP_FINISHED, "demote_a: 0 done", step="demote_a", done=[],
                skipped=[], failed={"image:b": "boom"})
    assert out.getvalue().splitlines() == ["[1/6] Site A: demote the images",
                                           "  demote_a    ! image:b: FAILED: boom",
                                           "  demote_a    demote_a: 0 done"]
    assert "1 failed" in progress.text()


def test_progress_imports_without_ipython() -> None:
    code = ("import sys; sys.modules['IPython'] = None\n"
            "from ceph_failback.failback import NotebookProgress\n"
            "from ceph_failback.failback.events import Emitter, EventKind\n"
            "e = Emitter(); e.subscribe(NotebookProgress())\n"
            "e.emit(EventKind.STEP_STARTED, 'go', step='demote_a')\n")
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
        check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[1/6] Site A: demote the images\n"


def test_log_lines_go_above_the_live_display() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True, width=100, tick=0.05).start()
    log = p.above(stream)
    p(Event(EventKind.STEP_STARTED, "demote_b", None, "t"))
    log.write("WARNING: site-b: a log line\nWARNING: ")
    log.write("another\n")
    p(Event(EventKind.ACTION, "demote_b", "image:x", "image:x: demoted", {"outcome": "done"}))
    p.close()
    log.write("after the display\n")
    shown = screen(stream.getvalue())
    assert shown.count("WARNING: site-b: a log line") == 1
    assert shown.count("WARNING: another") == 1
    assert shown.index("WARNING: another") < shown.index(next(
        line for line in shown if line.startswith("[4/6] demote_b")))
    assert [line for line in shown if line.startswith("[4/6]")] and shown[-1] == \
        "after the display"
    assert len([line for line in shown if line.startswith("image:x ")]) == 1


def test_the_running_step_stays_in_sight_on_a_short_terminal(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On a 20-line terminal, three finished steps of 12 images each and a running one: the
    live display shrinks the finished steps to their title lines, so the running step's rows
    are on screen while it runs; the last display (at close) has every row."""
    monkeypatch.setenv("LINES", "20")
    stream = io.StringIO()
    p = Progress(stream, tty=True, width=100, tick=0.05).start()
    for step in ("demote_a", "resync_a"):
        p(Event(EventKind.STEP_STARTED, step, None, step))
        for n in range(12):
            p(Event(EventKind.ACTION, step, f"image:one-{n}", f"image:one-{n}: ok",
                    {"outcome": "done"}))
        p(Event(EventKind.STEP_FINISHED, step, None, f"{step}: 12 done",
                {"done": [f"image:one-{n}" for n in range(12)], "skipped": [], "failed": {}}))
    p(Event(EventKind.STEP_STARTED, "terminate_b", None, "t"))
    p(Event(EventKind.VM_STATE, "terminate_b", "vm:site-b:7", "vm:site-b:7: ACTIVE/EPILOG"))
    deadline = time.monotonic() + 5
    while "EPILOG" not in stream.getvalue() and time.monotonic() < deadline:
        time.sleep(0.02)
    live = screen(stream.getvalue(), 100, 20)
    assert any(line.startswith("[3/6] terminate_b  running") for line in live), live
    assert any(line.startswith("vm:site-b:7") and "EPILOG" in line for line in live), live
    p.close()
    final = screen(stream.getvalue(), 100, 200)
    assert sum(line.startswith("image:one-") for line in final) >= 2 * 12 - 6  # max_rows 15


def test_print_while_the_display_runs_goes_above_it(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    stream.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr(sys, "stdout", stream)
    p = Progress(sys.stdout, tick=0.05)
    p(Event(EventKind.STEP_STARTED, "demote_a", None, "t"))  # starts the display by itself
    for n in range(3):
        p(Event(EventKind.IMAGE_PROGRESS, "demote_a", f"image:{n}", "waiting", {"percent": 5}))
    time.sleep(0.2)  # drawn: a display of several lines
    print("a line printed meanwhile")
    time.sleep(0.2)
    p.close()
    monkeypatch.undo()
    shown = screen(stream.getvalue())
    assert shown.count("a line printed meanwhile") == 1, shown
    assert shown.index("a line printed meanwhile") < next(
        n for n, line in enumerate(shown) if line.startswith("[1/6] demote_a"))


def test_a_dumb_terminal_gets_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    stream = io.StringIO()
    with Progress(stream, tty=True) as p:
        for event in _events():
            p(event)
    assert "\x1b" not in stream.getvalue()
    assert "[2/6] Site A: flag the images for resync" in stream.getvalue()


def test_plain_lines_say_where_a_vm_stands_and_name_other_steps() -> None:
    stream = io.StringIO()
    with Progress(stream, tty=False) as p:
        p(Event(EventKind.STEP_STARTED, "terminate_b", None, "t"))
        for state in ("ACTIVE/EPILOG", "ACTIVE/EPILOG", "DONE"):
            p(Event(EventKind.VM_STATE, "terminate_b", "vm:b:1", f"vm:b:1: {state}"))
        p(Event(EventKind.STEP_STARTED, "reprotect", None, "reprotect"))
    lines = stream.getvalue().splitlines()
    assert lines.count("  terminate_b vm:b:1: ACTIVE/EPILOG") == 1
    assert "  terminate_b vm:b:1: DONE" in lines
    assert lines[-1].startswith("[+] ") and "[0/6]" not in stream.getvalue()


def test_abandon_shows_the_cursor_without_a_lock() -> None:
    stream = io.StringIO()
    p = Progress(stream, tty=True, tick=0.05).start()
    with p._lock:  # a signal handler may run while the main thread holds it
        p.abandon()
    assert stream.getvalue().endswith("\x1b[?25h\n")
    p.close()
