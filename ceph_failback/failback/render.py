"""Every rendering of a failback's objects, with `rich <https://rich.readthedocs.io>`_: the plan,
the two-site status, a step's result and the report.

Each object has one view here (a rich renderable). The same view is printed to a terminal (in
colour), written as plain text (``str()``, pipes, logs: no control characters; ``NO_COLOR`` is
honoured) and exported as HTML for Jupyter (``_repr_html_``: inline styles only, no script).
Every name that comes from a site (images, VMs, messages) enters a view as plain
:class:`~rich.text.Text`, never as markup, so ``[bold]`` in a VM's name is printed as typed.

Colours mean one thing each (:data:`TONES`): green done/replaying/running/home, red
blocker/failed/split-brain/missing, yellow in progress or waiting, cyan primary or an action to
do, dim skipped/non-primary/DONE.
"""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Column, Table
from rich.text import Text

from ..ceph.status import MirrorState, MirrorStatus
from .ledger import STEP_TITLES, STEPS

if TYPE_CHECKING:
    from .plan import Plan
    from .report import Report
    from .status import ImageSide, Status
    from .steps.base import StepResult

__all__ = ["TONES", "Rendered", "show", "to_text", "to_html", "console_for", "plan_view",
           "status_view", "report_view", "step_result_view", "mirror_text", "vm_text",
           "cell", "table"]

#: One style per meaning.
TONES = {
    "ok": "green",          # done, replaying, running, failed back
    "bad": "bold red",      # blocker, failed, split-brain, down, missing
    "busy": "yellow",       # in progress, syncing, waiting, warnings
    "info": "cyan",         # primary, an action to do
    "muted": "dim",         # skipped, non-primary, DONE, no status
}

#: Rows shown per table of images or VMs (the others are counted): a plan of 10,000 images is read
#: in its totals and its first rows; ``to_dict()``/``--json`` has every one.
ROW_LIMIT = 200

#: Width of plain-text renderings (``str()``): wide enough that tables rarely wrap in logs.
TEXT_WIDTH = 160

_HTML = ('<pre class="ceph-failback" style="white-space:pre;overflow-x:auto;line-height:normal;'
         "font-family:Menlo,'DejaVu Sans Mono',consolas,'Courier New',monospace\">{code}</pre>")


# -- consoles -------------------------------------------------------------------------------------


def console_for(stream: Any, *, width: int | None = None) -> Console:
    """A console writing to the terminal ``stream`` (colours; none when ``NO_COLOR`` is set).
    Off a terminal, :func:`show` writes :func:`to_text` instead."""
    return Console(file=stream, width=width, highlight=False, force_jupyter=False, emoji=False,
                   soft_wrap=False)


def show(view: RenderableType, stream: Any, *, indent: str = "") -> None:
    """Print a view to ``stream``: in colour on a terminal (:func:`console_for`), else as
    :func:`to_text` (no trailing spaces in logs), each line after ``indent``."""
    if bool(getattr(stream, "isatty", lambda: False)()):
        console_for(stream).print(Padding(view, (0, 0, 0, len(indent))) if indent else view)
    else:
        stream.write("".join(f"{indent}{line}".rstrip() + "\n"
                             for line in to_text(view).splitlines()))
    stream.flush()


def to_text(view: RenderableType, *, width: int = TEXT_WIDTH) -> str:
    """A view as plain text (no colour, no control characters), trailing spaces trimmed."""
    buf = io.StringIO()
    # force_jupyter=False on every console: in a kernel rich would display() what it prints
    # (an extra output in the cell) instead of writing it.
    Console(file=buf, width=width, color_system=None, force_terminal=False, no_color=True,
            force_jupyter=False, highlight=False, emoji=False, soft_wrap=False).print(view)
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()).strip("\n")


def to_html(view: RenderableType, *, width: int = TEXT_WIDTH) -> str:
    """A view as self-contained HTML (inline styles, no script): for Jupyter."""
    console = Console(file=io.StringIO(), record=True, width=width, color_system="truecolor",
                      force_terminal=True, force_jupyter=False, highlight=False, emoji=False)
    console.print(view)
    return console.export_html(inline_styles=True, code_format=_HTML)


class Rendered:
    """What an object with a view gets: ``str()`` as plain text, ``_repr_html_`` for Jupyter,
    ``__rich__`` for rich consoles, IPython's pretty printer. Subclasses define :meth:`view`."""

    def view(self) -> RenderableType:
        """This object's rich renderable."""
        raise NotImplementedError

    def __rich__(self) -> RenderableType:
        return self.view()

    def __str__(self) -> str:
        return to_text(self.view())

    def _repr_html_(self) -> str:
        return to_html(self.view())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


# -- cells ----------------------------------------------------------------------------------------


def cell(value: object, tone: str | None = None) -> Text:
    """A cell holding ``value`` as typed (never markup), in a tone of :data:`TONES`."""
    return Text(str(value), style=TONES.get(tone, "") if tone else "")


def table(*headers: str, title: str | None = None, rows: Iterable[Sequence[RenderableType]] = (),
          empty: str | None = None, short: Iterable[str] = (),
          limit: int | None = None) -> RenderableType:
    """A table in the project's style: plain, a rule under the headers, no outer frame (it
    reads the same in a terminal, a log and a notebook).

    Headers and title are plain text (a site's name in them is never read as markup). Nothing is
    cut: a cell too wide for its column wraps onto the next lines (rich crops a table whose
    columns cannot shrink enough, so no column is given a minimum width).

    Args:
        short: headers of columns whose values are a word or two (``do``, ``yes``, ``4.2s``):
            never wrapped.
        empty: what to show instead of a table with no row.
        limit: at most this many rows (the first ones), then a line saying how many more.
    """
    body = [list(row) for row in rows]
    more = len(body) - limit if limit is not None and len(body) > limit else 0
    if more:
        body = body[:limit]
    if not body and empty is not None:
        return Group(Text(title or "", style="bold"), Text(f"  {empty}", style="dim")) if title \
            else Text(f"  {empty}", style="dim")
    keep = set(short)
    columns = [Column(Text(h, style="bold"), overflow="fold", no_wrap=h in keep)
               for h in headers]
    t = Table(*columns, title=Text(title, style="bold") if title else None,
              title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              expand=False)
    for row in body:
        t.add_row(*row)
    if more:
        return Group(t, cell(f"... and {more:,} more (to_dict(), or --json on the command line, "
                             "lists every one)", "muted"))
    return t


def mirror_tone(status: MirrorStatus | None) -> str:
    """The tone of an rbd-mirror report."""
    if status is None:
        return "muted"
    local = status.local
    if status.is_split_brain() or local.state is MirrorState.ERROR or not local.up:
        return "bad"
    if local.state is MirrorState.REPLAYING:
        return "ok"
    if local.state in (MirrorState.SYNCING, MirrorState.STARTING_REPLAY,
                       MirrorState.STOPPING_REPLAY):
        return "busy"
    if local.state is MirrorState.STOPPED:
        return "info"
    return "muted"


def mirror_text(role: str, status: MirrorStatus | None) -> Text:
    """An image on one site: its role, then rbd-mirror's state and details (with copy progress),
    coloured: ``primary up+stopped``, ``non-primary up+replaying behind=0 @12:00:01``."""
    role_tone = {"primary": "info", "non-primary": "muted", "missing": "bad"}.get(role, "muted")
    out = Text(role, style=TONES[role_tone])
    if role == "missing":
        return out
    out.append(" ")
    if status is None:
        out.append("(no status)", style=TONES["muted"])
        return out
    text = status.local.summary()
    if status.is_split_brain() and "split-brain" not in text:
        text += " split-brain"
    out.append(text, style=TONES[mirror_tone(status)])
    return out


def side_text(side: ImageSide) -> Text:
    """A :class:`~ceph_failback.failback.status.ImageSide` as a cell."""
    return mirror_text(side.role, side.status)


def vm_tone(status: str) -> str:
    """The tone of a VM state (``ACTIVE/RUNNING``, ``DONE``, ``POWEROFF``...)."""
    if status == "ACTIVE/RUNNING":
        return "ok"
    if status == "DONE":
        return "muted"
    if status in ("FAILED", "ACTIVE/UNKNOWN") or "FAILURE" in status:
        return "bad"
    if status in ("POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED", "HOLD"):
        return "busy"
    return "info"


def vm_text(vm_id: int, status: str, name: str | None = None) -> Text:
    """A VM: id, name, coloured state."""
    out = Text(str(vm_id))
    if name:
        out.append(f" {name}", style="dim")
    out.append(" ")
    out.append(status, style=TONES[vm_tone(status)])
    return out


def _steps(actions: Iterable[Any]) -> Text:
    """The steps that will act on an image or VM (``demote_a resync_a``), or ``none``; the
    steps' table below says why each skips."""
    todo = [a.step for a in actions if a.do]
    return cell(" ".join(todo), "info") if todo else cell("none (all skip)", "muted")


def outcome_tone(outcome: str) -> str:
    """The tone of a step outcome or an image's outcome."""
    return {"failed back": "ok", "failed": "bad", "done": "ok", "skipped": "muted",
            "warning": "busy", "waiting": "busy"}.get(outcome, "busy")


def _heading(text: str, *extras: Text) -> Text:
    out = Text(text, style="bold")
    for extra in extras:
        out.append("  ")
        out.append_text(extra)
    return out


# -- the objects ----------------------------------------------------------------------------------

_IMAGE_STEPS = ("demote_a", "resync_a", "demote_b", "promote_a")


def plan_view(plan: Plan, journal: Path | str | None = None) -> RenderableType:
    """The plan: blockers first, warnings, the images and VMs with each step's action, the steps
    with their reasons, and the verdict."""
    parts: list[RenderableType] = [
        _heading(f"Failback plan for pool {plan.pool!r}: {plan.site_b} (B) -> {plan.site_a} (A)")]
    if journal is not None:
        parts.append(Text(f"Journal: {journal}"))
    if plan.blockers:
        rows = []
        for b in plan.blockers:
            waived = b.waivable and b.kind in plan.waived
            rows.append([cell(b.kind, "muted" if waived else "bad"), cell(b.target),
                         cell("waived" if waived else "waivable" if b.waivable else "no",
                              "muted" if waived else None), cell(b.message)])
        parts.append(table("KIND", "TARGET", "WAIVE", "WHAT IS WRONG", rows=rows, short=("WAIVE",),
                           title=f"BLOCKERS ({len(plan.unwaived)} in force, "
                                 f"{len(plan.blockers) - len(plan.unwaived)} waived):"))
    if plan.warnings:
        parts.append(Text("Warnings:", style="bold"))
        parts += [Text.assemble("  - ", (w, TONES["busy"])) for w in plan.warnings]
    if plan.images:
        rows = []
        for i in plan.images:
            acts = [a for a in (i.action(s) for s in _IMAGE_STEPS) if a is not None]
            rows.append([cell(i.name), cell(i.mode or "?"),
                         mirror_text(_plan_role(i.status_a), i.status_a),
                         mirror_text(_plan_role(i.status_b), i.status_b), _steps(acts)])
        parts.append(table("IMAGE", "MODE", f"{plan.site_a} (A)", f"{plan.site_b} (B)",
                           "STEPS THAT ACT", rows=rows, short=("MODE",), limit=ROW_LIMIT,
                           title=f"Images ({len(plan.images)}):"))
    if plan.vms:
        rows = [[vm_text(v.vm_b.id, v.vm_b.status, v.vm_b.name),
                 vm_text(v.vm_a.id, v.vm_a.status, v.vm_a.name), cell(", ".join(v.images)),
                 _steps(v.actions)] for v in plan.vms]
        parts.append(table(f"VM ON {plan.site_b}", f"VM ON {plan.site_a}", "IMAGES",
                           "STEPS THAT ACT", rows=rows, title=f"VMs ({len(plan.vms)}):",
                           limit=ROW_LIMIT))
    if plan.order.groups:
        rows = [[cell(n), cell(g.name), cell(", ".join(map(str, g.vms))),
                 cell(", ".join(g.after) or "-", None if g.after else "muted"),
                 cell("READY=YES" if g.ready else "RUNNING")]
                for n, g in enumerate(plan.order.groups, 1)]
        parts.append(Group(table("", "GROUP", f"VMS ON {plan.site_b}", "STARTS AFTER",
                                 "STARTED WHEN", rows=rows, short=("",), title="Start order:"),
                           cell(f"{plan.site_b} stops the groups last first, {plan.site_a} "
                                "resumes them in order; VMs of no group keep no order.",
                                "muted")))
    rows = []
    for n, step in enumerate(STEPS, 1):
        groups: dict[tuple[bool, str], int] = {}
        for a in plan.actions(step):
            groups[(a.do, a.reason)] = groups.get((a.do, a.reason), 0) + 1
        n_do = sum(c for (do, _), c in groups.items() if do)
        n_skip = sum(c for (do, _), c in groups.items() if not do)
        why = Text("\n").join(
            Text(f"{'do' if do else 'skip'} {count}: {reason}",
                 style=TONES["info"] if do else TONES["muted"])
            for (do, reason), count in sorted(groups.items(), key=lambda kv: not kv[0][0])
        ) if groups else cell("nothing in scope", "muted")
        rows.append([cell(n), cell(step), cell(STEP_TITLES[step]),
                     cell(f"do {n_do}", "info" if n_do else "muted"),
                     cell(f"skip {n_skip}", "muted"), why])
    parts.append(table("", "STEP", "WHAT", "DO", "SKIP", "WHY", title="Steps:", rows=rows,
                       short=("STEP", "DO", "SKIP")))
    parts.append(cell("No blocker: the failback can run.", "ok") if plan.ok else cell(
        f"REFUSED: {len(plan.unwaived)} blocker(s) in force; fix them (waivable kinds can be "
        "waived with --waive KIND).", "bad"))
    return Group(*_spaced(parts))


def _plan_role(status: MirrorStatus | None) -> str:
    if status is None:
        return "role unknown"
    return "primary" if status.is_primary() else "non-primary"


def status_view(status: Status, *, lock: str | None | bool = False,
                journal: str | None = None,
                failback: dict[str, Any] | None = None) -> RenderableType:
    """Both sites side by side, how many images and VMs are home; with the holder of the pool's
    failback lock when ``lock`` is given (``None``: free) and what the journal records."""
    a, b = status.site_a, status.site_b
    homes = sum(i.home for i in status.images)
    vms_home = sum(v.home for v in status.vms)
    done = status.complete and bool(status.images or status.vms)
    parts: list[RenderableType] = [_heading(
        f"Pool {status.pool!r}: {b} (B) -> {a} (A), at {status.taken:%Y-%m-%d %H:%M:%S} UTC",
        cell(f"{homes}/{len(status.images)} images home", "ok" if done else "busy"),
        cell(f"{vms_home}/{len(status.vms)} VMs home", "ok" if done else "busy"))]
    if lock is not False:
        parts.append(Text(f"Failback lock: held by {lock}" if lock else "Failback lock: free"))
    rows = []
    for i in sorted(status.images, key=lambda i: i.home):  # those not home first
        phase_tone = "ok" if i.home else "bad" if (
            "split-brain" in i.phase or "missing" in i.phase or "both" in i.phase) else "busy"
        rows.append([cell(i.name), cell(i.mode or "?"), side_text(i.a), side_text(i.b),
                     cell(i.phase, phase_tone)])
    parts.append(table("IMAGE", "MODE", f"{a} (A)", f"{b} (B)", "PHASE", rows=rows, short=("MODE",),
                       title=f"Images ({len(status.images)}):", empty="none in scope",
                       limit=ROW_LIMIT))
    rows = [[vm_text(v.vm_b.id, v.vm_b.status, v.vm_b.name),
             vm_text(v.vm_a.id, v.vm_a.status, v.vm_a.name), cell(", ".join(v.images)),
             cell("home", "ok") if v.home else cell("not yet", "busy")]
            for v in sorted(status.vms, key=lambda v: v.home)]
    parts.append(table(f"VM ON {b} (B)", f"VM ON {a} (A)", "IMAGES", "", rows=rows,
                       title=f"VMs ({len(status.vms)}):", empty="none in scope", limit=ROW_LIMIT))
    if failback:
        state = "complete" if failback.get("complete") else "NOT complete"
        parts.append(Text.assemble(f"Journal {journal}: failback ",
                                   (state, TONES["ok" if failback.get("complete") else "busy"]),
                                   f", {failback.get('runs')} run(s)"))
    elif journal:
        parts.append(Text(f"Journal {journal}: no failback recorded"))
    return Group(*_spaced(parts))


def report_view(report: Report) -> RenderableType:
    """The outcome: per image, per VM with its downtime, the totals and what is not protected."""
    from .protection import report_line

    wall = f", {report.wall_time:.1f}s" if report.wall_time is not None else ""
    parts: list[RenderableType] = [_heading(
        f"Failback of pool {report.pool!r} {report.site_b} (B) -> {report.site_a} (A):",
        cell("COMPLETE", "ok") if report.complete else cell("NOT complete", "bad"),
        cell(f"({report.runs} run(s){wall})", "muted"))]

    verified = any(i.verified is not None for i in report.images)
    rows = [[cell(i.name), cell(i.outcome, outcome_tone(i.outcome)), _done(i),
             cell(i.protection or "-", "bad" if i.protected is False else
                  "ok" if i.protected else "muted"),
             *([cell(i.verification or "-", "bad" if i.verified is False else
                     "ok" if i.verified else "muted")] if verified else []),
             cell(i.error or "", "bad")]
            for i in sorted(report.images, key=lambda i: not (i.error or i.protected is False
                                                              or not i.promoted))]
    parts.append(table("IMAGE", "OUTCOME", "DONE", "PROTECTION (B REPLAYS FROM A)",
                       *(["VERIFIED (A = B'S LAST DATA)"] if verified else []), "ERROR",
                       rows=rows, title=f"Images ({len(report.images)}):", empty="none",
                       limit=ROW_LIMIT))
    rows = []
    ordered = any(v.group for v in report.vms)
    for v in sorted(report.vms, key=lambda v: v.resumed):  # those not running on A first
        state = cell("running on A", "ok") if v.resumed and (
            v.ready is not None or not v.needs_ready) else cell(
            "running on A, not ready", "bad" if v.error else "busy") if v.resumed else (
            cell("failed", "bad") if v.error else
            cell("terminated on B, not resumed yet", "busy") if v.terminated else
            cell("not yet", "busy"))
        times = [cell(v.group or "-"), cell(_clock(v.stopped)), cell(_clock(v.started)),
                 cell(_clock(v.ready) if v.needs_ready else "-")]
        rows.append([cell(f"{v.vm_b} -> {v.vm_a}"), cell(", ".join(v.images)), state,
                     *(times if ordered else []),
                     cell(f"{v.downtime:.1f}s" if v.downtime is not None else "-"),
                     cell(v.error or "", "bad")])
    order_headers = ("GROUP", f"DONE ON {report.site_b}", f"RUNNING ON {report.site_a}", "READY")
    parts.append(table(f"VM {report.site_b} -> {report.site_a}", "IMAGES", "STATE",
                       *(order_headers if ordered else ()), "DOWNTIME", "ERROR", rows=rows,
                       short=("DOWNTIME",), limit=ROW_LIMIT, title=f"VMs ({len(report.vms)}):",
                       empty="none"))
    if ordered:
        stops, starts = report.order_followed()
        parts.append(Text(f"Order followed: {report.site_b} stopped VMs "
                          f"{' -> '.join(map(str, stops)) or '-'}; {report.site_a} resumed VMs "
                          f"{' -> '.join(map(str, starts)) or '-'}"))
    if report.hooks:
        rows = [[cell(h.target + ("" if h.configured else " (no longer configured)")),
                 cell(h.outcome, outcome_tone(h.outcome) if h.outcome != "failed"
                      or (h.on_error == "stop" and h.configured) else "busy"),
                 cell(f"{h.seconds:.1f}s" if h.seconds is not None else "-"),
                 cell(h.on_error), cell(h.error or "", "bad")] for h in report.hooks]
        parts.append(table("HOOK", "OUTCOME", "TIME", "ON ERROR", "ERROR", rows=rows,
                           title=f"Hooks ({len(report.hooks)}):", short=("TIME",)))
    d = report.downtimes()
    if d:
        parts.append(Text(f"Downtime per VM (terminate request on B to RUNNING on A): median "
                          f"{statistics.median(d):.1f}s, max {max(d):.1f}s"))
    if any(i.protected is False for i in report.images):
        parts.append(cell("NOT PROTECTED: site B does not replay some images from A; "
                          "Failback.reprotect() (`ceph-failback reprotect`) resyncs a "
                          "split-brained copy on B from A", "bad"))
    if report.unprotected:
        parts.append(cell(report_line(dict(report.unprotected)).strip(), "busy"))
    return Group(*_spaced(parts))


def _clock(at: float | None) -> str:
    """A journal time as the local clock (``14:03:07.2``), ``-`` for none."""
    if at is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 10) % 10}"


def _done(i: Any) -> Text:
    """What the failback did to an image: ``demoted on A, resynced, demoted on B, promoted on
    A (2 attempts)``."""
    done = [w for w, flag in (("demoted on A", i.demoted_a), ("resynced", i.resynced),
                              ("demoted on B", i.demoted_b)) if flag]
    if i.promoted:
        done.append("promoted on A" + (f" ({i.promote_attempts} attempt"
                                       f"{'s' if i.promote_attempts != 1 else ''})"
                                       if i.promote_attempts else ""))
    return cell(", ".join(done) or "nothing yet", None if done else "muted")


def step_result_view(result: StepResult) -> RenderableType:
    """One step call's outcome per target."""
    heading = _heading(
        f"{result.step}: {STEP_TITLES.get(result.step, '')}",
        cell(f"{len(result.done)} done", "ok" if result.done else "muted"),
        cell(f"{len(result.skipped)} skipped", "muted"),
        cell(f"{len(result.failed)} failed", "bad" if result.failed else "muted"),
        cell(f"in {result.seconds:.1f}s", "muted"))
    rows = [[cell(t), cell(o, outcome_tone(o)), cell(r)] for t, (o, r) in result.outcomes.items()]
    rows.sort(key=lambda row: str(row[1]) != "failed")  # failures first
    return Group(heading, table("TARGET", "OUTCOME", "WHY", rows=rows, empty="nothing in scope",
                                short=("OUTCOME",), limit=ROW_LIMIT))


def _spaced(parts: list[RenderableType]) -> list[RenderableType]:
    """A blank line between sections; consecutive lines of text stay together."""
    out: list[RenderableType] = []
    for n, part in enumerate(parts):
        if n and not (isinstance(part, Text) and isinstance(parts[n - 1], Text)):
            out.append(Text(""))
        out.append(part)
    return out
