"""Reward-balanced search (REBASE; Wu et al. 2024, "Inference Scaling Laws").

At every depth a fixed total width of children is shared among the open nodes in
proportion to softmax(score / temperature) of their SPRM step scores. A finished path
leaves the pool and takes its share of the width with it, so the search ends when
``width`` paths have finished (or nothing is left open).
"""

from __future__ import annotations

import math
from typing import Sequence

from reflective_search.config import SearchConfig
from reflective_search.interface import ExpandCall
from reflective_search.search.common import Meter, SearchGenerator, after_round, grow, node_values, outcome, request
from reflective_search.search.vote import select_answer
from reflective_search.tree import ROOT, Tree


def rebase(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """Expand depth by depth with reward-balanced widths; pick among finished paths by ``config.select``.

    A node whose share rounds to zero children is pruned (and released). Identical
    siblings are merged, so a node may get fewer distinct children than its width. A step
    the model leaves unscored is weighed by its path's aggregated score (as MCTS values it).
    """
    tree, meter, options = Tree(prompt_ids, prompt_text), Meter(), config.rebase
    pool, finished, released = [ROOT], [], ()
    while pool and len(finished) < options.width:
        shares = balanced_widths(node_values(tree, pool, options.aggregate), options.width - len(finished),
                                 options.temperature)
        expanding = [(node, k) for node, k in zip(pool, shares) if k > 0]
        released += tuple(tree.token_path(node) for node, k in zip(pool, shares) if k == 0)
        expansions = yield ExpandCall(tuple(request(tree, node, k, seed) for node, k in expanding),
                                      config.sampling, released)
        meter.charge(expansions)
        children = [c for (node, _), e in zip(expanding, expansions)
                    for c in grow(tree, node, e, config.sampling.max_steps, merge=True)]
        finished += [c for c in children if tree.terminal[c]]
        pool, released = [c for c in children if not tree.terminal[c]], ()
        after_round(tree, config)
    chosen, score = select_answer(tree, finished, config, options.aggregate)
    return outcome(tree, chosen, score, meter)


def balanced_widths(scores: Sequence[float], total: int, temperature: float) -> list[int]:
    """Integer widths summing to ``total``, in proportion to softmax(scores / temperature).

    Rounded by largest remainder: every node gets the floor of its exact share, and the
    children left over go to the largest fractional parts (the earlier node on ties).
    """
    top = max(scores)
    weights = [math.exp((s - top) / temperature) for s in scores]
    exact = [total * w / sum(weights) for w in weights]
    widths = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(scores)), key=lambda i: (-(exact[i] - widths[i]), i))
    for i in by_remainder[: total - sum(widths)]:
        widths[i] += 1
    return widths
