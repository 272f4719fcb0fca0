"""Answer extraction and equality."""

from __future__ import annotations

from reflective_search.answers import answers_equal, extract_answer, is_final_step


def test_extracts_last_boxed_with_nested_braces():
    assert extract_answer("so \\boxed{1} then \\boxed{\\frac{1}{2}}.") == "\\frac{1}{2}"


def test_extracts_answer_line_without_trailing_period():
    assert extract_answer("7*3=21.\n\nAnswer: 7*3+8.\n\n") == "7*3+8"


def test_later_form_wins():
    assert extract_answer("\\boxed{3}\nAnswer: 4") == "4"
    assert extract_answer("Answer: 4\n\\boxed{3}") == "3"


def test_no_answer_is_none():
    assert extract_answer("just thinking.\n\n") is None


def test_final_step_detection():
    assert is_final_step("Answer: 3.\n\n") and is_final_step("so \\boxed{2}")
    assert not is_final_step("3+4=7.\n\n")


def test_numeric_equality_across_forms():
    assert answers_equal("0.5", "1/2") and answers_equal("1,000", "1000")
    assert not answers_equal("2", "3") and not answers_equal(None, "3")


def test_symbolic_equality_through_math_verify():
    assert answers_equal("\\frac{1}{2}", "0.5")
    assert answers_equal("x+1", "1+x")


def test_a_comma_is_a_thousands_separator_only_in_groups_of_three():
    assert not answers_equal("1,2", "12")
    assert answers_equal("12,345.5", "12345.5")


def test_an_answer_label_with_nothing_after_it_is_not_final():
    assert not is_final_step("So the Answer: ")
    assert extract_answer("So the Answer: ") is None
