"""What every search shares: requests, growing the tree, completing paths, compute meters.

Searches are generators: they yield an ``ExpandCall`` and receive the list of
``Expansion``s for it, so they never hold a model. The driver batches the calls of many
searches (many problems) into one expander call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generator, Sequence

from reflective_search.aggregate import AGGREGATES
from reflective_search.answers import extract_answer, is_final_step
from reflective_search.config import SamplingConfig, SearchConfig
from reflective_search.interface import ChildStep, ExpandCall, ExpandRequest, Expansion, StepEnd, derive_seed
from reflective_search.tree import Tree

SearchGenerator = Generator[ExpandCall, list[Expansion], "SearchOutcome"]


@dataclass(slots=True)
class Meter:
    """Compute a search has spent so far."""

    generated_tokens: int = 0  # tokens sampled (every child, merged duplicates included)
    forwarded_tokens: int = 0  # tokens run through the model for this search
    expansions: int = 0  # expansion requests issued
    unspent_tokens: int = 0  # token budget left when the search had nothing left to expand (MCTS)

    def charge(self, expansions: Sequence[Expansion]) -> None:
        self.expansions += len(expansions)
        for expansion in expansions:
            self.forwarded_tokens += expansion.forwarded_tokens
            self.generated_tokens += sum(len(child.tokens) for child in expansion.children)


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    tree: Tree  # everything the search grew
    chosen: int  # the leaf whose path is the answer
    answer: str | None  # the answer extracted from that path (None: none stated)
    score: float  # the chosen trajectory's score (method-specific; see each search)
    meter: Meter  # compute spent


def request(tree: Tree, node: int, k: int, seed: int) -> ExpandRequest:
    """Ask for ``k`` children of ``node``; the seed depends only on (search seed, node)."""
    return ExpandRequest(path=tree.token_path(node), k=k, seed=derive_seed(seed, node))


def grow(tree: Tree, node: int, expansion: Expansion, max_steps: int, merge: bool) -> range:
    """Add an expansion's children under ``node``, mark terminals, return the new ids."""
    steps = merge_identical(expansion.children) if merge else list(expansion.children)
    children = tree.add_children(node, steps, sibling_priors(steps))
    for child, step in zip(children, steps):
        tree.terminal[child] = is_terminal(step, int(tree.depth[child]), max_steps)
    return children


def merge_identical(steps: Sequence[ChildStep]) -> list[ChildStep]:
    """Siblings with the same tokens become one node (the first one sampled)."""
    return list({step.tokens: step for step in reversed(steps)}.values())[::-1]


def sibling_priors(steps: Sequence[ChildStep]) -> list[float]:
    """Softmax over siblings of each step's length-normalised log-probability."""
    if not steps:
        return []
    normalised = [step.logprob / max(len(step.tokens), 1) for step in steps]
    top = max(normalised)
    weights = [math.exp(v - top) for v in normalised]
    return [w / sum(weights) for w in weights]


def is_terminal(step: ChildStep, depth: int, max_steps: int) -> bool:
    """A step ends its trajectory at end-of-sequence, a full context, a stated answer, or the depth limit."""
    return step.end in (StepEnd.EOS, StepEnd.CONTEXT) or is_final_step(step.text) or depth >= max_steps


def complete(tree: Tree, nodes: Sequence[int], config: SearchConfig, seed: int, meter: Meter,
             sampling: SamplingConfig | None = None) -> Generator[ExpandCall, list[Expansion], None]:
    """Extend each node one sampled child at a time until every path is terminal."""
    sampling = sampling or config.sampling
    frontier = [n for n in nodes if not tree.terminal[n]]
    while frontier:
        expansions = yield ExpandCall(tuple(request(tree, n, 1, seed) for n in frontier), sampling)
        meter.charge(expansions)
        grown = [grow(tree, n, e, sampling.max_steps, merge=False) for n, e in zip(frontier, expansions)]
        frontier = [c for children in grown for c in children if not tree.terminal[c]]
        after_round(tree, config)


def after_round(tree: Tree, config: SearchConfig) -> None:
    """Bookkeeping at the end of every search round (snapshots for replay)."""
    if config.record_history:
        tree.snapshot()


def node_values(tree: Tree, nodes: Sequence[int], aggregate: str) -> list[float]:
    """The value MCTS backs up for each node: its SPRM step score, or, for a step the
    model's rule leaves unscored (a trailing answer, a step outside the think span, a
    length cut), the aggregated score of its path's scored steps."""
    return [float(tree.score[n]) if tree.scored[n] else trajectory_score(tree, n, aggregate) for n in nodes]


def trajectory_score(tree: Tree, node: int, aggregate: str) -> float:
    return AGGREGATES[aggregate](tree.step_scores(node))


def best_by_score(tree: Tree, leaves: Sequence[int], aggregate: str) -> tuple[int, float]:
    """The leaf with the highest aggregated score, preferring leaves that state an answer."""
    def key(leaf: int) -> tuple[bool, float, int]:
        has_answer = extract_answer(tree.response_text(leaf)) is not None
        return has_answer, trajectory_score(tree, leaf, aggregate), -leaf

    best = max(leaves, key=key)
    return best, trajectory_score(tree, best, aggregate)


def outcome(tree: Tree, chosen: int, score: float, meter: Meter) -> SearchOutcome:
    tree.chosen = chosen
    return SearchOutcome(tree, chosen, extract_answer(tree.response_text(chosen)), score, meter)
