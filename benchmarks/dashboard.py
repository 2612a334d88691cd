"""How fast `l2l dashboard` answers on a big run: a store of 100,000 children (written straight into the tables, in
seconds); the run page opened as a browser opens it (the page, then its JSON requests at once, on a freshly
started server); and each endpoint timed on its own, cold (first request) and warm.

    python -m benchmarks.dashboard                 # 100,000 children
    python -m benchmarks.dashboard --children 20000

Prints a Markdown table and writes benchmarks/results/dashboard.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from benchmarks.common import print_table, write_json
from l2l.runs.models import ChildRow, UpdateRow
from l2l.runs.store import Store

# what the run page asks for when it opens (the arch drawing is left out: matplotlib draws it once, then it is cached)
ENDPOINTS = (
    "/runs/{run}",
    "/api/runs",
    "/api/runs/{run}",
    "/api/runs/{run}/progress",
    "/api/runs/{run}/children?page=1&per=25&sort=number",
    "/api/runs/{run}/children?page=2000&per=25&sort=reward&order=desc",
    "/api/runs/{run}/children?status=failed&q=exploded",
    "/api/runs/{run}/pareto",
    "/api/runs/{run}/best",
)
CHUNK = 5000


def build_store(path: Path, children: int, seed: int = 0) -> tuple[str, int]:
    """A store at ``path`` holding one `toy` run of ``children`` finished children (5% failed with a traceback) and
    an update per 4 children, inserted in bulk; returns its URL and the run id."""
    from l2l.search_spaces import load_space

    url = f"sqlite:///{path}"
    store = Store(url)
    space = load_space("toy", {}, validate=False)
    run = store.create_run(
        space="toy", strategy="reinforce", config={"space_options": {}}, seed=seed, n_children=children,
        code_version="bench", name="dashboard benchmark",
    )  # fmt: skip
    rng = random.Random(seed)
    sizes = [d.n_choices for d in space.decisions() for _ in range(d.width)]
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with store.connection_scope("bulk insert") as conn:
        for lo in range(0, children, CHUNK):
            rows = []
            for n in range(lo, min(children, lo + CHUNK)):
                tokens = [rng.randrange(k) for k in sizes]
                failed = rng.random() < 0.05
                reward = None if failed else min(1.0, rng.gauss(0.5 + 0.4 * n / children, 0.1))
                flops = float(rng.randrange(10**5, 10**7))
                when = start + timedelta(seconds=n)
                rows.append(
                    {
                        "run_id": run, "number": n, "batch": n // 4, "tokens": tokens,
                        "spec": space.decode(tokens).to_json(), "status": "failed" if failed else "done",
                        "reward": reward, "controller_reward": reward if reward is not None else 0.0,
                        "val_acc": reward, "val_loss": None if reward is None else 1 - reward,
                        "metrics": {
                            "test": {}, "cost": {"flops": flops, "params": flops / 10}, "info": {},
                            "runtime": {"worker": f"w{n % 8}", "device": "cpu"},
                        },
                        "curves": {"train_loss": [1.0, 0.7, 0.5], "val_acc": [0.3, 0.4, reward or 0.0]},
                        "error": "Traceback (most recent call last):\nRuntimeError: child exploded" if failed else None,
                        "worker": f"w{n % 8}", "device": "cpu", "log_prob": -3.0, "entropy": 2.0,
                        "policy_version": n // 4, "attempts": 1, "wall_time": 1.0 + rng.random(),
                        "queued_at": when, "started_at": when, "finished_at": when + timedelta(seconds=1),
                    }
                )  # fmt: skip
            conn.execute(insert(ChildRow), rows)
        conn.execute(
            insert(UpdateRow),
            [
                {
                    "run_id": run, "batch": b, "policy_version": b + 1, "loss": rng.gauss(0, 1), "baseline": 0.5,
                    "mean_reward": 0.5, "entropy": 2.0 - b / children, "n_children": 4, "extra": {},
                    "created_at": start,
                }
                for b in range(children // 4)
            ],
        )  # fmt: skip
    store.close()
    return url, run


def time_endpoints(url: str, run: int, repeats: int = 3) -> list[dict[str, Any]]:
    """Seconds each endpoint takes through the whole app (routing, the store, JSON): the first request and the
    median of ``repeats`` more."""
    from starlette.testclient import TestClient

    from l2l.runs.dashboard.app import create_app

    client = TestClient(create_app(url))
    out = []
    for pattern in ENDPOINTS:
        path = pattern.format(run=run)
        times, size = [], 0
        for _ in range(1 + repeats):
            t = time.perf_counter()
            response = client.get(path)
            times.append(time.perf_counter() - t)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
            size = len(response.content)
        out.append({"path": path, "first_s": times[0], "warm_s": statistics.median(times[1:]), "bytes": size})
    return out


# what the run page's script asks for as it opens, all at once, after the page itself
OPENING = ("/api/runs/{run}", "/api/runs/{run}/progress", "/api/runs/{run}/children?page=1&per=25&sort=number",
           "/api/runs/{run}/pareto", "/api/runs/{run}/best")  # fmt: skip


def time_page_open(url: str, run: int) -> float:
    """Seconds from asking a freshly started dashboard (uvicorn on a free port, nothing cached) for the run page
    until it and every JSON answer its script asks for at once have arrived, as a browser opening it would."""
    import threading
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn

    from l2l.runs.dashboard.app import create_app
    from l2l.runs.dashboard.server import free_port

    port = free_port()
    app = create_app(url)
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    app.state.warming.join()  # started: what a user opening the page a moment later meets

    def get(path: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path.format(run=run)}", timeout=60) as answer:
            return len(answer.read())

    try:
        t = time.perf_counter()
        get("/runs/{run}")
        with ThreadPoolExecutor(len(OPENING)) as pool:
            list(pool.map(get, OPENING))
        return time.perf_counter() - t
    finally:
        server.should_exit = True
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--children", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="l2l-dash-") as tmp:
        t = time.perf_counter()
        url, run = build_store(Path(tmp) / "big.db", args.children)
        built = time.perf_counter() - t
        opened = time_page_open(url, run)
        rows = time_endpoints(url, run)
    print(f"store of {args.children} children built in {built:.1f} s")
    print(f"run page opened (the page, then its {len(OPENING)} JSON requests at once, nothing cached): {opened:.3f} s")
    print_table(
        ["request", "first (s)", "warm (s)", "KB"],
        [[r["path"], f"{r['first_s']:.3f}", f"{r['warm_s']:.3f}", f"{r['bytes'] / 1024:.0f}"] for r in rows],
    )
    worst = max(r["first_s"] for r in rows)
    print(f"slowest first answer: {worst:.3f} s")
    path = write_json(
        "dashboard",
        {
            "children": args.children,
            "build_s": built,
            "page_open_s": opened,
            "endpoints": rows,
            "slowest_first_s": worst,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
