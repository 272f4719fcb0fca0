"""reflective_search: test-time search over a model's own reasoning steps, guided by a
self-supervised process reward head on the same backbone (MetaStone-S1's SPRM)."""

from reflective_search.config import SearchConfig
from reflective_search.errors import ConfigError, ModelError, ProblemError, ReflectiveSearchError
from reflective_search.facade import ReflectiveSearch
from reflective_search.model import ModelSettings, ReflectiveModel
from reflective_search.solution import Solution, Stats
from reflective_search.tree import Tree

__all__ = [
    "ConfigError",
    "ModelError",
    "ModelSettings",
    "ProblemError",
    "ReflectiveModel",
    "ReflectiveSearch",
    "ReflectiveSearchError",
    "SearchConfig",
    "Solution",
    "Stats",
    "Tree",
]
__version__ = "0.2.0"
