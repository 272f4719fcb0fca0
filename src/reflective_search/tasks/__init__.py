"""Reasoning tasks (problem generators, answer checkers, step labellers)."""

from reflective_search.tasks.countdown import CountdownProblem, CountdownTask, Difficulty

__all__ = ["CountdownProblem", "CountdownTask", "Difficulty"]
