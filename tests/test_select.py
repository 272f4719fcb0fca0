"""Final selection (best | vote | weighted_vote) and the task's answer key, on fakes."""

from __future__ import annotations

import pytest

from reflective_search import ReflectiveSearch
from reflective_search.experiments.spec import spec_from_dict
from reflective_search.tasks.countdown import answer_key

from fakes import BanditExpander, NullModel


def solve(config, scores, texts):
    return ReflectiveSearch(NullModel(), config, expander=BanditExpander(scores, texts)).solve("q")


# One confident "5" against two lukewarm "7"s.
SCORES = {(0,): 0.9, (1,): 0.6, (2,): 0.5}
TEXTS = {(0,): "Answer: 5.\n\n", (1,): "Answer: 7.\n\n", (2,): "Answer: 7.\n\n"}


@pytest.mark.parametrize("method,options", [("best_of_n", {"best_of_n": {"n": 3}}),
                                            ("beam", {"beam": {"width": 3, "expand": 3}}),
                                            ("rebase", {"rebase": {"width": 3}}),
                                            ("dvts", {"dvts": {"n": 3, "width": 1}})])
def test_best_and_weighted_vote_disagree(method, options):
    best = solve({"method": method, **options}, SCORES, TEXTS)
    weighted = solve({"method": method, "select": "weighted_vote", **options}, SCORES, TEXTS)
    assert (best.answer, best.score) == ("5", pytest.approx(0.9))
    # "7" gathers .6 + .5 = 1.1 > .9; its best-scored path is returned with that path's score
    assert (weighted.answer, weighted.score) == ("7", pytest.approx(0.6))


def test_plain_vote_counts_paths_where_weighted_vote_sums_scores():
    scores = {(0,): 0.9, (1,): 0.8, (2,): 0.3, (3,): 0.2, (4,): 0.1}
    texts = {(i,): f"Answer: {5 if i < 2 else 7}.\n\n" for i in range(5)}
    config = {"method": "best_of_n", "best_of_n": {"n": 5}}
    assert solve({**config, "select": "vote"}, scores, texts).answer == "7"  # 3 paths against 2
    assert solve({**config, "select": "weighted_vote"}, scores, texts).answer == "5"  # 1.7 against .6


def test_vote_without_any_stated_answer_falls_back_to_the_best_path():
    solution = solve({"method": "best_of_n", "best_of_n": {"n": 2}, "select": "vote", "sampling": {"max_steps": 1}},
                     {(0,): 0.2, (1,): 0.7}, {})
    assert solution.tree.chosen == 2 and solution.score == pytest.approx(0.7)


# Values: 3, 3, 3, 7, 7. Expressions: three different ones for 3, one (spaced two ways) for 7.
COUNTDOWN_TEXTS = {(0,): "Answer: 2*2-1.\n\n", (1,): "Answer: 2+2-1.\n\n", (2,): "Answer: 1+1+1.\n\n",
                   (3,): "Answer: 5 + 2.\n\n", (4,): "Answer: 5+2.\n\n"}


def test_majority_on_math_key_counts_equal_values_as_one_vote():
    solution = solve({"method": "majority", "majority": {"n": 5}}, {}, COUNTDOWN_TEXTS)
    assert (solution.answer, solution.score) == ("2*2-1", pytest.approx(3 / 5))


def test_majority_on_countdown_key_counts_expressions_not_values():
    solution = solve({"method": "majority", "majority": {"n": 5}, "answer_key": "countdown"}, {}, COUNTDOWN_TEXTS)
    assert (solution.answer, solution.score) == ("5 + 2", pytest.approx(2 / 5))


def test_countdown_answer_key_is_the_expression_without_whitespace():
    assert answer_key("7*3=21, left 8 21.\n\nAnswer: 7 * 3 + 8.\n\n") == "7*3+8"
    assert answer_key("no answer here") is None


def test_an_experiment_votes_by_its_task_unless_the_search_says_otherwise():
    spec = spec_from_dict({"problems": {"generator": "countdown", "count": 2}})
    assert spec.search.answer_key == "countdown"
    spec = spec_from_dict({"problems": {"generator": "countdown", "count": 2}, "search": {"answer_key": "math"}})
    assert spec.search.answer_key == "math"
