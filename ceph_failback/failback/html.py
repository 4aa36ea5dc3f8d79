"""HTML renderings for Jupyter: the plan, the two-site status, a step's result and the report.

Every object of the orchestrator that a notebook shows has a ``_repr_html_`` that calls one of the
functions here. The HTML is self-contained (inline styles only, no script), so it survives
notebook sanitisers and static renderers, and every name that comes from a site (images, VMs,
messages) is escaped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from ..ceph.status import MirrorState, MirrorStatus

if TYPE_CHECKING:
    from .plan import Plan
    from .report import Report
    from .status import ImageSide, Status
    from .steps.base import StepResult

__all__ = ["esc", "badge", "bar", "table", "mirror_cell", "vm_badge", "plan_html", "status_html",
           "report_html", "step_result_html", "TONES"]

#: Colour pairs (text, background) by tone.
TONES = {
    "ok": ("#1a7f37", "#dafbe1"),      # done, replaying, running, failed back
    "bad": ("#cf222e", "#ffebe9"),     # blocker, failed, split-brain, down, missing
    "busy": ("#9a6700", "#fff8c5"),    # in progress, syncing, powered off, warnings
    "info": ("#0969da", "#ddf4ff"),    # primary, an action to do, transitional states
    "muted": ("#57606a", "#f6f8fa"),   # skipped, non-primary, DONE, no status
}

_ROOT = ('<div class="ceph-failback" style="font-family:system-ui,-apple-system,sans-serif;'
         'font-size:13px;line-height:1.4">')
_TABLE = 'style="border-collapse:collapse;margin:4px 0 10px 0"'
_CELL = "border:1px solid #d0d7de;padding:2px 6px;text-align:left;vertical-align:top"
_SMALL = "color:#57606a;font-size:11px"


def esc(value: object) -> str:
    """``value`` as escaped HTML text."""
    return escape(str(value), quote=True)


def badge(text: object, tone: str, title: str | None = None) -> str:
    """A coloured label."""
    fg, bg = TONES[tone]
    tip = f' title="{esc(title)}"' if title else ""
    return (f'<span{tip} style="color:{fg};background:{bg};border:1px solid {fg}33;'
            f'border-radius:3px;padding:0 4px;white-space:nowrap">{esc(text)}</span>')


def bar(done: float, total: float, label: str | None = None, tone: str = "ok") -> str:
    """A horizontal progress bar, ``done`` out of ``total``, with a label."""
    fraction = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
    fg, _ = TONES[tone]
    text = label if label is not None else f"{done:g}/{total:g}"
    return ('<div style="display:flex;align-items:center;gap:6px">'
            '<div style="width:140px;height:10px;background:#eaeef2;border-radius:5px;'
            'overflow:hidden">'
            f'<div style="width:{fraction * 100:.1f}%;height:100%;background:{fg}"></div></div>'
            f'<span style="{_SMALL}">{esc(text)}</span></div>')


def small(text: object) -> str:
    """Secondary text."""
    return f'<span style="{_SMALL}">{esc(text)}</span>'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *,
          empty: str = "none in scope") -> str:
    """A table; ``headers`` are text (escaped here), ``rows`` cells are HTML already."""
    rows = list(rows)
    if not rows:
        return f"<p>{small(empty)}</p>"
    head = "".join(f'<th style="{_CELL};background:#f6f8fa">{esc(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in r) + "</tr>"
                   for r in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def heading(text: str, *badges: str) -> str:
    """A section heading with badges after it."""
    return (f'<div style="font-weight:600;font-size:14px;margin:6px 0 4px 0">{esc(text)} '
            + " ".join(badges) + "</div>")


def subheading(text: str) -> str:
    """A smaller heading."""
    return f'<div style="font-weight:600;margin:8px 0 2px 0">{esc(text)}</div>'


# -- cells ------------------------------------------------------------------------------------


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


def _role_badge(role: str) -> str:
    tone = {"primary": "info", "non-primary": "muted", "missing": "bad"}.get(role, "muted")
    return badge(role, tone)


def _plan_role(status: MirrorStatus | None) -> str:
    if status is None:
        return "role unknown"
    return "primary" if status.is_primary() else "non-primary"


def _percent(status: MirrorStatus | None) -> float | None:
    if status is None:
        return None
    local = status.local
    if local.bootstrap_percent is not None:
        return local.bootstrap_percent
    if local.replay is not None and local.replay.syncing_percent is not None:
        return local.replay.syncing_percent
    return None


def mirror_cell(role: str, status: MirrorStatus | None) -> str:
    """An image on one site: role, rbd-mirror state (coloured), details, copy progress."""
    if role == "missing":
        return _role_badge(role)
    parts = [_role_badge(role)]
    if status is None:
        parts.append(badge("no status", "muted"))
        return " ".join(parts)
    local = status.local
    label = "split-brain" if status.is_split_brain() else local.label
    parts.append(badge(label, mirror_tone(status), title=local.description or None))
    detail = local.summary().removeprefix(local.label).strip()
    out = " ".join(parts)
    if detail:
        out += "<br>" + small(detail)
    pct = _percent(status)
    if pct is not None:
        out += bar(pct, 100, f"{pct:g}%", tone="busy")
    return out


def side_cell(side: ImageSide) -> str:
    """A :class:`~ceph_failback.failback.status.ImageSide` as a cell."""
    return mirror_cell(side.role, side.status)


def vm_tone(status: str) -> str:
    """The tone of a VM state (``ACTIVE/RUNNING``, ``DONE``, ``POWEROFF``...)."""
    if status == "ACTIVE/RUNNING":
        return "ok"
    if status in ("DONE",):
        return "muted"
    if status in ("FAILED", "ACTIVE/UNKNOWN", "CLONING_FAILURE") or "FAILURE" in status:
        return "bad"
    if status in ("POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED", "HOLD"):
        return "busy"
    return "info"


def vm_badge(vm_id: int, status: str, name: str | None = None) -> str:
    """A VM: id, name, coloured state."""
    who = f"{vm_id}" + (f" {small(name)}" if name else "")
    return f"{who} {badge(status, vm_tone(status))}"


def _do(do: bool, reason: str) -> str:
    return (badge("do", "info", title=reason) if do else badge("skip", "muted", title=reason)) + (
        "<br>" + small(reason) if reason else "")


# -- objects ----------------------------------------------------------------------------------


def plan_html(plan: Plan) -> str:
    """The plan: verdict, blockers, warnings, images and VMs with each step's action."""
    from .ledger import STEP_TITLES, STEPS

    verdict = (badge("ready: no blocker", "ok") if plan.ok
               else badge(f"REFUSED: {len(plan.unwaived)} blocker(s)", "bad"))
    out = [_ROOT, heading(f"Failback plan, pool {plan.pool}: {plan.site_b} (B) \u2192 "
                          f"{plan.site_a} (A)", verdict)]
    if plan.blockers:
        rows = []
        for b in plan.blockers:
            waived = b.waivable and b.kind in plan.waived
            state = (badge("waived", "muted") if waived else
                     badge("blocker (waivable)", "busy") if b.waivable else badge("blocker", "bad"))
            rows.append([state, esc(b.kind), esc(b.target), esc(b.message)])
        out += [subheading("Blockers"), table(["", "KIND", "TARGET", "WHAT IS WRONG"], rows)]
    if plan.warnings:
        out.append(subheading("Warnings"))
        out.append("<ul>" + "".join(f"<li>{badge('warning', 'busy')} {esc(w)}</li>"
                                    for w in plan.warnings) + "</ul>")
    image_steps = ("demote_a", "resync_a", "demote_b", "promote_a")
    rows = []
    for i in plan.images:
        cells = [esc(i.name), esc(i.mode or "?"), mirror_cell(_plan_role(i.status_a), i.status_a),
                 mirror_cell(_plan_role(i.status_b), i.status_b)]
        for s in image_steps:
            a = i.action(s)
            cells.append(_do(a.do, a.reason) if a is not None else small("-"))
        rows.append(cells)
    out += [subheading(f"Images ({len(plan.images)})"),
            table(["IMAGE", "MODE", f"{plan.site_a} (A)", f"{plan.site_b} (B)",
                   *(s.upper() for s in image_steps)], rows)]
    rows = []
    for v in plan.vms:
        acts = {a.step: a for a in v.actions}
        cells = [vm_badge(v.vm_b.id, v.vm_b.status, v.vm_b.name),
                 vm_badge(v.vm_a.id, v.vm_a.status, v.vm_a.name), esc(", ".join(v.images))]
        for s in ("terminate_b", "resume_a"):
            a = acts.get(s)
            cells.append(_do(a.do, a.reason) if a is not None else small("-"))
        rows.append(cells)
    out += [subheading(f"VMs ({len(plan.vms)})"),
            table([f"VM ON {plan.site_b}", f"VM ON {plan.site_a}", "IMAGES", "TERMINATE_B",
                   "RESUME_A"], rows)]
    rows = []
    for n, step in enumerate(STEPS, 1):
        step_acts = plan.actions(step)
        todo = sum(a.do for a in step_acts)
        rows.append([str(n), esc(step), esc(STEP_TITLES[step]),
                     badge(f"do {todo}", "info") if todo else small("do 0"),
                     small(f"skip {len(step_acts) - todo}")])
    out += [subheading("Steps"), table(["", "STEP", "WHAT", "DO", "SKIP"], rows), "</div>"]
    return "".join(out)


def status_html(status: Status) -> str:
    """Both sites side by side, with how many images and VMs are home."""
    images_home = sum(i.home for i in status.images)
    vms_home = sum(v.home for v in status.vms)
    verdict = badge("failed back", "ok") if status.complete and (status.images or status.vms) \
        else badge("not failed back", "busy")
    out = [_ROOT, heading(f"Pool {status.pool}: {status.site_b} (B) \u2192 {status.site_a} (A)",
                          verdict, small(f"at {status.taken:%Y-%m-%d %H:%M:%S} UTC")),
           table(["", "HOME ON A"], [
               ["images", bar(images_home, len(status.images),
                              f"{images_home}/{len(status.images)} primary on A")],
               ["VMs", bar(vms_home, len(status.vms),
                           f"{vms_home}/{len(status.vms)} running on A")]], empty="")]
    rows = []
    for i in status.images:
        phase_tone = "ok" if i.home else "bad" if (
            "split-brain" in i.phase or "missing" in i.phase or "both" in i.phase) else "busy"
        rows.append([esc(i.name), esc(i.mode or "?"), side_cell(i.a), side_cell(i.b),
                     badge(i.phase, phase_tone)])
    out += [subheading(f"Images ({len(status.images)})"),
            table(["IMAGE", "MODE", f"{status.site_a} (A)", f"{status.site_b} (B)", "PHASE"],
                  rows)]
    rows = [[vm_badge(v.vm_b.id, v.vm_b.status, v.vm_b.name),
             vm_badge(v.vm_a.id, v.vm_a.status, v.vm_a.name), esc(", ".join(v.images)),
             badge("home", "ok") if v.home else badge("not yet", "busy")] for v in status.vms]
    out += [subheading(f"VMs ({len(status.vms)})"),
            table([f"VM ON {status.site_b} (B)", f"VM ON {status.site_a} (A)", "IMAGES", ""],
                  rows), "</div>"]
    return "".join(out)


def _outcome_tone(outcome: str) -> str:
    return {"failed back": "ok", "failed": "bad", "done": "ok", "skipped": "muted"}.get(
        outcome, "busy")


def report_html(report: Report) -> str:
    """The outcome: per image, per VM with its downtime, and the totals."""
    import statistics

    verdict = badge("COMPLETE", "ok") if report.complete else badge("NOT complete", "bad")
    wall = f", {report.wall_time:.1f}s" if report.wall_time is not None else ""
    out = [_ROOT, heading(f"Failback of pool {report.pool}: {report.site_b} (B) \u2192 "
                          f"{report.site_a} (A)", verdict, small(f"{report.runs} run(s){wall}"))]
    promoted = sum(i.promoted for i in report.images)
    resumed = sum(v.resumed for v in report.vms)
    out.append(table(["", "PROGRESS"], [
        ["images", bar(promoted, len(report.images),
                       f"{promoted}/{len(report.images)} promoted on A")],
        ["VMs", bar(resumed, len(report.vms), f"{resumed}/{len(report.vms)} running on A")]],
        empty=""))

    def yes(flag: bool) -> str:
        return badge("yes", "ok") if flag else small("no")

    rows = [[esc(i.name), badge(i.outcome, _outcome_tone(i.outcome)), yes(i.demoted_a),
             yes(i.resynced), yes(i.demoted_b), yes(i.promoted),
             esc(i.promote_attempts) if i.promote_attempts is not None else small("-"),
             esc(i.error) if i.error else ""] for i in report.images]
    out += [subheading(f"Images ({len(report.images)})"),
            table(["IMAGE", "OUTCOME", "DEMOTED ON A", "RESYNCED", "DEMOTED ON B",
                   "PROMOTED ON A", "PROMOTE ATTEMPTS", "ERROR"], rows)]
    longest = max(report.downtimes(), default=0.0)
    rows = []
    for v in report.vms:
        state = badge("running on A", "ok") if v.resumed else (
            badge("failed", "bad") if v.error else badge("not yet", "busy"))
        down = (bar(v.downtime, longest or 1.0, f"{v.downtime:.1f}s", tone="busy")
                if v.downtime is not None else small("-"))
        rows.append([esc(f"{v.vm_b} \u2192 {v.vm_a}"), esc(", ".join(v.images)),
                     yes(v.terminated), state, down, esc(v.error) if v.error else ""])
    out += [subheading(f"VMs ({len(report.vms)})"),
            table([f"VM {report.site_b} \u2192 {report.site_a}", "IMAGES", "TERMINATED ON B",
                   "RESUMED", "DOWNTIME", "ERROR"], rows)]
    d = report.downtimes()
    if d:
        out.append(f"<p>Downtime per VM (terminate request on B to RUNNING on A): median "
                   f"<b>{statistics.median(d):.1f}s</b>, max <b>{max(d):.1f}s</b>.</p>")
    if report.unprotected:
        from .protection import report_line

        out.append(f"<p>{badge('warning', 'busy')} "
                   f"{esc(report_line(dict(report.unprotected)).strip())}</p>")
    out.append("</div>")
    return "".join(out)


def step_result_html(result: StepResult) -> str:
    """One step call's outcome per target."""
    from .ledger import STEP_TITLES

    tone = "bad" if result.failed else "ok"
    out = [_ROOT, heading(f"{result.step}: {STEP_TITLES.get(result.step, '')}",
                          badge(f"{len(result.done)} done", tone if result.done else "muted"),
                          badge(f"{len(result.skipped)} skipped", "muted"),
                          badge(f"{len(result.failed)} failed", "bad" if result.failed else "muted"),
                          small(f"in {result.seconds:.1f}s"))]
    rows = [[esc(t), badge(o, _outcome_tone(o)), esc(r)] for t, (o, r) in result.outcomes.items()]
    out += [table(["TARGET", "OUTCOME", "WHY"], rows, empty="nothing in scope"), "</div>"]
    return "".join(out)
