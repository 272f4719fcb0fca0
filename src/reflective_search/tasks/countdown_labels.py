"""Step labels for Countdown responses: evaluation only (the head never trains on them).

A step is good when it is a legal, correctly computed operation on numbers still
available, lists the true remaining numbers, and leaves the target reachable; the
``Answer:`` step is good when the answer checks out. After a bad step, every step is bad.
"""

from __future__ import annotations

import re
from collections import Counter

from reflective_search.tasks.countdown import STEP_DELIMITER, CountdownProblem, _apply, check_answer, is_reachable

_STEP_RE = re.compile(
    r"^([0-9]+)\s*([-+*/])\s*([0-9]+)\s*=\s*([0-9]+)\s*,\s*left\s+([0-9]+(?:\s+[0-9]+)*)\s*\.?$"
)


def split_steps(response_text: str) -> list[str]:
    """Steps of a response: pieces between delimiters, plus a non-empty tail.

    A run of adjacent delimiters ends one step, as the model's step boundary counts it, so
    labels line up one to one with the scores the head gives.
    """
    pieces = response_text.split(STEP_DELIMITER)
    if len(pieces) > 2:  # drop the empty pieces between adjacent delimiters
        pieces = pieces[:1] + [p for p in pieces[1:-1] if p] + pieces[-1:]
    if not pieces[-1].strip():
        pieces.pop()
    return [p.strip() for p in pieces]


def _grade_operation(step: str, state: Counter, target: int) -> Counter | None:
    """The new state if ``step`` is a correct operation step from ``state``, else None."""
    m = _STEP_RE.match(step)
    if m is None:
        return None
    try:
        a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
        left = Counter(int(x) for x in m[5].split())
    except ValueError:  # digit strings beyond int()'s length limit
        return None
    if _apply(a, op, b) != c or state[a] < 1 + (a == b) or state[b] < 1:
        return None
    new = state - Counter([a, b]) + Counter([c])
    if left != new or not is_reachable(list(new.elements()), target):
        return None
    return new


def label_steps(problem: CountdownProblem, response_text: str) -> list[bool]:
    """Grade each step of a response (evaluation only; see task description).

    Args:
        problem: the problem.
        response_text: the response, steps separated by ``".\\n\\n"``.
    Returns:
        One bool per step: operation steps must be legal, correctly computed,
        list the true remaining numbers and keep the target reachable; the
        ``Answer:`` step must pass ``check_answer``. After a bad step, all bad.
    """
    state: Counter | None = Counter(problem.numbers)
    labels = []
    for step in split_steps(response_text):
        if state is not None and step.startswith("Answer:"):
            good = check_answer(problem, step)
            state = None  # the answer ends the solution: nothing after it counts
        elif state is not None:
            state = _grade_operation(step, state, problem.target)
            good = state is not None
        else:
            good = False
        labels.append(good)
    return labels
