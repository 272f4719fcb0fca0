"""What each search method costs on one model: tokens sampled, tokens forwarded, seconds.

Every method runs through the same engine on the same problems, with both expanders, so
the forwarded-token column shows what KV sharing saves at equal generated tokens. Each
method is sized to roughly 8 trajectories (MCTS: an 800-token budget) so the rows are
comparable; the tables record what each actually generated.
"""

from __future__ import annotations

import time

import torch

from reflective_search.config import METHODS
from reflective_search.facade import ReflectiveSearch

PROBLEMS = ("Numbers: 3 7 8. Target: 29.", "Numbers: 2 5 9. Target: 19.", "Numbers: 4 4 6. Target: 40.",
            "Numbers: 1 6 9. Target: 15.")
OVERRIDES = {"sampling": {"max_step_tokens": 24, "max_steps": 6, "temperature": 1.0},
             "budget": {"tokens": 800}, "best_of_n": {"n": 8}, "majority": {"n": 8},
             "dvts": {"n": 8, "width": 2}, "rebase": {"width": 8}}
# Rows: every registered method, plus MCTS with the Gumbel root.
CASES = {**{method: {"method": method} for method in METHODS},
         "mcts_gumbel": {"method": "mcts", "mcts": {"root": "gumbel"}}}


def run_methods_bench(model_name: str | None = None) -> dict:
    from reflective_search.default_model import load_default_model

    torch.set_num_threads(1)
    from reflective_search.experiments.progress import progress_bar

    model = load_default_model(model_name)
    rows = {}
    with progress_bar(2 * len(CASES), "methods", "case") as bar:
        for name, case in CASES.items():
            for expander in ("shared", "reference"):
                rows[f"{name}/{expander}"] = _case_row(model, {**OVERRIDES, **case, "expander": expander})
                bar.update()
    return {"model_parameters": model.num_parameters, "problems": len(PROBLEMS), "methods": rows}


def _case_row(model, config: dict) -> dict:
    """One method and expander on PROBLEMS: mean tokens and expansions, CPU seconds per problem."""
    search = ReflectiveSearch(model, config)
    search.solve(PROBLEMS[0])  # warm-up: compiles the tree kernels, fills allocator caches
    start = time.process_time()
    solutions = search.solve_batch(list(PROBLEMS))
    seconds = time.process_time() - start
    return {
        "generated_tokens": sum(s.stats.generated_tokens for s in solutions) / len(PROBLEMS),
        "forwarded_tokens": sum(s.stats.forwarded_tokens for s in solutions) / len(PROBLEMS),
        "expansions": sum(s.stats.expansions for s in solutions) / len(PROBLEMS),
        "cpu_seconds_per_problem": round(seconds / len(PROBLEMS), 3),
    }
