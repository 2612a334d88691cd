"""Offline datasets: MNIST-1D generated to the published recipe, the generated synthetic task, CIFAR-10's message."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from l2l.nas.data import DatasetError, dataset_names, load_dataset
from l2l.nas.mnist1d import Recipe, generate


def test_mnist1d_has_the_published_shape_and_fixed_splits() -> None:
    data = load_dataset("mnist1d")
    assert data.input_shape == (40,) and data.n_classes == 10
    assert (len(data.train), len(data.val), len(data.test)) == (3500, 500, 1000)
    counts = torch.bincount(torch.cat([data.train.y, data.val.y, data.test.y]))
    assert counts.tolist() == [500] * 10
    x_all = torch.cat([data.train.x, data.val.x, data.test.x])
    assert abs(float(x_all.mean())) < 1e-4 and abs(float(x_all.std()) - 1) < 1e-3
    again = generate()
    assert np.array_equal(again[0][-500:], data.val.x.numpy())  # the same data on every call and machine


def test_mnist1d_is_as_hard_as_published_for_a_linear_model() -> None:
    from sklearn.linear_model import LogisticRegression

    data = load_dataset("mnist1d")
    x = torch.cat([data.train.x, data.val.x]).numpy()
    y = torch.cat([data.train.y, data.val.y]).numpy()
    acc = LogisticRegression(max_iter=2000).fit(x, y).score(data.test.x.numpy(), data.test.y.numpy())
    assert 0.28 <= acc <= 0.37  # published: 32%; far above chance (10%), far below a CNN (94%)


def test_mnist1d_recipe_changes_the_data() -> None:
    a = generate(Recipe(num_samples=200, seed=1))
    b = generate(Recipe(num_samples=200, seed=2))
    assert a[0].shape == (160, 40) and not np.array_equal(a[0], b[0])


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_cifar10_without_torchvision_says_what_to_install() -> None:
    assert "cifar10" in dataset_names()
    with pytest.raises(DatasetError, match=r"needs torchvision: pip install 'l2l\[cifar\]'"):
        load_dataset("cifar10")
