"""Contract suites that every search space, controller and executor passes; plugin authors subclass them.

`l2l.testing.spaces.SpaceContract` and `l2l.testing.controllers.ControllerContract` are pytest classes: a
test file subclasses one and overrides its fixtures (the space class, the strategy name). Only tests import
this package; it imports pytest.
"""

import pytest

# failed checks inside the contracts report their values, as asserts in a test file do
pytest.register_assert_rewrite("l2l.testing.spaces", "l2l.testing.controllers")
