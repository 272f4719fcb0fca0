"""The shared-KV expander against the reference expander and a full recompute."""

from __future__ import annotations

import pytest
import torch

from reflective_search.config import SamplingConfig
from reflective_search.errors import ConfigError
from reflective_search.expand.reference import ReferenceExpander
from reflective_search.expand.shared import SharedKVExpander
from reflective_search.interface import ExpandRequest, StepEnd
from model_hooks import force_token

GREEDY = SamplingConfig(temperature=0.0, max_step_tokens=10)
SAMPLED = SamplingConfig(temperature=1.0, top_p=0.9, max_step_tokens=10)


def uneven_requests(model):
    """Paths of different depths and lengths, two sharing a prompt, one a second problem."""
    first = tuple(model.encode_prompt("Evaluate: 12+7*3"))
    second = tuple(model.encode_prompt("Compute 5*6-4 and say why"))
    step_a = tuple(model.tokenizer("7*3=21.\n\n", add_special_tokens=False)["input_ids"])
    step_b = tuple(model.tokenizer("First, 12+21=33, left 8 21.\n\n", add_special_tokens=False)["input_ids"])
    return [
        ExpandRequest((first,), 3, seed=11),
        ExpandRequest((first, step_a), 2, seed=12),
        ExpandRequest((first, step_a, step_b), 1, seed=13),
        ExpandRequest((second,), 2, seed=14),
    ]


def full_recompute(model, request, step):
    """Oracle: log p of the step's tokens from one plain pass over the text."""
    prefix = [t for segment in request.path for t in segment]
    ids = torch.tensor([prefix + list(step.tokens)])
    with torch.no_grad():
        out = model.backbone(ids)
    logp = torch.log_softmax(out.logits[0].float(), dim=-1)
    total = sum(float(logp[len(prefix) + i - 1, t]) for i, t in enumerate(step.tokens))
    return total


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen"])
def test_shared_matches_reference_and_full_recompute_at_temperature_zero(fixture, request):
    model = request.getfixturevalue(fixture)
    requests = uneven_requests(model)
    reference = ReferenceExpander(model).expand(requests, GREEDY)
    shared = SharedKVExpander(model).expand(requests, GREEDY)
    for req, ref, sh in zip(requests, reference, shared):
        for a, b in zip(ref.children, sh.children, strict=True):
            assert a.tokens == b.tokens and a.end == b.end and a.text == b.text
            assert b.logprob == pytest.approx(a.logprob, abs=1e-4)
            assert b.score == pytest.approx(a.score, abs=1e-4)
            assert b.logprob == pytest.approx(full_recompute(model, req, b), abs=1e-4)


def test_second_round_reuses_kv_and_still_matches(tiny_llama):
    shared, reference = SharedKVExpander(tiny_llama), ReferenceExpander(tiny_llama)
    first = uneven_requests(tiny_llama)[:1]
    children = shared.expand(first, GREEDY)[0].children
    deeper = [ExpandRequest(first[0].path + (c.tokens,), 2, seed=20 + i) for i, c in enumerate(children)]
    before = shared.computed_tokens
    again = shared.expand(deeper, GREEDY)
    # only each child's unfed last token (identical children share it) plus the new tokens ran
    distinct_children = len({c.tokens for c in children})
    new_tokens = sum(len(c.tokens) - 1 for e in again for c in e.children)
    assert shared.computed_tokens - before == distinct_children + new_tokens
    for a, b in zip(reference.expand(deeper, GREEDY), again):
        assert [c.tokens for c in a.children] == [c.tokens for c in b.children]


def test_sampling_is_reproducible_and_independent_of_batch(tiny_llama):
    requests = uneven_requests(tiny_llama)
    together = SharedKVExpander(tiny_llama).expand(requests, SAMPLED)
    alone = [SharedKVExpander(tiny_llama).expand([r], SAMPLED)[0] for r in reversed(requests)][::-1]
    reference = ReferenceExpander(tiny_llama).expand(requests, SAMPLED)
    tokens = lambda expansions: [[c.tokens for c in e.children] for e in expansions]
    assert tokens(together) == tokens(alone) == tokens(reference)
    assert len({c.tokens for e in together for c in e.children}) > 1  # it did sample


def test_budget_is_never_exceeded_and_results_do_not_change(tiny_llama):
    requests = uneven_requests(tiny_llama)
    unbounded = SharedKVExpander(tiny_llama)
    bounded = SharedKVExpander(tiny_llama, kv_budget_tokens=80)
    for round_seed in range(3):
        batch = [ExpandRequest(r.path, r.k, r.seed + round_seed) for r in requests]
        expected = unbounded.expand(batch, SAMPLED)
        got = bounded.expand(batch, SAMPLED)
        assert [[c.tokens for c in e.children] for e in got] == [[c.tokens for c in e.children] for e in expected]
    assert bounded.arena.peak_slots <= 80 < unbounded.arena.peak_slots
    assert bounded.computed_tokens > unbounded.computed_tokens  # evicted paths were recomputed


def test_a_finished_tree_is_forgotten_under_a_budget(tiny_llama):
    expander, unbounded = SharedKVExpander(tiny_llama, kv_budget_tokens=60), SharedKVExpander(tiny_llama)
    first, second = uneven_requests(tiny_llama)[0], uneven_requests(tiny_llama)[3]
    for request in (first, second):
        expander.expand([request], GREEDY)
        unbounded.expand([request], GREEDY)
    expander.release([first.path])  # the first search is over
    roots = {s.tokens for s in expander.arena._segments.values() if s.parent is None}
    assert roots == {second.path[0]}
    again = ExpandRequest(second.path, 3, 5)
    assert [c.tokens for c in expander.expand([again], GREEDY)[0].children] == \
        [c.tokens for c in unbounded.expand([again], GREEDY)[0].children]


def test_released_node_is_evicted_before_older_ones(tiny_llama):
    expander = SharedKVExpander(tiny_llama, kv_budget_tokens=200)
    first, second = uneven_requests(tiny_llama)[0], uneven_requests(tiny_llama)[3]
    children = expander.expand([first], GREEDY)[0].children
    expander.expand([second], GREEDY)  # the first tree is now the least recently used
    released_path = first.path + (children[1].tokens,)
    expander.release([released_path])
    arena = expander.arena
    released = arena._lookup(released_path)
    owned = sum(len(s.slots) for s in arena._segments.values())
    pinned = arena.intern_path(second.path)
    # ask for exactly the room the released node's KV frees: nothing else may go
    arena.make_room([pinned], extra=arena.budget - owned + len(released.slots) - len(pinned))
    assert released.slots == []
    assert all(s.slots for s in arena._segments.values() if s is not released and s.tokens != children[1].tokens)


def test_budget_too_small_for_one_path_is_refused(tiny_llama):
    expander = SharedKVExpander(tiny_llama, kv_budget_tokens=12)
    with pytest.raises(ConfigError, match="kv_budget_tokens=12 cannot hold one path"):
        expander.expand(uneven_requests(tiny_llama)[2:3], GREEDY)


def test_computed_tokens_never_exceed_unique_tree_tokens(tiny_llama):
    expander = SharedKVExpander(tiny_llama)
    requests = uneven_requests(tiny_llama)
    expansions = expander.expand(requests, SAMPLED)
    unique = {segment for r in requests for i in range(len(r.path)) for segment in [r.path[: i + 1]]}
    unique_tokens = sum(len(path[-1]) for path in unique)
    unique_tokens += sum(len(c.tokens) for e in expansions for c in set(e.children))
    assert expander.computed_tokens <= unique_tokens


def test_scoring_off_gives_same_tokens_and_zero_scores(tiny_llama):
    requests = uneven_requests(tiny_llama)
    scored = SharedKVExpander(tiny_llama).expand(requests, GREEDY)
    unscored = SharedKVExpander(tiny_llama, score=False).expand(requests, GREEDY)
    assert [[c.tokens for c in e.children] for e in scored] == [[c.tokens for c in e.children] for e in unscored]
    assert {c.score for e in unscored for c in e.children} == {0.0}


def test_eos_ends_a_step_and_is_excluded_from_text(tiny_llama):
    eos = next(iter(tiny_llama.eos_token_ids))
    handle = force_token(tiny_llama, eos)  # EOS becomes the argmax at every position
    try:
        step = SharedKVExpander(tiny_llama).expand(uneven_requests(tiny_llama)[:1], GREEDY)[0].children[0]
    finally:
        handle.remove()
    assert step.tokens == (eos,) and step.text == "" and step.end is StepEnd.EOS


def test_each_tree_gets_its_own_lane_and_a_finished_tree_frees_it(tiny_llama):
    expander = SharedKVExpander(tiny_llama)
    requests = uneven_requests(tiny_llama)
    expander.expand(requests, GREEDY)
    assert len(expander.arena.lane_roots) == 2  # two prompts, two lanes
    expander.release([requests[0].path[:1]])  # the first problem's search is over
    third = ExpandRequest((tuple(tiny_llama.encode_prompt("A third problem")),), 2, seed=9)
    expander.expand([third], GREEDY)
    assert len(expander.arena.lane_roots) == 2  # its lane was reused


def test_compaction_keeps_results_exact(tiny_llama):
    compacted, fresh = SharedKVExpander(tiny_llama), SharedKVExpander(tiny_llama)
    requests = uneven_requests(tiny_llama)
    first = compacted.expand(requests, GREEDY)
    fresh.expand(requests, GREEDY)
    before = compacted.arena.length
    compacted.arena._compact()  # drops padding and duplicate slots, renumbers every segment
    assert compacted.arena.length < before
    deeper = [ExpandRequest(r.path + (e.children[0].tokens,), 2, seed=30) for r, e in zip(requests, first)]
    a, b = compacted.expand(deeper, GREEDY), fresh.expand(deeper, GREEDY)
    for x, y in zip(a, b):
        for cx, cy in zip(x.children, y.children):
            assert cx.tokens == cy.tokens and cx.score == pytest.approx(cy.score, abs=1e-5)


def test_shared_expander_refuses_attention_without_tree_masks(tiny_llama):
    tiny_llama.backbone.config._attn_implementation = "flash_attention_2"
    try:
        with pytest.raises(ConfigError, match="needs attention that takes 4D tree masks.*set expander: reference"):
            SharedKVExpander(tiny_llama)
    finally:
        tiny_llama.backbone.config._attn_implementation = "sdpa"


def test_eager_attention_gives_the_same_children(tiny_qwen):
    requests = uneven_requests(tiny_qwen)
    sdpa = SharedKVExpander(tiny_qwen).expand(requests, GREEDY)
    tiny_qwen.backbone.config._attn_implementation = "eager"
    try:
        eager = SharedKVExpander(tiny_qwen).expand(requests, GREEDY)
    finally:
        tiny_qwen.backbone.config._attn_implementation = "sdpa"
    for x, y in zip(sdpa, eager):
        assert [c.tokens for c in x.children] == [c.tokens for c in y.children]
        assert [c.logprob for c in x.children] == pytest.approx([c.logprob for c in y.children], abs=1e-4)


def test_a_forward_failing_part_way_leaves_a_working_expander(tiny_llama):
    expander, fresh = SharedKVExpander(tiny_llama), SharedKVExpander(tiny_llama)
    requests = uneven_requests(tiny_llama)
    expander.expand(requests[:1], GREEDY)
    before = expander.computed_tokens

    def fail_once(module, args, kwargs):
        handle.remove()
        raise KeyboardInterrupt  # after layer 0 appended its KV, before layer 1 did

    handle = tiny_llama.decoder_layers()[1].register_forward_pre_hook(fail_once, with_kwargs=True)
    with pytest.raises(KeyboardInterrupt):
        expander.expand(requests[1:], GREEDY)
    got, expected = expander.expand(requests, GREEDY), fresh.expand(requests, GREEDY)
    assert [[c.tokens for c in e.children] for e in got] == [[c.tokens for c in e.children] for e in expected]
    assert expander.computed_tokens == before + fresh.computed_tokens  # the reset keeps the counters


@pytest.mark.parametrize("expander", [ReferenceExpander, SharedKVExpander])
def test_a_step_that_fills_the_context_stops_there_with_end_context(char_model, expander):
    prompt = tuple(char_model.encode_prompt("Evaluate 12+7*3"))
    filler = tuple(char_model.tokenizer("1" * (char_model.max_context - len(prompt) - 3),
                                        add_special_tokens=False)["input_ids"])
    seven = char_model.tokenizer("7", add_special_tokens=False)["input_ids"][0]
    handle = force_token(char_model, seven)
    try:
        step = expander(char_model).expand([ExpandRequest((prompt, filler), 1, seed=0)], GREEDY)[0].children[0]
    finally:
        handle.remove()
    assert GREEDY.max_step_tokens == 10  # the step would run to 10 tokens if the context allowed it
    assert step.tokens == (seven,) * 3 and step.end is StepEnd.CONTEXT


def test_a_full_path_cannot_be_expanded(char_model):
    prompt = tuple(char_model.encode_prompt("Evaluate 12+7*3"))
    filler = (prompt[0],) * (char_model.max_context - len(prompt))
    with pytest.raises(ValueError, match="cannot expand a path of 64 tokens: the model's context is 64 tokens"):
        SharedKVExpander(char_model).expand([ExpandRequest((prompt, filler), 1, seed=0)], GREEDY)


@pytest.mark.parametrize("expander", [ReferenceExpander, SharedKVExpander])
def test_no_position_past_the_context_is_fed_while_other_rows_decode(char_model, expander):
    prompt = tuple(char_model.encode_prompt("Evaluate 12+7*3"))
    filler = (prompt[0],) * (char_model.max_context - len(prompt) - 3)
    seen = []
    watch = char_model.backbone.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(int(kwargs["position_ids"].max())), with_kwargs=True)
    force = force_token(char_model, char_model.tokenizer("7", add_special_tokens=False)["input_ids"][0])
    try:
        full, short = expander(char_model).expand(
            [ExpandRequest((prompt, filler), 1, seed=0), ExpandRequest((prompt,), 1, seed=1)], GREEDY)
    finally:
        watch.remove()
        force.remove()
    assert full.children[0].end is StepEnd.CONTEXT and short.children[0].end is StepEnd.LENGTH
    assert max(seen) <= char_model.max_context - 1  # positions run 0 .. max_context - 1
