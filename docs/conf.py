"""Sphinx configuration for ceph_failback."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "ceph_failback"
author = "the ceph_failback developers"
copyright = "2026, the ceph_failback developers"  # noqa: A001
from ceph_failback import __version__ as release  # noqa: E402  (one place: the package)

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_use_ivar = True
nitpicky = False
html_theme = "alabaster"
exclude_patterns = ["_build"]
