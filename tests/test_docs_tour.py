"""Every command of docs/cli.md's tour runs, in order, with small budgets: no tour line breaks unnoticed.

The commands are read from the page's ```bash blocks (and its ```toml block is the config file they use);
budgets are shrunk (2 children, 1 epoch), the run numbers the page names are mapped to runs made here,
and the executor is the local one except on the line that shows Ray's flags.
"""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from l2l.runs.cli import app
from tests.conftest import PLUGINS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "cli.md"
# lines left out, and why: each retrains for minutes by design (its own tests cover it with small budgets)
SKIP = {"l2l plot optimizer": "retrains the best rules and tuned baselines (tests/test_cli.py runs it small)"}
BUDGETS = {  # per space: the smallest training that still runs every part of a child
    "mlp": ("epochs=1", "max_layers=1"),
    "micro": ("epochs=1", "channels=4"),
    "nb201_cell": ("epochs=1",),
    "rnn_cell": ("steps=3", "hidden=16"),
    "optimizer": ("epochs=1", "lrs=0.01"),
}
SHRINK = [  # (pattern, replacement) on every line
    (r"(--children|-n) \d+", r"\1 2"),
    (r"(--batch|-m) \d+", r"\1 2"),
    (r"epochs=\d+", "epochs=1"),
    (r"--epochs \d+", "--epochs 1"),
    (r"--steps \d+", "--steps 5"),
    (r"--child-timeout \d+", "--child-timeout 120"),
    (r"--max-concurrent \d+", "--max-concurrent 2"),
    (r"-k \d+", "-k 2"),
    (r"--seeds \d+", "--seeds 1"),
    (r"--suite heldout", "--suite mnist1d-logreg"),  # one held-out task, the cheapest
    (r"postgresql\+psycopg://user@dbhost:5432/l2l", "sqlite:///team.db"),  # the team's server: a file here
]


def tour_lines(text: str) -> list[str]:
    """The `l2l` commands of a page's ```bash blocks, continuation lines joined, comments dropped."""
    lines = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE):
        for line in block.replace("\\\n", " ").splitlines():
            command = shlex.split(line, comments=True)
            if command and command[0] == "l2l":
                lines.append(" ".join(shlex.quote(w) for w in command))
    return lines


def shrink(line: str, runs: dict[str, int]) -> list[str]:
    for pattern, replacement in SHRINK:
        line = re.sub(pattern, replacement, line)
    args = shlex.split(line)[1:]
    if args[0] == "search":
        sharing = "--weight-sharing" in args  # runs in this process for its epochs: no children, no executor
        if "--children" not in args and "-n" not in args and "--resume" not in args and not sharing:
            args += ["--children", "2"]
        if "--batch" not in args and "-m" not in args and "--resume" not in args:
            args += ["--batch", "2"]
        ray_line = "--max-concurrent" in args or "--config" in args  # the config file sets Ray options
        if not ray_line and "--executor" not in args and "--resume" not in args and not sharing:
            args += ["--executor", "local"]
        space = next((args[i + 1] for i, a in enumerate(args) if a == "--space"), "" if "--resume" in args else "mlp")
        given = {a.split("=")[0] for a in args}
        args += [w for option in BUDGETS.get(space, ()) if option.split("=")[0] not in given for w in ("-S", option)]
        if "--weight-sharing" in args:  # two short epochs of shared weights, one controller update
            args += [w for s in ("epochs=2", "steps=5", "controller_steps=1", "derive=2") for w in ("-W", s)]
        args.append("--quiet")
    # RUN arguments: the page's numbers stand for runs of a kind (an optimizer run, a run with costs, ...)
    if args[0] in ("runs", "plot", "optimizers") and len(args) > 2 and args[2].isdigit():
        kind = {"optimizers": "optimizer", "pareto": "cells", "arch": "cells"}.get(args[0], args[1])
        if "--steps" in args:
            kind = "language"
        args[2] = str(runs.get(kind, runs["any"]))
    if args[:2] == ["optimizers", "evaluate"]:  # RUN:RANK names a rule of an optimizer run
        args = [re.sub(r"^\d+:", f"{runs.get('optimizer', runs['any'])}:", a) for a in args]
    if "--resume" in args:
        args[args.index("--resume") + 1] = str(runs["any"])
    return args


@pytest.mark.slow
def test_the_cli_tour_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = DOC.read_text()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("L2L_STORAGE", f"sqlite:///{tmp_path / 'tour.db'}")
    (toml,) = re.findall(r"^```toml\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)
    (tmp_path / "search.toml").write_text(re.sub(r"children = \d+", "children = 2", toml).replace("= 10", "= 2"))
    (tmp_path / "path" / "to").mkdir(parents=True)
    (tmp_path / "path" / "to" / "my_space.py").write_text((PLUGINS / "spaces.py").read_text())
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    bench = ROOT / "benchmarks" / "results" / "nb201_cifar10.json"
    (tmp_path / "benchmarks" / "results" / "nb201_cifar10.json").write_text(bench.read_text())
    runner, runs, times = CliRunner(), {"any": 1}, []
    lines = [line for line in tour_lines(text) if not any(line.startswith(s) for s in SKIP)]
    # the searches first, in the page's order, so every other line finds a run of the kind it shows
    lines = [x for x in lines if x.startswith("l2l search")] + [x for x in lines if not x.startswith("l2l search")]
    assert len(lines) >= 30, lines  # the page's tour, not a stray block
    made = 0
    for line in lines:
        args = shrink(line.replace("path/to/my_space.py:MySpace", "path/to/my_space.py:Flaky"), runs)
        started = time.perf_counter()
        result = runner.invoke(app, args)
        times.append((time.perf_counter() - started, line))
        resumed_done = "--resume" in args and "nothing to resume" in result.output
        assert result.exit_code == 0 or resumed_done, f"{line}\n  ran as: l2l {' '.join(args)}\n{result.output}"
        if args[0] == "search" and "--resume" not in args:
            made += 1
            space = next((args[i + 1] for i, a in enumerate(args) if a == "--space"), "mlp")
            kind = {"optimizer": "optimizer", "rnn_cell": "language", "nb201_cell": "cells", "micro": "cells"}
            runs.setdefault("shared" if "--weight-sharing" in args else kind.get(space, "any"), made)
    for seconds, line in sorted(times, reverse=True):
        print(f"{seconds:6.1f} s  {line}")
