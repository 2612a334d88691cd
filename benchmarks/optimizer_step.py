"""Time per optimizer step: the rule compiler's Adam preset against torch.optim.Adam(foreach=True).

The model is an MLP of about 1.6M parameters in 6 tensors; gradients are fixed random tensors, so only
the optimizer step is timed. Also times the other presets, and torch.optim.Adam without foreach.

python -m benchmarks.optimizer_step [--steps 200] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from benchmarks.common import print_table, write_json
from l2l.optsearch.compiler import RuleOptimizer
from l2l.optsearch.presets import PRESETS, preset


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(1024, 1024),
        torch.nn.ReLU(),
        torch.nn.Linear(1024, 512),
        torch.nn.ReLU(),
        torch.nn.Linear(512, 10),
    )


def time_step(make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer], steps: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per step (after a warm-up)."""
    params = list(_model().parameters())
    gen = torch.Generator().manual_seed(1)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen) * 1e-3
    opt = make(params)
    for _ in range(10):
        opt.step()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            opt.step()
        samples.append((time.perf_counter() - started) / steps)
    return statistics.median(samples)


def _compiled(name: str) -> Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]:
    rule = preset(name)
    return lambda ps: RuleOptimizer(ps, rule, lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_params = sum(p.numel() for p in _model().parameters())
    cases: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
        "torch Adam foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch Adam for-loop": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
    }
    for name in PRESETS:
        cases[f"l2l {name}"] = _compiled(name)
    cases["torch SGD momentum foreach"] = lambda ps: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, foreach=True)
    times = {label: time_step(make, args.steps, args.repeats) for label, make in cases.items()}
    reference = times["torch Adam foreach"]
    rows = [[label, f"{t * 1e3:.3f}", f"{t / reference:.2f}"] for label, t in times.items()]
    print(f"{n_params:,} parameters, {args.threads} thread(s), {args.steps} steps x {args.repeats} repeats")
    print_table(["optimizer", "ms per step", "x torch Adam foreach"], rows)
    ratio = times["l2l adam"] / reference
    print(f"l2l adam / torch Adam(foreach=True) = {ratio:.2f} (goal <= 1.3)")
    payload = {"params": n_params, "threads": args.threads, "seconds_per_step": times, "adam_ratio": ratio}
    print(f"wrote {write_json('optimizer_step', payload)}")


if __name__ == "__main__":
    main()
