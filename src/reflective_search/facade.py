"""ReflectiveSearch: wires a model, an expander and a search together. No algorithm here."""

from __future__ import annotations

import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Mapping, Sequence

from reflective_search.config import SearchConfig, load_search_config
from reflective_search.expand import make_expander
from reflective_search.interface import Expander, derive_seed
from reflective_search.search import SEARCHES, SearchOutcome, run_searches
from reflective_search.search.common import SearchGenerator
from reflective_search.solution import Solution, Stats


_WARNED: "weakref.WeakSet" = weakref.WeakSet()  # models already warned about (once each)


def warn_untrained_head(model) -> None:
    """Say once per model that its SPRM head was never trained (its scores are noise)."""
    if model not in _WARNED:
        _WARNED.add(model)
        warnings.warn(f"{model.source}: its SPRM head was never trained, so its step scores mean nothing; "
                      "train one with `reflective-search train sprm`", UserWarning, stacklevel=3)


class ReflectiveSearch:
    """Solve problems with a reflective model and a configured search.

    Args:
        model: a ``ReflectiveModel``; a name or folder (loaded with ``from_pretrained``); or
            None, the shipped default model.
        config: a ``SearchConfig``, a dict of overrides, a YAML path, or None (MCTS defaults).
            It overrides the search defaults the model carries for its task
            (``ModelSettings.search_defaults``), which override the library's defaults:
            every key a dict or YAML file sets, and every field of a SearchConfig that
            differs from the library's default (see ``config.load_search_config``).
        expander: an object implementing ``interface.Expander``; by default the one the
            config names, built over ``model``. Fakes stand in here for tests.
    """

    def __init__(self, model=None, config: SearchConfig | Mapping[str, Any] | str | Path | None = None,
                 expander: Expander | None = None) -> None:
        if model is None or isinstance(model, (str, Path)):
            from reflective_search.default_model import load_default_model

            model = load_default_model(None if model is None else str(model))
        self.model = model
        settings = getattr(model, "settings", None)
        self.config = load_search_config(config, dict(getattr(settings, "search_defaults", ())))
        if settings is not None and not settings.head_trained:
            warn_untrained_head(model)
        self.expander = expander if expander is not None else make_expander(self.config.expander, model, self.config)

    def solve(self, problem: str) -> Solution:
        """Search for an answer to one problem."""
        return self.solve_batch([problem])[0]

    def solve_batch(self, problems: Sequence[str]) -> list[Solution]:
        """Search several problems at once; their expansions share model calls."""
        generators = [self.search(problem) for problem in problems]
        start, cpu_start = time.perf_counter(), time.process_time()
        outcomes = run_searches(generators, self.expander)
        share = max(len(problems), 1)
        seconds = ((time.perf_counter() - start) / share, (time.process_time() - cpu_start) / share)
        return [self.solution(problem, result, seconds) for problem, result in zip(problems, outcomes)]

    def search(self, problem: str) -> SearchGenerator:
        """The search ``solve`` runs for ``problem``, not started: a generator to drive with
        ``run_searches`` or an engine of one's own (the server's), over ``self.expander``."""
        ids = self.model.encode_prompt(problem)
        return SEARCHES[self.config.method](ids, self.model.format_prompt(problem), self.config, self._seed(ids))

    def _seed(self, prompt_ids: Sequence[int]) -> int:
        """Per-problem seed: the same problem and config give the same tree in any batch."""
        return derive_seed(self.config.seed, tuple(prompt_ids))

    def solution(self, problem: str, result: SearchOutcome, seconds: tuple[float, float]) -> Solution:
        """The Solution of a finished search of ``problem`` that took ``seconds`` (wall, CPU)."""
        meter = result.meter
        in_nodes = int(result.tree.token_len[1: result.tree.size].sum())  # every node but the prompt
        stats = Stats(meter.generated_tokens, meter.forwarded_tokens, meter.expansions, *seconds,
                      unspent_tokens=meter.unspent_tokens, duplicate_tokens=meter.generated_tokens - in_nodes)
        text = result.tree.response_text(result.chosen)
        return Solution(problem, self.config.method, result.answer, text, result.score, stats, result.tree)
