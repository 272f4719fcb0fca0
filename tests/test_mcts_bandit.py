"""MCTS against a bandit with known scores: exact selections, visits and values."""

from __future__ import annotations

import pytest

from reflective_search import ReflectiveSearch
from reflective_search.tree import ROOT

from fakes import BanditExpander, NullModel

# Root children A=(0,) B=(1,); grandchildren state answers, so depth 2 is terminal.
SCORES = {(0,): 0.6, (1,): 0.4, (0, 0): 0.3, (0, 1): 0.2, (1, 0): 0.9, (1, 1): 0.8}
TEXTS = {(0, 0): "Answer: 1.\n\n", (0, 1): "Answer: 2.\n\n", (1, 0): "Answer: 3.\n\n", (1, 1): "Answer: 1.\n\n"}


def run(select="best", **mcts_options):
    expander = BanditExpander(SCORES, TEXTS)
    config = {"method": "mcts", "budget": {"tokens": None, "expansions": 3}, "select": select,
              "mcts": {"children": 2, "c_puct": 1.0, "batch_leaves": 1, **mcts_options}}
    solution = ReflectiveSearch(NullModel(), config, expander=expander).solve("bandit")
    return solution, expander


def test_mcts_expands_root_then_puct_picks_a_then_b():
    # Iteration 2: A = 0.6 + sqrt(2)*0.5/2 = 0.954 beats B = 0.754. Iteration 3: root has
    # 4 visits, A = 1.1/3 + 2*0.5/4 = 0.617 loses to B = 0.4 + 2*0.5/2 = 0.9.
    _, expander = run()
    assert expander.calls == [[()], [(0,)], [(1,)]]


def test_mcts_backs_up_exact_visits_and_values():
    solution, _ = run()
    tree = solution.tree
    a, b = tree.children(ROOT)
    assert [int(tree.visits[n]) for n in (ROOT, a, b)] == [6, 3, 3]
    assert tree.value_sum[ROOT] == pytest.approx(0.6 + 0.4 + 0.3 + 0.2 + 0.9 + 0.8)
    assert tree.value_sum[a] == pytest.approx(0.6 + 0.3 + 0.2)
    assert tree.value_sum[b] == pytest.approx(0.4 + 0.9 + 0.8)
    assert tree.value_max[b] == pytest.approx(0.9)


def test_mcts_best_score_answer_is_highest_geometric_mean():
    solution, _ = run()
    # geometric means: AA .424, AB .346, BA sqrt(.4*.9)=.6, BB .566
    assert solution.answer == "3"
    assert solution.score == pytest.approx((0.4 * 0.9) ** 0.5)
    assert solution.tree.chosen == solution.tree.children(solution.tree.children(ROOT)[1])[0]


def test_mcts_weighted_vote_sums_path_scores_per_answer():
    solution, _ = run(select="weighted_vote")
    # answer "1" gathers AA .424 + BB .566 = .99 > "3" with .6; the best "1" path is BB
    assert solution.answer == "1"
    assert solution.score == pytest.approx((0.4 * 0.8) ** 0.5)


def test_virtual_loss_sends_second_descent_elsewhere():
    # After the root expansion, descent 1 takes A; with A's virtual visit, descent 2 sees
    # A = 0.3 + sqrt(3)*0.5/3 = 0.589 and B = 0.4 + sqrt(3)*0.5/2 = 0.833: both expand together.
    _, expander = run(batch_leaves=2)
    assert expander.calls[1] == [(0,), (1,)]


def test_mcts_stops_at_token_budget():
    expander = BanditExpander(SCORES, TEXTS)
    config = {"method": "mcts", "budget": {"tokens": 2}, "mcts": {"children": 2, "c_puct": 1.0, "batch_leaves": 1}}
    solution = ReflectiveSearch(NullModel(), config, expander=expander).solve("bandit")
    # The root expansion spends 2 tokens; the budget is then spent, so a completion phase
    # extends the most visited leaf (A, first on ties) until a terminal step.
    assert expander.calls == [[()], [(0,)]]
    assert solution.stats.generated_tokens == 3
    assert solution.answer == "1"


def test_identical_siblings_are_merged():
    expander = BanditExpander(SCORES, TEXTS)

    def same_tokens(requests, sampling):
        out = BanditExpander.expand(expander, requests, sampling)
        return [type(e)(tuple(type(c)((1,), c.text, c.logprob, c.score, c.end) for c in e.children), e.forwarded_tokens)
                for e in out]

    expander.expand = same_tokens
    config = {"method": "mcts", "budget": {"tokens": None, "expansions": 1}, "mcts": {"children": 2}}
    solution = ReflectiveSearch(NullModel(), config, expander=expander).solve("bandit")
    assert int(solution.tree.num_children[ROOT]) == 1


def test_max_backup_tracks_best_value():
    solution, _ = run(backup="max")
    tree = solution.tree
    assert tree.value_max[ROOT] == pytest.approx(0.9)


def test_resampling_asks_again_for_the_children_duplicates_left_missing():
    from reflective_search.interface import ChildStep, Expansion, StepEnd

    calls = []

    class Duplicating:
        """First call: every child is the same step; later calls: fresh steps."""

        def expand(self, requests, sampling):
            calls.append([r.k for r in requests])
            base = 10 * len(calls)
            return [Expansion(tuple(ChildStep((1 if len(calls) == 1 else base + i,), f"s{base + i}.\n\n", 0.0, 0.5,
                                              StepEnd.DELIMITER) for i in range(r.k)), r.k) for r in requests]

        def release(self, paths):
            pass

    config = {"method": "mcts", "budget": {"tokens": None, "expansions": 1},
              "mcts": {"children": 4, "batch_leaves": 1, "resample": 2}}
    solution = ReflectiveSearch(NullModel(), config, expander=Duplicating()).solve("peaked")
    # 4 identical samples leave 1 distinct child: ask for 3 more, which are distinct
    assert calls[:2] == [[4], [3]]
    assert int(solution.tree.num_children[ROOT]) == 4
    # every child is one token: 4 + 3 children, then one per completion call of the chosen path
    assert solution.stats.generated_tokens == sum(map(sum, calls)) == 7 + len(calls) - 2


class ExhaustingExpander:
    """Each request's k samples are one and the same finished answer (merged into one child),
    drawn by the request's seed: a peaked policy that leaves MCTS no open leaf at once."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # requests per call

    def expand(self, requests, sampling):
        from reflective_search.interface import ChildStep, Expansion, StepEnd

        self.calls.append(len(requests))
        return [Expansion(tuple(ChildStep((r.seed % 997 + 1,), f"Answer: {r.seed % 997}", -0.1, 0.5, StepEnd.EOS)
                                for _ in range(r.k)), forwarded_tokens=r.k) for r in requests]

    def release(self, paths) -> None:
        pass


def _exhausting_solve(widen: int):
    from fakes import NullModel

    from reflective_search import ReflectiveSearch

    config = {"method": "mcts", "budget": {"tokens": 20}, "mcts": {"children": 4, "batch_leaves": 1, "widen": widen}}
    expander = ExhaustingExpander()
    return ReflectiveSearch(NullModel(), config, expander=expander).solve("p"), expander


def test_mcts_widens_an_exhausted_tree_until_the_budget_is_spent():
    solution, expander = _exhausting_solve(widen=8)
    # 4 tokens per round: the first round and four widening rounds spend exactly the 20-token budget.
    assert (solution.stats.generated_tokens, solution.stats.unspent_tokens, expander.calls) == (20, 0, [1] * 5)
    assert solution.tree.num_children[0] == 5  # five distinct answers under the root
    assert solution.stats.duplicate_tokens == 15  # each round's 4 samples were one answer: 3 tokens merged away


def test_mcts_without_widening_reports_the_budget_it_left():
    solution, expander = _exhausting_solve(widen=0)
    assert (solution.stats.generated_tokens, solution.stats.unspent_tokens, expander.calls) == (4, 16, [1])
    assert solution.stats.duplicate_tokens == 3


def test_best_of_n_keeps_identical_samples_as_paths_so_none_of_its_tokens_are_duplicates():
    from fakes import NullModel

    from reflective_search import ReflectiveSearch

    config = {"method": "best_of_n", "best_of_n": {"n": 4}}
    solution = ReflectiveSearch(NullModel(), config, expander=ExhaustingExpander()).solve("p")
    stats = solution.stats
    assert (stats.generated_tokens, stats.duplicate_tokens, solution.tree.num_children[0]) == (4, 0, 4)


def test_root_children_widens_the_root_alone():
    # Three first steps at the root (A = 0.6 leads), one child per step below it.
    expander = BanditExpander({**SCORES, (2,): 0.5}, TEXTS)
    config = {"method": "mcts", "budget": {"tokens": None, "expansions": 2},
              "mcts": {"children": 1, "root_children": 3, "c_puct": 1.0, "batch_leaves": 1}}
    tree = ReflectiveSearch(NullModel(), config, expander=expander).solve("bandit").tree
    assert expander.calls == [[()], [(0,)]]
    assert [int(tree.num_children[n]) for n in (ROOT, *tree.children(ROOT))] == [3, 1, 0, 0]
