"""One exception family, so callers can catch everything this project raises.

Every message follows "where, what, how to fix", e.g.
``fixtures/qa/sw.jsonl:214: field 'distractors' has 2 entries; an item needs at least 3``.
"""


class IllusionError(Exception):
    """Base class: a problem the user can fix; the message says where and how."""


class DataError(IllusionError):
    """A dataset file or row is malformed; the message names file, line, field and the fix."""


class ModelError(IllusionError):
    """A model spec cannot be resolved or loaded; the message names the spec and the fix."""


class RecipeError(IllusionError):
    """A pruning recipe is malformed; the message lists the valid forms."""


class ConfigError(IllusionError):
    """An option value is invalid; the message names the option and the accepted values."""


class CacheError(IllusionError):
    """A cache or snapshot file is corrupted; the message names the file and how to rebuild it."""
