"""The public API end to end on tiny real models: every method, determinism, batching."""

from __future__ import annotations

import numpy as np
import pytest

from reflective_search import ReflectiveSearch, SearchConfig, Solution
from reflective_search.errors import ProblemError
from reflective_search.interface import StepEnd
from model_hooks import force_token

SMALL = {"sampling": {"max_step_tokens": 8, "max_steps": 3}, "budget": {"tokens": 96},
         "best_of_n": {"n": 3}, "majority": {"n": 3}, "beam": {"width": 2, "expand": 2},
         "dvts": {"n": 4, "width": 2}, "rebase": {"width": 3}, "mcts": {"children": 2, "batch_leaves": 2}}
METHODS = ["greedy", "majority", "best_of_n", "beam", "dvts", "rebase", "mcts"]


def config(method, **extra):
    return {"method": method, **SMALL, **extra}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_a_complete_solution(tiny_llama, method):
    solution = ReflectiveSearch(tiny_llama, config(method)).solve("Evaluate: 12+7*3")
    assert isinstance(solution, Solution) and solution.method == method
    assert solution.text == solution.tree.response_text(solution.tree.chosen)
    assert solution.tree.terminal[solution.tree.chosen]
    assert 0.0 <= solution.score <= 1.0
    stats = solution.stats
    assert stats.generated_tokens > 0 and stats.forwarded_tokens > 0 and stats.expansions > 0 and stats.seconds > 0
    tree_tokens = int(solution.tree.token_len[1 : solution.tree.size].sum())
    # beam, DVTS, REBASE and MCTS merge identical siblings, whose tokens were still generated
    assert stats.generated_tokens == tree_tokens if method in ("greedy", "majority", "best_of_n") else stats.generated_tokens >= tree_tokens


def test_gumbel_root_mcts_returns_a_complete_solution(tiny_llama):
    options = {"mcts": {"children": 2, "batch_leaves": 2, "root": "gumbel", "gumbel": {"considered": 2}}}
    solution = ReflectiveSearch(tiny_llama, config("mcts", **options)).solve("Evaluate: 12+7*3")
    assert solution.tree.terminal[solution.tree.chosen] and solution.stats.generated_tokens > 0


@pytest.mark.parametrize("method", ["best_of_n", "mcts"])
def test_same_seed_and_config_give_the_same_tree(tiny_llama, method):
    first = ReflectiveSearch(tiny_llama, config(method, seed=3)).solve("Evaluate: 12+7*3")
    second = ReflectiveSearch(tiny_llama, config(method, seed=3)).solve("Evaluate: 12+7*3")
    other = ReflectiveSearch(tiny_llama, config(method, seed=4)).solve("Evaluate: 12+7*3")
    assert first.tree.texts == second.tree.texts and first.answer == second.answer
    np.testing.assert_array_equal(first.tree.visits, second.tree.visits)
    assert first.tree.texts != other.tree.texts


@pytest.mark.parametrize("method", ["best_of_n", "mcts", "beam"])
def test_shared_and_reference_expanders_grow_the_same_tree(tiny_qwen, method):
    shared = ReflectiveSearch(tiny_qwen, config(method, expander="shared")).solve("Compute 5*6-4")
    reference = ReflectiveSearch(tiny_qwen, config(method, expander="reference")).solve("Compute 5*6-4")
    assert shared.tree.texts == reference.tree.texts
    np.testing.assert_allclose(shared.tree.score[: shared.tree.size], reference.tree.score[: reference.tree.size], atol=1e-4)
    assert shared.stats.forwarded_tokens < reference.stats.forwarded_tokens


def test_solve_batch_equals_solving_one_by_one(tiny_llama):
    problems = ["Evaluate: 12+7*3", "Compute 5*6-4", "Evaluate: 12+7*3"]
    search = ReflectiveSearch(tiny_llama, config("mcts"))
    together = search.solve_batch(problems)
    alone = [ReflectiveSearch(tiny_llama, config("mcts")).solve(p) for p in problems]
    assert [s.tree.texts for s in together] == [s.tree.texts for s in alone]
    assert together[0].tree.texts == together[2].tree.texts  # same problem, same tree


def test_config_defaults_to_mcts(tiny_llama):
    assert ReflectiveSearch(tiny_llama).config == SearchConfig()


def test_config_may_be_a_yaml_path(tiny_llama, tmp_path):
    path = tmp_path / "search.yaml"
    path.write_text("method: beam\nbeam: {width: 3}\n")
    assert ReflectiveSearch(tiny_llama, path).config.beam.width == 3


def test_empty_problem_is_refused_before_any_work(tiny_llama):
    search = ReflectiveSearch(tiny_llama, config("greedy"))
    with pytest.raises(ProblemError, match="the problem is empty"):
        search.solve_batch(["fine", " "])


def test_two_threads_can_solve_at_once(tiny_llama):
    import threading

    problems = ["Evaluate: 12+7*3", "Compute 5*6-4"]
    expected = [ReflectiveSearch(tiny_llama, config("best_of_n", expander="reference")).solve(p) for p in problems]
    results = [None, None]

    def solve(i):
        results[i] = ReflectiveSearch(tiny_llama, config("best_of_n", expander="reference")).solve(problems[i])

    threads = [threading.Thread(target=solve, args=(i,)) for i in range(2)]
    for _ in range(3):
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert [r.tree.texts for r in results] == [e.tree.texts for e in expected]
        assert [list(r.tree.score[: r.tree.size]) for r in results] == [list(e.tree.score[: e.tree.size]) for e in expected]
        threads = [threading.Thread(target=solve, args=(i,)) for i in range(2)]


@pytest.mark.parametrize("method", METHODS)
def test_every_method_stops_a_path_at_the_models_context(char_model, method):
    """Steps that never end by themselves stop where the context is full; the path is final."""
    seven = char_model.tokenizer("7", add_special_tokens=False)["input_ids"][0]
    handle = force_token(char_model, seven)
    try:
        settings = {**config(method), "sampling": {"max_step_tokens": 10, "max_steps": 50}, "budget": {"tokens": 400}}
        solution = ReflectiveSearch(char_model, settings).solve("Evaluate 12+7*3")
    finally:
        handle.remove()
    tree, prompt = solution.tree, char_model.encode_prompt("Evaluate 12+7*3")
    path = tree.path(int(tree.chosen))[1:]
    assert len(prompt) + sum(int(tree.token_len[n]) for n in path) == char_model.max_context
    assert tree.step_end(path[-1]) is StepEnd.CONTEXT and tree.terminal[path[-1]]
    assert solution.text == "7" * (char_model.max_context - len(prompt))
