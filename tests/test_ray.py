"""The Ray executor on a real Ray instance: parallel children, data shipped once, worker deaths, timeouts, async search.

Where children go and what a death, a timeout or the end of a run means is decided by the Ray-free
scheduler and tested in tests/test_scheduling.py with a fake clock; this file checks that Ray carries
those decisions out, without timing assertions.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from l2l.controllers import STRATEGIES, Proposal
from l2l.runs.executors import ChildTask, ExecutorError, make_executor
from l2l.runs.ray_executor import RayExecutor
from l2l.runs.search import ChildEvent, Search, SearchConfig, SearchInterrupted
from l2l.runs.store import Store
from l2l.search_spaces import Context, load_space
from tests.conftest import PLUGINS

ray = pytest.importorskip("ray")
CRASHY = f"{PLUGINS / 'spaces.py'}:Crashy"


@pytest.fixture(scope="module", autouse=True)
def ray_instance() -> Iterator[None]:
    # a new local instance on free ports, never one that another process started with `ray start`
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _task(space, number: int, x: str) -> ChildTask:  # type: ignore[no-untyped-def]
    return ChildTask(number, space.decode((["ok", "exit", "hang", "fine"].index(x),)), Context(child=number))


def _futures(executor: RayExecutor, *numbers: int) -> list[object]:
    """The Ray refs of the calls running children ``numbers``."""
    return [ref for ref, call in executor._scheduler.calls.items() if call.number in numbers]


def test_children_run_on_every_worker_and_record_where_and_when() -> None:
    space = load_space(CRASHY, {"delay": 0.5})
    executor = RayExecutor(max_concurrent=4)
    assert executor.capacity == 4
    executor.wait_ready(timeout=120)  # all four worker processes are up before the first child
    for n in range(8):
        executor.submit(space, _task(space, n, "ok"))
    results = [executor.next_result() for _ in range(8)]
    assert sorted(t.number for t, _ in results) == list(range(8))
    infos = [{**r.info, **r.runtime} for _, r in results]
    assert all(r.ok for _, r in results)
    assert len({i["pid"] for i in infos}) == 4  # two children on each of the four workers, side by side
    assert all(i["node"] and i["queued"] <= i["started"] <= i["finished"] and i["device"] == "cpu" for i in infos)
    # the space's shared data was built once on the driver and reached every child
    assert space.shared_calls == 1  # type: ignore[attr-defined]
    assert {i["token"] for i in infos} == {"shipped-once"}
    # each worker process set the space up once and kept it for its next children
    assert {i["uses"] for i in infos} == {1}
    assert not any(i["torch_loaded"] for i in infos)  # a space without torch: its workers never loaded it (~1 s)
    executor.shutdown()
    assert ray.is_initialized()  # the executor did not start this instance, so it leaves it running


def test_prepared_workers_fetch_the_space_before_their_first_child() -> None:
    space = load_space(CRASHY, {"delay": 0.1})
    executor = RayExecutor(max_concurrent=2)
    executor.prepare(space)
    executor.prepare(space)  # once per slot and space: no second fetch
    executor.wait_ready(timeout=120)
    assert all(not a.preparing and len(a.holds) == 1 for a in executor._workers.actors.values())
    submitted = time.time()
    for n in range(4):
        executor.submit(space, _task(space, n, "ok"))
    infos = [r.info for _, r in (executor.next_result() for _ in range(4))]
    assert all(i["loaded"] < submitted for i in infos)
    assert {i["uses"] for i in infos} == {1}
    executor.shutdown()


def test_once_a_slot_holds_the_space_its_calls_name_it_by_key_not_by_refs() -> None:
    from l2l.runs.ray_worker import SlotActor

    space = load_space(CRASHY, {"delay": 0.0})
    executor = RayExecutor(max_concurrent=2)
    workers = executor._workers
    actors = list(workers.actors.values())
    assert all(isinstance(workers.space_arg(a, space), list) for a in actors)
    executor.prepare(space)
    executor.wait_ready(timeout=120)
    keys = {workers.space_arg(a, space) for a in actors}
    assert len(keys) == 1 and isinstance(keys.pop(), str)
    for n in range(4):
        executor.submit(space, _task(space, n, "ok"))
    results = [executor.next_result() for _ in range(4)]
    assert all(r.ok for _, r in results) and {r.info["uses"] for _, r in results} == {1}
    executor.shutdown()
    with pytest.raises(ExecutorError, match="holds no space 'abc'"):
        SlotActor().held("abc")  # a key names only a space the worker has loaded


def test_a_slot_runs_the_children_waiting_at_it_one_at_a_time_in_the_order_sent() -> None:
    # one slot holding four children: their calls wait at the actor in threads of their own
    space = load_space(CRASHY, {"delay": 0.2})
    executor = RayExecutor(max_concurrent=1, prefetch=3)
    executor.wait_ready(timeout=120)
    for n in range(4):
        executor.submit(space, _task(space, n, "ok"))
    # all four are at the actor: they finish with the driver looking away, each starting when the one before ends
    assert len(ray.get(_futures(executor, 0, 1, 2, 3), timeout=120)) == 4
    results = [executor.next_result() for _ in range(4)]
    spans = sorted((r.runtime["started"], r.runtime["finished"], t.number) for t, r in results)
    assert [n for _, _, n in spans] == [0, 1, 2, 3]  # in the order they were sent
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans))  # never two at once
    assert len({r.info["pid"] for _, r in results}) == 1
    executor.shutdown()


def test_next_results_returns_every_child_that_has_finished() -> None:
    space = load_space(CRASHY, {"delay": 0.1})
    executor = RayExecutor(max_concurrent=4)
    executor.wait_ready(timeout=120)
    for n in range(3):
        executor.submit(space, _task(space, n, "ok"))
    executor.submit(space, _task(space, 3, "hang"))
    ray.wait(_futures(executor, 0, 1, 2), num_returns=3, timeout=120)  # the three short ones have come back
    results = executor.next_results()  # all three, together, without waiting for 'hang'
    assert sorted(t.number for t, _ in results) == [0, 1, 2] and all(r.ok for _, r in results)
    assert executor.pending == 1
    assert [t.number for t in executor.cancel_all()] == [3]
    executor.shutdown()


def test_a_dying_worker_is_retried_then_failed_and_the_rest_go_on() -> None:
    space = load_space(CRASHY, {"delay": 0.1})
    executor = RayExecutor(max_concurrent=2, max_retries=1)
    for n, x in enumerate(["ok", "exit", "fine"]):
        executor.submit(space, _task(space, n, x))
    results = {t.number: r for t, r in (executor.next_result() for _ in range(3))}
    assert results[0].ok and results[2].ok
    assert results[1].status == "failed" and "died 2 time(s)" in (results[1].error or "")
    executor.shutdown()  # the executor's worker processes hold their CPUs until it is shut down


def test_children_queued_behind_one_that_kills_its_worker_are_not_blamed() -> None:
    space = load_space(CRASHY, {"delay": 0.1})
    executor = RayExecutor(max_concurrent=1, max_retries=0)
    for n, x in enumerate(["exit", "ok", "fine"]):  # 'ok' waits at the worker that 'exit' kills
        executor.submit(space, _task(space, n, x))
    results = {t.number: r for t, r in (executor.next_result() for _ in range(3))}
    assert results[1].ok and results[2].ok
    # with another child queued on the dead worker, 'exit' was not known to be the culprit: it ran
    # once more alone before it was failed
    assert results[0].status == "failed" and "died 2 time(s)" in (results[0].error or "")
    assert executor.pending == 0
    executor.shutdown()


def test_at_the_end_a_child_waiting_behind_a_long_one_gets_a_backup_on_an_idle_worker() -> None:
    space = load_space(CRASHY, {"delay": 0.2})
    executor = RayExecutor(max_concurrent=2)
    executor.wait_ready(timeout=120)
    # 'hang' (60 s) and child 1 start; child 2 waits behind 'hang', child 3 behind child 1
    for n, x in enumerate(["hang", "ok", "ok", "ok"]):
        executor.submit(space, _task(space, n, x))
    executor.finishing()  # no more children: idle workers may run copies of waiting ones
    results = [executor.next_result() for _ in range(3)]
    assert sorted(t.number for t, _ in results) == [1, 2, 3] and all(r.ok for _, r in results)
    assert len({r.info["pid"] for _, r in results}) == 1  # child 2's copy ran on the worker of 1 and 3
    assert executor.pending == 1  # 'hang'; the copy of child 2 behind it is not a pending child
    assert [t.number for t in executor.cancel_all()] == [0]
    executor.shutdown()


def test_child_timeout_cancels_and_fails_the_child() -> None:
    space = load_space(CRASHY, {"delay": 0.1})
    executor = RayExecutor(max_concurrent=2, child_timeout=1.5)
    executor.submit(space, _task(space, 0, "hang"))
    executor.submit(space, _task(space, 1, "ok"))
    results = {t.number: r for t, r in (executor.next_result() for _ in range(2))}
    assert results[1].ok
    assert "ran past --child-timeout 1.5s and was cancelled" in (results[0].error or "")
    # where and when it ran, as a child that finished records it (they were all None: its worker was killed)
    hung, ran = results[0].runtime, results[1].runtime
    assert hung["worker"] and hung["node"] == ran["node"] and hung["device"] == "cpu"
    assert hung["started"] < hung["finished"] and hung["wall_time"] > 1.5
    assert executor.pending == 0
    executor.shutdown()


def test_bad_resources_are_clear_errors() -> None:
    with pytest.raises(ExecutorError, match="asked for, but the Ray cluster has no GPU"):
        make_executor("ray", options={"gpus_per_child": 0.5})
    with pytest.raises(ExecutorError, match="one child needs 64 CPU"):
        make_executor("ray", options={"cpus_per_child": 64})
    with pytest.raises(ExecutorError, match="not both 0"):
        make_executor("ray", options={"cpus_per_child": 0})
    with pytest.raises(ExecutorError, match="need --executor ray"):
        make_executor("local", options={"child_timeout": 3})
    with pytest.raises(ExecutorError, match=r"unknown executor option\(s\) \['workers'\]; known \(Ray's\): "):
        make_executor("ray", options={"workers": 3})
    # a misspelt key under the local executor is named as misspelt, not as needing Ray
    with pytest.raises(ExecutorError, match=r"unknown executor option\(s\) \['max_concurent'\]"):
        make_executor("local", options={"max_concurent": 2})


def test_async_search_keeps_workers_busy_and_feeds_every_reward_once(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    config = SearchConfig(
        space=f"{PLUGINS / 'spaces.py'}:Slow",
        space_options={"delay": 0.2},
        children=20,
        batch=5,
        executor="ray",
        executor_options={"max_concurrent": 4},
    )
    search = Search.start(store, config)
    assert search.config.mode == "async"  # auto: more than one worker
    assert isinstance(search.executor, RayExecutor)
    search.executor.wait_ready(timeout=120)  # every worker up: the first four children go to four of them
    run_id = search.run()
    children = store.children(run_id)
    assert len({c.worker for c in children}) == 4  # children ran side by side on every worker
    assert [c.number for c in children] == list(range(20)) and all(c.status == "done" for c in children)
    updates = store.updates(run_id)
    assert len(updates) == 4
    assert sorted(n for u in updates for n in u.extra["children"]) == list(range(20))
    # children were sampled from several policy versions while others were still running
    assert len({c.policy_version for c in children}) >= 3
    assert store.get_run(run_id).config["mode"] == "async"


def test_stale_children_are_weighted_by_a_truncated_importance_ratio() -> None:
    import torch

    from l2l.controllers import ReinforceController
    from l2l.controllers.policy_gradient import importance_weights
    from l2l.controllers.reinforce_config import build_config
    from l2l.search_spaces import Decision

    c = ReinforceController([Decision.categorical("a", ["x", "y", "z"])], 0, build_config({"max_importance": 1.0}))
    fresh = c.propose(2)
    c.update(fresh, [1.0, 0.0])  # the policy moves on: version 1
    log_prob = c.policy(2, forced=torch.tensor([[0], [1]]))[1].detach()
    old = [Proposal((0,), float(log_prob[0]) + 0.5, 0.0, 0), Proposal((1,), float(log_prob[1]) - 0.5, 0.0, 1)]

    def weights(proposals: list[Proposal], log_prob: torch.Tensor) -> torch.Tensor:
        stale = [p.policy_version != c.policy_version for p in proposals]
        return importance_weights(log_prob, [p.log_prob for p in proposals], stale, c.config.max_importance)

    w = weights(old, log_prob)
    # first: stale, ratio exp(-0.5); second: sampled from the current policy, weight 1 whatever its log-prob
    assert w.tolist() == pytest.approx([float(torch.exp(torch.tensor(-0.5))), 1.0])
    stale_high = [Proposal((0,), float(log_prob[0]) - 2.0, 0.0, 0)]
    assert weights(stale_high, log_prob[:1]).tolist() == [1.0]  # exp(2) truncated at 1


def test_workers_per_child_trains_one_child_on_two_processes_inside_ray() -> None:
    from l2l.search_spaces import Spec

    space = load_space("mlp", {"epochs": 1})
    executor = RayExecutor(workers_per_child=2)
    assert executor.capacity == 2  # 4 CPUs, 2 per child
    spec = space.decode((0, 2, 1, 0, 0, 0, 0, 0, 2))
    assert isinstance(spec, Spec)
    executor.submit(space, ChildTask(0, spec, Context(seed=1)))
    _, result = executor.next_result()
    assert result.ok, result.error
    assert result.runtime["workers_per_child"] == 2 and result.runtime["backend"] == "gloo"
    executor.shutdown()


def test_sync_mode_on_ray_reproduces_the_local_executor_child_for_child(tmp_path: Path) -> None:
    runs: dict[str, list[tuple[object, ...]]] = {}
    for executor, options in (("local", {}), ("ray", {"max_concurrent": 4})):
        store = Store(f"sqlite:///{tmp_path / f'{executor}.db'}")
        config = SearchConfig(
            space="toy", children=14, batch=4, seed=7, executor=executor,
            executor_options=options, mode="sync",
        )  # fmt: skip
        run_id = Search.start(store, config).run()
        runs[executor] = [(c.number, c.tokens, c.reward, c.controller_reward) for c in store.children(run_id)]
        runs[executor + " updates"] = [(u.policy_version, u.mean_reward) for u in store.updates(run_id)]
    assert runs["ray"] == runs["local"] and len(runs["local"]) == 14
    assert runs["ray updates"] == runs["local updates"]


# every strategy (gp included: with 6 children its sampler is still in its random start-up trials, and the
# controller contract runs it fitted, with results in any order and grouping)
MATRIX = [*STRATEGIES, "reinforce+screen"]


# every executor in every mode: the local executor and Ray, each synchronously and asynchronously (on Ray
# results come back out of order); each Ray leg starts its workers twice, which is most of this file's time
LEGS = [("local", "sync"), ("local", "async"), ("ray", "sync"), ("ray", "async")]


@pytest.mark.parametrize(("executor", "mode"), LEGS)
@pytest.mark.parametrize("strategy", MATRIX)
def test_every_strategy_on_every_executor_in_every_mode_runs_and_resumes(
    tmp_path: Path, strategy: str, executor: str, mode: str
) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    options = {"max_concurrent": 2} if executor == "ray" else {}
    config = SearchConfig(
        space="toy", strategy=strategy, children=6, batch=2, seed=1, executor=executor,
        executor_options=options, mode=mode,
    )  # fmt: skip
    finished: list[int] = []

    def stop_after_three(event: object) -> None:  # Ctrl-C in the middle of the run
        if isinstance(event, ChildEvent):
            finished.append(event.number)
            if len(finished) == 3:
                raise KeyboardInterrupt

    search = Search.start(store, config, listener=stop_after_three)
    with pytest.raises(SearchInterrupted):
        search.run()
    Search.resume(store, search.run_id).run()
    children = store.children(search.run_id)
    assert [c.number for c in children] == list(range(6))
    assert all(c.status == "done" for c in children), [c.error for c in children]
    updates = store.updates(search.run_id)
    assert [u.policy_version for u in updates] == list(range(1, len(updates) + 1))
    assert sorted(n for u in updates for n in u.extra["children"]) == list(range(6))  # each reward fed once


def test_a_search_whose_workers_cannot_start_leaves_no_run_and_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.runs.cli import main

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    argv = ["l2l", "search", "--space", "mlp", "-S", "dataset=cifar10", "-n", "2", "--quiet", "--storage", db]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("L2L_CIFAR10_ROOT", str(tmp_path / "no-cifar"))  # a known dataset whose files are not here
    with pytest.raises(SystemExit) as exit_info:
        main()  # the data fails to load on the driver, which ships it to the workers: before a run is recorded
    assert exit_info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: space 'mlp': dataset 'cifar10' "), lines
    assert Store(db).list_runs() == []  # no "failed 0/2" run left behind (it was recorded, then removed)


def test_a_child_of_several_threads_reserves_as_many_cpus_unless_told_otherwise(tmp_path: Path) -> None:
    """Two 2-thread children ran side by side on a 2-CPU Ray, each reserving one CPU: ten times slower."""
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    capacities = []
    for threads, options in ((1, {}), (2, {}), (2, {"cpus_per_child": 1})):
        config = SearchConfig(
            space="toy", strategy="random", children=2, executor="ray", threads_per_child=threads,
            executor_options={"max_concurrent": 8, **options},
        )  # fmt: skip
        search = Search.start(store, config)
        capacities.append(search.executor.capacity)
        search.executor.shutdown()
    assert capacities == [4, 2, 4]  # this instance has 4 CPUs


def test_the_ray_token_file_is_made_private_to_its_owner(tmp_path: Path) -> None:
    """An embedded search left ~/.ray/auth_token as Ray wrote it, readable by every user of the machine."""
    from l2l.runs.ray_cluster import private_token

    token = tmp_path / "auth_token"
    token.write_text("secret")
    token.chmod(0o644)
    assert private_token(token) and token.stat().st_mode & 0o777 == 0o600
    assert not private_token(token)  # private already: left as it is
    assert not private_token(tmp_path / "none")  # no token: nothing to do


def test_a_refused_token_is_said_with_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """It always said to copy the token to ~/.ray/auth_token, when RAY_AUTH_TOKEN had given it."""
    from l2l.runs.ray_cluster import token_source

    for variable in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(variable, raising=False)
    assert token_source() == "from ~/.ray/auth_token"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/secrets/token")
    assert token_source() == "from $RAY_AUTH_TOKEN_PATH"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    assert token_source() == "from $RAY_AUTH_TOKEN"
