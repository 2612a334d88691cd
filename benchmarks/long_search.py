"""Driver cost and store size of long searches of the instant `toy` space, against Optuna's TPE on an RDB storage.

python -m benchmarks.long_search [--marks 1000,10000,100000] [--strategies reinforce+screen,tpe,evolution]
    [--cap tpe=10000] [--ray-children 10000] [--optuna-children 10000] [--toy ops=8,sizes=8]

Each strategy runs one search of ``max(marks)`` children (``--cap`` lowers it for one strategy) with
``--executor local`` on a SQLite store; the children cost nothing, so the time per child is the
driver's: controller propose and update, surrogate fit, store writes. "ms per child at k" is the mean
over the last tenth of the children before k. Store bytes per child are the SQLite file's (WAL
included) over the children recorded. The same runs with the Ray executor go to ``--ray-children``;
Optuna's TPE (its own `Study`, the same decisions as categorical parameters, the same reward) on a
SQLite RDB storage to ``--optuna-children``. The default toy space (13,824 sequences) holds fewer
sequences than a long run has children, after which a strategy that never repeats can only repeat: the
benchmark uses ``ops=8,sizes=8`` (2,097,152 sequences, the same 9 tokens).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import print_table, write_json
from l2l.runs.search import BatchEvent, ChildEvent, NoticeEvent, Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, load_space


def store_bytes(path: Path) -> int:
    """The SQLite file and its write-ahead log."""
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


def per_child_ms(times: dict[int, float], marks: Sequence[int]) -> dict[int, float]:
    """Mean ms per child over the last tenth of the children before each mark reached (``times``: done -> s)."""
    done = sorted(times)
    out = {}
    for mark in marks:
        if not done or done[-1] < mark:
            continue
        end = min(d for d in done if d >= mark)
        start = max((d for d in done if d <= end - max(1, mark // 10)), default=0)
        begin = times.get(start, 0.0)
        out[mark] = 1000.0 * (times[end] - begin) / (end - start)
    return out


# children per update: the figures in benchmarks/README.md were measured at 10 for every strategy (the
# default before strategies had their own); `l2l search` now uses 4 for reinforce+screen and 1 for evolution
BATCH = 10


def l2l_run(strategy: str, children: int, executor: str, toy: dict[str, int], folder: Path) -> dict[str, Any]:
    """One search; the time at which each number of finished children was reached, and the store's size."""
    path = folder / f"{strategy.replace('+', '_')}-{executor}.db"
    store = Store(f"sqlite:///{path}")
    times: dict[int, float] = {}
    finished = 0
    started = time.perf_counter()

    def listen(event: ChildEvent | BatchEvent | NoticeEvent) -> None:
        nonlocal finished
        if isinstance(event, ChildEvent):
            finished += 1
            times[finished] = time.perf_counter() - started

    options: dict[str, Any] = {"num_cpus": 2} if executor == "ray" else {}
    config = SearchConfig(
        space="toy", space_options=toy, strategy=strategy, children=children, executor=executor,
        executor_options=options, seed=0, batch=BATCH,
    )  # fmt: skip
    search = Search.start(store, config, listener=listen)
    started = time.perf_counter()
    run = search.run()
    best = store.top_children(run, 1)[0].reward
    store.close()
    return {"times": times, "bytes": store_bytes(path), "children": children, "best": best}


def optuna_run(children: int, toy: dict[str, int], folder: Path) -> dict[str, Any]:
    """Optuna's TPE with an RDB (SQLite) storage on the same decisions and reward."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space("toy", toy)
    names = [
        (d.name if d.kind == "categorical" else f"{d.name}.{j}", d.n_choices)
        for d in space.decisions()
        for j in range(max(d.width, 0))
    ]
    path = folder / "optuna.db"
    study = optuna.create_study(
        storage=f"sqlite:///{path}", direction="maximize", sampler=optuna.samplers.TPESampler(seed=0)
    )
    times: dict[int, float] = {}
    started = time.perf_counter()

    def objective(trial: optuna.Trial) -> float:
        tokens = tuple(int(trial.suggest_categorical(name, list(range(k)))) for name, k in names)
        return space.evaluate(space.decode(tokens), Context(child=trial.number, seed=trial.number)).reward

    def note(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        times[trial.number + 1] = time.perf_counter() - started

    study.optimize(objective, n_trials=children, callbacks=[note])
    return {"times": times, "bytes": store_bytes(path), "children": children, "best": study.best_value}


def parse_toy(text: str) -> dict[str, int]:
    """``ops=8,sizes=8`` -> {"ops": 8, "sizes": 8}."""
    return {k: int(v) for k, v in (item.split("=", 1) for item in text.split(",") if item)}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--marks", default="1000,10000,100000", help="children at which to report ms per child")
    parser.add_argument("--strategies", default="reinforce+screen,tpe,evolution")
    parser.add_argument("--cap", action="append", default=[], help="STRATEGY=N: at most N children for it")
    parser.add_argument("--ray-children", type=int, default=10_000, help="0: no Ray runs")
    parser.add_argument("--optuna-children", type=int, default=10_000, help="0: no Optuna baseline")
    parser.add_argument("--toy", default="ops=8,sizes=8", help="toy space options")
    parser.add_argument("--name", default="long_search", help="write benchmarks/results/NAME.json")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here instead")
    args = parser.parse_args(argv)
    marks = sorted(int(m) for m in args.marks.split(","))
    caps = {k: int(v) for k, v in (c.split("=", 1) for c in args.cap)}
    toy = parse_toy(args.toy)
    folder = Path(tempfile.mkdtemp(prefix="l2l-long-"))
    runs: list[tuple[str, str, Callable[[], dict[str, Any]]]] = []
    for strategy in args.strategies.split(","):
        n = min(caps.get(strategy, marks[-1]), marks[-1])
        runs.append((strategy, "local", functools.partial(l2l_run, strategy, n, "local", toy, folder)))
        if args.ray_children:
            m = min(args.ray_children, caps.get(strategy, args.ray_children))
            runs.append((strategy, "ray", functools.partial(l2l_run, strategy, m, "ray", toy, folder)))
    if args.optuna_children:
        runs.append(
            ("optuna tpe (RDB)", "in-process", functools.partial(optuna_run, args.optuna_children, toy, folder))
        )
    rows, results = [], []
    for label, executor, fn in runs:
        out = fn()
        ms = per_child_ms(out["times"], marks)
        results.append({"strategy": label, "executor": executor, "ms_per_child": ms, **out, "times": None})
        cells = [f"{ms[m]:.2f}" if m in ms else "-" for m in marks]
        kb = out["bytes"] / out["children"] / 1024
        rows.append([label, executor, out["children"], *cells, f"{kb:.2f}", f"{out['best']:.3f}"])
        print(f"{label} ({executor}): {out['children']} children done", flush=True)
    print(f"toy space {toy}; driver ms per child (mean over the last tenth before each mark)")
    print_table(
        ["strategy", "executor", "children", *(f"ms/child at {m:,}" for m in marks), "store KB/child", "best"], rows
    )
    payload = {"marks": marks, "toy": toy, "results": results}
    if args.out is not None:
        args.out.write_text(json.dumps(payload, indent=2))
    else:
        print(f"wrote {write_json(args.name, payload)}")
    for p in folder.iterdir():
        os.remove(p)
    folder.rmdir()
    return payload


if __name__ == "__main__":
    main()
