"""``run()``'s pipeline: each VM moves through steps 3-6 as soon as its own images are ready,
in the start order (:mod:`.order`) when there is one."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..errors import FailbackError, StepFailedError
from ..opennebula.mapping import Pair
from .ledger import Mark, Step, image_target, vm_target
from .order import NO_ORDER, StartOrder

if TYPE_CHECKING:
    from .core import Failback

__all__ = ["run_pipelined", "run_in_sequence", "dispatch_when_ready", "started", "STOP", "MOVE",
           "START"]

#: A VM's stages: terminated on B (step 3), its images moved (steps 4-5), resumed on A (step 6).
STOP, MOVE, START = 0, 1, 2

Stage = Callable[[Pair], bool]


def run_pipelined(fb: Failback) -> None:
    """Steps 2-6 with each VM's steps 3-6 started as soon as its images replay from B (and the
    start order lets it), ``vm_concurrency`` VMs at a time. Raises :class:`StepFailedError`
    with every failure."""
    failures: dict[str, str] = {}
    lock = threading.Lock()

    def stage(fn: Callable[[Pair], object], target: Callable[[Pair], str]) -> Stage:
        def one(pair: Pair) -> bool:
            try:
                fn(pair)
                return True
            except StepFailedError as exc:
                with lock:
                    failures.update(exc.failures)
            except FailbackError as exc:  # a step that could not start for this VM
                with lock:
                    failures[target(pair)] = str(exc)
            return False
        return one

    def on_b(p: Pair) -> str:
        return vm_target(fb.site_b.name, p.vm_b.id)

    pairs = fb.pairs
    order = fb.start_order()

    def stop(p: Pair) -> None:
        fb.hooks.before_terminate(p, order)
        fb.terminate_site_b(vms=[p.vm_b.id])

    def move(p: Pair) -> None:
        fb.demote_site_b(images=p.images)
        if fb.verification is not None:
            fb.verification.read_b(fb.pool_b(), p.images)
        fb.promote_site_a(images=p.images)
        if fb.verification is not None:
            fb.verification.check(fb.pool_a(), fb.pool_b(), p.images)

    up = started(fb, pairs)

    def start(p: Pair) -> None:
        fb.resume_site_a(vms=[p.vm_b.id])
        fb.hooks.after_resume(p, order, up, pairs)

    dispatch_when_ready(
        pairs, (stage(stop, on_b), stage(move, on_b),
                stage(start, lambda p: vm_target(fb.site_a.name, p.vm_a.id))),
        failures, resync=lambda ready: fb.resync_site_a(on_ready=ready),
        workers=fb.vm_concurrency, order=order, sites=(fb.site_a.name, fb.site_b.name))
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


def run_in_sequence(fb: Failback) -> None:
    """Steps 2-6 one after another over every VM (``run(pipeline=False)``): steps 3 and 6 wave
    by wave in the start order, with the hooks around each VM."""
    fb.resync_site_a()
    pairs, order = fb.pairs, fb.start_order()
    up = started(fb, pairs)
    for wave in order.waves(pairs, stopping=True) or [[]]:
        for p in wave:
            fb.hooks.before_terminate(p, order)
        fb.terminate_site_b(vms=[p.vm_b.id for p in wave])
    fb.demote_site_b()
    if fb.verification is not None:
        fb.verification.read_b(fb.pool_b(), fb.images)
    fb.promote_site_a()
    differ: dict[str, str] = {}
    if fb.verification is not None:
        try:
            fb.verification.check(fb.pool_a(), fb.pool_b(), fb.images)
        except StepFailedError as exc:
            differ = exc.failures  # those VMs stay down; the others are resumed
    for wave in order.waves(pairs) or [[]]:
        go = [p for p in wave if not any(image_target(i) in differ for i in p.images)]
        fb.resume_site_a(vms=[p.vm_b.id for p in go])
        for p in go:
            fb.hooks.after_resume(p, order, up, pairs)
    if differ:
        raise StepFailedError(f"{len(differ)} image(s) differ between the sites",
                              failures=differ, pool=fb.pool, hint="fix the cause and run again")


def started(fb: Failback, pairs: Sequence[Pair]) -> Callable[[int], bool]:
    """Whether a VM on B's partner was resumed on A by this failback's journal (or found
    running), and reported ready where its group waits for that; once true, it stays so."""
    by_b = {p.vm_b.id: p for p in pairs}
    seen: set[int] = set()

    def ask(vm_b: int) -> bool:
        if vm_b not in seen and vm_b in by_b and _started(fb, by_b[vm_b]):
            seen.add(vm_b)
        return vm_b in seen
    return ask


def _started(fb: Failback, pair: Pair) -> bool:
    vm_b = pair.vm_b.id
    t = vm_target(fb.site_a.name, pair.vm_a.id)
    journal = fb.journal
    resumed = any(journal.last(step=Step.RESUME_A, event=mark, target=t) is not None
                  for mark in (Mark.DONE, Mark.SKIPPED))
    return resumed and (not fb.start_order().needs_ready(vm_b)
                        or fb.ledger.vm(fb.site_a.name, pair.vm_a.id).ready)


def dispatch_when_ready(pairs: Sequence[Pair], stages: Sequence[Stage],
                        failures: dict[str, str], *,
                        resync: Callable[[Callable[[str], None]], object],
                        workers: int, order: StartOrder = NO_ORDER,
                        sites: tuple[str, str] = ("site A", "site B")) -> None:
    """Run step 2 (``resync(on_ready)``) over every image, and each pair's ``stages`` (stop,
    move, start: each returns whether it succeeded) ``workers`` at a time, each as soon as it
    may:

    - a pair's first stage once all its images are ready, and (start ``order``) once every VM of
      the groups that start after it passed its first stage (stopped on B), and the images of
      every VM of the groups it starts after (transitively) are ready too: it would otherwise
      stay down while a slow resync of theirs goes on;
    - each later stage once the pair's stage before it succeeded; the last one also once every
      VM of the groups it starts after passed it (runs on A).

    A later stage goes before a first one (a stopped VM is down: it comes back first), so a VM
    whose images are ready never waits behind one whose resync is slow. A step 2 failure is
    added to ``failures``; a pair the order held back because another VM failed is added too,
    naming that VM (``sites``: A's and B's names for the targets). An interruption (of step 2
    or of the wait after it) starts no pair's first stage; pairs already stopped go on."""
    runner = _Runner(pairs, stages, workers, order)
    try:
        try:
            resync(runner.ready)
        except StepFailedError as exc:
            failures.update(exc.failures)
        runner.finish()
    except BaseException:
        # Interrupted (Ctrl-C, during step 2 or the wait after it) or step 2 could not run:
        # no VM not yet stopped is stopped; those stopped come back; then it is raised.
        runner.finish(stopping=True)
        raise
    runner.raise_error()
    runner.held(failures, *sites)


class _Runner:
    """The pipeline's tasks ((stage, pair index)), their prerequisites, and the workers."""

    def __init__(self, pairs: Sequence[Pair], stages: Sequence[Stage], workers: int,
                 order: StartOrder) -> None:
        self.pairs, self.stages = list(pairs), list(stages)
        self.last = len(stages) - 1
        self.cond = threading.Condition()
        self.heap: list[tuple[int, int, int]] = []  # (-stage, pair index, stage)
        self.running = 0
        self.stopping = False
        self.outcome: dict[tuple[int, int], bool] = {}
        self.error: BaseException | None = None
        self.pool = ThreadPoolExecutor(max(1, min(workers, len(self.pairs))),
                                       thread_name_prefix="failback")
        self.workers = max(1, min(workers, len(self.pairs)))
        self.images: dict[str, list[int]] = {}
        self.order = order
        self.index_of = index_of = {p.vm_b.id: i for i, p in enumerate(self.pairs)}
        self.need: dict[tuple[int, int], int] = {}
        self.then: dict[tuple[int, int], list[tuple[int, int]]] = {}
        by_b = {p.vm_b.id: p for p in self.pairs}
        self.waits_for: dict[int, set[str]] = {}  # pair index -> the images its stop waits for
        for i, pair in enumerate(self.pairs):
            # Its own images, and those of the VMs it starts after: until those replay, it would
            # only wait, stopped, for them.
            names = set(pair.images).union(*(by_b[v].images for v in order.all_before(
                pair.vm_b.id) if v in by_b))
            self.waits_for[i] = names
            for name in names:
                self.images.setdefault(name, []).append(i)
            self._needs((0, i), len(names))
            for stage in range(1, len(stages)):
                self._requires((stage, i), (stage - 1, i))
            for vm in order.stops_after(pair.vm_b.id):
                if vm in index_of:
                    self._requires((0, i), (0, index_of[vm]))
            for vm in order.starts_after(pair.vm_b.id):
                if vm in index_of:
                    self._requires((self.last, i), (self.last, index_of[vm]))
        with self.cond:
            for task, count in self.need.items():
                if count == 0 and task[0] == 0:
                    self._push(task)

    def _needs(self, task: tuple[int, int], count: int) -> None:
        self.need[task] = self.need.get(task, 0) + count

    def _requires(self, task: tuple[int, int], first: tuple[int, int]) -> None:
        self._needs(task, 1)
        self.then.setdefault(first, []).append(task)

    def ready(self, name: str) -> None:
        """Step 2's ``on_ready``: an image is ready for steps 3-5."""
        with self.cond:
            for i in self.images.pop(name, ()):
                self._met((0, i))

    def _met(self, task: tuple[int, int]) -> None:
        self.need[task] -= 1
        if self.need[task] == 0:
            self._push(task)

    def _push(self, task: tuple[int, int]) -> None:
        stage, index = task
        heapq.heappush(self.heap, (-stage, index, stage))
        self._pump()

    def _pump(self) -> None:
        while self.heap and self.running < self.workers:
            _, index, stage = heapq.heappop(self.heap)
            if stage == 0 and self.stopping:
                continue
            self.pool.submit(self._run, (stage, index))
            self.running += 1  # after: an interrupt inside submit leaves it unchanged

    def _run(self, task: tuple[int, int]) -> None:
        stage, index = task
        ok = False
        try:
            ok = self.stages[stage](self.pairs[index])
        except BaseException as exc:  # noqa: BLE001 (re-raised by finish())
            with self.cond:
                self.error = self.error or exc
        with self.cond:
            self.outcome[task] = ok
            self.running -= 1
            if ok:
                for after in self.then.get(task, ()):
                    self._met(after)
            self._pump()
            self.cond.notify_all()

    def finish(self, *, stopping: bool = False) -> None:
        """Wait until every task that may run ran (``stopping``: no pair's first stage more)."""
        with self.cond:
            self.stopping = self.stopping or stopping
            self._pump()
            while self.running or self.heap:  # _pump drops first stages when stopping
                self.cond.wait()
        self.pool.shutdown(wait=True)

    def raise_error(self) -> None:
        """Raise what a stage raised that it should not have (not a failure it reported)."""
        if self.error is not None:
            raise self.error

    def held(self, failures: dict[str, str], site_a: str, site_b: str) -> None:
        """Add to ``failures`` each pair the start order held back: its stop, because VMs it
        waits for did not stop or their images did not get ready; its start, because VMs it
        starts after did not. A pair whose own images never got ready is there by them."""
        def within(vms: list[int], stage: int) -> list[int]:
            return [v for v in vms if v in self.index_of
                    and not self.outcome.get((stage, self.index_of[v]))]

        for i, pair in enumerate(self.pairs):
            if (0, i) not in self.outcome:
                if any(name in self.images for name in pair.images):
                    continue  # step 2's failure of its images says why
                if any(name in self.images for name in self.waits_for[i]):
                    before = [v for v in self.order.all_before(pair.vm_b.id) if v in self.index_of
                              and any(n in self.images for n in self.pairs[
                                  self.index_of[v]].images)]
                    failures.setdefault(vm_target(site_b, pair.vm_b.id), (
                        f"not terminated on {site_b}: in the start order it starts after VMs "
                        f"{before} on {site_b}, whose images did not get ready (see their "
                        "failures); stopped before them it would only wait, down. Fix them, "
                        "then run again"))
                    continue
                waits = within(self.order.stops_after(pair.vm_b.id), 0)
                failures.setdefault(vm_target(site_b, pair.vm_b.id), (
                    f"not terminated on {site_b}: in the start order it stops only once VMs "
                    f"{waits} on {site_b} are stopped, and they are not (see their failures); "
                    "fix that, then run again"))
            elif self.outcome.get((self.last - 1, i)) and (self.last, i) not in self.outcome:
                waits = within(self.order.starts_after(pair.vm_b.id), self.last)
                failures.setdefault(vm_target(site_a, pair.vm_a.id), (
                    f"terminated on {site_b} and not resumed on {site_a}: in the start order "
                    f"it resumes only once the partners of VMs {waits} (ids on {site_b}) run on "
                    f"{site_a}, and they do not (see their failures); fix that, then run again"))
