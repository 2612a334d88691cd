"""`rnn_cell`: recurrent cells for character-level language modelling (ENAS cell or Zoph & Le's tree)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, SpaceError, Spec

CELLS = ("enas", "tree")
REWARDS = ("ppl", "bpc")


class RNNCellSpace(SearchSpace):
    """A child is a recurrent cell in a character language model trained on the packaged Shakespeare.

    ``cell=enas`` (default): per node j >= 1 the earlier node it reads, and per node its activation
    (tanh, relu, identity, sigmoid); ``nodes`` (8). ``cell=tree``: Zoph & Le's base-8 tree: per leaf and
    inner node a combination (add, mul) and an activation, then the memory cell's injection node,
    combination and activation, and the node c_t comes from. ``low_rank=true`` adds a decision for the
    rank of the recurrent projections (full, 1/2, 1/4, 1/8, 1/16); ``hashed=true`` one for the
    fraction of their outputs evaluated per step by LSH (1.0 = dense, 0.2, 0.05; a hashed projection
    keeps its full rank).

    Budget: ``steps`` (300) updates of ``batch_size`` (32) streams x ``bptt`` (32) characters, Adam at
    ``lr`` (0.01); ``hidden`` (128), ``embed`` (32). Reward: ``reward=ppl`` is Zoph & Le's
    ``reward_c / ppl^2`` with ppl the validation perplexity per character (``reward_c`` 10);
    ``reward=bpc`` is minus the validation bits per character. Test bits per character are reported.
    """

    name = "rnn_cell"
    budget_keys = ("steps",)
    description = "Recurrent cells (ENAS cell or Zoph & Le's tree) for character language modelling."
    validation_metric = "bpc"  # kept in info as val_bpc; val_acc is not measured
    test_metrics = ("test_bpc",)
    # of the model on one character (`l2l.nas.charlm.one_char_cost`), and its training time
    cost_metrics = ("params", "flops", "latency_s", "train_time_s")

    def __init__(
        self,
        cell: str = "enas",
        nodes: int | None = None,
        low_rank: bool = False,
        hashed: bool = False,
        hidden: int = 128,
        embed: int = 32,
        steps: int = 300,
        batch_size: int = 32,
        bptt: int = 32,
        lr: float = 0.01,
        reward: str = "ppl",
        reward_c: float = 10.0,
    ) -> None:
        if cell not in CELLS:
            raise SpaceError(f"unknown rnn_cell cell {cell!r}; known: {', '.join(CELLS)}")
        if cell == "tree" and nodes not in (None, 8):  # it was taken and ignored (runs stored before kept the 8)
            raise SpaceError("rnn_cell option nodes applies to cell=enas; the tree cell has its 15 nodes")
        nodes = 8 if nodes is None else nodes
        if reward not in REWARDS:
            raise SpaceError(f"unknown rnn_cell reward {reward!r}; known: {', '.join(REWARDS)}")
        if min(nodes, hidden, embed, steps, batch_size, bptt) < 1 or not lr > 0 or not reward_c > 0:
            raise SpaceError(
                "rnn_cell needs nodes, hidden, embed, steps, batch_size, bptt >= 1 and lr, reward_c > 0; got "
                f"{nodes}, {hidden}, {embed}, {steps}, {batch_size}, {bptt}, {lr}, {reward_c}"
            )
        super().__init__(
            cell=cell,
            **({"nodes": nodes} if cell == "enas" else {}),
            low_rank=low_rank,
            hashed=hashed,
            hidden=hidden,
            embed=embed,
            steps=steps,
            batch_size=batch_size,
            bptt=bptt,
            lr=lr,
            reward=reward,
            reward_c=reward_c,
        )
        self.cell, self.n_nodes, self.low_rank, self.hashed = cell, nodes, bool(low_rank), bool(hashed)
        self.hidden, self.embed, self.steps = hidden, embed, steps
        self.batch_size, self.bptt, self.lr = batch_size, bptt, lr
        self.reward, self.reward_c = reward, reward_c
        self._decisions = _decisions(cell, nodes, self.low_rank, self.hashed)

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def _rank(self, spec: Spec) -> str | None:
        return str(spec["rank"]) if self.low_rank else None

    def _active(self, spec: Spec) -> float:
        return float(str(spec["active"])) if self.hashed else 1.0

    def _projection(self, spec: Spec) -> tuple[str | None, float]:
        """(rank, active) of the recurrent projections; a hashed projection keeps its full rank."""
        active = self._active(spec)
        return (None if active < 1.0 else self._rank(spec)), active

    def canonical(self, spec: Spec) -> Spec | None:
        """With both rank and hashing decisions, specs that build the same cell are one architecture: a hashed
        projection keeps its full rank, so its rank choice takes the first value."""
        if not (self.low_rank and self.hashed):
            return None
        out = spec.as_dict()
        if self._active(spec) < 1.0:
            out["rank"] = next(d for d in self._decisions if d.name == "rank").options[0]
        return Spec(space=spec.space, choices=tuple(out.items()))

    def describe(self, spec: Spec) -> str:
        used, _ = self._projection(spec)
        rank = f" rank={used}" if used is not None else ""  # not a hashed projection's: it has none
        if self.hashed:
            rank += f" active={self._active(spec)}"
        if self.cell == "enas":
            parts = [f"n0={spec['n0_act']}(x,h)"]
            parts += [f"n{j}={spec[f'n{j}_act']}(n{spec[f'n{j}_prev']})" for j in range(1, self.n_nodes)]
            return " ".join(parts) + rank
        nodes = " ".join(f"t{k}={spec[f't{k}_act']}/{spec[f't{k}_combine']}" for k in range(15))
        mem = f"c_in@t{spec['inject_at']}:{spec['inject_act']}/{spec['inject_combine']} c_out=t{spec['cell_from']}"
        return f"{nodes} {mem}{rank}"

    def ignored_options(self) -> list[str]:
        if self.reward == "bpc" and self.reward_c != 10.0:
            return [f"rnn_cell option reward_c={self.reward_c} scales reward=ppl; reward=bpc is -bpc itself"]
        return []

    def graph(self, spec: Spec) -> dict[str, Any]:
        if self.cell == "enas":
            from l2l.nas.genotypes import enas_loose_ends

            nodes = self.enas_nodes(spec)
            labels = ["x, h[t-1]"] + [f"n{j}: {n.act}" for j, n in enumerate(nodes)] + ["h[t] (mean)"]
            edges = [[0, 1, ""]] + [[n.prev + 1, j + 1, ""] for j, n in enumerate(nodes) if j > 0]
            edges += [[j + 1, len(labels) - 1, ""] for j in enas_loose_ends(nodes)]
            return {"nodes": labels, "edges": edges}
        from l2l.nas.genotypes import TREE_CHILDREN

        tree = self.tree_spec(spec)  # c[t-1] first, the nodes t0..t14 (leaves read x and h), then c[t] and h[t]
        labels = ["c[t-1]"]
        labels += [f"t{k}\n{tree.act[k]}\n{tree.combine[k]}" + ("(x, h)" if k < 8 else "") for k in range(15)]
        labels += ["c[t]", "h[t]"]
        edges = [[child + 1, k + 1, ""] for k, pair in TREE_CHILDREN.items() for child in pair]
        edges += [[0, tree.inject_at + 1, f"{tree.inject_act}({tree.inject_combine})"]]
        edges += [[tree.cell_from + 1, 16, "pre-activation"], [15, 17, ""]]
        return {"nodes": labels, "edges": edges}

    def enas_nodes(self, spec: Spec) -> list[Any]:
        from l2l.nas.genotypes import ENASNode

        nodes = [ENASNode(0, str(spec["n0_act"]))]
        nodes += [ENASNode(int(str(spec[f"n{j}_prev"])), str(spec[f"n{j}_act"])) for j in range(1, self.n_nodes)]
        return nodes

    def tree_spec(self, spec: Spec) -> Any:
        from l2l.nas.genotypes import TreeSpec

        return TreeSpec(
            combine=tuple(str(spec[f"t{k}_combine"]) for k in range(15)),
            act=tuple(str(spec[f"t{k}_act"]) for k in range(15)),
            inject_at=int(str(spec["inject_at"])),
            inject_combine=str(spec["inject_combine"]),
            inject_act=str(spec["inject_act"]),
            cell_from=int(str(spec["cell_from"])),
        )

    def build(self, spec: Spec, seed: int) -> Any:
        """The language model of ``spec`` with the initial weights of ``seed``."""
        import torch

        from l2l.nas.charlm import CharLM, load_corpus
        from l2l.nas.rnn_cells import CellRNN, ENASCell, TreeCell

        corpus = load_corpus()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if self.cell == "enas":
                cell: Any = ENASCell(self.enas_nodes(spec), self.embed, self.hidden, *self._projection(spec))
            else:
                cell = TreeCell(self.tree_spec(spec), self.embed, self.hidden, *self._projection(spec))
            return CharLM(corpus.n_vocab, self.embed, CellRNN(cell))

    def shared_network(self) -> Any:
        """Weight sharing (ENAS's recurrent cell): node j's projection is one matrix per earlier node it can
        read, shared by every architecture in which j reads that node; embedding, input projection and
        decoder are shared by all. Windows of ``bptt`` characters from a zero state; reward as the space's."""
        from l2l.search_spaces.sharing import LanguageModelNetwork

        if self.hashed:  # a hashed projection's index is built from its own weights, per module: not shareable
            raise SpaceError("rnn_cell with hashed=true offers no shared network (LSH indexes are per module)")
        return LanguageModelNetwork(
            self, self.build, self._shared_key, [d.name for d in self.decisions()], self.bptt, self.reward_of
        )

    def reward_of(self, bpc: float) -> float:
        """The reward of a validation bits per character (``reward=ppl``: ``reward_c / ppl^2``; ``bpc``: -bpc)."""
        return self.reward_c * 2.0 ** (-2.0 * bpc) if self.reward == "ppl" else -bpc  # no overflow at large bpc

    def _shared_key(self, spec: Spec, name: str, shape: tuple[int, ...]) -> str:
        from l2l.nas.shared import shape_key

        parts = name.split(".")
        if self.cell == "enas" and parts[:3] == ["rnn", "cell", "w_nodes"]:  # rnn.cell.w_nodes.<j - 1>.<rest>
            j = int(parts[3]) + 1
            return shape_key(f"node{j}.from{spec[f'n{j}_prev']}.{'.'.join(parts[4:])}", shape)
        return shape_key(name, shape)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        model = self.build(spec, ctx.seed)
        return train_language_model(self, model, ctx, {"arch": self.describe(spec)})


def train_language_model(space: Any, model: Any, ctx: Context, info: dict[str, Any]) -> Result:
    """Train ``model`` on the corpus with ``space``'s budget; reward, bits per character and cost."""
    import torch

    from l2l.nas.charlm import LMConfig, load_corpus, one_char_cost, train_lm

    steps = int(ctx.budget.get("steps", space.steps))
    config = LMConfig(
        steps=steps, batch_size=space.batch_size, bptt=space.bptt, lr=space.lr, stop_hopeless=not ctx.retrain
    )
    from l2l.nas.train import ChildDiverged

    torch.manual_seed(ctx.seed)  # draws during training (hashed projections' tie-breaks) repeat too
    try:
        out = train_lm(model, load_corpus(), config, seed=ctx.seed, device=ctx.device, should_stop=ctx.should_stop)
    except ChildDiverged as exc:  # a cell whose state explodes: a failed child with its reason
        return Result.failed(f"the cell diverged: {exc}", **info)
    reward = space.reward_of(out.val_bpc)
    info = dict(info, val_bpc=out.val_bpc)
    if out.stopped_early:
        info["stopped_early"] = out.stopped_early
    cost = one_char_cost(model, torch.device(ctx.device))
    cost["train_time_s"] = out.train_time
    return Result(
        reward=reward,
        val_loss=out.val_bpc * math.log(2),
        test={"test_bpc": out.test_bpc},
        cost=cost,
        curves=out.curves,
        info=info,
    )


def _decisions(cell: str, nodes: int, low_rank: bool, hashed: bool) -> list[Decision]:
    """The ENAS cell's or the tree's decisions, then the optional rank and hashing ones."""
    from l2l.nas.genotypes import RANK_CHOICES, TREE_NODES
    from l2l.nas.genotypes import RNN_ACTIVATIONS as ACTIVATIONS
    from l2l.nas.genotypes import RNN_COMBINE as COMBINE

    d: list[Decision] = []
    if cell == "enas":
        d.append(Decision.categorical("n0_act", ACTIVATIONS))
        for j in range(1, nodes):
            d.append(Decision.categorical(f"n{j}_prev", range(j)))
            d.append(Decision.categorical(f"n{j}_act", ACTIVATIONS))
    else:
        for k in range(TREE_NODES):
            d.append(Decision.categorical(f"t{k}_combine", COMBINE))
            d.append(Decision.categorical(f"t{k}_act", ACTIVATIONS))
        d.append(Decision.categorical("inject_at", range(TREE_NODES)))
        d.append(Decision.categorical("inject_combine", COMBINE))
        d.append(Decision.categorical("inject_act", ACTIVATIONS))
        d.append(Decision.categorical("cell_from", range(TREE_NODES)))
    if low_rank:
        d.append(Decision.categorical("rank", RANK_CHOICES))
    if hashed:
        from l2l.nas.genotypes import ACTIVE_CHOICES

        d.append(Decision.categorical("active", ACTIVE_CHOICES))
    return d
