"""Best-of-N, majority, beam and greedy against fakes with known scores."""

from __future__ import annotations

import pytest

from reflective_search import ReflectiveSearch
from reflective_search.tree import ROOT

from fakes import BanditExpander, NullModel


def solve(config, scores, texts, priors=None):
    expander = BanditExpander(scores, texts, priors)
    return ReflectiveSearch(NullModel(), config, expander=expander).solve("q"), expander


def test_best_of_n_picks_highest_geometric_mean():
    # three one-step trajectories stating answers, then a second step for the first two
    scores = {(0,): 0.9, (1,): 0.5, (2,): 0.7}
    texts = {(0,): "Answer: 4.\n\n", (1,): "Answer: 5.\n\n", (2,): "Answer: 6.\n\n"}
    solution, expander = solve({"method": "best_of_n", "best_of_n": {"n": 3}}, scores, texts)
    assert expander.calls == [[()]]
    assert (solution.answer, solution.score) == ("4", pytest.approx(0.9))


def test_best_of_n_min_aggregate_prefers_steady_paths():
    scores = {(0,): 0.95, (0, 0): 0.1, (1,): 0.6, (1, 0): 0.6}
    texts = {(0, 0): "Answer: 1.\n\n", (1, 0): "Answer: 2.\n\n"}
    solution, expander = solve({"method": "best_of_n", "best_of_n": {"n": 2, "aggregate": "min"}}, scores, texts)
    # first round asks the root for 2; then both chains are extended together, one child each
    assert expander.calls == [[()], [(0,), (1,)]]
    assert (solution.answer, solution.score) == ("2", pytest.approx(0.6))


@pytest.mark.parametrize("aggregate, answer, score", [("penultimate", "1", 0.95), ("geometric", "2", 0.6)])
def test_best_of_n_penultimate_aggregate_reads_the_step_before_the_answer(aggregate, answer, score):
    # path 0 computes well and restates badly; path 1 is middling throughout
    scores = {(0,): 0.95, (0, 0): 0.1, (1,): 0.6, (1, 0): 0.6}
    texts = {(0, 0): "Answer: 1.\n\n", (1, 0): "Answer: 2.\n\n"}
    solution, _ = solve({"method": "best_of_n", "best_of_n": {"n": 2, "aggregate": aggregate}}, scores, texts)
    assert (solution.answer, solution.score) == (answer, pytest.approx(score))


def test_penultimate_of_one_step_is_that_step():
    from reflective_search.aggregate import penultimate

    assert (penultimate([0.3]), penultimate([]), penultimate([0.2, 0.7, 0.4])) == (0.3, 0.0, 0.7)


def test_the_config_accepts_exactly_the_aggregates_that_exist():
    from reflective_search import aggregate
    from reflective_search.config import config_from_dict
    from reflective_search.errors import ConfigError

    for name in aggregate.AGGREGATES:
        assert config_from_dict({"best_of_n": {"aggregate": name}}).best_of_n.aggregate == name
    with pytest.raises(ConfigError) as refused:
        config_from_dict({"best_of_n": {"aggregate": "median"}})
    assert str(refused.value) == ("best_of_n.aggregate: 'median' is not allowed; expected "
                                  + " | ".join(aggregate.AGGREGATES))


def test_effort_sets_n():
    solution, expander = solve({"method": "best_of_n", "best_of_n": {"effort": "low"}}, {}, {(0,): "Answer: 1.\n\n", (1,): "Answer: 1.\n\n"})
    assert int(solution.tree.num_children[ROOT]) == 2


def test_majority_votes_by_count_not_score():
    scores = {(0,): 0.99, (1,): 0.1, (2,): 0.2}
    texts = {(0,): "Answer: 7.\n\n", (1,): "Answer: 3.\n\n", (2,): "Answer: \\boxed{3}.\n\n"}
    solution, _ = solve({"method": "majority", "majority": {"n": 3}}, scores, texts)
    assert solution.answer == "3"
    assert solution.score == pytest.approx(2 / 3)


def test_greedy_samples_at_temperature_zero_one_chain():
    calls = []
    expander = BanditExpander({}, {(0,): "Answer: 1.\n\n"})
    original = expander.expand

    def spy(requests, sampling):
        calls.append(sampling.temperature)
        return original(requests, sampling)

    expander.expand = spy
    solution = ReflectiveSearch(NullModel(), {"method": "greedy"}, expander=expander).solve("q")
    assert calls == [0.0] and solution.answer == "1"


def test_beam_keeps_width_best_and_releases_pruned():
    scores = {(0,): 0.9, (1,): 0.2, (2,): 0.8, (0, 0): 0.9, (0, 1): 0.1, (0, 2): 0.3,
              (2, 0): 0.5, (2, 1): 0.95, (2, 2): 0.2}
    texts = {(a, b): f"Answer: {a}{b}.\n\n" for a in range(3) for b in range(3)}
    config = {"method": "beam", "beam": {"width": 2, "expand": 3}}
    solution, expander = solve(config, scores, texts)
    assert expander.calls == [[()], [(0,), (2,)]]  # child 1 (0.2) pruned after step one
    assert solution.answer == "00"  # sqrt(.9*.9)=.9 beats sqrt(.8*.95)=.872
    assert [len(p) for p in expander.released] == [2, 1]  # the pruned first-step node, then the tree


def test_max_steps_makes_paths_terminal():
    solution, expander = solve({"method": "best_of_n", "best_of_n": {"n": 1}, "sampling": {"max_steps": 3}}, {}, {})
    assert len(expander.calls) == 3
    assert solution.answer is None and int(solution.tree.depth[solution.tree.chosen]) == 3


def test_solve_batch_shares_expand_calls_across_problems():
    expander = BanditExpander({}, {(0,): "Answer: 1.\n\n"})
    search = ReflectiveSearch(NullModel(), {"method": "best_of_n", "best_of_n": {"n": 1}}, expander=expander)
    solutions = search.solve_batch(["first", "second", "third"])
    assert len(expander.calls) == 1 and len(expander.calls[0]) == 3
    assert [s.answer for s in solutions] == ["1", "1", "1"]


def test_a_failing_search_releases_every_unfinished_tree():
    expander = BanditExpander({}, {})
    original = expander.expand

    def fail_on_second_call(requests, sampling):
        if expander.calls:
            raise RuntimeError("model broke")
        return original(requests, sampling)

    expander.expand = fail_on_second_call
    search = ReflectiveSearch(NullModel(), {"method": "best_of_n", "best_of_n": {"n": 1}}, expander=expander)
    with pytest.raises(RuntimeError, match="model broke"):
        search.solve_batch(["first", "second"])
    assert sorted(expander.released) == [(tuple(map(ord, p)),) for p in ("first", "second")]
