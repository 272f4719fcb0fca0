"""The reflective model: policy + SPRM head on one backbone."""

from reflective_search.model.reflective import ModelSettings, ReflectiveModel

__all__ = ["ModelSettings", "ReflectiveModel"]
