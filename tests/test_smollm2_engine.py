"""The engine on a real model: SmolLM2-135M-Instruct, shared == reference token for token
at temperature 0 for greedy and beam (a BPE tokenizer, a chat template, GQA with 3 KV heads),
and continuous batching == lockstep rounds for Best-of-N, beam and MCTS at T=0 and T>0.
The ``smol`` fixture (conftest) skips without the package and fails under CI=true."""

from __future__ import annotations

import numpy as np
import pytest

from reflective_search import ReflectiveSearch

PROBLEM = "Numbers: 3 7 8. Target: 29."
SHORT = {"sampling": {"max_step_tokens": 12, "max_steps": 2, "temperature": 0.0}, "beam": {"width": 2, "expand": 2}}


@pytest.fixture(scope="module")
def smol_model(smol):
    """Its own load of the base from the session cache: the session's ``smol`` model maps a
    weights file that test_bases truncates to test the rebuild (reading it then is SIGBUS)."""
    from reflective_search.model import ReflectiveModel

    return ReflectiveModel.from_pretrained("smollm2-135m-instruct")


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_shared_equals_reference_on_smollm2_at_temperature_zero(smol_model, method):
    smol = smol_model
    shared = ReflectiveSearch(smol, {"method": method, "expander": "shared", **SHORT}).solve(PROBLEM)
    reference = ReflectiveSearch(smol, {"method": method, "expander": "reference", **SHORT}).solve(PROBLEM)
    tree = shared.tree
    assert [tree.token_path(n) for n in range(tree.size)] == [reference.tree.token_path(n) for n in range(reference.tree.size)]
    assert shared.text == reference.text and shared.stats.generated_tokens > 12
    np.testing.assert_allclose(tree.score[: tree.size], reference.tree.score[: reference.tree.size], atol=1e-4)
    assert shared.stats.forwarded_tokens < reference.stats.forwarded_tokens


SEARCHED = {"best_of_n": {"best_of_n": {"n": 3}}, "beam": {"beam": {"width": 2, "expand": 2}},
            "mcts": {"mcts": {"children": 2, "batch_leaves": 2}, "budget": {"tokens": 60}}}


@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("method", ["best_of_n", "beam", "mcts"])
def test_continuous_equals_rounds_on_smollm2(smol_model, method, temperature):
    problems = [PROBLEM, "Numbers: 2 5 9. Target: 23."]
    sampling = {"max_step_tokens": 12, "max_steps": 2, "temperature": temperature}
    solved = {scheduling: ReflectiveSearch(smol_model, {"method": method, "sampling": sampling, **SEARCHED[method],
                                                        "expander_options": {"scheduling": scheduling}}).solve_batch(problems)
              for scheduling in ("continuous", "rounds")}
    for a, b in zip(solved["continuous"], solved["rounds"], strict=True):
        assert [a.tree.token_path(n) for n in range(a.tree.size)] == [b.tree.token_path(n) for n in range(b.tree.size)]
        assert (a.answer, a.stats.generated_tokens, a.stats.forwarded_tokens) == \
            (b.answer, b.stats.generated_tokens, b.stats.forwarded_tokens)
        np.testing.assert_allclose(a.tree.score[: a.tree.size], b.tree.score[: b.tree.size], atol=1e-5)
