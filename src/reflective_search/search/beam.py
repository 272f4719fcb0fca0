"""Step-level beam search ranked by aggregated SPRM scores."""

from __future__ import annotations

from typing import Sequence

from reflective_search.config import SearchConfig
from reflective_search.interface import ExpandCall
from reflective_search.search.common import (
    Meter, SearchGenerator, after_round, grow, outcome, request, trajectory_score,
)
from reflective_search.search.vote import select_answer
from reflective_search.tree import ROOT, Tree


def beam(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """Keep the ``width`` best paths; expand each by ``expand`` children per step.

    All new children are ranked together by the aggregate of their path's step scores;
    the top ``width`` survive: finished ones are set aside, the rest expand next. Pruned
    paths are released so the expander may drop their KV first. The answer is picked
    among the finished paths by ``config.select``.
    """
    tree, meter = Tree(prompt_ids, prompt_text), Meter()
    width, fan_out, aggregate = config.beam.width, config.beam.expand, config.beam.aggregate
    beams, finished, released = [ROOT], [], ()
    while beams:
        call = ExpandCall(tuple(request(tree, b, fan_out, seed) for b in beams), config.sampling, released)
        expansions = yield call
        meter.charge(expansions)
        children = [c for b, e in zip(beams, expansions) for c in grow(tree, b, e, config.sampling.max_steps, merge=True)]
        ranked = sorted(children, key=lambda c: (-trajectory_score(tree, c, aggregate), c))
        kept, pruned = ranked[:width], ranked[width:]
        finished += [c for c in kept if tree.terminal[c]]
        beams = [c for c in kept if not tree.terminal[c]]
        released = tuple(tree.token_path(c) for c in pruned)
        after_round(tree, config)
    chosen, score = select_answer(tree, finished, config, aggregate)
    return outcome(tree, chosen, score, meter)
