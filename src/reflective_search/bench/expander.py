"""Expander benchmark: one tree-search expansion round, three ways, in one process.

Workload: a random Llama (hidden 256, 4 layers, 8 heads, 4 KV heads, vocab
4096, fp32); a 1024-token prompt; 4 first steps of 32 tokens, each with 2 second steps
of 32 tokens (8 leaves, 64 tokens below the prompt); 4 children per leaf; 32 new tokens
per child, greedy. Strategies: (a) HF ``generate`` once per child from its full text,
(b) one padded batched recompute of all children (the reference expander), (c) the
shared-KV expander from a cold cache (it computes the prompt and the leaves too).

Times are CPU seconds of this process (``time.process_time``) with one torch thread, so
other load on a shared machine does not skew the ratios. On CUDA they are wall seconds
between synchronisations: the process's CPU time says nothing of kernels it waits for.
"""

from __future__ import annotations

import statistics
import time

import torch

from reflective_search.config import SamplingConfig
from reflective_search.expand.reference import ReferenceExpander
from reflective_search.expand.shared import SharedKVExpander
from reflective_search.interface import ExpandRequest
from reflective_search.model.reflective import ModelSettings, ReflectiveModel
from reflective_search.model.tokenizer import build_char_tokenizer

VOCAB, STEP, NEW, CHILDREN, FIRST_STEPS, SECOND_STEPS = 4096, 32, 32, 4, 4, 2


def build_bench_model(device: str) -> ReflectiveModel:
    """The benchmark's random Llama over a 4096-symbol character tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    symbols = ".\n" + "".join(chr(0x4E00 + i) for i in range(VOCAB - 6))
    tokenizer = build_char_tokenizer(symbols)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=4096,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         attn_implementation="sdpa")
    torch.manual_seed(0)
    backbone = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # steps must run their full 32 tokens: never emit EOS or delimiter parts
        for token in ("</s>", ".", "\n"):
            backbone.lm_head.weight[tokenizer.convert_tokens_to_ids(token)] = 0.0
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    model = ReflectiveModel.from_backbone(backbone, tokenizer, ModelSettings())
    return model.to(device=device, dtype=dtype)


def workload(prompt_tokens: int) -> list[ExpandRequest]:
    """The 8 leaf paths (prompt, first step, second step), 4 children each."""
    g = torch.Generator().manual_seed(1)
    draw = lambda n: tuple(int(t) for t in torch.randint(8, VOCAB - 8, (n,), generator=g))
    prompt = draw(prompt_tokens)
    requests = []
    for _ in range(FIRST_STEPS):
        first = draw(STEP)
        requests += [ExpandRequest((prompt, first, draw(STEP)), CHILDREN, seed=len(requests)) for _ in range(SECOND_STEPS)]
    return requests


def clock(device: str):
    """Seconds so far: this process's CPU time, or on CUDA wall time once queued kernels finish."""
    if device == "cpu":
        return time.process_time

    def wall() -> float:
        torch.cuda.synchronize()
        return time.perf_counter()
    return wall


def time_median(fn, repeats: int, now=time.process_time) -> tuple[float, object]:
    fn()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = now()
        result = fn()
        times.append(now() - start)
    return statistics.median(times), result


def paired_medians(first, second, repeats: int, now=time.process_time) -> tuple[float, float]:
    """Median times of two functions run alternately, so drifting load hits both alike."""
    first(), second()  # warm-up
    a, b = [], []
    for _ in range(repeats):
        for fn, times in ((first, a), (second, b)):
            start = now()
            fn()
            times.append(now() - start)
    return statistics.median(a), statistics.median(b)


def generate_each(model: ReflectiveModel, requests: list[ExpandRequest]) -> list[tuple[int, ...]]:
    """(a): Hugging Face generate, one child at a time, from its full text."""
    outputs = []
    for request in requests:
        ids = torch.tensor([[t for segment in request.path for t in segment]], device=model.device)
        for _ in range(request.k):
            out = model.backbone.generate(ids, max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                                          attention_mask=torch.ones_like(ids), pad_token_id=0)
            outputs.append(tuple(out[0, ids.shape[1]:].tolist()))
    return outputs


def run_expander_bench(device: str = "cpu", repeats: int = 3, prompt_tokens: int = 1024) -> dict:
    torch.set_num_threads(1)
    model = build_bench_model(device)
    requests = workload(prompt_tokens)
    sampling = SamplingConfig(temperature=0.0, max_step_tokens=NEW)
    children = lambda expansions: [c.tokens for e in expansions for c in e.children]
    now = clock(device)
    t_generate, out_a = time_median(lambda: generate_each(model, requests), repeats, now)
    t_batched, out_b = time_median(lambda: ReferenceExpander(model).expand(requests, sampling), repeats, now)
    t_shared, out_c = time_median(lambda: SharedKVExpander(model).expand(requests, sampling), repeats, now)
    # scoring on vs off: the same decode, with and without the hook and the head
    scored, unscored = paired_medians(lambda: SharedKVExpander(model).expand(requests, sampling),
                                      lambda: SharedKVExpander(model, score=False).expand(requests, sampling),
                                      max(repeats, 5), now)
    shared = SharedKVExpander(model)
    shared.expand(requests, sampling)
    new_tokens = sum(r.k for r in requests) * NEW
    unique = prompt_tokens + FIRST_STEPS * STEP + len(requests) * STEP + new_tokens
    return {
        "device": device if device == "cpu" else torch.cuda.get_device_name(),
        "new_tokens": new_tokens,
        "seconds": {"generate": round(t_generate, 3), "batched": round(t_batched, 3), "shared": round(t_shared, 3),
                    "shared_scored_paired": round(scored, 3), "shared_unscored_paired": round(unscored, 3)},
        "new_tokens_per_s": {"generate": round(new_tokens / t_generate, 1), "batched": round(new_tokens / t_batched, 1),
                             "shared": round(new_tokens / t_shared, 1)},
        "speedup_vs_generate": round(t_generate / t_shared, 2),
        "speedup_vs_batched": round(t_batched / t_shared, 2),
        "computed_tokens": shared.computed_tokens,
        "unique_tokens": unique,
        "computed_over_unique": round(shared.computed_tokens / unique, 4),
        "kv_peak_bytes": shared.kv_peak_bytes,
        "scoring_overhead": round(scored / unscored - 1, 4),
        "outputs_match": out_a == children(out_b) == children(out_c),
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "clock": "process CPU seconds" if device == "cpu" else "wall seconds, CUDA synchronised",
    }
