"""Continuous batching against lockstep rounds: the same trees for every method, whatever
the admission order; bounded KV; a failing search or Ctrl-C leaves the others and the
expander intact."""

from __future__ import annotations

import random

import numpy as np
import pytest

from reflective_search import ReflectiveSearch
from reflective_search.config import SamplingConfig, load_search_config
from reflective_search.expand.shared import SharedKVExpander
from reflective_search.interface import ExpandRequest
from reflective_search.search import SEARCHES, run_searches

SMALL = {"sampling": {"max_step_tokens": 8, "max_steps": 3}, "budget": {"tokens": 96},
         "best_of_n": {"n": 3}, "majority": {"n": 3}, "beam": {"width": 2, "expand": 2},
         "dvts": {"n": 4, "width": 2}, "rebase": {"width": 3}, "mcts": {"children": 2, "batch_leaves": 2}}
METHODS = ["greedy", "majority", "best_of_n", "beam", "dvts", "rebase", "mcts"]
PROBLEMS = ["Evaluate: 12+7*3", "Compute 5*6-4", "What is 9*9-1?", "Evaluate 3+4*5 and say why"]


def solve(model, method, problems=PROBLEMS, temperature=0.7, **options):
    config = {"method": method, **SMALL, "expander_options": options}
    config["sampling"] = {**SMALL["sampling"], "temperature": temperature}
    search = ReflectiveSearch(model, config)
    return search.solve_batch(problems), search.expander


def assert_same_solutions(got, expected):
    """Same tokens, answers and token counts; scores to 1e-5."""
    for a, b in zip(got, expected, strict=True):
        assert [a.tree.token_path(n) for n in range(a.tree.size)] == [b.tree.token_path(n) for n in range(b.tree.size)]
        assert (a.answer, a.text, a.tree.chosen) == (b.answer, b.text, b.tree.chosen)
        assert (a.stats.generated_tokens, a.stats.forwarded_tokens, a.stats.expansions) == \
            (b.stats.generated_tokens, b.stats.forwarded_tokens, b.stats.expansions)
        np.testing.assert_allclose(a.tree.score[: a.tree.size], b.tree.score[: b.tree.size], atol=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("temperature", [0.0, 0.7])
@pytest.mark.parametrize("method", METHODS)
def test_continuous_equals_rounds_for_every_method(tiny_llama, method, temperature):
    continuous, _ = solve(tiny_llama, method, temperature=temperature, scheduling="continuous")
    rounds, _ = solve(tiny_llama, method, temperature=temperature, scheduling="rounds")
    assert_same_solutions(continuous, rounds)


@pytest.mark.parametrize("method", ["best_of_n", "mcts"])
def test_continuous_equals_rounds_on_a_second_architecture(tiny_qwen, method):
    assert_same_solutions(solve(tiny_qwen, method, scheduling="continuous")[0],
                          solve(tiny_qwen, method, scheduling="rounds")[0])


@pytest.mark.parametrize("method", ["beam", "mcts"])
def test_admission_order_does_not_change_any_result(tiny_llama, method):
    shuffled = PROBLEMS[:]
    random.Random(3).shuffle(shuffled)
    assert shuffled != PROBLEMS
    in_order = dict(zip(PROBLEMS, solve(tiny_llama, method)[0]))
    reordered = dict(zip(shuffled, solve(tiny_llama, method, problems=shuffled)[0]))
    assert_same_solutions([reordered[p] for p in PROBLEMS], [in_order[p] for p in PROBLEMS])


def test_the_continuous_schedule_takes_fewer_forwards_than_rounds(tiny_llama):
    _, continuous = solve(tiny_llama, "mcts", scheduling="continuous")
    _, rounds = solve(tiny_llama, "mcts", scheduling="rounds")
    assert continuous.engine.forwards < rounds.engine.forwards


def test_rows_never_exceed_max_rows_and_results_do_not_change(tiny_llama):
    capped, expander = solve(tiny_llama, "best_of_n", max_rows=4)
    assert expander.engine.scheduler.peak_rows == 4  # 12 rows wanted, 4 at a time
    assert_same_solutions(capped, solve(tiny_llama, "best_of_n", scheduling="rounds")[0])


def test_kv_budget_holds_under_continuous_admission(tiny_llama):
    bounded, expander = solve(tiny_llama, "mcts", kv_budget_tokens=64)
    unbounded, free = solve(tiny_llama, "mcts")
    assert expander.arena.peak_slots <= 64 < free.arena.peak_slots
    for a, b in zip(bounded, unbounded):
        assert a.tree.texts == b.tree.texts and a.answer == b.answer


def test_one_huge_path_among_many_small_ones_waits_its_turn_without_deadlock(tiny_llama):
    sampling = SamplingConfig(temperature=0.7, max_step_tokens=10)
    expander = SharedKVExpander(tiny_llama, kv_budget_tokens=120)
    prompt = tuple(tiny_llama.encode_prompt("Evaluate: 12+7*3"))
    huge = ExpandRequest((prompt, (5,) * (120 - len(prompt) - 11)), 1, seed=0)  # exactly fills the budget
    small = [ExpandRequest((tuple(tiny_llama.encode_prompt(p)),), 2, seed=i) for i, p in enumerate(PROBLEMS)]
    tickets = [expander.submit(small[:2], sampling), expander.submit([huge], sampling),
               expander.submit(small[2:], sampling), expander.submit([huge, small[0]], sampling)]
    results, forwards = {}, 0
    while len(results) < len(tickets):
        expander.step()
        forwards += 1
        assert forwards < 500, "the scheduler stopped making progress"
        results.update({t: got for t in tickets if t not in results and (got := expander.take(t)) is not None})
    assert expander.arena.peak_slots <= 120
    alone = SharedKVExpander(tiny_llama)
    assert [c.tokens for c in results[tickets[1]][0].children] == \
        [c.tokens for c in alone.expand([huge], sampling)[0].children]
    assert [len(results[t]) for t in tickets] == [2, 1, 2, 2]


def searches(model, method, problems):
    config = load_search_config({"method": method, **SMALL})
    return [SEARCHES[method](model.encode_prompt(p), model.format_prompt(p), config, i) for i, p in enumerate(problems)]


def test_a_search_that_raises_releases_its_kv_and_the_others_finish(tiny_llama):
    expander = SharedKVExpander(tiny_llama)
    failing_root = (tuple(tiny_llama.encode_prompt(PROBLEMS[0])),)
    seen_after = []

    def failing(search):
        yield search.send(None)  # its first call is expanded, then it breaks
        raise RuntimeError("the search broke")

    def finishing(search):
        outcome = yield from search
        seen_after.append((outcome, expander.arena._lookup(failing_root)))
        return outcome

    first, *rest = searches(tiny_llama, "mcts", PROBLEMS)
    with pytest.raises(RuntimeError, match="the search broke"):
        run_searches([failing(first)] + [finishing(s) for s in rest], expander)
    assert len(seen_after) == 3 and all(outcome.tree.size > 1 for outcome, _ in seen_after)
    assert [lookup for _, lookup in seen_after] == [None] * 3  # its tree was gone while they ran
    assert not expander.arena._segments  # every tree is released at the end


def test_ctrl_c_mid_run_leaves_a_working_expander(tiny_llama):
    search = ReflectiveSearch(tiny_llama, {"method": "mcts", **SMALL})
    forwards = [0]

    def interrupt(module, args, kwargs):
        forwards[0] += 1
        if forwards[0] == 6:
            raise KeyboardInterrupt

    handle = tiny_llama.decoder_layers()[1].register_forward_pre_hook(interrupt, with_kwargs=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            search.solve_batch(PROBLEMS)
    finally:
        handle.remove()
    assert search.expander.engine.idle and not search.expander.engine.finished
    again = search.solve_batch(PROBLEMS)
    fresh = ReflectiveSearch(tiny_llama, {"method": "mcts", **SMALL}).solve_batch(PROBLEMS)
    for a, b in zip(again, fresh):
        assert a.tree.texts == b.tree.texts and a.answer == b.answer
        np.testing.assert_allclose(a.tree.score[: a.tree.size], b.tree.score[: b.tree.size], atol=1e-5)


def test_scheduling_is_checked_by_the_config():
    from reflective_search.errors import ConfigError

    with pytest.raises(ConfigError, match="expander_options.scheduling: 'lazy' is not allowed"):
        load_search_config({"expander_options": {"scheduling": "lazy"}})
