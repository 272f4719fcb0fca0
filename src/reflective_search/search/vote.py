"""The final pick among finished paths: best score, answer vote, or score-weighted vote.

Which answers count as the same vote is the task's call (``config.answer_key``): math
answers compare by value (math-verify), Countdown answers by their normalised expression
(two different expressions reaching the same number are different solutions).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Sequence

from reflective_search.answers import answers_equal, extract_answer
from reflective_search.config import SearchConfig
from reflective_search.search.common import best_by_score, trajectory_score
from reflective_search.tasks.arithmetic import answer_key as arithmetic_answer_key
from reflective_search.tasks.countdown import answer_key as countdown_answer_key
from reflective_search.tree import Tree


@dataclass(frozen=True, slots=True)
class AnswerRule:
    extract: Callable[[str], str | None]  # response text -> the answer it votes for (None: no vote)
    same: Callable[[str, str], bool]  # whether two extracted answers are one vote


ANSWER_RULES = {
    "math": AnswerRule(extract_answer, answers_equal),
    "countdown": AnswerRule(countdown_answer_key, operator.eq),
    "arithmetic": AnswerRule(arithmetic_answer_key, operator.eq),
}


def group_by_answer(tree: Tree, leaves: Sequence[int], rule: AnswerRule) -> list[list[int]]:
    """Leaves grouped by equal answer under ``rule``, groups in order of first appearance."""
    groups: list[tuple[str, list[int]]] = []
    for leaf in leaves:
        answer = rule.extract(tree.response_text(leaf))
        if answer is None:
            continue
        for representative, members in groups:
            if rule.same(representative, answer):
                members.append(leaf)
                break
        else:
            groups.append((answer, [leaf]))
    return [members for _, members in groups]


def vote(tree: Tree, leaves: Sequence[int], weights: dict[int, float],
         rule: AnswerRule) -> tuple[list[int], float] | None:
    """The winning group (most total weight; earliest group on ties) and its weight share."""
    groups = group_by_answer(tree, leaves, rule)
    if not groups:
        return None
    totals = [sum(weights[leaf] for leaf in group) for group in groups]
    winner = max(range(len(groups)), key=lambda i: (totals[i], -i))
    return groups[winner], totals[winner] / (sum(weights[leaf] for leaf in leaves) or 1.0)


# -- final selections: (tree, finished leaves, aggregate, rule) -> (chosen leaf, its path score) --


def select_best(tree: Tree, leaves: Sequence[int], aggregate: str, rule: AnswerRule) -> tuple[int, float]:
    """The highest aggregated path score (MetaStone-S1's pick)."""
    return best_by_score(tree, leaves, aggregate)


def select_vote(tree: Tree, leaves: Sequence[int], aggregate: str, rule: AnswerRule) -> tuple[int, float]:
    """The most frequent answer; its best-scored path is returned."""
    return _select_by_weights(tree, leaves, aggregate, rule, {leaf: 1.0 for leaf in leaves})


def select_weighted_vote(tree: Tree, leaves: Sequence[int], aggregate: str, rule: AnswerRule) -> tuple[int, float]:
    """The answer whose paths' aggregated scores sum highest (VGS's pick); its best path."""
    weights = {leaf: trajectory_score(tree, leaf, aggregate) for leaf in leaves}
    return _select_by_weights(tree, leaves, aggregate, rule, weights)


def _select_by_weights(tree: Tree, leaves: Sequence[int], aggregate: str, rule: AnswerRule,
                       weights: dict[int, float]) -> tuple[int, float]:
    """The best-scored member of the winning group; the best path when nobody answered."""
    won = vote(tree, leaves, weights, rule)
    if won is None:
        return best_by_score(tree, leaves, aggregate)
    return best_by_score(tree, won[0], aggregate)


SELECTIONS = {"best": select_best, "vote": select_vote, "weighted_vote": select_weighted_vote}


def select_answer(tree: Tree, leaves: Sequence[int], config: SearchConfig, aggregate: str) -> tuple[int, float]:
    """The configured final pick (``config.select``) among ``leaves``."""
    return SELECTIONS[config.select](tree, leaves, aggregate, ANSWER_RULES[config.answer_key])
