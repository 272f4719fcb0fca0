"""The model used when none is named: the shipped one, or a tiny random one until it ships."""

from __future__ import annotations

import sys

from reflective_search.shipped import shipped_model_names

DEFAULT_MODEL_NAME = "countdown-smol"


def load_default_model(name_or_path: str | None = None):
    from reflective_search.model.reflective import ReflectiveModel

    if name_or_path:
        return ReflectiveModel.from_pretrained(name_or_path)
    if DEFAULT_MODEL_NAME in shipped_model_names():
        return ReflectiveModel.from_pretrained(DEFAULT_MODEL_NAME)
    from reflective_search.model.tiny import build_tiny_model

    print("note: no shipped model in this install; using a tiny random model", file=sys.stderr)
    return build_tiny_model()
