"""``run()``'s pipeline: each VM moves through steps 3-6 as soon as its own images are ready."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import FailbackError, StepFailedError
from ..opennebula.mapping import Pair
from .ledger import image_target, vm_target

if TYPE_CHECKING:
    from .core import Failback

__all__ = ["run_pipelined", "dispatch_when_ready"]


def run_pipelined(fb: Failback) -> None:
    """Steps 2-6 with each VM's steps 3-6 started as soon as its images replay from B,
    ``vm_concurrency`` VMs at a time. Raises :class:`StepFailedError` with every failure."""
    failures: dict[str, str] = {}
    lock = threading.Lock()

    def one_vm(pair: Pair) -> None:
        try:
            fb.terminate_site_b(vms=[pair.vm_b.id])
            fb.demote_site_b(images=pair.images)
            fb.promote_site_a(images=pair.images)
            fb.resume_site_a(vms=[pair.vm_b.id])
        except StepFailedError as exc:
            with lock:
                failures.update(exc.failures)
        except FailbackError as exc:  # a step that could not start for this VM
            with lock:
                failures[vm_target(fb.site_b.name, pair.vm_b.id)] = str(exc)

    pairs = fb.pairs
    dispatch_when_ready(pairs, one_vm, failures,
                        resync=lambda ready: fb.resync_site_a(on_ready=ready),
                        workers=fb.vm_concurrency)
    # Images of no VM (``images=``): step 2 above waited for them too.
    leftover = [i for i in fb.images if image_target(i) not in failures
                and not any(i in p.images for p in pairs)]
    for step in (fb.demote_site_b, fb.promote_site_a):
        if not leftover:
            break
        try:
            step(images=leftover)
        except StepFailedError as exc:
            failures.update(exc.failures)
            leftover = [i for i in leftover if image_target(i) not in exc.failures]
    if failures:
        raise StepFailedError(f"{len(failures)} target(s) failed", failures=failures,
                              pool=fb.pool, hint="fix the cause and run again")


def dispatch_when_ready(pairs: Sequence[Pair], fn: Callable[[Pair], None],
                        failures: dict[str, str], *,
                        resync: Callable[[Callable[[str], None]], object],
                        workers: int) -> None:
    """Run step 2 (``resync(on_ready)``) over every image, starting ``fn`` for each pair
    (``workers`` at a time) as soon as all its images are ready: one wait polls for every image,
    and a VM whose images are ready never waits behind one whose resync is slow. A step 2
    failure is added to ``failures`` (the VMs of those images are not started); an interruption
    starts no VM not yet started."""
    missing = [set(p.images) for p in pairs]
    users: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        for name in pair.images:
            users.setdefault(name, []).append(index)
    started: set[int] = set()
    futures = []
    ex = ThreadPoolExecutor(max(1, min(workers, len(pairs))), thread_name_prefix="failback")

    def start(index: int) -> None:
        if index not in started:
            started.add(index)
            futures.append(ex.submit(fn, pairs[index]))

    def ready(name: str) -> None:
        for index in users.get(name, ()):
            missing[index].discard(name)
            if not missing[index]:
                start(index)

    for index, images in enumerate(missing):
        if not images:
            start(index)  # a pair with no image of the pool: nothing to wait for
    try:
        resync(ready)
    except StepFailedError as exc:
        failures.update(exc.failures)
    except BaseException:
        # Interrupted (Ctrl-C) or step 2 could not run: no VM not yet started is stopped.
        ex.shutdown(wait=True, cancel_futures=True)
        raise
    ex.shutdown(wait=True)
    for future in futures:
        future.result()
