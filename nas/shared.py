"""Shared weights (ENAS): one store of parameters from which the network of any architecture is bound.

A space builds the stand-alone child of an architecture as usual; `SharedWeights.model` then replaces
each of the child's parameters and buffers by the shared tensor of the same *key*. The key names what
a weight is in the space (``"cell 2, edge 3, nor_conv_3x3, conv weight"``), not where the child module
keeps it, so every architecture that places the same op at the same position trains and reads the same
tensor, as in ENAS's one module holding every op. A key seen for the first time adopts the freshly
built child's tensor: the shared store grows as the search meets ops it had not met.

Because the bound network *is* the stand-alone child with other tensors in it, the subgraph an
architecture runs in the shared network computes exactly what its stand-alone child computes with
the same weights. The key must therefore tell apart every weight that means something different
(two ops whose batch norms have the same shape, the same op at stride 1 and 2); `SharedWeights`
refuses a key bound to tensors of two shapes.

A key can also name a *part* of a larger tensor (`Slot`): the child's weight is then the slice the slot
takes of the shared one, recomputed at every forward pass, so a gradient reaches exactly the entries the
child read. This is how spaces whose op sizes vary share (a layer with 36 filters reads the first 36 of
64; a layer fed by layers 0 and 2 reads their channels' columns of a weight that has columns for every
earlier layer), where keys by shape would give nearly every architecture weights of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from l2l.nas.slots import SharingError, Slot, grown, index_tensors, take, unread

__all__ = ["Keyer", "SharedWeights", "SharingError", "Slot", "shape_key"]


Keyer = Callable[[str, tuple[int, ...]], str | Slot]
"""The key of the child's parameter or buffer ``name`` of ``shape``, for one architecture: a whole shared
tensor (a string) or part of one (a `Slot`)."""


def _key(keyer: Keyer, name: str, shape: tuple[int, ...]) -> str | Slot:  # a space's key, a str or a Slot
    if not isinstance(key := keyer(name, shape), str | Slot):
        raise SharingError(f"key() returned {type(key).__name__} for {name!r} {shape}; expected a str or a Slot")
    return key


def shape_key(name: str, shape: tuple[int, ...]) -> str:
    """The weakest key: the child's own name and the shape. Shares a weight between architectures whose
    children keep it at the same place with the same shape, whatever op it belongs to."""
    return f"{name}|{'x'.join(str(s) for s in shape)}"


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, leaf = name.split(".")
    for part in path:
        module = getattr(module, part)
    return module, leaf


def concrete_device(device: str | torch.device) -> torch.device:
    """``device`` with its index: tensors on "cuda" report "cuda:0", which is not equal to "cuda", so a
    check against an index-less device would move every bound network again."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return dev


def _tensors_on(model: nn.Module, device: torch.device) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """``model``'s parameters and buffers (none that is None), the model moved to ``device`` first where any is
    elsewhere: moving a CPU network to the CPU visits every module for nothing (3% of a CPU search's time)."""
    params = list(model.named_parameters())
    buffers = [(name, buf) for name, buf in model.named_buffers() if buf is not None]
    if all(t.device == device for _, t in (*params, *buffers)):
        return params, buffers
    model.to(device)
    return list(model.named_parameters()), [(name, buf) for name, buf in model.named_buffers() if buf is not None]


class SharedWeights(nn.Module):
    """Every weight any architecture has used, by key; `model` binds an architecture's network to them.

    ``build(arch)`` makes the stand-alone child (fresh weights); ``keyer(arch)`` its key function.
    Bound networks are cached (``cache`` most recent architectures); they hold the shared tensors, so
    an optimizer step on `parameters` is seen by all of them.
    """

    def __init__(
        self,
        build: Callable[[Any], nn.Module],
        keyer: Callable[[Any], Keyer],
        device: str | torch.device = "cpu",
        cache: int = 64,
    ) -> None:
        super().__init__()
        self._build, self._keyer = build, keyer
        self.device = concrete_device(device)
        self.weights = nn.ParameterDict()
        self.stats: dict[str, torch.Tensor] = {}  # buffers (batch-norm statistics), by key
        self._names: dict[str, str] = {}  # key -> the ParameterDict's name for it
        self._cache: OrderedDict[Hashable, nn.Module] = OrderedDict()
        self._bindings: dict[Hashable, list[tuple[str, str, Slot | None]]] = {}  # child name, key, slot
        self._masks: dict[Hashable, dict[str, torch.Tensor | None]] = {}  # `reads`, per arch
        self._cache_size = cache
        self.new_parameters: list[nn.Parameter] = []  # adopted since the caller last took them

    def __len__(self) -> int:
        return len(self._names)

    def keys_of(self, arch: Hashable) -> list[str]:
        """The keys of the parameters ``arch``'s network uses, in its stand-alone child's parameter order (a
        parameter that is part of a shared tensor gives that tensor's key)."""
        self.model(arch)
        return [key for _, key, _ in self._bindings[arch]]

    def model(self, arch: Hashable) -> nn.Module:
        """The network of ``arch`` bound to the shared weights (built on first use, then cached). A network
        with slots reads them through a hook of this store: use it here, not copied, pickled or moved to
        another device (`export` gives a stand-alone state dict)."""
        model = self._cache.get(arch)
        if model is not None:
            self._cache.move_to_end(arch)
            return model
        model = self._build(arch)
        if not isinstance(model, nn.Module):  # a plugin's build(): named here, not as an AttributeError on .to
            raise SharingError(f"build() returned {type(model).__name__}, not a torch.nn.Module")
        params, buffers = _tensors_on(model, self.device)
        keyer = self._keyer(arch)
        bindings: list[tuple[str, str, Slot | None]] = []
        slices: list[tuple[nn.Module, str, nn.Parameter, tuple[int | torch.Tensor, ...]]] = []
        holder = nn.Module()  # registers the shared tensors that slots read, so model.parameters() has them
        for name, param in params:
            key = _key(keyer, name, tuple(param.shape))
            if not isinstance(key, Slot):
                shared = self._shared_parameter(key, param)
                if shared is not param:  # the store's already (a module of an assembled network, bound before, or a
                    owner, leaf = _owner(model, name)  # weight met for the first time, adopted): nothing to replace
                    setattr(owner, leaf, shared)
                bindings.append((name, key, None))
                continue
            owner, leaf = _owner(model, name)
            self._check_slot(key, name, tuple(param.shape))
            known = self._names.get(key.key)
            full = self._shared_parameter(
                key.key, self._declared(key, self.weights[known]) if known else nn.Parameter(grown(key, param))
            )
            index = index_tensors(key, self.device)
            del owner._parameters[leaf]
            setattr(owner, leaf, take(full, index))
            slices.append((owner, leaf, full, index))
            holder.register_parameter(f"s{len(slices)}", full)
            bindings.append((name, key.key, key))
        for name, buf in buffers:
            key = _key(keyer, name, tuple(buf.shape))
            if not isinstance(key, Slot):
                shared_buf = self._shared_buffer(key, buf)
                if shared_buf is not buf:
                    owner, leaf = _owner(model, name)
                    owner._buffers[leaf] = shared_buf
                continue
            owner, leaf = _owner(model, name)
            self._check_slot(key, name, tuple(buf.shape))
            if not key.is_view:
                raise SharingError(f"buffer {name!r}: its slot of {key.key!r} must take first entries only")
            full_buf = self.stats.get(key.key)
            full_buf = self._shared_buffer(
                key.key, grown(key, buf) if full_buf is None else self._declared(key, full_buf)
            )
            owner._buffers[leaf] = take(full_buf, key.index)  # type: ignore[arg-type]
        if slices:
            model.add_module("shared_slots", holder)

            def rebind(module: nn.Module, args: Any) -> None:  # the slices of this step's shared values
                for owner, leaf, full, index in slices:
                    setattr(owner, leaf, take(full, index))

            model.register_forward_pre_hook(rebind)
        self._bindings[arch] = bindings
        self._cache[arch] = model
        while len(self._cache) > max(1, self._cache_size):  # the network just bound stays
            evicted, _ = self._cache.popitem(last=False)
            self._bindings.pop(evicted, None)
            self._masks.pop(evicted, None)
        return model

    def step(self, arch: Hashable, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` after a backward pass through ``arch``'s network, as a sparse update: the
        entries of a shared tensor that ``arch`` does not read (its slots take other parts) keep their
        values and their optimizer state (momentum, Adam's moments), as whole tensors it does not use do
        (no gradient). Without this, momentum and weight decay would move weights no architecture read."""
        self.step_reads([self.reads(arch)], optimizer)

    def reads(self, arch: Hashable) -> dict[str, torch.Tensor | None]:
        """What ``arch``'s network reads of the shared tensors, by key: None for a whole tensor, else the mask of
        the entries it does not read (its slots take other parts). Taken when it is bound, it serves `step_reads`
        however many networks are bound before the step."""
        self.model(arch)
        found = self._masks.get(arch)
        if found is None:
            by_key: dict[str, list[Slot]] = {}
            for _, key, slot in self._bindings[arch]:
                if slot is not None:
                    by_key.setdefault(key, []).append(slot)
            found = dict.fromkeys((key for _, key, _ in self._bindings[arch]), None)
            for key, slots in by_key.items():
                mask = unread(slots, slots[0].shape).to(self.device)
                found[key] = mask if bool(mask.any()) else None
            self._masks[arch] = found
        return found

    def step_reads(self, reads: Sequence[Mapping[str, torch.Tensor | None]], optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()`` after backward passes through networks that read ``reads`` (`reads`): an entry
        keeps its value and optimizer state where none of them read it."""
        unread_by_all: dict[str, torch.Tensor | None] = {}  # key -> entries no network read (None: all read)
        for read in reads:
            for key, mask in read.items():
                if key not in unread_by_all:
                    unread_by_all[key] = mask
                elif unread_by_all[key] is not None:
                    unread_by_all[key] = None if mask is None else unread_by_all[key] & mask  # type: ignore[operator]
        saved = []
        for key, mask in unread_by_all.items():
            if mask is None:
                continue
            param = self.tensor(key)
            state = optimizer.state.get(param, {})
            moments = {k: v[mask].clone() for k, v in state.items() if torch.is_tensor(v) and v.shape == param.shape}
            saved.append((param, mask, param.detach()[mask].clone(), moments))
        optimizer.step()
        with torch.no_grad():
            for param, mask, values, moments in saved:
                param[mask] = values
                for k, v in optimizer.state.get(param, {}).items():
                    if torch.is_tensor(v) and v.shape == param.shape:
                        v[mask] = moments[k] if k in moments else 0  # a state the step created starts at 0

    @staticmethod
    def _declared(slot: Slot, shared: Any) -> Any:
        """The stored tensor of ``slot``'s key, refused when the slot declares the whole tensor another shape."""
        if tuple(shared.shape) != slot.shape:
            raise SharingError(
                f"shared weight {slot.key!r} is {tuple(shared.shape)} but a slot of it declares {slot.shape}: a "
                "slot's shape is the whole shared tensor, the same for every architecture"
            )
        return shared

    @staticmethod
    def _check_slot(slot: Slot, name: str, shape: tuple[int, ...]) -> None:
        if slot.sliced_shape != shape:
            raise SharingError(
                f"{name!r} has shape {shape} but its slot of shared weight {slot.key!r} takes {slot.sliced_shape}"
            )

    def _shared_parameter(self, key: str, fresh: nn.Parameter) -> nn.Parameter:
        name = self._names.get(key)
        if name is None:
            name = f"w{len(self._names)}"
            self._names[key] = name
            self.weights[name] = fresh
            self.new_parameters.append(fresh)
            return fresh
        shared = self.weights[name]
        if shared.shape != fresh.shape:
            raise SharingError(
                f"shared weight {key!r} has shape {tuple(shared.shape)} but an architecture needs "
                f"{tuple(fresh.shape)}; the space's key must tell the two apart"
            )
        return shared  # type: ignore[no-any-return]

    def _shared_buffer(self, key: str, fresh: torch.Tensor) -> torch.Tensor:
        shared = self.stats.get(key)
        if shared is None:
            self.stats[key] = fresh
            return fresh
        if shared.shape != fresh.shape:
            raise SharingError(f"shared buffer {key!r} has shape {tuple(shared.shape)}, not {tuple(fresh.shape)}")
        return shared

    def tensor(self, key: str) -> nn.Parameter:
        """The shared tensor under ``key`` (whole: a slot's key gives the tensor its slices are taken of)."""
        name = self._names.get(key)
        if name is None:
            raise SharingError(f"no shared weight has the key {key!r}")
        return self.weights[name]  # type: ignore[no-any-return]

    def take_new_parameters(self) -> list[nn.Parameter]:
        """The parameters adopted since the last call (for the optimizer to add), in adoption order."""
        new, self.new_parameters = self.new_parameters, []
        return new

    def ordered_parameters(self) -> Iterator[nn.Parameter]:
        """Every shared parameter, in the order keys were first met (what an optimizer's state indexes)."""
        for name in self._names.values():
            yield self.weights[name]

    def export(self, arch: Hashable) -> dict[str, torch.Tensor]:
        """A state dict for ``arch``'s stand-alone child holding the shared weights (copies)."""
        model = self.model(arch)
        state = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("shared_slots.")}
        state.update(self._per_child(arch, lambda p: p.detach()))
        return state

    def gradients(self, arch: Hashable) -> dict[str, torch.Tensor]:
        """The gradient the shared weights hold, as it falls on each of ``arch``'s stand-alone child's
        parameters (by the child's names; parameters without a gradient left out)."""
        return {
            name: grad for name, grad in self._per_child(arch, lambda p: p.grad, every=True).items() if grad is not None
        }

    def _per_child(
        self, arch: Hashable, value: Callable[[nn.Parameter], torch.Tensor | None], every: bool = False
    ) -> dict[str, Any]:
        self.model(arch)
        out: dict[str, Any] = {}
        for name, key, slot in self._bindings[arch]:
            if slot is None and not every:
                continue
            tensor = value(self.weights[self._names[key]])
            if slot is not None and tensor is not None:
                tensor = take(tensor, index_tensors(slot, tensor.device))
            out[name] = None if tensor is None else tensor.clone()
        return out

    def store_state(self) -> dict[str, Any]:
        """Keys in order, with their tensors (for a checkpoint)."""
        return {
            "keys": list(self._names),
            "weights": [self.weights[n].detach().cpu() for n in self._names.values()],
            "stats": {k: v.detach().cpu() for k, v in self.stats.items()},
        }

    def load_store_state(self, state: dict[str, Any]) -> None:
        """Restore `store_state` into an empty store; bound networks are rebuilt on next use."""
        if self._names:
            raise SharingError("load_store_state needs an empty store")
        keys, weights = list(state["keys"]), list(state["weights"])
        if len(keys) != len(weights):
            raise SharingError(f"saved shared weights hold {len(keys)} keys but {len(weights)} tensors")
        for key, tensor in zip(keys, weights, strict=True):
            name = f"w{len(self._names)}"
            self._names[key] = name
            self.weights[name] = nn.Parameter(tensor.to(self.device))
        self.stats = {k: v.to(self.device) for k, v in dict(state["stats"]).items()}
        self._cache.clear()
        self._bindings.clear()
        self._masks.clear()
        self.new_parameters = []
