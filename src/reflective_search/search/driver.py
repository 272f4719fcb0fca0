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
    """Drive every search to its end; each finished tree's KV is released at once, and on
    failure every unfinished tree's too (so a dead search cannot pin memory)."""
    outcomes: list[SearchOutcome | None] = [None] * len(searches)
    pending: dict[int, ExpandCall] = {}
    try:
        for index, search in enumerate(searches):
            _advance(index, search, None, pending, outcomes, expander)
        while pending:
            for sampling in list(dict.fromkeys(call.sampling for call in pending.values())):
                batch = [i for i, call in pending.items() if call.sampling == sampling]
                results = _expand_together([pending[i] for i in batch], expander)
                for index, expansions in zip(batch, results):
                    _advance(index, searches[index], expansions, pending, outcomes, expander)
    finally:
        unfinished = [call.requests[0].path[:1] for call in pending.values() if call.requests]
        if unfinished:
            expander.release(unfinished)
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


def _advance(index: int, search: SearchGenerator, sent, pending: dict, outcomes: list, expander: Expander) -> None:
    """Send a search its results; record its next call, or its outcome if it finished.

    If the search raises, its previous call stays pending so that the caller's cleanup
    releases its tree.
    """
    try:
        call = search.send(sent)
    except StopIteration as stop:
        pending.pop(index, None)
        outcomes[index] = stop.value
        expander.release([stop.value.tree.token_path(ROOT)])  # finished: its whole tree's KV may go
        return
    pending[index] = call
