"""Values given as text or TOML (``-S key=value``, ``-C key=value``, a config file) checked against the type a
constructor or dataclass declares, so that ``hashed=no`` is False, not a truthy string, and ``epochs=2.5`` is
an error rather than 2 epochs."""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

NONE = ("none", "null")
TRUE = ("true", "yes", "on", "1")
FALSE = ("false", "no", "off", "0")


class OptionTypeError(ValueError):
    """A value does not fit the type its option declares; the message names the option."""


def _arms(annotation: Any) -> tuple[Any, ...]:
    """The types a union annotation allows (itself for a plain one)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the type ``annotation`` declares (bool, int, float, str, optional ones, literals); other
    annotations take the value as it is."""
    arms = _arms(annotation)
    spelt = isinstance(value, str) and str not in arms and value.strip().lower() in NONE  # not where text is valid
    if type(None) in arms and (value is None or spelt):
        return None  # `-C grad_clip=none`: neither -C nor TOML can write Python's None
    literals = [a for arm in arms if typing.get_origin(arm) is typing.Literal for a in typing.get_args(arm)]
    if literals:
        if value in literals:
            return value
        raise OptionTypeError(f"{name} must be one of {', '.join(map(repr, literals))}, got {value!r}")
    kinds = [a for a in arms if a in (bool, int, float, str)]
    if not kinds or any(a is Any for a in arms):
        return value
    if bool in kinds:
        if isinstance(value, bool):
            return value
        if isinstance(value, int | str) and str(value).strip().lower() in TRUE + FALSE:
            return str(value).strip().lower() in TRUE
    if int in kinds and isinstance(value, int) and not isinstance(value, bool):
        return value
    if int in kinds and float not in kinds and isinstance(value, float) and value.is_integer():
        return int(value)  # 1e2 in TOML is a float
    if float in kinds and isinstance(value, int | float) and not isinstance(value, bool):
        if math.isnan(value):  # TOML reads nan: no setting means it, and children fail on it (inf can mean "never")
            raise OptionTypeError(f"{name} must be a number, got nan")
        return float(value)
    if str in kinds and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    wanted = " or ".join("a boolean (true/false, yes/no, on/off, 1/0)" if k is bool else _noun(k) for k in kinds)
    if type(None) in arms:
        wanted += " or none"
    raise OptionTypeError(f"{name} must be {wanted}, got {value!r}")


def _noun(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "text"}[kind]


def coerce_call(target: Callable[..., Any], options: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``options`` for calling ``target`` (a class: its ``__init__``), each checked against the parameter's
    annotation; names the parameters lack are left for the call to refuse."""
    func = target.__init__ if isinstance(target, type) else target  # type: ignore[misc]
    try:
        hints = typing.get_type_hints(func)
        params = inspect.signature(func).parameters
    except (TypeError, ValueError, NameError):  # unresolvable annotations: nothing to check against
        return dict(options)
    out = {}
    for key, value in options.items():
        annotation = hints.get(key) if key in params else None
        out[key] = coerce(f"{label} {key}", value, annotation) if annotation is not None else value
    return out


def coerce_fields(cls: type, options: Mapping[str, Any], label: str) -> dict[str, Any]:
    """``options`` for the dataclass ``cls``, each checked against its field's type."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: coerce(f"{label} {k}", v, hints[k]) if k in names else v for k, v in options.items()}
