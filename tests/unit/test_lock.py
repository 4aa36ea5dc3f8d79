"""The pool lock's pieces that need no cluster: the cls_lock reply parser and the dead-holder
proof. Taking, refusing, breaking and taking over the lock run on the real lab
(tests/lab/test_faults.py)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from dataclasses import replace

import pytest

from ceph_failback.ceph import lock
from ceph_failback.ceph.lock import Holder, _enc_str, _envelope, _parse_lockers


def _reply(lockers: list[tuple[int, str, str]]) -> bytes:
    """A ``cls_lock_get_info_reply`` as the OSD encodes it for a modern client."""
    body = struct.pack("<I", len(lockers))
    for num, cookie, desc in lockers:
        body += _envelope(struct.pack("<Bq", 0x08, num) + _enc_str(cookie))
        addr = b"\x01" + _envelope(struct.pack("<II", 2, 1234) + _enc_str("\x00" * 16))
        body += _envelope(struct.pack("<II", 0, 0) + addr + _enc_str(desc))
    body += struct.pack("<B", 1) + _enc_str("")  # exclusive, no tag
    return _envelope(body)


def _me(**kw: object) -> Holder:
    ident = lock._identity()
    base = Holder(ident["host"], os.getpid(), "me", "failback", "2026-01-01T00:00:00+00:00",
                  "c0", machine_id=ident["machine_id"], boot_id=ident["boot_id"],
                  proc_start=lock._proc_start(os.getpid()) or "")
    return replace(base, **kw)  # type: ignore[arg-type]


def test_parse_reply_with_a_holder() -> None:
    holder = _me()
    (locker,) = _parse_lockers(_reply([(4123, "c0", holder.describe())]))
    assert locker == ("client", 4123, "c0", holder.describe())


def test_parse_reply_without_holder_and_truncated() -> None:
    assert _parse_lockers(_reply([])) == []
    with pytest.raises(ValueError):
        _parse_lockers(_reply([(1, "c", "d")])[:-20])


def test_a_live_holder_is_not_dead() -> None:
    assert not _me().is_provably_dead()


def test_a_holder_whose_process_is_gone_is_dead() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    assert _me(pid=int(child.stdout)).is_provably_dead()


def test_a_recycled_pid_is_dead() -> None:
    assert _me(proc_start="1").is_provably_dead()  # our pid, but another start time


@pytest.mark.parametrize("field", ["host", "machine_id", "boot_id"])
def test_a_holder_elsewhere_is_never_provably_dead(field: str) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
    assert not _me(pid=int(child.stdout), **{field: "elsewhere"}).is_provably_dead()


def test_holder_text_names_who_and_since() -> None:
    text = str(_me(host="h1", pid=42, user="ops", purpose="failback site-b -> site-a"))
    assert text == "ops@h1 pid 42 (failback site-b -> site-a) since 2026-01-01T00:00:00+00:00"
