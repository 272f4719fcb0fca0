"""Countdown: combine the given numbers with + - * / to reach a target.

Problem text (numbers in generation order, single spaces)::

    Numbers: 3 7 8. Target: 29.

Canonical solution text (what the policy imitates; deterministic given the
operation path); every step ends with the delimiter ``".\\n\\n"``:

* Operation step ``"{a}{op}{b}={c}, left {rest}.\\n\\n"``: larger operand first
  (``a >= b``) for every operator, ``c`` a positive integer (``-`` only when
  ``a > b``, ``/`` only when exact); ``rest`` lists the untouched numbers in
  their current order, then ``c``. With repeated values the first occurrence
  in the current list is the one used.
* Final step ``"Answer: {expr}.\\n\\n"``: the whole computation as one
  expression, each step written ``a op b`` as in its step, with only the
  parentheses needed (e.g. ``7*(8-3)``, ``9-(5-2)``, ``8/(4/2)``, ``7*3+8``).

Example for the problem above::

    7*3=21, left 8 21.

    21+8=29, left 29.

    Answer: 7*3+8.

Answer checking (``check_answer``) evaluates the final expression exactly
with ``fractions.Fraction``: non-integer or negative intermediates are
accepted as long as the literals are exactly the given numbers and the value
equals the target.  The step rules (positive integers only) apply only to
operation steps, which ``countdown_labels.label_steps`` grades.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from reflective_search.tasks.expression import evaluate

OPS = ("+", "-", "*", "/")
STEP_DELIMITER = ".\n\n"
SEARCH_LIMITS = {  # sampling limits that fit Countdown: a step is < 32 characters; <= 4 ops + answer
    "sampling.max_step_tokens": 32,
    "sampling.max_steps": 6,
}
PROMPT_TEMPLATE = (
    "Use each number exactly once with + - * / to reach the target. "
    "Work one operation per step.\n{problem}\n\n"
)
# [0-9] rather than \d: \d also matches non-ASCII digits, which int() would accept.
_PROBLEM_RE = re.compile(
    r"^\s*Numbers:\s*([0-9]+(?:\s+[0-9]+)*)\s*\.\s*Target:\s*([0-9]+)\s*\.?\s*$"
)


@dataclass(frozen=True, slots=True)
class CountdownProblem:
    """A Countdown instance: 2-5 positive integers and a positive target."""

    numbers: tuple[int, ...]
    target: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "numbers", tuple(self.numbers))
        if not 2 <= len(self.numbers) <= 5:
            raise ValueError(f"numbers must have 2..5 entries, got {len(self.numbers)}")
        if any(n < 1 for n in self.numbers) or self.target < 1:
            raise ValueError("numbers and target must be positive integers")

    @property
    def text(self) -> str:
        """The canonical problem text, e.g. ``Numbers: 3 7 8. Target: 29.``"""
        return f"Numbers: {' '.join(map(str, self.numbers))}. Target: {self.target}."

    @staticmethod
    def parse(text: str) -> CountdownProblem | None:
        """Parse problem text, tolerating extra whitespace.

        Args:
            text: text such as ``"Numbers: 3 7 8. Target: 29."``.
        Returns:
            The problem, or None if the text is not in the format (never raises).
        """
        match = _PROBLEM_RE.match(text) if isinstance(text, str) else None
        if match is None:
            return None
        try:
            return CountdownProblem(tuple(int(n) for n in match[1].split()), int(match[2]))
        except ValueError:  # wrong count, zero values, or absurdly long digit strings
            return None


@dataclass(frozen=True, slots=True)
class Difficulty:
    """Generator settings: how many numbers, their range, and the target range."""

    count: int = 3
    low: int = 1
    high: int = 9
    target_low: int = 1
    target_high: int = 100

    def __post_init__(self) -> None:
        checks = (
            ("count", self.count, 2, 5, "in 2..5"),
            ("low", self.low, 1, None, ">= 1"),
            ("high", self.high, self.low, None, f">= low ({self.low})"),
            ("target_low", self.target_low, 1, None, ">= 1"),
            ("target_high", self.target_high, self.target_low, None,
             f">= target_low ({self.target_low})"),
        )
        for name, value, lo, hi, allowed in checks:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if not ok or value < lo or (hi is not None and value > hi):
                raise ValueError(f"Difficulty.{name} must be an integer {allowed}, got {value!r}")


@dataclass(frozen=True, slots=True)
class Operation:
    """One step ``a op b = result`` (canonically ``a >= b``)."""

    a: int
    op: str
    b: int
    result: int


def _apply(a: int, op: str, b: int) -> int | None:
    """Result of ``a op b`` if it is a positive integer, else None."""
    if op == "-":
        return a - b if a > b else None
    if op == "/":
        return a // b if b and a >= b and a % b == 0 else None
    return a + b if op == "+" else a * b if op == "*" else None


def _moves(nums: tuple[int, ...]):
    """Yield (Operation, remaining multiset sorted) for every legal move, in a fixed order."""
    seen = set()
    for i in range(len(nums)):
        for j in range(i + 1, len(nums)):
            b, a = nums[i], nums[j]  # sorted input, so a >= b
            if (a, b) in seen:
                continue  # identical pair values give identical successors
            seen.add((a, b))
            rest = nums[:i] + nums[i + 1:j] + nums[j + 1:]
            for op in OPS:
                c = _apply(a, op, b)
                if c is not None:
                    yield Operation(a, op, b, c), tuple(sorted(rest + (c,)))


@lru_cache(maxsize=1 << 17)
def _reach(nums: tuple[int, ...]) -> frozenset[int]:
    """All values reachable by combining every number of a sorted multiset."""
    if len(nums) <= 1:
        return frozenset(nums)
    out: set[int] = set()
    for _, nxt in _moves(nums):
        out |= _reach(nxt)
    return frozenset(out)


def is_reachable(numbers, target: int) -> bool:
    """Whether ``target`` is reachable using every number exactly once.

    Args:
        numbers: the available numbers (any order, a multiset).
        target: the value to reach.
    Returns:
        True iff some sequence of legal steps ends with exactly ``target``.
    """
    return bool(numbers) and target in _reach(tuple(sorted(numbers)))


def solve(numbers, target: int) -> list[Operation] | None:
    """Find one solution path by exhaustive memoised search (deterministic).

    Args:
        numbers: the available numbers (a multiset).
        target: the value to reach.
    Returns:
        Operations combining all numbers into ``target``, or None if impossible.
    """
    return _walk_to_target(numbers, target, lambda moves: moves[0])


def _combine(left: tuple[str, str], op: str, right: tuple[str, str]) -> tuple[str, str]:
    """Join two (text, kind) expressions with minimal parentheses."""
    additive = right[1] in ("+", "-")
    wrap_left = op in "*/" and left[1] in ("+", "-")
    # a+(b-c) == a+b-c, a*(b/c) == a*b/c, but a-(b+c), a/(b*c) need their parentheses.
    wrap_right = {"+": False, "-": additive, "*": additive, "/": right[1] != "atom"}[op]
    lt = f"({left[0]})" if wrap_left else left[0]
    rt = f"({right[0]})" if wrap_right else right[0]
    return f"{lt}{op}{rt}", op


def _take(items: list, value: int, skip: int = -1) -> int:
    """Index of the first item with ``value`` (other than ``skip``); ValueError if none."""
    for k, (v, _) in enumerate(items):
        if v == value and k != skip:
            return k
    raise ValueError(f"{value} is not available")


def solution_text(problem: CountdownProblem, ops: list[Operation], false_last: bool = False) -> str:
    """Render an operation path in the canonical step format (see module doc).

    Args:
        problem: the problem being solved.
        ops: operations that combine all the problem's numbers into one.
        false_last: the last operation's result is a claim, not its value (``countdown_fakes``).
    Returns:
        The step texts followed by the ``Answer:`` step.
    Raises:
        ValueError: if an operation is illegal or the path leaves != 1 number.
    """
    items = [(n, (str(n), "atom")) for n in problem.numbers]
    parts = []
    for index, o in enumerate(ops):
        i = _take(items, o.a)
        j = _take(items, o.b, skip=i)
        if _apply(o.a, o.op, o.b) != o.result and not (false_last and index == len(ops) - 1):
            raise ValueError(f"illegal operation {o}")
        expr = _combine(items[i][1], o.op, items[j][1])
        items = [it for k, it in enumerate(items) if k not in (i, j)] + [(o.result, expr)]
        left = " ".join(str(v) for v, _ in items)
        parts.append(f"{o.a}{o.op}{o.b}={o.result}, left {left}{STEP_DELIMITER}")
    if len(items) != 1:
        raise ValueError(f"path leaves {len(items)} numbers, expected 1")
    parts.append(f"Answer: {items[0][1][0]}{STEP_DELIMITER}")
    return "".join(parts)


def random_legal_play(problem: CountdownProblem, rng: random.Random) -> str:
    """A trajectory of uniformly random legal moves, in canonical format.

    Args:
        problem: the problem to play.
        rng: source of randomness.
    Returns:
        Canonical text ending in ``Answer:`` with whatever single number remains.
    """
    nums = list(problem.numbers)
    ops = []
    while len(nums) > 1:
        i, j = sorted(rng.sample(range(len(nums)), 2))
        a, b = max(nums[i], nums[j]), min(nums[i], nums[j])
        op = rng.choice([o for o in OPS if _apply(a, o, b) is not None])
        ops.append(Operation(a, op, b, _apply(a, op, b)))
        nums = [n for k, n in enumerate(nums) if k not in (i, j)] + [ops[-1].result]
    return solution_text(problem, ops)


def extract_expression(response_text: str) -> str | None:
    """The expression after the last ``Answer:`` (first line, trailing ``.`` stripped).

    Args:
        response_text: a model response.
    Returns:
        The expression text, or None if there is no non-empty answer.
    """
    if not isinstance(response_text, str) or "Answer:" not in response_text:
        return None
    rest = response_text.rsplit("Answer:", 1)[1].strip()
    line = rest.split("\n", 1)[0].strip()
    if line.endswith("."):
        line = line[:-1].rstrip()
    return line or None


def answer_key(response_text: str) -> str | None:
    """What makes two responses one vote: their final expression, whitespace removed.

    The value would be the wrong key: ``2*2-1`` and ``2+2-1`` both make 3, and an
    expression that reaches the target with the wrong numbers is no solution.

    Args:
        response_text: a model response.
    Returns:
        The normalised expression, or None if the response states no answer.
    """
    expression = extract_expression(response_text)
    return None if expression is None else "".join(expression.split())


def check_answer(problem: CountdownProblem, response_text: str) -> bool:
    """Whether the response's final ``Answer:`` expression is a valid solution.

    Args:
        problem: the problem.
        response_text: the response (only the last ``Answer:`` counts).
    Returns:
        True iff the expression uses exactly the problem's numbers (multiset),
        only ``+ - * /``, parentheses and integer literals, and evaluates
        exactly (Fractions) to the target. Never raises.
    """
    expr = extract_expression(response_text)
    if expr is None:
        return False
    evaluated = evaluate(expr)
    if evaluated is None:
        return False
    value, literals = evaluated
    return Counter(literals) == Counter(problem.numbers) and value == problem.target


def solve_random(numbers, target: int, rng: random.Random) -> list[Operation] | None:
    """One solution path drawn uniformly move by move among moves that keep the target reachable.

    Training the policy on these (rather than on ``solve``'s first path) teaches it every
    useful first move, so sampled trajectories differ and search has alternatives to rank.

    Args:
        numbers: the available numbers (a multiset).
        target: the value to reach.
        rng: source of randomness.
    Returns:
        Operations combining all numbers into ``target``, or None if impossible.
    """
    return _walk_to_target(numbers, target, rng.choice)


def _walk_to_target(numbers, target: int, choose) -> list[Operation] | None:
    """A solution path taking, at each state, ``choose(moves)`` among the moves whose
    successor can still reach the target (one exists whenever the state can)."""
    nums = tuple(sorted(numbers))
    if not is_reachable(nums, target):
        return None
    path: list[Operation] = []
    while len(nums) > 1:
        operation, nums = choose([(o, n) for o, n in _moves(nums) if target in _reach(n)])
        path.append(operation)
    return path


def draw_problem(rng: random.Random, difficulty: Difficulty = Difficulty()) -> CountdownProblem:
    """One random solvable problem (repeats across calls are possible)."""
    while (problem := _draw(rng, difficulty)) is None:
        pass
    return problem


def problem_key(problem: CountdownProblem) -> tuple:
    """Identity for distinctness: order of the numbers does not matter."""
    return tuple(sorted(problem.numbers)), problem.target


def _draw(rng: random.Random, d: Difficulty) -> CountdownProblem | None:
    """One random problem with a reachable in-range target, or None if the draw has none."""
    nums = tuple(rng.randint(d.low, d.high) for _ in range(d.count))
    reach = _reach(tuple(sorted(nums)))
    targets = sorted(t for t in reach if d.target_low <= t <= d.target_high)  # sorted: reproducible
    return CountdownProblem(nums, rng.choice(targets)) if targets else None


def generate_problems(
    n: int, seed: int, difficulty: Difficulty = Difficulty()
) -> list[CountdownProblem]:
    """Generate ``n`` solvable problems reproducibly.

    Args:
        n: how many problems.
        seed: seed for ``random.Random``.
        difficulty: number count and ranges.
    Returns:
        Solvable problems with targets in range, distinct (as sorted numbers
        plus target) unless the space is too small, in which case some repeat.
    Raises:
        ValueError: if ``n`` is negative or no solvable problem can be found.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(n):
        fallback = None
        for _attempt in range(200):
            problem = _draw(rng, difficulty)
            if problem is not None and problem_key(problem) not in seen:
                break
            fallback = fallback or problem
        else:
            problem = fallback  # the space looks exhausted: allow a repeat
        if problem is None:
            raise ValueError(f"no solvable problem found for {difficulty}")
        seen.add(problem_key(problem))
        out.append(problem)
    return out


class CountdownTask:
    """Task interface for the experiment runner."""

    name = "countdown"

    def prompt(self, problem_record: dict) -> str:
        """The model prompt for a record with a ``problem`` text."""
        return PROMPT_TEMPLATE.format(problem=problem_record["problem"])

    def is_correct(self, problem_record: dict, response_text: str) -> bool:
        """Whether the response solves the record's problem (never raises)."""
        text = problem_record.get("problem") if isinstance(problem_record, dict) else None
        problem = CountdownProblem.parse(text) if isinstance(text, str) else None
        return problem is not None and check_answer(problem, response_text)

    def generate(self, count: int, seed: int, **difficulty_options) -> list[dict]:
        """Records ``{"problem": text, "answer": target}`` for generated problems.

        Args:
            count: how many records.
            seed: generator seed.
            difficulty_options: ``Difficulty`` fields, except that the number of
                numbers is passed as ``num_numbers`` (``count`` is taken).
        Returns:
            The records.
        """
        if "num_numbers" in difficulty_options:
            difficulty_options["count"] = difficulty_options.pop("num_numbers")
        problems = generate_problems(count, seed, Difficulty(**difficulty_options))
        return [{"problem": p.text, "answer": p.target} for p in problems]


def verdict(problem_text: str, response_text: str) -> str:
    """A one-line human verdict on a response: ``solved`` or ``not solved: why`` (never raises).

    Args:
        problem_text: the problem as posed (any text).
        response_text: the model's response.
    Returns:
        ``"solved"``, or ``"not solved: ..."`` naming the reason.
    """
    problem = CountdownProblem.parse(problem_text)
    if problem is None:
        return "not solved: not a Countdown problem (expected e.g. 'Numbers: 3 7 8. Target: 29.')"
    if extract_expression(response_text) is None:
        return "not solved: the response states no 'Answer:'"
    if not check_answer(problem, response_text):
        return f"not solved: the answer does not make {problem.target} from {' '.join(map(str, problem.numbers))}"
    return "solved"
