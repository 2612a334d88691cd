"""The contract of a space's shared network (weight sharing), used by `l2l.testing.spaces.SpaceContract`.

`check_shared_network` asserts what `l2l search --weight-sharing` relies on: the network covers every
decision, and the network of a spec bound to the shared weights (made by its `sharing_builder`, with the
names and shapes of the stand-alone child's weights) computes exactly what the stand-alone child built from
the same spec computes with the same weights: the loss, and the gradient of every weight; and an optimizer
step through each drawn spec works (keys whose slots declare other shapes fail there).
"""

from __future__ import annotations

import random
from typing import Any

from l2l.search_spaces import SearchSpace, Spec
from l2l.search_spaces.sharing import SharedNetwork, check_coverage, names_and_shapes, plain_metrics


def _specs(space: SearchSpace, n: int, seed: int) -> list[Spec]:
    from l2l.testing.spaces import random_tokens

    rng = random.Random(seed)
    return [space.decode(random_tokens(space, rng)) for _ in range(n)]


def _loss_and_grads(network: SharedNetwork, model: Any, batch: Any) -> tuple[float, dict[str, Any]]:
    model.train()
    for p in model.parameters():
        p.grad = None
    loss = network.loss(model, batch)
    loss.backward()
    return float(loss.detach()), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _shared_loss_and_grads(network: SharedNetwork, weights: Any, spec: Spec, batch: Any) -> tuple[float, dict]:
    """As `_loss_and_grads` through the shared weights, each gradient as it falls on the child's weight."""
    model = weights.model(spec)
    model.train()
    for p in weights.parameters():
        p.grad = None
    loss = network.loss(model, batch)
    loss.backward()
    return float(loss.detach()), weights.gradients(spec)


def check_shared_network(space: SearchSpace, specs: int = 5, seed: int = 0) -> None:
    """Assert ``space``'s shared network covers its decisions and binds each of ``specs`` random specs to the
    shared weights so that it computes what its stand-alone child computes with those weights."""
    import torch

    from l2l.nas.shared import SharedWeights

    network = space.shared_network()
    assert isinstance(network, SharedNetwork), f"shared_network() returned {type(network).__name__}"
    check_coverage(space, network)
    build = network.sharing_builder()
    own = build != network.build  # a builder of its own (the default is the bound `build` itself)
    # with one: a cache of one, so the specs checked below are bound again, as the search binds an architecture
    # it met before (the builder may then assemble it from modules built for the others)
    weights = SharedWeights(
        lambda spec: build(spec, 0),
        lambda spec: lambda name, shape: network.key(spec, name, shape),
        cache=1 if own else 64,
    )
    drawn = _specs(space, specs, seed)
    for spec in drawn:  # several architectures fill the store, so its weights are no single child's initial ones
        weights.model(spec)
    for spec in drawn if own else ():
        assert sorted(names_and_shapes(build(spec, 0))) == sorted(names_and_shapes(network.build(spec, 0))), (
            f"{space.describe(spec)}: sharing_builder() made a network whose weights are not the stand-alone child's"
        )
    with torch.no_grad():
        for p in weights.parameters():
            p.add_(0.01 * torch.randn_like(p))
    batch = tuple(next(iter(network.train_batches(8, torch.Generator().manual_seed(seed)))))
    for spec in drawn[-2:]:
        child = network.build(spec, 123)  # other initial weights, all replaced by the shared ones
        child.load_state_dict(weights.export(spec))
        torch.manual_seed(seed)
        shared_loss, shared_grads = _shared_loss_and_grads(network, weights, spec, batch)
        torch.manual_seed(seed)
        child_loss, child_grads = _loss_and_grads(network, child, batch)
        assert abs(shared_loss - child_loss) <= 1e-6 * max(1.0, abs(child_loss)), (
            f"{space.describe(spec)}: loss {shared_loss} with shared weights, {child_loss} stand-alone"
        )
        assert shared_grads.keys() == child_grads.keys(), f"{space.describe(spec)}: different weights get gradients"
        for key, grad in child_grads.items():
            torch.testing.assert_close(shared_grads[key], grad, rtol=1e-5, atol=1e-6, msg=f"gradient of {key}")
    optimizer = torch.optim.Adam(weights.parameters(), lr=1e-3)
    for spec in drawn:  # a sparse step through each (what the search does after every batch)
        optimizer.zero_grad(set_to_none=True)
        network.loss(weights.model(spec).train(), batch).backward()
        weights.step(spec, optimizer)
    metrics = network.measure(weights.model(drawn[0]), network.val_batch(16, torch.Generator().manual_seed(seed)))
    plain_metrics(space.name, metrics)  # the search's own check: numbers by name, a reward among them
