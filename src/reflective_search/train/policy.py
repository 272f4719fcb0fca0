"""Train the Countdown policy from scratch on solver-found solutions (next-token loss on responses).

A Llama of a few million parameters over a character tokenizer. Each batch holds problems
with one number count (so padding stays small), drawn fresh from the generator with
solutions picked move by move at random among moves that still reach the target.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch

from reflective_search.model.reflective import ModelSettings, ReflectiveModel
from reflective_search.model.tokenizer import build_char_tokenizer
from reflective_search.train.data import ALPHABET, PROMPT_TEMPLATE, draw_example, encode_example

CHECKPOINT_EVERY = 200  # steps between checkpoint callbacks


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    hidden_size: int = 256  # backbone width
    layers: int = 4  # decoder layers
    heads: int = 4  # attention heads (head size 64: size 32 is slow backward on CPU)
    intermediate_size: int = 768  # MLP width
    max_positions: int = 256  # context length (a 4-number solution is ~120 tokens)
    steps: int = 1000  # optimizer steps
    batch_size: int = 32  # sequences per step
    learning_rate: float = 2e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to 10%
    weight_decay: float = 0.01  # AdamW weight decay
    number_counts: tuple[int, ...] = (3, 4)  # problem sizes trained on
    count_weights: tuple[float, ...] = (0.4, 0.6)  # how often each size is drawn
    bf16: bool = False  # bf16 autocast: 3x slower than fp32 on this CPU (no AVX512-BF16), so off
    seed: int = 0  # model init and data order
    stop_after: int | None = None  # stop after this many steps, schedule unchanged (reproduces a time-capped run)
    max_minutes: float | None = None  # stop early after this wall time (None: run every step)


def build_policy(config: PolicyConfig) -> ReflectiveModel:
    """A freshly initialised Llama policy with the Countdown character tokenizer and a head."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_char_tokenizer(ALPHABET)
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=config.intermediate_size,
        num_hidden_layers=config.layers, num_attention_heads=config.heads, num_key_value_heads=config.heads,
        max_position_embeddings=config.max_positions, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    torch.manual_seed(config.seed)
    backbone = LlamaForCausalLM(llama)
    settings = ModelSettings(prompt_template=PROMPT_TEMPLATE, use_chat_template=False)
    return ReflectiveModel.from_backbone(backbone, tokenizer, settings, seed=config.seed)


def make_batch(model: ReflectiveModel, rng: random.Random, config: PolicyConfig) -> dict[str, torch.Tensor]:
    """Input ids, attention mask and labels (-100 on prompt and padding) for one batch."""
    count = rng.choices(config.number_counts, weights=config.count_weights)[0]
    encoded = [encode_example(model, e.problem.text, e.response)
               for e in (draw_example(rng, count) for _ in range(config.batch_size))]
    return pad_batch(encoded, model.tokenizer.pad_token_id)


def pad_batch(encoded: list[tuple[list[int], int]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (ids, prompt length) pairs; labels cover response tokens only."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id)
    labels = torch.full((len(encoded), width), -100)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, (ids, prompt_len) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, prompt_len: len(ids)] = torch.tensor(ids[prompt_len:])
        mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


def learning_rate(step: int, config: PolicyConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    return config.learning_rate * (0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train_policy(config: PolicyConfig, log=None,
                 checkpoint: Callable[[ReflectiveModel, int], None] | None = None) -> ReflectiveModel:
    """Train a policy from scratch; returns it in eval mode.

    ``checkpoint(model, step)`` is called every ``CHECKPOINT_EVERY`` steps (to save progress).
    """
    log = log or sys.stderr  # bound at call time: a default bound at import outlives a redirected stream
    model = build_policy(config)
    backbone = model.backbone.train()
    optimizer = torch.optim.AdamW(backbone.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                                  betas=(0.9, 0.95))
    rng, start, tokens = random.Random(config.seed), time.perf_counter(), 0
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config)
        batch = make_batch(model, rng, config)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16):
            loss = backbone(**batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 1.0)
        optimizer.step()
        tokens += int(batch["attention_mask"].sum())
        elapsed = time.perf_counter() - start
        if step % 50 == 0 or step == config.steps - 1:
            print(f"step {step} loss {loss.item():.4f} tok/s {tokens / elapsed:.0f} elapsed {elapsed:.0f}s",
                  file=log, flush=True)
        if checkpoint is not None and step % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
            checkpoint(model, step)
        if config.stop_after is not None and step + 1 >= config.stop_after:
            print(f"stopping after step {step} as asked", file=log, flush=True)
            break
        if config.max_minutes is not None and elapsed > 60 * config.max_minutes:
            print(f"stopping at step {step}: {config.max_minutes} minutes spent", file=log, flush=True)
            break
    return model.eval()
