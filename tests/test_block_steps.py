"""Block steps (sampling.step kind: tokens): K tokens a step, scored where score_steps reads."""

from __future__ import annotations

import pytest
import torch

from reflective_search import ReflectiveSearch, SearchConfig
from reflective_search.config import StepConfig, config_from_dict
from reflective_search.errors import ConfigError
from reflective_search.interface import StepEnd
from reflective_search.model import ReflectiveModel
from reflective_search.model.steps import BlockSteps

K = 3


@pytest.fixture(scope="module")
def char_policy():
    """A char-level model (one token per character: re-tokenising a response gives its ids)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from reflective_search.model.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer("0123456789+=. \nq")  # "." and "\\n": the model needs a delimiter it can write
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(5)
    model = ReflectiveModel.from_backbone(LlamaForCausalLM(config).eval(), tokenizer, seed=5)
    boost = torch.zeros(len(tokenizer))
    boost[tokenizer.eos_token_id] = 2.0  # end some paths mid-block, some on a block boundary
    model.backbone.lm_head.register_forward_hook(lambda module, inputs, logits: logits + boost)
    return model


def block_search(model, expander):
    config = SearchConfig().replace(**{"method": "best_of_n", "best_of_n.n": 12, "expander": expander, "seed": 1,
                                       "sampling.temperature": 1.0, "sampling.top_p": 1.0,
                                       "sampling.max_step_tokens": 8, "sampling.max_steps": 6,
                                       "sampling.step": {"kind": "tokens", "size": K}})
    return ReflectiveSearch(model, config).solve("q").tree, config.sampling.step


@pytest.mark.parametrize("expander", ["shared", "reference"])
def test_every_block_is_k_tokens_except_the_last_at_eos(char_policy, expander):
    tree, _ = block_search(char_policy, expander)
    leaves = tree.terminal_leaves()
    assert any(tree.step_end(leaf) is StepEnd.EOS for leaf in leaves)
    for leaf in leaves:
        *blocks, last = tree.path(leaf)[1:]
        assert all(int(tree.token_len[n]) == K and tree.step_end(n) is StepEnd.BLOCK for n in blocks)
        if tree.step_end(last) is StepEnd.EOS:
            assert 1 <= int(tree.token_len[last]) <= K
        else:  # cut by max_steps: a whole block
            assert int(tree.token_len[last]) == K and len(blocks) + 1 == 6


@pytest.mark.parametrize("expander", ["shared", "reference"])
def test_block_scores_equal_score_steps_on_the_same_text(char_policy, expander):
    tree, step = block_search(char_policy, expander)
    compared = 0
    for leaf in tree.terminal_leaves():
        expected = char_policy.score_steps("q", tree.response_text(leaf), step)
        scores = tree.step_scores(leaf)
        if tree.step_end(leaf) is not StepEnd.EOS:  # score_steps reads a complete text: one more, EOS block
            expected = expected[: len(scores)]
        assert scores == pytest.approx(expected, abs=1e-5)
        compared += 1
    assert compared >= 6


def test_block_rule_scores_each_block_end_and_the_eos_state():
    rule = BlockSteps(3)
    assert rule.response_step_tokens(range(7)) == [2, 5, 7]  # blocks 0-2, 3-5, then 6 + EOS
    assert rule.response_step_tokens(range(6)) == [2, 5, 6]  # the EOS is a block of its own
    assert BlockSteps(3, score_final_step=False).response_step_tokens(range(7)) == [2, 5]


BAD = {
    "size 0": ({"step": {"kind": "tokens", "size": 0}}, "sampling.step.size: 0 is not allowed; expected an integer >= 1"),
    "no size": ({"step": {"kind": "tokens"}}, "sampling.step.size: None is not allowed; expected an integer >= 1"),
    "size with delimiter": ({"step": {"size": 4}},
                            "sampling.step.size: 4 is not allowed; expected null with kind: delimiter"),
    "size above max_step_tokens": ({"max_step_tokens": 8, "step": {"kind": "tokens", "size": 9}},
                                   "sampling.step.size: 9 is not allowed; expected an integer <= "
                                   "sampling.max_step_tokens (8)"),
    "unknown kind": ({"step": {"kind": "words"}},
                     "sampling.step.kind: 'words' is not allowed; expected delimiter | tokens"),
    "typo": ({"step": {"kind": "tokens", "sise": 4}},
             "unknown key 'sampling.step.sise' (did you mean 'size'?); valid keys: kind, size"),
}


@pytest.mark.parametrize("sampling,message", BAD.values(), ids=BAD.keys())
def test_bad_step_config_is_refused_with_its_message(sampling, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict({"sampling": sampling})
    assert str(error.value) == message or str(error.value).startswith(message)


def test_delimiter_steps_are_the_default():
    assert SearchConfig().sampling.step == StepConfig("delimiter", None)
