"""The engine on a real model: SmolLM2-135M-Instruct, Countdown prompts, one process.

``python -m reflective_search.bench smol --json`` measures (CPU seconds, one thread):

* Best-of-8 over 4 Countdown problems (32 rows) through the shared expander, as generated
  tokens/s, against Hugging Face's plain cached decode loop at the same 32 rows
  (``model(input_ids=last tokens, cache=DynamicCache)`` with sampling, no search);
* shared against reference expander for Best-of-8, beam and MCTS (same problems);
* Best-of-8 against ``generate(num_return_sequences=8)`` once per problem;
* (diagnostic, no target) Best-of-8 against the plain loop run as long as Best-of-8's
  longest sample, credited with Best-of-8's tokens: what any batched decode of these
  samples pays when its rows end at different lengths.

Countdown limits (``tasks.countdown.SEARCH_LIMITS``), chat template prompts. Ratios
come from alternating runs in one process (warm-up, median of ``repeats``).
"""

from __future__ import annotations

import statistics
import time

import torch

from reflective_search.tasks.countdown import SEARCH_LIMITS

PROBLEMS, SEED = 4, 7  # Countdown problems drawn by tasks.countdown.generate_problems(PROBLEMS, SEED)
LIMITS = {"sampling": {"max_step_tokens": SEARCH_LIMITS["sampling.max_step_tokens"],
                       "max_steps": SEARCH_LIMITS["sampling.max_steps"], "temperature": 0.7, "top_p": 0.95}}
METHOD_CONFIGS = {  # what each timed search runs (besides the Countdown limits)
    "best_of_n": {"best_of_n": {"n": 8}},
    "beam": {"beam": {"width": 2, "expand": 4}},
    "mcts": {"mcts": {"children": 4, "batch_leaves": 4}, "budget": {"tokens": 768}},
}


def countdown_problems() -> list[str]:
    from reflective_search.tasks.countdown import generate_problems

    return [problem.text for problem in generate_problems(PROBLEMS, SEED)]


def _search(model, method: str, expander: str):
    from reflective_search.facade import ReflectiveSearch

    return ReflectiveSearch(model, {"method": method, "expander": expander, **LIMITS, **METHOD_CONFIGS[method]})


def paired_cpu_seconds(runs: dict, repeats: int) -> dict[str, list[float]]:
    """CPU seconds of each named run, alternated ``repeats`` times (warm up before); a bar of
    runs done on standard error (a terminal only; its updates fall outside the timed calls)."""
    from reflective_search.experiments.progress import progress_bar

    times = {name: [] for name in runs}
    with progress_bar(repeats * len(runs), " vs ".join(runs), "run") as bar:
        for _ in range(repeats):
            for name, run in runs.items():
                start = time.process_time()
                run()
                times[name].append(time.process_time() - start)
                bar.update()
    return times


def plain_decode(backbone, prompts: list[list[int]], copies: int, steps: int, sampling: dict) -> int:
    """HF's plain cached decode loop: every prompt ``copies`` times, left-padded, one
    forward of the last tokens per step over a DynamicCache, temperature sampling (no
    nucleus, no search). Returns the tokens generated."""
    from transformers import DynamicCache

    rows = [p for p in prompts for _ in range(copies)]
    width = max(len(p) for p in rows)
    ids = torch.tensor([[0] * (width - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows])
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache, generator = DynamicCache(), torch.Generator().manual_seed(0)
    with torch.no_grad():
        logits = backbone(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache,
                          logits_to_keep=1).logits[:, -1]
        for _ in range(steps):
            probs = torch.softmax(logits.float() / sampling["temperature"], dim=-1)
            token = torch.multinomial(probs, 1, generator=generator)
            mask = torch.cat([mask, torch.ones_like(token)], dim=1)
            positions = positions[:, -1:] + 1
            logits = backbone(input_ids=token, attention_mask=mask, position_ids=positions, cache=cache).logits[:, -1]
    return len(rows) * steps


def generate_per_problem(backbone, tokenizer, prompts: list[list[int]], copies: int, max_new: int, sampling: dict) -> int:
    """HF ``generate`` with ``num_return_sequences=copies``, once per problem. Returns the
    tokens it generated (up to and including each sequence's EOS)."""
    eos = tokenizer.eos_token_id
    made = 0
    torch.manual_seed(0)
    for prompt in prompts:
        ids = torch.tensor([prompt])
        out = backbone.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, num_return_sequences=copies,
                                max_new_tokens=max_new, temperature=sampling["temperature"], top_p=sampling["top_p"],
                                top_k=0, pad_token_id=eos)
        for row in out[:, ids.shape[1]:].tolist():
            made += row.index(eos) + 1 if eos in row else len(row)
    return made


def run_smol_bench(repeats: int = 3) -> dict:
    from reflective_search.model.bases import load_base
    from reflective_search.model.reflective import ReflectiveModel

    torch.set_num_threads(1)
    backbone, tokenizer = load_base("smollm2-135m-instruct")  # fp32, sdpa; cached as model.bases says
    model = ReflectiveModel.from_backbone(backbone, tokenizer)
    problems = countdown_problems()
    prompts = [model.encode_prompt(problem) for problem in problems]
    sampling = LIMITS["sampling"]
    generated, seconds, lengths = {}, {}, {}

    def solve(method, expander):
        search = _search(model, method, expander)

        def run():
            solutions = search.solve_batch(problems)
            generated[f"{method}/{expander}"] = sum(s.stats.generated_tokens for s in solutions)
            if method == "best_of_n":
                lengths[expander] = [response_tokens(s.tree, leaf) for s in solutions for leaf in s.tree.terminal_leaves()]
        return run

    for method in METHOD_CONFIGS:  # warm-up: kernels compiled, allocator caches filled (one problem)
        for expander in ("shared", "reference"):
            _search(model, method, expander).solve(problems[0])
    plain_decode(backbone, prompts[:1], 2, 4, sampling)
    for method in METHOD_CONFIGS:
        seconds.update(paired_cpu_seconds({f"{method}/{e}": solve(method, e) for e in ("shared", "reference")}, repeats))
    n, trajectory = METHOD_CONFIGS["best_of_n"]["best_of_n"]["n"], sampling["max_steps"] * sampling["max_step_tokens"]
    steps = -(-generated["best_of_n/shared"] // (n * len(prompts)))  # the same tokens as Best-of-8 made
    longest = max(lengths["shared"])
    seconds.update(paired_cpu_seconds({
        "plain_decode": lambda: generated.__setitem__("plain_decode", plain_decode(backbone, prompts, n, steps, sampling)),
        "plain_decode_to_longest": lambda: plain_decode(backbone, prompts, n, longest, sampling),
        "generate": lambda: generated.__setitem__("generate", generate_per_problem(backbone, tokenizer, prompts, n,
                                                                                  trajectory, sampling)),
    }, repeats))
    median = {name: statistics.median(times) for name, times in seconds.items()}
    generated["plain_decode_to_longest"] = generated["best_of_n/shared"]  # credited: the tokens that were wanted
    rate = {name: generated[name] / median[name] for name in median}
    return _report(model, problems, generated, median, rate, repeats, lengths["shared"])


def response_tokens(tree, leaf: int) -> int:
    """Tokens of the sampled response ending at ``leaf`` (below the prompt)."""
    return sum(len(segment) for segment in tree.token_path(leaf)[1:])


def _report(model, problems, generated, median, rate, repeats, lengths) -> dict:
    targets = {
        "bon_vs_plain_decode_tokens_per_s": (rate["best_of_n/shared"] / rate["plain_decode"], 0.8),
        "shared_vs_reference_best_of_n": (median["best_of_n/reference"] / median["best_of_n/shared"], 1.5),
        "shared_vs_reference_beam": (median["beam/reference"] / median["beam/shared"], 1.5),
        "shared_vs_reference_mcts": (median["mcts/reference"] / median["mcts/shared"], 1.5),
        "bon_vs_generate_tokens_per_s": (rate["best_of_n/shared"] / rate["generate"], 2.0),
    }
    return {
        "model": "SmolLM2-135M-Instruct (fp32, sdpa)", "parameters": model.num_parameters,
        "problems": problems, "rows_best_of_n": METHOD_CONFIGS["best_of_n"]["best_of_n"]["n"] * len(problems),
        "limits": LIMITS["sampling"], "methods": METHOD_CONFIGS,
        "cpu_seconds": {k: round(v, 2) for k, v in median.items()},
        "generated_tokens": generated,
        "generated_tokens_per_cpu_s": {k: round(v, 1) for k, v in rate.items()},
        "targets": {k: {"ratio": round(r, 2), "target": t, "met": r >= t} for k, (r, t) in targets.items()},
        "diagnostics": {
            "best_of_n_sample_tokens": {"mean": round(statistics.mean(lengths), 1), "longest": max(lengths)},
            "bon_vs_plain_decode_to_longest_tokens_per_s": round(rate["best_of_n/shared"] / rate["plain_decode_to_longest"], 2),
        },
        "repeats": repeats, "threads": torch.get_num_threads(),
    }
