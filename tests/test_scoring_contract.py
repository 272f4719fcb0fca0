"""MetaStone-S1's scoring contract: where step scores are read, for releases and our models.

The expected positions come from an implementation of the rule written here from its
statement (REFERENCE section 1), not from the library: a step score is read at each
position whose next token begins a run of delimiters (the first of a run), inside the
think span when the response has exactly one <think> and one </think> (else the whole
response), skipping a delimiter right after <think>; a trailing step without a delimiter
is scored only with ``score_final_step``; a response with no scored position scores 0.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reflective_search import ReflectiveSearch, SearchConfig
from reflective_search.aggregate import geometric
from reflective_search.model import ModelSettings, ReflectiveModel

DELIMITER = ".\n\n"
RESPONSES = [
    "<think>7*3=21.\n\n12+21=33.\n\n</think>Answer: 33",  # a span, a trailing answer after </think>
    "<think>.\n\n7*3=21.\n\n</think>.\n\nAnswer: 33",  # a delimiter right after <think>; one after the span
    "7*3=21.\n\n.\n\n12+21=33.\n\nAnswer: 33",  # no span; a run of delimiters
    "<think>a=1.\n\n<think>b=2.\n\n</think>c",  # two <think>: the whole response counts
    "Answer: 33",  # no delimiter at all
    "<think>1+1=2.\n\n.\n\n2+2=4.\n\n</think>",  # a run inside the span, nothing after it
]


def expected_token_indices(tokenizer, response: str, final_step: bool, think_span: bool) -> list[int]:
    """Token indices j whose emitting state (prompt + j - 1) scores a step, by the rule."""
    starts, i, previous_end = [], 0, None
    while (found := response.find(DELIMITER, i)) != -1:
        if found != previous_end:
            starts.append(found)
        previous_end = i = found + len(DELIMITER)
    span_active = think_span and response.count("<think>") == 1 and response.count("</think>") == 1 \
        and response.index("<think>") < response.index("</think>")
    if span_active:
        low, high = response.index("<think>") + len("<think>"), response.index("</think>")
        starts = [c for c in starts if low < c < high]
    offsets = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    indices = [next(j for j, (_, end) in enumerate(offsets) if end > c) for c in starts]
    tail = response[previous_end or 0:]
    if final_step and not span_active and tail.strip():
        indices.append(len(offsets))
    return indices


@pytest.fixture(scope="module")
def think_release(tmp_path_factory):
    """A MetaStone-style release: tiny Qwen2, <think>/</think> single tokens, score_module.pt."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from reflective_search.model.tiny import TINY_CORPUS
    from reflective_search.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(TINY_CORPUS, vocab_size=300)
    tokenizer.add_tokens(["<think>", "</think>"])
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(5)
    model = ReflectiveModel.from_backbone(Qwen2ForCausalLM(config).eval(), tokenizer, seed=5)
    folder = tmp_path_factory.mktemp("release")
    model.backbone.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    torch.save(model.head.state_dict(), folder / "score_module.pt")
    return folder


def oracle_scores(model, prompt_ids, response_ids, indices) -> list[float]:
    """The backbone's own hidden_states[-2] through the head at the emitting states."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        hidden = model.backbone(ids, output_hidden_states=True).hidden_states[-2][0]
        return torch.sigmoid(model.head(hidden[[len(prompt_ids) + j - 1 for j in indices]]).squeeze(-1)).tolist()


def test_think_tags_are_single_tokens(think_release):
    model = ReflectiveModel.from_pretrained(think_release)
    assert len(model.tokenizer("<think>", add_special_tokens=False)["input_ids"]) == 1
    assert len(model.tokenizer("</think>", add_special_tokens=False)["input_ids"]) == 1


@pytest.mark.parametrize("final_step", [False, True])
@pytest.mark.parametrize("response", RESPONSES)
def test_scores_and_positions_follow_the_rule(think_release, response, final_step):
    release = ReflectiveModel.from_pretrained(think_release)
    # A release loads with its scorer's rule; final_step=True is the same model under our models' rule.
    settings = dataclasses.replace(release.settings, score_final_step=True, think_span=False) if final_step \
        else release.settings
    model = ReflectiveModel(release.backbone, release.tokenizer, release.head, settings)
    prompt_ids = model.encode_prompt("q")
    response_ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    indices = expected_token_indices(model.tokenizer, response, final_step, think_span=not final_step)
    assert model.step_feature_positions(len(prompt_ids), response_ids) == [len(prompt_ids) + j - 1 for j in indices]
    expected = oracle_scores(model, prompt_ids, response_ids, indices) if indices else []
    assert model.score_steps("q", response) == pytest.approx(expected, abs=1e-6)


def test_expected_counts_of_the_release_rule(think_release):
    model = ReflectiveModel.from_pretrained(think_release)
    assert [len(model.score_steps("q", r)) for r in RESPONSES] == [2, 1, 2, 2, 0, 2]
    assert geometric(model.score_steps("q", "Answer: 33")) == 0.0  # no scored position: trajectory score 0


def test_release_settings_are_saved_with_the_model(think_release, tmp_path):
    model = ReflectiveModel.from_pretrained(think_release)
    model.save_pretrained(tmp_path / "ours")
    again = ReflectiveModel.from_pretrained(tmp_path / "ours")
    assert (again.settings.score_final_step, again.settings.think_span) == (False, True)
    assert again.score_steps("q", RESPONSES[1]) == pytest.approx(model.score_steps("q", RESPONSES[1]), abs=1e-6)


@pytest.mark.parametrize("response", RESPONSES)
@pytest.mark.parametrize("final_step", [False, True])
def test_search_rule_step_by_step_equals_the_text_rule(think_release, response, final_step):
    """The search decides step by step (``step_is_scored``); on a finished response it
    must count exactly the steps the text rule scores."""
    model = ReflectiveModel.from_pretrained(think_release)
    boundary = dataclasses.replace(model.settings, score_final_step=final_step)
    model = ReflectiveModel(model.backbone, model.tokenizer, model.head, boundary)
    rule = model.boundary
    steps, pos = [], 0
    for begin, end in rule.occurrences(response):
        steps.append((response[pos:end], begin - pos))
        pos = end
    if response[pos:]:
        steps.append((response[pos:], None))
    counted, before = [], ""
    for index, (text, delimiter) in enumerate(steps):
        if rule.step_is_scored(before, text, delimiter, final=index == len(steps) - 1 and delimiter is None):
            counted.append(len(before) + (delimiter if delimiter is not None else len(text)))
        before += text
    assert counted == rule.scored_chars(response)


def _steered(model: ReflectiveModel, settings: ModelSettings) -> ReflectiveModel:
    """A char-level model whose samples are full of '.', '\\n' and end-of-sequence."""
    steered = ReflectiveModel(model.backbone, model.tokenizer, model.head, settings)
    boost = torch.zeros(len(model.tokenizer))
    for piece in (".", "\n", "1", "+"):
        boost[model.tokenizer.convert_tokens_to_ids(piece)] = 4.0
    boost[model.tokenizer.eos_token_id] = 2.5
    head = steered.backbone.lm_head
    if not getattr(head, "_steered", False):  # once per backbone: the cases share it, boosts must not stack
        head.register_forward_hook(lambda module, inputs, logits: logits + boost)
        head._steered = True
    return steered


@pytest.fixture(scope="module")
def char_policy():
    from conftest import build_char_model

    return build_char_model("0123456789+=. \nq", max_positions=512, seed=9, head_seed=9)


@pytest.mark.parametrize("expander", ["shared", "reference"])
@pytest.mark.parametrize("final_step, layers", [(True, (-1,)), (False, (-1,)), (True, (0, -1))])
def test_search_scores_equal_score_steps_on_each_path(char_policy, expander, final_step, layers):
    settings = dataclasses.replace(char_policy.settings, score_final_step=final_step, feature_layers=layers)
    model = _steered(char_policy.reading(settings) if layers != (-1,) else char_policy, settings)
    config = SearchConfig().replace(**{"method": "best_of_n", "best_of_n.n": 12, "expander": expander, "seed": 3,
                                       "sampling.temperature": 1.0, "sampling.top_p": 1.0,
                                       "sampling.max_step_tokens": 100, "sampling.max_steps": 8})
    tree = ReflectiveSearch(model, config).solve("q").tree
    leaves = tree.terminal_leaves()
    compared = 0
    for leaf in leaves:
        response = tree.response_text(leaf)
        if any(tree.step_end(n).name == "LENGTH" for n in tree.path(leaf)[1:]):
            continue  # a length cut is no step end in the text: nothing to compare it with
        assert tree.step_scores(leaf) == pytest.approx(model.score_steps("q", response), abs=1e-5)
        compared += 1
    assert compared >= 6
    assert any(len(tree.step_scores(leaf)) >= 2 for leaf in leaves)
    # A trailing step of text ended by end-of-sequence counts exactly when the setting says so.
    tails = [leaf for leaf in leaves if tree.step_end(leaf).name == "EOS" and tree.texts[leaf].strip()]
    assert tails and all(bool(tree.scored[leaf]) is final_step for leaf in tails)
