"""Search spaces: the plugin API every space implements, the registry, and the built-in spaces."""

from l2l.search_spaces.api import (
    ChoiceValue,
    Context,
    Decision,
    Result,
    SearchSpace,
    SpaceError,
    Spec,
    decisions_change,
    decisions_record,
    described,
    sequence_length,
    token_sizes,
)
from l2l.search_spaces.registry import (
    ENTRY_POINT_GROUP,
    PluginError,
    available_spaces,
    load_space,
    load_space_class,
    validate_space,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ChoiceValue",
    "Context",
    "Decision",
    "PluginError",
    "Result",
    "SearchSpace",
    "SpaceError",
    "Spec",
    "available_spaces",
    "decisions_change",
    "decisions_record",
    "described",
    "load_space",
    "load_space_class",
    "sequence_length",
    "token_sizes",
    "validate_space",
]
