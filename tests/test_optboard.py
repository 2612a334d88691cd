"""Fair tuning and the scoreboard: the same grid walk for everyone, edges flagged, seeds and intervals, the CLI."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from l2l.optsearch.board import intervals_apart, leaders, performance_profile, run_board, winner
from l2l.optsearch.presets import PRESETS
from l2l.optsearch.suite import BUILTIN, SUITES
from l2l.optsearch.tuning import DIVERGED, LR_GRID, Contender, better, confidence, tune, walk_grid
from l2l.runs.cli import app
from tests.test_optsuite import install_task_plugin

FAST = dataclasses.replace(BUILTIN["digits-logreg"], steps=40, evals=2)
runner = CliRunner()


def test_lr_grid_is_half_decades_from_1e_5_to_10() -> None:
    assert LR_GRID[0] == 1e-5 and LR_GRID[-1] == 10.0 and len(LR_GRID) == 13
    assert all(3.0 < b / a < 3.3 for a, b in itertools.pairwise(LR_GRID))


@pytest.mark.parametrize("peak", [0, 3, 7, 10])
def test_grid_walk_finds_a_unimodal_peak_without_trying_everything(peak: int) -> None:
    calls: list[int] = []

    def value(i: int) -> tuple[float, float]:
        calls.append(i)
        return -abs(i - peak), 0.0

    assert walk_grid(value, 11, start=4) == peak
    assert len(set(calls)) < 11 and len(set(calls)) == len(calls)  # each point once, never the whole grid


def test_a_diverged_start_walks_to_smaller_rates() -> None:
    assert walk_grid(lambda i: DIVERGED if i >= 3 else (float(i), 0.0), 11, start=4) == 2
    # rates that diverge before any trained are no misses: the walk reaches the rate that trains
    assert walk_grid(lambda i: DIVERGED if i >= 1 else (0.5, 0.0), 11, start=6) == 0
    calls: list[int] = []

    def diverges(i: int) -> tuple[float, float]:
        calls.append(i)
        return DIVERGED

    assert walk_grid(diverges, 11, start=4) == 4 and sorted(calls) == [0, 1, 2, 3, 4, 5]
    calls.clear()
    assert walk_grid(diverges, 1, start=0) == 0 and calls == [0]  # a one-point grid is tried


def test_a_flat_metric_walks_on_by_the_loss() -> None:
    """Chance accuracy at every small rate (a rule whose steps are too small to train) is a tie: the loss,
    still falling, leads the walk up to the rate where the rule trains, instead of stopping at the start."""
    trains_from = 9

    def value(i: int) -> tuple[float, float]:  # (accuracy, minus the loss)
        return (0.1 if i < trains_from else 0.9 - 0.1 * (i - trains_from)), -2.3 + 0.01 * i

    assert walk_grid(value, 12, start=4) == trains_from


def test_accuracies_within_their_noise_are_compared_by_the_loss() -> None:
    """SGD on the GRU task: 0.116, 0.118, 0.116 at 1e-4..3e-3, one validation example apart, ended the walk at
    chance; within a standard error of a 500-example accuracy they tie and the falling loss leads on."""
    chance = [0.116, 0.118, 0.116, 0.114, 0.118, 0.12, 0.116, 0.3, 0.8, 0.85, 0.6]

    def value(i: int) -> tuple[float, float]:
        return chance[i], -2.3 + 0.02 * i

    def noise(a: float, b: float) -> float:
        p = (a + b) / 2
        return math.sqrt(p * (1 - p) / 500)

    assert walk_grid(value, len(chance), start=2) == 1  # compared exactly, an example more walks it down to chance
    assert walk_grid(value, len(chance), start=2, noise=noise) == 9
    assert better((0.85, -0.5), (0.80, -0.4), noise)  # a real difference still goes by the metric
    assert not better(DIVERGED, (0.1, -2.3), noise) and better((0.1, -2.3), DIVERGED, noise)


def test_confidence_interval_is_students_t() -> None:
    mean, half = confidence([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)
    assert math.isnan(confidence([1.0])[1])


def test_tuning_chooses_on_validation_and_reports_every_seed() -> None:
    cell = tune(Contender("adam", PRESETS["adam"]), FAST, seeds=3)
    assert cell.failed is None and cell.lr in LR_GRID and cell.weight_decay is None
    assert len(cell.test) == 3 and not math.isnan(cell.test_ci)
    best = max((v, float(lr)) for lr, v in cell.val_by_lr.items() if v is not None)
    assert cell.lr == pytest.approx(best[1], rel=1e-6)  # the chosen rate is the best validation point
    assert cell.runs < len(LR_GRID) + 2  # the walk did not train the whole grid
    assert len(cell.curves["val_metric"]) == 2


def test_weight_decay_is_tuned_only_for_rules_that_have_it() -> None:
    cell = tune(Contender("adamw", PRESETS["adamw"]), FAST, seeds=1, wds=(0.0, 0.1))
    assert set(cell.val_by_wd) == {"0", "0.1"} and cell.weight_decay in (0.0, 0.1)


def test_a_best_rate_at_the_grids_edge_is_flagged() -> None:
    cell = tune(Contender("sgd", PRESETS["sgd"]), FAST, seeds=1, lrs=(1e-5, 3e-5))
    assert cell.lr == 3e-5 and cell.lr_at_edge


def test_a_rule_diverging_at_every_rate_fails_with_the_reason() -> None:
    cell = tune(Contender("bad", "one g identity identity div"), FAST, seeds=2, lrs=(1e-3, 1e-2))
    assert cell.failed is not None and cell.failed.startswith(
        "diverged at each of the 2 learning rates tried (0.001 to 0.01): loss"
    )
    assert cell.test == []


def _cell(mean: float, ci: float = 0.01, failed: str | None = None) -> dict[str, object]:
    return {"test_mean": mean, "test_ci": ci, "failed": failed}


def test_winners_profiles_and_intervals_on_a_board() -> None:
    board: dict[str, Any] = {
        "optimizers": [{"label": "a"}, {"label": "b"}],
        "tasks": [{"name": "acc", "higher_is_better": True}, {"name": "mse", "higher_is_better": False}],
        "cells": {"acc": {"a": _cell(0.9), "b": _cell(0.8)}, "mse": {"a": _cell(0.4), "b": _cell(0.2)}},
    }
    assert winner(board, "acc") == "a" and winner(board, "mse") == "b"
    profile = performance_profile(board, [1.0, 1.5, 2.0, 3.0])
    # errors: acc 0.1 vs 0.2 (b at 2x), mse 0.4 vs 0.2 (a at 2x)
    assert profile == {"a": [0.5, 0.5, 1.0, 1.0], "b": [0.5, 0.5, 1.0, 1.0]}
    board["cells"]["acc"]["b"] = _cell(0.9)
    assert winner(board, "acc") is None and leaders(board, "acc") == ["a", "b"]  # a tie is nobody's win
    # 603 of 2000 right for both, the seeds' accuracies read back from float32: still a tie
    board["cells"]["acc"] = {"a": _cell(0.30150000417232513), "b": _cell(0.30149999260902405)}
    assert winner(board, "acc") is None and leaders(board, "acc") == ["a", "b"]
    board["cells"]["acc"]["b"] = _cell(0.3010)  # one example fewer of 2000 is a difference
    assert winner(board, "acc") == "a"
    board["cells"]["mse"]["b"] = _cell(math.nan, failed="diverged")
    assert winner(board, "mse") == "a" and performance_profile(board, [10.0])["b"] == [0.5]
    assert intervals_apart(_cell(0.9, 0.01), _cell(0.8, 0.02)) and not intervals_apart(_cell(0.9, 0.1), _cell(0.8))


@pytest.mark.slow  # starting worker processes (spawn) takes seconds
def test_processes_give_the_same_board_as_one_process() -> None:
    contenders = [Contender("sgd", PRESETS["sgd"]), Contender("adam", PRESETS["adam"])]
    tasks = [dataclasses.replace(FAST, steps=20)]
    local = run_board(contenders, tasks, seeds=2, lrs=(1e-2, 1e-1), workers=1)
    spread = run_board(contenders, tasks, seeds=2, lrs=(1e-2, 1e-1), workers=2)
    for label in ("sgd", "adam"):
        assert local["cells"][FAST.name][label]["test"] == spread["cells"][FAST.name][label]["test"]
    assert list(spread["cells"][FAST.name]) == ["sgd", "adam"]  # the optimizers' order, however jobs finished
    assert sum(local["wins"].values()) <= 1 and local["leaders"][FAST.name]


def test_cli_evaluate_prints_the_board_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "board.json"
    args = ["optimizers", "evaluate", "adam", "g one sign identity keep", "--suite", "digits-logreg"]
    result = runner.invoke(app, [*args, "--seeds", "2", "--lrs", "0.001,0.01,0.1", "--workers", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "tasks won" in result.output and "rule2: g one sign identity keep" in result.output
    board = json.loads(out.read_text())
    cell = board["cells"]["digits-logreg"]["adam"]
    assert len(cell["test"]) == 2 and cell["lr"] in (0.001, 0.01, 0.1)
    assert board["optimizers"][1]["formula"] == "lr * sign(g)" and sum(board["wins"].values()) <= 1
    plotted = runner.invoke(app, ["plot", "optimizer", str(out), "-o", str(tmp_path / "plots")])
    assert plotted.exit_code == 0, plotted.output
    for name in ("board_profile.png", "board_curves.png", "board_update_heatmaps.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert performance_profile(board, [1.0])[board["leaders"]["digits-logreg"][0]] == [1.0]
    # a board where nothing was measured exits 1 (scripts could not tell; the table still says why)
    args = ["optimizers", "evaluate", "one g identity identity div", "--suite", "digits-logreg", "--seeds", "1"]
    failed = runner.invoke(app, [*args, "--lrs", "0.001,0.01", "--workers", "1", "-o", str(tmp_path / "f.json")])
    assert failed.exit_code == 1 and "every one of the 1 evaluations failed" in failed.output, failed.output
    assert json.loads((tmp_path / "f.json").read_text())["cells"]["digits-logreg"]  # written all the same
    bad = runner.invoke(app, ["plot", "optimizer", str(tmp_path / "nope.json")])
    assert bad.exit_code == 1 and "neither a run id nor an existing board file" in bad.output
    onto = runner.invoke(app, ["plot", "optimizer", str(out), "-o", str(out)])  # was "cannot use ...: file exists"
    assert onto.exit_code == 1 and "is a file: -o names the folder the plots are written in" in onto.output


def test_one_seed_has_no_interval_and_the_board_is_strict_json(tmp_path: Path) -> None:
    out = tmp_path / "one.json"
    args = ["optimizers", "evaluate", "adam", "--suite", "digits-logreg", "--seeds", "1", "--lrs", "0.01"]
    result = runner.invoke(app, [*args, "--workers", "1", "-o", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "│ 0.9500" in result.output and "±" not in result.output.split("test metric of one seed")[1]
    assert "nan" not in result.output and "1 task x 1 optimizer " in result.output
    assert "test metric of one seed (no interval)" in result.output  # not "mean ± 95% CI over 1 seeds"

    def no_constants(name: str) -> None:
        raise AssertionError(f"{name} is not JSON")

    cell = json.loads(out.read_text(), parse_constant=no_constants)["cells"]["digits-logreg"]["adam"]
    assert cell["test_ci"] is None and len(cell["test"]) == 1
    plotted = runner.invoke(app, ["plot", "optimizer", str(out), "-o", str(tmp_path / "plots")])
    assert plotted.exit_code == 0, plotted.output  # a board read back with null intervals still plots


def test_cli_evaluate_uses_a_task_registered_by_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_task_plugin(tmp_path, monkeypatch)
    out = tmp_path / "board.json"
    args = ["optimizers", "evaluate", "sgd", "--suite", "user", "--seeds", "2", "--lrs", "0.01,0.1", "--workers", "1"]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert list(json.loads(out.read_text())["cells"]) == ["tiny-digits"]


def test_the_tasks_and_presets_are_listed_with_a_plugins_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Finding out whether a plugin's task was registered took a wrong --suite and its error's list of tasks."""
    install_task_plugin(tmp_path, monkeypatch)
    listed = runner.invoke(app, ["optimizers", "tasks"])
    assert listed.exit_code == 0, listed.output
    text = " ".join(listed.output.split())  # one task a line, wrapped where the terminal is narrow
    for name in (*SUITES["search"], *SUITES["heldout"]):
        assert f"{name} ({'search' if name in SUITES['search'] else 'heldout'}): " in text
    assert "tiny-digits (user): user plugin; problem digits, model l2l_tiny_tasks:tiny_net" in text
    assert "'l2l_tiny_tasks' (l2l_tiny_tasks:tasks)" in text
    assert "model mlp (width 64, depth 8, activation tanh), loss cross_entropy, metric accuracy, 500 steps" in text
    presets = runner.invoke(app, ["optimizers", "presets"], env={"COLUMNS": "250"})
    assert presets.exit_code == 0 and all(f"│ {name} " in presets.output for name in PRESETS)
    assert "lr * adam" in presets.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["adamm"], "unknown optimizer preset 'adamm' (did you mean 'adam'?); presets: sgd, momentum, sgdm, adam,"),
        (["Adam"], "unknown optimizer preset 'Adam' (did you mean 'adam'?)"),  # presets are lower case
        (["zzz"], "unknown optimizer preset 'zzz'; presets: sgd,"),
        (["g one"], "'g one' is not a preset (sgd, momentum, sgdm, adam,"),  # a rule's text, mistaken
        (["adam", "--suite", "nope"], "unknown task or suite 'nope'"),
        (["adam", "--suite", "heldout,nope,nah"], "unknown tasks or suites 'nope', 'nah'; suites: search, heldout"),
        (["adam", "--lrs", "x"], "--lrs expects comma-separated numbers"),
        (["adam", "adam"], "optimizer 'adam' is given more than once"),
        (["1:0"], "1:0: the rank of a run's rule starts at 1 (its best), got 0"),
        (["adam", "-o", "."], "cannot use '.': is a directory"),  # before any training, not after
    ],
)
def test_cli_evaluate_bad_input_is_one_line(args: list[str], message: str) -> None:
    result = runner.invoke(app, ["optimizers", "evaluate", *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


@pytest.mark.slow  # a small search, then a board
def test_a_suite_search_run_is_listed_and_plotted_as_a_board(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("L2L_OPTSEARCH_CACHE", str(tmp_path / "cache"))
    storage = ["--storage", f"sqlite:///{tmp_path / 'runs.db'}"]
    space = ["-S", "suite=digits-logreg", "-S", "scale=0.2", "-S", "lrs='0.01,0.1'"]
    search = ["search", "--space", "optimizer", *space, "-n", "4", "-m", "2", "--name", "opt1", "-q", *storage]
    result = runner.invoke(app, search)
    assert result.exit_code == 0, result.output
    top = runner.invoke(app, ["optimizers", "top", "1", "-k", "2", *storage], env={"COLUMNS": "300"})
    assert top.exit_code == 0 and "lr *" in top.output and "rank" in top.output, top.output
    assert "loss ratio to Adam" in top.output and "digits-logreg" in top.output  # not empty test-acc columns
    # a grid of two rates: whichever was chosen is at its edge, marked as `optimizers evaluate` marks it
    assert re.search(r"digits-logreg (0\.01|0\.1)!", top.output) and "at the edge of the run's grid" in top.output
    # LaTeX in a table cell was cut at the terminal's width ("\\left(\\operatorname…"): whole lines now
    latex = runner.invoke(app, ["optimizers", "top", "1", "-k", "1", "--latex", *storage], env={"COLUMNS": "60"})
    line = next(x for x in latex.output.splitlines() if x.startswith("1: "))
    assert "\\eta" in line and "…" not in line and line.count("\\left(") == line.count("\\right)"), latex.output
    # runs top showed the loss ratio to Adam as "val loss": it is named as what it is
    ranked = runner.invoke(app, ["runs", "top", "1", *storage], env={"COLUMNS": "300"}).output
    assert "val loss_ratio" in ranked and "val loss " not in ranked, ranked
    assert "test_acc" not in ranked and "test_loss" not in ranked, ranked  # columns of dashes: a suite's children
    args = ["plot", "optimizer", "1", "--top", "1", "--workers", "1", "-o", str(tmp_path / "out"), *storage]
    plotted = runner.invoke(app, args)
    assert plotted.exit_code == 0, plotted.output
    board = json.loads((tmp_path / "out" / "run1_board.json").read_text())
    assert list(board["cells"]) == ["digits-logreg"] and {"adam", "sgdm"} <= set(board["cells"]["digits-logreg"])
    assert (tmp_path / "out" / "run1_board_profile.png").stat().st_size > 0
    # the run's best rule on the scoreboard, by RUN:RANK (the run by its name: "has 1 tokens ['opt1:1']")
    args = ["optimizers", "evaluate", "opt1:1", "--suite", "digits-logreg", "--seeds", "1", "--lrs", "0.01,0.1"]
    scored = runner.invoke(app, [*args, "--workers", "1", "-o", str(tmp_path / "b.json"), *storage])
    assert scored.exit_code == 0, scored.output
    (entry,) = json.loads((tmp_path / "b.json").read_text())["optimizers"]
    assert entry["label"] == "run1#1" and entry["rule"] == board["optimizers"][0]["rule"]
    missing = runner.invoke(app, ["optimizers", "evaluate", "1:9", *storage])
    assert missing.exit_code == 1 and "1:9 does not exist" in missing.output
    unnamed = runner.invoke(app, ["optimizers", "evaluate", "opt2:1", *storage])
    assert unnamed.exit_code == 1 and "no run 'opt2' in store" in unnamed.output


def test_a_pair_that_breaks_is_a_failed_cell_and_the_board_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    import l2l.optsearch.board as board_module

    real = board_module.tune

    def tune(contender: Contender, task: Any, seeds: int, **kw: Any) -> Any:
        if contender.label == "sgd":
            raise RuntimeError("expected target dtype to be Long")
        return real(contender, task, seeds, **kw)

    monkeypatch.setattr(board_module, "tune", tune)
    contenders = [Contender("sgd", PRESETS["sgd"]), Contender("adam", PRESETS["adam"])]
    board = run_board(contenders, [FAST], seeds=1, lrs=(1e-3, 1e-2))
    cells = board["cells"][FAST.name]
    assert cells["sgd"]["failed"] == "error: RuntimeError: expected target dtype to be Long"
    assert cells["adam"]["failed"] is None and board["winners"][FAST.name] == "adam"


def test_an_interval_past_the_metrics_range_is_shown_clipped_to_it() -> None:
    from l2l.optsearch.board import interval_text

    two_seeds = {"test_mean": 0.2430, "test_ci": 0.3049}  # Student's t with one degree of freedom is wide
    assert interval_text(two_seeds, "accuracy") == "[0.0000, 0.5479]"
    assert interval_text({"test_mean": 0.9817, "test_ci": 0.0635}, "accuracy") == "[0.9182, 1.0000]"
    assert interval_text({"test_mean": 0.5, "test_ci": 0.01}, "accuracy") == "± 0.0100"
    assert interval_text({"test_mean": 1.4732, "test_ci": 5.4918}, "mse") == "[0.0000, 6.9650]"
    assert interval_text({"test_mean": 0.5, "test_ci": None}, "accuracy") == ""  # one seed: the table's title says so


def test_a_heatmap_that_does_not_vary_over_g_and_m_says_so() -> None:
    import matplotlib.pyplot as plt

    from l2l.optsearch.language import parse
    from l2l.optsearch.plots import heatmaps_figure

    rules = [
        parse("1e-1w one identity identity mul"),
        parse("g one sign identity keep"),
        parse("cd rd sqrt identity mul"),
    ]
    fig = heatmaps_figure(rules, n=11, labels=["a", "b", "#3 child 7"])
    flat, varied, schedule = fig.axes[:3]  # the panels, then their colour bars
    (note,) = flat.texts
    assert " ".join(note.get_text().split()) == "the same update, 0, at every (g, m): it reads only 1e-1w (here w = 0)"
    assert not varied.texts
    # "it reads other state (here w = 0)" for a rule of schedules alone, under its formula as written
    (said,) = schedule.texts
    assert " ".join(said.get_text().split()).endswith("it reads only cd, rd (here schedules at their start, 1)")
    assert schedule.get_title() == "#3 child 7: lr * (rd * sqrt|cd|)" and varied.get_title() == "b: lr * sign(g)"
    from l2l.optsearch.plots import flat_note

    said_of = lambda text: " ".join(flat_note(parse(text), 1.0).split())  # noqa: E731
    assert said_of("two one identity identity add").endswith("it reads only constants")  # was "it reads only"
    assert said_of("g g identity identity sub").endswith("what it reads of g and m cancels out")  # not "only g"
    assert said_of("one one identity identity add ; decay=linear").endswith(
        "only constants"
    )  # the lr's decay: not drawn
    assert "(g,\nm)" not in flat_note(parse("g g identity identity sub"), 1.0, width=30)
    renderer = fig.canvas.get_renderer()  # within its panel: it ran under the colour bar, its end cut off
    for ax, text in ((flat, note), (schedule, said)):
        box, panel = text.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1
    plt.close(fig)


def test_ctrl_c_keeps_the_finished_pairs_and_says_what_was_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during `optimizers evaluate` ended the command silently and wrote nothing, finished pairs too."""
    import l2l.optsearch.board as board_module

    real = board_module.tune

    def tune(contender: Contender, task: Any, seeds: int, **kw: Any) -> Any:
        if contender.label == "sgd":
            raise KeyboardInterrupt
        return real(contender, task, seeds, **kw)

    monkeypatch.setattr(board_module, "tune", tune)
    out = tmp_path / "board.json"
    args = ["optimizers", "evaluate", "adam", "sgd", "--suite", "digits-logreg", "--seeds", "1", "--lrs", "0.01"]
    result = runner.invoke(app, [*args, "--workers", "1", "-o", str(out)])
    assert result.exit_code == 130, result.output
    assert f"interrupted after 1 of 2 pairs; wrote the 1 finished to {out}" in " ".join(result.output.split())
    assert "not run" in result.output  # sgd's cell in the table
    board = json.loads(out.read_text())
    assert board["interrupted"] is True and list(board["cells"]["digits-logreg"]) == ["adam"]
    assert board["winners"]["digits-logreg"] == "adam"
    plotted = runner.invoke(app, ["plot", "optimizer", str(out), "-o", str(tmp_path / "plots")])  # was a KeyError
    assert plotted.exit_code == 0, plotted.output


def test_an_output_file_that_cannot_be_created_is_refused_before_any_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-o /proc/b.json` passed the permission check (as root, or on a file system that takes no new files),
    trained every pair, then failed to write: the file is now created, and removed, before any training."""
    import tempfile

    def refuse(**kw: Any) -> Any:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    args = ["optimizers", "evaluate", "adam", "--suite", "digits-logreg", "--seeds", "1", "--lrs", "0.01"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "b.json")])
    assert result.exit_code == 1 and "takes no new files (Read-only file system)" in result.output
    assert "[1/1]" not in result.output and not list(tmp_path.iterdir())
