"""What a child is told (`Context`) and what it hands back (`Result`), and the check that a result fits the store."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

# keys of `Result.runtime`: where and when a child ran, written by the executors, never by a space
RUNTIME_KEYS = ("worker", "device", "started", "finished", "wall_time")


@dataclass(frozen=True)
class Context:
    """What a worker tells a child about where and how it runs.

    ``child`` is the child's number in its run and ``seed`` the seed it must train with (made from the run's
    seed and the child's number, `l2l.runs.search.child_seed`, so a rerun trains the same network). ``device``
    is the torch device to train on ("cpu", "cuda", "cuda:1"). ``budget`` holds the run's per-child budget overrides
    (``epochs``, ``steps``, ...: a space reads the ones it understands). ``threads`` is how many
    intra-op threads the child may use (torch is already set to it). ``should_stop(epoch, value)``
    reports a validation value after an epoch and answers whether a pruner stops the child now.
    ``rank`` and ``world_size`` place this process among those training one child data-parallel.
    ``retrain`` is true when a stored child is trained again for its figures (`l2l runs best --retrain`): it
    trains its whole budget, without a search's economies (a first epoch no better than chance stops a child
    of a search, not a retraining).
    """

    child: int = 0
    seed: int = 0
    device: str = "cpu"
    budget: Mapping[str, Any] = field(default_factory=dict)
    threads: int = 1
    report: Callable[[int, float], bool] | None = field(default=None, compare=False, repr=False)
    rank: int = 0
    world_size: int = 1
    retrain: bool = False

    def should_stop(self, epoch: int, value: float) -> bool:
        """Report a child's validation value after ``epoch``; True when a pruner says stop now."""
        return self.report(epoch, value) if self.report is not None else False


@dataclass(frozen=True)
class Result:
    """What evaluating one child produced.

    ``reward`` is what the controller maximizes (higher is better, any scale: controllers normalize
    it). ``val_acc`` / ``val_loss`` are the validation figures tables show; ``test`` and ``cost``
    map names to numbers (test metrics; parameters, FLOPs, seconds); ``curves`` map names to one
    number per epoch. ``info`` is the space's own JSON data about the child (kept in the store, shown
    by ``runs show``). ``runtime`` is written by the executor (worker, device, timings).
    """

    reward: float
    val_loss: float | None = None
    val_acc: float | None = None
    test: Mapping[str, float] = field(default_factory=dict)
    cost: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, Sequence[float]] = field(default_factory=dict)
    status: Literal["done", "failed"] = "done"
    error: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    runtime: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the child finished with a finite reward."""
        return self.status == "done" and math.isfinite(self.reward)

    @staticmethod
    def failed(error: str, **info: Any) -> Result:
        """A failure result carrying its reason; the search loop assigns the failure reward."""
        return Result(reward=float("nan"), status="failed", error=error, info=info)

    def metrics(self) -> dict[str, float | None]:
        """The scalar metrics reward transforms look at (costs as ``cost_<name>``)."""
        out: dict[str, float | None] = {"reward": self.reward, "val_acc": self.val_acc, "val_loss": self.val_loss}
        out.update({f"cost_{k}": float(v) for k, v in self.cost.items() if v is not None})
        return out

    def to_json(self) -> dict[str, Any]:
        """A plain dict for storage; curves and costs become lists and floats."""
        return {
            "reward": _finite_or_none(self.reward),
            "val_loss": _finite_or_none(self.val_loss),
            "val_acc": _finite_or_none(self.val_acc),
            "test": {k: _finite_or_none(v) for k, v in self.test.items()},
            "cost": {k: _finite_or_none(v) for k, v in self.cost.items()},
            "curves": {k: [_finite_or_none(x) for x in v] for k, v in self.curves.items()},
            "status": self.status,
            "error": self.error,
            "info": dict(self.info),
            "runtime": dict(self.runtime),
        }


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


class ResultError(ValueError):
    """A field of a child's result does not fit the store; the message names the field."""


def as_number(where: str, value: Any, optional: bool = True) -> float | None:
    """``value`` as a float (numpy and torch scalars by their value), or `ResultError` naming ``where``."""
    if value is None and optional:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy and torch scalars
        except (ValueError, TypeError, RuntimeError):
            pass  # an array of several values: refused below
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ResultError(f"{where} is {value!r} ({type(value).__name__}), not a number")
    return float(value)


def _numbers(where: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, Mapping):
        raise ResultError(f"{where} is a {type(values).__name__}, not a mapping of names to numbers")
    out: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ResultError(f"{where} has key {key!r} ({type(key).__name__}); keys are strings")
        out[key] = as_number(f"{where}[{key!r}]", value)
    return out


def _json_value(where: str, value: Any) -> Any:
    """``value`` as plain JSON data (numpy scalars and arrays become numbers and lists)."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _json_value(where, value.tolist())  # numpy scalars and arrays, torch tensors
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ResultError(f"{where} has key {key!r} ({type(key).__name__}); keys are strings")
            out[key] = _json_value(f"{where}[{key!r}]", item)
        return out
    if isinstance(value, list | tuple):
        return [_json_value(f"{where}[{i}]", item) for i, item in enumerate(value)]
    raise ResultError(f"{where} is {value!r} ({type(value).__name__}), which JSON cannot hold")


def _checked_fields(result: Result) -> Result:
    reward = as_number("Result.reward", result.reward, optional=False)
    if result.status not in ("done", "failed"):
        raise ResultError(f"Result.status is {result.status!r}; expected 'done' or 'failed'")
    if result.error is not None and not isinstance(result.error, str):
        raise ResultError(f"Result.error is a {type(result.error).__name__}, not a string")
    if not isinstance(result.curves, Mapping):
        raise ResultError(f"Result.curves is a {type(result.curves).__name__}, not a mapping of names to lists")
    curves: dict[str, list[Any]] = {}
    for key, values in result.curves.items():
        if not isinstance(key, str) or isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            raise ResultError(f"Result.curves[{key!r}] is {values!r}, not a list of numbers")
        curves[key] = [as_number(f"Result.curves[{key!r}][{i}]", v) for i, v in enumerate(values)]
    info = _json_value("Result.info", result.info)
    if not isinstance(info, dict):
        raise ResultError(f"Result.info is a {type(result.info).__name__}, not a mapping")
    return replace(
        result,
        reward=reward if reward is not None else math.nan,
        val_loss=as_number("Result.val_loss", result.val_loss),
        val_acc=as_number("Result.val_acc", result.val_acc),
        test=_numbers("Result.test", result.test),
        cost=_numbers("Result.cost", result.cost),
        curves=curves,
        info=info,
        runtime=_json_value("Result.runtime", result.runtime),
    )


def checked_result(result: Any) -> Result:
    """``result`` in the form the store holds, or a failed `Result` whose error names the field that does
    not fit (a string where a number belongs, an object JSON cannot hold). Numpy and torch scalars are
    taken as numbers. A done result whose reward is not finite is failed too."""
    if not isinstance(result, Result):
        return Result.failed(f"evaluate returned {type(result).__name__}, not a Result")
    try:
        out = _checked_fields(result)
        json.dumps(out.to_json(), allow_nan=False)
    except (ResultError, ValueError, TypeError) as exc:
        return replace(Result.failed(f"result does not fit the store: {exc}"), runtime=_plain(result.runtime))
    if out.status == "done" and not math.isfinite(out.reward):
        return replace(out, status="failed", error=f"reward is {out.reward}")
    figures = {
        "val_acc": out.val_acc,
        "val_loss": out.val_loss,
        **out.test,
        **{f"cost {k}": v for k, v in out.cost.items()},
    }
    odd = [f"{name} {value}" for name, value in figures.items() if value is not None and not math.isfinite(value)]
    if odd and out.status == "done" and "notice" not in out.runtime:  # said once by the search, not silently dropped
        notice = f"a child reported {', '.join(odd)}: the store keeps a figure that is not finite as missing (null)"
        return replace(out, runtime={**out.runtime, "notice": notice})
    return out


def _plain(runtime: Any) -> dict[str, Any]:
    try:
        return dict(_json_value("Result.runtime", runtime))
    except (ResultError, TypeError, ValueError):
        return {}
