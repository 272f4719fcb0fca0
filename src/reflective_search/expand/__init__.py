"""Expanders by name: how expansion requests become batched model calls."""

from __future__ import annotations

from reflective_search.config import SearchConfig


def _reference(model, config: SearchConfig):
    from reflective_search.expand.reference import ReferenceExpander

    return ReferenceExpander(model)


def _shared(model, config: SearchConfig):
    from reflective_search.expand.shared import SharedKVExpander

    options = config.expander_options
    return SharedKVExpander(model, kv_budget_tokens=options.kv_budget_tokens, max_rows=options.max_rows,
                            scheduling=options.scheduling)


EXPANDERS = {"reference": _reference, "shared": _shared}  # the names config.expander accepts


def make_expander(name: str, model, config: SearchConfig | None = None):
    """The expander ``name`` over ``model`` (imports torch only when built)."""
    return EXPANDERS[name](model, config or SearchConfig())


__all__ = ["EXPANDERS", "make_expander"]
