"""`macro`: Zoph & Le's CNN space, layer by layer with skip connections chosen by anchor attention."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from l2l.search_spaces.api import Context, Decision, Result, SpaceError, Spec
from l2l.search_spaces.trained import DatasetSpace, train_and_measure

KERNELS = (1, 3, 5, 7)
FILTERS = (24, 36, 48, 64)
STRIDES = (1, 2, 3)


class MacroSpace(DatasetSpace):
    """Per layer: filter height and width (width only on 1-D data), number of filters, optionally the
    stride, and which earlier layers feed it (an anchor decision).

    Options: ``dataset`` (mnist1d), ``layers`` (6), ``strides`` (false), ``epochs`` (8), ``batch_size``
    (64), ``lr`` (Adam, 0.003), and the paper's schedule of growing depth: ``start_layers`` (default:
    all) layers at first, ``grow_by`` more every ``grow_every`` children, up to ``layers``.
    ``low_rank=true`` adds a per-layer rank decision (`l2l.nas.lowrank`); ``hashed=true`` puts a hidden
    layer of ``head_width`` (4096) neurons before the classifier and decides the fraction of them
    evaluated per input by LSH (1.0 = dense, 0.2, 0.05; `l2l.nas.hashed`). ``predicted=true`` adds a
    per-layer share of each filter's taps learned, the others predicted from them by a smoothness prior
    over the filter positions (dense, 1/2, 1/4, 1/10; `l2l.nas.denil`; a predicted layer keeps its full
    rank, and a 1x1 filter has nothing to predict).
    """

    name = "macro"
    budget_keys = ("epochs",)
    description = "Zoph & Le's macro CNN (filters, kernel sizes, strides, skip connections), MNIST-1D by default."

    def __init__(
        self,
        dataset: str = "mnist1d",
        layers: int = 6,
        strides: bool = False,
        epochs: int = 8,
        batch_size: int = 64,
        lr: float = 0.003,
        start_layers: int | None = None,
        grow_by: int = 2,
        grow_every: int = 50,
        low_rank: bool = False,
        hashed: bool = False,
        head_width: int = 4096,
        predicted: bool = False,
    ) -> None:
        if layers < 1 or epochs < 1 or batch_size < 1 or not lr > 0 or grow_by < 0 or grow_every < 1:
            raise SpaceError(
                "macro needs layers, epochs, batch_size, grow_every >= 1, grow_by >= 0 and lr > 0; got "
                f"{layers}, {epochs}, {batch_size}, {grow_every}, {grow_by}, {lr}"
            )
        if hashed and head_width < 1:
            raise SpaceError(f"a hashed head needs head_width >= 1, got {head_width}")
        if start_layers is not None and not 1 <= start_layers <= layers:
            raise SpaceError(f"start_layers must be in 1..{layers}, got {start_layers}")
        super().__init__(
            dataset=dataset,
            layers=layers,
            strides=strides,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            start_layers=start_layers,
            grow_by=grow_by,
            grow_every=grow_every,
            low_rank=low_rank,
            hashed=hashed,
            head_width=head_width,
            predicted=predicted,
        )
        from l2l.nas.genotypes import ACTIVE_CHOICES, PREDICT_CHOICES, RANK_CHOICES

        self.predicted = bool(predicted)
        self.low_rank, self.hashed, self.head_width = bool(low_rank), bool(hashed), head_width
        self.dataset, self.n_layers, self.strides = dataset, layers, bool(strides)
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.start_layers, self.grow_by, self.grow_every = start_layers, grow_by, grow_every
        self.two_d = dataset in ("digits", "cifar10")
        self._decisions: list[Decision] = []
        for i in range(layers):
            if self.two_d:
                self._decisions.append(Decision.categorical(f"l{i}_height", KERNELS))
            self._decisions.append(Decision.categorical(f"l{i}_width", KERNELS))
            self._decisions.append(Decision.categorical(f"l{i}_filters", FILTERS))
            if self.strides:
                self._decisions.append(Decision.categorical(f"l{i}_stride", STRIDES))
            self._decisions.append(Decision.anchor(f"l{i}_inputs", i))
            if self.low_rank:
                self._decisions.append(Decision.categorical(f"l{i}_rank", RANK_CHOICES))
            if self.predicted:
                self._decisions.append(Decision.categorical(f"l{i}_learned", PREDICT_CHOICES))
        if self.hashed:
            self._decisions.append(Decision.categorical("head_active", ACTIVE_CHOICES))

    def decisions(self) -> Sequence[Decision]:
        return self._decisions

    def ignored_options(self) -> list[str]:
        grows = [
            f"{k}={v}" for k, v, d in (("grow_by", self.grow_by, 2), ("grow_every", self.grow_every, 50)) if v != d
        ]
        said = [f"macro option {', '.join(grows)} grows the depth from start_layers; set start_layers"]
        said = said if grows and self.start_layers is None else []
        if not self.hashed and self.head_width != 4096:
            said.append(f"macro option head_width={self.head_width} is the hashed head's width; add hashed=true")
        return said

    def depth(self, child: int) -> int:
        """Layers in use for child number ``child`` under the growing schedule."""
        if self.start_layers is None:
            return self.n_layers
        return min(self.n_layers, self.start_layers + self.grow_by * (child // self.grow_every))

    def layers_of(self, spec: Spec, depth: int | None = None) -> list[Any]:
        """The `l2l.nas.macro.MacroLayer` list a spec describes (its first ``depth`` layers)."""
        from l2l.nas.genotypes import MacroLayer, learned_points

        out = []
        for i in range(self.n_layers if depth is None else depth):
            w = int(str(spec[f"l{i}_width"]))
            h = int(str(spec[f"l{i}_height"])) if self.two_d else 1
            stride = int(str(spec[f"l{i}_stride"])) if self.strides else 1
            bits = spec[f"l{i}_inputs"]
            inputs = tuple(j for j, b in enumerate(bits) if b) if isinstance(bits, tuple) else ()
            learned = str(spec[f"l{i}_learned"]) if self.predicted else "dense"
            rank = str(spec[f"l{i}_rank"]) if self.low_rank and learned == "dense" else "full"
            learned = learned if learned_points(learned, h * w) is not None else "dense"  # 1x1: a dense, full conv
            out.append(MacroLayer((h, w), int(str(spec[f"l{i}_filters"])), stride, inputs, rank, learned))
        return out

    def canonical(self, spec: Spec) -> Spec | None:
        """With predicted or low-rank layers, specs that build the same network are one architecture: a
        predicted layer keeps its full rank, and a 1x1 filter with a learned share is a dense convolution at
        full rank (it has nothing to predict), so the choices they do not use take their first value; a rank
        is the first choice that builds the same one (clamped to [1, full], where full is the least of the
        filters and the input channels times the kernel's taps)."""
        if not self.predicted and not self.low_rank:
            return None
        from l2l.nas.genotypes import INPUT_SHAPES, same_rank, signal_shape

        out = spec.as_dict()
        layers = self.layers_of(spec)
        signal = signal_shape(INPUT_SHAPES[self.dataset], self.dataset)[0]  # the input's channels
        for i, layer in enumerate(layers):
            if self.predicted and str(spec[f"l{i}_learned"]) != "dense":  # predicted, or a 1x1 filter built dense
                out[f"l{i}_learned"] = layer.learned
                if self.low_rank:
                    out[f"l{i}_rank"] = "full"
            elif self.low_rank:
                c_in = sum(layers[j].filters for j in layer.inputs) if layer.inputs else signal
                taps = layer.kernel[0] * layer.kernel[1]
                out[f"l{i}_rank"] = same_rank(layer.rank, c_in * taps, layer.filters)
        return Spec(space=spec.space, choices=tuple(out.items()))

    def describe(self, spec: Spec) -> str:
        parts = []
        for i, layer in enumerate(self.layers_of(spec)):
            k = f"{layer.kernel[0]}x{layer.kernel[1]}" if self.two_d else f"{layer.kernel[1]}"
            s = f"/{layer.stride}" if layer.stride > 1 else ""
            src = ",".join(map(str, layer.inputs)) if layer.inputs else "in"
            r = f" r{layer.rank}" if layer.rank != "full" else ""
            r += f" learned {layer.learned}" if layer.learned != "dense" else ""
            parts.append(f"L{i}[{k}x{layer.filters}{s}{r}<-{src}]")
        if self.hashed:
            parts.append(f"head[{self.head_width} active {spec['head_active']}]")
        return " ".join(parts)

    def graph(self, spec: Spec) -> dict[str, Any]:
        layers = self.layers_of(spec)
        nodes = (
            ["input"]
            + [
                f"L{i}: {layer.kernel[1] if not self.two_d else f'{layer.kernel[0]}x{layer.kernel[1]}'}"
                f" x{layer.filters}" + (f" /{layer.stride}" if layer.stride > 1 else "")  # as describe() writes it
                for i, layer in enumerate(layers)
            ]
            + ["classifier"]
        )
        edges = []
        consumed = {j for layer in layers for j in layer.inputs}
        for i, layer in enumerate(layers):
            for j in layer.inputs or (-1,):
                edges.append([j + 1, i + 1, ""])
        edges += [[i + 1, len(nodes) - 1, ""] for i in range(len(layers)) if i not in consumed]
        return {"nodes": nodes, "edges": edges}

    def build(self, spec: Spec, seed: int, depth: int | None = None) -> Any:
        """The network of ``spec`` with the initial weights of ``seed``, and one example input."""
        import torch

        from l2l.nas.data import load_dataset
        from l2l.nas.genotypes import signal_shape
        from l2l.nas.macro import MacroNet

        data = load_dataset(self.dataset)
        shape = signal_shape(data.input_shape, self.dataset)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            head = (self.head_width, float(str(spec["head_active"]))) if self.hashed else (0, 1.0)
            model = MacroNet(self.layers_of(spec, depth), shape, data.n_classes, *head)
        return model, data.val.x[:1]

    def shared_network(self) -> Any:
        """Weight sharing at full depth, ENAS's macro search with Zoph & Le's sizes: layer i keeps one
        convolution per kernel size, with the most filters and an input column for every earlier layer
        at its most filters (and for the input signal). An architecture's layer reads the first
        ``filters`` rows and the columns of the layers that feed it; its batch norm the first
        ``filters`` entries; the classifier the columns of the layers it pools (`l2l.nas.shared.Slot`).
        The stride does not change a weight. With ``low_rank`` or ``predicted`` there is none."""
        from l2l.nas.data import load_dataset
        from l2l.nas.genotypes import signal_shape
        from l2l.search_spaces.sharing import ClassifierNetwork

        if self.hashed:  # a hashed head's index is built from its own weights, per module: not shareable
            raise SpaceError("macro with hashed=true offers no shared network (LSH indexes are per module)")
        if self.low_rank or self.predicted:  # a factored layer's weights are its own (keyed by shape): they barely
            # shared (350 tensors after 10 steps against 71), the scheme that kept the shared loss at chance
            chosen = "low_rank=true" if self.low_rank else "predicted=true"
            raise SpaceError(
                f"macro with {chosen} offers no shared network (factored convolutions would share only with the "
                "same factoring at the same layer and input, and barely train); search them with full training"
            )
        if self.start_layers is not None:  # the schedule counts children; a weight-sharing search has none
            raise SpaceError("macro's growing depth (start_layers) does not apply to weight sharing: drop it")
        data = load_dataset(self.dataset)
        signal = signal_shape(data.input_shape, self.dataset)[0]

        def key(spec: Spec, name: str, shape: tuple[int, ...]) -> Any:
            return self._shared_key(spec, name, shape, signal, data.n_classes)

        return ClassifierNetwork(
            self, self.dataset, lambda spec, seed: self.build(spec, seed)[0], key, [d.name for d in self.decisions()]
        )

    def _shared_key(self, spec: Spec, name: str, shape: tuple[int, ...], signal: int, n_classes: int) -> Any:
        from l2l.nas.shared import Slot, shape_key

        layers, widest = self.layers_of(spec), max(FILTERS)
        parts = name.split(".")
        if parts[0] == "blocks":
            i = int(parts[1])
            layer = layers[i]
            place = f"layer{i}.k{'x'.join(map(str, layer.kernel))}"
            if layer.rank != "full" or layer.learned != "dense":
                return shape_key(f"{place}.rank{layer.rank}.learned{layer.learned}:{name}", shape)
            if parts[2:] == ["0", "weight"]:  # (filters, inputs' channels, *kernel)
                columns: tuple[int, ...] = tuple(range(signal))
                if layer.inputs:
                    columns = tuple(signal + j * widest + c for j in layer.inputs for c in range(layers[j].filters))
                full = (widest, signal + i * widest, *shape[2:])
                return Slot(f"{place}:conv", full, (layer.filters, columns, *shape[2:]))
            if parts[2] == "1" and parts[3] != "num_batches_tracked":  # batch norm: per filter
                return Slot(f"{place}:bn.{parts[3]}", (widest,), (layer.filters,))
            return shape_key(f"{place}:{name}", shape)
        if name == "head.weight":  # (classes, the pooled loose layers' channels)
            loose = [i for i in range(len(layers)) if not any(i in later.inputs for later in layers)]
            columns = tuple(j * widest + c for j in loose for c in range(layers[j].filters))
            return Slot("head.weight", (n_classes, len(layers) * widest), (n_classes, columns))
        return shape_key(name, shape)

    def evaluate(self, spec: Spec, ctx: Context) -> Result:
        from l2l.nas.train import TrainConfig

        depth = self.depth(ctx.child)
        model, example = self.build(spec, ctx.seed, depth)
        epochs = int(ctx.budget.get("epochs", self.epochs))
        config = TrainConfig(epochs=epochs, lr=self.lr, batch_size=self.batch_size)
        return train_and_measure(model, example, config, ctx, self.dataset, {"depth": depth})
