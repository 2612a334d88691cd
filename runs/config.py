"""Search settings from a command line: a TOML file, flags and KEY=VALUE assignments, merged by precedence.

The CLI and the benchmark harnesses read settings the same way; this module needs neither Typer nor torch.
Precedence, lowest first: the command's defaults, the ``--config`` TOML file, the flags; ``-S`` (space
options), ``-C`` (controller settings) and the executor flags merge into their tables key by key.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STORAGE_ENV = "L2L_STORAGE"  # the store commands use without --storage


class UsageError(ValueError):
    """A flag or config file given to the CLI is invalid."""


PYTHON_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?")


def parse_assignments(items: list[str], flag: str) -> dict[str, Any]:
    """KEY=VALUE pairs; values are read as TOML (numbers, booleans, quoted strings), numbers TOML does not
    write as Python does (``.01``, ``1.``, ``+.5e-3``), or else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = float(raw) if PYTHON_FLOAT.fullmatch(raw.strip()) else raw
        out[key.strip()] = value
    return out


def load_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML file of search settings (the fields of `SearchConfig`)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"config file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise UsageError(f"config file {str(path)!r} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        where = f"{exc.reason} at byte {exc.start}"
        raise UsageError(f"config file {str(path)!r} is not UTF-8 text (TOML is): {where}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


# the tables that assignments and executor flags merge into, key by key, with the flag that names each
TABLES = (
    ("space_options", "space-option"),
    ("controller", "controller-option"),
    ("executor_options", None),
)


@dataclass(frozen=True)
class SearchFlags:
    """What one command line gave, kept apart from the config file and defaults so that precedence is one rule."""

    given: Mapping[str, Any] = field(default_factory=dict)
    space_options: Mapping[str, Any] = field(default_factory=dict)
    controller: Mapping[str, Any] = field(default_factory=dict)
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    config: Path | None = None
    weight_sharing: Mapping[str, Any] | None = None  # --weight-sharing and its -W settings (None: not given)

    @staticmethod
    def parse(
        flags: Mapping[str, Any],
        executor_flags: Mapping[str, Any],
        space_option: list[str] | None = None,
        controller_option: list[str] | None = None,
        config: Path | None = None,
    ) -> SearchFlags:
        """Flags as a command line gives them: None means not given; -S and -C are KEY=VALUE texts."""
        return SearchFlags(
            given={k: v for k, v in flags.items() if v is not None},
            space_options=parse_assignments(space_option or [], "--space-option"),
            controller=parse_assignments(controller_option or [], "--controller-option"),
            executor_options={k: v for k, v in executor_flags.items() if v is not None},
            config=config,
        )

    def settings(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The merged settings: defaults < the config file < flags (tables merge key by key)."""
        file = load_config_file(self.config) if self.config is not None else {}
        return merge_settings(file, self, defaults)

    def resume_conflicts(self, stored: Mapping[str, Any] | None = None) -> list[str]:
        """The flags (without dashes) that a resumed run cannot take, since it keeps its ``stored`` settings (a
        flag equal to its stored value changes nothing and is no conflict); where it runs (`MOVABLE`) is not
        one of them."""
        stored = stored or {}

        def differs(values: Mapping[str, Any], table: Any) -> bool:
            table = table if isinstance(table, Mapping) else {}
            return any(k not in table or table[k] != v for k, v in values.items())

        extra = sorted(k for k, v in self.given.items() if k not in stored or stored[k] != v)
        extra += ["config"] if self.config else []
        extra += ["weight-sharing"] if self.weight_sharing is not None else []
        extra += [
            name for table, name in TABLES if name is not None and differs(getattr(self, table), stored.get(table))
        ]
        stored_options = stored.get("executor_options")
        options: Mapping[str, Any] = stored_options if isinstance(stored_options, Mapping) else {}
        moved = {k: v for k, v in self.executor_options.items() if k not in MOVABLE}
        changed = sorted(k for k, v in moved.items() if k not in options or options[k] != v)
        return extra + [k.replace("_", "-") for k in changed]

    def moves(self) -> dict[str, Any]:
        """The executor options given that move a resumed run (`MOVABLE`): where and how wide it runs."""
        return {k: v for k, v in self.executor_options.items() if k in MOVABLE}


# --address values that mean a Ray instance of this process's own (the default; on --resume: off a cluster)
EMBEDDED = (None, "local", "embedded")
# what a resumed run may change: where its children run, not what the run is
MOVABLE = ("address", "max_concurrent", "child_timeout", "cpus_per_child")  # CPUs Ray reserves, not threads
# the settings a weight-sharing search does not use (it runs in the driver's process for its epochs)
SHARING_UNUSED = ("children", "pruner", "mode", "executor", "executor_options")


def settings_shown(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's recorded settings as `l2l runs show` and the dashboard show them: a weight-sharing run's without
    those it does not use (recorded with their defaults)."""
    if config.get("weight_sharing") is None:
        return dict(config)
    return {k: v for k, v in config.items() if k not in SHARING_UNUSED}


def sharing_conflicts(settings: Mapping[str, Any]) -> list[str]:
    """The settings (as flags, without dashes) that a weight-sharing search would ignore: it runs in the
    driver's process for its epochs, so the number of children, the executor and its options, the pruner
    and the batch mode do not apply."""
    plain = [k for k in SHARING_UNUSED if not k.startswith("executor")]  # the executor: below, when not local
    names = [k for k in plain if settings.get(k) is not None]
    if settings.get("executor") not in (None, "local"):
        names.append("executor")
    names += [k for k, v in (settings.get("executor_options") or {}).items() if v not in (None, {}, [])]
    return [flag_spelling(n) for n in names]


def flag_spelling(setting: str) -> str:
    """A setting's name as its `l2l search` flag spells it, without the dashes (``dp_options``: ``dp-option``)."""
    return {"dp_options": "dp-option"}.get(setting, setting.replace("_", "-"))


def merge_settings(
    file: Mapping[str, Any], flags: SearchFlags, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Settings by precedence: ``defaults`` < ``file`` (a parsed config file) < ``flags``."""
    settings: dict[str, Any] = dict(file)
    for table in [t for t, _ in TABLES] + ["weight_sharing", "budget"]:
        if table in settings and not isinstance(settings[table], Mapping):
            raise UsageError(
                f"config file: {table} must be a table ([{table}] or {table} = {{...}}), got {settings[table]!r}"
            )
    if "batch" in settings and settings["batch"] == 0:  # 0 is the strategy's default inside, not a batch size
        raise UsageError("config file: batch must be >= 1 (leave it out for the strategy's own default)")
    settings.update(flags.given)
    for table, _ in TABLES:
        extra = getattr(flags, table)
        if extra:
            settings[table] = {**settings.get(table, {}), **extra}
    dp_file, dp_flags = (file.get("executor_options") or {}).get("dp_options"), flags.executor_options.get("dp_options")
    if isinstance(dp_file, Mapping) and dp_flags:  # --dp-option merges into the file's dp_options too, key by key
        settings["executor_options"]["dp_options"] = {**dp_file, **dp_flags}
    if flags.weight_sharing is not None:  # merges into the file's [weight_sharing] table, key by key
        settings["weight_sharing"] = {**(settings.get("weight_sharing") or {}), **flags.weight_sharing}
    for key, value in (defaults or {}).items():
        settings.setdefault(key, value)
    return settings
