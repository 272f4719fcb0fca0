"""Runs many search generators against one expander, batching their requests.

Every round, each unfinished search has exactly one pending ``ExpandCall``; calls that
share a sampling config are concatenated into a single ``expander.expand`` call and the
results are split back. This is how ``solve_batch`` expands many problems per model call.
"""

from __future__ import annotations

from typing import Sequence

from reflective_search.interface import ExpandCall, Expander, Expansion
from reflective_search.search.common import SearchGenerator, SearchOutcome
from reflective_search.tree import ROOT


def run_searches(searches: Sequence[SearchGenerator], expander: Expander) -> list[SearchOutcome]:
    outcomes: list[SearchOutcome | None] = [None] * len(searches)
    pending: dict[int, ExpandCall] = {}
    for index, search in enumerate(searches):
        _advance(index, search, None, pending, outcomes)
    while pending:
        for sampling in list(dict.fromkeys(call.sampling for call in pending.values())):
            batch = [i for i, call in pending.items() if call.sampling == sampling]
            results = _expand_together([pending[i] for i in batch], expander)
            for index, expansions in zip(batch, results):
                _advance(index, searches[index], expansions, pending, outcomes)
                if outcomes[index] is not None:  # finished: its whole tree's KV may go
                    expander.release([outcomes[index].tree.token_path(ROOT)])
    return outcomes  # type: ignore[return-value]


def _expand_together(calls: list[ExpandCall], expander: Expander) -> list[list[Expansion]]:
    released = [path for call in calls for path in call.release]
    if released:
        expander.release(released)
    flat = [req for call in calls for req in call.requests]
    expansions = expander.expand(flat, calls[0].sampling)
    split, start = [], 0
    for call in calls:
        split.append(expansions[start : start + len(call.requests)])
        start += len(call.requests)
    return split


def _advance(index: int, search: SearchGenerator, sent, pending: dict, outcomes: list) -> None:
    """Send a search its results; record its next call, or its outcome if it finished."""
    pending.pop(index, None)
    try:
        pending[index] = search.send(sent)
    except StopIteration as stop:
        outcomes[index] = stop.value
