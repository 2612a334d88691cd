"""The suite reward: ratios to tuned Adam, cheapest-first halving, failures with reasons, de-duplication."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from l2l.optsearch.language import parse
from l2l.optsearch.presets import preset
from l2l.optsearch.reward import RuleFailed, geometric_reward, references, successive_halving, suite_reward
from l2l.optsearch.suite import BUILTIN
from l2l.search_spaces import Context, Spec, load_space

TASKS = [
    dataclasses.replace(BUILTIN["digits-logreg"], steps=20, evals=1),
    dataclasses.replace(BUILTIN["friedman-mlp"], steps=20, evals=1),
]
GRID = (1e-3, 1e-2, 1e-1)
DIVERGES = parse("one g identity identity div ; u1 one exp identity keep")  # exp(1 / (g + 1e-8)): inf
STALLS = parse("g one clip1e-5 identity keep")  # moves at most 1e-5 * lr per step


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2L_OPTSEARCH_CACHE", str(tmp_path / "cache"))


def test_geometric_reward_lets_no_task_dominate() -> None:
    assert geometric_reward([1.0, 1.0]) == 1.0
    assert geometric_reward([0.5, 2.0]) == pytest.approx(1.0)  # twice as good on one, twice as bad on the other
    assert geometric_reward([0.5, 0.5]) == pytest.approx(2.0)


def test_adam_scores_one_and_the_reference_is_cached(tmp_path: Path) -> None:
    refs = references(TASKS, GRID)
    assert set(refs) == {t.name for t in TASKS} and all(v > 0 for v in refs.values())
    assert len(list((tmp_path / "cache").glob("reference-*.json"))) == 1
    score = suite_reward(preset("adam"), TASKS, refs, lrs=GRID)
    assert score.reward == pytest.approx(1.0) and score.stopped_at is None
    assert [s.task for s in score.scores] == [t.name for t in TASKS] and score.runs <= 2 * len(GRID)


def test_a_poor_rule_stops_at_the_first_task_and_its_ratio_stands_for_the_rest() -> None:
    refs = references(TASKS, GRID)
    score = suite_reward(STALLS, TASKS, refs, lrs=GRID, cutoff=1.1)
    assert score.stopped_at == TASKS[0].name and len(score.scores) == 1
    assert score.reward == pytest.approx(1.0 / score.scores[0].ratio) and score.reward < 1 / 1.1


def test_a_rule_diverging_at_every_rate_fails_with_the_reason() -> None:
    with pytest.raises(RuleFailed, match=r"diverged at every learning rate tried on digits-logreg \(2 runs\): loss"):
        suite_reward(DIVERGES, TASKS, references(TASKS, GRID), lrs=GRID)


def test_successive_halving_drops_the_worse_half_after_each_task() -> None:
    rules = [DIVERGES, STALLS, preset("sgd"), preset("adam")]
    ranked, runs = successive_halving(rules, TASKS, references(TASKS, GRID), lrs=GRID)
    order = [r for r, _ in ranked]
    assert order[0] in (preset("adam"), preset("sgd")) and order[-1] == DIVERGES and ranked[-1][1] == 0.0
    assert runs < len(rules) * len(TASKS) * len(GRID)  # not every rule ran every task


def _spec(space, text: str) -> Spec:  # type: ignore[no-untyped-def]
    u = parse(text).units[0]
    values = [("u1_op1", u.op1), ("u1_op2", u.op2), ("u1_unary1", u.u1), ("u1_unary2", u.u2), ("u1_binary", u.b)]
    return Spec("optimizer", (*values, ("decay", "none")))


def test_the_space_scores_rules_on_the_suite_and_shares_duplicate_evaluations() -> None:
    space = load_space("optimizer", {"suite": "digits-logreg,friedman-mlp", "scale": 0.1, "lrs": "0.001,0.01,0.1"})
    adam = space.evaluate(_spec(space, "adam one identity identity keep"), Context())
    assert adam.ok and adam.reward == pytest.approx(1.0) and adam.info["formula"] == "lr * adam"
    assert adam.cost["runs"] > 0 and len(adam.curves["loss_ratio"]) == 2
    again = space.evaluate(_spec(space, "adam one identity identity mul"), Context())  # adam * 1
    assert again.reward == adam.reward and again.cost["runs"] == 0
    assert again.info["duplicate_of"] == "adam one identity identity keep"
    assert again.info["functional_hash"] == adam.info["functional_hash"]
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # whether this rule blows up at the grid's smallest rate depends on the sum order
    try:
        bad = space.evaluate(_spec(space, "one g exp identity div"), Context())  # e / (g + 1e-8)
    finally:
        torch.set_num_threads(threads)
    assert bad.status == "failed" and "diverged at every learning rate tried on digits-logreg" in (bad.error or "")


def test_the_controller_can_choose_betas() -> None:
    space = load_space("optimizer", {"betas": True})
    assert [d.name for d in space.decisions()][-2:] == ["beta1", "beta2"]
    values = dict(_spec(space, "m one identity identity keep").items())
    rule = space.rule_of(  # type: ignore[attr-defined]
        Spec("optimizer", (*values.items(), ("beta1", 0.95), ("beta2", 0.99)))
    )
    assert (rule.beta1, rule.beta2) == (0.95, 0.99)


def test_the_funnel_reruns_longer_with_more_seeds_and_picks_the_better_rule() -> None:
    from l2l.optsearch.funnel import funnel
    from l2l.optsearch.tuning import Contender

    candidates = [
        Contender("stalls", "g one clip1e-5 identity keep"),
        Contender("rms", "rmsprop one identity identity keep"),
    ]
    out = funnel(candidates, TASKS, seeds=2, scale=1.5, lrs=GRID)
    assert out["winner"] == "rms" and out["scores"]["rms"] > out["scores"]["stalls"]
    board = out["board"]
    assert {t["steps"] for t in board["tasks"]} == {30} and board["seeds"] == 2
    assert set(board["cells"][TASKS[0].name]) == {"stalls", "rms", "adam"}  # Adam at the same budget, for the ratio


def test_the_error_objective_compares_validation_errors() -> None:
    from l2l.optsearch.trainer import train_run
    from l2l.optsearch.tuning import Contender

    refs = references(TASKS, GRID, "error")
    assert refs != references(TASKS, GRID)  # its own reference, cached apart
    score = suite_reward(preset("adam"), TASKS, refs, lrs=GRID, objective="error")
    assert score.reward == pytest.approx(1.0)
    logreg = score.scores[0]
    run = train_run(TASKS[0], Contender("adam", "adam one identity identity keep").factory(TASKS[0]), logreg.lr, 0)
    assert logreg.value == pytest.approx(1.0 - run.val_metric)  # 1 - accuracy
    with pytest.raises(ValueError, match="unknown objective 'acc'; known: loss, error"):
        suite_reward(preset("adam"), TASKS, refs, lrs=GRID, objective="acc")


@pytest.mark.slow  # starts worker processes
def test_a_childs_tasks_spread_over_processes_give_the_same_score() -> None:
    refs = references(TASKS, GRID)
    one = suite_reward(preset("rmsprop"), TASKS, refs, lrs=GRID)
    spread = suite_reward(preset("rmsprop"), TASKS, refs, lrs=GRID, workers=2)
    assert spread.scores == one.scores and spread.reward == one.reward
    stopped = suite_reward(STALLS, TASKS, refs, lrs=GRID, cutoff=1.1, workers=2)
    assert stopped.stopped_at == TASKS[0].name and len(stopped.scores) == 1


def test_a_search_on_held_out_tasks_is_said_to_use_them(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from l2l.optsearch.suite import SUITES
    from l2l.runs.cli import app

    assert load_space("optimizer", {"suite": "search"}).heldout_tasks() == []  # type: ignore[attr-defined]
    assert load_space("optimizer").heldout_tasks() == []  # type: ignore[attr-defined]
    held = load_space("optimizer", {"suite": "heldout"}).heldout_tasks()  # type: ignore[attr-defined]
    assert sorted(held) == sorted(SUITES["heldout"])
    mixed = load_space("optimizer", {"suite": "mnist1d-logreg,digits-mlp"}).heldout_tasks()  # type: ignore[attr-defined]
    assert mixed == ["mnist1d-logreg"]
    args = ["search", "--space", "optimizer", "-S", "suite=mnist1d-logreg", "-S", "scale=0.1", "-n", "1"]
    out = CliRunner().invoke(app, [*args, "--executor", "local", "-q", "--storage", f"sqlite:///{tmp_path}/o.db"])
    assert out.exit_code == 0, out.output
    assert "warning: this search scores rules on held-out task(s) mnist1d-logreg;" in out.output


def test_the_references_kept_with_a_run_are_used_only_for_the_tasks_they_were_tuned_on() -> None:
    options = {"suite": "digits-logreg", "scale": 0.1, "lrs": "0.01,0.1"}
    data = load_space("optimizer", options).pinned_data()
    assert set(data) == {"references", "key"} and data["references"]["digits-logreg"] > 0
    adam = "adam one identity identity keep"
    doubled = {"digits-logreg": 2 * data["references"]["digits-logreg"]}
    kept = load_space("optimizer", options)
    kept.use_pinned_data({**data, "references": doubled})  # a resumed run: its own yardstick, not tuned again
    assert kept.evaluate(_spec(kept, adam), Context()).reward == pytest.approx(2.0)
    edited = load_space("optimizer", options)  # kept for tasks (or a tuning walk) that have changed since
    edited.use_pinned_data({"references": doubled, "key": "0" * 16})
    assert edited.evaluate(_spec(edited, adam), Context()).reward == pytest.approx(1.0)


def test_a_suite_search_can_learn_from_the_negated_loss_ratio(tmp_path: Path) -> None:
    """neg_val_loss failed after the first batch once suite results stopped carrying a validation loss."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app
    from l2l.runs.store import Store

    storage = f"sqlite:///{tmp_path}/n.db"
    args = ["search", "--space", "optimizer", "-S", "suite=digits-logreg", "-S", "scale=0.05", "-S", "lrs='0.01,0.1'"]
    args += ["-n", "4", "-m", "2", "--strategy", "reinforce", "-C", "reward_transform=neg_val_loss", "-q"]
    out = CliRunner().invoke(app, [*args, "--executor", "local", "--storage", storage])
    assert out.exit_code == 0, out.output
    done = Store(storage).children(1, "done")  # (a rule that diverges everywhere fails, as in any search)
    assert done and all(c.controller_reward == pytest.approx(-1 / (c.reward or 1)) for c in done)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"suite": "digits-logreg", "task": "synthetic-mlp"}, "task=synthetic-mlp set the single task, which "
         "suite=digits-logreg replaces; drop it (scale= sets the suite tasks' steps)"),
        ({"suite": "search", "task": "digits-cnn", "epochs": 2}, "task=digits-cnn and epochs=2 set the single "
         "task, which suite=search replaces; drop them"),
        ({"suite": "search", "cutoff": 0}, "optimizer space needs cutoff > 1 (a loss ratio to Adam's), got 0"),
        ({"suite": "search", "scale": 20}, "optimizer space needs 0 < scale <= 10 (the suite tasks' steps), got 20"),
        # without a suite they were taken and ignored: the single task trained, invalid values too
        ({"scale": 0}, "scale=0 sets the task suite's reward, and no suite= is given (the single task of task= "
         "trains instead); add suite=search"),
        ({"cutoff": -1, "workers": 2}, "cutoff=-1 and workers=2 set the task suite's reward, and no suite="),
    ],
)  # fmt: skip
def test_settings_a_suite_would_ignore_or_cannot_take_are_refused_one_at_a_time(
    options: dict[str, object], message: str
) -> None:
    from l2l.search_spaces import SpaceError

    with pytest.raises(SpaceError, match=re.escape(message)):
        load_space("optimizer", options)


def test_a_suite_reward_is_exact_and_one_task_is_a_draw() -> None:
    assert load_space("optimizer", {"suite": "digits-logreg"}).exact_rewards()
    assert not load_space("optimizer").exact_rewards()
