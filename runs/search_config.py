"""What defines a search (`SearchConfig`, stored with its run) and the errors a search raises."""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from signal import SIGINT
from typing import Any

from l2l.controllers import DEFAULT_STRATEGY, costs_needed, default_batch
from l2l.runs.pruning import PRUNERS
from l2l.runs.store_records import MAX_ID
from l2l.search_spaces.api import SearchSpace
from l2l.search_spaces.registry import absolute_ref
from l2l.search_spaces.typed import OptionTypeError, coerce_fields

MODES = ("auto", "sync", "async")
TRAINING_LENGTHS = ("epochs", "steps")  # the budget keys l2l gives a meaning to (`SearchSpace.budget_keys`)


class SearchError(RuntimeError):
    """The search cannot start or continue (bad configuration, a run that cannot be resumed)."""


class SearchInterrupted(SearchError):
    """The user stopped the search; the run is left resumable."""

    def __init__(self, run_id: int, signal: int = int(SIGINT)) -> None:
        super().__init__(f"run {run_id} interrupted; continue it with: l2l search --resume {run_id}")
        self.run_id = run_id
        self.signal = signal  # what stopped it: SIGINT (Ctrl-C), or SIGTERM (`driver.Terminated`)


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search; stored with the run so `--resume` rebuilds the same search."""

    space: str = "mlp"
    space_options: Mapping[str, Any] = field(default_factory=dict)
    strategy: str = DEFAULT_STRATEGY
    controller: Mapping[str, Any] = field(default_factory=dict)
    children: int = 100
    batch: int = 0  # 0: the strategy's own default (`l2l.controllers.default_batch`), resolved here
    seed: int = 0
    executor: str = "local"
    executor_options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    failure_reward: float | None = None
    budget: Mapping[str, Any] = field(default_factory=dict)
    threads_per_child: int = 1
    pruner: str | None = None
    name: str | None = None
    mode: str = "auto"
    weight_sharing: Mapping[str, Any] | None = None  # settings of a weight-sharing search (`l2l.runs.weight_sharing`)
    # each resume that moved the run (another --address, --max-concurrent, --child-timeout, --cpus-per-child): when,
    # from, to
    moves: tuple[Mapping[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.space, str):  # SearchConfig(space=TinyMLP) in a script
            got = f"the class {self.space.__name__}" if isinstance(self.space, type) else repr(self.space)
            raise SearchError(
                f"space must be a registered name or 'path/to/file.py:Class', got {got} (a class defined in a "
                "script: space=__file__ + ':ClassName')"
            )
        if self.name is not None:  # as commands find it (`l2l runs show NAME` strips what it is given)
            object.__setattr__(self, "name", str(self.name).strip() or None)
        for key in ("strategy", "executor", "device", "mode"):
            if not isinstance(getattr(self, key), str):
                raise SearchError(f"{key} must be text, got {getattr(self, key)!r}")
        for key in ("children", "batch", "seed", "threads_per_child"):
            if isinstance(getattr(self, key), bool) or not isinstance(getattr(self, key), numbers.Integral):
                raise SearchError(f"{key} must be a whole number, got {getattr(self, key)!r}")
            object.__setattr__(self, key, int(getattr(self, key)))  # numpy's integers too, stored as JSON
        object.__setattr__(self, "space", absolute_ref(self.space))  # a file plugin's path, from anywhere
        if not 1 <= self.children <= MAX_ID:  # child numbers are integer columns
            raise SearchError(f"children must be in [1, {MAX_ID}], got {self.children}")
        if not 0 <= self.seed < 2**31:  # Optuna's samplers and numpy take seeds in [0, 2**32); children add theirs
            raise SearchError(f"seed must be in [0, 2**31), got {self.seed}")
        if self.batch == 0:
            try:
                object.__setattr__(self, "batch", default_batch(self.strategy))
            except ValueError as exc:
                raise SearchError(str(exc)) from exc
        if self.batch < 1:
            raise SearchError(f"batch must be >= 1, got {self.batch}")
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise SearchError(f"unknown pruner {self.pruner!r}; known: {', '.join(PRUNERS)}")
        if self.mode not in MODES:
            raise SearchError(f"unknown mode {self.mode!r}; known: {', '.join(MODES)}")
        if self.threads_per_child < 1:
            raise SearchError(f"threads_per_child must be >= 1, got {self.threads_per_child}")
        if self.weight_sharing is not None and not isinstance(self.weight_sharing, Mapping):
            raise SearchError(f"weight_sharing must be a table of settings, got {self.weight_sharing!r}")
        for key in ("space_options", "controller", "budget", "executor_options"):
            if not isinstance(getattr(self, key), Mapping):
                raise SearchError(f"{key} must be a mapping of settings (a dict), got {getattr(self, key)!r}")
        whole = {k: int(v) for k, v in self.budget.items() if k in TRAINING_LENGTHS and _integral_float(v)}
        if whole:  # TOML's and JSON's 2.0 epochs are 2 (a pruned child's count compares with it)
            object.__setattr__(self, "budget", {**self.budget, **whole})
        if self.failure_reward is not None:
            reward = self.failure_reward
            if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
                raise SearchError(f"failure_reward must be a finite number, got {reward!r}")

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the run's config column."""
        data = dataclasses.asdict(self)
        for key in ("space_options", "controller", "budget", "executor_options"):
            data[key] = dict(data[key])
        if self.weight_sharing is not None:
            data["weight_sharing"] = dict(self.weight_sharing)
        data["moves"] = [dict(m) for m in self.moves]
        return data

    @staticmethod
    def from_json(data: Mapping[str, Any], recorded: bool = False) -> SearchConfig:
        """A config from a new run's settings (flags, a config file), or with ``recorded`` one stored with `to_json`;
        unknown keys are rejected with their names. Only a stored one carries ``moves``, which --resume records."""
        settable = {f.name for f in dataclasses.fields(SearchConfig)} - {"moves"}
        known = settable | ({"moves"} if recorded else set())
        unknown = sorted(set(data) - known)
        if unknown:
            raise SearchError(f"unknown search setting(s) {unknown}; known: {', '.join(sorted(settable))}")
        data = {**data, "moves": tuple(data.get("moves") or ())}
        try:
            return SearchConfig(**coerce_fields(SearchConfig, data, "search setting"))
        except OptionTypeError as exc:
            raise SearchError(str(exc)) from None


def executor_options(config: SearchConfig) -> dict[str, Any]:
    """The executor's options: on Ray, a child of several threads reserves as many CPUs unless
    ``cpus_per_child`` says otherwise (two 2-thread children on a 2-CPU machine ran at a tenth of their speed)."""
    options = dict(config.executor_options)
    if config.executor == "ray" and config.threads_per_child > 1:
        options.setdefault("cpus_per_child", config.threads_per_child)
    return options


def check_new_run(space: SearchSpace, config: SearchConfig) -> None:
    """What a new run refuses that a stored one still rebuilds with: budget keys the space does not read
    (`check_budget`), options that change nothing (`SearchSpace.ignored_options`), a pruner on exact rewards,
    data this machine cannot load (`check_data`)."""
    check_name(config)
    check_budget(space, config.budget)
    check_ignored(space)
    if config.pruner is not None and space.exact_rewards():
        raise SearchError(
            f"--pruner {config.pruner}: space {space.name!r} has exact rewards (a lookup or a simulation) "
            "and trains nothing, epoch by epoch, that a pruner could stop"
        )
    check_data(space)


def check_data(space: SearchSpace) -> None:
    """Refuse, before a run is recorded, a space whose data cannot be loaded on this machine
    (`SearchSpace.check_data`: a dataset that needs a package or files it lacks): its children run here
    (`--executor local`), or the Ray executor ships the data from here."""
    from l2l.nas.data import DatasetError

    try:
        space.check_data()
    except DatasetError as exc:
        raise SearchError(f"space {space.name!r}: {exc}") from None
    except Exception as exc:  # a plugin's check: what it raises names what is missing
        raise SearchError(f"space {space.name!r}: check_data() failed: {type(exc).__name__}: {exc}") from exc


def check_ignored(space: SearchSpace) -> None:
    """Refuse a new run of options that change nothing (`SearchSpace.ignored_options`), in one line."""
    ignored = space.ignored_options()
    if ignored:
        raise SearchError(f"search space {space.name!r}: {'; '.join(ignored)}")


def _integral_float(value: Any) -> bool:
    return isinstance(value, float) and value.is_integer()


def check_budget(space: SearchSpace, budget: Mapping[str, Any]) -> None:
    """Refuse, before any child, a budget key the space declares it does not read (a misspelt ``epoch`` would
    train every child with the default budget; a space that declares no ``budget_keys`` reads what it
    understands: nothing to check the keys against, unless its rewards are exact, when it trains nothing a
    budget sets), and epochs or steps that are not a whole number >= 1,
    as `l2l runs best --retrain --epochs/--steps` takes them, whatever the space (every child would fail)."""
    declared = tuple(space.budget_keys)
    unknown = sorted(str(k) for k in budget if k not in declared)
    if unknown and not declared and space.exact_rewards():  # a lookup or a simulation: it trains nothing
        raise SearchError(
            f"budget {', '.join(repr(k) for k in unknown)}: space {space.name!r} has exact rewards (a lookup or a "
            "simulation) and reads no budget"
        )
    if declared and unknown:
        raise SearchError(
            f"budget {', '.join(repr(k) for k in unknown)}: space {space.name!r} does not read "
            f"{'it' if len(unknown) == 1 else 'them'}; it reads: {', '.join(declared)}"
        )
    for key in (k for k in TRAINING_LENGTHS if k in budget):
        value = budget[key]
        number = float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else math.nan
        if not (number >= 1 and number.is_integer()):
            raise SearchError(f"budget {key!r} must be a whole number >= 1, got {value!r}")


def check_costs(space: SearchSpace, transform: str) -> None:
    """Refuse, before any child, a reward transform that reads a cost the space declares it never reports.
    A space that declares no ``cost_metrics`` is checked at its first result instead."""
    declared = tuple(space.cost_metrics)
    missing = [cost for cost in costs_needed(transform) if declared and cost not in declared]
    if missing:
        raise SearchError(
            f"reward transform {transform!r} needs the cost {missing[0]!r}, which space {space.name!r} does not "
            f"report; it reports: {', '.join(declared)}"
        )


MAX_NAME = 200  # characters of a run name: a table column, not a document


def check_name(config: SearchConfig) -> None:
    """`SearchError` for a new run's name commands could not find it by (`name_problem`)."""
    problem = None if config.name is None else name_problem(str(config.name))
    if problem is not None:
        raise SearchError(problem)


def name_problem(name: str) -> str | None:
    """Why a new run cannot be called ``name`` (None when it can): a name commands could not find it by."""
    if re.fullmatch(r"[0-9]+", name.strip()):  # RUN arguments read it as an id
        return f"the run name {name!r} is a number, which commands read as a run id; add a letter"
    if not name.strip():
        return "the run name is empty; give one with a letter, or none"
    if name.startswith("-"):
        return f"the run name {name!r} starts with '-', which commands read as an option"
    if any(controls(c) for c in name):
        return f"the run name {name!r} holds control characters"
    if len(name) > MAX_NAME:
        return f"the run name is {len(name)} characters long; at most {MAX_NAME}"
    return None


def controls(c: str) -> bool:
    """Whether ``c`` steers a terminal: a control character, or a bidirectional override or isolate (joiners
    and other format characters that words and emoji need are not)."""
    return unicodedata.category(c) == "Cc" or "\u202a" <= c <= "\u202e" or "\u2066" <= c <= "\u2069"
