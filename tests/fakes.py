"""Fake expanders with known answers: the searches' test bed (no model at all)."""

from __future__ import annotations

import math
from typing import Sequence

from reflective_search.config import SamplingConfig
from reflective_search.interface import ChildStep, ExpandRequest, Expansion, StepEnd, TokenPath


class BanditExpander:
    """Every node has children with tokens (1,), (2,), ...; scores come from a table.

    ``scores`` maps a path of child indices below the root (e.g. (0, 1)) to the SPRM
    score of its last step; ``texts`` likewise gives step texts (default "s<path>.\\n\\n");
    ``priors`` gives each child's probability (its log is the step's logprob).
    """

    def __init__(self, scores: dict, texts: dict | None = None, priors: Sequence[float] | None = None) -> None:
        self.scores, self.texts, self.priors = scores, texts or {}, priors
        self.calls: list[list[tuple[int, ...]]] = []  # the node paths requested, per call
        self.released: list[TokenPath] = []

    def expand(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> list[Expansion]:
        self.calls.append([self._indices(r.path) for r in requests])
        return [Expansion(tuple(self._child(r, i) for i in range(r.k)), forwarded_tokens=r.k) for r in requests]

    def release(self, paths: Sequence[TokenPath]) -> None:
        self.released.extend(paths)

    def _child(self, request: ExpandRequest, index: int) -> ChildStep:
        path = self._indices(request.path) + (index,)
        prior = self.priors[index] if self.priors else 1.0 / request.k
        text = self.texts.get(path, f"s{''.join(map(str, path))}.\n\n")
        end = StepEnd.EOS if text.endswith("<eos>") else StepEnd.DELIMITER
        return ChildStep((index + 1,), text.replace("<eos>", ""), math.log(prior), self.scores.get(path, 0.5), end)

    @staticmethod
    def _indices(path: TokenPath) -> tuple[int, ...]:
        return tuple(segment[0] - 1 for segment in path[1:])


class NullModel:
    """Just enough model for ReflectiveSearch with a fake expander: prompts as char codes."""

    def encode_prompt(self, problem: str) -> list[int]:
        if not isinstance(problem, str) or not problem.strip():
            from reflective_search.errors import ProblemError

            raise ProblemError("the problem is empty: pass the question's text")
        return [ord(c) for c in problem]

    def format_prompt(self, problem: str) -> str:
        return problem
