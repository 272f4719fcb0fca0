"""Properties of the expression evaluator and the Countdown and arithmetic parsers on text nobody wrote by hand.

The reference evaluator reads the same tokens with Python's own expression grammar
(``ast``), keeps only binary ``+ - * /`` over integer literals, and computes with
``fractions.Fraction``: what ``tasks.expression`` documents, written a second way.
"""

from __future__ import annotations

import ast
import operator
import re
from collections import Counter
from fractions import Fraction

from hypothesis import assume, example, given
from hypothesis import strategies as st

from reflective_search.tasks.expression import evaluate
from reflective_search.tasks import arithmetic
from reflective_search.tasks.arithmetic import ArithmeticProblem
from reflective_search.tasks.countdown import CountdownProblem, CountdownTask, answer_key, check_answer, verdict

REFERENCE_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
MAX_NESTING = 50  # documented in tasks/expression.py: deeper parentheses are refused
GRAMMAR_CHARACTERS = "0123456789+-*/() \t\n"


class Refused(Exception):
    """The reference refuses the expression."""


def reference_evaluate(text: str) -> tuple[Fraction, list[int]] | None:
    """(value, literals in order) by Python's grammar restricted to our tokens, or None."""
    tokens = re.findall(r"[0-9]+|[^0-9\s]", text)
    if any(not (t.isdigit() or t in "+-*/()") for t in tokens) or _nesting(tokens) > MAX_NESTING:
        return None
    literals: list[int] = []

    def value(node: ast.AST) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in REFERENCE_OPS:
            left = value(node.left)
            return REFERENCE_OPS[type(node.op)](left, value(node.right))
        if isinstance(node, ast.Constant) and type(node.value) is int:
            literals.append(node.value)
            return Fraction(node.value)
        raise Refused(ast.dump(node))  # unary minus, calls, tuples: not in the grammar

    try:
        source = " ".join(str(int(t)) if t.isdigit() else t for t in tokens)  # int(): "007" is a literal 7
        return value(ast.parse(source, mode="eval").body), literals
    except (SyntaxError, ValueError, ZeroDivisionError, Refused):
        return None


def _nesting(tokens: list[str]) -> int:
    depth = deepest = 0
    for token in tokens:
        depth += {"(": 1, ")": -1}.get(token, 0)
        deepest = max(deepest, depth)
    return deepest


def expression_tree(literals=st.integers(0, 10**6), max_leaves: int = 12):
    """Well-formed expressions as (text, value or None on division by zero, literals)."""
    leaves = literals.map(lambda n: (str(n), Fraction(n), [n]))

    def combine(children):
        def join(left, op, right, parenthesise, space):
            a, b = (f"({left[0]})", f"({right[0]})") if parenthesise else (left[0], right[0])
            text = f"({a}{space}{op}{space}{b})"  # every operation grouped: the tree, not precedence, decides
            if left[1] is None or right[1] is None or (op == "/" and right[1] == 0):
                return text, None, left[2] + right[2]
            return text, REFERENCE_OPS[OP_NODES[op]](left[1], right[1]), left[2] + right[2]

        return st.builds(join, children, st.sampled_from("+-*/"), children, st.booleans(), st.sampled_from(["", " "]))

    return st.recursive(leaves, combine, max_leaves=max_leaves)


OP_NODES = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult, "/": ast.Div}


@given(st.text(alphabet=GRAMMAR_CHARACTERS, max_size=40))
def test_strings_over_the_grammar_are_refused_or_evaluate_as_the_reference(text):
    assert evaluate(text) == reference_evaluate(text)


@given(st.text(max_size=40))
def test_arbitrary_unicode_is_refused_or_evaluates_as_the_reference(text):
    assert evaluate(text) == reference_evaluate(text)


@given(expression_tree())
def test_well_formed_expressions_evaluate_exactly_with_their_literals_in_order(expression):
    text, value, literals = expression
    assert evaluate(text) == (None if value is None else (value, literals))


@given(st.integers(0, 80))
def test_parentheses_nest_to_the_documented_depth_and_no_deeper(depth):
    text = "(" * depth + "7" + ")" * depth
    assert evaluate(text) == ((Fraction(7), [7]) if depth <= MAX_NESTING else None)


# -- Countdown ---------------------------------------------------------------------------------


problems = st.builds(CountdownProblem, st.lists(st.integers(1, 10**4), min_size=2, max_size=5),
                     st.integers(1, 10**6))


@given(st.text(max_size=60))
def test_problem_text_is_parsed_or_refused_and_a_parsed_one_is_canonical(text):
    problem = CountdownProblem.parse(text)
    assert problem is None or CountdownProblem.parse(problem.text) == problem


@given(problems, st.lists(st.sampled_from([" ", "  ", "\t", "\n"]), min_size=4, max_size=4))
def test_every_problem_reads_back_from_its_text_with_any_spacing(problem, gaps):
    a, b, c, d = gaps
    numbers = a.join(map(str, problem.numbers))
    assert CountdownProblem.parse(f"{b}Numbers:{a}{numbers}{c}.{d}Target:{a}{problem.target}.{b}") == problem


@given(problems, st.text(max_size=60))
def test_any_response_is_checked_as_the_reference_says_without_raising(problem, response):
    # The documented rule: the first non-blank line after the last "Answer:", one trailing "." dropped.
    stated = response.rsplit("Answer:", 1)[1].strip().split("\n", 1)[0] if "Answer:" in response else ""
    evaluated = reference_evaluate(stated.strip().removesuffix(".")) if stated.strip() else None
    expected = (evaluated is not None and evaluated[0] == problem.target
                and Counter(evaluated[1]) == Counter(problem.numbers))
    assert check_answer(problem, response) is expected
    assert verdict(problem.text, response).startswith("solved" if expected else "not solved: ")


@given(expression_tree(st.integers(1, 100), max_leaves=5), st.randoms(use_true_random=False), st.text(max_size=20))
def test_an_expression_solves_the_problem_of_its_own_numbers_and_value_and_no_other(expression, rng, before):
    text, value, literals = expression
    assume(2 <= len(literals) <= 5 and value is not None and value >= 1 and value.denominator == 1)
    numbers = rng.sample(literals, len(literals))  # any order: the numbers are a multiset
    response = f"{before}\nAnswer: {text}.\n\n"
    problem = CountdownProblem(numbers, int(value))
    assert check_answer(problem, response) and CountdownTask().is_correct({"problem": problem.text}, response)
    assert not check_answer(CountdownProblem(numbers, int(value) + 1), response)
    assert not check_answer(CountdownProblem([*numbers[:-1], numbers[-1] + 1], int(value)), response)


@given(st.text(max_size=60), st.text(max_size=60))
def test_the_vote_key_and_the_verdict_never_raise(problem_text, response):
    key = answer_key(response)
    assert key is None or (key and not any(ch.isspace() for ch in key))
    assert verdict(problem_text, response).startswith(("solved", "not solved: "))


# -- the arithmetic task ("Evaluate: <expression>") ------------------------------------------------


@example("Evaluate: (((4 + 8))) - 7 * 7")
@example("Evaluate: 99 * 99 * 99 - 1.")
@example("Evaluate: 7 - -4")  # unary minus: not in the grammar
@given(st.text(max_size=40) | st.text(alphabet="Evaluate: 0123456789+-*() .", max_size=40))
def test_arithmetic_problem_text_is_parsed_or_refused_and_a_parsed_one_evaluates_as_the_reference(text):
    problem = ArithmeticProblem.parse(text)
    if problem is not None:
        assert ArithmeticProblem.parse(problem.text) == problem
        assert reference_evaluate(problem.expression) == (problem.value, [t for t in problem.tokens if isinstance(t, int)])


@given(st.integers(1, 8), st.randoms(use_true_random=False))
def test_a_generated_arithmetic_problem_reads_back_and_its_worked_solution_is_right_at_every_step(depth, rng):
    problem = arithmetic.generate(rng, depth)
    assert ArithmeticProblem.parse(problem.text) == problem
    solution = arithmetic.solution_text(problem)
    assert arithmetic.check_answer(problem, solution) and arithmetic.verdict(problem.text, solution) == "solved"
    assert arithmetic.label_steps(problem, solution) == [True] * (depth + 1)  # each operation, then the answer


@given(st.integers(1, 4), st.randoms(use_true_random=False), st.text(max_size=60))
def test_any_arithmetic_response_is_graded_without_raising(depth, rng, response):
    problem = arithmetic.generate(rng, depth)
    labels = arithmetic.label_steps(problem, response)
    assert all(isinstance(label, bool) for label in labels)
    assert labels == sorted(labels, reverse=True)  # after a bad step, every step is bad
    assert arithmetic.verdict(problem.text, response).startswith(("solved", "not solved: "))
    key = arithmetic.answer_key(response)
    assert key is None or arithmetic.check_answer(problem, response) == (int(key) == problem.value)
