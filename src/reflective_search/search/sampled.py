"""Searches over independent samples: greedy, Best-of-N and majority vote.

Each draws whole trajectories from the root (no merging: two identical samples are two
votes) and differs only in how one trajectory is chosen.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from reflective_search.config import SearchConfig
from reflective_search.interface import ExpandCall
from reflective_search.search.common import (
    Meter, SearchGenerator, after_round, complete, grow, outcome, request, trajectory_score,
)
from reflective_search.search.vote import ANSWER_RULES, select_answer, vote
from reflective_search.tree import ROOT, Tree


def sample_trajectories(tree: Tree, n: int, config: SearchConfig, seed: int, meter: Meter,
                        temperature: float | None = None):
    """Draw ``n`` trajectories below the root; returns their leaves."""
    sampling = config.sampling
    if temperature is not None:
        sampling = dataclasses.replace(sampling, temperature=temperature)
    expansions = yield ExpandCall((request(tree, ROOT, n, seed),), sampling)
    meter.charge(expansions)
    first = grow(tree, ROOT, expansions[0], sampling.max_steps, merge=False)
    after_round(tree, config)
    yield from complete(tree, list(first), config, seed, meter, sampling)
    return tree.leaves()


def greedy(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """One chain of thought at temperature 0. Score: the geometric mean of its steps."""
    tree, meter = Tree(prompt_ids, prompt_text), Meter()
    leaves = yield from sample_trajectories(tree, 1, config, seed, meter, temperature=0.0)
    return outcome(tree, leaves[0], trajectory_score(tree, leaves[0], "geometric"), meter)


def best_of_n(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """N samples, one picked by ``config.select`` (MetaStone-S1: the best aggregated SPRM score)."""
    tree, meter = Tree(prompt_ids, prompt_text), Meter()
    leaves = yield from sample_trajectories(tree, config.best_of_n.samples, config, seed, meter)
    chosen, score = select_answer(tree, leaves, config, config.best_of_n.aggregate)
    return outcome(tree, chosen, score, meter)


def majority(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int) -> SearchGenerator:
    """Self-consistency: the most frequent answer among N samples. Score: its vote share.

    Answers are the same vote when the task's rule (``config.answer_key``) says so.
    """
    tree, meter = Tree(prompt_ids, prompt_text), Meter()
    leaves = yield from sample_trajectories(tree, config.majority.n, config, seed, meter)
    won = vote(tree, leaves, {leaf: 1.0 for leaf in leaves}, ANSWER_RULES[config.answer_key])
    if won is None:  # nobody stated an answer: return the first sample
        return outcome(tree, leaves[0], 0.0, meter)
    group, share = won
    return outcome(tree, group[0], share, meter)
