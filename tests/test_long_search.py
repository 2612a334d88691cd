"""Long searches: one lean checkpoint per run, history rebuilt from the children, a bounded surrogate set."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from sqlalchemy import Connection, func, select

from l2l.controllers import ControllerError, Ledger, make_controller
from l2l.controllers.reward_window import RewardWindow
from l2l.runs.models import CheckpointRow
from l2l.runs.search import Search, SearchConfig, SearchInterrupted
from l2l.runs.store import NewChild, Store
from l2l.search_spaces import load_space
from tests.test_search import InterruptingExecutor, summary


def old_rule(pairs: list[tuple[tuple[int, ...], float]], size: int) -> list[tuple[tuple[int, ...], float]]:
    """What `HammingGP.fit` kept of a whole history before `RewardWindow` (the best older, then the latest)."""
    if len(pairs) <= size:
        return pairs
    y = torch.tensor([r for _, r in pairs], dtype=torch.float64)
    latest = list(range(len(pairs) - size // 2, len(pairs)))
    older = torch.argsort(y[: len(pairs) - len(latest)], descending=True, stable=True).tolist()
    return [pairs[i] for i in older[: size - len(latest)] + latest]


@pytest.mark.parametrize("size", [2, 7, 40])
def test_reward_window_keeps_what_the_whole_history_rule_kept(size: int) -> None:
    rng = random.Random(size)
    window = RewardWindow(size, local=3)
    pairs: list[tuple[tuple[int, ...], float]] = []
    for _ in range(150):
        pair = ((rng.randrange(4), rng.randrange(4)), float(rng.randrange(6)))  # many ties and repeats
        pairs.append(pair)
        window.add(*pair)
        tokens, rewards = window.points()
        assert list(zip(tokens, rewards, strict=True)) == old_rule(pairs, size)
        # the screen's neighbourhood: the best sequences by their mean reward (of equal means, the first seen)
        seen = list(dict.fromkeys(t for t, _ in pairs))
        mean = {t: sum(r for u, r in pairs if u == t) / sum(u == t for u, _ in pairs) for t in seen}
        assert window.best() == sorted(seen, key=lambda t: (-mean[t], seen.index(t)))[:3]
    with pytest.raises(ControllerError, match="at least 2 points, got screen_points=1"):
        RewardWindow(1)


def checkpoints(store: Store) -> tuple[int, int]:
    """(checkpoint rows in the store, bytes of the latest)."""
    with store.session_scope() as s:
        rows = s.scalar(select(func.count()).select_from(CheckpointRow))
        size = s.scalar(select(func.max(func.length(CheckpointRow.state))))
    return int(rows or 0), int(size or 0)


def test_a_run_keeps_one_checkpoint_whose_size_does_not_grow(tmp_path: Path) -> None:
    sizes = []
    for children in (30, 90):
        store = Store(f"sqlite:///{tmp_path / f'{children}.db'}")
        ridge = {"screen_gp_from": 1000}  # the ridge ensemble: the same checkpoint, a cheaper fit
        Search.start(store, SearchConfig(space="toy", children=children, batch=4, seed=2, controller=ridge)).run()
        rows, size = checkpoints(store)
        assert rows == 1
        sizes.append(size)
    assert abs(sizes[1] - sizes[0]) < 200, sizes  # a history, or a seen-set, in it would add ~100 bytes a child


def test_resume_past_the_surrogate_window_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """The surrogate's set slides and its kernel settings are kept between choices: a run resumed from the
    lean checkpoint, its history rebuilt from the children, proposes what the uninterrupted run did."""
    settings = {"screen_points": 24, "screen_gp_from": 8, "screen_warmup": 4}
    config = SearchConfig(space="toy", children=56, batch=4, seed=5, controller=settings, space_options={"noise": 0.1})
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    reference = Search.start(store, config).run()
    # the checkpoint after child 39; the fit at 40 rewards keeps the kernel chosen at 36
    search = Search.start(store, config, executor=InterruptingExecutor(at=41))
    with pytest.raises(SearchInterrupted):
        search.run()
    Search.resume(store, search.run_id).run()
    assert summary(store, search.run_id) == summary(store, reference)


def test_a_lean_checkpoint_needs_the_ledger_it_was_written_with() -> None:
    decisions = load_space("toy", {}).decisions()
    settings = {"screen_warmup": 2, "screen_gp_from": 3, "screen_points": 4}
    a = make_controller("reinforce+screen", decisions, 0, settings)
    learned = []
    for i in range(3):
        ps = a.propose(3)
        rewards = [float(i + j) for j in range(3)]
        a.update(ps, rewards)
        learned += [(p.tokens, r) for p, r in zip(ps, rewards, strict=True)]
    lean, full = a.checkpoint_bytes(), a.to_bytes()
    assert len(lean) < len(full)
    b = make_controller("reinforce+screen", decisions, 1, settings)
    b.load_checkpoint(lean, Ledger(proposed=[t for t, _ in learned], learned=learned))
    assert b.state_dict()["gp_hyper"] == a.state_dict()["gp_hyper"] is not None  # the kernel chosen at 6 rewards
    assert b.propose(4) == a.propose(4)
    c = make_controller("reinforce+screen", decisions, 1, settings)
    with pytest.raises(
        ControllerError, match=r"^reinforce\+screen checkpoint had learned from 9 rewards but the ledger"
    ):
        c.load_checkpoint(lean, Ledger(proposed=[t for t, _ in learned], learned=learned[:8]))
    with pytest.raises(ControllerError, match=r"^reinforce checkpoint had proposed 9 distinct sequences but"):
        c.load_checkpoint(lean, Ledger(proposed=[t for t, _ in learned[:5]], learned=learned))


def test_the_long_search_benchmark_runs_tiny(tmp_path: Path) -> None:
    from benchmarks import long_search

    argv = ["--marks", "20,40", "--strategies", "reinforce+screen,evolution", "--ray-children", "0"]
    out = long_search.main([*argv, "--optuna-children", "20", "--out", str(tmp_path / "r.json")])
    rows = {(r["strategy"], r["executor"]): r for r in out["results"]}
    assert set(rows) == {("reinforce+screen", "local"), ("evolution", "local"), ("optuna tpe (RDB)", "in-process")}
    assert set(rows["reinforce+screen", "local"]["ms_per_child"]) == {20, 40}
    assert set(rows["optuna tpe (RDB)", "in-process"]["ms_per_child"]) == {20}
    assert all(r["bytes"] > 0 and r["ms_per_child"][20] > 0 for r in rows.values())
    assert (tmp_path / "r.json").exists()


def drop_since_0006(conn: Connection) -> None:
    """What migrations 0006 (the dashboard's indexes), 0007 (the spaces' measurements, with 0008's decisions) and
    0009 (the store's marks) added, gone from a store made to look older."""
    for index in ("ix_children_run_status_number", "ix_children_run_reward"):
        conn.exec_driver_sql(f"DROP INDEX {index}")
    conn.exec_driver_sql("DROP TABLE space_data")
    conn.exec_driver_sql("DROP TABLE store_marks")


def test_migration_0002_keeps_each_runs_latest_checkpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    runs = [store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="x")]
    runs.append(store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="x"))
    with store.engine.begin() as conn:  # a store as l2l wrote them before: one checkpoint per update
        for run in runs:
            for batch in range(3):
                conn.exec_driver_sql(
                    "INSERT INTO checkpoints (run_id, batch, next_child, state, created_at) "
                    f"VALUES ({run}, {batch}, {batch}, x'00', '2026-01-01')"
                )
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0001'")
        for column in ("driver", "heartbeat_at"):  # added by migration 0003, after this store's time
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.exec_driver_sql("DROP TABLE shared_epochs")  # 0004
        conn.exec_driver_sql("ALTER TABLE children DROP COLUMN node")  # 0005
        drop_since_0006(conn)  # 0006, 0007
    store.close()
    store = Store(url)
    with store.engine.begin() as conn:
        kept = conn.exec_driver_sql("SELECT run_id, batch FROM checkpoints ORDER BY run_id").fetchall()
    assert [tuple(row) for row in kept] == [(runs[0], 2), (runs[1], 2)]


def test_migration_0005_moves_each_childs_node_to_its_column(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="x")
    store.add_children(run, [NewChild(n, 0, (0,), {}, 0.0, 0.0, 0) for n in range(2)], running=True)
    with store.engine.begin() as conn:  # as l2l wrote them before: the node only inside metrics
        conn.exec_driver_sql("""UPDATE children SET metrics = '{"runtime": {"node": "n0de"}}' WHERE number = 0""")
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0004'")
        conn.exec_driver_sql("ALTER TABLE children DROP COLUMN node")
        drop_since_0006(conn)  # 0006, 0007
    store.close()
    store = Store(url)
    assert [c.node for c in store.children(run)] == ["n0de", None]


def test_a_run_of_an_older_l2l_whose_specs_hold_text_values_resumes(tmp_path: Path) -> None:
    """l2l before the typed specs stored each value as text (``["size", "8"]``); a resumed asynchronous run
    ran its re-queued children from those specs and failed ("value '8' of decision 'size' is not one of ...")."""
    import json

    (tmp_path / "sized.py").write_text(
        "from l2l.search_spaces import Decision, Result, SearchSpace\n"
        "class Sized(SearchSpace):\n"
        "    name = 'sized'\n"
        "    def decisions(self):\n"
        "        return [Decision.categorical('size', [8, 16, 32]), Decision.categorical('lr', [0.1, 1.0])]\n"
        "    def evaluate(self, spec, ctx): return Result(reward=spec['size'] * spec['lr'])\n"
    )
    space = f"{tmp_path / 'sized.py'}:Sized"
    config = SearchConfig(space=space, strategy="random", children=6, batch=2, seed=3, executor="local", mode="async")
    store = Store(f"sqlite:///{tmp_path / 'old.db'}")
    search = Search.start(store, config, executor=InterruptingExecutor(at=4))
    with pytest.raises(SearchInterrupted):
        search.run()
    run = search.run_id
    with store.engine.begin() as conn:  # as the older l2l wrote them: every value as text, no decisions kept
        for number, spec in conn.exec_driver_sql(f"SELECT number, spec FROM children WHERE run_id = {run}").all():
            spec = json.loads(spec) if isinstance(spec, str) else spec
            spec["values"] = [[k, str(v)] for k, v in spec["values"]]
            conn.exec_driver_sql("UPDATE children SET spec = ? WHERE number = ?", (json.dumps(spec), number))
        conn.exec_driver_sql("DELETE FROM space_data")
    assert store.count_children(run)["done"] == 4
    Search.resume(store, run).run()
    children = store.children(run)
    assert store.get_run(run).status == "done" and [c.status for c in children] == ["done"] * 6, children[4:]
