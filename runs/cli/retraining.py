"""`l2l runs best --retrain`: a stored child trained again, and a weight-sharing run's retraining recorded."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from l2l.runs.config import UsageError

if TYPE_CHECKING:
    from l2l.runs.store import ChildRecord, Store
    from l2l.search_spaces import Result, SearchSpace


def check_writable(store: Store, run_id: int) -> None:
    """`UsageError` where a retraining could not be recorded in run ``run_id``: a store read-only here."""
    if store.read_only is not None:
        raise UsageError(
            f"cannot record a retraining in run {run_id}: store {store.label} is read-only here ({store.read_only}); "
            "copy it to a folder you can write"
        )


def record_retrained(
    store: Store, run_id: int, derived: ChildRecord, result: Result, budget: dict[str, int], seed: int
) -> int:
    """Record the from-scratch training of a weight-sharing run's derived child as a new finished child, with
    the budget and seed it trained with (retrained twice, the two rows say how they differ)."""
    from l2l.runs.store import NewChild
    from l2l.runs.store_records import timestamp_of

    number = max(c.number for c in store.children(run_id)) + 1
    new = NewChild(number, derived.batch, derived.tokens, derived.spec, None, None, derived.policy_version)
    # recorded once it has trained: queued and started when its training started, not after it finished
    store.add_children(run_id, [new], running=True, since=timestamp_of((result.runtime or {}).get("started")))
    data = result.to_json()
    data["info"] = {
        **(data.get("info") or {}),
        "retrained_from": derived.number,
        "retrained_with": {**budget, "seed": seed},
    }
    store.finish_children(run_id, [(number, data, float(result.reward))])
    return number


def retrain_budget(
    space: SearchSpace, name: str, epochs: int | None, steps: int | None, *, run_id: int
) -> dict[str, int]:
    """The budget of a retraining from ``--epochs`` and ``--steps``; one the space does not train by is refused,
    not ignored. What it trains by is its ``budget_keys`` (`SearchSpace.budget_keys`); a plugin that declares
    none but takes an ``epochs`` or ``steps`` option (`option_taken`) trains by that. A space whose retraining
    would measure nothing new (`SearchSpace.retrain_refusal`) is refused with what measures it instead."""
    refusal = space.retrain_refusal()
    if refusal:
        raise UsageError(f"run {run_id} is not retrained: {refusal.replace('RUN:', f'{run_id}:')}")
    budget = {k: v for k, v in (("epochs", epochs), ("steps", steps)) if v is not None}
    takes = list(space.budget_keys) or [k for k in ("epochs", "steps") if option_taken(space, k)]
    if budget and not takes and not space.exact_rewards():
        raise UsageError(
            f"space {name!r} declares no training budget (SearchSpace.budget_keys): --{next(iter(budget))} "
            "would change nothing; retrain without it"
        )
    wrong = [k for k in budget if takes and k not in takes]
    if wrong:
        instead = " or ".join(f"--{k}" for k in takes)
        raise UsageError(
            f"space {name!r} trains its children for {takes[0]}: --{wrong[0]} does not apply; use {instead}"
        )
    return budget


def option_taken(space: SearchSpace, key: str) -> bool:
    """Whether ``space``'s constructor takes ``key`` as an option: by name, or through ``**options`` when the
    space keeps it under that name (``self.epochs``); a space without a constructor of its own takes none."""
    from l2l.search_spaces import SearchSpace

    cls = type(space)
    if cls.__init__ is SearchSpace.__init__:
        return False
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    loose = any(p.kind is p.VAR_KEYWORD for p in params.values())
    return key in params or (loose and hasattr(space, key))


def budget_space(
    space: SearchSpace, run: Any, store: Store, budget: dict[str, int]
) -> tuple[SearchSpace, dict[str, int]]:
    """The space a retraining runs on and the budget its `Context` carries. A space that declares
    ``budget_keys`` reads the budget from the context; a plugin that declares none but takes ``epochs`` or
    ``steps`` as an option (README's ``TinyMLP``) reads its own setting, so it is rebuilt with the option
    set (given only in the context, ``--epochs 500`` changed nothing and was reported as done)."""
    if not budget or space.budget_keys or space.exact_rewards():
        return space, budget
    from l2l.search_spaces import SpaceError, load_space

    try:
        rebuilt = load_space(run.space, {**dict(run.config.get("space_options") or {}), **budget}, validate=False)
    except SpaceError as exc:
        raise UsageError(f"cannot rebuild the space {run.space!r} of run {run.id} with {budget}: {exc}") from None
    named = inspect.signature(type(space)).parameters
    ignored = [k for k, v in budget.items() if k not in named and getattr(rebuilt, k, None) != v]
    if ignored:  # taken through **options and not kept: nothing says it would train for that
        raise UsageError(
            f"space {run.space!r} was rebuilt with {ignored[0]}={budget[ignored[0]]} and did not keep it "
            f"(its {ignored[0]} is {getattr(rebuilt, ignored[0], None)!r}): declare budget_keys to retrain it "
            f"for --{ignored[0]}"
        )
    rebuilt.use_pinned_data(store.space_data(run.id))
    return rebuilt, {}


def retrain_child(space: SearchSpace, child: ChildRecord, budget: dict[str, int], seed: int, device: str) -> Result:
    """Train a stored child again from its spec, in this process, with its own budget, seed and device."""
    from l2l.runs.executors import ChildTask, check_device, run_child
    from l2l.search_spaces import Context, Spec

    check_device(device)  # one this process cannot use fails here, with the reason, not in the child

    spec = Spec.from_json(child.spec)
    return run_child(
        space,
        ChildTask(
            child.number, spec, Context(child=child.number, seed=seed, device=device, budget=budget, retrain=True)
        ),
    )
