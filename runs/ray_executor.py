"""The Ray executor: children run on a pool of Ray actors across the CPUs and GPUs of one machine or a cluster.

The driver alone talks to the store; workers get the space (and the data it declares, put in Ray's
object store once per run) and return a `Result`. A child runs on the device Ray assigned to it:
CUDA when it was given a GPU (possibly a fraction of one), the CPU otherwise.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from l2l.runs.executors import ChildTask, Executor, ExecutorError, run_child
from l2l.search_spaces.api import Result, SearchSpace
from l2l.search_spaces.registry import FILE_PLUGIN_PREFIX

POLL_S = 0.5


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - ray is a dependency; this guards broken installs
        raise ExecutorError(f"the Ray executor needs the 'ray' package: {exc}") from exc
    return ray


def _child_on_worker(space: SearchSpace, task: ChildTask, queued_at: float, workers: int = 1) -> Result:
    """Runs inside a Ray worker: pick the assigned device, evaluate, record where and when."""
    import ray
    import torch

    gpus = ray.get_gpu_ids()
    device = task.ctx.device
    if gpus and torch.cuda.is_available():
        device = "cuda"  # Ray set CUDA_VISIBLE_DEVICES to the assigned GPU(s): cuda means cuda:0 of those
    elif device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    ctx = dataclasses.replace(task.ctx, device=device)
    if workers > 1:
        from l2l.runs.distributed import run_data_parallel

        result = run_data_parallel(space, dataclasses.replace(task, ctx=ctx), workers)
    else:
        result = run_child(space, dataclasses.replace(task, ctx=ctx))
    info = dict(result.info)
    info.update(node=ray.get_runtime_context().get_node_id(), queued=queued_at, gpu_ids=[str(g) for g in gpus])
    return dataclasses.replace(result, info=info)


class _Slot:
    """A long-lived worker process (a Ray actor) that evaluates the children handed to it, in order.

    The children handed to a slot wait at the actor itself, each call in its own thread (the actor
    runs as many calls at once as a slot holds children), and run one at a time in the order they
    were sent: the next child starts the moment one ends, while Ray returns the finished one's
    result, with no round trip through the driver or Ray's dispatch in between. The space and its
    shared data are fetched from the object store once (`prepare`, or the first child) and kept;
    once the driver knows a slot holds them, its calls name the space by key instead of passing the
    object refs again (a call with refs among its arguments costs Ray more: 0.59 against 0.52 ms per
    call, submitted and returned, measured with one actor on an idle machine).
    """

    def __init__(self) -> None:
        self._spaces: dict[str, SearchSpace] = {}  # by the hex id of the space's object ref
        self._loading = threading.Lock()
        self._turn = threading.Condition()
        self._next = 0  # the sequence number of the call whose child runs next
        # The next child's thread may wait for the GIL while the previous call's thread returns its
        # result through Ray; by default it asks for it only after 5 ms. A shorter interval bounds that
        # wait. (Measured with and without, the gaps at 32 workers did not differ clearly: they come
        # from the CPU being busy, not the GIL. Kept because the published table was measured with it.)
        sys.setswitchinterval(0.0005)

    def ping(self) -> bool:
        return True

    def load(self, refs: list[Any]) -> SearchSpace:
        """The space of ``refs`` with its shared data, fetched on the first call for it and kept."""
        import ray

        space_ref, shared_ref = refs  # wrapped in a list, so Ray hands over the refs, not their values
        key = space_ref.hex()
        with self._loading:
            if key not in self._spaces:
                space = ray.get(space_ref)
                space.use_shared_data(ray.get(shared_ref))
                self._spaces[key] = space
            return self._spaces[key]

    def held(self, space: list[Any] | str) -> SearchSpace:
        """The space of a call: fetched from its refs, or named by the key of one this slot holds."""
        if not isinstance(space, str):
            return self.load(space)
        held = self._spaces.get(space)
        if held is None:  # the driver names a space by key only after this slot has loaded it
            raise ExecutorError(f"this worker holds no space {space!r}; it holds {sorted(self._spaces)}")
        return held

    def prepare(self, refs: list[Any]) -> bool:
        """Fetch the space before the first child; False if that failed (the first child, which loads
        again, then records why)."""
        try:
            self.load(refs)
        except Exception:  # recorded with the first child, which loads again
            return False
        return True

    def run(self, space: list[Any] | str, payload: bytes, seq: int) -> Result:
        """Run the child pickled in ``payload`` (task, queued time, workers per child) once the calls
        sent before it (``seq`` numbers them from 0) have run; ``space`` is the space's refs or the
        key of one this slot holds. The task arrives as bytes, unpickled here, so that nothing Ray
        does before this method runs can fail and leave the next call waiting for its turn forever."""
        from ray import cloudpickle

        with self._turn:
            self._turn.wait_for(lambda: self._next == seq)
        try:
            task, queued_at, workers = cloudpickle.loads(payload)
            return _child_on_worker(self.held(space), task, queued_at, workers)
        finally:
            with self._turn:
                self._next += 1
                self._turn.notify_all()


@dataclass
class _Call:
    """A child handed to a slot: its task, when it was queued, and when it started (-1: waiting in the slot)."""

    ref: Any
    space: SearchSpace
    task: ChildTask
    queued: float
    slot: int
    started: float = -1.0
    twin: Any | None = None  # the ref of a backup of the same child on another slot (the end of a run)
    orphan: bool = False  # its twin returned first: its own result is ignored


@dataclass
class _SlotState:
    actor: Any
    ready: Any | None  # the ref that resolves when the actor has started; None once it has
    preparing: Any | None = None  # the ref of its `prepare` call until it returns
    prepared: Any | None = None  # the space ref it was asked to prepare
    holds: set[str] = field(default_factory=set)  # keys of the spaces its actor is known to have loaded
    calls: deque[Any] = field(default_factory=deque)  # refs of its calls, the running one first
    sent: int = 0  # calls sent to its actor so far: the next one's sequence number


def _deaths() -> tuple[type[Exception], ...]:
    ray = _ray()
    e = ray.exceptions
    return (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.OutOfMemoryError, e.ObjectLostError)


class RayExecutor(Executor):
    """Children on a pool of ``capacity`` Ray actors (slots); failures of workers and timeouts are recorded.

    With no ``address`` an embedded Ray instance sized to this machine starts (and stops with the
    executor); ``address="auto"`` or ``"host:port"`` joins a cluster started with ``ray start``.
    Each slot holds one child's resources for the whole run and runs the children handed to it in
    order, the next one already waiting at the actor. A worker process that dies (its node lost
    included) is replaced; the child it was running runs again up to ``max_retries`` times, then
    fails. A child running longer than ``child_timeout`` seconds is cancelled (its worker killed)
    and failed.
    """

    name = "ray"

    def __init__(
        self,
        device: str = "cpu",
        address: str | None = None,
        cpus_per_child: float = 1.0,
        gpus_per_child: float = 0.0,
        max_concurrent: int | None = None,
        child_timeout: float | None = None,
        max_retries: int = 2,
        num_cpus: int | None = None,
        prefetch: int | None = None,
        workers_per_child: int = 1,
    ) -> None:
        if cpus_per_child < 0 or gpus_per_child < 0 or (cpus_per_child == 0 and gpus_per_child == 0):
            raise ExecutorError(
                f"--cpus-per-child and --gpus-per-child must be >= 0 and not both 0, got {cpus_per_child}, "
                f"{gpus_per_child}"
            )
        if gpus_per_child > 1 and gpus_per_child != int(gpus_per_child):
            raise ExecutorError(f"--gpus-per-child above 1 must be a whole number, got {gpus_per_child}")
        if max_concurrent is not None and max_concurrent < 1:
            raise ExecutorError(f"--max-concurrent must be >= 1, got {max_concurrent}")
        if child_timeout is not None and not child_timeout > 0:
            raise ExecutorError(f"--child-timeout must be > 0 seconds, got {child_timeout}")
        if workers_per_child < 1:
            raise ExecutorError(f"--workers-per-child must be >= 1, got {workers_per_child}")
        self.workers_per_child = workers_per_child
        cpus_per_child, gpus_per_child = cpus_per_child * workers_per_child, gpus_per_child * workers_per_child
        if prefetch is not None and prefetch < 0:
            raise ExecutorError(f"prefetch must be >= 0, got {prefetch}")
        if max_retries < 0:
            raise ExecutorError(f"max_retries must be >= 0, got {max_retries}")
        ray = _ray()
        self.device = device
        self.child_timeout = child_timeout
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            try:
                ray.init(
                    address=address,
                    num_cpus=num_cpus if address is None else None,
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                )
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = f"the Ray cluster at {address!r}" if address else "an embedded Ray instance"
                raise ExecutorError(f"cannot start or join {where}: {exc}") from exc
            self._owns = address is None
        resources = ray.cluster_resources()
        fits = []
        if cpus_per_child > 0:
            fits.append(math.floor(resources.get("CPU", 0.0) / cpus_per_child + 1e-9))
        if gpus_per_child > 0:
            if resources.get("GPU", 0.0) <= 0:
                raise ExecutorError(f"--gpus-per-child {gpus_per_child} asked for, but the Ray cluster has no GPU")
            fits.append(math.floor(resources.get("GPU", 0.0) / gpus_per_child + 1e-9))
        fit = min(fits)
        if fit < 1:
            raise ExecutorError(
                f"one child needs {cpus_per_child} CPU and {gpus_per_child} GPU; the cluster has "
                f"{resources.get('CPU', 0)} CPU and {resources.get('GPU', 0)} GPU"
            )
        self._capacity = min(fit, max_concurrent) if max_concurrent else fit
        # Children handed to a slot beyond its running one wait at the actor, so a worker that
        # finishes starts the next child at once instead of waiting for the driver's round trip.
        self._prefetch = self._capacity if prefetch is None else prefetch
        self._per_slot = 1 + math.ceil(self._prefetch / self._capacity)
        self._slot_class = ray.remote(_Slot).options(
            num_cpus=cpus_per_child,
            num_gpus=gpus_per_child,
            max_restarts=0,
            max_task_retries=0,
            max_concurrency=self._per_slot + 1,  # its children's calls, waiting their turn, and a ping
        )
        self._slots: dict[int, _SlotState] = {}
        self._slot_ids = itertools.count()
        self._start_failures = 0
        self._space_refs: dict[int, tuple[SearchSpace, Any, Any]] = {}
        self._queue: deque[tuple[SearchSpace, ChildTask, float]] = deque()
        self._calls: dict[Any, _Call] = {}  # ObjectRef of a slot's call -> the child it runs
        self._deaths: dict[int, int] = {}  # child number -> how many workers died running it
        self._suspects: set[int] = set()  # children that may have killed a worker: they run alone
        self._done: deque[tuple[ChildTask, Result]] = deque()  # results collected from a slot that then died
        self._finishing = False
        self._top_up()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def depth(self) -> int:
        return self._capacity + self._prefetch

    @property
    def pending(self) -> int:
        return len(self._queue) + len(self._children()) + len(self._done)

    @property
    def idle(self) -> int:
        return sum(1 for s in self._slots.values() if s.ready is None and not s.calls)

    def _children(self) -> dict[int, _Call]:
        """The children handed to slots, by number, without the orphaned copies."""
        return {c.task.number: c for c in self._calls.values() if not c.orphan}

    def finishing(self) -> None:
        self._finishing = True
        self._fill()

    def _top_up(self) -> None:
        """Keep ``capacity`` slots. A replacement that cannot be placed (its node was lost and no other
        has room) stays pending and is given no child, so the search goes on with the slots left."""
        while len(self._slots) < self._capacity:
            actor = self._slot_class.remote()
            self._slots[next(self._slot_ids)] = _SlotState(actor, actor.ping.remote())

    def _refs(self, space: SearchSpace) -> tuple[Any, Any]:
        entry = self._space_refs.get(id(space))
        if entry is None or entry[0] is not space:
            ray = _ray()
            module = sys.modules.get(type(space).__module__)
            if module is not None and module.__name__.startswith(FILE_PLUGIN_PREFIX):
                # a space loaded from path/file.py:Class is not importable on workers: ship its code
                ray.cloudpickle.register_pickle_by_value(module)
            entry = (space, ray.put(space), ray.put(space.shared_data()))  # once per run, not per child
            self._space_refs[id(space)] = entry
        return entry[1], entry[2]

    def _space_arg(self, slot: _SlotState, space: SearchSpace) -> list[Any] | str:
        """What a call to ``slot`` passes for ``space``: its key if the slot is known to hold it, else its refs."""
        refs = self._refs(space)
        key = refs[0].hex()  # what the slot keys the spaces it loaded by
        if key not in slot.holds and slot.preparing is not None and slot.prepared is refs[0]:
            ready, _ = _ray().wait([slot.preparing], timeout=0)
            if ready:
                self._prepared(slot)
        return key if key in slot.holds else list(refs)

    def _prepared(self, slot: _SlotState) -> None:
        """``slot``'s prepare call has returned: note the space as held if it loaded."""
        ray = _ray()
        try:
            loaded = ray.get(slot.preparing) is True
        except ray.exceptions.RayError:  # its worker died: the next call, with refs, finds out
            loaded = False
        if loaded and slot.prepared is not None:
            slot.holds.add(slot.prepared.hex())
        slot.preparing = None

    def prepare(self, space: SearchSpace) -> None:
        """Each slot fetches ``space`` and its data now, in the background, rather than with its first child."""
        self._top_up()
        refs = list(self._refs(space))
        for slot in self._slots.values():
            if slot.prepared is not refs[0]:
                slot.preparing, slot.prepared = slot.actor.prepare.remote(refs), refs[0]

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        self._queue.append((space, task, time.time()))
        self._fill()

    def _open_slot(self, alone: bool) -> int | None:
        """The least loaded started slot with room for one more child (an empty one for a suspect);
        no child is queued behind a suspect. Among busy slots, the one whose child has run longest,
        as the likeliest to be free first: a queued child cannot move once its slot has it."""
        best: tuple[int, float, int] | None = None
        for slot_id, slot in self._slots.items():
            load = len(slot.calls)
            if slot.ready is not None or load >= (1 if alone else self._per_slot):
                continue
            if load and self._calls[slot.calls[-1]].task.number in self._suspects:
                continue
            key = (load, self._calls[slot.calls[0]].started if load else 0.0, slot_id)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    def _fill(self) -> None:
        self._top_up()
        waiting: list[tuple[SearchSpace, ChildTask, float]] = []  # suspects that found no empty slot
        while self._queue and len(self._calls) < self.depth:
            space, task, queued_at = self._queue.popleft()
            suspect = task.number in self._suspects
            slot_id = self._open_slot(alone=suspect)
            if slot_id is None:
                waiting.append((space, task, queued_at))
                if suspect:
                    continue
                break
            slot = self._slots[slot_id]
            ref = self._send(slot, space, task, queued_at)
            slot.calls.append(ref)
            started = time.time() if len(slot.calls) == 1 else -1.0
            self._calls[ref] = _Call(ref, space, task, queued_at, slot_id, started)
        self._queue.extendleft(reversed(waiting))
        if self._finishing and not self._queue:
            self._backups()

    def _send(self, slot: _SlotState, space: SearchSpace, task: ChildTask, queued_at: float) -> Any:
        """Hand ``task`` to ``slot``'s actor, numbered after the calls sent to it before; returns the call's ref."""
        payload = _ray().cloudpickle.dumps((task, queued_at, self.workers_per_child))
        ref = slot.actor.run.remote(self._space_arg(slot, space), payload, slot.sent)
        slot.sent += 1
        return ref

    def _backups(self) -> None:
        """At the end of a run a child waiting behind a long one cannot move, while other slots fall
        idle. Give each idle slot a copy of such a child; the first copy to return counts (MapReduce's
        backup tasks). Only the last children of a run are copied, and only onto idle workers."""
        for slot_id, slot in self._slots.items():
            if slot.ready is not None or slot.calls:
                continue
            waiting = [
                c
                for c in self._calls.values()
                if c.started < 0 and c.twin is None and not c.orphan and c.task.number not in self._suspects
            ]
            if not waiting:
                return
            original = waiting[0]
            ref = self._send(slot, original.space, original.task, original.queued)
            slot.calls.append(ref)
            self._calls[ref] = _Call(ref, original.space, original.task, original.queued, slot_id, time.time())
            self._calls[ref].twin, original.twin = original.ref, ref

    def next_result(self) -> tuple[ChildTask, Result]:
        ray = _ray()
        if not self.pending:
            raise ExecutorError("next_result called with no child pending")
        while True:
            self._fill()
            if self._done:
                return self._done.popleft()
            # checked on every pass, so a stuck child times out even while others keep finishing
            expired = self._expired() if self.child_timeout is not None else None
            if expired is not None:
                self._fill()
                return expired
            starting = {s.ready: i for i, s in self._slots.items() if s.ready is not None}
            wait = POLL_S if self.child_timeout is not None else None
            ready, _ = ray.wait([*self._calls, *starting], num_returns=1, timeout=wait)
            if ready and ready[0] in starting:
                self._slot_started(starting[ready[0]])
            elif ready:
                done = self._finished(ready[0])
                if done is not None:
                    self._fill()
                    return done

    def next_results(self) -> list[tuple[ChildTask, Result]]:
        """The next result, and with it every other one that has already come back (one store
        transaction for all of them: at the end of a run they come back together)."""
        ray = _ray()
        results = [self.next_result()]
        if self._calls:
            ready, _ = ray.wait(list(self._calls), num_returns=len(self._calls), timeout=0)
            for ref in ready:
                if ref in self._calls:  # not retired with a dead slot earlier in this loop
                    done = self._finished(ref)
                    if done is not None:
                        results.append(done)
            self._fill()
        results.extend(self._done)  # harvested from slots that died
        self._done.clear()
        return results

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait until every slot's worker process has started, and has fetched the space if `prepare`
        was called (a run does not need to: a child goes to the first slot that is up). Returns the
        seconds waited; benchmarks use it to time steady work."""
        ray = _ray()
        began = time.perf_counter()
        self._top_up()
        while True:
            starting = {s.ready: i for i, s in self._slots.items() if s.ready is not None}
            preparing = {s.preparing: i for i, s in self._slots.items() if s.preparing is not None}
            left = None if timeout is None else timeout - (time.perf_counter() - began)
            if not (starting or preparing) or (left is not None and left <= 0):
                return time.perf_counter() - began
            refs = [*starting, *preparing]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=left)
            for ref in ready:
                if ref in starting:
                    self._slot_started(starting[ref])
                elif preparing[ref] in self._slots:
                    self._prepared(self._slots[preparing[ref]])

    def _slot_started(self, slot_id: int) -> None:
        ray = _ray()
        slot = self._slots[slot_id]
        try:
            ray.get(slot.ready)
            slot.ready = None
        except ray.exceptions.RayError as exc:
            del self._slots[slot_id]
            self._start_failures += 1
            if self._start_failures > self._capacity + self.max_retries:
                raise ExecutorError(f"Ray cannot start workers for the children: {type(exc).__name__}: {exc}") from exc

    def _finished(self, ref: Any) -> tuple[ChildTask, Result] | None:
        """The child of ``ref`` and its result; None when its worker died and it was queued again."""
        ray = _ray()
        call = self._calls[ref]
        try:
            result = ray.get(ref)
        except _deaths() as exc:
            return self._slot_died(call.slot, exc)
        except ray.exceptions.TaskCancelledError:
            result = Result.failed("cancelled")
        except ray.exceptions.RayError as exc:
            result = Result.failed(f"Ray could not run child {call.task.number}: {type(exc).__name__}: {exc}")
        else:  # the call returned a result, so its slot has loaded the space
            self._slots[call.slot].holds.add(self._refs(call.space)[0].hex())
        del self._calls[ref]
        slot = self._slots[call.slot]
        slot.calls.remove(ref)
        if slot.calls:  # the slot's next child starts now
            self._calls[slot.calls[0]].started = time.time()
        if call.orphan:
            return None
        self._orphan_twin(call)
        self._suspects.discard(call.task.number)
        return call.task, result

    def _orphan_twin(self, call: _Call) -> None:
        """``call`` returned: its backup (or original) still runs or waits on its slot, and is ignored."""
        twin = self._calls.get(call.twin) if call.twin is not None else None
        if twin is not None:
            twin.orphan, twin.twin = True, None

    def _retire(self, slot_id: int, kill: bool = True) -> list[_Call]:
        """Remove a slot and kill its actor; its children, running one first, are forgotten and returned."""
        slot = self._slots.pop(slot_id)
        if kill:
            _ray().kill(slot.actor, no_restart=True)
        return [self._calls.pop(r) for r in slot.calls]

    def _requeue(self, calls: list[_Call]) -> None:
        self._queue.extendleft(reversed([(c.space, c.task, c.queued) for c in calls]))

    def _slot_died(self, slot_id: int, exc: Exception) -> tuple[ChildTask, Result] | None:
        """A worker process died (exit, crash, out of memory, its node lost). The child it was running
        runs again up to ``max_retries`` times, then fails; those queued behind it run again too."""
        ray = _ray()
        calls = self._retire(slot_id)
        # A slot runs its children in order: those that returned before it died keep their results,
        # the first one that did not was running.
        while calls and ray.wait([calls[0].ref], timeout=0)[0]:
            try:
                result = ray.get(calls[0].ref)
            except ray.exceptions.RayError:  # it died with the worker (or never ran): not a result
                break
            if not calls[0].orphan:
                self._orphan_twin(calls[0])
                self._done.append((calls[0].task, result))
            calls.pop(0)
        # copies of children whose other copy lives on another slot are not run again
        for c in calls:
            twin = self._calls.get(c.twin) if c.twin is not None else None
            if twin is not None:
                twin.twin = None
        calls = [c for c in calls if not c.orphan and (c.twin is None or c.twin not in self._calls)]
        if not calls:
            return None
        # The first of those left was running, unless its reply was lost with the worker (Ray sends it
        # while the next child starts): with more than one left, which child killed the worker is
        # unknown. All of them become suspects and run again alone, where a death is unambiguous.
        for c in calls:
            self._deaths[c.task.number] = self._deaths.get(c.task.number, 0) + 1
            self._suspects.add(c.task.number)
        running = calls[0]
        deaths = self._deaths[running.task.number]
        if len(calls) > 1 or deaths <= self.max_retries:
            self._requeue(calls)
            return None
        return running.task, Result.failed(
            f"the worker running child {running.task.number} died {deaths} time(s): {type(exc).__name__}: {exc}"
        )

    def _expired(self) -> tuple[ChildTask, Result] | None:
        assert self.child_timeout is not None
        now = time.time()
        for call in list(self._calls.values()):
            if call.ref not in self._calls:  # its slot was retired earlier in this pass
                continue
            if call.started >= 0 and now - call.started > self.child_timeout:
                running, *queued = self._retire(call.slot)  # killing its worker is the only way to stop it
                self._requeue([c for c in queued if not c.orphan and c.twin is None])
                if running.orphan:
                    continue
                self._orphan_twin(running)
                return running.task, Result.failed(
                    f"child {running.task.number} ran past --child-timeout {self.child_timeout:g}s and was cancelled",
                    wall_time=now - running.started,
                )
        return None

    def cancel_all(self) -> list[ChildTask]:
        dropped = [task for _, task, _ in self._queue] + [c.task for c in self._children().values()]
        self._queue.clear()
        # Killing a slot's actor stops its running child; new slots are started when children come.
        # An embedded instance is shut down next, which stops every worker: killing them one by one
        # first would only race with children that are finishing.
        for slot_id in list(self._slots):
            if self._slots[slot_id].calls:
                self._retire(slot_id, kill=not self._owns)
        return dropped

    def shutdown(self) -> None:
        self.cancel_all()
        for slot_id in list(self._slots):
            self._retire(slot_id, kill=not self._owns)
        self._space_refs.clear()
        if self._owns:
            _ray().shutdown()
            self._owns = False
