"""Votes over extracted answers: plain counts (self-consistency) or SPRM-weighted."""

from __future__ import annotations

from typing import Sequence

from reflective_search.answers import answers_equal, extract_answer
from reflective_search.tree import Tree


def group_by_answer(tree: Tree, leaves: Sequence[int]) -> list[list[int]]:
    """Leaves grouped by equal extracted answer, groups in order of first appearance."""
    groups: list[tuple[str, list[int]]] = []
    for leaf in leaves:
        answer = extract_answer(tree.response_text(leaf))
        if answer is None:
            continue
        for representative, members in groups:
            if answers_equal(representative, answer):
                members.append(leaf)
                break
        else:
            groups.append((answer, [leaf]))
    return [members for _, members in groups]


def vote(tree: Tree, leaves: Sequence[int], weights: dict[int, float]) -> tuple[list[int], float] | None:
    """The winning group (most total weight; earliest group on ties) and its weight share."""
    groups = group_by_answer(tree, leaves)
    if not groups:
        return None
    totals = [sum(weights[leaf] for leaf in group) for group in groups]
    winner = max(range(len(groups)), key=lambda i: (totals[i], -i))
    return groups[winner], totals[winner] / (sum(weights[leaf] for leaf in leaves) or 1.0)
