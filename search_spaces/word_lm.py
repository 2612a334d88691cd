"""`word_lm`: a word-level LSTM language model of the packaged Shakespeare, and how its output layer trains."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SearchSpace, SpaceError, Spec

EMBEDS = (32, 64)
HIDDENS = (32, 64, 128)
LRS = ("0.001", "0.003", "0.01")
EVAL_MIN = 32  # `l2l.nas.wordlm.perplexity` reads 16 streams: fewer than 2 words each leave nothing to score


def _output(kind: str, active: float) -> Callable[..., Any]:
    def make(n_in: int, n_out: int, frequencies: Any, seed: int) -> Any:
        from l2l.nas.slide import output_layer

        return output_layer(kind, n_in, n_out, active, frequencies, seed)

    return make


# the output layer decision: choice -> factory(n_in, n_out, training counts per word, seed); a new kind is one entry
OUTPUTS: dict[str, Callable[..., Any]] = {
    "dense": _output("dense", 1.0),
    "slide 1%": _output("slide", 0.01),
    "slide 5%": _output("slide", 0.05),
    "slide 20%": _output("slide", 0.2),
    "slide_tail 1%": _output("slide_tail", 0.01),  # SLIDE's retrieved half plus an importance-sampled tail
    "slide_tail 5%": _output("slide_tail", 0.05),
    "sampled 5%": _output("sampled_unigram", 0.05),
    "predicted 1/4": _output("predicted", 0.25),  # Denil: a quarter of each row learned, the rest predicted
    "predicted 1/10": _output("predicted", 0.1),
}


class WordLMSpace(SearchSpace):
    """Embedding and LSTM widths, Adam's learning rate, and the output layer over the 11,920 words: dense,
    SLIDE with 1%, 5% or 20% of the words active per example (`l2l.nas.slide`), SLIDE with an
    importance-sampled tail at 1% or 5% (`l2l.nas.slide.SlideTailOutput`), sampled softmax with 5%
    unigram negatives, or Denil's predicted parameters with 1/4 or 1/10 of each word's weight row learned
    (`l2l.nas.slide.PredictedOutput`: a fixed random dictionary, as hidden units have no topology).
    Evaluation always scores the full softmax.

    Options: ``epochs`` (1) passes over the training text, each cut at ``max_steps`` updates when > 0 (0:
    the whole text, 264 updates); ``batch_size`` (32) streams x ``bptt`` (20) words; ``reward_c`` (100);
    ``eval_words`` (0: all) scores only the first words of validation and test (quick settings). A budget
    (`l2l runs best --retrain`) of ``epochs`` trains that many whole epochs, whatever the search's
    ``max_steps``; of ``steps``, cuts each epoch at that many updates.
    Reward = ``reward_c / validation perplexity``; test perplexity reported. Cost: ``params`` (learned ones:
    not a predicted layer's dictionary), ``flops`` (multiply-adds per training word as computed: the LSTM,
    and the output layer's active products, hashing and table rebuilds, or its factored product) and
    ``train_time_s``.
    """

    name = "word_lm"
    budget_keys = ("epochs", "steps")
    description = "Word LSTM LM (Shakespeare): sizes, learning rate, dense/SLIDE/sampled/predicted output layer."
    validation_metric = "ppl"
    test_metrics = ("test_ppl",)
    cost_metrics = ("params", "flops", "train_time_s")

    def __init__(
        self,
        epochs: int = 1,
        max_steps: int = 0,
        batch_size: int = 32,
        bptt: int = 20,
        reward_c: float = 100.0,
        eval_words: int = 0,
    ) -> None:
        if min(epochs, batch_size, bptt) < 1 or min(max_steps, eval_words) < 0 or not reward_c > 0:
            raise SpaceError(
                "word_lm needs epochs, batch_size, bptt >= 1, max_steps, eval_words >= 0 and reward_c > 0; got "
                f"{epochs}, {batch_size}, {bptt}, {max_steps}, {eval_words}, {reward_c}"
            )
        if 0 < eval_words < EVAL_MIN:
            raise SpaceError(f"word_lm option eval_words must be 0 (all) or at least {EVAL_MIN}, got {eval_words}")
        super().__init__(
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            bptt=bptt,
            reward_c=reward_c,
            eval_words=eval_words,
        )
        self.eval_words = eval_words
        self.epochs, self.max_steps, self.batch_size, self.bptt, self.reward_c = (
            epochs,
            max_steps,
            batch_size,
            bptt,
            reward_c,
        )
        self._decisions = [
            Decision.categorical("embed", EMBEDS),
            Decision.categorical("hidden", HIDDENS),
            Decision.categorical("output", tuple(OUTPUTS)),
            Decision.categorical("lr", LRS),
        ]

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def describe(self, spec: Spec) -> str:
        return f"embed {spec['embed']} lstm {spec['hidden']} output {spec['output']} lr {spec['lr']}"

    def graph(self, spec: Spec) -> dict[str, Any]:
        nodes = ["words", f"embedding {spec['embed']}", f"lstm {spec['hidden']}", f"output {spec['output']}"]
        return {"nodes": nodes, "edges": [[i, i + 1, ""] for i in range(len(nodes) - 1)]}

    def build(self, spec: Spec, seed: int) -> Any:
        """The language model of ``spec`` with the initial weights (and hash functions) of ``seed``."""
        import torch

        from l2l.nas.wordlm import WordLM, load_words

        corpus = load_words()
        hidden = int(str(spec["hidden"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            output = OUTPUTS[str(spec["output"])](hidden, corpus.n_vocab, corpus.counts(), seed)
            return WordLM(corpus.n_vocab, int(str(spec["embed"])), hidden, output)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        import torch

        from l2l.nas.cost import count_parameters
        from l2l.nas.slide import SparseDenseAdam
        from l2l.nas.train import ChildDiverged
        from l2l.nas.wordlm import WordLMConfig, load_words, perplexity, train_epoch

        corpus = load_words()
        cut = self.eval_words or len(corpus.val) + len(corpus.test)
        val_words, test_words = corpus.val[:cut], corpus.test[:cut]
        model = self.build(spec, ctx.seed)
        lr = float(str(spec["lr"]))
        # a retraining's epochs are whole ones (the search's max_steps is a quick setting), unless it sets steps
        cap = ctx.budget.get("steps", 0 if "epochs" in ctx.budget else self.max_steps)
        config = WordLMConfig(lr=lr, batch_size=self.batch_size, bptt=self.bptt, max_steps=int(cap))
        optimizer = SparseDenseAdam(model, lr)
        epochs = int(ctx.budget.get("epochs", self.epochs))
        torch.manual_seed(ctx.seed)  # the draws in training (buckets' windows, negatives) repeat too
        curves: dict[str, list[float]] = {"val_ppl": []}
        seconds = 0.0
        info: dict[str, Any] = {"arch": self.describe(spec)}
        for epoch in range(epochs):
            try:
                seconds += train_epoch(model, corpus, optimizer, config)
            except ChildDiverged as exc:
                return Result.failed(f"the model diverged: {exc}", **info)
            curves["val_ppl"].append(perplexity(model, val_words))
            if ctx.should_stop(epoch, -curves["val_ppl"][-1]):
                info["pruned_at"] = epoch
                break
        val = curves["val_ppl"][-1]
        return Result(
            reward=self.reward_c / val,
            val_loss=math.log(val),
            test={"test_ppl": perplexity(model, test_words)},
            cost={
                "params": float(count_parameters(model)),
                "flops": float(model.body_macs() + model.output.macs_per_example()),
                "train_time_s": seconds,
            },
            curves=curves,
            info=dict(info, val_ppl=val),
        )
