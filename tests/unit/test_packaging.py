"""What a production install carries: the package's wheel, built from this checkout, holds the
library and none of the lab, the oned stand-in, the rehearsal or the in-memory sites; its metadata
declares every third-party package the library imports, and the version has one source."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import ceph_failback

ROOT = Path(__file__).resolve().parents[2]
STDLIB = set(sys.stdlib_module_names)
BINDINGS = {"rados", "rbd"}  # Debian's python3-rados/python3-rbd: not on PyPI (see setup.cfg)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".nox", ".venv*", "_build", "__pycache__", "build", "dist"))  # egg-info kept: as a
    # checkout where `pip install -e .` ran has it (setuptools reads its file list)
    done = subprocess.run(  # noqa: S603 - this interpreter's pip, a copy of this checkout
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",  # isolated, as pip installs
         "--disable-pip-version-check", "-w", str(work / "dist"), str(src)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = (work / "dist").glob("ceph_failback-*.whl")
    return found


def test_the_wheel_carries_the_library_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.startswith("ceph_failback/")}
    assert "ceph_failback/__init__.py" in modules and "ceph_failback/py.typed" in modules
    assert "ceph_failback/failback/render.py" in modules and "ceph_failback/cli.py" in modules
    leaked = sorted(n for n in modules if n.startswith(("ceph_failback/lab/",
                                                        "ceph_failback/testing/")))
    assert not leaked, leaked
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "docs")]


def test_the_wheel_declares_what_the_library_imports(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(meta_name).decode())
        sources = {n: z.read(n).decode() for n in z.namelist() if n.endswith(".py")}
    assert meta["Version"] == ceph_failback.__version__
    required = {re.match(r"[A-Za-z0-9_.-]+", r).group(0).lower()  # type: ignore[union-attr]
                for r in meta.get_all("Requires-Dist") or [] if "extra ==" not in r}
    imported: set[str] = set()
    for text in sources.values():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - STDLIB - BINDINGS - {"ceph_failback", "IPython", "__future__"}
    assert third_party <= required, third_party - required  # IPython: only in a kernel
    assert {"pyone", "tenacity", "requests", "rich"} <= required


def test_a_production_install_imports_the_public_surface(wheel: Path, tmp_path: Path) -> None:
    """The wheel alone on the path (no .pth, no editable finder), with the dependencies of this
    environment: ``import ceph_failback as cf; cf.Failback; cf.Site; cf.load_config``, and no
    lab."""
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    code = ("import importlib.util, ceph_failback as cf\n"
            "assert cf.__file__.startswith({!r}), cf.__file__\n"
            "cf.Failback; cf.Site; cf.load_config; cf.Progress; cf.Failback.from_config\n"
            "assert importlib.util.find_spec('ceph_failback.lab') is None\n"
            "assert importlib.util.find_spec('ceph_failback.testing') is None\n"
            "print('ok')\n").format(str(tmp_path / "site"))
    deps = sysconfig.get_paths()["purelib"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), deps,
                                                        "/usr/lib/python3/dist-packages"])}
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed code
        [sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=120, check=False)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr[-3000:]
