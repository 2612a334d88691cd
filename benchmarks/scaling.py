"""Throughput and worker utilization of the Ray executor, synchronous against asynchronous search.

Children are synthetic: each sleeps for a fixed time, or for a log-normal time (same median, sigma 0.5),
so many workers fit on 2 cores. For 1, 2, 4, 8, 16 and 32 workers (Ray logical CPUs, one per child)
(a Ray instance of that many CPUs, started and warmed up before timing)
a REINFORCE search runs 16 children per worker with batch = workers, on a SQLite store, in each mode.
Wall time runs from the start of the search to its last controller update, recorded after the last
child. Utilization = time spent in children / (workers x wall time); overhead per child =
(workers x wall time - time in children) / children, which counts dispatch, store writes, controller
work, the start and the end of the run spread over its children, and in sync mode the wait for each
batch's slowest child. The worker gap is the time a worker process spends between the end of one
child and the start of its next (median and mean): the per-child cost in the steady state. The
executor's worker processes (one Ray actor per slot) are started, and fetch the space, before
timing, like the Ray instance; they are stopped after it. Both times are printed in the last columns.
The time each worker loses is also split, averaged over the workers: its start (from the start of
the search to its first child), its gaps, and its end (from its last child to the last update).
Start and end are paid once per run, so the overhead per child falls as runs get longer; the mean
worker gap is what each further child costs. ``--per-worker 16,64`` measures both run lengths.

python -m benchmarks.scaling [--workers 1,2,4,8,16,32] [--seconds 0.5] [--per-worker 16[,64]]
    [--modes sync,async] [--durations fixed,log-normal] [--repeat 1]
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from benchmarks.common import print_table, write_json
from l2l.runs.ray_executor import RayExecutor
from l2l.runs.search import BatchEvent, Search, SearchConfig
from l2l.runs.store import Store
from l2l.search_spaces import Context, Decision, Result, SearchSpace, Spec


class SleepSpace(SearchSpace):
    """A child that sleeps ``seconds`` (fixed) or a log-normal time around it; reward from its tokens."""

    name = "sleep"

    def __init__(self, seconds: float = 0.5, spread: float = 0.0) -> None:
        super().__init__(seconds=seconds, spread=spread)
        self.seconds, self.spread = seconds, spread

    def decisions(self) -> Sequence[Decision]:
        return [Decision.categorical(f"d{i}", ["a", "b", "c", "d"]) for i in range(4)]

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        duration = self.seconds
        if self.spread > 0:
            duration *= math.exp(random.Random(ctx.seed).gauss(0.0, self.spread))
        time.sleep(duration)
        score = sum(v == "b" for v in spec.values()) / 4
        return Result(reward=score, val_acc=score)


def measure(workers: int, mode: str, seconds: float, spread: float, per_worker: int) -> dict[str, Any]:
    store = Store(f"sqlite:///{tempfile.mkdtemp(prefix='l2l-scale-')}/s.db")
    config = SearchConfig(
        space=f"{__file__}:SleepSpace",
        space_options={"seconds": seconds, "spread": spread},
        children=workers * per_worker,
        batch=workers,
        executor="ray",
        executor_options={"max_concurrent": workers},
        mode=mode,
    )
    updates: list[float] = []  # when each controller update was recorded (epoch seconds, as the children's times)
    search = Search.start(
        store, config, listener=lambda e: updates.append(time.time()) if isinstance(e, BatchEvent) else None
    )
    # the worker processes start once per run (Ray actors) and fetch the space; like the Ray instance, not timed
    executor = search.executor
    if not isinstance(executor, RayExecutor):
        raise TypeError(f"the scaling benchmark needs the Ray executor, got {type(executor).__name__}")
    executor.prepare(search.space)
    startup = executor.wait_ready(timeout=120)
    started = time.time()
    run_id = search.run()
    teardown = time.time() - updates[-1]
    wall = updates[-1] - started
    children = store.children(run_id)
    busy = sum(c.metrics["info"]["finished"] - c.metrics["info"]["started"] for c in children)
    n = len(children)
    # on each worker process, the time from one child's end to the next one's start: Ray's dispatch
    by_worker: dict[str, list[tuple[float, float]]] = {}
    for c in children:
        by_worker.setdefault(str(c.worker), []).append((c.metrics["info"]["started"], c.metrics["info"]["finished"]))
    gaps = sorted(b[0] - a[1] for spans in by_worker.values() for a, b in itertools.pairwise(sorted(spans)))
    # per worker: from the search's start to its first child, and from its last child to the last update
    first = [min(s for s, _ in spans) - started for spans in by_worker.values()]
    last = [updates[-1] - max(f for _, f in spans) for spans in by_worker.values()]
    return {
        "workers": workers,
        "per_worker": per_worker,
        "mode": mode,
        "spread": spread,
        "children": n,
        "startup_s": startup,
        "teardown_s": teardown,
        "wall_s": wall,
        "throughput": n / wall,
        "utilization": busy / (workers * wall),
        "overhead_ms": 1000 * (workers * wall - busy) / n,
        "worker_gap_ms_median": 1000 * gaps[len(gaps) // 2] if gaps else 0.0,
        "worker_gap_ms_mean": 1000 * sum(gaps) / len(gaps) if gaps else 0.0,
        "worker_start_ms": 1000 * sum(first) / len(first),
        "worker_gaps_ms": 1000 * sum(gaps) / len(by_worker),
        "worker_end_ms": 1000 * sum(last) / len(last),
    }


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,2,4,8,16,32")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--per-worker", default="16", help="children per worker, one or more run lengths: 16,64")
    parser.add_argument("--modes", default="sync,async")
    parser.add_argument("--durations", default="fixed,log-normal")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (the overhead varies from run to run)")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    lengths = [int(n) for n in args.per_worker.split(",")]
    spreads = {"fixed": 0.0, "log-normal": 0.5}
    durations = args.durations.split(",")
    modes = args.modes.split(",")
    if not set(durations) <= set(spreads) or not set(modes) <= {"sync", "async"} or args.repeat < 1:
        parser.error(f"--durations takes {','.join(spreads)}, --modes sync,async and --repeat >= 1")
    if min(lengths) < 1:
        parser.error(f"--per-worker takes counts >= 1, got {args.per_worker}")
    rows, results = [], []
    for workers in counts:
        # a Ray instance of exactly this many CPUs: Ray queues what is handed over beyond them
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
        measure(workers, "async", 0.05, 0.0, 2)  # start every worker process once before timing
        for label in durations:
            for per_worker, mode, _ in itertools.product(lengths, modes, range(args.repeat)):
                r = measure(workers, mode, args.seconds, spreads[label], per_worker)
                results.append(r)
                rows.append(
                    [
                        label,
                        str(workers),
                        str(per_worker),
                        mode,
                        f"{r['throughput']:.1f}",
                        f"{100 * r['utilization']:.1f}%",
                        f"{r['overhead_ms']:.1f}",
                        f"{r['worker_gap_ms_median']:.1f} / {r['worker_gap_ms_mean']:.1f}",
                        f"{r['worker_start_ms']:.0f} / {r['worker_gaps_ms']:.0f} / {r['worker_end_ms']:.0f}",
                        f"{r['startup_s']:.2f}",
                        f"{r['teardown_s']:.2f}",
                    ]
                )
                print(" | ".join(rows[-1]), flush=True)
        ray.shutdown()
    print(f"children of {args.seconds} s (median), batch = workers")
    header = [
        "durations",
        "workers",
        "children per worker",
        "mode",
        "children/s",
        "utilization",
        "overhead ms/child",
        "worker gap ms (median / mean)",
        "per worker: start / gaps / end ms",
        "worker start s (untimed)",
        "teardown s (untimed)",
    ]
    print_table(header, rows)
    print(f"wrote {write_json('scaling', {'seconds': args.seconds, 'results': results})}")


if __name__ == "__main__":
    main()
