"""Runs many search generators against one expander, batching their requests.

Each unfinished search has exactly one pending ``ExpandCall`` at a time. Two schedules:

* continuous (an expander with ``submit``/``step``/``take``, ``scheduling: continuous``):
  an event loop. Every call is submitted to the expander's engine; each ``step`` is one
  forward over every call in flight, and a search whose call finished gets its expansions
  at once and submits its next call, which joins the next forward. Nobody waits for the
  slowest search.
* rounds (any other expander, or ``scheduling: rounds``): lockstep. Each round concatenates
  every pending call that shares a sampling config into one ``expander.expand`` call and
  splits the results back. It is the oracle continuous must equal: every child samples
  from its own seed, so both give the same trees.

A search that raises is dropped (its tree's KV released) while the others run to their
end; then its error propagates. An error of the expander itself (a failed forward, Ctrl-C)
propagates at once, after every unfinished tree's KV is released.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from reflective_search.interface import ExpandCall, Expander, Expansion, TokenPath
from reflective_search.search.common import SearchGenerator, SearchOutcome
from reflective_search.tree import ROOT


@dataclass(slots=True)
class Run:
    """The searches of one ``run_searches`` call and where each stands."""

    searches: Sequence[SearchGenerator]
    expander: Expander
    outcomes: list[SearchOutcome | None]  # by search, once finished
    pending: dict[int, ExpandCall] = field(default_factory=dict)  # search -> its call in flight
    errors: list[BaseException] = field(default_factory=list)  # searches' own errors, in order

    def advance(self, index: int, sent: list[Expansion] | None) -> ExpandCall | None:
        """Send search ``index`` its results; its next call (recorded as pending), or None
        when it finished (its tree's KV released) or raised (dropped, error kept)."""
        previous = self.pending.pop(index, None)
        try:
            call = self.searches[index].send(sent)
        except StopIteration as stop:
            self.outcomes[index] = stop.value
            self.expander.release([stop.value.tree.token_path(ROOT)])  # finished: its whole tree's KV may go
            return None
        except Exception as error:  # noqa: BLE001 - the search's own failure: the others go on
            self.fail(error, previous)
            return None
        if call.release:
            self.expander.release(list(call.release))
        self.pending[index] = call
        return call

    def fail(self, error: Exception, call: ExpandCall | None) -> None:
        """Keep a search's error and release its tree. Mutates."""
        self.errors.append(error)
        if call is not None and call.requests:
            self.expander.release([_root(call)])

    def release_unfinished(self) -> None:
        roots = [_root(call) for call in self.pending.values() if call.requests]
        self.pending.clear()
        if roots:
            self.expander.release(roots)


def run_searches(searches: Sequence[SearchGenerator], expander: Expander) -> list[SearchOutcome]:
    """Drive every search to its end, continuously where the expander can (see the module)."""
    run = Run(searches, expander, [None] * len(searches))
    try:
        if getattr(expander, "scheduling", "rounds") == "continuous" and hasattr(expander, "submit"):
            _continuous(run)
        else:
            _rounds(run)
    finally:
        run.release_unfinished()
    if run.errors:
        raise run.errors[0]
    return run.outcomes  # type: ignore[return-value]


def _continuous(run: Run) -> None:
    """The event loop: submit, step, hand back each finished call, submit the next."""
    expander = run.expander
    tickets: dict[int, int] = {}  # ticket -> search
    try:
        for index in range(len(run.searches)):
            _submit(run, index, None, tickets)
        while tickets:
            expander.step()
            for ticket in list(tickets):
                expansions = expander.take(ticket)
                if expansions is not None:
                    _submit(run, tickets.pop(ticket), expansions, tickets)
    finally:
        for ticket in tickets:  # an expander error: forget the calls still in flight
            expander.cancel(ticket)


def _submit(run: Run, index: int, sent: list[Expansion] | None, tickets: dict[int, int]) -> None:
    """Advance a search and submit its next call; a call the expander refuses (a path that
    fills the context) fails that search only."""
    call = run.advance(index, sent)
    if call is None:
        return
    try:
        tickets[run.expander.submit(call.requests, call.sampling)] = index
    except Exception as error:  # noqa: BLE001 - refused up front: nothing of it was queued
        run.pending.pop(index)
        run.fail(error, call)


def _rounds(run: Run) -> None:
    """Lockstep: every round, one ``expand`` per sampling config over all pending calls."""
    for index in range(len(run.searches)):
        run.advance(index, None)
    while run.pending:
        for sampling in list(dict.fromkeys(call.sampling for call in run.pending.values())):
            batch = [i for i, call in run.pending.items() if call.sampling == sampling]
            calls = [run.pending[i] for i in batch]
            flat = [request for call in calls for request in call.requests]
            expansions, start = run.expander.expand(flat, sampling), 0
            for index, call in zip(batch, calls):
                run.advance(index, expansions[start : start + len(call.requests)])
                start += len(call.requests)


def _root(call: ExpandCall) -> TokenPath:
    """The bare prompt path of the tree a call expands (releasing it frees the whole tree)."""
    return call.requests[0].path[:1]
