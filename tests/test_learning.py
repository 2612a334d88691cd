"""Learning tests with fixed seeds on the real `mlp` space (children trained for real on digits)."""

from __future__ import annotations

from pathlib import Path

from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import Store


def quarter_means(store: Store, run: int) -> tuple[float, float, float]:
    r = [c.reward if c.reward is not None else 0.0 for c in store.children(run)]
    q = len(r) // 4
    return sum(r[:q]) / q, sum(r[-q:]) / q, sum(r) / len(r)


def test_reinforce_improves_on_the_real_space_and_beats_random(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'learn.db'}")
    reinforce = Search.start(
        store, SearchConfig(space="mlp", strategy="reinforce", children=100, batch=10, seed=0)
    ).run()
    random = Search.start(store, SearchConfig(space="mlp", strategy="random", children=100, batch=10, seed=0)).run()
    first, last, _ = quarter_means(store, reinforce)
    _, _, random_mean = quarter_means(store, random)
    assert last > first + 0.1, (first, last)
    assert last > random_mean + 0.1, (last, random_mean)
    updates = store.updates(reinforce)
    assert updates[-1].entropy < updates[0].entropy  # the policy commits to what works
