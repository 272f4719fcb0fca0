"""Search step limits drawn from a task's worked solutions.

A policy fine-tuned on a problems file saves sampling limits that fit the file's solutions,
in place of the library's (256-token steps, 32 steps):

* ``sampling.max_step_tokens``: the longest step, in the model's tokens, times 1.5, rounded
  up to a multiple of 8 (room for a longer step than any seen, never a cut one);
* ``sampling.max_steps``: the most steps in one solution, plus 2.

A task with limits of its own (Countdown's fit all its problem sizes) keeps them where the
file's solutions need less: a file may hold only some of the task's problems.

Steps are cut as the search cuts them (``expand.decoding``), on the tokens training feeds
(the solution, then end-of-sequence): a step ends at the token that completes a delimiter
in its decoded text, or at end-of-sequence; a step that states an answer ends the solution.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

from reflective_search.model.reflective import ReflectiveModel

HEADROOM = 1.5  # max_step_tokens: the longest step times this ...
ROUND_TO = 8  # ... rounded up to a multiple of this
EXTRA_STEPS = 2  # max_steps: the most steps plus this


@dataclass(frozen=True, slots=True)
class StepLimits:
    longest_step: int  # tokens in the longest step of any solution
    most_steps: int  # steps in the solution with the most

    def search_defaults(self, floor: dict | None = None) -> tuple[tuple[str, int], ...]:
        """The sampling limits these solutions call for, as dotted search settings, never below
        ``floor``'s (a task's own search defaults)."""
        floor = floor or {}
        tokens = ROUND_TO * math.ceil(self.longest_step * HEADROOM / ROUND_TO)
        drawn = {"sampling.max_step_tokens": tokens, "sampling.max_steps": self.most_steps + EXTRA_STEPS}
        return tuple((key, max(value, floor.get(key, 0))) for key, value in drawn.items())


def solution_steps(model: ReflectiveModel, solution: str) -> list[int]:
    """Tokens in each step of ``solution`` as the model writes it, end-of-sequence included."""
    from reflective_search.answers import is_final_step

    tokenizer, boundary = model.tokenizer, model.boundary
    ids = tokenizer(solution, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    steps, current = [], []
    for token in ids:
        current.append(token)
        ended = token in model.eos_token_ids or (
            bool(boundary.may_end[token]) and boundary.find(model.decode(current)) is not None)
        if ended:
            steps.append(len(current))
            if token in model.eos_token_ids or is_final_step(model.decode(current)):
                break
            current = []
    return steps


def step_limits(model: ReflectiveModel, solutions: Iterable[str]) -> StepLimits:
    """The longest step and the most steps over ``solutions`` (at least one)."""
    counted = [solution_steps(model, solution) for solution in solutions]
    return StepLimits(max(max(steps) for steps in counted), max(len(steps) for steps in counted))
