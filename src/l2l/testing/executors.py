"""The executor contract: what every executor does, as pytest tests that an executor's own test file inherits.

Subclass `ExecutorContract` in a test module (a ``Test*`` name, so pytest collects it) and override
its ``executor`` fixture to yield a fresh executor::

    from collections.abc import Iterator

    import pytest

    from l2l.runs.executors import Executor
    from l2l.testing.executors import ExecutorContract


    class TestMyExecutor(ExecutorContract):
        @pytest.fixture
        def executor(self) -> Iterator[Executor]:
            executor = MyExecutor()
            yield executor
            executor.shutdown()

An executor with workers (processes, actors) also overrides `ExecutorContract.assert_stopped` to
check that none is left after `shutdown`. The children come from `ContractSpace`, which needs
nothing but this module (workers must be able to import it, as they import any space).
This module imports pytest: it is for tests, never imported by l2l itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from l2l.runs.executors import ChildTask, Executor, ExecutorError
from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, Spec

CHOICES = ("ok", "raise", "nan", "inf", "slow")


class ContractSpace(SearchSpace):
    """Children that behave as the contract needs: 'ok' returns, 'raise' raises, 'nan' and 'inf' diverge,
    'slow' sleeps ``slow_seconds`` (long enough to still be running when it is cancelled)."""

    name = "executor_contract"

    def __init__(self, slow_seconds: float = 60.0) -> None:
        super().__init__(slow_seconds=slow_seconds)
        self.slow_seconds = slow_seconds

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical("x", list(CHOICES))]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        x = spec["x"]
        if x == "raise":
            raise RuntimeError(f"child {ctx.child} raised on purpose")
        if x == "slow":
            time.sleep(self.slow_seconds)
        reward = {"nan": float("nan"), "inf": float("inf")}.get(str(x), 1.0)
        return Result(reward=reward, val_acc=reward, info={"child": ctx.child})


def child(space: SearchSpace, number: int, choice: str) -> ChildTask:
    """Child ``number`` of a `ContractSpace`, doing ``choice`` (one of `CHOICES`)."""
    if choice not in CHOICES:
        raise ValueError(f"unknown contract child {choice!r}; known: {', '.join(CHOICES)}")
    return ChildTask(number, space.decode((CHOICES.index(choice),)), Context(child=number, seed=number))


def collect(executor: Executor, n: int) -> dict[int, tuple[ChildTask, Result]]:
    """Exactly ``n`` results from ``executor``, by child number."""
    results: list[tuple[ChildTask, Result]] = []
    while len(results) < n:
        results.extend(executor.next_results())
    assert len(results) == n, f"asked for {n} results, got {len(results)}"
    by_number = {task.number: (task, result) for task, result in results}
    assert len(by_number) == n, f"a child came back twice: {sorted(t.number for t, _ in results)}"
    return by_number


class ExecutorContract:
    """Tests every executor passes; subclass it and override the ``executor`` fixture (and `assert_stopped`)."""

    @pytest.fixture
    def executor(self) -> Iterator[Executor]:
        """A fresh executor for one test, shut down after it; every subclass overrides this."""
        raise NotImplementedError("override the `executor` fixture of ExecutorContract to yield a fresh executor")

    @pytest.fixture
    def space(self) -> SearchSpace:
        """The space the contract's children come from."""
        return ContractSpace()

    def assert_stopped(self, executor: Executor) -> None:
        """Nothing of ``executor`` runs after `Executor.shutdown`; executors with workers extend this."""
        assert executor.pending == 0

    def test_results_carry_the_child_they_belong_to(self, executor: Executor, space: SearchSpace) -> None:
        tasks = {n: child(space, n, "ok") for n in (7, 3, 11)}
        for task in tasks.values():
            executor.submit(space, task)
        results = collect(executor, 3)
        assert sorted(results) == [3, 7, 11]
        for number, (task, result) in results.items():
            assert task == tasks[number]  # the task as submitted: number, spec and context
            assert result.ok and result.info["child"] == number  # and the result its own child produced

    def test_a_child_that_raises_becomes_a_failed_result_with_its_reason(
        self, executor: Executor, space: SearchSpace
    ) -> None:
        executor.submit(space, child(space, 0, "raise"))
        executor.submit(space, child(space, 1, "ok"))
        results = collect(executor, 2)
        failed = results[0][1]
        assert failed.status == "failed" and not failed.ok
        assert "RuntimeError: child 0 raised on purpose" in (failed.error or "")
        assert results[1][1].ok
        executor.submit(space, child(space, 2, "ok"))  # the executor keeps going
        assert collect(executor, 1)[2][1].ok

    def test_a_nan_or_diverging_child_becomes_a_failed_result(self, executor: Executor, space: SearchSpace) -> None:
        executor.submit(space, child(space, 0, "nan"))
        executor.submit(space, child(space, 1, "inf"))
        results = collect(executor, 2)
        assert [(r.status, r.error) for _, r in (results[0], results[1])] == [
            ("failed", "reward is nan"),
            ("failed", "reward is inf"),
        ]

    def test_pending_counts_children_submitted_and_not_yet_collected(
        self, executor: Executor, space: SearchSpace
    ) -> None:
        assert executor.pending == 0
        for n in range(3):
            executor.submit(space, child(space, n, "ok"))
        assert executor.pending == 3
        task, _ = executor.next_result()
        assert executor.pending == 2
        rest = collect(executor, 2)
        assert sorted([task.number, *rest]) == [0, 1, 2] and executor.pending == 0
        with pytest.raises(ExecutorError):
            executor.next_result()  # nothing pending: an error, not a wait forever

    def test_cancel_all_drops_every_pending_child(self, executor: Executor, space: SearchSpace) -> None:
        for n in range(3):
            executor.submit(space, child(space, n, "slow"))
        assert sorted(t.number for t in executor.cancel_all()) == [0, 1, 2]
        assert executor.pending == 0
        assert executor.cancel_all() == []
        executor.submit(space, child(space, 3, "ok"))  # the executor takes children again
        assert executor.pending == 1
        assert collect(executor, 1)[3][1].ok

    def test_shutdown_drops_what_is_pending_and_twice_is_harmless(self, executor: Executor, space: SearchSpace) -> None:
        executor.submit(space, child(space, 0, "ok"))
        assert collect(executor, 1)[0][1].ok
        for n in (1, 2):
            executor.submit(space, child(space, n, "slow"))
        executor.shutdown()
        executor.shutdown()
        self.assert_stopped(executor)
