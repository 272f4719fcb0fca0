"""Where an experiment's problems come from, and who decides whether an answer is correct.

Two sources: a JSONL file of ``{"problem": ..., "answer": ...}`` records, or a built-in
generator. Two registries, keyed by the names YAML uses: ``GENERATORS`` (problem makers
with their own options dataclass and task) and ``TASKS`` (answer checkers). A file is
checked against its records' answers (``FILE_TASK``) unless it names another task. Every
record is checked when loaded, so a bad line is reported (with its number) before any
work starts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from reflective_search.answers import answers_equal, extract_answer
from reflective_search.errors import ConfigError, ProblemError
from reflective_search.jsonl import json_object
from reflective_search.tasks.countdown import CountdownProblem, CountdownTask

if TYPE_CHECKING:
    from reflective_search.experiments.spec import ProblemsSpec
    from reflective_search.solution import Solution

ProblemId = int | str


@dataclass(frozen=True, slots=True)
class Problem:
    problem_id: ProblemId  # the record's "id" if it has one, else its 0-based position
    text: str  # the problem as posed to the model
    record: dict[str, Any]  # the whole record; checkers read "answer" (and more) from it


# -- tasks: answer checkers ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    is_correct: Callable[[dict, "Solution"], bool]  # whether a solution solves the record
    unusable: Callable[[dict], str | None]  # why a record cannot be checked (None: it can)


def _countdown_correct(record: dict, solution: "Solution") -> bool:
    return CountdownTask().is_correct(record, solution.text)


def _countdown_unusable(record: dict) -> str | None:
    if CountdownProblem.parse(record["problem"]) is None:
        return ("the problem is not in the countdown format ('Numbers: 3 7 8. Target: 29.'); "
                "drop problems.task: countdown to check other problems against their answers")
    return None


def _math_correct(record: dict, solution: "Solution") -> bool:
    # A vote's answer may come from another member of its group than the chosen text.
    answer = solution.answer if solution.answer is not None else extract_answer(solution.text)
    return answers_equal(answer, str(record["answer"]))


def _math_unusable(record: dict) -> str | None:
    if record.get("answer") is None:
        return ("the record has no 'answer' to check against: add one (a problems file is checked "
                "against its answers unless problems.task names another task)")
    return None


def _arithmetic_correct(record: dict, solution: "Solution") -> bool:
    from reflective_search.tasks.arithmetic import ArithmeticProblem, check_answer

    problem = ArithmeticProblem.parse(record["problem"])
    return problem is not None and check_answer(problem, solution.text)


def _arithmetic_unusable(record: dict) -> str | None:
    from reflective_search.tasks.arithmetic import ArithmeticProblem

    if ArithmeticProblem.parse(record["problem"]) is None:
        return "the problem is not in the arithmetic format ('Evaluate: 7 + 4 * 9 - 8')"
    return None


TASKS = {
    "countdown": Task(_countdown_correct, _countdown_unusable),
    "arithmetic": Task(_arithmetic_correct, _arithmetic_unusable),
    "math": Task(_math_correct, _math_unusable),
}
FILE_TASK = "math"  # a problems file with no task: answer equality, the one checker any problem can use


# -- generators ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CountdownOptions:
    num_numbers: int = 3  # numbers per problem, 2..5
    low: int = 1  # smallest number drawn
    high: int = 9  # largest number drawn
    target_low: int = 1  # smallest target
    target_high: int = 100  # largest target

    def __post_init__(self) -> None:
        checks = (
            ("num_numbers", 2 <= self.num_numbers <= 5, "an integer in 2..5"),
            ("low", self.low >= 1, "an integer >= 1"),
            ("high", self.high >= self.low, f"an integer >= low ({self.low})"),
            ("target_low", self.target_low >= 1, "an integer >= 1"),
            ("target_high", self.target_high >= self.target_low, f"an integer >= target_low ({self.target_low})"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"problems.options.{key}: {getattr(self, key)!r} is not allowed; expected {expected}")


@dataclass(frozen=True, slots=True)
class Generator:
    options: type  # the dataclass of its options (YAML problems.options)
    task: str  # the task whose checker grades its problems
    make: Callable[[int, int, Any], list[dict]]  # (count, seed, options) -> records


def _countdown_records(count: int, seed: int, options: CountdownOptions) -> list[dict]:
    try:
        return CountdownTask().generate(count, seed, **asdict(options))
    except ValueError as exc:  # e.g. no reachable target in the requested range
        raise ConfigError(f"problems.options: {exc}: widen the ranges") from None


@dataclass(frozen=True, slots=True)
class ArithmeticOptions:
    depths: tuple[int, ...] = (2, 4, 6, 8)  # operations per problem; count problems of each depth
    split: str = "test"  # held-out split: test | valid (never in the training stream); the seed is unused
    digits: int = 2  # operand digits: 1 or 2 (literals up to 99)

    def __post_init__(self) -> None:
        checks = (
            ("depths", bool(self.depths) and all(isinstance(d, int) and 1 <= d <= 10 for d in self.depths),
             "a list of integers in 1..10"),
            ("split", self.split in ("test", "valid"), "test | valid"),
            ("digits", self.digits in (1, 2), "1 or 2"),
        )
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"problems.options.{key}: {getattr(self, key)!r} is not allowed; expected {expected}")


def _arithmetic_records(count: int, seed: int, options: ArithmeticOptions) -> list[dict]:
    from reflective_search.tasks.arithmetic import split_records

    return split_records(count, options.split, options.depths, options.digits)


GENERATORS = {"countdown": Generator(CountdownOptions, "countdown", _countdown_records),
              "arithmetic": Generator(ArithmeticOptions, "arithmetic", _arithmetic_records)}
DEFAULT_GENERATOR = "countdown"


# -- loading -----------------------------------------------------------------------------------


def load_problems(spec: "ProblemsSpec") -> list[Problem]:
    """The problems a resolved ``ProblemsSpec`` names, checked for its task, limit applied."""
    if spec.file is not None:
        problems = read_jsonl_problems(Path(spec.file), TASKS[spec.task])
    else:
        generator = GENERATORS[spec.generator]
        records = generator.make(spec.count, spec.seed, spec.options)
        problems = [Problem(record.get("id", index), record["problem"], record) for index, record in enumerate(records)]
    return problems[: spec.limit] if spec.limit is not None else problems


def read_jsonl_problems(path: Path, task: Task) -> list[Problem]:
    """Records of a JSONL file, one object per line (blank lines skipped)."""
    try:
        lines = path.read_bytes().decode("utf-8").split("\n")  # JSONL lines end at \n: a lone \r, \u2028 are text
    except OSError as exc:
        raise ProblemError(f"cannot read problems file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProblemError(f"problems file {path} is not UTF-8 text") from None
    problems: list[Problem] = []
    first_line: dict[ProblemId, int] = {}
    for number, line in enumerate(lines, start=1):
        if line.strip():
            problem = _parse_line(line, len(problems), task, f"{path} line {number}")
            if problem.problem_id in first_line:
                raise ProblemError(f"{path} line {number}: id {problem.problem_id!r} is already used on line "
                                   f"{first_line[problem.problem_id]}: ids must be unique")
            first_line[problem.problem_id] = number
            problems.append(problem)
    if not problems:
        raise ProblemError(f"problems file {path} holds no problems: write one JSON object per line")
    return problems


def _parse_line(line: str, position: int, task: Task, where: str) -> Problem:
    record = json_object(line, where, '{"problem": ..., "answer": ...}')
    if "problem" not in record:
        raise ProblemError(f"{where}: the record has no 'problem' field")
    if not isinstance(record["problem"], str) or not record["problem"].strip():
        raise ProblemError(f"{where}: 'problem' must be non-empty text")
    problem_id = record.get("id", position)
    if not isinstance(problem_id, (int, str)) or isinstance(problem_id, bool):
        raise ProblemError(f"{where}: 'id' must be an integer or a string")
    reason = task.unusable(record)
    if reason is not None:
        raise ProblemError(f"{where}: {reason}")
    return Problem(problem_id, record["problem"], record)
