"""The Ray executor's scheduling decisions as plain code over plain state: testable without Ray or a clock.

A `Scheduler` keeps the children waiting for a worker (``queue``), the slots and the children handed
to each (``slots``, with ``calls`` indexing those children by the future of their result), what
worker deaths taught it (``deaths``, ``suspects``) and results saved from dying slots
(``harvested``). It decides where a child goes (the least loaded slot, a suspect alone), which
waiting children get a backup at the end of a run, what a returned call, a dead worker or a child past
its timeout means, and what cancelling drops. The worker processes themselves are behind `Workers`:
Ray actors in `l2l.runs.ray_executor`, fakes in the tests.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from l2l.runs.capacity import fit_slots
from l2l.runs.executors import ChildTask
from l2l.search_spaces.api import Result, SearchSpace

Outcome = tuple[ChildTask, Result]
__all__ = ["Job", "Scheduler", "Workers", "children_per_slot", "fit_slots"]


@dataclass(frozen=True)
class Job:
    """A submitted child with its space and when it was submitted (``queued``), so it can be sent again."""

    space: SearchSpace
    task: ChildTask
    queued: float


@dataclass(eq=False)
class Call:
    """A child handed to a slot's worker; its result comes through ``future`` (a Ray ObjectRef, or a fake)."""

    future: Hashable
    job: Job
    slot: int
    started: float = -1.0  # when it began to run; -1 while it waits at its slot behind another child
    twin: Hashable | None = None  # the future of a copy of the same child on another slot (the end of a run)
    orphan: bool = False  # its twin returned first: its own result is ignored

    @property
    def number(self) -> int:
        """The child's number in the run."""
        return self.job.task.number


@dataclass(eq=False)
class Slot:
    """One child's share of the cluster, held by one worker process that runs the children sent to it in order."""

    up: bool = False  # its worker process has started
    calls: deque[Call] = field(default_factory=deque)  # the running child first, then those waiting behind it


class Workers(Protocol):
    """The worker processes under a `Scheduler` (one per slot): Ray actors in the Ray executor, fakes in tests."""

    def start(self, slot: int) -> None:
        """Start the worker of a new slot; it is told `Scheduler.started` once the process is up."""

    def send(self, slot: int, job: Job) -> Hashable:
        """Hand ``job`` to ``slot``'s worker, to run after those sent to it before; returns its result's future."""

    def retire(self, slot: int, kill: bool) -> None:
        """Forget ``slot``'s worker, killing its process when ``kill``."""

    def outcome(self, future: Hashable) -> Result | None:
        """The result of a call on a worker that died, if it returned before the worker did; else None."""

    def where(self, slot: int) -> dict[str, Any]:
        """Where ``slot``'s worker runs (``worker`` host:pid, ``node``) as far as it has said; {} before it has."""


def children_per_slot(capacity: int, prefetch: int) -> int:
    """How many children a slot may hold: its running one and its share of the ``prefetch`` queued ones."""
    return 1 + math.ceil(prefetch / capacity)


class Scheduler:
    """Places children on ``capacity`` slots and decides what a returned call, a dead worker or a timeout means.

    Each slot holds up to `children_per_slot` children, run in order by its worker; at most ``capacity
    + prefetch`` are handed out at once, the rest wait in ``queue``. A worker that dies has the child
    it was running run again up to ``max_retries`` times, then failed; a child running longer than
    ``child_timeout`` seconds (by ``clock``) is failed and its worker killed.
    """

    def __init__(
        self,
        workers: Workers,
        capacity: int,
        prefetch: int,
        max_retries: int = 2,
        child_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.workers = workers
        self.capacity = capacity
        self.depth = capacity + prefetch
        self.per_slot = children_per_slot(capacity, prefetch)
        self.max_retries = max_retries
        self.child_timeout = child_timeout
        self.clock = clock
        self.queue: deque[Job] = deque()  # submitted and not handed to a slot yet, the next one first
        self.slots: dict[int, Slot] = {}
        self.calls: dict[Hashable, Call] = {}  # every child handed to a slot, by its future, oldest first
        self.deaths: dict[int, int] = {}  # child number -> how many workers died running it
        self.suspects: set[int] = set()  # children that may have killed a worker: they run alone
        self.reserved: dict[int, int] = {}  # slot -> the suspect it is emptied for (no child is queued behind)
        self.harvested: deque[Outcome] = deque()  # results collected from a slot that then died
        self.ending = False  # no more children will be submitted: idle slots may run backups
        self._slot_ids = itertools.count()
        self._start_failures = 0

    @property
    def pending(self) -> int:
        """Submitted children whose results have not been returned yet."""
        return len(self.queue) + len(self.children()) + len(self.harvested)

    @property
    def idle(self) -> int:
        """Started slots with no child at all."""
        return sum(1 for s in self.slots.values() if s.up and not s.calls)

    def children(self) -> dict[int, Call]:
        """The children handed to slots, by number, without the orphaned copies."""
        return {c.number: c for c in self.calls.values() if not c.orphan}

    def top_up(self) -> None:
        """Keep ``capacity`` slots. A replacement that cannot be placed (its node was lost and no other
        has room) stays pending and is given no child, so the search goes on with the slots left."""
        while len(self.slots) < self.capacity:
            slot_id = next(self._slot_ids)
            self.slots[slot_id] = Slot()
            self.workers.start(slot_id)

    def started(self, slot_id: int) -> None:
        """``slot_id``'s worker is up: it may be given children."""
        self.slots[slot_id].up = True

    def start_failed(self, slot_id: int) -> bool:
        """``slot_id``'s worker could not start: drop it (`top_up` replaces it); True once too many failed."""
        del self.slots[slot_id]
        self.workers.retire(slot_id, kill=False)
        self._start_failures += 1
        return self._start_failures > self.capacity + self.max_retries

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        """Queue ``task`` and hand out what fits."""
        self.queue.append(Job(space, task, self.clock()))
        self.fill()

    def finishing(self) -> None:
        """No more children will be submitted: slots that fall idle may run backups of waiting ones."""
        self.ending = True
        self.fill()

    def fill(self) -> None:
        """Hand queued children to open slots, in order, up to ``depth`` at once. A suspect needs an empty
        slot: when none is, the least loaded one is reserved for it and given nothing more, so it runs as
        soon as that slot's children end (in a busy run no slot is ever empty on its own), while the
        children behind it go on elsewhere. At the end of a run, idle slots get backups."""
        self.top_up()
        self.reserved = {k: v for k, v in self.reserved.items() if k in self.slots and v in self.suspects}
        waiting: list[Job] = []  # suspects that found no empty slot
        while self.queue and len(self.calls) < self.depth:
            job = self.queue.popleft()
            suspect = job.task.number in self.suspects
            slot_id = self.open_slot(alone=suspect, child=job.task.number)
            if slot_id is None:
                waiting.append(job)
                if suspect:
                    self._reserve(job.task.number)
                    continue
                break
            self._hand(slot_id, job)
            if suspect:  # it found its empty slot: a slot reserved for it elsewhere is free again
                self.reserved = {k: v for k, v in self.reserved.items() if v != job.task.number or k == slot_id}
        self.queue.extendleft(reversed(waiting))
        if self.ending and not self.queue:
            self.backups()

    def open_slot(self, alone: bool, child: int | None = None) -> int | None:
        """The least loaded started slot with room for one more child (an empty one for a suspect);
        no child is queued behind a suspect, nor on a slot reserved for another suspect. Among busy
        slots, the one whose child has run longest, as the likeliest to be free first: a queued child
        cannot move once its slot has it."""
        best: tuple[int, float, int] | None = None
        for slot_id, slot in self.slots.items():
            load = len(slot.calls)
            if not slot.up or load >= (1 if alone else self.per_slot):
                continue
            if load and slot.calls[-1].number in self.suspects:
                continue
            if self.reserved.get(slot_id, child) != child:
                continue
            key = (load, slot.calls[0].started if load else 0.0, slot_id)
            if best is None or key < best:
                best = key
        return None if best is None else best[2]

    def _reserve(self, suspect: int) -> None:
        """Keep new children off the least loaded started slot (the one whose child has run longest among
        equals) until ``suspect`` can run alone on it."""
        if suspect in self.reserved.values():
            return
        free = [
            (len(slot.calls), slot.calls[0].started if slot.calls else 0.0, slot_id)
            for slot_id, slot in self.slots.items()
            if slot.up and slot_id not in self.reserved
        ]
        if free:
            self.reserved[min(free)[2]] = suspect

    def backups(self) -> None:
        """At the end of a run a child waiting behind a long one cannot move, while other slots fall
        idle. Give each idle slot a copy of such a child; the first copy to return counts (MapReduce's
        backup tasks). Only the last children of a run are copied, and only onto idle workers."""
        for slot_id, slot in self.slots.items():
            if not slot.up or slot.calls:
                continue
            waiting = [
                c
                for c in self.calls.values()
                if c.started < 0 and c.twin is None and not c.orphan and c.number not in self.suspects
            ]
            if not waiting:
                return
            original = waiting[0]
            backup = self._hand(slot_id, original.job)
            backup.twin, original.twin = original.future, backup.future

    def _hand(self, slot_id: int, job: Job) -> Call:
        """Send ``job`` to ``slot_id``'s worker; it starts now if the slot had nothing else to run."""
        slot = self.slots[slot_id]
        call = Call(self.workers.send(slot_id, job), job, slot_id)
        slot.calls.append(call)
        if len(slot.calls) == 1:
            call.started = self.clock()
        self.calls[call.future] = call
        return call

    def returned(self, future: Hashable, result: Result) -> Outcome | None:
        """The call of ``future`` returned ``result``: the child with it, or None for an orphaned copy."""
        call = self.calls.pop(future)
        slot = self.slots[call.slot]
        slot.calls.remove(call)
        if slot.calls:  # the slot's next child starts now
            slot.calls[0].started = self.clock()
        if call.orphan:
            return None
        self._orphan_twin(call)
        self.suspects.discard(call.number)
        return self._counted(call.job.task, result)

    def _counted(self, task: ChildTask, result: Result, runs: int = 1) -> Outcome:
        """``task`` with ``result``, which says in ``runtime.retries`` how often worker deaths made the child run
        again before the ``runs`` run(s) that ended it (the store counts them as attempts)."""
        retries = self.deaths.get(task.number, 0) + runs - 1
        if retries:
            result = replace(result, runtime={**result.runtime, "retries": retries})
        return task, result

    def _orphan_twin(self, call: Call) -> None:
        """``call`` returned: its backup (or original) still runs or waits on its slot, and is ignored."""
        twin = self.calls.get(call.twin) if call.twin is not None else None
        if twin is not None:
            twin.orphan, twin.twin = True, None

    def _retire(self, slot_id: int, kill: bool = True) -> list[Call]:
        """Remove a slot (killing its worker when ``kill``); its children, running one first, are forgotten
        and returned."""
        slot = self.slots.pop(slot_id)
        self.workers.retire(slot_id, kill)
        return [self.calls.pop(c.future) for c in slot.calls]

    def _requeue(self, calls: list[Call]) -> None:
        self.queue.extendleft(reversed([c.job for c in calls]))

    def died(self, slot_id: int, reason: str) -> Outcome | None:
        """``slot_id``'s worker died (exit, crash, out of memory, its node lost) for ``reason``. The child it
        was running runs again up to ``max_retries`` times, then fails; those queued behind it run again
        too. Returns the failed child, or None when all of them were queued again."""
        where = self.workers.where(slot_id)
        calls = self._retire(slot_id)
        # A slot runs its children in order: those that returned before it died keep their results,
        # the first one that did not was running.
        while calls:
            result = self.workers.outcome(calls[0].future)
            if result is None:
                break
            if not calls[0].orphan:
                self._orphan_twin(calls[0])
                self.harvested.append(self._counted(calls[0].job.task, result))
            calls.pop(0)
        # copies of children whose other copy lives on another slot are not run again
        for c in calls:
            twin = self.calls.get(c.twin) if c.twin is not None else None
            if twin is not None:
                twin.twin = None
        calls = [c for c in calls if not c.orphan and (c.twin is None or c.twin not in self.calls)]
        if not calls:
            return None
        # The first of those left was running, unless its reply was lost with the worker (Ray sends it
        # while the next child starts): with more than one left, which child killed the worker is
        # unknown. All of them become suspects and run again alone, where a death is unambiguous.
        for c in calls:
            self.deaths[c.number] = self.deaths.get(c.number, 0) + 1
            self.suspects.add(c.number)
        running = calls[0]
        deaths = self.deaths[running.number]
        if len(calls) > 1 or deaths <= self.max_retries:
            self._requeue(calls)
            return None
        failed = Result.failed(f"the worker running child {running.number} died {deaths} time(s): {reason}")
        return self._counted(running.job.task, replace(failed, runtime=self._lost(running, where)), runs=0)

    def _lost(self, call: Call, where: dict[str, Any]) -> dict[str, Any]:
        """The runtime of a child whose worker never sent its own (timed out, or died with it): where it ran
        and when, as far as the driver knows."""
        now, started = self.clock(), call.started if call.started >= 0 else None
        wall = None if started is None else now - started
        return {**where, "device": call.job.task.ctx.device, "started": started, "finished": now, "wall_time": wall}

    def expire(self) -> Outcome | None:
        """A child running past ``child_timeout``, failed; its worker is killed (the only way to stop it)
        and the children queued behind it are queued again. None when no child has run too long."""
        if self.child_timeout is None:
            return None
        now = self.clock()
        for call in list(self.calls.values()):
            if call.future not in self.calls:  # its slot was retired earlier in this pass
                continue
            if call.started >= 0 and now - call.started > self.child_timeout:
                where = self.workers.where(call.slot)
                running, *queued = self._retire(call.slot)
                self._requeue([c for c in queued if not c.orphan and c.twin is None])
                if running.orphan:
                    continue
                self._orphan_twin(running)
                failed = Result.failed(
                    f"child {running.number} ran past --child-timeout {self.child_timeout:g}s and was cancelled"
                )
                return self._counted(running.job.task, replace(failed, runtime=self._lost(running, where)))
        return None

    def cancel_all(self, kill: bool = True) -> list[ChildTask]:
        """Drop every queued and running child; returns those dropped. Slots with children are retired
        (their workers killed when ``kill``); new ones start when children come."""
        dropped = [job.task for job in self.queue] + [c.job.task for c in self.children().values()]
        self.queue.clear()
        for slot_id in list(self.slots):
            if self.slots[slot_id].calls:
                self._retire(slot_id, kill)
        return dropped

    def close(self, kill: bool = True) -> None:
        """Drop every child and retire every slot."""
        self.cancel_all(kill)
        for slot_id in list(self.slots):
            self._retire(slot_id, kill)
