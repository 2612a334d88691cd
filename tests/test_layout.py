"""The package's shape: imports point one way, no module reaches into another's private names, modules stay small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("nas", "optsearch", "controllers", "search_spaces", "runs")
# what each package may import of the others (DESIGN.md: runs -> controllers, search_spaces -> nas, optsearch)
ALLOWED = {
    "nas": set(),
    "optsearch": {"nas"},
    "search_spaces": {"nas", "optsearch"},
    "controllers": {"search_spaces"},
    "runs": {"nas", "optsearch", "search_spaces", "controllers"},
}
MAX_LINES = 400


def modules() -> list[tuple[str, Path]]:
    """(package, file) of every module of l2l's subpackages, migrations left out (Alembic writes them)."""
    return [
        (package, path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        if "migrations" not in path.parts
    ]


def imported(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every `from l2l.X import names` and `import l2l.X` in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("l2l."):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names if a.name.startswith("l2l."))
    return out


@pytest.mark.parametrize(
    ("package", "path"), modules(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v
)
def test_imports_point_one_way_and_skip_private_names(package: str, path: Path) -> None:
    for module, names in imported(path):
        target = module.split(".")[1]
        if target == "testing":
            pytest.fail(
                f"{path.relative_to(ROOT)} imports {module}: the contract suites are for tests, not the runtime"
            )
        if target != package:
            assert target in ALLOWED[package], f"{path.relative_to(ROOT)} imports {module} against the arrows"
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{path.relative_to(ROOT)} imports private {private} from {module}"
        else:  # within a package, a private name stays in its own module
            own = ".".join(("l2l", *path.relative_to(ROOT).with_suffix("").parts))
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private or module == own, f"{path.relative_to(ROOT)} imports private {private} from {module}"


def test_modules_stay_small() -> None:
    big = {str(p.relative_to(ROOT)): n for _, p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"
