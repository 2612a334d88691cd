"""`optimizer`: Neural Optimizer Search, update rules written unit by unit and tried on a fixed child task."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SpaceError, Spec
from l2l.search_spaces.trained import DatasetSpace

LR_DECAYS = ("none", "linear", "cyclic", "restart")
BETA1S = (0.9, 0.95, 0.99)
BETA2S = (0.99, 0.999)


class OptimizerSpace(DatasetSpace):
    """Rules ``lr * decay * b(u1(op1), u2(op2))`` of one or more units (Bello et al. 2017).

    Each unit takes five decisions (two operands, two unary functions, one binary function); a
    later unit may use an earlier unit's output as an operand, and a last decision picks the
    learning-rate decay. The child trains the task's fixed model at each learning rate of ``lrs``;
    reward = the best validation accuracy. Options: ``units`` (1), ``task`` ("digits-cnn"),
    ``epochs`` (the task's), ``lrs`` (comma-separated, the task's).

    With ``suite`` ("search", or task names separated by commas) a child is scored on the optimizer task
    suite instead (`l2l.optsearch.reward`): reward = 1 / the geometric mean over tasks of its tuned final
    validation loss relative to tuned Adam's, tasks run cheapest first and a rule worse than ``cutoff``
    (3) times Adam on one stops there; ``scale`` (1.0) multiplies every task's steps. Rules that compute
    the same update (functional hash) share one evaluation and are recorded as duplicates. ``betas``
    (false) lets the controller also choose the rule's beta1 (0.9, 0.95, 0.99) and beta2 (0.99, 0.999).
    ``distinct`` (true): a rule's functional hash is its identity (`SearchSpace.identity`), so a strategy that
    never repeats proposes no rule computing the update of one it proposed before; false proposes by tokens.
    ``objective`` ("loss") may be "error": ratios of validation errors (1 - accuracy, MSE, bits per char).
    ``workers`` (1) > 1 spreads one child's tasks after the first over that many processes (for the local
    executor; under Ray, each worker's children are already parallel).
    """

    name = "optimizer"
    budget_keys = ("epochs",)
    description = "Update rules in the language of Neural Optimizer Search, trained on a small CNN on digits."
    cost_metrics = ("params", "train_time_s", "lrs_tried")

    def __init__(
        self,
        units: int = 1,
        task: str | None = None,
        epochs: int | None = None,
        lrs: str | None = None,
        suite: str | None = None,
        cutoff: float = 3.0,
        scale: float = 1.0,
        betas: bool = False,
        objective: str = "loss",
        workers: int = 1,
        distinct: bool = True,
    ):
        from l2l.optsearch.language import BINARY, OPERANDS, UNARY, unit_ref
        from l2l.optsearch.task import TASKS

        if not 1 <= units <= 4:
            raise SpaceError(f"optimizer space needs 1 <= units <= 4, got {units}")
        if suite is not None:  # a suite's tasks set their own budgets: a single task's settings would be ignored
            ignored = [f"{k}={v}" for k, v in (("task", task), ("epochs", epochs)) if v is not None]
            if ignored:
                raise SpaceError(
                    f"{' and '.join(ignored)} set the single task, which suite={suite} replaces; drop "
                    f"{'them' if len(ignored) > 1 else 'it'} (scale= sets the suite tasks' steps)"
                )
        else:  # the settings of a suite's reward, set without a suite: the single task would train, saying nothing
            suite_only = (("cutoff", cutoff, 3.0), ("scale", scale, 1.0), ("objective", objective, "loss"))
            given = [(k, v) for k, v, d in (*suite_only, ("workers", workers, 1)) if v != d]
            apart = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in given]
            if apart:
                raise SpaceError(
                    f"{' and '.join(apart)} {'set' if len(apart) > 1 else 'sets'} the task suite's reward, and no "
                    "suite= is given (the single task of task= trains instead); add suite=search (or task names)"
                )
        task = task or "digits-cnn"
        if task not in TASKS:
            raise SpaceError(f"unknown optimizer task {task!r}; known: {', '.join(TASKS)}")
        base = TASKS[task]
        changes: dict[str, Any] = {}
        if epochs is not None:
            if epochs < 1:
                raise SpaceError(f"optimizer space needs epochs >= 1, got {epochs}")
            changes["epochs"] = int(epochs)
        if lrs is not None:
            try:
                changes["lrs"] = tuple(sorted(float(x) for x in str(lrs).split(",")))
            except ValueError:
                raise SpaceError(f"lrs must be comma-separated numbers, got {lrs!r}") from None
            if not changes["lrs"] or min(changes["lrs"]) <= 0:
                raise SpaceError(f"lrs must be positive, got {lrs!r}")
        super().__init__(
            units=units,
            task=task,
            epochs=epochs,
            lrs=lrs,
            suite=suite,
            cutoff=cutoff,
            scale=scale,
            betas=betas,
            objective=objective,
            workers=workers,
            distinct=distinct,
        )
        self.distinct = bool(distinct)
        self.workers = int(workers)
        if self.workers < 1:
            raise SpaceError(f"optimizer space needs workers >= 1, got {workers}")
        if objective not in ("loss", "error"):
            raise SpaceError(f"unknown objective {objective!r}; known: loss, error")
        self.objective = objective
        self.suite, self.cutoff, self.scale, self.betas = suite, float(cutoff), float(scale), bool(betas)
        self.lr_grid: tuple[float, ...] | None = changes.get("lrs")
        self._memo: dict[str, Any] = {}
        # tuned Adam's figure per suite task, kept when the run starts, with what it depends on (`reference_key`)
        self._refs: tuple[str, dict[str, float]] | None = None
        if suite is not None:
            from l2l.optsearch.suite import TaskError, TaskPluginError
            from l2l.search_spaces.registry import PluginError

            if not 0 < self.scale <= 10:
                raise SpaceError(f"optimizer space needs 0 < scale <= 10 (the suite tasks' steps), got {scale}")
            if not self.cutoff > 1:
                raise SpaceError(f"optimizer space needs cutoff > 1 (a loss ratio to Adam's), got {cutoff}")
            try:
                self.suite_tasks()
            except TaskPluginError as exc:  # a task package's mistake: named as a plugin's, not as bad options
                raise PluginError(f"an l2l.optimizer_tasks plugin is broken: {exc}") from None
            except TaskError as exc:
                raise SpaceError(str(exc)) from None
        self.task = dataclasses.replace(base, **changes)
        self.dataset = self.task.dataset
        self.units = units
        self._decisions: list[Decision] = []
        for k in range(1, units + 1):
            operands = list(OPERANDS) + [unit_ref(j) for j in range(1, k)]
            self._decisions += [
                Decision.categorical(f"u{k}_op1", operands),
                Decision.categorical(f"u{k}_op2", operands),
                Decision.categorical(f"u{k}_unary1", UNARY),
                Decision.categorical(f"u{k}_unary2", UNARY),
                Decision.categorical(f"u{k}_binary", BINARY),
            ]
        self._decisions.append(Decision.categorical("decay", LR_DECAYS))
        if self.betas:
            self._decisions += [Decision.categorical("beta1", BETA1S), Decision.categorical("beta2", BETA2S)]

    def suite_tasks(self) -> list[Any]:
        """The suite's tasks, cheapest first, with their steps scaled."""
        from l2l.optsearch.suite import resolve_suite

        # a broken task plugin does not stop a suite of built-in tasks (`l2l search` warns of it once)
        tasks = resolve_suite(self.suite or "search", warn=lambda _: None)
        scaled = [
            dataclasses.replace(t, steps=max(t.evals, round(t.steps * self.scale))) if self.scale != 1 else t
            for t in tasks
        ]
        return sorted(scaled, key=lambda t: t.steps * {"char-transformer": 20, "char-lstm": 8}.get(t.model, 1))

    def pinned_data(self) -> dict[str, Any]:
        """A suite search's yardstick, tuned Adam's final validation loss (or error) per task, computed once when
        the run starts and kept with it: a task Adam cannot train at any learning rate is refused here, in one
        line, rather than blamed on every rule the search proposes."""
        if self.suite is None:
            return {}
        from l2l.optsearch.reward import RuleFailed, reference_key, references
        from l2l.optsearch.tuning import LR_GRID

        tasks, grid = self.suite_tasks(), self.lr_grid or LR_GRID
        try:
            refs = references(tasks, grid, self.objective)
        except RuleFailed as exc:
            raise SpaceError(f"{exc}; no rule can be scored on that task: check its model, loss and data") from None
        except Exception as exc:  # a plugin task's code, run before any rule: name it, not a traceback
            raise SpaceError(f"tuning the reference adam on the suite failed: {type(exc).__name__}: {exc}") from exc
        self._refs = (reference_key(tasks, grid, self.objective), refs)
        return {"references": refs, "key": self._refs[0]}

    def use_pinned_data(self, data: Any) -> None:
        refs, key = data.get("references"), data.get("key")
        if isinstance(refs, dict) and isinstance(key, str):
            self._refs = (key, {str(k): float(v) for k, v in refs.items()})

    def heldout_tasks(self) -> list[str]:
        """The held-out tasks this space scores rules on (a ``suite`` naming them): none for an honest search,
        whose held-out tasks are for the scoreboard alone."""
        from l2l.optsearch.suite import suite_of

        return [t.name for t in self.suite_tasks() if suite_of(t.name) == "heldout"] if self.suite is not None else []

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def rule_of(self, spec: Spec) -> Any:
        """The `l2l.optsearch.language.Rule` a spec of this space writes."""
        from l2l.optsearch.language import Rule, Unit

        units = tuple(
            Unit(*(str(spec[f"u{k}_{part}"]) for part in ("op1", "op2", "unary1", "unary2", "binary")))
            for k in range(1, self.units + 1)
        )
        decay = str(spec["decay"])
        b1, b2 = (float(spec[k]) if self.betas else None for k in ("beta1", "beta2"))  # type: ignore[arg-type]
        return Rule(units, None if decay == "none" else decay, beta1=b1, beta2=b2)

    def identity(self, spec: Spec) -> str | None:
        """The rule's functional hash: rules that compute the same update are one candidate (unless ``distinct``
        is false)."""
        from l2l.optsearch.simplify import functional_hash

        return functional_hash(self.rule_of(spec)) if self.distinct else None

    def graph(self, spec: Spec) -> dict[str, Any]:
        """The rule's dataflow for `l2l plot arch`, simplified as `describe` writes it: each operand read, each
        unit (its binary function, the unary ones on its inputs' edges), and the step the last unit makes."""
        from l2l.optsearch.language import DECAYS, OPERANDS
        from l2l.optsearch.simplify import simplified_rule

        rule = simplified_rule(self.rule_of(spec))
        nodes: list[str] = []
        where: dict[str, int] = {}  # each operand's node; "u1", "u2", ...: each unit's

        def node(name: str) -> int:
            if name not in where:
                where[name] = len(nodes)
                nodes.append(OPERANDS[name].text)
            return where[name]

        edges: list[list[Any]] = []
        for k, unit in enumerate(rule.units, start=1):
            read = ((unit.op1, unit.u1), (unit.op2, unit.u2))[: len(rule.reads(k))]  # not keep's ignored second
            inputs = [(node(op), fn) for op, fn in read]
            where[f"u{k}"] = len(nodes)
            nodes.append(f"u{k}: {unit.b}")
            edges += [[i, where[f"u{k}"], "" if fn == "identity" else fn] for i, fn in inputs]
        step = "lr" + (f" * {OPERANDS[DECAYS[rule.decay]].text}" if rule.decay is not None else "")
        nodes.append(f"update = {step} * u{len(rule.units)}" + (" + wd*w" if rule.weight_decay else ""))
        edges.append([where[f"u{len(rule.units)}"], len(nodes) - 1, ""])
        return {"nodes": nodes, "edges": edges}

    def describe(self, spec: Spec) -> str:
        """The rule as a formula, simplified as `l2l optimizers top` prints it (``sqrt|1|`` is 1, ...)."""
        from l2l.optsearch.language import to_formula
        from l2l.optsearch.simplify import simplified_rule

        return to_formula(simplified_rule(self.rule_of(spec)))

    def exact_rewards(self) -> bool:
        """A suite's reward is the same for a rule every time (each task tuned at a fixed seed, and a rule
        evaluated again shares its first evaluation): re-evaluation would spend children on nothing. One
        task's reward is one training draw."""
        return self.suite is not None

    def retrain_refusal(self) -> str | None:
        """A suite's reward tunes each rule at a fixed seed on fixed tasks: a retraining would repeat it,
        whatever its seed or budget. What measures a found rule is the held-out scoreboard."""
        if self.suite is None:
            return None
        return (
            f"its rules were scored on the task suite {self.suite!r} at a fixed seed, which a retraining would "
            "only repeat; measure a rule on the held-out tasks with `l2l optimizers evaluate RUN:RANK --suite "
            "heldout` (tuned like every baseline, several seeds)"
        )

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        from l2l.optsearch.language import to_formula, to_latex, to_text
        from l2l.optsearch.task import RuleDiverged, rule_factory, sweep

        rule = self.rule_of(spec)
        if self.suite is not None:
            return self._evaluate_on_suite(rule)
        task = self.task
        if "epochs" in ctx.budget:
            task = dataclasses.replace(task, epochs=int(ctx.budget["epochs"]))
        about = {"rule": to_text(rule), "formula": to_formula(rule), "latex": to_latex(rule), "task": task.name}
        try:
            out = sweep(rule_factory(rule, task), task, device=ctx.device)
        except RuleDiverged as exc:
            return Result.failed(f"rule {to_text(rule)!r} {exc}", **about)
        best = out.best
        info: dict[str, Any] = {**about, **out.summary()}
        if best.stopped_early:
            info["stopped_early"] = best.stopped_early
        return Result(
            reward=best.val_acc,
            val_loss=best.val_loss,
            val_acc=best.val_acc,
            test={"test_acc": best.test_acc, "test_loss": best.test_loss},
            cost={
                "params": float(sum(p.numel() for p in task.build().parameters())),
                "train_time_s": sum(r.train_time for r in out.runs.values()),
                "lrs_tried": float(len(out.runs)),
            },
            curves=best.curves,
            info=info,
        )

    def _evaluate_on_suite(self, rule: Any) -> Result:
        from l2l.optsearch.language import to_formula, to_latex, to_text
        from l2l.optsearch.reward import RuleFailed, reference_key, references, suite_reward
        from l2l.optsearch.simplify import functional_hash, simplified_rule
        from l2l.optsearch.tuning import LR_GRID

        key = functional_hash(rule)
        simple = simplified_rule(rule)
        about = {
            "rule": to_text(rule),
            "formula": to_formula(simple),
            "latex": to_latex(simple),
            "functional_hash": key,
            "suite": self.suite,
        }
        if key in self._memo:  # the same update as a rule already evaluated: share its evaluation
            first: Result = self._memo[key]
            info = {**first.info, **about, "duplicate_of": first.info["rule"], "runs": 0}
            return dataclasses.replace(first, info=info, cost={**first.cost, "runs": 0.0, "train_time_s": 0.0})
        tasks = self.suite_tasks()
        grid = self.lr_grid or LR_GRID
        try:
            # the kept references where the tasks are still the ones they were tuned on (a plugin task edited,
            # or the tuning walk changed since: tuned again, as the cache would be)
            kept = self._refs if self._refs and self._refs[0] == reference_key(tasks, grid, self.objective) else None
            refs = kept[1] if kept else references(tasks, grid, self.objective)
            score = suite_reward(
                rule, tasks, refs, lrs=grid, cutoff=self.cutoff, objective=self.objective, workers=self.workers
            )
        except RuleFailed as exc:
            result = Result.failed(f"rule {to_text(rule)!r} {exc}", **about)
        else:
            ratios = [s.ratio for s in score.scores]
            result = Result(
                reward=score.reward,
                val_loss=1.0 / score.reward,  # the geometric mean of the loss (or error) ratios to tuned Adam
                test={},
                cost={"runs": float(score.runs), "tasks_run": float(len(ratios))},
                curves={"loss_ratio": ratios},
                info={**about, **score.to_json(), "val_loss_ratio": 1.0 / score.reward},  # what tables show
            )
        self._memo[key] = result
        return result
