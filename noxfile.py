"""Developer sessions: ``nox -s unit|tests|lint|typecheck|docs|demo|bench|ceph18|ceph20``.

Every session runs in a virtual environment made from Debian's ``/usr/bin/python3`` with the
system site packages visible, because the Ceph bindings (python3-rados, python3-rbd) exist only
as Debian packages built for that interpreter. ``bash .ci/nox ...`` installs everything first.
"""

from __future__ import annotations

import nox

PYTHON = "/usr/bin/python3"
VENV = {"python": PYTHON, "venv_backend": "venv", "venv_params": ["--system-site-packages"]}

nox.options.sessions = ["lint", "typecheck", "unit"]
nox.options.error_on_missing_interpreters = True



def _install(session: nox.Session, *extras: str, also: tuple[str, ...] = ()) -> None:
    """The package in development mode with the extras of setup.cfg named (``test``: pytest,
    and nbclient/nbformat/ipykernel that run docs/notebook.ipynb in a real kernel)."""
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install("-e", spec, *also)


@nox.session(**VENV)
def tests(session: nox.Session) -> None:
    """The whole suite: unit tests and the real two-site lab tests."""
    _install(session, "test")
    session.run("pytest", "--durations=15", *session.posargs)


@nox.session(**VENV)
def unit(session: nox.Session) -> None:
    """The fast unit suite (no lab)."""
    _install(session, "test")
    session.run("pytest", "-m", "not lab", *session.posargs)


@nox.session(**VENV)
def lint(session: nox.Session) -> None:
    """ruff."""
    session.install("ruff")
    session.run("ruff", "check", "ceph_failback", "tests", "benchmarks", "noxfile.py")


@nox.session(**VENV)
def typecheck(session: nox.Session) -> None:
    """mypy on the package."""
    _install(session, "typecheck")
    session.run("mypy", "ceph_failback")


@nox.session(**VENV)
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs; warnings are errors."""
    _install(session, "docs")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session(**VENV)
def demo(session: nox.Session) -> None:
    """The main job on the local lab: bring it up, run the scenario, report, tear down."""
    _install(session)
    session.run("python", "-m", "ceph_failback.demo", *session.posargs)


@nox.session(**VENV)
def bench(session: nox.Session) -> None:
    """The benchmark on local labs (127.0.0.6/.7 by default): Failback.run() against the
    documented procedure for N = 1, 10, 50 VMs, the floor, a DR test, plan()/status() over 1,000
    images; writes benchmarks/results/ (bench.json, downtime.png, summary.rst). Options after
    ``--`` (``--help``)."""
    _install(session, also=("matplotlib",))
    session.run("python", "-m", "benchmarks.bench", *session.posargs)


@nox.session(python=False)
def ceph18(session: nox.Session) -> None:
    """The test suite on Ceph 18 (Reef: Debian 13's 18.2.7) in a root filesystem built once with
    mmdebstrap (.ci/ceph-chroot trixie; needs root). Its labs use 127.0.0.30-33. Arguments after
    ``--`` go to pytest (default: the whole suite)."""
    session.run("bash", ".ci/ceph-chroot", "trixie", *session.posargs, external=True)


@nox.session(python=False)
def ceph20(session: nox.Session) -> None:
    """The test suite on Ceph 20 (Tentacle: Debian testing's 20.2.x), as :func:`ceph18` does
    (.ci/ceph-chroot forky); its labs use 127.0.0.40-43."""
    session.run("bash", ".ci/ceph-chroot", "forky", *session.posargs, external=True)
