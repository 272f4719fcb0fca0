"""Reasoning tasks (problem generators, answer checkers, step labellers)."""

from reflective_search.tasks.countdown import CountdownProblem, CountdownTask, Difficulty

__all__ = ["CountdownProblem", "CountdownTask", "Difficulty", "verdict"]


def verdict(problem_text: str, response_text: str) -> str | None:
    """The verdict of the task that poses ``problem_text`` (``solved`` or ``not solved: why``),
    or None when no built-in task poses it (there is no answer to check)."""
    from reflective_search.tasks import arithmetic, countdown

    for module, problem in ((countdown, countdown.CountdownProblem), (arithmetic, arithmetic.ArithmeticProblem)):
        if problem.parse(problem_text) is not None:
            return module.verdict(problem_text, response_text)
    return None
