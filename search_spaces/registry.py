"""Find search spaces by name (entry points) or by path (``file.py:Class``) and validate them at load."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import random
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, NoReturn

from l2l.search_spaces.api import Decision, SearchSpace, SpaceError, Spec, sequence_length, token_sizes
from l2l.search_spaces.constraints import Constraints
from l2l.search_spaces.typed import OptionTypeError, coerce_call

ENTRY_POINT_GROUP = "l2l.search_spaces"


class PluginError(SpaceError):
    """A search-space plugin cannot be found, imported or fails validation."""


MAX_SEQUENCE = 100_000  # tokens of one architecture (NAS controllers sample tens to thousands)
BUILTIN_PREFIX = "l2l."  # where l2l's own spaces live: a plugin cannot take their names


def _registered() -> dict[str, list[EntryPoint]]:
    """Every distinct entry point of the group, by name (the same one seen twice on the path counts once)."""
    out: dict[str, list[EntryPoint]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if all(other.value != ep.value for other in out.setdefault(ep.name, [])):
            out[ep.name].append(ep)
    return out


def _entry_points() -> dict[str, EntryPoint]:
    """One entry point per name: a built-in space keeps its name against a plugin's (`shadowed` lists those)."""
    return {
        name: next((ep for ep in eps if ep.value.startswith(BUILTIN_PREFIX)), eps[0])
        for name, eps in _registered().items()
    }


def shadowed() -> list[tuple[str, str]]:
    """(name, entry point) of each plugin registered under a built-in space's name: it is not used."""
    return [
        (name, ep.value)
        for name, eps in _registered().items()
        if any(e.value.startswith(BUILTIN_PREFIX) for e in eps)
        for ep in eps
        if not ep.value.startswith(BUILTIN_PREFIX)
    ]


def available_spaces() -> list[str]:
    """Names of every space registered in the ``l2l.search_spaces`` entry-point group."""
    return sorted(_entry_points())


def load_space_class(ref: str) -> type[SearchSpace]:
    """Resolve a registered name, ``path/to/file.py:Class`` or ``package.module:Class`` (an importable module, as
    an entry point names it) to a `SearchSpace` subclass."""
    if is_file_ref(ref):
        return _load_from_file(ref)
    eps = _entry_points()
    file = ref.partition(":")[0]
    if ref not in eps and (file.endswith(".py") or (":" in ref and Path(file).expanduser().is_file())):
        raise PluginError(
            f"search space {ref!r}: {f'{file!r} is not a Python file' if ':' in ref else 'a file needs its class'}; "
            "give path/to/file.py:ClassName"
        )
    if ref not in eps and MODULE_REF.fullmatch(ref):
        return _load_from_module(ref)
    if ref not in eps:
        known = ", ".join(sorted(eps)) or "(none registered: is l2l installed?)"
        raise PluginError(
            f"unknown search space {ref!r}; known: {known}; or give path/to/file.py:ClassName or "
            "package.module:ClassName"
        )
    rivals = [ep.value for ep in _registered()[ref]]
    if len(rivals) > 1 and not eps[ref].value.startswith(BUILTIN_PREFIX):
        raise PluginError(
            f"search space {ref!r} is registered by more than one plugin ({', '.join(rivals)}): uninstall or "
            "rename one, or name the class by path (path/to/file.py:ClassName)"
        )
    try:
        obj = eps[ref].load()
    except Exception as exc:  # a plugin's import can raise anything; report it with the plugin's name
        raise PluginError(f"search space {ref!r}: importing {eps[ref].value} failed: {exc!r}") from exc
    return _check_class(ref, obj)


MODULE_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")  # package.module:Class


def _load_from_module(ref: str) -> type[SearchSpace]:
    module_name, _, class_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the module's import can raise anything: name it
        raise PluginError(f"search space {ref!r}: importing {module_name} failed: {exc!r}") from exc
    if not hasattr(module, class_name):
        raise PluginError(f"search space {ref!r}: module {module_name} has no {class_name}")
    return _check_class(ref, getattr(module, class_name))


def is_file_ref(ref: str) -> bool:
    """Whether ``ref`` names a class in a file (``path/to/file.py:Class``), not a registered space."""
    return ":" in ref and (ref.split(":", 1)[0].endswith(".py") or "/" in ref)


def absolute_ref(ref: str) -> str:
    """A ``path/to/file.py:Class`` reference with its path made absolute (a run stores it, and is read and
    resumed from other directories); any other reference as it is."""
    if is_file_ref(ref):
        path_text, _, class_name = ref.rpartition(":")
        return f"{Path(path_text).expanduser().resolve()}:{class_name}"
    return ref


FILE_PLUGIN_PREFIX = "l2l_user_space_"  # module names of spaces loaded from a file path


def _load_from_file(ref: str) -> type[SearchSpace]:
    path_text, _, class_name = ref.rpartition(":")
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise PluginError(f"search space {ref!r}: file {str(path)!r} does not exist")
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if main_file and Path(main_file).resolve() == path.resolve():  # the running script names its own file:
        if not hasattr(main, class_name):  # its class, not a second run of the script
            _missing(ref, path, class_name, main)
        return _check_class(ref, getattr(main, class_name))
    module_name = f"{FILE_PLUGIN_PREFIX}{abs(hash(str(path.resolve())))}"
    if _LOADING.get(module_name) == threading.get_ident():  # importing the file loads it again, in this thread:
        raise PluginError(
            f"search space {ref!r}: importing {str(path)!r} loads it again (the script runs a search when "
            'imported); put what it runs under `if __name__ == "__main__":`'
        )
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"search space {ref!r}: {str(path)!r} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    _LOADING[module_name] = threading.get_ident()  # (another thread loading it at once is no loop)
    try:
        spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(module_name, None)
        raise
    except SyntaxError as exc:
        sys.modules.pop(module_name, None)
        line = (exc.text or "").strip()
        raise PluginError(
            f"search space {ref!r}: {str(path)!r} line {exc.lineno}: syntax error: {exc.msg}: {line}"
        ) from exc
    except Exception as exc:  # user code: any error is reported with the file's name
        sys.modules.pop(module_name, None)
        raise PluginError(f"search space {ref!r}: importing {str(path)!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        _LOADING.pop(module_name, None)
    if not hasattr(module, class_name):
        _missing(ref, path, class_name, module)
    return _check_class(ref, getattr(module, class_name))


_LOADING: dict[str, int] = {}  # file plugins being imported now, and by which thread


def _missing(ref: str, path: Path, class_name: str, module: Any) -> NoReturn:
    found = sorted(
        n
        for n, v in vars(module).items()
        if isinstance(v, type) and issubclass(v, SearchSpace) and v is not SearchSpace
    )
    raise PluginError(f"search space {ref!r}: {str(path)!r} defines no {class_name!r}; search spaces there: {found}")


def _check_class(ref: str, obj: Any) -> type[SearchSpace]:
    if not (isinstance(obj, type) and issubclass(obj, SearchSpace)):
        raise PluginError(f"search space {ref!r}: {obj!r} is not a subclass of l2l.search_spaces.SearchSpace")
    if not obj.name:
        raise PluginError(f"search space {ref!r}: class {obj.__name__} sets no `name`")
    return obj


def unknown_options(cls: type[SearchSpace], options: dict[str, Any]) -> tuple[list[str], str]:
    """The ``options`` the space's constructor does not take (none when it takes ``**kwargs``), and those it does."""
    import inspect

    if cls.__init__ is SearchSpace.__init__:  # no constructor of its own: it takes no options
        return sorted(options), "none"
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the constructor will say
        return [], ""
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return [], ""
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return sorted(set(options) - set(names)), ", ".join(names) or "none"


def load_space(ref: str, options: dict[str, Any] | None = None, *, validate: bool = True) -> SearchSpace:
    """Instantiate the space ``ref`` with ``options`` and, by default, validate it."""
    cls = load_space_class(ref)
    try:
        options = coerce_call(cls, options or {}, f"search space {cls.name!r}: option")
    except OptionTypeError as exc:
        raise PluginError(str(exc)) from None
    unknown, known = unknown_options(cls, options)
    if unknown:
        raise PluginError(f"search space {cls.name!r}: unknown option(s) {', '.join(unknown)}; known: {known}")
    try:
        space = cls(**options)
    except PluginError:  # a space that names a broken plugin of its own (an optimizer task package)
        raise
    except TypeError as exc:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise PluginError(
                f"search space {cls.name!r}: class {cls.__name__} does not define {', '.join(missing)}"
            ) from exc
        raise PluginError(f"search space {cls.name!r}: bad options {options!r}: {exc}") from exc
    except ValueError as exc:
        raise PluginError(f"search space {cls.name!r}: bad options {options!r}: {exc}") from exc
    except Exception as exc:  # plugin code (a missing data file, a failed download): one line naming it
        raise PluginError(
            f"search space {cls.name!r}: building it with options {options or {}!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(getattr(space, "options", None), dict):  # what runs record and rebuild spaces from
        raise PluginError(
            f"search space {cls.name!r}: {cls.__name__}.__init__ did not call super().__init__(**options) "
            "(SearchSpace.__init__ keeps the options a run records)"
        )
    if validate:
        validate_space(space)
    return space


def validate_space(space: SearchSpace, samples: int = 32) -> None:
    """Raise `PluginError` naming the space and the problem when the space cannot be searched.

    Checks: at least one decision with a choice, unique non-empty names, well-formed decisions,
    anchors that refer only to earlier anchors, and that random token sequences decode to specs
    that survive a JSON round trip and encode back to the same tokens.
    """
    label = f"search space {space.name!r}"
    try:
        given = space.decisions()
    except Exception as exc:  # plugin code
        raise PluginError(f"{label}: decisions() raised {exc!r}") from exc
    if isinstance(given, Mapping | str | bytes) or not isinstance(given, Iterable):  # not l2l's to fail on
        raise PluginError(
            f"{label}: decisions() returned {type(given).__name__} {given!r:.80}; it must return a list of "
            "Decision (Decision.categorical(...) or Decision.anchor(...))"
        )
    decisions = list(given)
    if not decisions:
        raise PluginError(f"{label}: it declares no decisions")
    odd = next((d for d in decisions if not isinstance(d, Decision)), None)
    if odd is not None:
        raise PluginError(
            f"{label}: decisions() gave {type(odd).__name__} {odd!r}; each decision must be a "
            "Decision (Decision.categorical(...) or Decision.anchor(...))"
        )
    names = [d.name for d in decisions]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise PluginError(f"{label}: duplicate decision names {dupes}")
    n_anchors = 0
    for d in decisions:
        try:
            d.check()
        except SpaceError as exc:
            raise PluginError(f"{label}: {exc}") from exc
        if d.kind == "anchor":
            if d.n_prev != n_anchors:
                raise PluginError(
                    f"{label}: anchor {d.name!r} has n_prev={d.n_prev} but {n_anchors} anchors come before it"
                )
            n_anchors += 1
    length = sequence_length(decisions)
    if length == 0:
        raise PluginError(f"{label}: no decision has a choice to make")
    if length > MAX_SEQUENCE:  # checking it alone took minutes; a controller would unroll over every token
        options = ", ".join(f"{k}={v!r}" for k, v in sorted(_given(space).items()))
        raise PluginError(
            f"{label}{f' ({options})' if options else ''}: its decisions make a sequence of {length:,} tokens, and "
            f"l2l takes at most {MAX_SEQUENCE:,} (a controller samples one token at a time)"
        )
    try:
        Constraints.of(space)  # forbidden combinations that name what exists, a canonical form that is stable
    except SpaceError as exc:  # its message names the space already
        raise PluginError(f"search {exc}" if str(exc).startswith("space ") else f"{label}: {exc}") from exc
    except Exception as exc:  # plugin code (forbidden, canonical)
        raise PluginError(f"{label}: its forbidden combinations or canonical form raised {exc!r}") from exc
    rng = random.Random(0)
    sizes = token_sizes(decisions)
    for _ in range(samples):
        tokens = tuple(rng.randrange(k) for k in sizes)
        try:
            spec = space.decode(tokens)
        except Exception as exc:  # plugin code
            raise PluginError(f"{label}: decode({list(tokens)}) raised {exc!r}") from exc
        if not isinstance(spec, Spec):
            raise PluginError(f"{label}: decode returned {type(spec).__name__}, not a Spec")
        try:
            again = Spec.from_json(json.loads(json.dumps(spec.to_json())))
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{label}: spec {spec!r} is not JSON-serializable: {exc}") from exc
        if again != spec:
            raise PluginError(f"{label}: spec does not survive a JSON round trip: {spec!r} -> {again!r}")
        try:
            back = space.encode(again)
        except Exception as exc:  # plugin code
            raise PluginError(f"{label}: encode of a decoded spec raised {exc!r}") from exc
        if tuple(back) != tokens:
            raise PluginError(
                f"{label}: decode does not round-trip: tokens {list(tokens)} -> spec -> tokens {list(back)}"
            )


def _given(space: SearchSpace) -> dict[str, Any]:
    """The options of ``space`` that differ from its class's defaults (what its user chose)."""
    try:
        defaults = {
            name: p.default for name, p in inspect.signature(type(space).__init__).parameters.items()
            if p.default is not inspect.Parameter.empty
        }  # fmt: skip
    except (TypeError, ValueError):
        defaults = {}
    return {k: v for k, v in dict(getattr(space, "options", {}) or {}).items() if k not in defaults or defaults[k] != v}
