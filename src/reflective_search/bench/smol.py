"""The engine on a real model: SmolLM2-135M-Instruct, Countdown prompts, one process.

``python -m reflective_search.bench smol --json [--problems N] [--repeats R]`` measures
(CPU seconds, one thread, fp32):

* Best-of-8 over N Countdown problems (8N trajectories, at most ``ROWS`` = 32 rows at once)
  through the shared expander, continuous batching, as generated tokens per CPU second,
  against Hugging Face's plain cached decode loop at 32 rows (``model(input_ids=last
  tokens, cache=DynamicCache)`` with sampling, no search) run for the engine's mean sample
  length;
* continuous against rounds (lockstep) scheduling, CPU seconds, for Best-of-8 (32 rows),
  beam and MCTS (no row cap) over the same N problems, with the forwards each took and
  whether both grew the same trees (same tokens, answers and counts);
* shared against reference expander for Best-of-8, beam and MCTS (the first
  ``REFERENCE_PROBLEMS`` problems: the reference recomputes every path);
* Best-of-8 against ``generate(num_return_sequences=8)`` once per problem (same problems);
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

PROBLEMS, SEED = 16, 7  # Countdown problems drawn by tasks.countdown.generate_problems(PROBLEMS, SEED)
REFERENCE_PROBLEMS = 4  # the shared-vs-reference and generate comparisons run on the first this many
ROWS = 32  # Best-of-8's row cap, and the plain decode loop's rows
LIMITS = {"sampling": {"max_step_tokens": SEARCH_LIMITS["sampling.max_step_tokens"],
                       "max_steps": SEARCH_LIMITS["sampling.max_steps"], "temperature": 0.7, "top_p": 0.95}}
METHOD_CONFIGS = {  # what each timed search runs (besides the Countdown limits)
    "best_of_n": {"best_of_n": {"n": 8}},
    "beam": {"beam": {"width": 2, "expand": 4}},
    "mcts": {"mcts": {"children": 4, "batch_leaves": 4}, "budget": {"tokens": 768}},
}
ROW_CAPS = {"best_of_n": ROWS, "beam": None, "mcts": None}  # expander_options.max_rows per method


def countdown_problems(count: int = PROBLEMS) -> list[str]:
    from reflective_search.tasks.countdown import generate_problems

    return [problem.text for problem in generate_problems(count, SEED)]


def _search(model, method: str, expander: str, scheduling: str = "continuous"):
    from reflective_search.facade import ReflectiveSearch

    options = {"scheduling": scheduling, "max_rows": ROW_CAPS[method]} if expander == "shared" else {}
    return ReflectiveSearch(model, {"method": method, "expander": expander, **LIMITS, **METHOD_CONFIGS[method],
                                    "expander_options": options})


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


def run_smol_bench(repeats: int = 3, problems: int = PROBLEMS) -> dict:
    from reflective_search.model.bases import load_base
    from reflective_search.model.reflective import ReflectiveModel

    torch.set_num_threads(1)
    backbone, tokenizer = load_base("smollm2-135m-instruct")  # fp32, sdpa; cached as model.bases says
    model = ReflectiveModel.from_backbone(backbone, tokenizer)
    texts = countdown_problems(problems)
    few = texts[:REFERENCE_PROBLEMS]
    prompts = [model.encode_prompt(problem) for problem in few]
    sampling = LIMITS["sampling"]
    runs: dict[str, dict] = {}  # run name -> what its last repeat made

    def solve(name, method, expander, scheduling, batch):
        search = _search(model, method, expander, scheduling)

        def run():
            forwards = getattr(getattr(search.expander, "engine", None), "forwards", 0)
            solutions = search.solve_batch(batch)
            runs[name] = {"solutions": solutions, "forwards": getattr(getattr(search.expander, "engine", None),
                                                                      "forwards", 0) - forwards}
        return run

    for method in METHOD_CONFIGS:  # warm-up: kernels compiled, allocator caches filled (one problem)
        for expander in ("shared", "reference"):
            _search(model, method, expander).solve(texts[0])
    plain_decode(backbone, prompts[:1], 2, 4, sampling)
    seconds = {}
    for method in METHOD_CONFIGS:
        seconds.update(paired_cpu_seconds({
            f"{method}/continuous": solve(f"{method}/continuous", method, "shared", "continuous", texts),
            f"{method}/rounds": solve(f"{method}/rounds", method, "shared", "rounds", texts),
            f"{method}/shared": solve(f"{method}/shared", method, "shared", "continuous", few),
            f"{method}/reference": solve(f"{method}/reference", method, "reference", "rounds", few),
        }, repeats))
    generated = {name: sum(s.stats.generated_tokens for s in run["solutions"]) for name, run in runs.items()}
    lengths = [response_tokens(s.tree, leaf) for s in runs["best_of_n/continuous"]["solutions"]
               for leaf in s.tree.terminal_leaves()]
    n, trajectory = METHOD_CONFIGS["best_of_n"]["best_of_n"]["n"], sampling["max_steps"] * sampling["max_step_tokens"]
    steps = round(statistics.mean(lengths))  # the plain loop's rows run the engine's mean sample length
    plain_prompts = [prompts[i % len(prompts)] for i in range(ROWS // n)]
    seconds.update(paired_cpu_seconds({
        "plain_decode": lambda: generated.__setitem__("plain_decode", plain_decode(backbone, plain_prompts, n, steps, sampling)),
        "plain_decode_to_longest": lambda: plain_decode(backbone, plain_prompts, n, max(lengths), sampling),
        "generate": lambda: generated.__setitem__("generate", generate_per_problem(backbone, tokenizer, prompts, n,
                                                                                  trajectory, sampling)),
    }, repeats))
    median = {name: statistics.median(times) for name, times in seconds.items()}
    generated["plain_decode_to_longest"] = round(ROWS * statistics.mean(lengths))  # credited: the tokens wanted
    rate = {name: generated[name] / median[name] for name in median}
    return _report(model, texts, runs, generated, median, rate, repeats, lengths)


def same_trees(first: list, second: list) -> bool:
    """Whether two runs grew the same trees: tokens, answers and token counts."""
    def key(solution):
        tree, stats = solution.tree, solution.stats
        return ([tree.token_path(node) for node in range(tree.size)], solution.answer,
                stats.generated_tokens, stats.forwarded_tokens, stats.expansions)
    return [key(s) for s in first] == [key(s) for s in second]


def response_tokens(tree, leaf: int) -> int:
    """Tokens of the sampled response ending at ``leaf`` (below the prompt)."""
    return sum(len(segment) for segment in tree.token_path(leaf)[1:])


def _report(model, problems, runs, generated, median, rate, repeats, lengths) -> dict:
    targets = {
        "bon_vs_plain_decode_tokens_per_s": (rate["best_of_n/continuous"] / rate["plain_decode"], 1.0),
        "continuous_vs_rounds_mcts": (median["mcts/rounds"] / median["mcts/continuous"], 1.4),
        "continuous_vs_rounds_beam": (median["beam/rounds"] / median["beam/continuous"], 1.2),
        "continuous_vs_rounds_best_of_n": (median["best_of_n/rounds"] / median["best_of_n/continuous"], 1.3),
        "shared_vs_reference_best_of_n": (median["best_of_n/reference"] / median["best_of_n/shared"], 1.5),
        "shared_vs_reference_beam": (median["beam/reference"] / median["beam/shared"], 1.5),
        "shared_vs_reference_mcts": (median["mcts/reference"] / median["mcts/shared"], 1.5),
        "bon_vs_generate_tokens_per_s": (rate["best_of_n/shared"] / rate["generate"], 2.0),
    }
    return {
        "model": "SmolLM2-135M-Instruct (fp32, sdpa)", "parameters": model.num_parameters,
        "problems": len(problems), "reference_problems": min(REFERENCE_PROBLEMS, len(problems)), "rows": ROWS,
        "limits": LIMITS["sampling"], "methods": METHOD_CONFIGS, "row_caps": ROW_CAPS,
        "cpu_seconds": {k: round(v, 2) for k, v in median.items()},
        "generated_tokens": generated,
        "generated_tokens_per_cpu_s": {k: round(v, 1) for k, v in rate.items()},
        "forwards": {name: run["forwards"] for name, run in runs.items() if run["forwards"]},
        "continuous_equals_rounds": {method: same_trees(runs[f"{method}/continuous"]["solutions"],
                                                        runs[f"{method}/rounds"]["solutions"])
                                     for method in METHOD_CONFIGS},
        "targets": {k: {"ratio": round(r, 2), "target": t, "met": r >= t} for k, (r, t) in targets.items()},
        "diagnostics": {
            "best_of_n_sample_tokens": {"mean": round(statistics.mean(lengths), 1), "longest": max(lengths)},
            "bon_vs_plain_decode_to_longest_tokens_per_s": round(rate["best_of_n/continuous"]
                                                                 / rate["plain_decode_to_longest"], 2),
        },
        "repeats": repeats, "threads": torch.get_num_threads(),
    }
