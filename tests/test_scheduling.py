"""The Ray executor's scheduling decisions, without Ray: fake workers hand out fake futures, a fake clock ticks.

Placement (least loaded slot, suspects alone), batched refills, backups at the end of a run, worker
deaths (retries, suspects, results saved from a dying slot), child timeouts, cancelling and resource
fitting (fractional GPUs), each decided by `Scheduler` and the functions beside it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest

from l2l.runs.executors import ChildTask, Executor, ExecutorError, to_submit
from l2l.runs.scheduling import Job, Scheduler, children_per_slot, fit_slots
from l2l.search_spaces import Context, Result, SearchSpace, load_space

SPACE = load_space("toy")


@dataclass(frozen=True)
class Future:
    """What a fake worker hands back for a call: which call, to which slot, for which child."""

    seq: int
    slot: int
    child: int


@dataclass
class FakeWorkers:
    """Records what the scheduler asks of the workers; a test sets what a dead worker had returned."""

    started: list[int] = field(default_factory=list)
    sent: list[Future] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    released: list[int] = field(default_factory=list)  # retired without killing
    returned_before_death: dict[Hashable, Result] = field(default_factory=dict)

    def start(self, slot: int) -> None:
        self.started.append(slot)

    def send(self, slot: int, job: Job) -> Hashable:
        future = Future(len(self.sent), slot, job.task.number)
        self.sent.append(future)
        return future

    def retire(self, slot: int, kill: bool) -> None:
        (self.killed if kill else self.released).append(slot)

    def outcome(self, future: Hashable) -> Result | None:
        return self.returned_before_death.get(future)

    def where(self, slot: int) -> dict[str, Any]:
        return {"worker": f"host:{100 + slot}", "node": "n1"}


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


def make(
    capacity: int = 2, prefetch: int = 2, max_retries: int = 2, child_timeout: float | None = None, up: bool = True
) -> tuple[Scheduler, FakeWorkers, Clock]:
    workers, clock = FakeWorkers(), Clock()
    s = Scheduler(workers, capacity, prefetch, max_retries, child_timeout, clock=clock)
    s.top_up()
    if up:
        for slot_id in list(s.slots):
            s.started(slot_id)
    return s, workers, clock


def task(number: int) -> ChildTask:
    return ChildTask(number, SPACE.decode((0,) * len(SPACE.decisions())), Context(child=number))


def submit(s: Scheduler, clock: Clock, *numbers: int) -> None:
    for n in numbers:
        s.submit(SPACE, task(n))
        clock.tick()


def placed(s: Scheduler) -> dict[int, list[int]]:
    """Each slot's children, the running one first."""
    return {slot_id: [c.number for c in slot.calls] for slot_id, slot in s.slots.items()}


def future_of(s: Scheduler, child: int, slot: int | None = None) -> Hashable:
    return next(f for f, c in s.calls.items() if c.number == child and (slot is None or c.slot == slot))


def finish(s: Scheduler, child: int, slot: int | None = None, reward: float = 1.0) -> tuple[ChildTask, Result] | None:
    """Child ``child``'s call (on ``slot``) returns; the executor then hands out what fits, as the Ray one does."""
    done = s.returned(future_of(s, child, slot), Result(reward=reward))
    s.fill()
    return done


def test_a_slot_gets_children_only_once_its_worker_is_up() -> None:
    s, workers, clock = make(capacity=2, up=False)
    assert workers.started == [0, 1] and s.idle == 0
    submit(s, clock, 0, 1)
    assert placed(s) == {0: [], 1: []} and s.pending == 2  # queued, not lost
    s.started(1)
    s.fill()
    assert placed(s) == {0: [], 1: [0, 1]}  # the slot that is up takes what it can hold
    assert [(f.slot, f.child) for f in workers.sent] == [(1, 0), (1, 1)]


def test_children_go_to_the_least_loaded_slot_then_behind_the_child_that_has_run_longest() -> None:
    s, _, clock = make(capacity=2, prefetch=2)  # 2 children per slot, 4 handed out at once
    assert s.per_slot == 2 and s.depth == 4
    submit(s, clock, 0, 1, 2, 3, 4, 5)
    # 0 and 1 run; 2 waits behind 0 (it started first), 3 behind 1; 4 and 5 wait in the driver's queue
    assert placed(s) == {0: [0, 2], 1: [1, 3]}
    assert [j.task.number for j in s.queue] == [4, 5] and s.pending == 6
    assert [c.started for c in s.calls.values()] == [1000.0, 1001.0, -1.0, -1.0]
    clock.tick(5)
    assert finish(s, 1) == (task(1), Result(reward=1.0))
    assert s.calls[future_of(s, 3)].started == clock.now  # the next child on the slot starts when one ends
    assert placed(s) == {0: [0, 2], 1: [3, 4]} and s.pending == 5


def test_prefetch_zero_keeps_one_child_per_slot() -> None:
    s, _, clock = make(capacity=3, prefetch=0)
    submit(s, clock, *range(5))
    assert placed(s) == {0: [0], 1: [1], 2: [2]} and len(s.queue) == 2
    assert children_per_slot(3, 0) == 1 and children_per_slot(4, 6) == 3


def test_a_worker_death_with_children_queued_makes_them_all_suspects_that_run_alone() -> None:
    s, workers, clock = make(capacity=2, prefetch=2, max_retries=0)
    submit(s, clock, 0, 1, 2, 3, 4)
    assert placed(s) == {0: [0, 2], 1: [1, 3]}
    # slot 0's worker dies: 0 was running, but its reply may be lost while 2 starts, so who killed it is unknown
    assert s.died(0, "RayActorError: the actor died") is None
    assert workers.killed == [0] and s.suspects == {0, 2} and s.deaths == {0: 1, 2: 1}
    assert [j.task.number for j in s.queue] == [0, 2, 4]  # first in line again, before 4
    s.fill()  # a new slot replaces the dead one; its worker is not up yet
    assert workers.started == [0, 1, 2] and placed(s) == {1: [1, 3], 2: []}
    s.started(2)
    s.fill()
    # a suspect runs alone on an empty slot; the children behind it in the queue go on without it
    assert placed(s) == {1: [1, 3], 2: [0]} and [j.task.number for j in s.queue] == [2, 4]
    assert finish(s, 0) is not None and s.suspects == {2}  # it returned: no longer a suspect
    assert placed(s) == {1: [1, 3], 2: [2]}  # the other suspect alone in turn
    assert finish(s, 2) is not None
    assert placed(s) == {1: [1, 3], 2: [4]}


def test_a_suspect_runs_as_soon_as_a_busy_slot_is_emptied_for_it_while_the_others_go_on() -> None:
    s, workers, clock = make(capacity=3, prefetch=3, max_retries=2)  # 2 children per slot
    submit(s, clock, *range(9))
    assert placed(s) == {0: [0, 3], 1: [1, 4], 2: [2, 5]}
    workers.returned_before_death[future_of(s, 0)] = Result(reward=1.0)
    assert s.died(0, "NodeDiedError: its node was lost") is None  # 0 had returned: 3 was running
    assert s.suspects == {3} and [j.task.number for j in s.queue] == [3, 6, 7, 8]
    s.fill()  # the replacement slot cannot be placed (its node is gone): it never comes up
    assert 3 not in s.slots or not s.slots[3].up
    assert s.reserved == {1: 3}  # the slot whose child has run longest takes nothing more
    assert finish(s, 2) is not None
    assert placed(s)[2] == [5, 6]  # the children behind the suspect go on, elsewhere
    assert finish(s, 1) is not None
    assert placed(s)[1] == [4]  # in a busy run an empty slot never comes on its own: nothing joins 4
    assert finish(s, 4) is not None
    assert placed(s)[1] == [3] and [j.task.number for j in s.queue] == [7, 8]  # the suspect runs, alone, at once
    done = finish(s, 3)
    assert done is not None and done[1].runtime["retries"] == 1  # its second run: counted as an attempt
    assert s.suspects == set() and s.reserved == {}
    assert placed(s)[1] == [7, 8]


def test_a_child_that_kills_its_worker_alone_runs_again_up_to_max_retries_then_fails() -> None:
    s, workers, clock = make(capacity=1, prefetch=0, max_retries=1)
    submit(s, clock, 0)
    assert s.died(0, "WorkerCrashedError: boom") is None  # alone, but retries are left: queued again
    s.fill()
    s.started(1)
    s.fill()
    assert placed(s) == {1: [0]}
    done = s.died(1, "WorkerCrashedError: boom")
    assert done is not None and done[0] == task(0) and done[1].status == "failed"
    assert done[1].error == "the worker running child 0 died 2 time(s): WorkerCrashedError: boom"
    assert done[1].runtime["retries"] == 1  # two runs: the store records 2 attempts
    assert done[1].runtime["worker"] == "host:101" and done[1].runtime["device"] == "cpu"  # its last slot's
    assert workers.killed == [0, 1] and s.pending == 0


def test_results_returned_before_a_worker_died_are_kept() -> None:
    s, workers, clock = make(capacity=1, prefetch=2, max_retries=2)
    submit(s, clock, 0, 1, 2)
    assert placed(s) == {0: [0, 1, 2]}
    workers.returned_before_death[future_of(s, 0)] = Result(reward=0.7)
    assert s.died(0, "RayActorError: gone") is None
    assert list(s.harvested) == [(task(0), Result(reward=0.7))]  # child 0 finished before the worker died
    assert [j.task.number for j in s.queue] == [1, 2] and s.suspects == {1, 2}
    assert s.pending == 3  # one result to hand back, two children to run again


def test_at_the_end_an_idle_slot_runs_a_backup_of_a_child_waiting_behind_a_long_one() -> None:
    s, workers, clock = make(capacity=2, prefetch=2)
    submit(s, clock, 0, 1, 2, 3)  # 0 runs long; 2 waits behind it, 3 behind 1
    assert placed(s) == {0: [0, 2], 1: [1, 3]}
    s.finishing()
    assert len(workers.sent) == 4  # no slot is idle yet: no backups
    finish(s, 1)
    finish(s, 3)
    assert placed(s) == {0: [0, 2], 1: [2]}  # slot 1 fell idle: it runs a copy of 2
    assert s.pending == 2  # 0 and 2: a copy is not another pending child
    done = finish(s, 2, slot=1)
    assert done is not None and done[0] == task(2)  # the first copy to return counts
    original = s.calls[future_of(s, 2, slot=0)]
    assert original.orphan and s.pending == 1
    assert [t.number for t in s.cancel_all()] == [0]


def test_when_the_original_returns_first_its_backup_is_ignored() -> None:
    s, _, clock = make(capacity=2, prefetch=2)
    submit(s, clock, 0, 1, 2)
    s.finishing()
    finish(s, 1)
    assert placed(s) == {0: [0, 2], 1: [2]}
    finish(s, 0, slot=0)
    assert finish(s, 2, slot=0) is not None
    assert s.pending == 0 and finish(s, 2, slot=1) is None  # the backup's result is dropped
    assert placed(s) == {0: [], 1: []}


def test_suspects_and_children_already_copied_get_no_backup() -> None:
    s, _, clock = make(capacity=3, prefetch=3)
    submit(s, clock, 0, 1, 2, 3, 4)
    assert placed(s) == {0: [0, 3], 1: [1, 4], 2: [2]}
    s.suspects.add(4)  # as if it had been on a worker that died
    s.finishing()
    finish(s, 2)
    assert placed(s) == {0: [0, 3], 1: [1, 4], 2: [3]}  # a copy of 3 only
    finish(s, 3, slot=2)
    assert placed(s) == {0: [0, 3], 1: [1, 4], 2: []}  # 3 is done; 4 is a suspect: no copy of either


def test_a_child_past_its_timeout_is_failed_and_the_children_behind_it_queued_again() -> None:
    s, workers, clock = make(capacity=2, prefetch=2, child_timeout=10.0)
    submit(s, clock, 0, 1, 2)
    assert placed(s) == {0: [0, 2], 1: [1]}
    clock.tick(7)
    assert s.expire() is None  # 0 has run 10 s: not past its timeout
    clock.tick(1)
    done = s.expire()
    assert done is not None and done[0] == task(0)
    assert done[1].error == "child 0 ran past --child-timeout 10s and was cancelled"
    # where and when it ran, though its worker never said (it was killed): the driver's record of the slot
    assert done[1].runtime == {
        "worker": "host:100", "node": "n1", "device": "cpu", "started": 1000.0, "finished": 1011.0, "wall_time": 11.0,
    }  # fmt: skip
    assert workers.killed == [0]  # killing its worker is the only way to stop it
    assert [j.task.number for j in s.queue] == [2] and s.pending == 2
    assert s.expire() is None  # 1 started a second later
    clock.tick(1)
    assert s.expire() is not None and workers.killed == [0, 1]


def test_without_a_timeout_nothing_expires() -> None:
    s, workers, clock = make(capacity=1)
    submit(s, clock, 0)
    clock.tick(1e6)
    assert s.expire() is None and not workers.killed


def test_cancel_all_drops_queued_and_running_children_and_retires_the_busy_slots() -> None:
    s, workers, clock = make(capacity=3, prefetch=0)
    submit(s, clock, 0, 1, 2, 3)
    finish(s, 2)
    assert placed(s) == {0: [0], 1: [1], 2: [3]}
    finish(s, 3)
    submit(s, clock, 4, 5)
    assert sorted(t.number for t in s.cancel_all(kill=False)) == [0, 1, 4, 5]
    assert s.pending == 0 and not s.queue and not s.calls
    assert sorted(workers.released) == [0, 1, 2] and not workers.killed
    s.close()
    assert not s.slots


def test_close_retires_every_slot_and_kills_its_worker() -> None:
    s, workers, clock = make(capacity=2)
    submit(s, clock, 0)
    s.close(kill=True)
    assert sorted(workers.killed) == [0, 1] and not s.slots and s.pending == 0


def test_workers_that_cannot_start_are_replaced_until_too_many_failed() -> None:
    s, workers, _ = make(capacity=1, max_retries=1, up=False)
    assert not s.start_failed(0)  # dropped, not killed; top_up starts another
    s.top_up()
    assert not s.start_failed(1)
    s.top_up()
    assert s.start_failed(2)  # more failures than slots and retries: give up
    assert workers.released == [0, 1, 2] and workers.started == [0, 1, 2]


def test_fractional_gpus_let_children_share_one_and_the_scarcest_resource_bounds_the_slots() -> None:
    assert fit_slots({"CPU": 2.0, "GPU": 1.0}, 0.25, 0.5) == 2  # the GPU, not the 8 quarter CPUs
    assert fit_slots({"CPU": 8.0, "GPU": 1.0}, 1.0, 1 / 3) == 3  # a third is no float rounding away from 3
    assert fit_slots({"CPU": 16.0}, 1.0, 0.0, max_concurrent=4) == 4
    assert fit_slots({"GPU": 2.0}, 0.0, 1.0) == 2
    with pytest.raises(ExecutorError, match="asked for, but the Ray cluster has no GPU"):
        fit_slots({"CPU": 4.0}, 1.0, 0.5)
    with pytest.raises(ExecutorError, match=r"one child needs 64 CPU and 0 GPU; the cluster has 4 CPU and 0 GPU"):
        fit_slots({"CPU": 4.0}, 64, 0.0)
    two = [{"CPU": 1.0}, {"CPU": 1.0}]  # 2 CPUs, but a child of 2 fits on no node: it would wait forever
    with pytest.raises(ExecutorError, match=r"needs 2 CPU and 0 GPU on one node, and no node .* has 1 CPU"):
        fit_slots({"CPU": 2.0}, 2, 0.0, nodes=two)
    assert fit_slots({"CPU": 3.0}, 1.0, 0.0, nodes=[{"CPU": 1.5}, {"CPU": 1.5}]) == 2  # counted node by node
    assert fit_slots({"CPU": 4.0, "GPU": 2.0}, 1.0, 0.5, nodes=[{"CPU": 2.0, "GPU": 2.0}, {"CPU": 2.0}]) == 2
    # a data-parallel child's workers are placed apart: each must fit a node, the child need not
    four = [{"CPU": 2.0}] * 4
    assert fit_slots({"CPU": 8.0}, 4.0, 0.0, nodes=four, worker=(2.0, 0.0)) == 2
    with pytest.raises(ExecutorError, match=r"one worker of a child needs 3 CPU and 0 GPU on one node"):
        fit_slots({"CPU": 8.0}, 6.0, 0.0, nodes=four, worker=(3.0, 0.0))
    # 3 CPUs in all hold two workers of 1.5, but only one fits a node: the child waited forever
    with pytest.raises(ExecutorError, match=r"a child's 2 workers need 1.5 CPU and 0 GPU each, each on one node, and"):
        fit_slots({"CPU": 3.0}, 3.0, 0.0, nodes=[{"CPU": 1.0}, {"CPU": 2.0}], worker=(1.5, 0.0))
    assert fit_slots({"CPU": 6.0}, 3.0, 0.0, nodes=[{"CPU": 3.0}, {"CPU": 3.0}], worker=(1.5, 0.0)) == 2
    assert fit_slots({"CPU": 5.0}, 3.0, 0.0, nodes=[{"CPU": 2.0}, {"CPU": 3.0}], worker=(1.5, 0.0)) == 1  # 1 + 2
    # whole children, node by node: 6 CPUs hold two children of 3, but three 2-CPU nodes hold 3 workers of 1.5
    assert fit_slots({"CPU": 6.0}, 3.0, 0.0, nodes=[{"CPU": 2.0}] * 3, worker=(1.5, 0.0)) == 1
    assert fit_slots({"CPU": 8.0, "GPU": 2.0}, 0.0, 2.0, nodes=[{"CPU": 4.0, "GPU": 1.0}] * 2, worker=(0.0, 1.0)) == 1
    with pytest.raises(ExecutorError, match=r"lower --gpus-per-child or --workers-per-child"):
        fit_slots({"CPU": 8.0, "GPU": 2.0}, 0.0, 2.0, nodes=[{"CPU": 8.0, "GPU": 1.0}], worker=(0.0, 1.0))


class Counted(Executor):
    """An executor that only reports counts: what `to_submit` reads."""

    def __init__(self, pending: int, capacity: int) -> None:
        self._pending, self._capacity = pending, capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def pending(self) -> int:
        return self._pending

    def submit(self, space: SearchSpace, task: ChildTask) -> None:
        raise AssertionError("not used")

    def next_result(self) -> tuple[ChildTask, Result]:
        raise AssertionError("not used")

    def cancel_all(self) -> list[ChildTask]:
        return []

    def shutdown(self) -> None:
        pass


class CountedPool(Counted):
    """A worker pool with queues behind its workers (``depth``) and ``idle`` workers."""

    def __init__(self, pending: int, capacity: int, depth: int, idle: int = 0) -> None:
        super().__init__(pending, capacity)
        self.depth, self.idle = depth, idle

    def prepare(self, space: SearchSpace) -> None:
        pass

    def finishing(self) -> None:
        pass


def test_a_search_loop_feeds_idle_workers_at_once_and_their_queues_in_batches() -> None:
    assert to_submit(CountedPool(0, 8, 16), left=100) == 8  # every worker first
    assert to_submit(CountedPool(8, 8, 16), left=100) == 8  # then the queues behind them
    assert to_submit(CountedPool(15, 8, 16), left=100) == 0  # one free place: wait for a batch of 8 // 4
    assert to_submit(CountedPool(14, 8, 16), left=100) == 2
    assert to_submit(CountedPool(15, 8, 16, idle=1), left=100) == 1  # a worker with nothing to run: at once
    assert to_submit(CountedPool(15, 8, 16), left=1) == 1  # the last child does not wait for a batch
    assert to_submit(CountedPool(5, 8, 16), left=2) == 2
    assert to_submit(CountedPool(16, 8, 16, idle=3), left=100) == 0  # nothing free (idle counts lag)


def test_an_executor_that_is_no_pool_is_fed_up_to_its_capacity() -> None:
    assert to_submit(Counted(0, 1), left=10) == 1
    assert to_submit(Counted(1, 1), left=10) == 0
    assert to_submit(Counted(2, 4), left=10) == 2
