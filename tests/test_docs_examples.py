"""The plugin reference's example runs as written: its space passes the contract its test file subclasses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def python_blocks(text: str) -> list[str]:
    """The ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.slow
def test_plugin_example_passes_the_space_contract(tmp_path: Path) -> None:
    blocks = python_blocks(DOC.read_text())
    (space,) = [b for b in blocks if "class SkipMLP(SearchSpace)" in b]
    (contract,) = [b for b in blocks if "class TestSkipMLP(SpaceContract)" in b]
    (tmp_path / "skip_mlp.py").write_text(space)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_skip_mlp.py").write_text(contract)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_skip_mlp.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed is not None and int(passed.group(1)) >= 5, out.stdout[-500:]  # the whole contract ran
