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


def run_pytest(folder: Path, env: dict[str, str], target: str) -> subprocess.CompletedProcess[str]:
    """pytest on ``target`` in ``folder``, in a process of its own (a plugin's tests, as its author runs them)."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", target],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_plugin_example_passes_the_space_contract(tmp_path: Path) -> None:
    blocks = python_blocks(DOC.read_text())
    (space,) = [b for b in blocks if "class SkipMLP(SearchSpace)" in b]
    (contract,) = [b for b in blocks if "class TestSkipMLP(SpaceContract)" in b]
    (tmp_path / "skip_mlp.py").write_text(space)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_skip_mlp.py").write_text(contract)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    out = run_pytest(tmp_path, env, "tests/test_skip_mlp.py")
    assert out.returncode == 0, out.stdout[-3000:]
    passed = re.search(r"(\d+) passed", out.stdout)
    assert passed is not None and int(passed.group(1)) >= 5, out.stdout[-500:]  # the whole contract ran


def files_of(text: str) -> dict[str, str]:
    """The blocks of a Markdown page fenced as ```LANG file=PATH, by path."""
    return dict(re.findall(r"^```\w+ file=(\S+)\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE))


@pytest.mark.slow
def test_plugin_package_installs_ships_its_data_and_is_searched(tmp_path: Path) -> None:
    package = tmp_path / "tiny-table"
    files = files_of(DOC.read_text())
    assert set(files) == {
        "pyproject.toml",
        "src/tiny_table/__init__.py",
        "src/tiny_table/results.csv",
        "tests/test_tiny_table.py",
    }
    for path, text in files.items():
        (package / path).parent.mkdir(parents=True, exist_ok=True)
        (package / path).write_text(text)
    site = tmp_path / "site"  # installed as a user would, but beside this environment rather than into it
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(package),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (site / "tiny_table" / "results.csv").is_file()  # the data file travelled in the wheel
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    def l2l(*args: str) -> str:
        code = "import sys; from l2l.runs.cli import main; sys.argv = ['l2l', *sys.argv[1:]]; main()"
        out = subprocess.run(
            [sys.executable, "-c", code, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        return out.stdout

    assert "tiny_table" in l2l("spaces", "list")
    shown = l2l("spaces", "show", "tiny_table")
    assert (
        "4 tokens, 36 token sequences (32 allowed), 24 architectures" in shown
        and "forbidden: op_1=pool, op_2=pool" in shown
    )
    searched = l2l("search", "--space", "tiny_table", "--children", "24", "--executor", "local", "--storage", storage)
    assert "24 children trained, 0 failed" in searched
    top = l2l("runs", "top", "1", "-k", "24", "--storage", storage)
    assert "test_acc" in top and "params" in top and "0.9027" in top  # every architecture, the best among them
    contract = run_pytest(package, env, "tests")
    assert contract.returncode == 0, contract.stdout[-3000:]


def test_readme_plugin_example_trains_a_child(tmp_path: Path) -> None:
    readme = (DOC.parents[1] / "README.md").read_text()
    (example,) = [b for b in python_blocks(readme) if "class TinyMLP(SearchSpace)" in b]
    (tmp_path / "tiny.py").write_text(example)
    from l2l.search_spaces import Context, load_space

    space = load_space(f"{tmp_path / 'tiny.py'}:TinyMLP", {"epochs": 3})
    result = space.evaluate(space.decode((2, 0, 1)), Context(seed=0))  # 256 relu units, lr 0.01
    assert result.ok and result.val_acc is not None and result.val_acc > 0.5, result


def run_python_page_script(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    """docs/python.md's script ``name``, run as a user would, in a folder of its own."""
    (folder / name).write_text(files_of((DOC.parent / "python.md").read_text())[name])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, name], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def test_the_python_page_script_searches_ranks_and_retrains_as_written(tmp_path: Path) -> None:
    """docs/python.md's script: it searches, ranks, and training its best architecture again gives the reward the
    run recorded."""
    out = run_python_page_script(tmp_path, "search_from_python.py")
    figures = re.search(r"recorded reward (-?[\d.]+), trained again (-?[\d.]+)", out.stdout)
    assert figures and figures.group(1) == figures.group(2), out.stdout
    assert "Warning" not in out.stderr, out.stderr


def test_the_python_page_weight_sharing_script_runs_as_written(tmp_path: Path) -> None:
    out = run_python_page_script(tmp_path, "ws_from_python.py")
    assert re.search(r"run 1: derived .+, shared-weight reward 0\.\d{3}", out.stdout), out.stdout
    assert re.search(r"trained from scratch: reward 0\.\d{3}", out.stdout), out.stdout


def test_the_python_page_scoreboard_script_runs_as_written(tmp_path: Path) -> None:
    out = run_python_page_script(tmp_path, "board_from_python.py")
    assert re.search(r"adam: lr [\d.e-]+, test accuracy per seed \[0\.\d+, 0\.\d+\]", out.stdout), out.stdout
    assert re.search(r"leader: (adam|signed)", out.stdout), out.stdout
