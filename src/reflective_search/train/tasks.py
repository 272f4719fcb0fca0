"""What training and evaluation need from a task: problems, a checker, step labels, a prompt.

A task is one small record of functions, found by name (``TASKS``). ``countdown`` has its
own generator, checker and step labeller; ``math`` is answer equality (math-verify, with
numeric and string fallbacks) against each problem's reference ``answer``. A problem set
is either a built-in generator (``countdown``) or a JSONL file of records::

    {"problem": "Evaluate: 3+4*2", "answer": "11", "solution": "4*2=8.\\n\\n3+8=11.\\n\\nAnswer: 11"}

where ``solution`` (a text, or a list of step texts joined with the model's delimiter)
is needed only to fine-tune a policy, and ``answer`` only to check a response.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from reflective_search.errors import ProblemError


@dataclass(frozen=True, slots=True)
class TrainingProblem:
    text: str  # the problem as posed (the model's message template wraps it)
    answer: str | None = None  # reference final answer (tasks that compare answers)
    solution: str | None = None  # a worked solution, steps ending in the delimiter (policy fine-tuning)


@dataclass(frozen=True, slots=True)
class Task:
    name: str  # as the command line and YAML spell it
    message_template: str  # the user message a model trained on this task is prompted with
    search_defaults: tuple[tuple[str, object], ...]  # dotted SearchConfig overrides that fit the task
    correct: Callable[[TrainingProblem, str], bool]  # whether a response's final answer checks out
    step_labels: Callable[[TrainingProblem, str], list[bool]] | None  # true step labels, if the task has them
    answer_key: Callable[[str], str | None]  # what counts as "the same answer" (self-consistency votes)
    # (problem, correct response, faked response) triples from the training stream, for
    # contrast pairs in head training: (count, number counts, seed) -> triples; None: none
    contrast: Callable[[int, Sequence[int], int], list[tuple[TrainingProblem, str, str]]] | None = None


def _countdown_correct(problem: TrainingProblem, response: str) -> bool:
    from reflective_search.tasks.countdown import CountdownProblem, check_answer

    parsed = CountdownProblem.parse(problem.text)
    return parsed is not None and check_answer(parsed, response)


def _countdown_labels(problem: TrainingProblem, response: str) -> list[bool]:
    from reflective_search.tasks.countdown import CountdownProblem
    from reflective_search.tasks.countdown_labels import label_steps

    parsed = CountdownProblem.parse(problem.text)
    return label_steps(parsed, response) if parsed is not None else []


def _math_correct(problem: TrainingProblem, response: str) -> bool:
    from reflective_search.answers import answers_equal, extract_answer

    return problem.answer is not None and answers_equal(extract_answer(response), problem.answer)


def _math_key(response: str) -> str | None:
    from reflective_search.answers import extract_answer

    answer = extract_answer(response)
    return None if answer is None else "".join(answer.split())


def _countdown_contrast(count: int, number_counts: Sequence[int], seed: int) -> list[tuple[TrainingProblem, str, str]]:
    """``count`` training problems (never held out, sizes cycling through ``number_counts``),
    each with a solution drawn at random and a faked one (``countdown_fakes.faked_solution``);
    problems that admit no faked solution are skipped."""
    from reflective_search.tasks.countdown import solution_text, solve_random
    from reflective_search.tasks.countdown_fakes import faked_solution
    from reflective_search.train.data import draw_training_problem

    rng, out = random.Random(seed), []
    while len(out) < count:
        problem = draw_training_problem(rng, number_counts[len(out) % len(number_counts)])
        faked = faked_solution(problem, rng)
        if faked is not None:
            correct = solution_text(problem, solve_random(problem.numbers, problem.target, rng))
            out.append((TrainingProblem(problem.text, str(problem.target)), correct, faked))
    return out


def _countdown_task() -> Task:
    from reflective_search.tasks.countdown import PROMPT_TEMPLATE, SEARCH_LIMITS, answer_key

    return Task("countdown", PROMPT_TEMPLATE.rstrip("\n"), tuple(SEARCH_LIMITS.items()), _countdown_correct,
                _countdown_labels, answer_key, _countdown_contrast)


def _arithmetic_task() -> Task:
    from reflective_search.tasks import arithmetic

    def correct(problem: TrainingProblem, response: str) -> bool:
        parsed = arithmetic.ArithmeticProblem.parse(problem.text)
        return parsed is not None and arithmetic.check_answer(parsed, response)

    def labels(problem: TrainingProblem, response: str) -> list[bool]:
        parsed = arithmetic.ArithmeticProblem.parse(problem.text)
        return arithmetic.label_steps(parsed, response) if parsed is not None else []

    return Task("arithmetic", arithmetic.PROMPT_TEMPLATE.rstrip("\n"), tuple(arithmetic.SEARCH_LIMITS.items()),
                correct, labels, arithmetic.answer_key)


TASKS: dict[str, Callable[[], Task]] = {
    "countdown": _countdown_task,
    "math": lambda: Task("math", "{problem}", (), _math_correct, None, _math_key),
    "arithmetic": _arithmetic_task,
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ProblemError(f"unknown task {name!r}: use one of {', '.join(TASKS)}")
    return TASKS[name]()


# -- problem sources -------------------------------------------------------------------------


def read_problem_file(path, need: str | None = None) -> list[TrainingProblem]:
    """Problems from a JSONL file; ``need`` ("answer" or "solution") is checked on every line first."""
    path = Path(path)
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")  # JSONL lines end at \n: a lone \r, \u2028 are text
    except OSError as exc:
        raise ProblemError(f"{path}: cannot read the problems file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ProblemError(f"{path}: the problems file is not UTF-8 text") from None
    problems = [_parse_record(line, number, path, need) for number, line in enumerate(lines, 1) if line.strip()]
    if not problems:
        raise ProblemError(f"{path}: holds no problems (one JSON object per line)")
    if need == "solution":  # a trajectories file: its wrong trajectories are no solutions
        problems = [p for p in problems if p.solution is not None]
        if not problems:
            raise ProblemError(f"{path}: none of its trajectories is correct, so there is nothing to fine-tune on")
    return problems


def _parse_record(line: str, number: int, path: Path, need: str | None) -> TrainingProblem:
    try:
        record = json.loads(line)
    except ValueError:
        raise ProblemError(f"{path}:{number}: not a JSON object") from None
    if not isinstance(record, dict) or not isinstance(record.get("problem"), str) or not record["problem"].strip():
        raise ProblemError(f"{path}:{number}: a record needs a non-empty 'problem' text")
    solution = record.get("solution")
    if need == "solution" and solution is None and _is_trajectory(record):
        solution = record["response"] if record["correct"] else None  # expert iteration: correct samples only
    elif need is not None and record.get(need) in (None, "", []):
        raise ProblemError(f"{path}:{number}: the record has no '{need}', which this command needs")
    if isinstance(solution, list):
        solution = ".\n\n".join(str(step).rstrip(".") for step in solution) + ".\n\n"
    answer = record.get("answer")
    return TrainingProblem(record["problem"], None if answer is None else str(answer), solution)


def _is_trajectory(record: dict) -> bool:
    """A line of a trajectories file (``train sprm --trajectories``): a response and its correctness."""
    return isinstance(record.get("response"), str) and isinstance(record.get("correct"), bool)


def countdown_problems(count: int, number_counts: Sequence[int], seed: int,
                       with_solutions: bool = False) -> list[TrainingProblem]:
    """``count`` Countdown training problems (never held out), sizes cycling through ``number_counts``;
    with solutions drawn move by move at random among moves that still reach the target."""
    from reflective_search.train.data import draw_example, draw_training_problem

    rng = random.Random(seed)
    out = []
    for index in range(count):
        size = number_counts[index % len(number_counts)]
        if with_solutions:
            example = draw_example(rng, size)
            out.append(TrainingProblem(example.problem.text, str(example.problem.target), example.response))
        else:
            problem = draw_training_problem(rng, size)
            out.append(TrainingProblem(problem.text, str(problem.target)))
    return out


def load_problems(source: str, count: int, number_counts: Sequence[int], seed: int,
                  need: str | None = None) -> list[TrainingProblem]:
    """``countdown`` (the generator) or a JSONL path, as ``--problems`` names them."""
    if source == "countdown":
        return countdown_problems(count, number_counts, seed, with_solutions=need == "solution")
    problems = read_problem_file(source, need)
    return problems[:count] if count else problems
