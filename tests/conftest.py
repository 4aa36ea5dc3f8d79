"""Shared fixtures. The real two-site lab is started once per session, on first use, and stopped
at the end; tests that use it are marked ``lab`` (``pytest -m "not lab"`` runs the unit suite)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ceph_failback.lab import Lab

# Loopback addresses of the journal lab's sites and the snapshot lab's sites. Override to run
# two test sessions side by side: CEPH_FAILBACK_LAB_IPS=127.0.0.12,127.0.0.13,127.0.0.14,127.0.0.15
LAB_IPS = os.environ.get("CEPH_FAILBACK_LAB_IPS",
                         "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5").split(",")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/lab needs the real lab.
    for item in items:
        if "/tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


def _stop(lab: Lab, tmp_path_factory: pytest.TempPathFactory, name: str) -> None:
    # Keep the daemons' logs (pytest keeps the last few base temp directories) for diagnosis.
    keep = Path(tmp_path_factory.mktemp(f"{name}-logs", numbered=True))
    for site in lab.sites:
        if (site.directory / "log").is_dir():
            shutil.copytree(site.directory / "log", keep / site.name, dirs_exist_ok=True)
    lab.down()
    assert lab.running_pids() == [], "lab daemons left running"


def _start(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs: object) -> Lab:
    directory = Path(tmp_path_factory.mktemp(name, numbered=True))
    # mktemp creates the directory; the lab wants to own an empty one.
    directory.rmdir()
    return Lab(directory, **kwargs).up()  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A journal-mode two-site lab (pool mirror mode), shared by the whole session."""
    lab = _start(tmp_path_factory, "lab-journal", mode="journal",
                 ips=(LAB_IPS[0], LAB_IPS[1]))
    try:
        yield lab
    finally:
        _stop(lab, tmp_path_factory, "lab-journal")


@pytest.fixture(scope="session")
def snapshot_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A snapshot-mode two-site lab (image mirror mode), shared by the whole session."""
    lab = _start(tmp_path_factory, "lab-snapshot", mode="snapshot",
                 ips=(LAB_IPS[2], LAB_IPS[3]))
    try:
        yield lab
    finally:
        _stop(lab, tmp_path_factory, "lab-snapshot")


@pytest.fixture
def names(request: pytest.FixtureRequest):
    """A factory of image names unique to this test."""
    base = request.node.name.split("[")[0].removeprefix("test_")[:20].replace("_", "-")

    def make(n: int = 1) -> list[str]:
        return [f"{base}-{uuid.uuid4().hex[:6]}" for _ in range(n)]

    return make
