"""The rule language's one token table: every token means the same to the parser, compiler and exporter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from l2l.optsearch.compiler import RuleOptimizer
from l2l.optsearch.export import export_source
from l2l.optsearch.functional import decay_value
from l2l.optsearch.language import BINARY, DECAYS, UNARY, parse, to_formula
from l2l.optsearch.vocabulary import BINARY_FUNCTIONS, OPERANDS, STATISTICS, UNARY_FUNCTIONS


def test_the_language_offers_exactly_the_tables_tokens() -> None:
    assert UNARY == tuple(UNARY_FUNCTIONS) and BINARY == tuple(BINARY_FUNCTIONS)
    assert DECAYS == {"linear": "ld", "cyclic": "cd", "restart": "rd"}
    assert {op.arity for op in OPERANDS.values()} == {0}
    assert {f.arity for f in UNARY_FUNCTIONS.values()} == {1} and {f.arity for f in BINARY_FUNCTIONS.values()} == {2}
    # every statistic an operand reads is one the compiler and exporter know how to keep
    assert {k for op in OPERANDS.values() for k in op.stats} == set(STATISTICS)


def test_schedules_at_their_ends() -> None:
    assert decay_value("ld", 0.0, 10.0, 2) == 1.0 and decay_value("ld", 10.0, 10.0, 2) == 0.0
    assert decay_value("cd", 2.5, 10.0, 2) == pytest.approx(0.0)  # half a cycle of two in ten steps
    assert decay_value("rd", 4.9999, 10.0, 2) == pytest.approx(0.0, abs=1e-7)  # restarts at 5
    assert decay_value("rd", 5.0, 10.0, 2) == 1.0
    with pytest.raises(KeyError, match="'g' is not a decay schedule"):
        decay_value("g", 0.0, 10.0, 2)


def _every_token() -> list[str]:
    rules = [f"{op} one identity identity mul" for op in OPERANDS]
    rules += [f"g m {u} identity add" for u in UNARY]
    rules += [f"g m identity identity {b}" for b in BINARY] + [f"two g identity identity {b}" for b in BINARY]
    return rules + [f"g one identity identity keep ; decay={d}" for d in DECAYS]


@pytest.mark.parametrize("text", _every_token())
def test_each_tokens_compiled_and_exported_meanings_agree(tmp_path: Path, text: str) -> None:
    rule = parse(text)
    path = tmp_path / "one_token.py"
    path.write_text(export_source(rule, "OneToken"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    exported = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(exported)
    moved = []
    for use_export in (False, True):
        torch.manual_seed(0)
        w = torch.nn.Parameter(torch.randn(4, 3))
        start = w.detach().clone()
        opt = (
            exported.OneToken([w], lr=0.01, total_steps=6)
            if use_export
            else RuleOptimizer([w], rule, lr=0.01, total_steps=6)
        )
        for _ in range(5):
            w.grad = torch.randn(4, 3)
            opt.step()
        moved.append(w.detach() - start)
    assert torch.allclose(moved[0], moved[1], rtol=1e-5, atol=1e-7), to_formula(rule)
    assert moved[0].abs().max() > 0  # the token did move w
