"""``ceph-failback`` end to end on the real lab with the oned stand-ins: a TOML config pointing
at the lab's conf files and keyrings, the stand-ins' endpoints and an auth file."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.cli import main
from ceph_failback.lab import Lab
from ceph_failback.lab.oned import Delays
from ceph_failback.lab.world import World

from .test_failback import ROOT, TIMEOUTS, assert_failed_back, build, make_failback


@pytest.fixture
def world(lab: Lab) -> Iterator[World]:
    with World(lab, delays=Delays.uniform(0.05)) as w:
        yield w


def write_config(world: World, tmp_path: Path) -> tuple[Path, list[str]]:
    """The config file for ``world``; returns it and the stand-ins' passwords."""
    sections = []
    passwords = []
    for which, oned in (("a", world.oned_a), ("b", world.oned_b)):
        cluster = world.lab.site(which)
        auth = tmp_path / f"{which}.auth"
        auth.write_text(oned.session + "\n")
        passwords.append(oned.session.partition(":")[2])
        sections.append(f"""
[site.{which}]
name = "{cluster.name}"
ceph_conf = "{cluster.conf_path}"
ceph_client = "{world.client}"
ceph_keyring = "{cluster.keyring_for(world.client)}"
one_endpoint = "{oned.endpoint}"
one_auth = "{auth.name}"
""")
    t = TIMEOUTS
    path = tmp_path / "failback.toml"
    journal = f"{tmp_path.name}-journal.jsonl"  # unique in the lab: its copy is named so
    path.write_text(f'pool = "{world.lab.pool}"\njournal = "{journal}"\n' + "".join(sections)
                    + f"""
[timeouts]
settle = {t.settle}
resync = {t.resync}
mirror = {t.mirror}
promote = {t.promote}
terminate = {t.terminate}
resume = {t.resume}
poll = {t.poll}
""")
    return path, passwords


def snapshot(world: World) -> dict[str, object]:
    lab = world.lab
    return {
        "images": {i: (lab.is_primary("a", i), lab.is_primary("b", i), lab.checksum("a", i))
                   for i in world.all_images()},
        "vms_b": {p.vm_b: world.oned_b.vm_state(p.vm_b) for p in world.vms},
        "vms_a": {p.vm_a: world.oned_a.vm_state(p.vm_a) for p in world.vms},
        "actions": (len(world.oned_a.actions), len(world.oned_b.actions)),
    }


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_refuse_run_status(world: World, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    expected = build(world, 2)
    config, passwords = write_config(world, tmp_path)
    journal = tmp_path / f"{tmp_path.name}-journal.jsonl"
    before = snapshot(world)
    outputs = []

    # plan --json: every VM and image, and nothing changed.
    code, out, err = cli(capsys, "plan", "--config", str(config), "--json")
    outputs += [out, err]
    assert code == 0, err
    plan = json.loads(out)
    assert plan["ok"] and plan["blockers"] == []
    assert {i["name"] for i in plan["images"]} == set(expected)
    assert {(v["vm_b"], v["vm_a"]) for v in plan["vms"]} == {(p.vm_b, p.vm_a) for p in world.vms}
    assert all(a["do"] for i in plan["images"] for a in i["actions"] if a["step"] == "resync_a")
    assert snapshot(world) == before and not journal.exists()

    # status --json: both sites primary (the state an unplanned disaster leaves).
    code, out, err = cli(capsys, "status", "--config", str(config), "--json")
    outputs += [out, err]
    assert code == 0, err
    status = json.loads(out)
    site_a, site_b = world.lab.site_a.name, world.lab.site_b.name
    assert set(status["images"]) == set(expected)
    assert all(c[site_a].startswith("primary") and c[site_b].startswith("primary")
               for c in status["images"].values())
    assert status["failback"] is None

    # run without --yes: the plan, exit 3, nothing changed.
    code, out, err = cli(capsys, "run", "--config", str(config))
    outputs += [out, err]
    assert code == 3, err
    assert "Failback plan" in out and "nothing was changed" in err
    assert snapshot(world) == before and not journal.exists()

    # run --yes: the failback, with progress, complete.
    started = time.monotonic()
    code, out, err = cli(capsys, "run", "--config", str(config), "--yes")
    outputs += [out, err]
    took = time.monotonic() - started
    assert code == 0, (out[-3000:], err[-3000:])
    assert "[1/6] Site A: demote the images" in out and "[6/6] Site A: resume the VMs" in out
    assert "COMPLETE" in out and "\r" not in out and "\x1b" not in out
    assert journal.exists()
    assert_failed_back(world, expected, make_failback(world, journal))

    # status --json after: primary on A, VMs running on A and DONE on B, failback complete.
    code, out, err = cli(capsys, "status", "--config", str(config), "--json")
    outputs += [out, err]
    status = json.loads(out)
    assert all(c[site_a].startswith("primary") and c[site_b].startswith("non-primary")
               for c in status["images"].values())
    assert {k: (v[site_b], v[site_a]) for k, v in status["vms"].items()} == {
        f"{p.vm_b}->{p.vm_a}": ("DONE", "ACTIVE/RUNNING") for p in world.vms}
    assert status["failback"]["complete"]
    code, out, err = cli(capsys, "status", "--config", str(config))
    outputs += [out, err]
    assert code == 0 and "failback complete" in out
    text = "\n".join(outputs)
    assert not any(pw in text for pw in passwords)
    print(f"run --yes took {took:.1f}s")


def test_entry_point_interrupted_then_resumed(world: World, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m ceph_failback run --yes`` stopped by Ctrl-C (SIGINT) once VMs are being
    terminated exits 4 and says how to resume; ``resume --yes`` finishes the failback."""
    expected = build(world, 2)
    config, passwords = write_config(world, tmp_path)
    journal = tmp_path / f"{tmp_path.name}-journal.jsonl"
    proc = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
        [sys.executable, "-m", "ceph_failback", "run", "--config", str(config), "--yes"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[3/6]"):
                proc.send_signal(signal.SIGINT)
                break
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = "".join(seen) + rest
    assert proc.returncode == 4, (out[-3000:], err[-3000:])
    assert "interrupted (SIGINT)" in err and f"--config {config} --yes" in err
    assert journal.exists()

    code, out2, err2 = cli(capsys, "resume", "--config", str(config), "--yes")
    assert code == 0, (out2[-3000:], err2[-3000:])
    assert "Resuming the failback" in out2 and "COMPLETE" in out2
    assert_failed_back(world, expected, make_failback(world, journal))
    # Exactly one terminate reached each VM on B, across both processes.
    for p in world.vms:
        sent = [a for a in world.oned_b.actions
                if a[0] == p.vm_b and a[1].startswith("terminate") and a[2]]
        assert len(sent) == 1, (p, world.oned_b.actions)
    assert not any(pw in out + err + out2 + err2 for pw in passwords)


def test_run_in_a_terminal_draws_one_live_display_per_step(world: World, tmp_path: Path) -> None:
    """``ceph-failback run --yes`` under a pseudo-terminal (120x40): the live display, read
    back through a terminal emulator, ends with one block per step, each step once, a row per
    image or VM inside its own step's block (the pipelined VMs never interleave), and the
    report."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    import pyte

    expected = build(world, 2)
    config, passwords = write_config(world, tmp_path)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    proc = subprocess.Popen(  # noqa: S603 - our own entry point, fixed arguments
        [sys.executable, "-m", "ceph_failback", "run", "--config", str(config), "--yes"],
        cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"},
        close_fds=True)
    os.close(slave)
    chunks = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=600)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    raw = b"".join(chunks).decode("utf-8", errors="replace")
    assert proc.returncode == 0, raw[-3000:]
    assert "\x1b[" in raw  # drawn as a terminal, not as plain lines
    screen = pyte.Screen(120, 2000)  # tall: the whole session stays readable
    pyte.Stream(screen).feed(raw)
    shown = [line.rstrip() for line in screen.display]
    text = "\n".join(shown)
    assert not any(pw in raw for pw in passwords)

    titles = [(n, line) for n, line in enumerate(shown) if re.match(r"\[\d/6\] \w+  ", line)]
    steps = [line.split()[1] for _, line in titles]
    assert steps == ["demote_a", "resync_a", "terminate_b", "demote_b", "promote_a",
                     "resume_a"], text
    assert all("finished" in line and " 0 failed" in line for _, line in titles), titles
    end = next(n for n, line in enumerate(shown) if line.startswith("Failback of pool"))

    def block_of(row: int) -> str:
        return next(step for (n, _), step in zip(reversed(titles), reversed(steps), strict=True)
                    if n < row)

    site_a, site_b = world.lab.site_a.name, world.lab.site_b.name
    rows: dict[str, list[str]] = {}
    for n, line in enumerate(shown[titles[0][0]:end], titles[0][0]):
        target = line.split(" ", 1)[0]
        if target.startswith(("image:", "vm:")):
            rows.setdefault(target, []).append(block_of(n))
    for image in expected:
        assert sorted(rows.get(f"image:{image}", [])) == sorted(
            ["demote_a", "resync_a", "demote_b", "promote_a"]), (image, text)
    for p in world.vms:
        assert rows.get(f"vm:{site_b}:{p.vm_b}") == ["terminate_b"], text
        assert rows.get(f"vm:{site_a}:{p.vm_a}") == ["resume_a"], text
    assert "COMPLETE" in shown[end]
