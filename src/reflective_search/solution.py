"""What a solve returns."""

from __future__ import annotations

from dataclasses import dataclass

from reflective_search.tree import Tree


@dataclass(frozen=True, slots=True)
class Stats:
    generated_tokens: int  # tokens sampled by the policy (all candidates, not just the answer)
    forwarded_tokens: int  # tokens run through the model, prompt and recomputation included
    expansions: int  # expansion requests (node, k children) issued
    seconds: float  # wall time; in solve_batch, the batch's time split evenly over its problems
    cpu_seconds: float = 0.0  # this process's CPU time, split the same way (holds on a shared machine)
    unspent_tokens: int = 0  # MCTS: token budget left when the tree had nothing left to expand
    # Of generated_tokens, those of sampled steps identical to a sibling already in the tree,
    # merged away (MCTS, beam, DVTS, REBASE): compute that bought no new node.
    duplicate_tokens: int = 0


@dataclass(frozen=True, slots=True)
class Solution:
    problem: str  # the problem as given
    method: str  # the search that produced it
    answer: str | None  # the extracted final answer (None: the chosen path states none)
    text: str  # the chosen trajectory's response text
    score: float  # the chosen trajectory's score (aggregated SPRM score; vote share for majority)
    stats: Stats  # the compute it cost
    tree: Tree  # every node the search grew; tree.chosen is the answer's leaf
