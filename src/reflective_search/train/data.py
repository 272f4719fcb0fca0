"""Countdown training data: solver-found solutions for the policy, held-out sets kept apart.

Evaluation and validation problems are fixed generator draws (``EVAL_SEED`` / ``VALID_SEED``
for 3 and 4 numbers); every training draw whose key (sorted numbers, target) is among
them is skipped, so no held-out problem is ever trained on, whatever the training seed.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from functools import lru_cache

from reflective_search.tasks.countdown import (
    CountdownProblem, Difficulty, draw_problem, generate_problems, problem_key, solution_text, solve_random,
)

EVAL_SEED = 1000  # the 500 held-out evaluation problems (per number count)
EVAL_COUNT = 500
VALID_SEED = 2000  # the validation split: tuning (MCTS budget, temperature) happens here only
VALID_COUNT = 200
HELD_OUT_COUNTS = (3, 4)  # number counts the evaluation and scaling study use
PROMPT_TEMPLATE = "{problem}\n\n"  # the model's prompt; short, since every token costs on CPU
# Every printable ASCII character: problems outside the format still encode without <unk>.
ALPHABET = string.digits + " +-*/()=,.:\n" + string.ascii_letters + string.punctuation


@dataclass(frozen=True, slots=True)
class Example:
    problem: CountdownProblem  # the problem posed
    response: str  # the solver's solution in canonical step format


def difficulty_for(count: int) -> Difficulty:
    """The default distribution with ``count`` numbers (1..9, targets 1..100)."""
    return Difficulty(count=count)


def eval_problems(count: int, n: int = EVAL_COUNT) -> list[CountdownProblem]:
    """The first ``n`` held-out evaluation problems with ``count`` numbers."""
    return generate_problems(n, EVAL_SEED, difficulty_for(count))


def valid_problems(count: int, n: int = VALID_COUNT) -> list[CountdownProblem]:
    """The first ``n`` validation problems with ``count`` numbers."""
    return generate_problems(n, VALID_SEED, difficulty_for(count))


@lru_cache(maxsize=1)
def held_out_keys() -> frozenset[tuple]:
    """Keys of every evaluation and validation problem (never trained on)."""
    keys = set()
    for count in HELD_OUT_COUNTS:
        keys |= {problem_key(p) for p in eval_problems(count) + valid_problems(count)}
    return frozenset(keys)


def draw_training_problem(rng: random.Random, count: int) -> CountdownProblem:
    """A random solvable problem with ``count`` numbers that is not held out."""
    held_out = held_out_keys()
    while problem_key(problem := draw_problem(rng, difficulty_for(count))) in held_out:
        pass
    return problem


def draw_example(rng: random.Random, count: int) -> Example:
    """A training problem and one of its solutions, drawn move by move at random."""
    problem = draw_training_problem(rng, count)
    ops = solve_random(problem.numbers, problem.target, rng)
    return Example(problem, solution_text(problem, ops))


def encode_example(model, problem_text: str, response: str) -> tuple[list[int], int]:
    """Token ids of prompt + response + EOS, exactly as the search feeds them, and the prompt length."""
    prompt = model.encode_prompt(problem_text)
    response_ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    return prompt + list(response_ids) + [model.tokenizer.eos_token_id], len(prompt)
