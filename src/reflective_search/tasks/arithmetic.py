"""Arithmetic: evaluate an integer expression one operation per step.

Problem text: ``Evaluate: <expression>`` with integer literals 1-99 (no unary minus),
binary ``+ - *``, parentheses (redundant ones allowed), one space around each binary
operator and none inside parentheses, e.g. ``Evaluate: (((4 + 8))) - 7 * 7``. Depth is
the number of operations; values may be negative.

Worked solution: one reduction per step, each step ending in ``".\\n\\n"``. A step writes
the operation it does and the expression that remains, so its correctness can be read from
its text alone::

    4+8=12: 12-7*7.

    7*7=49: 12-49.

    12-49=-37.

    Answer: -37.

A reduction is *legal* when both operands are numbers and neither neighbouring operator
binds them first (precedence, then left to right). The remaining expression drops every
parenthesis pair that encloses a single number; a negative number after the first token is
written in parentheses (``5-(-46)``); steps drop the spaces, each of which costs a token. The worked solution always takes the leftmost legal
reduction; a response may take any legal one.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from reflective_search.errors import ProblemError

STEP_DELIMITER = ".\n\n"
VALUE_LIMIT = 999  # every intermediate value of a generated problem lies in [-999, 999]
SEARCH_LIMITS = {  # a step of a depth-8 problem is at most ~40 tokens; depth 10 + the answer step
    "sampling.max_step_tokens": 48,
    "sampling.max_steps": 12,
}
PROMPT_TEMPLATE = "Evaluate the expression one operation per step.\n{problem}\n\n"
_PRECEDENCE = {"+": 1, "-": 1, "*": 2}
_APPLY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}
# the problem grammar's characters only: literals, + - *, parentheses, single spaces
_PROBLEM_RE = re.compile(r"^\s*Evaluate:\s*([0-9()+*\- ]+?)\s*\.?\s*$")
# step text tokens: a number (negative inside parentheses or leading), an operator, a parenthesis
_TOKEN_RE = re.compile(r"\(-[0-9]+\)|[0-9]+|[-+*()]|\S")
_STEP_RE = re.compile(r"^(-?[0-9]+|\(-[0-9]+\)) ?([-+*]) ?([0-9]+|\(-[0-9]+\)) ?= ?(-?[0-9]+)(?:: ?(.+))?$")
_MAX_LITERAL_DIGITS = 6  # longer digit runs are junk, refused before int() sees them

Token = int | str  # a number, or one of "+", "-", "*", "(", ")"


@dataclass(frozen=True, slots=True)
class ArithmeticProblem:
    expression: str  # as posed, e.g. "(((4 + 8))) - 7 * 7"
    tokens: tuple[Token, ...]  # its tokens: ints and operator/parenthesis strings
    value: int  # its exact value

    @property
    def text(self) -> str:
        return f"Evaluate: {self.expression}"

    @property
    def depth(self) -> int:
        return sum(1 for t in self.tokens if isinstance(t, str) and t in _PRECEDENCE)

    @classmethod
    def parse(cls, text: str) -> "ArithmeticProblem | None":
        """The problem ``text`` poses, or None if it is outside the grammar."""
        m = _PROBLEM_RE.match(text)
        tokens = tokenize(m[1]) if m else None
        if not tokens or render(tokens) != m[1] or not _binary_ops(tokens):
            return None  # junk, spacing other than the grammar's, or a unary minus
        if not all(1 <= t <= 99 for t in tokens if isinstance(t, int)):
            return None
        value = evaluate_tokens(tokens)
        return None if value is None else cls(m[1], tuple(tokens), value)


def parse_problem(text: str) -> ArithmeticProblem:
    """Like ``ArithmeticProblem.parse``, but a problem outside the grammar raises ``ProblemError``."""
    problem = ArithmeticProblem.parse(text)
    if problem is None:
        raise ProblemError(f"not an arithmetic problem: {text[:80]!r}; write 'Evaluate: <expression>' "
                           "with integers 1-99, + - *, parentheses and one space around each operator")
    return problem


def _binary_ops(tokens) -> bool:
    """At least one operator, and no unary minus: every operator sits between operands."""
    ops = [i for i, t in enumerate(tokens) if isinstance(t, str) and t in _PRECEDENCE]
    return bool(ops) and all(0 < i < len(tokens) - 1 and (isinstance(tokens[i - 1], int) or tokens[i - 1] == ")")
                             for i in ops)


# -- tokens, text and exact values -------------------------------------------------------------


def tokenize(text: str) -> list[Token] | None:
    """Tokens of an expression as a problem or a step writes it (spaced or not), or None
    for junk. A minus is a negative number's sign only first or as ``(-n)``."""
    out: list[Token] = []
    for piece in _TOKEN_RE.findall(text):
        digits = piece.strip("()-")
        if digits.isdigit() and len(digits) <= _MAX_LITERAL_DIGITS and digits.isascii():
            out.append(int(piece.strip("()")))
        elif piece in ("+", "-", "*", "(", ")"):
            out.append(piece)
        else:
            return None
    if out[:1] == ["-"] and len(out) > 1 and isinstance(out[1], int):  # a leading negative number
        out[:2] = [-out[1]]
    return out


def render(tokens, spaced: bool = True) -> str:
    """Text of ``tokens``: one space around operators (``spaced``, as problems are written) or
    none (as steps are), none inside parentheses, negative numbers after the first token
    in parentheses."""
    text, gap = "", " " if spaced else ""
    for i, t in enumerate(tokens):
        word = f"({t})" if isinstance(t, int) and t < 0 and i > 0 else str(t)
        around_operator = bool(text) and (word in _PRECEDENCE or text[-1] in _PRECEDENCE)
        text += (gap if around_operator else "") + word
    return text


def evaluate_tokens(tokens) -> int | None:
    """Exact value of an expression's tokens, or None if they are not one expression."""
    from reflective_search.tasks.expression import evaluate

    words = [f"(0-{-t})" if isinstance(t, int) and t < 0 else str(t) for t in tokens]
    result = evaluate(" ".join(words))
    return None if result is None or result[0].denominator != 1 else int(result[0])


# -- reductions --------------------------------------------------------------------------------


def legal_reductions(tokens) -> list[int]:
    """Indices of operators whose reduction is legal next (both operands numbers, neither
    neighbouring operator binding them first: precedence, then left to right)."""
    out = []
    for i in range(1, len(tokens) - 1):
        op = tokens[i]
        if isinstance(op, int) or op not in _PRECEDENCE:
            continue
        if not (isinstance(tokens[i - 1], int) and isinstance(tokens[i + 1], int)):
            continue
        left = tokens[i - 2] if i >= 2 else "("
        right = tokens[i + 2] if i + 2 < len(tokens) else ")"
        if _PRECEDENCE.get(left, 0) < _PRECEDENCE[op] and _PRECEDENCE.get(right, 0) <= _PRECEDENCE[op]:
            out.append(i)
    return out


def reduce_at(tokens, index: int) -> list[Token]:
    """``tokens`` with the operation at ``index`` computed and bare parentheses dropped."""
    value = _APPLY[tokens[index]](tokens[index - 1], tokens[index + 1])
    return drop_bare_parentheses(list(tokens[: index - 1]) + [value] + list(tokens[index + 2:]))


def drop_bare_parentheses(tokens) -> list[Token]:
    """Remove every ``( number )`` pair, repeatedly, so ``(((12)))`` becomes ``12``."""
    tokens, changed = list(tokens), True
    while changed:
        changed = False
        for i in range(len(tokens) - 2):
            if tokens[i] == "(" and isinstance(tokens[i + 1], int) and tokens[i + 2] == ")":
                tokens[i: i + 3], changed = [tokens[i + 1]], True
                break
    return tokens


def step_text(tokens, index: int) -> tuple[str, list[Token]]:
    """The worked step reducing ``tokens`` at ``index`` (without delimiter) and what remains."""
    a, op, b = tokens[index - 1], tokens[index], tokens[index + 1]
    rest = reduce_at(tokens, index)
    head = f"{render([a, op, b], spaced=False)}={_APPLY[op](a, b)}"
    return (head if len(rest) == 1 else f"{head}: {render(rest, spaced=False)}"), rest


def solution_steps(problem: ArithmeticProblem) -> list[str]:
    """The worked solution's steps (leftmost legal reduction each time), answer last."""
    tokens, steps = drop_bare_parentheses(problem.tokens), []
    while len(tokens) > 1:
        text, tokens = step_text(tokens, legal_reductions(tokens)[0])
        steps.append(text)
    return steps + [f"Answer: {tokens[0]}"]


def solution_text(problem: ArithmeticProblem) -> str:
    return "".join(step + STEP_DELIMITER for step in solution_steps(problem))


# -- generation --------------------------------------------------------------------------------


def generate(rng: random.Random, depth: int, digits: int = 2, redundant: float = 0.1) -> ArithmeticProblem:
    """A problem of ``depth`` operations on literals of at most ``digits`` digits (max 99),
    every intermediate value within +-VALUE_LIMIT; ``redundant``: the chance that a
    subexpression gets parentheses it does not need."""
    if depth < 1:
        raise ProblemError(f"depth must be at least 1 operation, got {depth}")
    if digits not in (1, 2):
        raise ProblemError(f"operand digits must be 1 or 2 (literals 1-99), got {digits}")
    while True:
        tree = _random_tree(rng, depth, 10 ** digits - 1)
        if _within_limit(tree):
            problem = ArithmeticProblem.parse("Evaluate: " + _tree_text(tree, rng, redundant, 0, "left"))
            assert problem is not None and problem.depth == depth
            return problem


def _random_tree(rng: random.Random, ops: int, top: int):
    """A random expression tree: an int leaf, or (op, left, right)."""
    if ops == 0:
        return rng.randint(1, top)
    left = rng.randint(0, ops - 1)
    return (rng.choice("+-*"), _random_tree(rng, left, top), _random_tree(rng, ops - 1 - left, top))


def _tree_value(tree) -> int:
    return tree if isinstance(tree, int) else _APPLY[tree[0]](_tree_value(tree[1]), _tree_value(tree[2]))


def _within_limit(tree) -> bool:
    if isinstance(tree, int):
        return True
    return abs(_tree_value(tree)) <= VALUE_LIMIT and _within_limit(tree[1]) and _within_limit(tree[2])


def _tree_text(tree, rng: random.Random, redundant: float, parent: int, side: str) -> str:
    """Text of ``tree`` under an operator of precedence ``parent``, on its ``side``, with the
    parentheses the structure needs plus redundant ones at rate ``redundant``."""
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    text = (f"{_tree_text(left, rng, redundant, _PRECEDENCE[op], 'left')} {op} "
            f"{_tree_text(right, rng, redundant, _PRECEDENCE[op], 'right')}")
    needed = _PRECEDENCE[op] < parent or (_PRECEDENCE[op] == parent and side == "right")
    wraps = int(needed)
    while rng.random() < redundant and wraps < 3:  # redundant pairs: mostly none, rarely nested
        wraps += 1
    return "(" * wraps + text + ")" * wraps


def problems(count: int, depths, seed: int, digits: int = 2) -> list[ArithmeticProblem]:
    """``count`` problems, depths cycling through ``depths``, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [generate(rng, depths[i % len(depths)], digits) for i in range(count)]


TRAIN_SEED = 1001  # the training stream: problems(count, depths 1-8, TRAIN_SEED)
SPLIT_SEEDS = {"valid": 2002, "test": 3003}  # held-out splits, never trained or tuned on (test)
_TRAIN_STREAM = 10_000  # held-out splits skip every problem among this many of the training stream


def split_problems(split: str, count: int, depth: int, digits: int = 2) -> list[ArithmeticProblem]:
    """``count`` held-out problems of ``depth`` from ``split`` (valid | test), deterministic,
    none of them in the training stream."""
    if split not in SPLIT_SEEDS:
        raise ProblemError(f"unknown split {split!r}: use one of {', '.join(SPLIT_SEEDS)}")
    rng, seen, out = random.Random(SPLIT_SEEDS[split] * 100 + depth), set(_training_texts(digits)), []
    while len(out) < count:
        problem = generate(rng, depth, digits)
        if problem.text not in seen:
            seen.add(problem.text)  # no duplicates within the split either
            out.append(problem)
    return out


def split_records(count: int, split: str, depths, digits: int = 2) -> list[dict]:
    """Experiment records: ``count`` problems of each depth from a held-out split, each with
    its ``depth`` and exact ``answer``, ids ``d<depth>-<i>``."""
    return [{"id": f"d{depth}-{i}", "problem": p.text, "answer": str(p.value), "depth": depth}
            for depth in depths for i, p in enumerate(split_problems(split, count, depth, digits))]


@lru_cache(maxsize=2)
def _training_texts(digits: int) -> frozenset[str]:
    return frozenset(p.text for p in problems(_TRAIN_STREAM, range(1, 9), TRAIN_SEED, digits))


# -- checking and step labels ------------------------------------------------------------------


def final_answer(response: str) -> int | None:
    """The integer a response states after its last ``Answer:``, or None."""
    from reflective_search.answers import extract_answer

    answer = extract_answer(response)
    answer = None if answer is None else answer.strip().rstrip(".").strip()
    if answer is None or not re.fullmatch(r"-?[0-9]{1,12}", answer):
        return None
    return int(answer)


def check_answer(problem: ArithmeticProblem, response: str) -> bool:
    """Whether the response's final answer is the expression's exact value."""
    return final_answer(response) == problem.value


def verdict(problem_text: str, response: str) -> str:
    """A one-line verdict on a response: ``solved`` or ``not solved: why`` (never raises)."""
    problem = ArithmeticProblem.parse(problem_text)
    if problem is None:
        return "not solved: not an arithmetic problem (expected e.g. 'Evaluate: 7 + 4 * 9 - 8')"
    if final_answer(response) is None:
        return "not solved: the response states no integer after 'Answer:'"
    return "solved" if check_answer(problem, response) else f"not solved: the value is {problem.value}"


def answer_key(response: str) -> str | None:
    """What counts as the same answer in a vote: the stated integer."""
    answer = final_answer(response)
    return None if answer is None else str(answer)


def label_steps(problem: ArithmeticProblem, response: str) -> list[bool]:
    """True step labels (evaluation only): a step is good when it is a legal next reduction
    of the true state, computed right, with the right remaining expression; the ``Answer:``
    step is good when it states the value of a fully reduced state. After a bad step, every
    step is bad."""
    from reflective_search.tasks.countdown_labels import split_steps

    state: list[Token] | None = drop_bare_parentheses(problem.tokens)
    labels = []
    for step in split_steps(response):
        state = _grade_step(step, state) if state is not None else None
        labels.append(state is not None)
    return labels


def _grade_step(step: str, state: list[Token]) -> list[Token] | None:
    """The new state if ``step`` is a good step from ``state``, else None."""
    if step.startswith("Answer:"):
        return state if len(state) == 1 and final_answer(step) == state[0] else None
    m = _STEP_RE.match(step)
    written = None if m is None else ([int(m[4])] if m[5] is None else tokenize(m[5]))
    if written is None:
        return None
    a, op, b, c = int(m[1].strip("()")), m[2], int(m[3].strip("()")), int(m[4])
    for index in legal_reductions(state):
        if state[index - 1: index + 2] == [a, op, b] and _APPLY[op](a, b) == c:
            rest = reduce_at(state, index)
            if drop_bare_parentheses(written) == rest:
                return rest
    return None
