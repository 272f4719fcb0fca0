"""Exact arithmetic on ``+ - * /`` expressions with parentheses and integers.

A small recursive-descent parser (never ``eval``): values are Fractions, so division is
exact; junk, division by zero and absurd nesting give None instead of raising.
"""

from __future__ import annotations

import operator
import re
from fractions import Fraction

_TOKEN_RE = re.compile(r"[0-9]+|[-+*/()]")
_EXPR_RE = re.compile(r"[\s0-9()+*/-]*")  # a flat class: no backtracking blow-up
_LEVELS = (("+", "-"), ("*", "/"))
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_MAX_DEPTH = 50  # parenthesis nesting limit: keeps junk from hitting the recursion limit


def evaluate(expression: str) -> tuple[Fraction, list[int]] | None:
    """(exact value, integer literals in order) of ``expression``, or None if it is invalid."""
    try:
        parser = _Parser(expression)
        return parser.parse(), parser.literals
    except (ValueError, ZeroDivisionError, RecursionError):
        return None


class _Parser:
    """Recursive-descent parser/evaluator for ``+ - * /``, parentheses, integers."""

    def __init__(self, text: str) -> None:
        if not _EXPR_RE.fullmatch(text):
            raise ValueError("characters outside the expression grammar")
        self.tokens = _TOKEN_RE.findall(text) + [""]  # "" marks the end
        self.pos, self.literals = 0, []

    def _next(self) -> str:
        self.pos += 1
        return self.tokens[self.pos - 1]

    def parse(self) -> Fraction:
        value = self._binary(0, 0)
        if self.tokens[self.pos]:
            raise ValueError("trailing tokens")
        return value

    def _binary(self, level: int, depth: int) -> Fraction:
        # level 0: + and -, level 1: * and /; both left-associative.
        if level == len(_LEVELS):
            return self._factor(depth)
        value = self._binary(level + 1, depth)
        while self.tokens[self.pos] in _LEVELS[level]:
            op = self._next()
            value = _ARITH[op](value, self._binary(level + 1, depth))  # /0 raises
        return value

    def _factor(self, depth: int) -> Fraction:
        tok = self._next()
        if tok == "(" and depth < _MAX_DEPTH:
            value = self._binary(0, depth + 1)
            if self._next() != ")":
                raise ValueError("unbalanced parentheses")
            return value
        if tok.isdigit():
            self.literals.append(int(tok))
            return Fraction(int(tok))
        raise ValueError(f"unexpected token {tok!r}")
