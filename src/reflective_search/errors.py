"""The errors users see: one line each, naming what is wrong and what to do."""


class ReflectiveSearchError(ValueError):
    """Base class: bad input or a broken file, explained in one line."""


class ConfigError(ReflectiveSearchError):
    """A configuration key or value is wrong."""


class ModelError(ReflectiveSearchError):
    """A model, tokenizer, head or checkpoint cannot be used as given."""


class ProblemError(ReflectiveSearchError):
    """A problem cannot be posed to the model (empty, not text, too long)."""
