"""Faked Countdown solutions: wrong trajectories that look solved, the way a policy lies.

Hard negatives for head training (``train sprm --contrast``): the policy's wrong samples
mostly reach a dead end with true moves and then write a false equation claiming the
target; a head trained on the policy's own samples sees too few clean contrasts of that.
"""

from __future__ import annotations

import random

from reflective_search.tasks.countdown import CountdownProblem, Operation, _apply, _moves, _reach, solution_text


def faked_solution(problem: CountdownProblem, rng: random.Random, attempts: int = 20) -> str | None:
    """A wrong trajectory that looks solved, the way a policy lies: true moves, each to a
    state that can no longer reach the target, until two numbers are left; then a false
    equation on them claiming the target (the operator whose true value is nearest it,
    at most 10 off), and the answer it implies. Rendered like ``solution_text``;
    ``check_answer`` rejects it. None when no such path turns up in ``attempts`` draws.
    Used as hard negatives for head training (``train sprm --contrast``)."""
    for _ in range(attempts):
        nums, ops = tuple(sorted(problem.numbers)), []
        while len(nums) > 2 and (moves := [(o, n) for o, n in _moves(nums) if problem.target not in _reach(n)]):
            operation, nums = rng.choice(moves)
            ops.append(operation)
        if len(nums) != 2:
            return None  # every move keeps the target reachable: no dead end to lie from
        a, b = max(nums), min(nums)
        near = sorted((abs(v - problem.target), op) for op in "+-*"
                      if (v := _apply(a, op, b)) is not None and v != problem.target)
        if near and near[0][0] <= 10:
            return solution_text(problem, ops + [Operation(a, near[0][1], b, problem.target)], false_last=True)
    return None
