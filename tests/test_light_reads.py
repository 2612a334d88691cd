"""Reading results needs no torch: `l2l runs ...` on a recorded run, and every built-in space's decisions,
canonical form and description, load neither torch nor a strategy (they took 3 to 5 s to start with it)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

from l2l.runs.store import NewChild, Store
from l2l.search_spaces import load_space
from l2l.search_spaces.api import token_sizes

# spaces read without torch, with the options that add decisions from the torch-side modules
LIGHT_SPACES = [
    ("toy", {}),
    ("mlp", {"low_rank": True, "hashed": True, "predicted": True, "max_layers": 2}),
    ("nb201", {}),
    ("nb201_cell", {}),
    ("macro", {"low_rank": True, "hashed": True, "predicted": True, "layers": 3}),
    ("micro", {"ops": "nasnet"}),
    ("rnn_cell", {"cell": "tree", "low_rank": True, "hashed": True}),
    ("rnn_cell", {"cell": "enas"}),
    ("word_lm", {}),
]

NO_TORCH = """
import sys
from l2l.runs.cli import main
sys.argv = ["l2l", *sys.argv[1:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print()
print("TORCH" if "torch" in sys.modules else "NO-TORCH", code)
"""


def _l2l_without_torch(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "250"}
    done = subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    *shown, verdict = done.stdout.rstrip().splitlines()
    assert verdict == "NO-TORCH 0", (args, verdict, done.stderr)
    return "\n".join(shown)


def _run_of(store: Store, space: str, options: dict[str, object]) -> int:
    """A finished run of ``space`` with 6 children (one architecture evaluated twice, one failed)."""
    built = load_space(space, options)
    sizes = token_sizes(built.decisions())
    draw = random.Random(0)
    tokens = [tuple(draw.randrange(s) for s in sizes) for _ in range(5)]
    tokens.append(tokens[0])
    config = {"space_options": options, "executor": "local", "executor_options": {}}
    run = store.create_run(space=space, strategy="random", config=config, seed=0, n_children=6, code_version="t")
    kids = [NewChild(n, n, t, built.decode(t).to_json(), 0.0, 0.0, 0) for n, t in enumerate(tokens)]
    store.add_children(run, kids)
    for n in range(5):
        result = {"status": "done", "reward": 0.5 + n / 100, "val_acc": 0.5 + n / 100, "cost": {"params": 1000 + n}}
        store.finish_child(run, n, result, 0.5)
    store.finish_child(run, 5, {"status": "failed", "error": "ChildDiverged: the loss is nan at step 3"}, 0.0)
    store.set_run_status(run, "done")
    return run


def test_reading_a_run_loads_no_torch(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'read.db'}"
    store = Store(storage)
    run = _run_of(store, "mlp", {"low_rank": True, "hashed": True, "predicted": True, "max_layers": 2})
    store.close()
    listed = _l2l_without_torch("runs", "list", "--storage", storage)
    assert f"{run} " in listed and "mlp" in listed
    assert "0.5400" in _l2l_without_torch("runs", "top", str(run), "--storage", storage)
    assert "0.5400" in _l2l_without_torch("runs", "best", str(run), "--storage", storage)
    assert "architecture: 64relu[hashed 0.05]" in _l2l_without_torch(
        "runs", "child", str(run), "0", "--storage", storage
    )
    assert "the loss is nan at step 3" in _l2l_without_torch("runs", "child", str(run), "5", "--storage", storage)
    _l2l_without_torch("runs", "show", str(run), "--storage", storage)
    exported = json.loads(_l2l_without_torch("runs", "export", str(run), "--format", "json", "--storage", storage))
    assert len(exported["children"]) == 6
    # a mistake is still one line (the domain errors of modules never loaded are not looked for)
    done = subprocess.run(
        [sys.executable, "-c", NO_TORCH, "runs", "best", "999", "--storage", storage], capture_output=True, text=True
    )
    assert "error: no run 999" in done.stderr and done.stdout.split()[-2:] == ["NO-TORCH", "1"]


LIGHT = """
import random, sys, json
from l2l.search_spaces import load_space
from l2l.search_spaces.api import token_sizes
for name, options in json.loads(sys.argv[1]):
    space = load_space(name, options)
    draw = random.Random(0)
    for _ in range(20):
        spec = space.decode([draw.randrange(n) for n in token_sizes(space.decisions())])
        space.canonical(spec), space.describe(spec), space.graph(spec)
print("TORCH" if "torch" in sys.modules else "NO-TORCH")
"""


def test_every_built_in_space_is_read_without_torch() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LIGHT, json.dumps(LIGHT_SPACES)], capture_output=True, text=True, timeout=120
    )
    assert done.stdout.strip() == "NO-TORCH", done.stderr


def test_the_choices_the_spaces_offer_are_the_ones_the_builders_build() -> None:
    """nas/genotypes.py names what the torch modules build: every name a space can offer builds."""
    from l2l.nas import genotypes, micro, rnn_cells

    assert set(genotypes.RNN_ACTIVATIONS) == set(rnn_cells.ACTIVATION_FUNCTIONS)
    assert set(genotypes.RNN_COMBINE) == set(rnn_cells.COMBINE_FUNCTIONS)
    for ops in genotypes.OP_SETS.values():
        for op in ops:
            assert micro.make_op(op, 4, 1, 1) is not None
    for share in genotypes.PREDICT_CHOICES[1:] + genotypes.RANK_CHOICES[1:] + genotypes.ACTIVE_CHOICES:
        assert 0 < genotypes.fraction(share, "unknown", "share") <= 1


def test_the_cli_knows_where_each_domain_error_lives() -> None:
    """The CLI finds the domain errors among the modules loaded, by name: a moved or renamed one would be
    printed as a traceback again."""
    import importlib

    from l2l.runs.cli.common import DOMAIN_ERRORS, domain_error

    for module, name in DOMAIN_ERRORS.items():
        cls = getattr(importlib.import_module(module), name)
        assert issubclass(cls, Exception) and domain_error(cls("x")), (module, name)
    assert not domain_error(KeyError("x"))


def test_a_child_limits_torchs_threads_whether_or_not_torch_is_loaded_yet() -> None:
    """`run_child` gives a child one intra-op thread (or as many as asked) without loading torch itself: a
    worker whose space never uses torch skips its import; one that imports it in `evaluate` still gets the count."""
    script = """
import sys
from l2l.runs.executors import ChildTask, run_child
from l2l.search_spaces import Context, Decision, Result, SearchSpace

class Late(SearchSpace):
    name = "late"
    def decisions(self):
        return [Decision.categorical("x", ["a"])]
    def evaluate(self, spec, ctx):
        loaded = "torch" in sys.modules
        import torch
        return Result(reward=1.0, info={"loaded_before": loaded, "threads": torch.get_num_threads()})

space = Late()
first = run_child(space, ChildTask(0, space.decode((0,)), Context(child=0, threads=1))).info
second = run_child(space, ChildTask(1, space.decode((0,)), Context(child=1, threads=3))).info
print(first["loaded_before"], first["threads"], second["loaded_before"], second["threads"])
"""
    # torch's own default is every core: the first child's one thread comes from the environment l2l set
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "MKL_DYNAMIC")}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.split() == ["False", "1", "True", "3"], out.stderr[-2000:]
