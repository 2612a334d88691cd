"""`l2l dashboard` without a browser: its pages and JSON through Starlette's test client, read-only access that never
blocks the writer, escaping, paging, the optimizer and weight-sharing parts, speed on a big store, and
`l2l search --dashboard`. The browser tests are in test_dashboard_browser.py."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from l2l.runs.cli import app
from l2l.runs.dashboard import bind_warning
from l2l.runs.dashboard.reader import Reader
from l2l.runs.dashboard.series import best_so_far, by_architecture, extremes, pareto
from l2l.runs.driver import this_driver
from l2l.runs.plots import pareto_front
from l2l.runs.store import NewChild, RunNotFound, ScoredChild, Store, StoreError
from l2l.search_spaces import Spec

PLUGIN = Path(__file__).parent / "plugins" / "dashboard_space.py"
MARKUP = "<script>window.pwned=1</script><b>bold</b>"
# (op1, op2, unary1, unary2, binary, decay) of a few update rules: SGD, Adam, sign(g) * sign(m) * g
RULES = [
    ("g", "g", "identity", "identity", "keep", "none"),
    ("adam", "g", "identity", "identity", "keep", "none"),
    ("sign_g", "sign_m", "identity", "identity", "mul", "linear"),
]

# two token sequences of the `toy` space: two architectures
TOY_A = (3, 1, 0, 1, 1, 3, 1, 1, 1)
TOY_B = (0, 1, 0, 1, 1, 3, 1, 1, 1)


def finish(store: Store, run: int, children: list[tuple[int, tuple[int, ...], float, dict[str, Any]]]) -> None:
    """Record `toy` children (number, tokens, reward, more of their result) as done."""
    from l2l.search_spaces import load_space

    toy = load_space("toy", {})
    store.add_children(run, [NewChild(n, n, t, toy.decode(t).to_json(), -1.0, 1.0, 0) for n, t, _, _ in children])
    for n, _, reward, more in children:
        store.finish_child(run, n, {"status": "done", "reward": reward, **more}, reward)


def record_updates(store: Store, run: int, stats: list[tuple[float, float]]) -> None:
    """Record controller updates of (loss, entropy)."""
    for version, (loss, entropy) in enumerate(stats, start=1):
        row: dict[str, Any] = {"loss": loss, "baseline": None, "mean_reward": 0.5, "entropy": entropy,
                               "policy_version": version, "n": 1, "extra": {}}  # fmt: skip
        store.record_update(run, version - 1, row, b"x", next_child=version)


def marked_search(storage: str, children: int = 16, delay: float = 0.0) -> list[str]:
    """The `l2l search` arguments of a random search of the test space `Marked` (failures, markup, costs)."""
    return [
        "search", "--space", f"{PLUGIN}:Marked", "-S", f"delay={delay}", "--strategy", "random",
        "-n", str(children), "--executor", "local", "-q", "--storage", storage, "--name", "<i>marked</i>",
    ]  # fmt: skip


def add_optimizer_run(store: Store) -> int:
    """An optimizer-search run whose children were recorded without training (their rules are what matters)."""
    names = ("u1_op1", "u1_op2", "u1_unary1", "u1_unary2", "u1_binary", "decay")
    run = store.create_run(
        space="optimizer", strategy="random", config={"space_options": {}}, seed=0, n_children=len(RULES),
        code_version="test", name="rules",
    )  # fmt: skip
    specs = [Spec(space="optimizer", choices=tuple(zip(names, values, strict=True))) for values in RULES]
    store.add_children(run, [NewChild(n, n, (n,) + (0,) * 5, s.to_json(), -1.0, 1.0, 0) for n, s in enumerate(specs)])
    for n in range(len(RULES)):
        acc = 0.5 + 0.1 * n
        result = {
            "status": "done", "reward": acc, "val_acc": acc, "val_loss": 1 - acc,
            "cost": {"params": 1000.0, "train_time_s": 1.0 + n}, "test": {"test_acc": acc - 0.01},
            "curves": {"train_loss": [1.0, 0.6, 0.4], "val_acc": [0.3, 0.4, acc]}, "info": {"best_lr": 0.01},
        }  # fmt: skip
        store.finish_child(run, n, result, acc)
    store.set_run_status(run, "done")
    return run


@pytest.fixture(scope="module")
def marked_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with a finished search of `Marked` (run 1) and an optimizer run (run 2)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'store.db'}"
    out = CliRunner().invoke(app, marked_search(url))
    assert out.exit_code == 0, out.output
    store = Store(url)
    add_optimizer_run(store)
    store.close()
    return url


@pytest.fixture(scope="module")
def client(marked_store: str) -> Iterator[TestClient]:
    from l2l.runs.dashboard.app import create_app

    with TestClient(create_app(marked_store)) as c:
        yield c


def test_every_page_and_endpoint_answers(client: TestClient) -> None:
    for path in (
        "/", "/runs/1", "/runs/1/children/0", "/runs/2", "/api/runs", "/api/runs/1", "/api/runs/1/progress",
        "/api/runs/1/children", "/api/runs/1/pareto", "/api/runs/1/best", "/api/runs/1/epochs",
        "/api/runs/1/children/0", "/api/compare?runs=1,2", "/static/dashboard.js", "/vendor/plotly.min.js",
    ):  # fmt: skip
        assert client.get(path).status_code == 200, path
    assert client.get("/runs/99").status_code == 404
    for endpoint in ("", "/progress", "/children", "/pareto", "/best", "/epochs"):  # never an empty 200
        missing = client.get(f"/api/runs/99{endpoint}")
        assert missing.status_code == 404 and missing.json()["error"].startswith("no run 99 in store"), endpoint
    assert client.get("/api/runs/1/children/999").json()["error"] == "run 1 has no child 999"
    summary = client.get("/api/runs/1").json()
    assert summary["done"] + summary["failed"] == 16 and summary["state"] == "done" and not summary["live"]
    progress = client.get("/api/runs/1/progress").json()
    assert progress["children"]["of"] == summary["done"] and progress["failed"]["of"] == summary["failed"]
    assert progress["best"]["y"][-1] == pytest.approx(summary["best"])
    assert client.get("/api/runs/1/pareto").json()["cost"] == "params"


def test_the_pareto_chart_has_one_point_per_architecture_at_its_mean() -> None:
    points = [(10.0, 0.60, 0), (100.0, 0.80, 1), (10.0, 0.70, 2), (20.0, 0.5, 3)]
    grouped = by_architecture(points, {0: "cheap", 1: "dear", 2: "cheap"})  # child 3: no key, its own point
    assert grouped == [(10.0, pytest.approx(0.65), 0), (100.0, 0.80, 1), (20.0, 0.5, 3)]
    assert [n for _, _, n in pareto_front(grouped)] == [0, 1]  # the luckier draw (child 2, 0.70) is not the front


def test_what_came_from_a_plugin_or_a_user_is_escaped(client: TestClient, marked_store: str) -> None:
    reader = Reader(marked_store)
    marked = [c for c in reader.top(reader.run(1), 16) if dict(map(tuple, c.spec["values"]))["label"] == MARKUP]
    assert marked, "the search sampled no child with the markup label"
    page = client.get(f"/runs/1/children/{marked[0].number}")
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page.text
    assert "<script>window.pwned" not in page.text and "<b>bold" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    runs = client.get("/").text
    assert "&lt;i&gt;marked&lt;/i&gt;" in runs and "<i>marked" not in runs
    assert client.get("/api/runs").headers["content-type"] == "application/json"


def test_children_are_paged_sorted_and_filtered_by_the_server(client: TestClient, marked_store: str) -> None:
    store = Store(marked_store)
    by_reward = [c.number for c in store.top_children(1, 100)]
    page = client.get("/api/runs/1/children?per=3&page=2&sort=reward&order=desc").json()
    assert [r["number"] for r in page["rows"]] == by_reward[3:6]
    failed = client.get("/api/runs/1/children?status=failed").json()
    assert failed["total"] == store.count_children(1)["failed"] > 0
    assert all(r["status"] == "failed" and "exploded" in r["error"] for r in failed["rows"])
    assert client.get("/api/runs/1/children?q=exploded").json()["total"] == failed["total"]
    assert client.get("/api/runs/1/children?q=window.pwned").json()["total"] > 0  # found in the spec
    # request text is never SQL: an unknown sort key is refused by name, wildcards and quotes are plain text
    injected = client.get("/api/runs/1/children", params={"sort": "reward; DROP TABLE children", "per": 100})
    assert injected.status_code == 400 and injected.json()["error"].startswith(
        "unknown sort 'reward; DROP TABLE children'; known: number, "
    )
    assert client.get("/api/runs/1/children", params={"q": "%' OR '1'='1"}).json()["total"] == 0
    assert client.get("/api/runs/1/children?q=%25").json()["total"] == 0
    assert store.count_children(1)["done"] + store.count_children(1)["failed"] == 16
    # numbers that are not plain decimal integers >= 1 are a 400 naming them (they quietly became page 1)
    for odd in ("--1", "\u00b2", "1e3", "\u0661", "x", "0"):
        answer = client.get("/api/runs/1/children", params={"page": odd})
        assert answer.status_code == 400, odd
        assert answer.json() == {"error": f"page must be a whole number >= 1, got {odd!r}"}
    assert client.get("/api/runs?page=x").json() == {"error": "page must be a whole number >= 1, got 'x'"}
    assert client.get("/?page=0").status_code == 400  # the page says it too
    assert client.get("/api/runs/1/children?per=1000").json()["per"] == 200  # at most a page of 200
    bad_order = client.get("/api/runs/1/children?order=up")
    assert bad_order.status_code == 400 and bad_order.json() == {"error": "unknown order 'up'; known: asc, desc"}
    refused = client.get("/api/compare", params={"runs": "1,\u00b2,x"})  # was a 200 with the odd ones dropped
    said = "runs must be run ids separated by commas, got '\u00b2'"
    assert refused.status_code == 400 and refused.json() == {"error": said}
    # a path no endpoint serves: a 404 naming it, as JSON under /api/ (it was a bare text/plain "Not Found")
    lost = client.get("/api/runs/abc")
    assert lost.status_code == 404 and lost.json() == {"error": "nothing here: /api/runs/abc"}


def test_children_handed_out_are_split_as_runs_show_splits_them(tmp_path: Path) -> None:
    """The card said "running / queued 4 / 0" where `l2l runs show` said 2 running, 2 waiting at a worker."""
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.store import NewChild

    url = f"sqlite:///{tmp_path / 'handed.db'}"
    store = Store(url)
    config = {"executor": "ray", "executor_options": {"max_concurrent": 2}}
    run = store.create_run(space="toy", strategy="random", config=config, seed=0, n_children=6, code_version="t")
    store.add_children(run, [NewChild(n, 0, (0,), {}, 0.0, 0.0, 0) for n in range(4)], running=True)
    summary = TestClient(create_app(url)).get(f"/api/runs/{run}").json()
    assert summary["in_flight"] == "2 running, 2 waiting at a worker"


def test_a_child_page_shows_figures_rounded_and_all_metrics_exact(tmp_path: Path) -> None:
    """The child page printed val loss 0.13258861541748046 and flops 864.000."""
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.store import NewChild

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    store.add_children(run, [NewChild(0, 0, (0,), {"space": "toy", "values": [["op_0", "op1"]]}, 0.0, 0.0, 0)])
    result = {"status": "done", "reward": 0.5, "val_loss": 0.13258861541748046, "cost": {"flops": 864.0}}
    store.finish_child(run, 0, {**result, "test": {"test_acc": 0.9633333333333334}}, 0.5)
    page = TestClient(create_app(url)).get(f"/runs/{run}/children/0").text
    assert "0.1326" in page and "864</td>" in page and "0.9633</td>" in page
    assert "0.9633333333333334" in page  # under "all metrics", exact


def test_a_weight_sharing_run_counts_what_its_epochs_score(tmp_path: Path) -> None:
    """Its totals read "done 0, total 140": 40 architectures to score with the shared weights and 100 derive
    candidates, none of them trained."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'ws.db'}"
    config = {"weight_sharing": {"epochs": 2, "derive": 100}, "children": 100, "executor": "local", "seed": 0}
    run = Store(url).create_run(space="toy", strategy="random", config=config, seed=0, n_children=140, code_version="t")
    client = TestClient(create_app(url))
    summary = client.get(f"/api/runs/{run}").json()
    assert summary["planned"] == 40 and summary["scored"] == 0
    page = client.get(f"/runs/{run}").text  # its settings as `l2l runs show` gives them: none it does not use
    assert "&#34;derive&#34;: 100" in page and "executor" not in page and "&#34;children&#34;" not in page
    assert [r["planned"] for r in client.get("/api/runs").json()["runs"]] == [40]


def test_a_stopped_run_says_so(marked_store: str, tmp_path: Path) -> None:
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=5, code_version="t")
    gone = subprocess.Popen(["true"])
    gone.wait()
    store.claim_run(run, f"{socket.gethostname()}:{gone.pid}")  # its driver was killed
    time.sleep(1.1)
    record_updates(store, run, [(0.1, 1.0)])  # an update after its last heartbeat: it ran at least until then
    summary = TestClient(create_app(url)).get(f"/api/runs/{run}").json()
    assert summary["state"].startswith("stale") and not summary["live"]
    assert 1.0 <= summary["duration_s"] < 60  # it said 0 s: the heartbeat's time, before the update
    assert summary["state"].endswith(f"resume with: l2l search --resume {run} --storage {url})")  # not l2l.db
    listed = TestClient(create_app(url)).get("/").text  # the list says "stale", the why and how in its tooltip
    assert '">stale</span>' in listed and f'title="{summary["state"]}"' in listed
    time.sleep(1.1)  # its duration ends at its last heartbeat: it does not grow while nothing runs
    assert TestClient(create_app(url)).get(f"/api/runs/{run}").json()["duration_s"] == summary["duration_s"]
    store.claim_run(run, this_driver())
    assert TestClient(create_app(url)).get(f"/api/runs/{run}").json()["live"]
    store.set_run_status(run, "interrupted")
    assert TestClient(create_app(url)).get(f"/api/runs/{run}").json()["state"] == "interrupted"


def test_the_dashboard_only_reads(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    with pytest.raises(StoreError, match="does not exist"):
        Reader(f"sqlite:///{missing}")
    assert not missing.exists()
    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    reader = Reader(url)
    from sqlalchemy import text

    with pytest.raises(StoreError, match=r"readonly|read-only|read only"), reader.read("write") as conn:
        conn.execute(text("DELETE FROM runs"))
    assert len(reader.runs()) == 1


def test_a_reader_never_blocks_the_writer(tmp_path: Path) -> None:
    """WAL: a dashboard's open read transaction leaves a search's commits free (a rollback journal would make the
    writer wait and fail with 'database is locked')."""
    from sqlalchemy import select

    from l2l.runs.dashboard.reader import CHILDREN

    url = f"sqlite:///{tmp_path / 'w.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=50, code_version="t")
    store.add_children(run, [NewChild(n, 0, (0,), {"space": "toy", "values": []}, -1.0, 1.0, 0) for n in range(40)])
    reader = Reader(url)
    with reader.read("hold") as conn:
        reading = conn.execute(select(CHILDREN.c.number).where(CHILDREN.c.run_id == run))
        assert reading.fetchone() is not None  # a read statement is open, half-way through
        t = time.perf_counter()
        for n in range(20):
            store.finish_child(run, n, {"status": "done", "reward": n / 20}, n / 20)
        assert time.perf_counter() - t < 3.0
        assert len(reading.fetchall()) == 39
    assert reader.summary(run)["done"] == 20


def test_optimizer_runs_show_their_rules(client: TestClient) -> None:
    best = client.get("/api/runs/2/best").json()
    rules = best["rules"]
    assert [r["child"] for r in rules] == [2, 1, 0]
    assert "sign" in rules[0]["latex"] and "lr" in rules[0]["formula"]
    heat = rules[0]["heatmap"]
    assert len(heat["z"]) == len(heat["m"]) and len(heat["z"][0]) == len(heat["g"])
    assert heat["note"] is None  # it varies over (g, m)
    from l2l.optsearch.language import parse
    from l2l.runs.dashboard.figures import heatmap

    flat = heatmap(parse("cd rd sqrt identity mul"))["note"]  # a solid square, unexplained, on the run's page
    assert " ".join(flat.split()) == (
        "the same update, 1, at every (g, m): it reads only cd, rd (here schedules at their start, 1)"
    )
    assert rules[0]["curves"]["val_acc"] == [0.3, 0.4, 0.7]
    svg = client.get(rules[0]["formula_svg"])
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
    assert client.get("/runs/1/children/0/formula.svg").status_code == 404  # not an update rule
    assert client.get("/api/runs/2/pareto").json()["cost"] == "train_time_s"  # params are all equal
    assert client.get("/api/runs/2/pareto?cost=params").json()["cost"] == "params"  # asked for, though flat
    nope = client.get("/api/runs/2/pareto?cost=nope")  # was another cost's front, as if it were this one
    assert nope.status_code == 400 and nope.json()["error"].startswith("unknown cost 'nope'; known: ")


def test_weight_sharing_epochs_are_served(tmp_path: Path, sharing_run: Callable[..., int]) -> None:
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'ws.db'}"
    store = Store(url)
    run = sharing_run(store, [[0.0, 0.1], [0.2, 0.3]], 2)
    spec = {"space": "toy", "values": [["op_0", "op1"]]}
    store.record_scored(run, [ScoredChild(4, 2, (0,), spec, "derived", 0.25, {})])
    c = TestClient(create_app(url))
    assert [e["train_loss"] for e in c.get(f"/api/runs/{run}/epochs").json()["epochs"]] == [1.0, 0.75]
    summary = c.get(f"/api/runs/{run}").json()
    assert summary["weight_sharing"] and summary["scored"] == 4 and summary["done"] == 0  # not the derived one
    # what `runs list` and `runs best` name: the derived architecture (retrained: that), not the luckiest scored
    assert summary["best"] == pytest.approx(0.25) and summary["best_child"] == 4
    assert summary["best_label"] == "best: derived (shared weights, whole validation split)"
    assert [r["best"] for r in c.get("/api/runs").json()["runs"]] == [pytest.approx(0.25)]
    assert summary["best_shared"] and "0.2500 shared</td>" in c.get("/").text  # as `runs list` marks it
    assert "best: derived (shared weights, whole validation split)" in c.get(f"/runs/{run}").text
    # what the controller scored, as `l2l plot progress` draws it: not the derived architecture
    assert c.get(f"/api/runs/{run}/progress").json()["children"]["y"] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    best = c.get(f"/api/runs/{run}/best").json()["child"]
    assert (best["number"], best["status"]) == (4, "derived")  # the one it derived, not the luckiest
    assert 'id="epochs-section" hidden' not in c.get(f"/runs/{run}").text
    compared = c.get("/api/compare", params={"runs": str(run)}).json()["runs"][0]
    assert compared["shared"] and compared["y"] == pytest.approx([0.0, 0.1, 0.2, 0.3])  # labelled as such
    assert f'value="{run}" aria-label="compare run {run}" checked' in c.get(f"/?compare={run}").text  # a shared link


def test_series_are_downsampled_without_losing_extremes_or_the_front() -> None:
    rng = random.Random(0)
    ys = [rng.gauss(0, 1) for _ in range(50_000)]
    xs, kept = extremes(range(50_000), ys, points=1000)
    assert len(xs) <= 1000 and max(kept) == max(ys) and min(kept) == min(ys) and xs == sorted(xs)
    assert best_so_far([0, 1, 2, 3], [0.2, 0.1, 0.5, 0.4]) == ([0, 2, 3], [0.2, 0.5, 0.5])
    for _ in range(100):
        points = [(float(rng.randrange(20)), rng.randrange(10) / 10, i) for i in range(rng.randrange(1, 60))]
        front = pareto(points, "c")["front"]
        assert list(zip(front["x"], front["y"], front["child"], strict=True)) == pareto_front(points)


def test_a_big_run_answers_quickly(tmp_path: Path) -> None:
    """The benchmark (benchmarks/dashboard.py) times 100,000 children; here 20,000, asserted loosely."""
    from benchmarks.dashboard import build_store, time_endpoints

    url, run = build_store(tmp_path / "big.db", 20_000)
    for row in time_endpoints(url, run, repeats=1):
        assert row["first_s"] < 5.0, row


def test_binding_beyond_this_machine_warns() -> None:
    assert bind_warning("127.0.0.1") is None and bind_warning("localhost") is None
    warning = bind_warning("0.0.0.0")
    assert warning is not None and "no login" in warning and "\n" not in warning


def test_search_with_dashboard_serves_it_while_it_runs(tmp_path: Path) -> None:
    import json
    import sys
    import urllib.request

    from l2l.runs.dashboard.server import answers

    url = f"sqlite:///{tmp_path / 'beside.db'}"
    args = [*marked_search(url, children=4, delay=0.5), "--dashboard", "--dashboard-port", "0"]
    code = "from l2l.runs.cli import main; main()"
    search = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    try:
        assert search.stdout is not None
        line = search.stdout.readline()
        found = re.match(r"dashboard at (http://127\.0\.0\.1:(\d+)/) ", line)
        assert found, line
        with urllib.request.urlopen(f"{found[1]}api/runs", timeout=10) as answer:  # while the search runs
            assert answer.status == 200 and "runs" in json.loads(answer.read())
        while "dashboard: the final state stays up" not in (said := search.stdout.readline()):
            assert said, "the search ended without keeping its dashboard up for the open pages"
        with urllib.request.urlopen(f"{found[1]}api/runs/1", timeout=10) as answer:  # the page's next poll: done
            assert json.loads(answer.read())["status"] == "done"  # it froze at "running" with the server gone
        rest = search.stdout.read()
        assert search.wait(timeout=60) == 0, rest
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
    assert not answers("127.0.0.1", int(found[2]))  # it ended with the search


@pytest.mark.postgres
def test_the_dashboard_reads_postgresql_read_only(postgres_url: str) -> None:
    from sqlalchemy import text

    from l2l.runs.dashboard.app import create_app

    store = Store(postgres_url)
    run = add_optimizer_run(store)
    store.add_children(run, [NewChild(9, 9, (0,), {"space": "optimizer", "values": [["x", MARKUP]]}, -1.0, 1.0, 0)])
    store.finish_child(run, 9, {"status": "failed", "error": "Traceback ...\nRuntimeError: boom"}, 0.0)
    c = TestClient(create_app(postgres_url))
    assert c.get(f"/api/runs/{run}").json()["failed"] == 1
    assert [r["child"] for r in c.get(f"/api/runs/{run}/best").json()["rules"]] == [2, 1, 0]
    assert c.get(f"/api/runs/{run}/pareto").json()["front"]["child"] == [0, 1, 2]
    page = c.get(f"/api/runs/{run}/children", params={"q": "window.pwned", "sort": "reward", "order": "desc"}).json()
    assert [r["number"] for r in page["rows"]] == [9]
    # best first, the failed child last: PostgreSQL sorts a NULL reward above every number unless told
    best_first = c.get(f"/api/runs/{run}/children", params={"sort": "reward", "order": "desc"}).json()["rows"]
    assert [r["number"] for r in best_first] == [2, 1, 0, 9]
    for path in (
        "/api/runs/2147483648", f"/api/runs/{run}/children/2147483648", "/runs/99999999999999999999",
        "/api/runs/2147483648/progress", "/api/runs/2147483648/children/0", "/runs/2147483648/children/0",
    ):  # fmt: skip
        assert c.get(path).status_code == 404, path  # was 503 "integer out of range"
    both = c.get(f"/api/compare?runs={run},2147483648").json()
    assert [r["id"] for r in both["runs"]] == [run] and both["missing"] == [2147483648]
    with pytest.raises(RunNotFound, match="no run 2147483648"):
        store.get_run(2**31)
    assert store.child(run, 2**31) is None and store.child(2**31, 0) is None
    assert c.get(f"/api/runs/{run}/progress").json()["children"]["of"] == 3
    assert "&lt;script&gt;" in c.get(f"/runs/{run}/children/9").text
    reader = Reader(postgres_url)
    with pytest.raises(StoreError, match="read-only transaction"), reader.read("write") as conn:
        conn.execute(text("DELETE FROM runs"))
    assert reader.run(run).name == "rules"


@pytest.mark.postgres
def test_the_dashboard_outlives_a_connection_the_server_cut(postgres_url: str) -> None:
    """A PostgreSQL restart under a running dashboard made its next page an error."""
    from sqlalchemy import create_engine, text

    store = Store(postgres_url)
    run = add_optimizer_run(store)
    reader = Reader(postgres_url)
    assert reader.run(run).name == "rules"
    with reader.engine.connect() as conn:  # the pooled connection the next page takes
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
    admin = create_engine(postgres_url)
    with admin.begin() as conn:
        assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    admin.dispose()
    assert reader.run(run).name == "rules"
    store.close()


def test_an_old_schema_is_named_not_migrated(tmp_path: Path) -> None:
    from l2l.runs.dashboard.server import schema_behind

    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = Store(url)
    store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="x")
    store.close()
    assert schema_behind(Reader(url).revision) is None
    import sqlite3

    with sqlite3.connect(tmp_path / "old.db") as db:
        db.execute("UPDATE alembic_version SET version_num = '0005'")
        db.execute("DROP TABLE space_data")  # added by 0007
    warning = schema_behind(Reader(url).revision)
    assert warning is not None and "revision 0005" in warning and "l2l runs list" in warning
    assert Reader(url).revision == "0005"  # reading it changed nothing
    assert Reader(url).space_data(1) == {}  # a store from before spaces kept their measurements


def test_a_port_that_is_taken_is_one_error_line_and_no_address(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    Store(storage).close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["dashboard", "--port", str(port), "--storage", storage])
    assert result.exit_code == 1
    assert (
        result.output.strip()
        == f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port"
    )
    # a host that is no address of this machine: the host is named as what to change, not the port
    result = CliRunner().invoke(app, ["dashboard", "--host", "192.0.2.1", "--port", "8291", "--storage", storage])
    assert result.exit_code == 1 and result.output.strip().endswith("; --host must be an address of this machine")


def test_the_best_is_the_one_runs_best_names_where_architectures_repeat(tmp_path: Path) -> None:
    """A noisy search that re-evaluates: the dashboard shows the best estimated mean and its architecture, as
    `l2l runs list` and `l2l runs best` do, not the luckiest child."""
    from l2l.runs.cli.ranking import estimate_text
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.estimates import best_so_far, half_width, rank
    from l2l.search_spaces import load_space

    url = f"sqlite:///{tmp_path / 'noisy.db'}"
    args = ["search", "--space", "toy", "-S", "noise=0.2", "--strategy", "random+reeval", "-n", "40",
            "--executor", "local", "--seed", "1", "-q", "--storage", url]  # fmt: skip
    assert CliRunner().invoke(app, args).exit_code == 0
    store = Store(url)
    best = rank(store.children(1), load_space("toy", {"noise": 0.2})).archs[0]
    luckiest = store.top_children(1, 1)[0]
    assert best.estimate.n > 1 and best.child.number != luckiest.number  # the case this test is about
    with TestClient(create_app(url)) as c:
        (listed,) = c.get("/api/runs").json()["runs"]
        summary = c.get("/api/runs/1").json()
        shown = c.get("/api/runs/1/best").json()["child"]
        page = " ".join(c.get("/runs/1").text.split())
        home = " ".join(c.get("/").text.split())
        progress = c.get("/api/runs/1/progress").json()
        (compared,) = c.get("/api/compare", params={"runs": "1"}).json()["runs"]
    for s in (listed, summary):
        assert s["best"] == pytest.approx(best.estimate.estimate) and s["best_estimated"]
    assert summary["best_child"] == best.child.number == shown["number"] and summary["best_n"] == best.estimate.n
    assert shown["estimate"] == pytest.approx(best.estimate.estimate) and shown["evaluations"] == best.estimate.n
    # with its 95% interval, as `l2l runs best` prints it
    assert f"best estimated mean ± 95% ({best.estimate.n} evaluations)" in page
    shown_text = re.search(r'id="best-reward" class="big">([^<]*)</span><span id="best-pm" class="big">([^<]*)<', page)
    assert shown_text and "".join(shown_text.groups()) == estimate_text(best)
    assert f">{estimate_text(best)}</td>" in home  # the runs list says it as well
    assert summary["best_pm"] == pytest.approx(half_width(best.estimate))
    said = CliRunner().invoke(app, ["runs", "best", "1", "--storage", url], env={"COLUMNS": "200"}).output
    assert f"estimated reward {estimate_text(best)} (95%)" in " ".join(said.split())
    # the progress chart's best line is the same estimate, as `l2l plot progress` draws it: it ends at the best
    # estimated mean, below the luckiest child's reward
    curve, repeated = best_so_far(store.children(1, "done"), space=load_space("toy", {"noise": 0.2}))
    assert repeated and progress["best"]["label"] == "best estimated mean so far"
    assert progress["best"]["x"] == [n for n, _ in curve] and progress["best"]["y"] == pytest.approx(
        [b for _, b in curve]
    )
    assert progress["best"]["y"][-1] == pytest.approx(best.estimate.estimate)
    assert progress["best"]["y"][-1] < float(luckiest.reward or 0.0)
    # comparing runs draws the same curve: it ranked the luckiest single reward, where `runs list` ranks means
    assert compared["mean"] and compared["y"] == progress["best"]["y"] and compared["x"] == progress["best"]["x"]
    listed_cli = CliRunner().invoke(app, ["runs", "list", "--storage", url], env={"COLUMNS": "200"}).output
    assert f"{best.estimate.estimate:.4f}" in listed_cli


def test_the_update_means_are_of_the_children_each_update_learned_from(tmp_path: Path) -> None:
    """An asynchronous run: its updates learn from the children that finished, not from a proposal batch. The
    chart drew per-batch means (0.09 for a last batch of one child) where `runs show` and the progress bar give
    the updates' (0.7342)."""
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.store import NewChild
    from l2l.search_spaces import Result

    url = f"sqlite:///{tmp_path / 'async.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="reinforce", config={"children": 5}, seed=0, n_children=5,
                           code_version="test", name="async")  # fmt: skip
    batches, rewards = [0, 0, 1, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5]
    store.add_children(run, [NewChild(n, b, (n,), {"space": "toy", "values": []}, 0.0, 0.0, b)
                             for n, b in enumerate(batches)])  # fmt: skip
    for n, r in enumerate(rewards):
        store.finish_child(run, n, Result(reward=r).to_json(), r)
    learned = [[0, 2], [1, 3, 4]]  # finished out of order: each update took what had come back
    for version, numbers in enumerate(learned, start=1):
        mean = sum(rewards[n] for n in numbers) / len(numbers)
        stats = {"loss": 0.0, "baseline": 0.0, "mean_reward": mean, "entropy": 1.0, "policy_version": version,
                 "n": len(numbers), "extra": {"children": numbers}}  # fmt: skip
        store.record_update(run, version - 1, stats, b"x", next_child=5)
    progress = TestClient(create_app(url)).get(f"/api/runs/{run}/progress").json()
    assert progress["batch_mean"]["x"] == [3, 5]  # after the newest child each learned from
    assert progress["batch_mean"]["y"] == pytest.approx([0.2, (0.2 + 0.4 + 0.5) / 3])
    assert progress["batch_mean"]["y"] == pytest.approx([u.mean_reward for u in store.updates(run)])


def test_a_store_deleted_under_the_dashboard_is_an_error_and_a_new_one_is_read(tmp_path: Path) -> None:
    """After `rm l2l.db*` under a running dashboard its pages still listed the old runs (pooled connections kept the
    deleted file open), and a store a new search then made at the same path was never read."""
    from l2l.runs.dashboard.app import create_app

    db = tmp_path / "l2l.db"

    def search(name: str, reward: float) -> None:  # run 1, one architecture evaluated twice: an estimated best
        store = Store(f"sqlite:///{db}")
        run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="t",
                               name=name)  # fmt: skip
        finish(store, run, [(0, TOY_A, reward, {}), (1, TOY_A, reward, {})])
        store.close()

    search("old", 0.5)
    c = TestClient(create_app(f"sqlite:///{db}"))
    assert [(r["name"], r["best"]) for r in c.get("/api/runs").json()["runs"]] == [("old", 0.5)]  # cached: 2 done
    for part in db.parent.glob("l2l.db*"):
        part.unlink()
    gone = c.get("/api/runs")
    assert gone.status_code == 503
    assert gone.json()["error"] == f"no store at sqlite:///{db}: the file no longer exists (deleted or moved)"
    page = c.get("/runs/1")
    assert page.status_code == 503 and "the file no longer exists" in page.text
    assert not db.exists()  # reading never makes a new, empty store
    search("new", 0.9)  # a new search at the same path: its run 1, with 2 done too, is another run
    assert [(r["name"], r["best"]) for r in c.get("/api/runs").json()["runs"]] == [("new", 0.9)]
    assert c.get("/api/runs/1/progress").json()["best"]["y"][-1] == 0.9


def test_a_strategy_without_a_policy_draws_no_controller_lines(tmp_path: Path) -> None:
    """The Controller chart drew flat lines at 0 for TPE's entropy and loss and random search's loss, where `l2l runs
    show` says "entropy - (the strategy has no policy)" and `l2l plot progress` "tpe reports no entropy"."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store(url)
    runs = {}
    for strategy, stats in (("tpe", [(0.0, 0.0)] * 3), ("random", [(0.0, 5.2)] * 3),
                            ("reinforce", [(0.3, 5.2), (0.0, 4.9), (-0.1, 4.1)]),
                            ("reinforce+screen", [(0.0, 5.2)] * 2)):  # fmt: skip
        runs[strategy] = store.create_run(space="toy", strategy=strategy, config={}, seed=0, n_children=3,
                                          code_version="t")  # fmt: skip
        record_updates(store, runs[strategy], stats)
    c = TestClient(create_app(url))
    tpe, random_, reinforce, failing = (c.get(f"/api/runs/{runs[s]}/progress").json()["updates"] for s in runs)
    assert (tpe["entropy"], tpe["loss"]) == (None, None) and tpe["of"] == 3
    assert tpe["note"] == "tpe has no policy: it reports no entropy and no loss"
    assert random_["loss"] is None and random_["entropy"] == [5.2] * 3  # the uniform policy's entropy, as runs show
    assert random_["note"] == "random learns no policy: it reports no loss"
    assert reinforce["loss"] == [0.3, 0.0, -0.1] and reinforce["entropy"] == [5.2, 4.9, 4.1]  # a 0 among others
    assert reinforce["note"] == ""
    # REINFORCE whose children all failed: equal rewards, a loss of 0 (it said it "learns no policy")
    assert failing["loss"] == [0.0, 0.0] and failing["note"] == (
        "reinforce+screen's loss was 0 at every update: each update's rewards were all equal (every child failed?)"
    )


def test_a_compared_run_that_is_not_there_is_named(client: TestClient) -> None:
    """`/?compare=1,99` dropped run 99 without a word; `/api/compare?runs=1,99` answered 404 with nothing of run 1."""
    page = client.get("/?compare=1,99").text
    assert "No run 99 in this store: the comparison leaves it out." in page
    assert "No runs 98, 99 in this store: the comparison leaves them out." in client.get("/?compare=99,98,2").text
    assert 'id="compare-missing"' not in client.get("/?compare=1,2").text
    both = client.get("/api/compare?runs=1,99")
    assert both.status_code == 200 and [r["id"] for r in both.json()["runs"]] == [1] and both.json()["missing"] == [99]


def test_the_run_list_pages_through_every_run_newest_first(tmp_path: Path) -> None:
    """The list showed the newest 200 runs and nothing of the rest, without a word."""
    from l2l.runs.dashboard.app import RUNS_PER_PAGE, create_app

    url = f"sqlite:///{tmp_path / 'many.db'}"
    store = Store(url)
    total = RUNS_PER_PAGE + 5
    for i in range(total):
        store.create_run(space="toy", strategy="random", config={}, seed=i, n_children=1, code_version="t")
    store.close()
    c = TestClient(create_app(url))
    first, last = c.get("/api/runs").json(), c.get("/api/runs", params={"page": 2}).json()
    assert (first["total"], first["pages"], len(first["runs"]), first["runs"][0]["id"]) == (total, 2, 100, total)
    assert [r["id"] for r in last["runs"]] == [5, 4, 3, 2, 1] and last["page"] == 2
    assert c.get("/api/runs", params={"page": 9}).json()["page"] == 2  # past the end: the last page
    html = c.get("/").text
    assert f"runs 1\N{EN DASH}100 of {total}, newest first (page 1 of 2)" in html and 'href="/?page=2"' in html
    older = c.get("/?page=2").text
    assert f"runs 101\N{EN DASH}{total} of {total}" in older and 'href="/?page=1"' in older
    assert 'href="/runs/1"' in older  # the oldest run is reachable
    assert 'href="/?page=2&amp;compare=1,7"' in c.get("/?compare=7,1").text  # the runs compared, on every page
    assert 'href="/?page=2&amp;compare=9,10"' in c.get("/?compare=10,9").text  # numeric order, as the script
    Store(few := f"sqlite:///{tmp_path / 'few.db'}").close()
    assert "runs-pager" not in TestClient(create_app(few)).get("/").text  # one page: no pager


def test_a_store_that_stops_answering_is_said_so_not_not_here(tmp_path: Path) -> None:
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 's.db'}"
    Store(url).close()
    app_ = create_app(url)
    reader = app_.state.reader

    def gone(run_id: int) -> Any:
        raise StoreError(f"store {url}: read run failed: connection failed: Connection refused")

    reader.summary = gone
    page = TestClient(app_).get("/runs/1")
    assert page.status_code == 503 and "The store does not answer" in page.text and "Not here" not in page.text


def test_costs_are_whole_and_counts_singular_where_the_cli_has_them_so(tmp_path: Path) -> None:
    """The child page showed a cost of 17890.6667 flops as 1.789e+04 (`l2l runs top`: 17,891), and a run page said
    "best estimated mean (1 evaluations)"."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=3, code_version="t")
    cost = {"cost": {"flops": 17890.6667, "params": 10578.0, "latency_s": 0.0123}}
    # the best architecture, evaluated once, in a run where another one was evaluated twice: an estimate of one
    finish(store, run, [(0, TOY_A, 0.9, cost), (1, TOY_B, 0.5, {}), (2, TOY_B, 0.5, {})])
    c = TestClient(create_app(url))
    child = c.get(f"/runs/{run}/children/0").text
    assert "17,891</td>" in child and "10,578</td>" in child and "0.0123</td>" in child
    summary = c.get(f"/api/runs/{run}").json()  # evaluated once: its reward (test_a_best_evaluated_once_...)
    assert not summary["best_estimated"] and summary["best"] == 0.9
    assert summary["best_label"] == "reward of the best architecture (evaluated once)"


def test_children_are_found_by_their_spec_as_the_pages_show_it(tmp_path: Path) -> None:
    """The filter searched the stored JSON: ``width=4``, as every page writes a spec, found nothing."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'toy.db'}"
    out = CliRunner().invoke(
        app, ["search", "--space", "toy", "-n", "12", "--executor", "local", "-q", "--storage", url]
    )
    assert out.exit_code == 0, out.output
    children = Store(url).children(1)
    shown = {c.number: [(k, "".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in c.spec["values"]]
             for c in children}  # fmt: skip
    with TestClient(create_app(url)) as c:
        for number, items in list(shown.items())[:4]:
            q = " ".join(f"{k}={v}" for k, v in reversed(items))  # every term, in any order: this child and its twins
            rows = c.get("/api/runs/1/children", params={"q": q, "per": 100}).json()["rows"]
            assert number in [r["number"] for r in rows] and all(shown[r["number"]] == items for r in rows), q
            key, value = items[1]
            one = c.get("/api/runs/1/children", params={"q": f"{key}={value}", "per": 100}).json()
            assert one["total"] == sum((key, value) in i for i in shown.values()) > 0
        assert c.get("/api/runs/1/children", params={"q": "op_0=nosuch"}).json()["total"] == 0


def test_a_cost_the_newest_child_lacks_is_still_drawn_when_an_older_one_reports_it(tmp_path: Path) -> None:
    """The chart asks for the cost it shows on every poll: a newer child without it must not turn that into a 400."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=3, code_version="t")
    finish(
        store,
        run,
        [(0, TOY_A, 0.5, {"cost": {"latency_s": 2.0, "flops": 10}}), (1, TOY_B, 0.6, {"cost": {"flops": 20}})],
    )
    with TestClient(create_app(url)) as client:
        drawn = client.get(f"/api/runs/{run}/pareto?cost=latency_s")
        assert drawn.status_code == 200 and drawn.json()["cost"] == "latency_s" and drawn.json()["keys"] == ["flops"]
        nobody = client.get(f"/api/runs/{run}/pareto?cost=memory")
        assert nobody.status_code == 400 and nobody.json() == {"error": "unknown cost 'memory'; known: flops"}


def test_a_run_whose_children_all_failed_says_so_where_the_best_would_be(tmp_path: Path) -> None:
    """Its best-architecture panel said "No child has finished yet." beside four failed children."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="t")
    store.add_children(run, [NewChild(n, 0, (0,), {"space": "toy", "values": []}, 0.0, 0.0, 0) for n in range(2)])
    for n in range(2):
        store.finish_child(run, n, {"status": "failed", "error": "RuntimeError: boom"}, 0.0)
    with TestClient(create_app(url)) as client:
        best = client.get(f"/api/runs/{run}/best").json()
    assert best["child"] is None and best["failed"] == 2  # the page says every finished child failed


def test_the_pareto_axis_says_reward_where_children_have_no_accuracy(tmp_path: Path) -> None:
    """A placement search's Pareto chart said "validation accuracy" of rewards that are negative step times;
    `l2l plot pareto` says what it draws."""
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.plots import pareto_axis

    url = f"sqlite:///{tmp_path / 'p.db'}"
    args = ["search", "--space", "placement", "-n", "4", "--executor", "local", "-q", "--storage", url]
    assert CliRunner().invoke(app, args).exit_code == 0
    store = Store(url)
    accurate = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    finish(store, accurate, [(0, TOY_A, 0.9, {"val_acc": 0.9, "cost": {"flops": 10}})])
    with TestClient(create_app(url)) as c:
        placement, toy = (c.get(f"/api/runs/{run}/pareto").json() for run in (1, accurate))
    assert placement["cost"] and placement["axis"] == pareto_axis(store.children(1))
    assert placement["axis"].startswith("reward") and toy["axis"] == "validation accuracy"


def test_a_best_evaluated_once_is_its_reward_as_runs_best_says(tmp_path: Path) -> None:
    """A random search (no +reeval) that happened to draw one architecture twice showed its best as "best estimated
    mean (1 evaluation)"; `l2l runs best` names that child by its reward."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'once.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=3, code_version="t")
    finish(store, run, [(0, TOY_A, 0.9, {}), (1, TOY_B, 0.5, {}), (2, TOY_B, 0.52, {})])
    said = CliRunner().invoke(app, ["runs", "best", str(run), "--storage", url], env={"COLUMNS": "200"}).output
    assert said.startswith(f"best of run {run}: child 0, reward 0.9000")
    with TestClient(create_app(url)) as c:
        summary, (listed,) = c.get(f"/api/runs/{run}").json(), c.get("/api/runs").json()["runs"]
        page = " ".join(c.get(f"/runs/{run}").text.split())
        best = c.get(f"/api/runs/{run}/best").json()["child"]
    once = "reward of the best architecture (evaluated once)"  # another may have a higher single reward
    for s in (summary, listed):
        assert (s["best"], s["best_child"], s["best_label"], s["best_estimated"]) == (0.9, 0, once, False)
    assert f'id="best-label">{once}</span><span id="best-reward" class="big">0.9000</span>' in page
    assert best["number"] == 0 and best["reward"] == 0.9 and "evaluations" not in best


def test_a_compared_run_with_no_finished_child_is_named(tmp_path: Path) -> None:
    """Comparing a run whose children all failed drew nothing of it and said nothing."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = Store(url)
    runs = [store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="t")
            for _ in range(3)]  # fmt: skip
    finish(store, runs[0], [(0, TOY_A, 0.5, {})])
    store.add_children(runs[1], [NewChild(n, 0, TOY_A, {"space": "toy", "values": []}, 0.0, 0.0, 0) for n in range(2)])
    for n in range(2):
        store.finish_child(runs[1], n, {"status": "failed", "error": "RuntimeError: boom"}, 0.0)
    with TestClient(create_app(url)) as c:
        answer = c.get("/api/compare", params={"runs": ",".join(map(str, runs))}).json()
    assert answer["notes"] == [
        f"no child of run {runs[1]} succeeded (2 failed): no line to draw",
        f"run {runs[2]} has no finished child yet: no line to draw",
    ]


def test_a_weight_sharing_run_says_what_it_counts_and_filters_by_derived(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    """Its card said 4 scored where the children list held 7 (the derive candidates too), and the list's status
    filter, made when the page opened during the epochs, had no way to find the derived architecture."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'ws.db'}"
    store = Store(url)
    run = sharing_run(store, [[0.0, 0.1], [0.2, 0.3]], 2)
    c = TestClient(create_app(url))
    during = c.get(f"/runs/{run}").text
    assert '<option value="derived" title="the derived architecture">derived (0)</option>' in during
    spec = {"space": "toy", "values": [["op_0", "op1"]]}
    store.record_scored(run, [ScoredChild(4 + k, 2, (k,), spec, "candidate", 0.2, {}) for k in range(2)])
    store.record_scored(run, [ScoredChild(6, 2, (2,), spec, "derived", 0.25, {})])
    summary = c.get(f"/api/runs/{run}").json()
    assert summary["scored"] == 4 and summary["derive_note"] == "then 3 derive candidates scored (1 of them derived)"
    assert c.get(f"/api/runs/{run}/children").json()["total"] == 4 + 3  # the card's figures add up to the list
    after = c.get(f"/runs/{run}").text
    assert "then 3 derive candidates scored (1 of them derived)</span>" in after and "derived (1)</option>" in after
    assert "shared (4)</option>" in after and "candidate (2)</option>" in after
    derived = c.get(f"/api/runs/{run}/children", params={"status": "derived"}).json()
    assert [r["number"] for r in derived["rows"]] == [6] == [summary["best_child"]]


def test_a_derive_candidate_and_a_retrained_child_say_where_they_come_from(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    """A weight-sharing run's retrained child's page said "batch -1" (its derived architecture's) and nothing
    of the child it retrained or its budget."""
    from l2l.runs.cli.retraining import record_retrained
    from l2l.runs.dashboard.app import create_app
    from l2l.search_spaces.results import Result

    url = f"sqlite:///{tmp_path / 'ws.db'}"
    store = Store(url)
    run = sharing_run(store, [[0.0, 0.1]], 2)
    spec = {"space": "toy", "values": [["op_0", "op1"]]}
    store.record_scored(run, [ScoredChild(2, -1, (0,), spec, "derived", 0.25, {})])
    (derived,) = store.children(run, "derived")
    ran = {"started": time.time() - 5, "finished": time.time()}  # recorded once trained: queued when it started
    again = record_retrained(store, run, derived, Result(reward=0.5, runtime=ran), {"epochs": 1}, 7)
    (child,) = [c for c in store.children(run) if c.number == again]
    assert child.queued_at == child.started_at and child.started_at is not None
    started = child.started_at if child.started_at.tzinfo else child.started_at.replace(tzinfo=UTC)  # SQLite: naive
    assert started.timestamp() == pytest.approx(ran["started"])  # was queued 5 s after it started
    c = TestClient(create_app(url))
    retrained = " ".join(c.get(f"/runs/{run}/children/{again}").text.split())
    assert f'retrained from scratch: <a href="/runs/{run}/children/2">child 2</a>, epochs 1, seed 7</span>' in retrained
    assert "batch -1" not in retrained
    assert "scored in the derive phase" in c.get(f"/runs/{run}/children/2").text
    # the best the run page's card and its "best" section name: the retrained child, as `l2l runs list` does
    best = c.get(f"/api/runs/{run}/best").json()["child"]
    assert c.get(f"/api/runs/{run}").json()["best_child"] == again == best["number"]
    assert best["role"] == "retrained from scratch"  # the section says so, as the runs list does
    said = CliRunner().invoke(app, ["runs", "child", str(run), str(again), "--storage", url], env={"COLUMNS": "200"})
    assert f"child {again} of run {run}: done, retrained from scratch: child 2, epochs 1, seed 7," in said.output


def test_the_children_filter_and_sort_are_kept_in_the_address(client: TestClient) -> None:
    """A reload lost the children list's filter and sort: the run page's address now keeps them, and the page
    opens with them (the script reads them from the page and writes them back as they change)."""
    page = client.get("/runs/1", params={"status": "failed", "q": "<b>x", "sort": "reward", "order": "desc"}).text
    assert 'data-sort="reward" data-order="desc" data-table-page="1"' in page
    assert re.search(r'<option value="failed"[^>]* selected>failed \(\d+\)</option>', page)
    assert 'value="&lt;b&gt;x"' in page and "<b>x" not in page  # the filter's text as text
    plain = client.get("/runs/1").text
    assert 'data-sort="number" data-order="asc"' in plain and " selected>" not in plain
    bad = client.get("/runs/1", params={"sort": "nosuch"})
    assert bad.status_code == 400 and "unknown sort &#39;nosuch&#39;; known: number, " in bad.text
    assert "<h1>Not understood</h1>" in bad.text  # a 404's heading ("Not here") for a query it could not read
    # a status no child can have: refused by name, as a sort (the page dropped it, the JSON gave 0 rows)
    bad = client.get("/runs/1", params={"status": "bogus"})
    assert bad.status_code == 400 and "unknown status &#39;bogus&#39;; known: queued, running, done, failed" in bad.text
    assert client.get("/api/runs/1/children?status=bogus").status_code == 400
    # a page past the last, however far (20 digits was "must be a whole number >= 1"): the last
    last = client.get("/api/runs/1/children", params={"page": "9" * 20, "per": 5}).json()
    assert last["page"] == 4 and [r["number"] for r in last["rows"]] == [15]  # 16 children: the 4th page of 5
    huge = client.get("/api/runs/1/children", params={"page": "9" * 5000})  # int() refuses these
    assert huge.status_code == 200 and huge.json()["page"] == 1
    said = client.get("/api/runs/1/children", params={"page": "-" + "9" * 300}).json()["error"]
    assert said.startswith("page must be a whole number >= 1, got '-999") and said.endswith("(301 characters)")
    assert 'id="children-empty" hidden' in plain  # where the script says "No child matches this filter."


def test_a_child_page_lists_only_the_decisions_its_network_uses(tmp_path: Path) -> None:
    """An `mlp` child of 1 layer listed the widths and activations of layers 2 and 3 as its own."""
    from l2l.runs.dashboard.app import create_app
    from l2l.search_spaces import load_space

    mlp = load_space("mlp", {})
    url = f"sqlite:///{tmp_path / 'mlp.db'}"
    store = Store(url)
    config: dict[str, Any] = {"space_options": {}}
    run = store.create_run(space="mlp", strategy="random", config=config, seed=0, n_children=2, code_version="t")
    tokens = [(0, 1, 2) + (3,) * 6, (2, 1, 2) + (3,) * 6]  # 1 layer, 3 layers
    store.add_children(run, [NewChild(n, 0, t, mlp.decode(t).to_json(), 0.0, 0.0, 0) for n, t in enumerate(tokens)])

    def rows(number: int) -> tuple[list[str], str]:
        page = TestClient(create_app(url)).get(f"/runs/{run}/children/{number}").text
        return re.findall(r"<tr><th>(\w+)</th>", page.split('id="spec"')[1].split("</table>")[0]), page

    one, page = rows(0)
    assert one == ["layers", "width_0", "act_0", "dropout", "lr"]
    assert "any value builds the same network): width_1, act_1, width_2, act_2;" in page
    assert "&#34;width_2&#34;" in page  # still there as stored
    three, page = rows(1)
    assert three == [d.name for d in mlp.decisions()] and 'id="unused"' not in page


def test_a_chart_several_requests_ask_for_at_once_is_made_once() -> None:
    """A run page's requests arrive together, and each read the same 100,000 children again (5 s to open)."""
    import threading

    from l2l.runs.dashboard.figures import Cache

    cache, calls, results = Cache(8), [], []

    def make() -> int:
        calls.append(1)
        time.sleep(0.2)  # the others arrive while it is being made
        return 42

    askers = [threading.Thread(target=lambda: results.append(cache.get("k", make))) for _ in range(4)]
    for t in askers:
        t.start()
    for t in askers:
        t.join()
    assert results == [42] * 4 and len(calls) == 1

    def fails() -> int:
        raise RuntimeError("the store went away")

    with pytest.raises(RuntimeError):
        cache.get("j", fails)
    assert cache.get("j", lambda: 7) == 7  # not cached as failed: the next asker makes it


def test_a_page_reads_a_runs_evaluations_once_for_all_its_charts(
    marked_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from l2l.runs.dashboard.app import create_app

    reads: list[int] = []
    real = Reader.evaluations

    def counted(self: Reader, run_id: int) -> Any:
        reads.append(run_id)
        return real(self, run_id)

    monkeypatch.setattr(Reader, "evaluations", counted)
    client = TestClient(create_app(marked_store))
    for path in ("/runs/1", "/api/runs/1", "/api/runs/1/progress", "/api/runs/1/pareto", "/api/runs/1/best"):
        assert client.get(path).status_code == 200, path
    assert reads == [1]  # the best, its curve and the Pareto front's architectures: one read


def test_a_bulk_read_holds_off_the_garbage_collector_and_gives_it_back() -> None:
    """Reading 100,000 rows with the collector on took twice as long; it is back on once the last read ends, and
    stays off where it was off before."""
    import gc

    from l2l.runs.dashboard.engine import bulk

    assert gc.isenabled()
    with bulk():
        assert not gc.isenabled()
        with bulk():  # another thread's read, at the same time
            assert not gc.isenabled()
        assert not gc.isenabled()  # the first is still reading
    assert gc.isenabled()
    with pytest.raises(ValueError), bulk():
        raise ValueError("a read that failed")
    assert gc.isenabled()
    gc.disable()
    try:
        with bulk():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_json_texts_that_repeat_are_decoded_once() -> None:
    """A run's token sequences repeat (a few thousand distinct in 100,000 children): each distinct text is decoded
    once and its value shared; a value the driver decoded already (PostgreSQL) is taken as it is."""
    from l2l.runs.dashboard.engine import decoder

    seen: list[Any] = []

    def parse(value: Any) -> tuple[int, ...]:
        seen.append(value)
        return tuple(value)

    decode = decoder(parse)
    first, again = decode("[1, 2]"), decode("[1, 2]")
    assert first == (1, 2) and first is again and seen == [[1, 2]]
    assert decode("[3]") == (3,) and decode([4, 5]) == (4, 5) and len(seen) == 3


def test_retrainings_with_other_budgets_are_not_averaged_as_repeats(
    tmp_path: Path, sharing_run: Callable[..., int]
) -> None:
    """A weight-sharing run's derived cell retrained with the space's budget (0.926) and once more for one epoch
    (0.752) showed on the Pareto chart and `l2l plot pareto` as one point, "mean of 2 evaluations", at 0.839; two
    retrainings with the same budget and other seeds are evaluations of one thing, and are averaged."""
    from l2l.runs.cli.retraining import record_retrained
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.plots import pareto_points
    from l2l.search_spaces.results import Result

    url = f"sqlite:///{tmp_path / 'ws.db'}"
    store = Store(url)
    run = sharing_run(store, [[0.0, 0.1]], 1)
    spec = {"space": "toy", "values": [["op_0", "op1"]]}
    store.record_scored(run, [ScoredChild(2, -1, (0,), spec, "derived", 0.25, {})])
    (derived,) = store.children(run, "derived")
    for acc, budget, seed in ((0.926, {}, 0), (0.752, {"epochs": 1}, 0), (0.930, {}, 1)):
        record_retrained(store, run, derived, Result(reward=acc, val_acc=acc, cost={"flops": 5.0}), budget, seed)
    points, evaluations = pareto_points(store.children(run), "flops")
    assert sorted(a for _, a, _ in points) == pytest.approx([0.752, 0.928]) and sorted(evaluations.values()) == [1, 2]
    chart = TestClient(create_app(url)).get(f"/api/runs/{run}/pareto", params={"cost": "flops"}).json()
    assert sorted(chart["points"]["y"]) == pytest.approx([0.752, 0.928])


@pytest.mark.parametrize("transform", ["reward", "mnas(params,1000,-0.07)"])
def test_each_updates_mean_is_what_it_learned_from(tmp_path: Path, transform: str) -> None:
    """An optimizer search's update with a failed child learned from a mean of 0.28; `l2l plot progress` and the
    dashboard drew 0.35, the mean of its finished children only. Without a reward transform the line is each
    update's stored mean (failures at their failure reward); with one, the controller's figures are on another
    scale, and the line says it is the finished children's raw mean."""
    import numpy as np

    from l2l.runs.dashboard.app import create_app
    from l2l.runs.plots import progress_figure

    url = f"sqlite:///{tmp_path / 'mean.db'}"
    store = Store(url)
    config = {"controller": {"reward_transform": transform}}
    run = store.create_run(space="toy", strategy="reinforce", config=config, seed=0, n_children=4, code_version="t")
    spec = {"space": "toy", "values": [["op_0", "op1"]]}
    store.add_children(run, [NewChild(n, 0, (n,), spec, -1.0, 1.0, 0) for n in range(4)])
    for n, reward in ((0, 0.5), (1, 0.2), (2, 0.35)):
        store.finish_child(run, n, {"status": "done", "reward": reward, "val_acc": reward}, reward)
    store.finish_child(run, 3, {"status": "failed", "error": "ValueError: diverged"}, -0.22)
    stats = {"loss": 0.1, "baseline": None, "mean_reward": 0.2075, "entropy": 1.0, "policy_version": 1, "n": 4,
             "extra": {"children": [0, 1, 2, 3]}}  # fmt: skip
    store.record_update(run, 0, stats, b"x", next_child=4)
    plain = transform == "reward"
    want = 0.2075 if plain else 0.35  # the stored mean, or the finished children's (0.5 + 0.2 + 0.35) / 3
    chart = TestClient(create_app(url)).get(f"/api/runs/{run}/progress").json()["batch_mean"]
    assert chart["y"] == pytest.approx([want]) and ("learned from" in chart["label"]) == plain
    figure = progress_figure(store.get_run(run), store.children(run), store.updates(run))
    (line,) = [x for x in figure.axes[0].get_lines() if x.get_label() == chart["label"]]
    assert np.asarray(line.get_ydata(), dtype=float).tolist() == pytest.approx([want])


def test_a_database_error_while_rows_are_fetched_is_a_store_error(tmp_path: Path) -> None:
    """Rows fetched straight from the driver's cursor raised the driver's own error (a bare 500), where every
    other read says what failed in one line."""
    import sqlite3

    from l2l.runs.dashboard.reader import Reader

    url = f"sqlite:///{tmp_path / 'bad.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=3, code_version="t")
    store.add_children(run, [NewChild(n, 0, (n,), {"space": "toy", "values": []}, -1.0, 1.0, 0) for n in range(3)])
    for n in range(3):
        store.finish_child(run, n, {"status": "done", "reward": 0.5, "cost": {"flops": 3.0}}, 0.5)
    with sqlite3.connect(tmp_path / "bad.db") as raw:  # a later row whose JSON the database cannot read: met
        raw.execute("UPDATE children SET metrics = '{not json' WHERE number = 2")  # while fetching, not executing
    with pytest.raises(StoreError, match=r"read costs failed: .*malformed JSON"):
        Reader(url).costs(run, "flops")


def test_a_stopped_run_says_how_to_continue_it_and_a_done_one_nothing(tmp_path: Path) -> None:
    """An interrupted run's page said only "nothing changes here unless it is resumed" (the docs promise the
    command); a done run, which cannot be resumed, said the same."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'stopped.db'}"
    store = Store(url)
    for seed in (1, 2):
        store.create_run(space="toy", strategy="random", config={}, seed=seed, n_children=2, code_version="t")
    store.set_run_status(1, "interrupted", "interrupted by the user")
    store.set_run_status(2, "done")
    store.create_run(space="toy", strategy="random", config={}, seed=3, n_children=2, code_version="t")
    store.add_children(3, [NewChild(n, n, TOY_A, {"space": "toy", "values": []}, -1.0, 1.0, 0) for n in (0, 1)])
    for n in (0, 1):
        store.finish_child(3, n, {"status": "failed", "reward": None, "error": "exploded"}, 0.0)
    store.set_run_status(3, "failed", "no child succeeded (2 failed)")  # `l2l search --resume 3` refuses it
    with TestClient(create_app(url)) as c:
        said = f"not running: continue it with l2l search --resume 1 --storage {url}"
        assert said in c.get("/runs/1").text and c.get("/api/runs/1").json()["stopped_note"] == said
        assert '<span id="stopped-note" class="note"></span>' in c.get("/runs/2").text
        ended = c.get("/api/runs/3").json()["stopped_note"]  # "nothing changes here unless it is resumed"
        assert ended == "every child recorded, none succeeded: nothing to resume"
