"""Strategies from other packages: the entry-point group ``l2l.strategies``.

An entry point names a `Controller` subclass with a ``from_settings(decisions, seed, settings)``
classmethod (as the built-in strategies have) or any factory ``(decisions, seed, settings) ->
Controller``. Its name is then a strategy like the built-in ones: ``l2l search --strategy NAME``,
``NAME+screen``, ``NAME+reeval``, and a run of it resumes by that name. A class or factory may say how
many children it learns from per update with a ``default_batch`` attribute (1 otherwise). A plugin
cannot take a built-in strategy's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from l2l.controllers.names import ControllerError

if TYPE_CHECKING:
    from l2l.controllers.base import Controller

ENTRY_POINT_GROUP = "l2l.strategies"

Factory = Callable[[Sequence[Any], int, Mapping[str, Any]], "Controller"]


def plugin_names(builtin: Sequence[str]) -> list[str]:
    """The names the installed plugins register, built-in names left out."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in builtin})


def shadowed(builtin: Sequence[str]) -> list[str]:
    """The entry points (``name = module:object``) that register a built-in strategy's name: never used."""
    found = {f"{ep.name} = {ep.value}" for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name in builtin}
    return sorted(found)


def plugin_about(name: str) -> str:
    """What the plugin strategy ``name`` says it is: the first line of its class's (or factory's) own docstring."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            doc = getattr(ep.load(), "__doc__", None)  # a class's own: not inherited from Controller's
            return doc.strip().splitlines()[0] if isinstance(doc, str) and doc.strip() else ""
    return ""


def plugin_factory(name: str) -> tuple[Factory, int] | None:
    """The factory of the plugin strategy ``name`` and its default batch; None when no plugin registers it."""
    from l2l.controllers.base import Controller  # torch: only once a plugin is loaded

    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        return None
    values = sorted({ep.value for ep in found})
    if len(values) > 1:
        raise ControllerError(f"strategy {name!r} is registered by more than one plugin ({', '.join(values)})")
    try:
        obj = found[0].load()
    except Exception as exc:  # a plugin's import can raise anything: name the plugin
        raise ControllerError(f"strategy plugin {name!r} ({values[0]}): import failed: {exc!r}") from exc
    if isinstance(obj, type) and issubclass(obj, Controller):
        if not callable(getattr(obj, "from_settings", None)):
            raise ControllerError(
                f"strategy plugin {name!r} ({values[0]}): {obj.__name__} has no from_settings(decisions, seed, "
                "settings) classmethod"
            )
        factory: Factory = obj.from_settings  # type: ignore[attr-defined]
    elif callable(obj):
        factory = obj
    else:
        raise ControllerError(
            f"strategy plugin {name!r} ({values[0]}) is {type(obj).__name__}, not a Controller subclass or a factory"
        )
    batch = getattr(obj, "default_batch", 1)
    if not isinstance(batch, int) or batch < 1:
        raise ControllerError(f"strategy plugin {name!r}: default_batch must be an integer >= 1, got {batch!r}")
    return _checked(name, factory), batch


# the methods a search calls on its strategy (the others reach the plugin's code through these)
GUARDED = ("propose", "update", "draw", "observe", "state_dict", "load_state_dict")


def _checked(name: str, factory: Factory) -> Factory:
    """The factory, refusing what is not a Controller (a plugin's mistake, named); what the controller
    raises from then on is one line naming the plugin (`ControllerError`), not its traceback."""
    from l2l.controllers.base import Controller

    def build(decisions: Sequence[Any], seed: int, settings: Mapping[str, Any]) -> Controller:
        try:
            made = factory(decisions, seed, settings)
        except ControllerError:
            raise
        except Exception as exc:  # the plugin's own constructor, on settings it cannot take
            raise ControllerError(f"strategy plugin {name!r}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(made, Controller):
            raise ControllerError(f"strategy plugin {name!r} made {type(made).__name__}, not a Controller")
        for method in GUARDED:
            setattr(made, method, partial(_guarded, name, method, getattr(made, method)))
        return made

    return build


def _guarded(plugin: str, method: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except ControllerError:
        raise
    except Exception as exc:
        raise ControllerError(f"strategy plugin {plugin!r}: {method}() raised {type(exc).__name__}: {exc}") from exc
