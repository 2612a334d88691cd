"""l2l installs as one import package, `l2l`, and nothing else at the top level."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_only_the_l2l_package(tmp_path: Path) -> None:
    build = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)]
    subprocess.run(
        [sys.executable, "-m", *build],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("l2l-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        assert zf.read(top_level).decode().split() == ["l2l"]
        entry_points = zf.read(top_level.replace("top_level.txt", "entry_points.txt")).decode()
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"l2l"}
    # the data files and the migrations travel inside the package
    for path in (
        "l2l/search_spaces/data/",
        "l2l/nas/corpus/",
        "l2l/runs/migrations/versions/",
        "l2l/py.typed",
        "l2l/runs/dashboard/templates/run.html",
        "l2l/runs/dashboard/static/dashboard.js",
    ):
        assert any(n.startswith(path) for n in names), path
    assert "l2l = l2l.runs.cli:main" in entry_points
    assert "toy = l2l.search_spaces.toy:ToySpace" in entry_points


@pytest.mark.parametrize("name", ["runs", "nas", "controllers", "optsearch", "search_spaces"])
def test_no_generic_top_level_names(name: str, tmp_path: Path) -> None:
    # run outside the repository, where the source folders are not on sys.path
    out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0 and "ModuleNotFoundError" in out.stderr
    ok = subprocess.run([sys.executable, "-c", f"import l2l.{name}"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_packaged_data_loads_outside_the_repository(tmp_path: Path) -> None:
    # data files are found through the l2l package, not through a source folder on sys.path
    code = (
        "from l2l.search_spaces.nb201 import load_table; from l2l.nas.charlm import load_corpus; "
        "print(len(load_table()), load_corpus().n_vocab)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows, vocab = map(int, out.stdout.split())
    assert rows == 15625 and vocab > 40
