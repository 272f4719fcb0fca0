"""Gumbel MCTS root selection with fixed Gumbel draws: considered set, halving, final choice."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from reflective_search.config import config_from_dict
from reflective_search.search.driver import run_searches
from reflective_search.search.gumbel import start_halving
from reflective_search.search.mcts import mcts
from reflective_search.tree import ROOT

from fakes import BanditExpander


class FirstStepScores(dict):
    """Every step below root child 3 scores 1.0, every other step 0.5."""

    def get(self, path, default=None):
        return 1.0 if path[0] == 3 else 0.5


def run(draws, scores, expansions=9, **gumbel):
    config = config_from_dict({
        "method": "mcts", "budget": {"tokens": None, "expansions": expansions}, "sampling": {"max_steps": 4},
        "mcts": {"children": 4, "batch_leaves": 1, "root": "gumbel", "gumbel": {"considered": 4, **gumbel}}})
    expander = BanditExpander(scores, {})
    search = functools.partial(mcts, draw_gumbel=lambda seed, count: np.array(draws[:count], float))
    [outcome] = run_searches([search([1, 2], "q", config, 0)], expander)
    return outcome, expander


def test_gumbel_top_k_considers_the_best_gumbel_plus_logit():
    outcome, expander = run([0.0, 2.0, 1.0, 0.5], {}, considered=2)
    # uniform priors: the ranking is the draws'; only children 1 and 2 are ever simulated
    assert {call[0][0] for call in expander.calls[1:]} == {1, 2}
    assert outcome.tree.path(outcome.chosen)[1] == outcome.tree.children(ROOT)[1]


def test_sequential_halving_rounds_and_final_choice():
    outcome, expander = run([0.0, 2.0, 1.0, 0.5], FirstStepScores())
    # Round 0 (budget fraction < 1/2, 4 simulations): every considered child once, best
    # g + logit + sigma(q) first: child 3 (.5 + 5.1 * 1.0) before 1 (2 + 5.1 * .5), 2, 0.
    # Halving at 5 of 9 expansions (sigma = (50 + 5) * .1): 3 scores 6.0, 1 4.75, 2 3.75, 0
    # 2.75; 3 and 1 survive and alternate (ties: the better score). Below the root, PUCT.
    assert expander.calls == [[()], [(3,)], [(1,)], [(2,)], [(0,)], [(3, 0)], [(1, 0)], [(3, 1)], [(1, 1)],
                              [(3, 0, 0)]]  # the last: completing the most visited path below child 3
    tree = outcome.tree
    assert tree.path(outcome.chosen)[1] == tree.children(ROOT)[3]  # final choice: child 3


def test_start_halving_scales_the_draws():
    from reflective_search.interface import ChildStep, StepEnd
    from reflective_search.tree import Tree

    tree = Tree([1], "p")
    steps = [ChildStep((i,), "s", 0.0, 0.5, StepEnd.DELIMITER) for i in (1, 2, 3)]
    tree.add_children(ROOT, steps, [0.5, 0.3, 0.2])
    # logits: log .5, log .3, log .2 minus log .5 = 0, -.51, -.92; draws x 0 leave the prior order
    assert start_halving(tree, np.array([0.0, 9.0, 5.0]), 0.0, 2).survivors == [1, 2]
    # at scale 1 the draws win: 9 - .51 and 5 - .92 beat 0
    state = start_halving(tree, np.array([0.0, 9.0, 5.0]), 1.0, 2)
    assert state.survivors == [2, 3] and state.rounds == 1


def test_when_the_considered_children_are_finished_the_next_best_root_child_spends_the_budget():
    # Children 1 and 2 are considered (the best two draws); every step below them ends its path.
    texts = {(first, i): f"end{first}{i}<eos>" for first in (1, 2) for i in range(4)}
    config = config_from_dict({
        "method": "mcts", "budget": {"tokens": None, "expansions": 6}, "sampling": {"max_steps": 4},
        "mcts": {"children": 4, "batch_leaves": 1, "root": "gumbel", "gumbel": {"considered": 2}}})
    expander = BanditExpander({}, texts)
    search = functools.partial(mcts, draw_gumbel=lambda seed, count: np.array([0.0, 2.0, 1.0, 0.5][:count]))
    [outcome] = run_searches([search([1, 2], "q", config, 0)], expander)
    # Once 1 and 2 are finished, child 3 (the next best draw) is readmitted and searched below
    # (0 stays out while 3 is open): the budget is spent, not idled on finished paths.
    assert expander.calls == [[()], [(1,)], [(2,)], [(3,)], [(3, 0)], [(3, 1)]]
    assert outcome.meter.expansions == 6
