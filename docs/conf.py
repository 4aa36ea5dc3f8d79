"""Sphinx configuration for ceph_failback."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "ceph_failback"
author = "the ceph_failback developers"
copyright = "2026, the ceph_failback developers"  # noqa: A001


def _public_surface() -> str:
    """The API page's table of ``ceph_failback.__all__``, generated from the package: each name,
    what it is, its docstring's first line, linked to where it is documented."""
    import inspect

    import ceph_failback

    rows = []
    for name in ceph_failback.__all__:
        if name == "__version__" or name in ceph_failback.errors.__all__:
            continue
        obj = getattr(ceph_failback, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            role = "class" if inspect.isclass(obj) else "func"
            target = f":{role}:`{name} <{obj.__module__}.{obj.__qualname__}>`"
            summary = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ")
        else:
            target, summary = f"``{name}``", "a constant of :mod:`ceph_failback.failback`"
        rows.append(f"   * - {target}\n     - {summary}")
    errors = ", ".join(f":class:`~ceph_failback.errors.{e}`" for e in ceph_failback.errors.__all__)
    return ("Generated from ``ceph_failback.__all__``.\n\n"
            ".. list-table::\n   :widths: 25 75\n\n" + "\n".join(rows)
            + f"\n\nand the errors: {errors}.\n")


def _write_public_surface(app: object) -> None:
    path = os.path.join(os.path.dirname(__file__), "_generated", "public.rst")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    text = _public_surface()
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def setup(app: object) -> None:
    app.connect("builder-inited", _write_public_surface)  # type: ignore[attr-defined]


extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_use_ivar = True
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build", "_generated"]
