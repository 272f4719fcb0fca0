"""Shared-KV expander against the padded reference on a real device: same answers, what speed.

For each dtype and method, the same held-out Countdown problems are solved twice, once per
expander, and the bench reports seconds, generated tokens per second, accuracy, and how
many of the chosen texts are identical. In fp32 they should all be (the reference is the
shared expander's test oracle); in bf16 the two expanders' kernels round differently, so a
few samples may part ways. On CUDA a seed's draws differ from the CPU's (see
``expand.decoding``), so compare a device with itself.
"""

from __future__ import annotations

import torch

from reflective_search.bench.expander import clock

METHODS = {"greedy": {}, "best_of_n": {"best_of_n": {"n": 8}}, "mcts": {"budget": {"tokens": 400}}}  # overrides
SAMPLING = {"temperature": 1.0, "max_step_tokens": 24, "max_steps": 6}  # countdown-tiny's steps; greedy is T = 0


def run_agreement_bench(device: str = "cpu", model_name: str = "countdown-tiny", problems: int = 64) -> dict:
    """{dtype: {method: {shared, reference, identical}}} over the first ``problems`` held-out problems."""
    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.train.data import eval_problems

    texts = [p.text for p in eval_problems(3)[:problems]]
    result = {"device": device if device == "cpu" else torch.cuda.get_device_name(), "problems": len(texts)}
    from reflective_search.experiments.progress import progress_bar

    with progress_bar(2 * len(METHODS), "dtype x method", "pair") as bar:
        for dtype in (torch.float32, torch.bfloat16):
            model = ReflectiveModel.from_pretrained(model_name, device=device, dtype=dtype)
            result[str(dtype).removeprefix("torch.")] = rows = {}
            for method in METHODS:
                rows[method] = compare(model, texts, method)
                bar.update()
    return result


def compare(model, texts: list[str], method: str) -> dict:
    """Both expanders on the same problems: their timings and how many chosen texts agree."""
    runs = {expander: timed_solve(model, texts, method, expander) for expander in ("shared", "reference")}
    solutions = {expander: run.pop("solutions") for expander, run in runs.items()}
    same = sum(a.text == b.text for a, b in zip(solutions["shared"], solutions["reference"]))
    return {**runs, "identical": f"{same}/{len(texts)}"}


def timed_solve(model, texts: list[str], method: str, expander: str) -> dict:
    """One warm-up batch, then every problem in one ``solve_batch``, timed as the expander bench
    times (process CPU seconds; on CUDA, wall seconds between synchronisations)."""
    from reflective_search import ReflectiveSearch
    from reflective_search.tasks.countdown import verdict

    search = ReflectiveSearch(model, {"method": method, "expander": expander, "sampling": SAMPLING, **METHODS[method]})
    now = clock(model.device.type)
    search.solve_batch(texts[:4])
    start = now()
    solutions = search.solve_batch(texts)
    seconds = now() - start
    tokens = sum(s.stats.generated_tokens for s in solutions)
    accuracy = sum(verdict(p, s.text) == "solved" for p, s in zip(texts, solutions)) / len(texts)
    return {"seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1), "accuracy": accuracy,
            "solutions": solutions}
