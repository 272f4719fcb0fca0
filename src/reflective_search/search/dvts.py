"""Diverse verifier tree search (DVTS; Beeching et al., search-and-learn, 2024).

The budget of ``n`` trajectories is split into ``n / width`` independent subtrees, one per
distinct first step. Each subtree is a step-level beam in search-and-learn's sense: its
one path is extended by ``width`` sampled children per step and the best-scored child
(aggregated SPRM path score) continues; the others are released. Subtrees never share a
node below their first step, which is the point: one strong early step cannot pull the
whole budget into its subtree, as it can in a plain beam.
"""

from __future__ import annotations

from typing import Sequence

from reflective_search.config import SearchConfig
from reflective_search.interface import ExpandCall, Expansion
from reflective_search.search.common import (
    Meter, SearchGenerator, after_round, grow, outcome, request, trajectory_score,
)
from reflective_search.search.vote import select_answer
from reflective_search.tree import ROOT, Tree


def dvts(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """Grow the subtrees in lockstep (one model call per step for all of them).

    A subtree ends when its best child is terminal; the terminal children of that last
    expansion are its finished paths (search-and-learn keeps the last step's completions).
    The answer is picked among every subtree's finished paths by ``config.select``.
    Identical first steps are merged, so a peaked policy may grow fewer subtrees.
    """
    tree, meter, options = Tree(prompt_ids, prompt_text), Meter(), config.dvts
    expansions = yield ExpandCall((request(tree, ROOT, options.subtrees, seed),), config.sampling)
    meter.charge(expansions)
    heads = list(grow(tree, ROOT, expansions[0], config.sampling.max_steps, merge=True))
    after_round(tree, config)
    finished = [head for head in heads if tree.terminal[head]]
    active, released = [head for head in heads if not tree.terminal[head]], ()
    while active:
        call = ExpandCall(tuple(request(tree, node, options.width, seed) for node in active), config.sampling, released)
        expansions = yield call
        meter.charge(expansions)
        active, done, pruned = step_subtrees(tree, active, expansions, config)
        finished += done
        released = tuple(tree.token_path(node) for node in pruned)
        after_round(tree, config)
    chosen, score = select_answer(tree, finished, config, options.aggregate)
    return outcome(tree, chosen, score, meter)


def step_subtrees(tree: Tree, active: Sequence[int], expansions: Sequence[Expansion],
                  config: SearchConfig) -> tuple[list[int], list[int], list[int]]:
    """Keep each subtree's best child. Returns (still open, finished, pruned) node ids."""
    still_open, finished, pruned = [], [], []
    for node, expansion in zip(active, expansions):
        children = list(grow(tree, node, expansion, config.sampling.max_steps, merge=True))
        if not children:
            continue
        best = max(children, key=lambda c: (trajectory_score(tree, c, config.dvts.aggregate), -c))
        if tree.terminal[best]:
            finished += [c for c in children if tree.terminal[c]]
        else:
            still_open.append(best)
            pruned += [c for c in children if c != best]
    return still_open, finished, pruned
