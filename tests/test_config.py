"""Settings from a command line: KEY=VALUE parsing, config files, and precedence (defaults < TOML < flags)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from l2l.runs.cli import app
from l2l.runs.config import SearchFlags, UsageError, load_config_file, merge_settings, parse_assignments

SEARCH_TOML = """
space = "toy"
children = 6
seed = 8
executor = "local"
[space_options]
layers = 2
width = 16
[controller]
preset = "enas"
lr = 0.1
"""


def test_assignments_read_values_as_toml_or_else_as_text() -> None:
    parsed = parse_assignments(
        ["n=3", "lr=0.01", "on=true", "name='a b'", "ops=[1, 2]", "mode=fast", " key =x=y", "empty="], "-C"
    )
    assert parsed == {
        "n": 3,
        "lr": 0.01,
        "on": True,
        "name": "a b",
        "ops": [1, 2],
        "mode": "fast",
        "key": "x=y",
        "empty": "",
    }
    assert parse_assignments(["a=1", "a=2"], "-S") == {"a": 2}  # the last assignment of a key wins
    # numbers as Python writes them, which TOML does not: `--dp-option server_lr=.01` was the text '.01', refused
    python = parse_assignments(["lr=.01", "x=1.", "y=-.5e-3", "v=1.2.3", "w=.", "ip=10.0.0.1"], "--dp-option")
    assert python == {"lr": 0.01, "x": 1.0, "y": -0.0005, "v": "1.2.3", "w": ".", "ip": "10.0.0.1"}


@pytest.mark.parametrize(
    ("item", "flag", "message"),
    [
        ("layers", "--space-option", "--space-option expects KEY=VALUE, got 'layers'"),
        ("=1", "--controller-option", "--controller-option expects KEY=VALUE, got '=1'"),
        ("  =1", "-C", "-C expects KEY=VALUE, got '  =1'"),
    ],
)
def test_malformed_assignment_names_the_flag_and_the_item(item: str, flag: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_assignments(["ok=1", item], flag)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["-S", "layers"], "error: --space-option expects KEY=VALUE, got 'layers'"),
        (["-C", "lr"], "error: --controller-option expects KEY=VALUE, got 'lr'"),
    ],
)
def test_cli_prints_one_error_line_for_a_malformed_assignment(tmp_path: Path, args: list[str], line: str) -> None:
    result = CliRunner().invoke(app, ["search", "--space", "toy", *args, "--storage", f"sqlite:///{tmp_path}/x.db"])
    assert result.exit_code == 1
    assert result.output.strip() == line
    assert not (tmp_path / "x.db").exists()  # rejected before any run is stored


def test_config_file_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(UsageError) as info:
        load_config_file(missing)
    assert str(info.value) == f"config file {str(missing)!r} does not exist"
    bad = tmp_path / "bad.toml"
    bad.write_text("space = \n")
    with pytest.raises(UsageError) as info:
        load_config_file(bad)
    assert str(info.value).startswith(f"config file {str(bad)!r} is not valid TOML: ")


def test_precedence_defaults_then_toml_then_flags(tmp_path: Path) -> None:
    cfg = tmp_path / "search.toml"
    cfg.write_text(SEARCH_TOML)
    flags = SearchFlags.parse(
        {"children": 4, "batch": None, "strategy": "random", "space": None},
        {"max_concurrent": 2, "address": None},
        ["layers=3"],
        ["lr=0.01", "entropy=0.5"],
        cfg,
    )
    settings = flags.settings({"executor": "ray", "batch": 5, "seed": 0})
    assert settings == {
        "space": "toy",  # TOML (the flag was not given)
        "children": 4,  # the flag over TOML's 6
        "seed": 8,  # TOML over the default
        "executor": "local",  # TOML over the command's default
        "batch": 5,  # the default, given by neither
        "strategy": "random",  # the flag
        "space_options": {"layers": 3, "width": 16},  # -S merges into TOML's table key by key
        "controller": {"preset": "enas", "lr": 0.01, "entropy": 0.5},  # so does -C
        "executor_options": {"max_concurrent": 2},
    }


def test_dp_option_flags_merge_into_the_config_files_dp_options_key_by_key() -> None:
    file = {"executor_options": {"workers_per_child": 2, "dp_options": {"shards": 2, "n_fetch": 2}}}
    flags = SearchFlags.parse({}, {"dp_options": {"n_fetch": 3, "n_push": 3}})
    merged = merge_settings(file, flags)["executor_options"]
    assert merged == {"workers_per_child": 2, "dp_options": {"shards": 2, "n_fetch": 3, "n_push": 3}}
    assert file["executor_options"]["dp_options"] == {"shards": 2, "n_fetch": 2}  # the file's table is not changed


def test_defaults_fill_only_what_nothing_else_set() -> None:
    only_flags = SearchFlags.parse({"executor": "local"}, {}, None, None)
    assert only_flags.settings({"executor": "ray"}) == {"executor": "local"}
    assert SearchFlags().settings({"executor": "ray"}) == {"executor": "ray"}
    assert SearchFlags().settings() == {}
    # tables a flag does not touch stay as the file gave them
    file = {"space_options": {"layers": 2}, "executor_options": {"address": "auto"}}
    merged = merge_settings(file, SearchFlags.parse({}, {"max_concurrent": 3}, None, ["lr=1"]))
    assert merged == {
        "space_options": {"layers": 2},
        "controller": {"lr": 1},
        "executor_options": {"address": "auto", "max_concurrent": 3},
    }
    assert file == {"space_options": {"layers": 2}, "executor_options": {"address": "auto"}}  # not mutated


def test_merged_settings_build_a_search_config_with_its_own_defaults(tmp_path: Path) -> None:
    from l2l.runs.search import SearchConfig

    cfg = tmp_path / "search.toml"
    cfg.write_text(SEARCH_TOML)
    config = SearchConfig.from_json(SearchFlags.parse({"batch": 3}, {}, None, None, cfg).settings({"executor": "ray"}))
    assert (config.space, config.children, config.batch, config.seed, config.executor) == ("toy", 6, 3, 8, "local")
    assert config.strategy == SearchConfig().strategy and config.mode == SearchConfig().mode


def test_resume_conflicts_name_every_given_flag_in_a_stable_order(tmp_path: Path) -> None:
    given = SearchFlags.parse(
        {"space": "toy", "children": 3, "seed": None},
        {"max_concurrent": 2, "address": "auto", "child_timeout": None},
        ["a=1"],
        ["b=2"],
        tmp_path / "c.toml",
    )
    assert given.resume_conflicts() == ["children", "space", "config", "space-option", "controller-option"]
    assert given.moves() == {"max_concurrent": 2, "address": "auto"}  # where it runs may change on resume
    moved = SearchFlags.parse({}, {"address": "h:1", "cpus_per_child": 2.0, "gpus_per_child": 1.0}, [], [])
    assert moved.resume_conflicts() == ["gpus-per-child"] and moved.moves() == {"address": "h:1", "cpus_per_child": 2.0}
    assert SearchFlags.parse({"space": None}, {"address": None}, [], []).resume_conflicts() == []


def test_a_flag_equal_to_the_stored_setting_is_no_conflict() -> None:
    """``--resume RUN --executor ray`` on a run stored with the Ray executor changes nothing: not refused."""
    stored = {"space": "toy", "executor": "ray", "space_options": {"a": 1}, "executor_options": {"gpus_per_child": 2.0}}
    same = SearchFlags.parse({"space": "toy", "executor": "ray"}, {"gpus_per_child": 2.0}, ["a=1"], [])
    assert same.resume_conflicts(stored) == []
    other = SearchFlags.parse({"space": "toy", "executor": "local"}, {"gpus_per_child": 1.0}, ["a=2"], [])
    assert other.resume_conflicts(stored) == ["executor", "space-option", "gpus-per-child"]
