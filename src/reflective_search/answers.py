"""Final answers: where a response states one, and whether two answers are equal.

Two forms are recognised: ``\\boxed{...}`` (balanced braces) and ``Answer: ...`` (to the
end of the line). Equality goes through math-verify (numeric and symbolic) when it is
installed, with its internal timeouts off (they use signals, which fail in worker
threads); otherwise a normalised string / number comparison.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction

_ANSWER = re.compile(r"Answer\s*:[ \t]*(\S.*)")  # a label with nothing after it states nothing
_BOXED = "\\boxed{"
_THOUSANDS = re.compile(r"^-?\d{1,3}(,\d{3})+(\.\d+)?$")
# With its timeouts off (we call it from threads), math-verify warns on every call. Set
# once: setLevel clears every logger's cache, and a vote compares answers pairwise.
logging.getLogger("math_verify").setLevel(logging.ERROR)


def extract_answer(text: str) -> str | None:
    """The last stated answer in ``text`` (boxed or ``Answer:``), or None."""
    boxed = _last_boxed(text)
    answers = _ANSWER.findall(text)
    if boxed is not None and (not answers or text.rfind(_BOXED) > text.rfind("Answer")):
        return boxed
    if answers:
        return answers[-1].strip().rstrip(".").strip() or None
    return boxed


def is_final_step(step_text: str) -> bool:
    """A step that states an answer ends the trajectory."""
    return _BOXED in step_text or _ANSWER.search(step_text) is not None


def _last_boxed(text: str) -> str | None:
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j].strip()
    return None


def answers_equal(a: str | None, b: str | None) -> bool:
    """Whether two answers mean the same value (None equals nothing)."""
    if a is None or b is None:
        return False
    if _normalise(a) == _normalise(b):
        return True
    number_a, number_b = _as_number(a), _as_number(b)
    if number_a is not None and number_b is not None:
        return number_a == number_b
    return _math_verify_equal(a, b)


def _normalise(answer: str) -> str:
    return re.sub(r"\s+", "", answer).rstrip(".").lower()


def _as_number(answer: str) -> Fraction | None:
    cleaned = answer.replace("$", "").strip()
    if _THOUSANDS.match(cleaned):  # "1,000" is a number; "1,2" is a pair
        cleaned = cleaned.replace(",", "")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def _math_verify_equal(a: str, b: str) -> bool:
    try:
        from math_verify import parse, verify
    except ImportError:
        return False
    try:
        gold = parse(_as_latex(a), parsing_timeout=None)
        guess = parse(_as_latex(b), parsing_timeout=None)
        return bool(gold and guess and verify(gold, guess, timeout_seconds=None))
    except Exception:  # math-verify raises many kinds on odd input; unequal is the safe answer
        return False


def _as_latex(answer: str) -> str:
    return answer if answer.startswith("$") else f"${answer}$"
