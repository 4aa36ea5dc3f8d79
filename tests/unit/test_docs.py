"""The documentation keeps up with the code: every exception and every blocker kind is explained
in docs/troubleshooting.rst, every page is in the table of contents, the notebook is clean."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest

from ceph_failback import errors
from ceph_failback.opennebula.mapping import FindingKind

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def exception_classes() -> list[type[errors.FailbackError]]:
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
            if issubclass(obj, errors.FailbackError)]


@pytest.mark.parametrize("cls", exception_classes(), ids=lambda c: c.__name__)
def test_every_exception_is_in_troubleshooting(cls: type) -> None:
    text = (DOCS / "troubleshooting.rst").read_text()
    assert f":class:`~ceph_failback.errors.{cls.__name__}`" in text, (
        f"docs/troubleshooting.rst does not explain {cls.__name__}: say what it means, how to "
        "recover and how to resume")
    assert cls.__name__ in errors.__all__


FAILBACK = ROOT / "ceph_failback" / "failback"


def refusal_kinds() -> set[str]:
    """The kinds of every safety rule's refusal (each is a plan blocker kind too)."""
    sources = [FAILBACK / "safety.py", *sorted((FAILBACK / "steps").glob("*.py"))]
    return {k for p in sources for k in re.findall(r'Refusal\(\s*"([a-z][a-z-]+)"',
                                                   p.read_text())}


def blocker_kinds() -> set[str]:
    literal = {k for path in FAILBACK.rglob("*.py")
               for k in re.findall(r'Blocker\(\s*"([a-z][a-z-]+)"', path.read_text())}
    return literal | refusal_kinds() | {k.value for k in FindingKind}


def test_every_safety_rule_is_linked_from_the_safety_page() -> None:
    from ceph_failback.failback import safety

    text = (DOCS / "safety.rst").read_text()
    rules = [n for n in safety.__all__ if inspect.isfunction(getattr(safety, n))]
    missing = [n for n in rules if f":func:`~ceph_failback.failback.safety.{n}`" not in text]
    assert not missing, f"docs/safety.rst does not link these rules to their code: {missing}"
    kinds = sorted(k for k in refusal_kinds() if f"``{k}``" not in text)
    assert not kinds, f"docs/safety.rst does not name these rule kinds: {kinds}"


def test_every_blocker_kind_is_in_troubleshooting() -> None:
    text = (DOCS / "troubleshooting.rst").read_text()
    missing = sorted(k for k in blocker_kinds() if f"``{k}``" not in text)
    assert not missing, f"blocker kinds not explained in docs/troubleshooting.rst: {missing}"


def test_every_page_is_in_the_toctree() -> None:
    index = (DOCS / "index.rst").read_text()
    toctree = index.split(".. toctree::", 1)[1]
    listed = set(re.findall(r"^\s{3}([\w-]+)\s*$", toctree, re.M))
    pages = {p.stem for p in DOCS.glob("*.rst")} - {"index"}
    assert pages <= listed, f"pages missing from docs/index.rst: {sorted(pages - listed)}"


def test_notebook_is_stored_clean() -> None:
    nb = json.loads((DOCS / "notebook.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code), (
        "store docs/notebook.ipynb without outputs")
    sources = ["".join(c["source"]) for c in code]
    steps = ("demote_site_a", "resync_site_a", "terminate_site_b", "demote_site_b",
             "promote_site_a", "resume_site_a")
    for step in steps:  # one cell per step, in order
        assert sum(s.strip() == f"fb.{step}()" for s in sources) == 1, step
    order = [next(i for i, s in enumerate(sources) if s.strip() == f"fb.{step}()") for step in steps]
    assert order == sorted(order)


@pytest.mark.parametrize("cls", exception_classes(), ids=lambda c: c.__name__)
def test_documented_exit_codes_are_the_cli_s(cls: type[errors.FailbackError]) -> None:
    from ceph_failback.cli import exit_code

    text = (DOCS / "troubleshooting.rst").read_text()
    m = re.search(rf":class:`~ceph_failback.errors.{cls.__name__}`( \(exit (\d)\))?\n", text)
    assert m is not None
    documented = int(m.group(2)) if m.group(2) else 1  # no code shown: 1
    assert exit_code(cls("x")) == documented


def test_every_test_the_docs_name_exists() -> None:
    """docs/faults.rst (and the other pages) cite tests by name: each must exist in tests/."""
    defined = {m.group(1) for path in (ROOT / "tests").rglob("test_*.py")
               for m in re.finditer(r"^def (test_\w+)", path.read_text(), re.M)}
    cited = {name for page in DOCS.glob("*.rst")
             for name in re.findall(r"``(test_\w+)``", page.read_text())}
    assert len(cited) > 20
    assert not cited - defined, f"tests named in docs/ that do not exist: {sorted(cited - defined)}"


def _resolve(dotted: str) -> object:
    """The module, or the attribute of a module, that ``dotted`` names."""
    import importlib

    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:n]))
        except ModuleNotFoundError:
            continue
        for attr in parts[n:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def test_every_name_the_docs_show_imports() -> None:
    """Every ``ceph_failback.x.y`` the docs and the README name (directives, roles, code) is a
    module or an attribute of one: documented names stay importable where the docs show them."""
    import re

    names: set[str] = set()
    for path in [*sorted((ROOT / "docs").glob("*.rst")), ROOT / "README.md"]:
        names |= set(re.findall(r"\bceph_failback(?:\.[A-Za-z_]\w*)+", path.read_text()))
    names -= {"ceph_failback.lock", "ceph_failback.journal"}  # RADOS objects' names, not Python
    assert len(names) > 40
    broken = []
    for name in sorted(names):
        try:
            _resolve(name)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{name}: {exc}")
    assert not broken, broken


def test_the_public_surface_is_documented_on_the_api_page() -> None:
    """Each name of ``ceph_failback.__all__`` is documented where it is defined: its module is
    rendered whole (``automodule``), or the name itself (``autoclass``/``autofunction``)."""
    import ceph_failback

    text = "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.rst"))
    modules = set(re.findall(r"^\.\. automodule:: (\S+)", text, re.M))
    objects = set(re.findall(r"^\.\. auto(?:class|function):: (\S+)", text, re.M))
    undocumented = []
    for name in ceph_failback.__all__:
        obj = getattr(ceph_failback, name)
        module = getattr(obj, "__module__", None) if not isinstance(obj, str | frozenset) \
            else None
        if module is not None and module not in modules and f"{module}.{name}" not in objects:
            undocumented.append(f"{name} ({module})")
    assert not undocumented, undocumented
