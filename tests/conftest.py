"""Shared fixtures: tiny real models built offline, and a bandit fake expander."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)  # two threads on a busy 2-core box run 10-100x slower


@pytest.fixture(scope="session")
def tiny_llama():
    from reflective_search.model.tiny import build_tiny_model

    return build_tiny_model("llama", seed=0)


@pytest.fixture(scope="session")
def tiny_qwen():
    from reflective_search.model.tiny import build_tiny_model

    return build_tiny_model("qwen2", seed=1)


@pytest.fixture(scope="session")
def char_model():
    """A tiny Llama over a character tokenizer: token index == character index."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from reflective_search.model import ReflectiveModel
    from reflective_search.model.tokenizer import build_char_tokenizer

    tokenizer = build_char_tokenizer("0123456789+-*/=()., \nAnswerEvaluatNumbsTg:")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(3)
    return ReflectiveModel.from_backbone(LlamaForCausalLM(config).eval(), tokenizer)


def pytest_pycollect_makemodule(module_path, parent):
    """A ``test_ray_*.py`` module runs inside a loopback-only network namespace (ray_namespace.py)."""
    from ray_namespace import collect_ray_module

    return collect_ray_module(module_path, parent)
