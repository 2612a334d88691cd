"""l2l: learning to learn. Searches for neural architectures, optimizer update rules and device placements.

The subpackages live in the repository's top-level folders and install under this one name:
`l2l.nas`, `l2l.optsearch`, `l2l.controllers`, `l2l.search_spaces`, `l2l.runs`, and `l2l.testing` (the
contract suites that plugins, controllers and executors pass).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("l2l")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
