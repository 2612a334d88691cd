"""Contract suites that every search space, controller and executor passes; plugin authors subclass them.

`l2l.testing.spaces.SpaceContract` and `l2l.testing.controllers.ControllerContract` are pytest classes: a
test file subclasses one and overrides its fixtures (the space class, the strategy name). Only tests import
this package; it imports pytest.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# failed checks inside the contracts report their values, as asserts in a test file do
pytest.register_assert_rewrite(
    "l2l.testing.spaces", "l2l.testing.controllers", "l2l.testing.executors", "l2l.testing.sharing"
)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread, as the executors run children and the driver runs controllers (and fast on a
    busy machine); the previous count comes back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
