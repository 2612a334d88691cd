"""Noisy rewards: evaluations grouped by architecture, re-evaluation, and the final pick by estimated mean."""

from __future__ import annotations

import math
import random
import signal
from collections import Counter
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from l2l.controllers import Proposal, RandomController, ScreenedController, UpdateStats, make_controller
from l2l.controllers.noise import Evaluations, chance_better
from l2l.controllers.reeval import REEVALUATION, ReevaluatedController
from l2l.runs.cli import app
from l2l.runs.estimates import ArchKeys, rank
from l2l.runs.search import Search, SearchConfig
from l2l.runs.store import NewChild, Store
from l2l.search_spaces import load_space
from l2l.search_spaces.nb201 import canonical_cells
from l2l.testing.controllers import DECISIONS
from tests.conftest import PLUGINS
from tests.test_search import _cli, wait_for_done

NOISY_SLOW = f"{PLUGINS / 'spaces.py'}:NoisySlow"


def test_evaluations_pool_the_noise_and_shrink_a_lone_lucky_reward() -> None:
    rng = random.Random(0)
    truth = {(i,): 0.5 + 0.025 * i for i in range(12)}  # 0.500 .. 0.775
    pairs: list[tuple[Hashable, float]] = [(k, v + rng.gauss(0, 0.05)) for k, v in truth.items() for _ in range(4)]
    pairs.append((("lucky",), 0.86))  # seen once, above every mean
    ev = Evaluations.of(pairs)
    groups = {k: [r for kk, r in pairs if kk == k] for k in truth}
    pooled = math.sqrt(sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in groups.values()) / (48 - 12))
    assert ev.noise_df == 36 and ev.noise_sd() == pytest.approx(pooled)
    top = ev.estimates()
    lucky = next(e for e in top if e.key == ("lucky",))
    assert lucky.n == 1 and lucky.mean == 0.86 and lucky.estimate < 0.86  # pulled towards the crowd
    many = next(e for e in top if e.key == (11,))
    assert abs(many.estimate - many.mean) < 0.86 - lucky.estimate  # four evaluations are pulled less
    assert lucky.sd is not None and many.sd is not None and lucky.sd > many.sd
    assert [e.estimate for e in top] == sorted((e.estimate for e in top), reverse=True)
    # without enough architectures to see how their means spread, nothing is shrunk
    few = Evaluations.of([(k, r) for k, r in pairs if k in ((0,), (1,), ("lucky",))]).estimates()
    assert all(e.estimate == e.mean for e in few)
    for limit in (1, 2, 5, 9):  # the few best, found without sorting, are the head of the full ranking
        assert ev.estimates(limit=limit) == top[:limit]
    # a state round trip gives back the same estimates, bit for bit
    again = Evaluations.from_state(ev.state())
    assert again.estimates() == top and again.noise_sd() == ev.noise_sd()


def test_no_repeats_means_unknown_noise_and_exact_means_none() -> None:
    ev = Evaluations.of([((1,), 0.5), ((2,), 0.7), ((3,), 0.6)])
    assert ev.noise_sd() is None
    first = ev.estimates()[0]
    assert first.key == (2,) and first.estimate == 0.7 and first.sd is None and first.interval() is None
    exact = ev.estimates(noise_sd=0.0)[0]
    assert exact.sd == 0.0 and chance_better(exact, ev.estimates(noise_sd=0.0)[1]) == 1.0


class Spy(RandomController):
    """Random search that records what it learned from."""

    def __init__(self, decisions: Sequence, seed: int) -> None:  # type: ignore[type-arg]
        super().__init__(decisions, seed)
        self.learned: list[tuple[tuple[int, ...], float]] = []

    def update(self, proposals: Sequence[Proposal], rewards: Sequence[float]) -> UpdateStats:
        self.learned += [(p.tokens, float(r)) for p, r in zip(proposals, rewards, strict=True)]
        return super().update(proposals, rewards)


def noisy(tokens: Sequence[int], rng: random.Random, sd: float = 0.3) -> float:
    return sum(tokens) / 10 + rng.gauss(0, sd)


def test_reevaluation_races_the_top_and_the_strategy_learns_means() -> None:
    spy = Spy(DECISIONS, 0)
    c = ReevaluatedController(spy)
    rng = random.Random(1)
    again = 0
    seen: dict[tuple[int, ...], list[float]] = {}  # every reward of each architecture so far
    expected: list[float] = []  # what the strategy should learn: its proposals' architecture means
    for batch in range(30):
        proposals = c.propose(4)
        for i, p in enumerate(proposals):
            if p.policy_version == REEVALUATION:
                again += 1
                assert c.evaluations.count(c.key(p.tokens)) >= 1, "only an evaluated architecture is re-evaluated"
                assert again <= 0.15 * (4 * batch + i + 1), "at any point, within reeval_share of the proposals"
        rewards = [noisy(p.tokens, rng) for p in proposals]
        for p, r in zip(proposals, rewards, strict=True):
            seen.setdefault(c.key(p.tokens), []).append(r)
        own = [p for p in proposals if p.policy_version != REEVALUATION]
        expected += [sum(seen[c.key(p.tokens)]) / len(seen[c.key(p.tokens)]) for p in own]
        c.update(proposals, rewards)
    assert [r for _, r in spy.learned] == pytest.approx(expected)
    assert 0 < again <= 0.15 * 120  # within reeval_share of the proposals
    assert c.evaluations.total == 120 and len(spy.learned) == 120 - again
    # the strategy's reward for each of its proposals is its architecture's mean at that time; for an
    # architecture it proposed once and that was never re-evaluated, that is its one reward
    counts = {k: c.evaluations.count(k) for k in {c.key(t) for t, _ in spy.learned}}
    assert any(n > 1 for n in counts.values())
    top = c.evaluations.estimates(limit=2)
    assert top[0].n > 1, "the incumbent was evaluated more than once"


@pytest.mark.parametrize("challengers, chosen", [(1, "a"), (2, "c")])
def test_the_top_races_the_challenger_with_the_highest_upper_bound(challengers: int, chosen: str) -> None:
    """a and b are measured six times each, c once: with the runner-up alone as challenger (1, as before) the
    top races b and, their sds tied, is itself evaluated again; with two challengers, c's upper bound is
    the highest, and c is the less certain of the pair (LUCB)."""
    c = make_controller("random+reeval", DECISIONS, 0, settings={"reeval_challengers": challengers})
    assert isinstance(c, ReevaluatedController)
    a, b, third = (tuple(t) for t in c.draw(3))
    assert len({a, b, third}) == 3
    wiggle = [0.03, -0.03, 0.02, -0.02, 0.01, -0.01]  # noise sd 0.024: a's and b's sds 0.01, c's 0.024
    first = [Proposal(a, 0.0, 0.0, 0), Proposal(b, 0.0, 0.0, 0), Proposal(third, 0.0, 0.0, 0)]
    c.update(first, [0.80 + wiggle[0], 0.79 + wiggle[0], 0.785])
    repeats = [Proposal(t, 0.0, 0.0, REEVALUATION) for t in (a, b) for _ in range(5)]
    c.update(repeats, [m + w for m in (0.80, 0.79) for w in wiggle[1:]])
    estimates = {e.key: e for e in c.evaluations.estimates()}
    assert [estimates[k].n for k in (a, b, third)] == [6, 6, 1]
    c.note_proposed([Proposal(tuple(t), 0.0, 0.0, 0) for t in c.draw(20)])  # room within reeval_share (0.15)
    proposal = c.propose(1)[0]
    assert proposal.policy_version == REEVALUATION
    assert proposal.tokens == {"a": a, "c": third}[chosen]


def _run(c: Any, children: int, rng: random.Random) -> list[Proposal]:
    out: list[Proposal] = []
    while len(out) < children:
        proposals = c.propose(min(4, children - len(out)))
        c.update(proposals, [noisy(p.tokens, rng, 0.5) for p in proposals])
        out += proposals
    return out


def test_the_last_share_of_the_budget_races_the_top_without_limits() -> None:
    """Told its budget, a search spends its last ``reeval_final`` share of children on naming the best: the
    race is no longer held to ``reeval_share`` or ``reeval_max``; before that share, and for a search not
    told its budget, nothing changes."""
    settings = {"reeval_final": 0.5, "reeval_max": 3}
    told = make_controller("random+reeval", DECISIONS, 4, settings)
    told.plan(120)
    untold = make_controller("random+reeval", DECISIONS, 4, settings)
    a, b = _run(told, 120, random.Random(3)), _run(untold, 120, random.Random(3))
    assert [p.tokens for p in a[:60]] == [p.tokens for p in b[:60]]
    assert isinstance(told, ReevaluatedController) and isinstance(untold, ReevaluatedController)
    assert told.final() and not untold.final()
    again = [sum(p.policy_version == REEVALUATION for p in run[60:]) for run in (a, b)]
    assert again[1] <= 0.15 * 120 and again[0] > 0.5 * 60  # the share no longer limits the last half
    most = [max(Counter(p.tokens for p in run if p.policy_version == REEVALUATION).values()) for run in (a, b)]
    assert most[1] <= 3 - 1 < most[0]  # re-evaluations of one architecture: up to reeval_max - 1, then unlimited
    with pytest.raises(ValueError, match=r"re-evaluation setting reeval_final must be in \[0, 1\), got 1.0"):
        make_controller("random+reeval", DECISIONS, 0, {"reeval_final": 1.0})


def test_a_run_resumed_in_its_finish_makes_the_same_decisions() -> None:
    """The budget is not in the checkpoint: the search tells it again on resume (`Controller.plan`), and the
    restored wrapper, counting its proposals from the checkpoint, races exactly as the run it continues."""

    def make() -> Any:
        c = make_controller("random+reeval", DECISIONS, 4, {"reeval_final": 0.5})
        c.plan(40)
        return c

    def drive(c: Any, start: int, batches: int) -> list[tuple[tuple[int, ...], int]]:
        out = []
        for b in range(batches):
            proposals = c.propose(4)
            rewards = [noisy(p.tokens, random.Random(start + 4 * b + i), 0.5) for i, p in enumerate(proposals)]
            c.update(proposals, rewards)
            out += [(p.tokens, p.policy_version) for p in proposals]
        return out

    whole = drive(make(), 0, 10)
    first = make()
    head = drive(first, 0, 6)  # the finish began at child 20
    resumed = make()
    resumed.load_bytes(first.to_bytes())
    assert head + drive(resumed, 24, 4) == whole
    assert sum(pv == REEVALUATION for _, pv in whole[24:]) > 0.15 * 16  # the finish, not the share, decided


def test_a_batch_of_re_evaluations_keeps_the_strategys_entropy_and_baseline() -> None:
    """The finish can fill whole batches with re-evaluations: the strategy learns nothing from them, and the
    update they make reports its latest entropy and baseline, not a collapsed policy's zeros."""
    c = make_controller("reinforce+reeval", DECISIONS, 1, {"reeval_final": 0.6})
    c.plan(40)
    rng = random.Random(5)
    last = None
    for _ in range(10):
        proposals = c.propose(4)
        stats = c.update(proposals, [noisy(p.tokens, rng, 0.5) for p in proposals])
        if all(p.policy_version == REEVALUATION for p in proposals):
            assert last is not None and stats.entropy == last.entropy > 0 and stats.baseline == last.baseline
            assert stats.loss == 0.0
            break
        last = stats  # a batch holding some of the strategy's own proposals: its update
    else:
        pytest.fail("no batch was all re-evaluations")


def test_exact_rewards_and_noiseless_rewards_stop_reevaluation() -> None:
    exact = make_controller("random+reeval", DECISIONS, 0, exact=True)
    for _ in range(20):
        proposals = exact.propose(4)
        assert all(p.policy_version != REEVALUATION for p in proposals)
        exact.update(proposals, [sum(p.tokens) / 10 for p in proposals])
    measured = make_controller("random+reeval", DECISIONS, 0)
    seen = []
    for _ in range(20):
        proposals = measured.propose(4)
        seen += [p.policy_version == REEVALUATION for p in proposals]
        measured.update(proposals, [sum(p.tokens) / 10 for p in proposals])
    assert isinstance(measured, ReevaluatedController) and measured.evaluations.noise_sd() == 0.0
    # repeats until two measure the noise (random search's own duplicates count: here one repeat, then a
    # duplicate), then none: a zero noise leaves nothing to confirm
    assert sum(seen) == 1 and not any(seen[20:])


def test_the_screen_sees_repeated_evaluations() -> None:
    c = make_controller("random+screen+reeval", DECISIONS, 0, {"screen_warmup": 2, "screen": 3})
    assert isinstance(c, ReevaluatedController) and isinstance(c.base, ScreenedController)
    rng = random.Random(2)
    for _ in range(10):
        proposals = c.propose(4)
        c.update(proposals, [noisy(p.tokens, rng) for p in proposals])
    assert len(c.base.history) == 40 == c.evaluations.total  # every evaluation, re-evaluations included


def test_a_search_spends_its_children_on_evaluations_and_names_the_best_by_mean(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'n.db'}")
    config = SearchConfig(
        space="toy", strategy="reinforce+reeval", children=48, batch=4, seed=3, space_options={"noise": 0.2}
    )
    run = Search.start(store, config).run()
    children = store.children(run)
    assert len(children) == 48 and all(c.status == "done" for c in children)
    again = [c for c in children if c.policy_version == REEVALUATION]
    assert again, "a noisy space gets re-evaluations"
    assert {c.tokens for c in again} <= {c.tokens for c in children if c.policy_version != REEVALUATION}
    ranking = rank(children, load_space("toy", {"noise": 0.2}))
    assert ranking.noise_sd is not None and ranking.noise_sd == pytest.approx(0.2, rel=0.5)
    assert sum(a.estimate.n for a in ranking.archs) == 48
    # the search on an exact space never re-evaluates
    exact = Search.start(store, SearchConfig(space="toy", strategy="reinforce+reeval", children=24, seed=3)).run()
    assert all(c.policy_version != REEVALUATION for c in store.children(exact))


def test_a_canonical_form_groups_evaluations_of_one_architecture() -> None:
    space = load_space("nb201", {"canonical": True, "noise": 0.5})
    key = ArchKeys(space)
    a = (0, 0, 0, 0, 0, 3)  # only the 0 -> 3 edge computes; the rest is none
    b = (0, 0, 4, 0, 0, 3)  # adds a pool from node 1, which is zero: the same computation
    assert a != b and key(a) == key(b) and key(a) in set(canonical_cells().values())
    assert not space.exact_rewards() and load_space("nb201").exact_rewards()
    store_children = [_child(0, a, 0.9), _child(1, b, 0.7), _child(2, (0, 0, 0, 0, 0, 2), 0.85)]
    ranking = rank(store_children, space)
    grouped = next(arch for arch in ranking.archs if arch.estimate.n == 2)
    assert [c.number for c in grouped.children] == [0, 1] and grouped.estimate.mean == pytest.approx(0.8)
    # the progress plot's best so far groups them the same way: after child 1 it is no longer child 0's 0.9
    from l2l.runs.estimates import best_so_far

    steps, estimated = best_so_far(store_children, space=space)
    assert estimated and steps[1][1] < 0.9 and steps[-1][1] == pytest.approx(ranking.archs[0].estimate.estimate)
    assert best_so_far(store_children) == ([(0, 0.9), (1, 0.9), (2, 0.9)], False)  # by tokens: no repeat
    from l2l.runs.estimates import best_estimate  # what `runs list` shows, from the rewards alone

    rewards = [(c.number, c.tokens, c.reward) for c in reversed(store_children)]
    assert best_estimate(rewards, space) == ranking.archs[0].estimate.estimate != 0.9


def _child(number: int, tokens: tuple[int, ...], reward: float):  # type: ignore[no-untyped-def]
    from l2l.runs.store import ChildRecord

    fields: dict[str, Any] = {name: None for name in ChildRecord.__dataclass_fields__}
    fields.update(number=number, tokens=tokens, reward=reward, status="done", metrics={}, spec={})
    return ChildRecord(**fields)  # type: ignore[arg-type]


def _toy_run(
    storage: str, rows: Sequence[tuple[tuple[int, ...], float, float]], controller: dict[str, Any] | None = None
) -> tuple[Store, int]:
    """A finished run of `toy` (noise 0.1) recorded by hand: (tokens, reward, controller reward) per child."""
    store, space = Store(storage), load_space("toy", {"noise": 0.1})
    config = SearchConfig(space="toy", space_options={"noise": 0.1}, controller=controller or {}).to_json()
    run = store.create_run(
        space="toy", strategy="random", config=config, seed=0, n_children=len(rows), code_version="t"
    )
    new = [NewChild(i, 0, t, space.decode(t).to_json(), 0.0, 0.0, 0) for i, (t, _, _) in enumerate(rows)]
    store.add_children(run, new, running=True)
    store.finish_children(
        run, [(i, {"status": "done", "reward": r, "val_acc": r}, c) for i, (_, r, c) in enumerate(rows)]
    )
    return store, run


def test_runs_best_names_the_architecture_with_the_best_mean(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'b.db'}"
    good, lucky, other = (0,) * 9, (1,) + (0,) * 8, (2,) + (0,) * 8
    rows = [(good, 0.80), (good, 0.82), (good, 0.78), (good, 0.81), (lucky, 0.90), (lucky, 0.60), (lucky, 0.62),
            (other, 0.85), (other, 0.55)]  # fmt: skip
    _, run = _toy_run(storage, [(t, r, r) for t, r in rows])
    runner = CliRunner()
    out = runner.invoke(app, ["runs", "best", str(run), "--storage", storage])
    assert out.exit_code == 0, out.output
    assert "evaluated 4 times (children 0, 1, 2, 3)" in out.output and "estimated reward 0.80" in out.output
    single = runner.invoke(app, ["runs", "best", str(run), "--by", "single", "--storage", storage])
    assert "child 4, reward 0.9000" in single.output
    top = runner.invoke(app, ["runs", "top", str(run), "--storage", storage])
    assert top.exit_code == 0 and top.output.index("0,1,2,3") < top.output.index("4,5,6")
    bad = runner.invoke(app, ["runs", "top", str(run), "--by", "luck", "--storage", storage])
    assert bad.exit_code != 0 and "--by must be one of mean, transformed, single; got 'luck'" in bad.output
    listed = runner.invoke(app, ["runs", "list", "--storage", storage])  # the same best as runs best: the mean
    row = next(line for line in listed.output.splitlines() if line.strip().startswith(f"│ {run} "))
    assert "0.8025" in row and "0.9000" not in row, listed.output


def test_a_cost_aware_run_ranks_by_either_reward_and_says_which(tmp_path: Path) -> None:
    """The re-evaluation race and the controller see the transformed reward; `runs best` ranks by the raw one
    unless asked (--by transformed), and says so."""
    storage = f"sqlite:///{tmp_path / 't.db'}"
    transform = "mnas(params,1000,-0.5)"
    small, big = (0,) * 9, (1,) + (0,) * 8  # the small network: less accurate, better once its cost counts
    rows = [(small, 0.80, 0.90), (small, 0.82, 0.92), (big, 0.90, 0.45), (big, 0.88, 0.44)]
    store, run = _toy_run(storage, rows, {"reward_transform": transform})
    space = load_space("toy", {"noise": 0.1})
    runner = CliRunner(env={"COLUMNS": "300"})
    raw = runner.invoke(app, ["runs", "best", str(run), "--storage", storage]).output
    assert "children 2, 3" in raw and "estimated reward 0.89" in raw
    assert f"ranked by the raw reward; the controller learned from {transform} (--by transformed ranks by it)" in raw
    cost = runner.invoke(app, ["runs", "best", str(run), "--by", "transformed", "--storage", storage]).output
    assert "children 0, 1" in cost and "estimated transformed reward 0.91" in cost
    assert f"ranked by the reward the controller learned from, {transform}" in cost
    top = runner.invoke(app, ["runs", "top", str(run), "--by", "transformed", "--storage", storage]).output
    assert top.index("0,1") < top.index("2,3") and "estimate ± 95% (transformed)" in top
    # a best evaluated once is shown with the reward it was ranked by
    tiny = (2,) + (0,) * 8
    store.add_children(run, [NewChild(4, 1, tiny, space.decode(tiny).to_json(), 0.0, 0.0, 0)], running=True)
    store.finish_children(run, [(4, {"status": "done", "reward": 0.30, "val_acc": 0.30}, 0.99)])
    once = runner.invoke(app, ["runs", "best", str(run), "--by", "transformed", "--storage", storage]).output
    assert "child 4, transformed reward 0.9900" in once, once


def test_runs_show_gives_a_lone_best_its_estimate_as_runs_list_does(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 's.db'}"
    archs = [(i % 4, i // 4) + (0,) * 7 for i in range(12)]  # twelve architectures, the first evaluated twice
    rows = [(archs[0], 0.50), (archs[0], 0.60)] + [(a, 0.40 + 0.03 * i) for i, a in enumerate(archs[1:])]
    store, run = _toy_run(storage, [(t, r, r) for t, r in rows])
    space = load_space("toy", {"noise": 0.1})
    best = rank(store.children(run), space).archs[0]
    assert best.estimate.n == 1 and best.estimate.estimate < 0.70  # one lucky 0.70, pulled towards the crowd
    shown = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["runs", "show", str(run), "--storage", storage]).output
    assert f"best: child 12, reward 0.7000, estimated {best.estimate.estimate:.4f} (evaluated once)" in shown


def test_the_best_is_called_uncertain_while_it_is() -> None:
    close = [_child(i, (i % 2,), r) for i, r in enumerate([0.80, 0.79, 0.60, 0.99, 0.81, 0.78])]
    doubt = rank(close, None).doubt()
    assert doubt is not None and doubt.startswith("the best is uncertain: it beats the runner-up, child")
    once = rank([_child(0, (0,), 0.8), _child(1, (1,), 0.7)], None).doubt()
    assert once == (
        "the noise is unknown: no architecture was evaluated twice (a STRATEGY+reeval search re-evaluates the "
        "best ones)"
    )
    early = rank([_child(0, (0,), 0.8), _child(1, (1,), 0.7)], None).doubt(reevaluates=True)  # a +reeval run, early
    assert early == "the noise is unknown: no architecture was evaluated twice yet"
    clear = [_child(i, (i % 2,), r) for i, r in enumerate([0.80, 0.50, 0.81, 0.51, 0.79, 0.49])]
    assert rank(clear, None).doubt() is None


def test_kill_9_then_resume_keeps_every_evaluation_and_the_same_decisions(tmp_path: Path) -> None:
    n, args = 28, ["--children", "28", "--batch", "4", "--seed", "5", "--strategy", "random+reeval"]
    storage = f"sqlite:///{tmp_path / 'k.db'}"
    store = Store(storage)
    proc = _cli("search", "--space", NOISY_SLOW, "-S", "delay=0.1", *args, "--storage", storage,
                "--executor", "local", "-q")  # fmt: skip
    wait_for_done(store, 12)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    run = store.list_runs()[0].id
    out = _cli("search", "--resume", str(run), "--storage", storage, "-q")
    text, _ = out.communicate(timeout=120)
    assert out.returncode == 0, text
    resumed = [(c.number, c.tokens, c.policy_version, c.reward) for c in store.children(run)]
    whole_store = Store(f"sqlite:///{tmp_path / 'w.db'}")
    config = SearchConfig(space=NOISY_SLOW, strategy="random+reeval", children=n, batch=4, seed=5,
                          space_options={"delay": 0.0, "noise": 0.2})  # fmt: skip
    whole = Search.start(whole_store, config).run()
    expected = [(c.number, c.tokens, c.policy_version, c.reward) for c in whole_store.children(whole)]
    assert [r[:3] for r in resumed] == [r[:3] for r in expected]
    assert [r[3] for r in resumed] == pytest.approx([r[3] for r in expected])
    assert any(pv == REEVALUATION for _, _, pv, _ in resumed)


def _interrupted_after_14(store: Store, mode: str) -> Search:
    """A 30-child `random+reeval` search of noisy `toy`, interrupted (Ctrl-C) once 14 children finished."""
    from l2l.runs.search import ChildEvent, SearchInterrupted

    config = SearchConfig(space="toy", strategy="random+reeval", children=30, batch=3, seed=2, mode=mode,
                          space_options={"noise": 0.2})  # fmt: skip
    finished: list[int] = []

    def stop(event: object) -> None:
        if isinstance(event, ChildEvent):
            finished.append(event.number)
            if len(finished) == 14:
                raise KeyboardInterrupt

    search = Search.start(store, config, listener=stop)
    with pytest.raises(SearchInterrupted):
        search.run()
    return search


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_interrupted_and_resumed_in_either_mode_every_evaluation_is_learned_once(tmp_path: Path, mode: str) -> None:
    store = Store(f"sqlite:///{tmp_path / 'i.db'}")
    search = _interrupted_after_14(store, mode)
    Search.resume(store, search.run_id).run()
    children = store.children(search.run_id)
    assert [c.number for c in children] == list(range(30)) and all(c.status == "done" for c in children)
    assert any(c.policy_version == REEVALUATION for c in children)
    updates = store.updates(search.run_id)
    assert sorted(n for u in updates for n in u.extra["children"]) == list(range(30))
    assert [u.policy_version for u in updates] == list(range(1, len(updates) + 1))


def test_an_async_run_resumed_counts_the_children_proposed_after_its_checkpoint(tmp_path: Path) -> None:
    """The finish starts at a share of the children handed out: a resumed asynchronous run re-runs (or learns)
    the children proposed after its last checkpoint without proposing them again, and is told of them
    (`Controller.note_proposed`), so its count, and the start of its finish, match the children."""
    store = Store(f"sqlite:///{tmp_path / 'a.db'}")
    search = _interrupted_after_14(store, "async")
    checkpoint = store.latest_checkpoint(search.run_id)
    assert checkpoint is not None and checkpoint.next_child < len(store.children(search.run_id))
    resumed = Search.resume(store, search.run_id)
    resumed.run()
    controller = resumed.controller
    assert isinstance(controller, ReevaluatedController)
    children = store.children(search.run_id)
    assert controller.proposed == len(children) == 30
    assert controller.reevaluated == sum(c.policy_version == REEVALUATION for c in children)


def test_the_search_command_ends_with_the_best_estimate(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'c.db'}"
    args = ["search", "--space", "toy", "-S", "noise=0.2", "--strategy", "random+reeval", "--children", "40",
            "--executor", "local", "--seed", "1", "--storage", storage]  # fmt: skip
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    ranking = rank(Store(storage).children(1), load_space("toy", {"noise": 0.2}))
    best = ranking.archs[0]
    assert best.estimate.n > 1
    line = " ".join(out.output.split())
    assert f"best estimated reward {best.estimate.estimate:.4f} over {best.estimate.n} evaluations" in line
    assert f"(child {best.child.number})" in line


def test_the_screen_centres_its_neighbourhood_on_the_best_mean() -> None:
    from l2l.controllers.reward_window import RewardWindow

    window = RewardWindow(size=8, local=2)
    for tokens, reward in [((0,), 0.9), ((1,), 0.8), ((2,), 0.7), ((0,), 0.5)]:
        window.add(tokens, reward)
    # (0,) was the luckiest once, but its mean is 0.7: equal to (2,)'s, and of equal means the first learned
    assert window.best() == [(1,), (0,)]
    window.add((2,), 0.75)
    assert window.best() == [(1,), (2,)] and window.best() == [(1,), (2,)]  # reading it changes nothing


def test_the_progress_plots_best_so_far_is_the_best_estimate_where_architectures_repeat() -> None:
    from l2l.runs.estimates import best_so_far

    lucky = [_child(0, (0,), 0.80), _child(1, (1,), 0.95), _child(2, (1,), 0.55), _child(3, (0,), 0.82)]
    steps, estimated = best_so_far(lucky)
    assert estimated and [n for n, _ in steps] == [0, 1, 2, 3]
    assert steps[1][1] == pytest.approx(0.95) and steps[2][1] == pytest.approx(0.80)  # the lucky one's mean fell
    assert steps[3][1] == pytest.approx(0.81)
    once = [_child(0, (0,), 0.5), _child(1, (1,), 0.4), _child(2, (2,), 0.7)]
    assert best_so_far(once) == ([(0, 0.5), (1, 0.5), (2, 0.7)], False)


def test_evaluations_added_in_one_pass_are_those_added_one_at_a_time() -> None:
    """`add_many` (what a page of 100,000 children is ranked with) keeps each key's count, mean and spread, and
    the order keys were first met in (ties go to the first evaluated), as `add` does."""
    import random

    from l2l.controllers.noise import Evaluations

    rng = random.Random(0)
    keys = [rng.randrange(60) for _ in range(2000)]
    rewards = [rng.gauss(0.5, 0.1) + k / 100 for k in keys]
    one = Evaluations()
    for k, r in zip(keys, rewards, strict=True):
        one.add(k, r)
    for stretch in (2000, 700, 3):  # in one pass, in parts (merged into what was there), and a few at a time
        many = Evaluations()
        for start in range(0, len(keys), stretch):
            many.add_many(keys[start : start + stretch], rewards[start : start + stretch])
        assert many.total == one.total and [many.count(k) for k in range(60)] == [one.count(k) for k in range(60)]
        assert many.noise_sd() == pytest.approx(one.noise_sd(), rel=1e-12)
        got, want = many.estimates(), one.estimates()
        assert [e.key for e in got] == [e.key for e in want]
        assert [e.estimate for e in got] == pytest.approx([e.estimate for e in want], rel=1e-12)


def test_the_curve_at_a_few_points_is_the_curve_of_every_child_taken_there() -> None:
    """`best_curve` with ``points`` (what the dashboard draws: stretches of children added in one pass each) gives
    at each point the best estimated mean the child-by-child curve (`l2l plot progress`) has there; rows `Keyed`
    once give the same as rows keyed inside."""
    import random

    from l2l.runs.estimates import Keyed, best_arch, best_curve

    rng = random.Random(1)
    rows = [(n, (rng.randrange(40), rng.randrange(3)), rng.gauss(0.5, 0.1)) for n in range(3000)]
    rows = [(n, tokens, reward + tokens[0] / 200) for n, tokens, reward in rows]
    every, repeated = best_curve(rows, None)
    few, again = best_curve(Keyed.of(rows[::-1], None), None, points=60)  # stretches of 50, any order in
    assert repeated and again and len(few) == 60
    at = dict(every)
    assert [n for n, _ in few] == list(range(49, 3000, 50))
    assert [b for _, b in few] == pytest.approx([at[n] for n, _ in few], rel=1e-12)
    best, first, twice = best_arch(Keyed.of(rows, None), None) or (None, None, None)
    assert best is not None and twice and best.estimate == pytest.approx(few[-1][1], rel=1e-12)
    assert first == min(n for n, tokens, _ in rows if tokens == best.key)
