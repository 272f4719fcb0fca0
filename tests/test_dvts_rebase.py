"""DVTS and REBASE against bandits with known scores: exact expansions, widths and picks."""

from __future__ import annotations

import math
import random

import pytest

from reflective_search import ReflectiveSearch
from reflective_search.search.rebase import balanced_widths
from reflective_search.tree import ROOT

from fakes import BanditExpander, NullModel


def solve(config, scores, texts):
    expander = BanditExpander(scores, texts)
    return ReflectiveSearch(NullModel(), config, expander=expander).solve("q"), expander


def widths(tree, node_paths):
    """Children each node (given as a child-index path) got."""
    def node(path):
        n = ROOT
        for index in path:
            n = tree.children(n)[index]
        return n
    return [int(tree.num_children[node(p)]) for p in node_paths]


# Two subtrees A=(0,) and B=(1,), each extended by 2 children per step, the best one kept.
DVTS_SCORES = {(0, 0): 0.9, (0, 1): 0.3, (1, 0): 0.2, (1, 1): 0.6,
               (0, 0, 0): 0.8, (0, 0, 1): 0.7, (1, 1, 0): 0.4, (1, 1, 1): 0.95}
DVTS_TEXTS = {(0, 0, 0): "Answer: 1.\n\n", (0, 0, 1): "Answer: 2.\n\n", (1, 1, 1): "Answer: 3.\n\n"}


def test_dvts_extends_each_subtree_by_its_best_child():
    solution, expander = solve({"method": "dvts", "dvts": {"n": 4, "width": 2}}, DVTS_SCORES, DVTS_TEXTS)
    # root: n / width = 2 first steps; then A keeps (0,0) (.9 > .3), B keeps (1,1) (.6 > .2)
    assert expander.calls == [[()], [(0,), (1,)], [(0, 0), (1, 1)]]
    assert widths(solution.tree, [(), (0,), (1,), (0, 0), (1, 1)]) == [2, 2, 2, 2, 2]


def test_dvts_picks_best_finished_path_over_all_subtrees():
    solution, expander = solve({"method": "dvts", "dvts": {"n": 4, "width": 2}}, DVTS_SCORES, DVTS_TEXTS)
    # finished: A's last expansion gives (0,0,0) and (0,0,1), both terminal; B's best (1,1,1)
    # is terminal, its sibling (1,1,0) is not and is dropped. Geometric means over (.5, ...):
    # (0,0,0) .711, (0,0,1) .680, (1,1,1) .658.
    assert solution.answer == "1"
    assert solution.score == pytest.approx((0.5 * 0.9 * 0.8) ** (1 / 3))
    # the pruned siblings (0,1) and (1,0) are released before step three; then the tree
    assert [len(p) for p in expander.released] == [3, 3, 1]  # root + two steps each


def test_dvts_subtrees_stay_disjoint_below_their_first_step():
    config = {"method": "dvts", "dvts": {"n": 6, "width": 2}, "sampling": {"max_steps": 4}}
    scores = {(a, b): 0.1 * (a + b + 1) for a in range(3) for b in range(2)}
    solution, expander = solve(config, scores, {})
    for call in expander.calls[1:]:  # every step: one node per subtree, each in its own subtree
        assert sorted(path[0] for path in call) == [0, 1, 2]
    tree = solution.tree
    for head in tree.children(ROOT):  # each subtree is one chain: a single expanded node per depth
        expanded = [n for n in range(tree.size) if not tree.is_leaf(n) and head in tree.path(n)]
        assert sorted(int(tree.depth[n]) for n in expanded) == [1, 2, 3]


# REBASE, W = 4, T = 0.25. Root children (0,) .9, (1,) .5, (2,) .1 and (3,), which answers.
REBASE_SCORES = {(0,): 0.9, (1,): 0.5, (2,): 0.1, (3,): 0.5,
                 (0, 0): 0.8, (0, 1): 0.7, (1, 0): 0.6, (0, 1, 0): 0.9}
REBASE_TEXTS = {(3,): "Answer: 3.\n\n", (0, 0): "Answer: 1.\n\n", (1, 0): "Answer: 2.\n\n",
                (0, 1, 0): "Answer: 4.\n\n"}


def test_rebase_widths_follow_the_softmax_and_sum_to_the_open_width():
    config = {"method": "rebase", "rebase": {"width": 4, "temperature": 0.25}}
    solution, expander = solve(config, REBASE_SCORES, REBASE_TEXTS)
    # depth 1: 3 open (one finished); softmax(s / .25) of .9 .5 .1 = .805 .163 .033, times 3 =
    # 2.41 .49 .10: floors 2 0 0, the one left goes to the largest remainder (.49): 2 1 0.
    # depth 2: (0,0) and (1,0) finish; the open (0,1) gets the 4 - 3 = 1 left.
    assert expander.calls == [[()], [(0,), (1,)], [(0, 1)]]
    assert widths(solution.tree, [(), (0,), (1,), (2,), (0, 1)]) == [4, 2, 1, 0, 1]


def test_rebase_stops_when_width_paths_finished_and_picks_the_best():
    config = {"method": "rebase", "rebase": {"width": 4, "temperature": 0.25}}
    solution, expander = solve(config, REBASE_SCORES, REBASE_TEXTS)
    assert len(solution.tree.terminal_leaves()) == 4
    # geometric means: (3,) .5, (0,0) .849, (1,0) .548, (0,1,0) .828
    assert solution.answer == "1" and solution.score == pytest.approx(math.sqrt(0.9 * 0.8))
    assert [len(p) for p in expander.released] == [2, 1]  # the pruned (2,), then the tree


def test_balanced_widths_round_by_largest_remainder():
    assert balanced_widths([0.9, 0.5, 0.1], 3, 0.25) == [2, 1, 0]
    assert balanced_widths([0.5, 0.5, 0.5], 4, 1.0) == [2, 1, 1]  # ties: the earlier node
    assert balanced_widths([0.3], 5, 0.1) == [5]


def test_balanced_widths_sum_to_total_and_stay_within_one_of_the_softmax_share():
    rng = random.Random(0)
    for _ in range(200):
        scores = [rng.random() for _ in range(rng.randint(1, 8))]
        total, temperature = rng.randint(1, 16), rng.choice([0.05, 0.3, 1.0, 5.0])
        got = balanced_widths(scores, total, temperature)
        weights = [math.exp(s / temperature) for s in scores]
        exact = [total * w / sum(weights) for w in weights]
        assert sum(got) == total
        assert all(abs(g - x) < 1 for g, x in zip(got, exact))
