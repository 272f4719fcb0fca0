"""Expanders by name: how expansion requests become batched model calls."""

from __future__ import annotations

from reflective_search.config import SearchConfig


def make_expander(name: str, model, config: SearchConfig | None = None):
    """The expander ``name`` ("shared" or "reference") over ``model``."""
    config = config or SearchConfig()
    if name == "reference":
        from reflective_search.expand.reference import ReferenceExpander

        return ReferenceExpander(model)
    from reflective_search.expand.shared import SharedKVExpander

    return SharedKVExpander(model, kv_budget_tokens=config.expander_options.kv_budget_tokens)


__all__ = ["make_expander"]
