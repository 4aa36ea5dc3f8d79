"""Where :class:`NotebookProgress` was documented before the renderings moved to rich: the name
stays importable from here. It lives in :mod:`ceph_failback.failback.progress`."""

from __future__ import annotations

from .progress import NotebookProgress

__all__ = ["NotebookProgress"]
