"""Small-batch linear layers (``model.cpu_kernels``) against torch's ``F.linear``, on CPU.

``python -m reflective_search.bench kernels --json`` (one thread, the shipped model):

* a decode step of the backbone (one new token per row over a 60-token cache) at 1, 2, 4
  and 8 rows, both ways: where the kernel choice matters;
* ``solve`` of the README's example with the default search both ways, alternated, median
  CPU seconds of ``repeats``; and whether the two solutions agree (answer, tokens, score to
  1e-4: the kernels differ only in the order of float32 sums).
"""

from __future__ import annotations

import statistics
import time

import torch

from reflective_search.bench.smol import paired_cpu_seconds
from reflective_search.model.cpu_kernels import use_small_batch_linear

EXAMPLE = "Numbers: 6 4 7. Target: 70."  # the README's first command
ROWS, CACHED, STEPS = (1, 2, 4, 8), 60, 10  # decode-step shapes timed


def run_kernels_bench(model_name: str | None = None, repeats: int = 3) -> dict:
    from reflective_search.default_model import load_default_model
    from reflective_search.facade import ReflectiveSearch

    torch.set_num_threads(1)
    model = load_default_model(model_name)
    search = ReflectiveSearch(model)
    solutions = {}

    def solve(small: bool):
        def run():
            use_small_batch_linear(model.backbone, enabled=small)
            solutions[small] = search.solve(EXAMPLE)
        return run

    step_ms = {rows: _decode_step_ms(model.backbone, rows) for rows in ROWS}
    solve(True)()  # warm-up
    seconds = paired_cpu_seconds({"small_batch": solve(True), "torch_linear": solve(False)}, repeats)
    use_small_batch_linear(model.backbone)
    return _report(model, step_ms, {name: statistics.median(t) for name, t in seconds.items()}, solutions, repeats)


def _decode_step_ms(backbone, rows: int) -> dict[str, float]:
    """Milliseconds of one decode step at ``rows`` rows, small-batch kernels and torch's."""
    from transformers import DynamicCache

    times = {}
    for name, small in (("small_batch", True), ("torch_linear", False)):
        use_small_batch_linear(backbone, enabled=small)
        cache, ids = DynamicCache(), torch.randint(0, 1000, (rows, CACHED), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            backbone(input_ids=ids, cache=cache, logits_to_keep=1)
            start = time.process_time()
            for _ in range(STEPS):
                backbone(input_ids=ids[:, -1:], cache=cache, logits_to_keep=1)
        times[name] = round((time.process_time() - start) / STEPS * 1000, 1)
    use_small_batch_linear(backbone)
    return times


def _report(model, step_ms, median, solutions, repeats) -> dict:
    fast, plain = solutions[True], solutions[False]
    return {
        "model": model.source, "problem": EXAMPLE, "threads": torch.get_num_threads(), "repeats": repeats,
        "decode_step_ms": {str(rows): {**ms, "ratio": round(ms["torch_linear"] / ms["small_batch"], 2)}
                           for rows, ms in step_ms.items()},
        "solve_cpu_s": {name: round(s, 2) for name, s in median.items()},
        "solve_ratio": round(median["torch_linear"] / median["small_batch"], 2),
        "same_solution": (fast.answer, fast.stats.generated_tokens) == (plain.answer, plain.stats.generated_tokens)
        and abs(fast.score - plain.score) < 1e-4,
        "scores": {"small_batch": fast.score, "torch_linear": plain.score},
    }
