"""Properties of answer extraction and comparison on text nobody wrote by hand.

The documented rule (answers.py): a response states an answer with ``Answer: ...`` (to
the end of the line, one trailing "." dropped) or ``\\boxed{...}`` (balanced braces), and
when it states more than one, the last one counts.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from reflective_search.answers import answers_equal, extract_answer, is_final_step

# Answers written plainly: no line break, brace, "." at the end or space around them.
ANSWER_CHARACTERS = "0123456789abcxyz+-*/^=()., $"
answers = st.text(alphabet=ANSWER_CHARACTERS, min_size=1, max_size=12).filter(
    lambda a: a == a.strip() and not a.endswith("."))
# Text around the answers that states none itself.
filler = st.text(max_size=30).filter(lambda t: "Answer" not in t and "\\boxed{" not in t)


def stated(answer: str, form: str) -> str:
    return f"Answer: {answer}\n" if form == "label" else f"\\boxed{{{answer}}}"


@given(st.text(max_size=80))
def test_any_text_gives_an_answer_or_none_without_raising(text):
    answer = extract_answer(text)
    assert answer is None or (answer == answer.strip() and answer != "")
    assert answer is None or is_final_step(text)  # a step that states an answer ends its path


@given(filler, answers, st.sampled_from(["label", "boxed"]), filler, answers, st.sampled_from(["label", "boxed"]),
       filler)
def test_a_response_stating_two_answers_gives_the_last(before, first, first_form, middle, last, last_form, after):
    response = before + stated(first, first_form) + middle + stated(last, last_form) + after
    assert extract_answer(response) == last


@given(filler, answers, filler)
def test_an_answer_label_reads_to_the_end_of_its_line_without_the_final_stop(before, answer, after):
    response = f"{before}Answer: {answer}.\n{after}"
    assert extract_answer(response) == answer


@given(st.text(max_size=12), st.text(max_size=12))
def test_comparing_any_two_texts_never_raises_and_a_text_equals_itself(a, b):
    assert answers_equal(a, b) in (True, False)
    assert answers_equal(a, a) is True
    assert answers_equal(None, a) is False and answers_equal(a, None) is False


@given(st.fractions(min_value=-10**6, max_value=10**6))
def test_a_number_equals_its_own_spellings(value):
    written = f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(value.numerator)
    assert answers_equal(written, f"${written}$") and answers_equal(written, f" {written}. ")
