"""The screen became a wrapper without changing a single proposal: the same seed gives the run l2l 0.1 gave.

The digests were recorded with l2l 0.1 (commit 1467dbe), where screening lived inside the REINFORCE and PPO
controllers (``reinforce`` with ``-C screen=0`` was plain REINFORCE). They pin the published NAS-Bench-201
figures of the default strategy (benchmarks/README.md) to today's code.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from l2l.controllers import make_controller
from l2l.search_spaces import Context, load_space


def digest(strategy: str, settings: dict[str, Any]) -> str:
    """sha256 prefix of the first 48 proposals of a seeded NAS-Bench-201 search in batches of 4."""
    space = load_space("nb201", {"dataset": "cifar10"})
    controller = make_controller(strategy, space.decisions(), 11, settings)
    tokens: list[list[int]] = []
    while len(tokens) < 48:
        proposals = controller.propose(4)
        rewards = [space.evaluate(space.decode(p.tokens), Context()).reward for p in proposals]
        controller.update(proposals, rewards)
        tokens += [list(p.tokens) for p in proposals]
    return hashlib.sha256(json.dumps(tokens).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("strategy", "settings", "recorded"),
    [
        ("reinforce+screen", {"screen_gp_from": 24}, "734eea3cbaf0a6e8"),  # ridge screening, then the GP
        ("reinforce", {}, "efd6c69618e8d4c1"),
        ("ppo+screen", {"screen_model": "ridge"}, "d3c9b301d18ea0c9"),
    ],
)
def test_same_seed_same_proposals_as_l2l_0_1(strategy: str, settings: dict[str, Any], recorded: str) -> None:
    assert digest(strategy, settings) == recorded
