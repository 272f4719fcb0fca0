"""Tiny randomly initialised reflective models, built offline in a second.

Used by the tests (Llama and Qwen2 configs, 2 layers, hidden 64) and by anyone who wants
to try the machinery without a trained model. Their answers are noise; their shapes,
caches and delimiters are real.
"""

from __future__ import annotations

import torch

from reflective_search.model.reflective import ModelSettings, ReflectiveModel
from reflective_search.model.tokenizer import train_bpe_tokenizer

# Text the tiny tokenizer learns its merges from: steps ending in ".\n\n" so that merged
# delimiter tokens (e.g. "7.\n\n") occur, as in real BPE vocabularies.
TINY_CORPUS = [
    "Evaluate: 12+7*3.\n\nFirst, 7*3=21.\n\nThen 12+21=33.\n\nAnswer: 33.\n\n",
    "Compute 5*6-4.\n\n5*6=30.\n\n30-4=26.\n\nAnswer: \\boxed{26}.\n\n",
    "Numbers: 3 7 8. Target: 29.\n\n7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n",
] * 20


def build_tiny_model(arch: str = "llama", seed: int = 0, hidden_size: int = 64, layers: int = 2,
                     vocab_size: int = 384, max_positions: int = 2048,
                     attn_implementation: str = "sdpa") -> ReflectiveModel:
    """A random ``arch`` ("llama" or "qwen2") backbone with a fresh SPRM head."""
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_bpe_tokenizer(TINY_CORPUS, vocab_size=vocab_size)
    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[arch]
    config = config_cls(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        attn_implementation=attn_implementation, tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = model_cls(config).eval()
    return ReflectiveModel.from_backbone(backbone, tokenizer, ModelSettings(), seed=seed)
