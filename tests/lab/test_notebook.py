"""docs/notebook.ipynb, executed by a real Jupyter kernel (nbclient + ipykernel) against the
session's lab: every cell must run without error, and the plan, status and report must render
as HTML naming every image and VM of the notebook's world."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from ceph_failback.lab import Lab
from tests.unit.test_display import html_text

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "docs" / "notebook.ipynb"
KERNEL = "ceph-failback-test"


def _kernel_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel spec that runs this very interpreter (the venv that sees the Ceph bindings), so
    that no other 'python3' kernel installed on the machine is picked."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "ceph_failback tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def _html(cell: dict) -> str:
    """What the cell's rich outputs show (their HTML, tags dropped, entities decoded)."""
    return "".join(html_text(o.get("data", {}).get("text/html", "")) for o in cell["outputs"]
                   if o.get("output_type") in ("display_data", "execute_result"))


def _text(cell: dict) -> str:
    out = []
    for o in cell["outputs"]:
        if o.get("output_type") == "stream":
            out.append(o["text"])
        elif "data" in o:
            out.append(o["data"].get("text/plain", ""))
    return "".join(out)


def test_notebook_runs_on_the_lab(lab: Lab, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    _kernel_spec(tmp_path, monkeypatch)
    monkeypatch.setenv("CEPH_FAILBACK_LAB_DIR", str(lab.directory))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    started = time.monotonic()
    try:
        client.execute()  # raises CellExecutionError on the first cell that fails
    finally:
        nbformat.write(nb, tmp_path / "notebook.executed.ipynb")
    took = time.monotonic() - started
    print(f"notebook executed in {took:.1f}s: {tmp_path / 'notebook.executed.ipynb'}")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.get("output_type") == "error"]
    assert errors == []

    code = [c for c in nb.cells if c.cell_type == "code"]

    def cell_with(text: str) -> dict:
        found = [c for c in code if text in c.source]
        assert len(found) == 1, (text, len(found))
        return found[0]

    # The kernel ran this interpreter, and used the session's lab (which it leaves running).
    assert sys.executable in _text(code[0])
    assert lab.running_pids(), "the notebook must not stop a lab it did not start"

    # The world the notebook built: its images and its VMs on B, as the cells printed them.
    images = sorted(set(re.findall(r"one-\d+", _text(cell_with("world.add_vm(")))))
    assert len(images) == 4, images
    names = sorted(set(re.findall(r"web-[0-9a-f]{4}-\d", _text(cell_with("world.add_vm(")))))
    assert len(names) == 3, names
    pairs = re.findall(r"VM (\d+) on B -> VM (\d+) on A", _text(cell_with("world.disaster(")))
    assert len(pairs) == 3, pairs

    # Plan, status (before and after) and report rendered as HTML naming every image and VM.
    plan = _html(cell_with("plan = fb.plan()"))
    statuses = [_html(c) for c in code if c.source.strip() == "fb.status()"]
    report = _html(cell_with("report = fb.report()"))
    assert len(statuses) == 2 and all(statuses) and plan and report
    for source in ("fb.status()", "report = fb.report()", "plan = fb.plan()"):
        for cell in code:
            if cell.source.strip().startswith(source):  # one output: the cell's value
                assert [o["output_type"] for o in cell.outputs] == ["execute_result"], source
    for html in (plan, *statuses, report):
        for image in images:
            assert image in html
    for html in (plan, *statuses):
        for name in names:
            assert name in html
    for vm_b, vm_a in pairs:
        assert f"{vm_b} -> {vm_a}" in report
    assert "No blocker: the failback can run." in plan
    assert "0/4 images home" in statuses[0] and "4/4 images home" in statuses[1]
    assert "COMPLETE" in report
    assert len(re.findall(r"^\d+ -> \d+ .*running on A", report, re.M)) == 3, report

    # Each step's cell shows its result, and one progress table updated in place (not one
    # output per event).
    for step in ("demote_site_a", "resync_site_a", "terminate_site_b", "demote_site_b",
                 "promote_site_a", "resume_site_a"):
        cell = cell_with(f"fb.{step}()")
        progress = [o for o in cell.outputs if o.get("output_type") == "display_data"]
        assert len(progress) == 1, (step, len(progress))
        shown = html_text(progress[0]["data"]["text/html"])
        assert re.search(r"\[\d/6\] \w+  finished  \d+ done", shown), shown
        result = [o for o in cell.outputs if o.get("output_type") == "execute_result"]
        assert len(result) == 1 and "0 failed" in html_text(result[0]["data"]["text/html"])
    assert "site A holds site B's last writes for all 4 images" in _text(code[-2])
