"""The optimizer task suite: small fixed tasks of different kinds, split into `search` and `heldout`.

`search` tasks are the only ones an optimizer search sees (its reward and its funnel); `heldout` tasks
are never touched by the reward, by selection or by any setting chosen during development, and are run
once, for the scoreboard. Third-party packages add tasks through the entry-point group
``l2l.optimizer_tasks``: an entry point names a `SuiteTask`, a sequence of them, or a function
returning either. Their names join the `user` suite (and may be listed by name anywhere a suite is).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

import torch

from l2l.optsearch.trainer import SuiteTask, task_loss

ENTRY_POINT_GROUP = "l2l.optimizer_tasks"


class TaskError(ValueError):
    """A task or suite name is unknown, or a task plugin is broken."""


class TaskPluginError(TaskError):
    """A task plugin (entry-point group ``l2l.optimizer_tasks``) is broken: its package's mistake, not the user's."""


SEARCH_TASKS: tuple[SuiteTask, ...] = (
    SuiteTask(
        "digits-logreg", "digits", "linear", "cross_entropy", "accuracy", steps=150, batch_size=64,
        kind="convex: logistic regression",
    ),
    SuiteTask(
        "digits-mlp", "digits", "mlp", "cross_entropy", "accuracy", steps=200, batch_size=64,
        options=(("width", 64), ("depth", 2)), kind="MLP",
    ),
    SuiteTask(
        "mnist1d-cnn", "mnist1d", "cnn1d", "cross_entropy", "accuracy", steps=600, batch_size=64,
        kind="1-D CNN",
    ),
    SuiteTask(
        "digits-autoencoder", "digits-reconstruction", "autoencoder", "mse", "mse", steps=1000, batch_size=64,
        kind="autoencoder (reconstruction loss)",
    ),
    SuiteTask(
        "friedman-mlp", "friedman", "mlp", "mse", "mse", steps=500, batch_size=64,
        options=(("width", 64), ("depth", 2), ("activation", "tanh")), kind="regression",
    ),
    SuiteTask(
        "char-lstm", "shakespeare", "char-lstm", "cross_entropy", "bpc", steps=300, batch_size=32,
        options=(("embed", 32), ("hidden", 96)), kind="character LSTM language model",
    ),
)  # fmt: skip

HELDOUT_TASKS: tuple[SuiteTask, ...] = (
    SuiteTask(
        "mnist1d-logreg", "mnist1d", "linear", "cross_entropy", "accuracy", steps=200, batch_size=64,
        kind="convex: logistic regression",
    ),
    SuiteTask(
        "mnist1d-deep-mlp", "mnist1d", "mlp", "cross_entropy", "accuracy", steps=500, batch_size=64,
        options=(("width", 64), ("depth", 8), ("activation", "tanh")), kind="deep plain MLP, no normalization",
    ),
    SuiteTask(
        "digits-cnn-bn", "digits", "cnn2d", "cross_entropy", "accuracy", steps=120, batch_size=64,
        options=(("width", 8), ("batchnorm", True)), kind="CNN with batch norm",
    ),
    SuiteTask(
        "synthetic-mlp-dropout", "synthetic", "mlp", "cross_entropy", "accuracy", steps=500, batch_size=64,
        options=(("width", 128), ("depth", 2), ("dropout", 0.3)), kind="MLP with dropout",
    ),
    SuiteTask(
        "mnist1d-gru", "mnist1d", "gru", "cross_entropy", "accuracy", steps=500, batch_size=64,
        options=(("hidden", 32), ("chunk", 4)), kind="recurrent sequence classifier",
    ),
    SuiteTask(
        "char-transformer", "shakespeare", "char-transformer", "cross_entropy", "bpc", steps=300, batch_size=32,
        options=(("dim", 32), ("layers", 2), ("heads", 4)), kind="small character transformer",
    ),
)  # fmt: skip

BUILTIN: dict[str, SuiteTask] = {t.name: t for t in (*SEARCH_TASKS, *HELDOUT_TASKS)}
SUITES: dict[str, tuple[str, ...]] = {
    "search": tuple(t.name for t in SEARCH_TASKS),
    "heldout": tuple(t.name for t in HELDOUT_TASKS),
}


SOURCES: dict[str, str] = {}  # each plugin task's plugin, as its errors name it


def builtin_tasks() -> list[SuiteTask]:
    """The search and heldout tasks (registered under ``l2l.optimizer_tasks`` as ``builtin``)."""
    return list(BUILTIN.values())


def _entry_tasks(ep: EntryPoint) -> list[SuiteTask]:
    """The tasks one entry point registers; `TaskError` naming it when it cannot give them."""
    where = f"optimizer task plugin {ep.name!r} ({ep.value})"
    try:
        value = ep.load()
        if callable(value) and not isinstance(value, SuiteTask):
            value = value()
    except Exception as exc:  # plugin code: any error on import or call is the plugin's
        raise TaskError(f"{where} failed to load: {type(exc).__name__}: {exc}") from exc
    tasks = [value] if isinstance(value, SuiteTask) else list(value) if isinstance(value, Sequence) else None
    if tasks is None or not all(isinstance(t, SuiteTask) for t in tasks):
        held = sorted({type(t).__name__ for t in tasks or () if not isinstance(t, SuiteTask)})
        gave = f"a {type(value).__name__} holding {', '.join(held)}" if held else type(value).__name__
        expected = "a SuiteTask, a sequence of them, or a function returning either"
        raise TaskError(f"{where} gave {gave}; expected {expected}")
    names = [t.name for t in tasks]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:  # the later one would replace the earlier with no word
        raise TaskError(f"{where} defines the task {twice[0]!r} more than once; give each task its own name")
    for t in tasks:
        if t.name in BUILTIN:
            raise TaskError(f"optimizer task plugin {ep.name!r} redefines the built-in task {t.name!r}")
        if t.name in (*SUITES, "user", "all") or "," in t.name or t.name != t.name.strip() or not t.name:
            why = "a suite's name" if t.name in (*SUITES, "user", "all") else "not a name a --suite can list"
            raise TaskError(f"{where} names a task {t.name!r}, {why}: it could never be asked for; rename it")
        SOURCES[t.name] = where
    return tasks


def loaded_plugins() -> tuple[dict[str, SuiteTask], list[str]]:
    """The tasks of the ``l2l.optimizer_tasks`` plugins that load, by name, and why each other one does not:
    a broken plugin takes only its own tasks out, not another package's."""
    out: dict[str, SuiteTask] = {}
    source: dict[str, str] = {}
    problems: list[str] = []
    clashed: set[str] = set()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value.startswith("l2l.optsearch.suite:"):
            continue  # the built-in suites, known without the entry point
        try:
            tasks = _entry_tasks(ep)
        except TaskError as exc:
            problems.append(str(exc))
            continue
        for t in tasks:
            if t.name in source and source[t.name] != ep.value:  # neither definition is used: which one would be
                # depends on the order entry points load in, which a Ray worker need not share with the driver
                problems.append(f"task {t.name!r} is defined by two plugins: {source[t.name]} and {ep.value}")
                clashed.add(t.name)
            out[t.name], source[t.name] = t, ep.value
    return {name: task for name, task in out.items() if name not in clashed}, problems


def plugin_tasks() -> dict[str, SuiteTask]:
    """Tasks registered under the entry-point group ``l2l.optimizer_tasks`` by other packages, by name;
    `TaskError` when any plugin cannot give its tasks."""
    tasks, problems = loaded_plugins()
    if problems:
        raise TaskPluginError(problems[0])
    return tasks


def all_tasks() -> dict[str, SuiteTask]:
    """Built-in and plugin tasks by name."""
    return {**BUILTIN, **plugin_tasks()}


def plugin_problems() -> list[str]:
    """Why each optimizer task plugin that cannot be loaded cannot (none when every one can)."""
    return loaded_plugins()[1]


def check_task(task: SuiteTask) -> None:
    """Refuse, before any training, a task whose problem, model or loss cannot work together: its model is
    built and one loss computed on two training examples."""
    try:
        data = task.data()
        labels = not data.train.y.is_floating_point()  # class indices, or values to regress
        if labels != (task.loss == "cross_entropy"):
            kind = "class labels" if labels else "real-valued targets"
            fits = "cross_entropy" if labels else "mse"
            raise TaskPluginError(
                f"task {task.name!r}: problem {task.problem!r} has {kind}; its loss is {fits}, not {task.loss!r}"
            )
        out = task.build(0)(data.train.x[:2])
        y = data.train.y[:2]
        if labels and (not isinstance(out, torch.Tensor) or out.shape[-1] != data.n_out):
            width = out.shape[-1] if isinstance(out, torch.Tensor) else type(out).__name__
            raise TaskPluginError(
                f"task {task.name!r}: model {task.model!r} gives {width} outputs per example; problem "
                f"{task.problem!r} has {data.n_out} classes"
            )
        if not labels and (not isinstance(out, torch.Tensor) or out.shape != y.shape):  # mse would broadcast
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise TaskPluginError(
                f"task {task.name!r}: model {task.model!r} gives outputs of shape {shape} for two examples; "
                f"problem {task.problem!r} has targets of shape {tuple(y.shape)}"
            )
        loss = task_loss(task, out, y).item()
        if not math.isfinite(loss):  # before any step: the model's doing, not an optimizer's to be blamed for
            raise TaskPluginError(
                f"task {task.name!r}: model {task.model!r} gives a {loss} loss on two training examples before any step"
            )
    except TaskPluginError as exc:
        raise TaskPluginError(_of_plugin(task, str(exc))) from exc
    except TaskError:
        raise
    except Exception as exc:  # a plugin's problem, model or options: whatever it raises names the mistake
        raise TaskPluginError(_of_plugin(task, f"task {task.name!r} cannot run: {type(exc).__name__}: {exc}")) from exc


def _of_plugin(task: SuiteTask, message: str) -> str:
    """``message`` naming the plugin that registered ``task``, where one did."""
    where = SOURCES.get(task.name)
    return f"{where}: {message}" if where and not message.startswith(where) else message


def resolve_suite(text: str, warn: Callable[[str], None] | None = None) -> list[SuiteTask]:
    """``search``, ``heldout``, ``user`` (the plugins' tasks), ``all``, or task and suite names separated by
    commas (``heldout,tiny-digits``: a suite's tasks, then the task). Plugin tasks are checked (`check_task`). A
    broken plugin does not stop built-in tasks from being resolved: with ``warn``, it is reported there and its
    tasks are left out."""
    loaded, problems = loaded_plugins()
    tasks = {**BUILTIN, **loaded}
    if problems:  # what was asked for is there without them (built-in suites, healthy plugins' tasks): go on
        asked = [n.strip() for n in text.split(",") if n.strip()]
        found = text in SUITES or all(n in tasks or n in SUITES for n in asked)
        if warn is None or not found:  # the problem that names a task asked for, where one does
            raise TaskPluginError(next((p for p in problems if any(repr(n) in p for n in asked)), problems[0]))
        for problem in problems:
            warn(f"{problem}; its tasks are left out")
    suites = {**SUITES, "user": tuple(n for n in tasks if n not in BUILTIN), "all": tuple(tasks)}
    if text in suites:
        if not suites[text]:
            raise TaskError(f"suite {text!r} is empty (no task is registered under {ENTRY_POINT_GROUP!r})")
        return _checked([tasks[n] for n in suites[text]])
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in tasks and n not in suites]
    if unknown or not names:
        what = "tasks or suites" if len(unknown) > 1 else "task or suite"
        raise TaskError(
            f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; suites: {', '.join(suites)}; "
            f"tasks: {', '.join(tasks)}"
        )
    if empty := [n for n in names if n in suites and not suites[n]]:
        raise TaskError(f"suite {empty[0]!r} is empty (no task is registered under {ENTRY_POINT_GROUP!r})")
    expanded = [task for n in names for task in (suites[n] if n in suites else (n,))]
    return _checked([tasks[n] for n in dict.fromkeys(expanded)])


_CHECKED: set[str] = set()  # plugin tasks (by repr) already checked in this process: a search resolves per child


def _checked(tasks: list[SuiteTask]) -> list[SuiteTask]:
    for task in tasks:
        if task.name not in BUILTIN and repr(task) not in _CHECKED:
            check_task(task)
            _CHECKED.add(repr(task))
    return tasks


def suite_of(name: str) -> str:
    """Which suite a task belongs to: search, heldout or user."""
    return next((s for s, names in SUITES.items() if name in names), "user")
