"""The search loop: records, failures, determinism, Ctrl-C, resume and kill -9 of the driver."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from l2l.controllers import Proposal
from l2l.runs.executors import ChildTask, LocalExecutor, WorkerPool
from l2l.runs.search import Search, SearchConfig, SearchError, SearchInterrupted
from l2l.runs.store import Store
from l2l.search_spaces import Result, SearchSpace
from tests.conftest import PLUGINS

FLAKY = f"{PLUGINS / 'spaces.py'}:Flaky"
SLOW = f"{PLUGINS / 'spaces.py'}:Slow"


def summary(store: Store, run: int) -> list[tuple[int, tuple[int, ...], str, float | None, float | None]]:
    return [(c.number, c.tokens, c.status, c.reward, c.controller_reward) for c in store.children(run)]


def test_search_records_every_child_and_update(store: Store) -> None:
    config = SearchConfig(space="toy", children=23, batch=5, seed=1)
    run = Search.start(store, config).run()
    children = store.children(run)
    assert [c.number for c in children] == list(range(23))
    assert all(c.status == "done" and c.reward is not None for c in children)
    assert [c.batch for c in children] == [i // 5 for i in range(23)]
    updates = store.updates(run)
    assert [u.n_children for u in updates] == [5, 5, 5, 5, 3]
    assert [c.policy_version for c in children] == [i // 5 for i in range(23)]
    assert store.get_run(run).status == "done"
    assert store.latest_checkpoint(run).next_child == 23  # type: ignore[union-attr]


def test_same_seed_gives_the_same_run(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    config = SearchConfig(space="toy", children=30, batch=6, seed=4, space_options={"noise": 0.05})
    a = Search.start(store, config).run()
    b = Search.start(store, config).run()
    c = Search.start(
        store, SearchConfig(space="toy", children=30, batch=6, seed=5, space_options={"noise": 0.05})
    ).run()
    assert summary(store, a) == summary(store, b)
    assert summary(store, a) != summary(store, c)


def test_failing_children_are_recorded_and_the_search_goes_on(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    run = Search.start(store, SearchConfig(space=FLAKY, strategy="random", children=40, batch=8, seed=0)).run()
    children = store.children(run)
    assert len(children) == 40 and store.get_run(run).status == "done"
    by_choice: dict[str, list] = {}
    for c in children:
        by_choice.setdefault(c.spec["values"][0][1], []).append(c)
    assert {c.status for c in by_choice["boom"]} == {"failed"}
    assert "RuntimeError: child exploded on purpose" in by_choice["boom"][0].error
    assert "Traceback" in by_choice["boom"][0].error
    assert {c.error for c in by_choice["nan"]} == {"reward is nan"}
    assert {c.error for c in by_choice["bad"]} == {"evaluate returned NoneType, not a Result"}
    assert {c.status for c in by_choice["good"] + by_choice["ok"]} == {"done"}
    # the failure reward is the worst reward seen so far (0.5 here), never the missing reward
    failed = [c for c in children if c.status == "failed"]
    assert failed and all(c.reward is None for c in failed)
    assert {c.controller_reward for c in failed if c.number > children[0].number} <= {0.5, SearchSpace.failure_reward}


def test_explicit_failure_reward(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'f.db'}")
    config = SearchConfig(space=FLAKY, strategy="random", children=20, batch=5, seed=0, failure_reward=-1.0)
    run = Search.start(store, config).run()
    assert {c.controller_reward for c in store.children(run) if c.status == "failed"} == {-1.0}


TRANSFORMS = """
def boom(metrics):
    return metrics["cost_flops"]  # toy reports no cost: a KeyError

def nan(metrics):
    return float("nan")
"""


def test_a_reward_transform_that_raises_is_one_error_and_one_that_gives_nan_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transform's exception was a traceback; a NaN became the failure reward without a word."""
    from l2l.runs.search import NoticeEvent

    (tmp_path / "my_transforms.py").write_text(TRANSFORMS)
    monkeypatch.syspath_prepend(str(tmp_path))
    store = Store(f"sqlite:///{tmp_path / 't.db'}")

    def config(name: str) -> SearchConfig:
        return SearchConfig(space="toy", strategy="random", children=8, batch=4, controller={"reward_transform": name})

    search = Search.start(store, config("my_transforms:boom"))
    with pytest.raises(SearchError, match=re.escape("reward transform 'my_transforms:boom' failed: KeyError: 'cost_")):
        search.run()
    assert store.get_run(search.run_id).status == "failed"  # resumable once the transform is fixed
    said: list[str] = []

    def listener(event: object) -> None:
        if isinstance(event, NoticeEvent):
            said.append(event.text)

    run = Search.start(store, config("my_transforms:nan"), listener=listener).run()
    assert {c.controller_reward for c in store.children(run)} == {0.0}  # the space's failure reward, as before
    assert said == ["reward transform 'my_transforms:nan' gave nan for a finished child: it gets the failure reward"]


class SometimesCostly(SearchSpace):
    """Declares a flops cost and leaves it out of one architecture's results."""

    name = "sometimes_costly"
    cost_metrics = ("params", "flops")

    def decisions(self) -> list[Any]:
        from l2l.search_spaces import Decision

        return [Decision.categorical("x", [0, 1, 2, 3])]

    def evaluate(self, spec: Any, ctx: Any) -> Result:
        x = int(str(spec["x"]))
        cost = {"params": 10.0 * (x + 1)} | ({} if x == 3 else {"flops": 100.0 * (x + 1)})
        return Result(reward=0.5 + x / 10, val_acc=0.5 + x / 10, cost=cost)


def test_a_child_without_the_cost_its_reward_transform_reads_fails_and_the_search_goes_on(tmp_path: Path) -> None:
    """It stopped the run ("mnas reward needs the cost 'flops'"), naming no child, its training thrown away."""
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    config = SearchConfig(
        space=f"{__file__}:SometimesCostly",
        strategy="random",
        children=12,
        batch=4,
        seed=0,
        controller={"reward_transform": "mnas(flops,200,-0.07)"},
    )
    run = Search.start(store, config).run()
    assert store.get_run(run).status == "done"
    children = store.children(run)
    lacking = [c for c in children if c.spec["values"][0][1] == 3]
    assert len(children) == 12 and lacking and {c.status for c in lacking} == {"failed"}
    assert lacking[0].error == (
        "its result lacks the cost 'flops' that reward transform 'mnas(flops,200,-0.07)' reads (space "
        "'sometimes_costly'; this child reported params)"
    )
    assert {c.status for c in children if c not in lacking} == {"done"}


class InterruptingExecutor(LocalExecutor):
    """Raises KeyboardInterrupt (as Ctrl-C would) when child ``at`` is about to run."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at

    def next_result(self) -> tuple[ChildTask, Result]:
        if self._queue and self._queue[0][1].number == self.at:
            raise KeyboardInterrupt
        return super().next_result()


class ImpatientExecutor(InterruptingExecutor):
    """A user who presses Ctrl-C again while the search stops (its workers' cancel), or once as the executor
    shuts down after the last child."""

    def __init__(self, at: int) -> None:
        super().__init__(at)
        self.calls: list[str] = []

    def cancel_all(self) -> list[ChildTask]:
        self.calls.append("cancel_all")
        raise KeyboardInterrupt

    def shutdown(self) -> None:
        self.calls.append("shutdown")
        raise KeyboardInterrupt


def test_a_second_ctrl_c_or_one_as_the_run_ends_leaves_no_run_looking_alive(store: Store) -> None:
    config = SearchConfig(space="toy", children=8, batch=4, seed=1)
    impatient = ImpatientExecutor(at=5)
    twice = Search.start(store, config, executor=impatient)
    with pytest.raises(SearchInterrupted):
        twice.run()
    assert impatient.calls == ["cancel_all", "shutdown"]  # a Ctrl-C in the one does not skip the other
    counts = store.count_children(twice.run_id)
    assert store.get_run(twice.run_id).status == "interrupted" and counts.get("running", 0) == 0
    at_the_end = Search.start(store, config, executor=ImpatientExecutor(at=99))
    assert at_the_end.run() == at_the_end.run_id
    assert store.get_run(at_the_end.run_id).status == "done"


def test_ctrl_c_leaves_a_resumable_run_identical_to_an_uninterrupted_one(store: Store) -> None:
    config = SearchConfig(space="toy", children=25, batch=4, seed=9, space_options={"noise": 0.1})
    check_interrupt_and_resume(store, config)


@pytest.mark.parametrize("strategy", ["ppo", "random", "evolution", "tpe"])
def test_every_strategy_resumes_identically(tmp_path: Path, strategy: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    config = SearchConfig(space="toy", strategy=strategy, children=25, batch=4, seed=3, space_options={"noise": 0.1})
    check_interrupt_and_resume(store, config)


def check_interrupt_and_resume(store: Store, config: SearchConfig, at: int = 13) -> None:
    """Interrupt at child ``at`` (the second of a batch of 4), resume, and compare child for child with an
    uninterrupted run."""
    reference = Search.start(store, config).run()

    search = Search.start(store, config, executor=InterruptingExecutor(at=at))
    with pytest.raises(
        SearchInterrupted, match=f"run {search.run_id} interrupted; continue it with: l2l search --resume"
    ):
        search.run()
    run = search.run_id
    assert store.get_run(run).status == "interrupted"
    counts = store.count_children(run)
    assert counts["done"] == at and counts["queued"] == 3 and counts["running"] == 0

    resumed = Search.resume(store, run)
    assert resumed.requeued == 3  # what `l2l search --resume` reports as re-queued: the 3 to run again
    resumed.run()
    assert store.get_run(run).status == "done"
    assert summary(store, run) == summary(store, reference)
    assert [u.policy_version for u in store.updates(run)] == list(range(1, 8))
    with pytest.raises(SearchError, match="already done"):
        Search.resume(store, run)


def test_resume_detects_a_store_that_disagrees_with_the_checkpoint(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    search = Search.start(
        store, SearchConfig(space="toy", children=10, batch=5, seed=0), executor=InterruptingExecutor(7)
    )
    with pytest.raises(SearchInterrupted):
        search.run()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE children SET tokens = '[0,0,0,0,0,0,0,0,0]' WHERE number = 8")
    with pytest.raises(SearchError, match="child 8 in the store has tokens"):
        Search.resume(store, search.run_id).run()


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from l2l.runs.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=Path(__file__).resolve().parent.parent,
    )


def wait_for_done(store: Store, done: int, timeout: float = 60.0) -> None:
    """Poll the store until the newest run has ``done`` finished children."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        runs = store.list_runs()
        if runs and store.count_children(runs[0].id)["done"] >= done:
            return
        time.sleep(0.05)
    raise AssertionError(f"no run reached {done} finished children in {timeout} s")


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_kill_9_of_the_driver_then_resume_ends_with_exactly_n_children(tmp_path: Path, executor: str) -> None:
    db = tmp_path / "k.db"
    storage = f"sqlite:///{db}"
    marker = tmp_path / "evaluated.txt"
    n = 24
    store = Store(storage)
    proc = _cli(
        "search",
        "--space",
        SLOW,
        "-S",
        "delay=0.15",
        "--children",
        str(n),
        "--batch",
        "5",
        "--seed",
        "2",
        "--storage",
        storage,
        "--executor",
        executor,
        *(["--max-concurrent", "2"] if executor == "ray" else []),
        "-q",
        env={"L2L_TEST_MARKER": str(marker)},
    )
    wait_for_done(store, 8)
    live = store.list_runs()[0]
    # a second driver beside a live one would requeue its children: refused, and nothing of the run changes
    with pytest.raises(SearchError, match=rf"^run {live.id} is still running: its driver, process {proc.pid} on this"):
        Search.resume(store, live.id)
    assert store.get_run(live.id).driver == f"{socket.gethostname()}:{proc.pid}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run = store.list_runs()[0]
    assert run.status == "running"  # the driver had no chance to say anything
    before = store.count_children(run.id)
    assert 8 <= before["done"] < n

    out = _cli("search", "--resume", str(run.id), "--storage", storage, "-q", env={"L2L_TEST_MARKER": str(marker)})
    text, _ = out.communicate(timeout=120)
    assert out.returncode == 0, text
    children = store.children(run.id)
    assert [c.number for c in children] == list(range(n))
    assert all(c.status == "done" for c in children)
    assert store.get_run(run.id).status == "done"
    updates = store.updates(run.id)
    # every reward reached the controller exactly once (async updates may mix batches)
    assert sorted(c for u in updates for c in u.extra["children"]) == list(range(n))
    assert len(updates) == 5
    evaluated = [int(x) for x in marker.read_text().split()]
    # every child ran to completion once, except those in flight at the kill: 1 local; on Ray up to
    # 4, each of the 2 workers running one and holding the next (they may finish before Ray stops them)
    assert sorted(set(evaluated)) == list(range(n))
    assert len(evaluated) - n <= (1 if executor == "local" else 4)


def test_sigterm_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 't.db'}"
    store = Store(storage)
    proc = _cli(
        "search", "--space", SLOW, "-S", "delay=0.1", "--children", "15", "--batch", "5", "--storage", storage, "-q"
    )
    wait_for_done(store, 3)
    proc.send_signal(signal.SIGTERM)
    text, _ = proc.communicate(timeout=30)
    assert proc.returncode == 143, text  # 128 + SIGTERM, as for a command the signal ended
    run = store.list_runs()[0]
    assert "interrupted; continue it with: l2l search --resume" in text
    assert store.get_run(run.id).status == "interrupted"
    assert store.get_run(run.id).error == "stopped by SIGTERM"  # not "interrupted by the user": a scheduler's
    assert store.count_children(run.id)["running"] == 0
    out = _cli("search", "--resume", str(run.id), "--storage", storage, "-q")
    text, _ = out.communicate(timeout=120)
    assert out.returncode == 0, text
    assert [c.number for c in store.children(run.id)] == list(range(15))


class EightWorkers(LocalExecutor):
    """A `WorkerPool` of 8 workers, each with one child queued behind it (children still run here, one per result)."""

    @property
    def capacity(self) -> int:
        return 8

    @property
    def depth(self) -> int:
        return 16

    @property
    def idle(self) -> int:
        return max(0, self.capacity - self.pending)

    def prepare(self, space: SearchSpace) -> None:
        pass

    def finishing(self) -> None:
        pass


def test_async_search_tops_up_the_queues_behind_busy_workers_in_batches(store: Store) -> None:
    config = SearchConfig(space="toy", children=40, batch=8, seed=0, mode="async")
    search = Search.start(store, config, executor=EightWorkers())
    assert isinstance(search.executor, WorkerPool)  # the loop keeps its queues fed
    sizes: list[int] = []
    propose = search.controller.propose

    def counted(n: int) -> list[Proposal]:
        sizes.append(n)
        return propose(n)

    search.controller.propose = counted  # type: ignore[method-assign]
    run = search.run()
    assert [c.number for c in store.children(run)] == list(range(40))
    # every worker first, then the queues behind them; after that, batches of a quarter of the workers
    # (one policy pass for 2 children, not one per result), none while every worker has a child
    assert sizes[:2] == [8, 8] and sum(sizes) == 40
    assert sizes[2:] == [2] * 12


def test_the_workers_are_stopped_even_when_the_store_cannot_record_the_stop(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.runs.store import StoreError

    class Recording(InterruptingExecutor):
        def __init__(self, at: int) -> None:
            super().__init__(at)
            self.calls: list[str] = []

        def cancel_all(self) -> list[ChildTask]:
            self.calls.append("cancel_all")
            return super().cancel_all()

        def shutdown(self) -> None:
            self.calls.append("shutdown")
            super().shutdown()

    executor = Recording(at=3)
    search = Search.start(store, SearchConfig(space="toy", children=6, batch=2, seed=1), executor=executor)

    def gone(*args: object) -> int:
        raise StoreError("store went away")

    monkeypatch.setattr(store, "requeue_unfinished", gone)
    with pytest.raises(StoreError, match="store went away"):
        search.run()
    assert executor.calls == ["cancel_all", "shutdown"]


def test_a_store_that_fails_mid_search_is_named_by_its_first_failure_not_by_the_stop_it_cannot_record(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.runs.store import StoreError

    search = Search.start(store, SearchConfig(space="toy", children=6, batch=2, seed=1, executor="local"))

    def gone(what: str) -> Any:
        def fail(*args: object, **kwargs: object) -> Any:
            raise StoreError(f"store x: {what} failed: connection refused")

        return fail

    monkeypatch.setattr(store, "finish_children", gone("finish children"))
    monkeypatch.setattr(store, "requeue_unfinished", gone("requeue children"))  # recording the stop fails too
    with pytest.raises(StoreError, match="finish children failed"):
        search.run()


def test_a_child_that_calls_sys_exit_is_a_failed_child_and_ctrl_c_still_stops() -> None:
    from l2l.runs.executors import ChildTask, run_child
    from l2l.search_spaces import Context, Decision, SearchSpace, Spec

    class Quits(SearchSpace):
        name = "quits"

        def decisions(self) -> list[Decision]:
            return [Decision.categorical("how", ["exit", "ctrl-c"])]

        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            if spec["how"] == "exit":
                raise SystemExit(2)
            raise KeyboardInterrupt

    space = Quits()
    result = run_child(space, ChildTask(0, space.decode((0,)), Context()))
    assert result.status == "failed" and (result.error or "").startswith("SystemExit: 2")
    with pytest.raises(KeyboardInterrupt):
        run_child(space, ChildTask(1, space.decode((1,)), Context()))


@pytest.mark.parametrize(
    ("settings", "message"),
    [  # each was a TypeError from deep inside (or, for a class, from the file-reference check)
        ({"space": SearchSpace}, "space must be a registered name or 'path/to/file.py:Class', got the class Search"),
        ({"space": "toy", "children": "5"}, "children must be a whole number, got '5'"),
        ({"space": "toy", "seed": 1.5}, "seed must be a whole number, got 1.5"),
        ({"space": "toy", "strategy": None}, "strategy must be text, got None"),
        ({"space": "toy", "budget": 5}, "budget must be a mapping of settings (a dict), got 5"),
        ({"space": "toy", "controller": "a=1"}, "controller must be a mapping of settings (a dict), got 'a=1'"),
        ({"space": "toy", "executor_options": None}, "executor_options must be a mapping of settings (a dict), got"),
        ({"space": "toy", "failure_reward": "low"}, "failure_reward must be a finite number, got 'low'"),
    ],
)
def test_settings_of_the_wrong_type_are_one_clear_error(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(SearchError, match=re.escape(message)):
        SearchConfig(**settings)


def test_a_budget_key_the_space_does_not_read_is_refused_before_any_child(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    config = SearchConfig(space="mlp", strategy="random", children=1, budget={"epoch": 1})  # mlp reads "epochs"
    with pytest.raises(SearchError, match="budget 'epoch': space 'mlp' does not read it; it reads: epochs"):
        Search.start(store, config)
    assert store.list_runs() == []  # nothing recorded
    # a space with exact rewards trains nothing a budget could set (toy ran with any budget, saying nothing)
    config = SearchConfig(space="toy", strategy="random", children=1, budget={"nosuch": 1})
    with pytest.raises(SearchError, match=r"budget 'nosuch': space 'toy' has exact rewards .* and reads no budget"):
        Search.start(store, config)
    # a run name commands could not find it by, through the Python API as through the CLI
    for name, said in [("123", "is a number"), ("-x", "starts with '-'"), ("a\x07b", "control characters")]:
        with pytest.raises(SearchError, match=re.escape(said)):
            Search.start(store, SearchConfig(space="toy", strategy="random", children=1, name=name))
    with pytest.raises(SearchError, match="the run name is 300 characters long; at most 200"):
        Search.start(store, SearchConfig(space="toy", strategy="random", children=1, name="n" * 300))
    from l2l.runs.weight_sharing import WeightSharingSearch

    with pytest.raises(SearchError, match="is a number"):
        WeightSharingSearch.start(store, SearchConfig(space="nb201_cell", weight_sharing={}, name="7"))
    assert store.list_runs() == []


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"epochs": "a"}, "budget 'epochs' must be a whole number >= 1, got 'a'"),
        ({"epochs": 0}, "budget 'epochs' must be a whole number >= 1, got 0"),
        ({"epochs": 2.5}, "budget 'epochs' must be a whole number >= 1, got 2.5"),
        ({"epochs": True}, "budget 'epochs' must be a whole number >= 1, got True"),
        ({"steps": None}, "budget 'steps' must be a whole number >= 1, got None"),
    ],
)
def test_a_budget_value_that_is_no_training_length_is_refused_before_any_child(
    tmp_path: Path, budget: dict[str, object], message: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    space = "rnn_cell" if "steps" in budget else "mlp"
    config = SearchConfig(space=space, strategy="random", children=1, budget=budget)  # every child would fail
    with pytest.raises(SearchError, match=re.escape(message)):
        Search.start(store, config)
    assert store.list_runs() == []
    fine = SearchConfig(space="mlp", strategy="random", children=1, budget={"epochs": 2.0})  # JSON's 2.0 is 2
    assert fine.budget == {"epochs": 2} and isinstance(fine.budget["epochs"], int)  # a pruned child compares to it
    Search.start(store, fine)
    assert len(store.list_runs()) == 1


def test_numpy_integers_are_taken_as_whole_numbers() -> None:
    import numpy as np

    config = SearchConfig(space="toy", children=np.int64(7), seed=np.int32(3))  # type: ignore[arg-type]
    assert config.children == 7 and type(config.children) is int and config.to_json()["seed"] == 3


def test_a_failure_ray_wraps_is_summed_up_by_its_own_cause_without_terminal_colours() -> None:
    """A downpour child failed as "RayTaskError(TypeError): \\x1b[36mray::Replica.run()\\x1b[39m (pid=...)": its
    cause only at the end of the traceback, and escape codes in the one line `runs show` prints."""
    from l2l.runs.executors import ChildTask, run_child
    from l2l.search_spaces import Context, Decision, SearchSpace, Spec

    class TaskError(Exception):  # as Ray raises a remote task's error: its own kept as ``cause``
        def __init__(self, cause: BaseException) -> None:
            super().__init__("\x1b[36mray::Replica.run()\x1b[39m (pid=1, ip=10.0.0.1, actor_id=ab)")
            self.cause = cause

    class Replicated(SearchSpace):
        name = "replicated"

        def decisions(self) -> list[Decision]:
            return [Decision.categorical("x", [1])]

        def evaluate(self, spec: Spec, ctx: Context) -> Result:
            raise TaskError(TypeError("LBFGS.step() missing 1 required positional argument: 'closure'"))

    space = Replicated()
    result = run_child(space, ChildTask(0, space.decode((0,)), Context()))
    assert result.status == "failed" and result.error is not None and "\x1b" not in result.error
    assert result.error.splitlines()[0] == "TypeError: LBFGS.step() missing 1 required positional argument: 'closure'"
    from l2l.runs.executors import failure_summary

    looped = TaskError(ValueError("inner"))
    looped.cause = looped  # a cause that is itself: not followed for ever
    assert failure_summary(looped).startswith("TaskError: ray::Replica.run()")


def test_data_this_machine_cannot_load_is_refused_before_a_run_is_recorded(
    tmp_path: Path, dataset_missing: Callable[[str], None]
) -> None:
    """`-S dataset=cifar10` without torchvision recorded a run, failed its child, then said what to install."""
    dataset_missing("digits")
    store = Store(f"sqlite:///{tmp_path / 'runs.db'}")
    config = SearchConfig(space="mlp", space_options={"dataset": "digits"}, children=1, executor="local")
    with pytest.raises(SearchError, match="space 'mlp': dataset 'digits' needs a package this machine lacks"):
        Search.start(store, config)
    assert store.list_runs() == []
