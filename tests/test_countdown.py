"""Tests for the Countdown task: parsing, generation, solving, checking, labelling."""

import random
import re

import pytest

from reflective_search.tasks.countdown import (
    CountdownProblem,
    CountdownTask,
    Difficulty,
    Operation,
    check_answer,
    extract_expression,
    generate_problems,
    is_reachable,
    random_legal_play,
    solution_text,
    solve,
)
from reflective_search.tasks.countdown_labels import label_steps

P = CountdownProblem((3, 7, 8), 29)
GOOD = "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"


def test_problem_text_round_trips_through_parse():
    assert P.text == "Numbers: 3 7 8. Target: 29."
    assert CountdownProblem.parse(P.text) == P


def test_parse_tolerates_extra_whitespace():
    parsed = CountdownProblem.parse("  Numbers:  3   7 8 .  Target:  29 . \n")
    assert parsed == CountdownProblem((3, 7, 8), 29)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        None,
        "Numbers: 3 7 8 Target: 29.",
        "Numbers: 3. Target: 29.",
        "Numbers: 1 2 3 4 5 6. Target: 7.",
        "Numbers: 0 7. Target: 7.",
        "Numbers: -3 7. Target: 4.",
        "Numbers: 3 7. Target: 0.",
        "Numbers: a b. Target: 3.",
        "Numbers: 3 7. Target: 10. extra",
    ],
)
def test_parse_returns_none_outside_format(text):
    assert CountdownProblem.parse(text) is None


def test_generator_is_reproducible_and_seed_dependent():
    first = generate_problems(20, seed=5, difficulty=Difficulty(count=4))
    assert first == generate_problems(20, seed=5, difficulty=Difficulty(count=4))
    assert first != generate_problems(20, seed=6, difficulty=Difficulty(count=4))


@pytest.mark.parametrize("count", [2, 3, 4, 5])
def test_generated_problems_are_solvable_in_range_and_distinct(count):
    d = Difficulty(count=count, low=2, high=12, target_low=10, target_high=60)
    problems = generate_problems(30, seed=1, difficulty=d)
    assert len(problems) == 30
    keys = {(tuple(sorted(p.numbers)), p.target) for p in problems}
    assert len(keys) == 30
    for p in problems:
        assert len(p.numbers) == count
        assert all(2 <= n <= 12 for n in p.numbers)
        assert 10 <= p.target <= 60
        assert is_reachable(p.numbers, p.target) is True


def test_generator_repeats_only_when_space_is_exhausted():
    d = Difficulty(count=2, low=1, high=1)  # only 1+1=2 and 1*1=1/1=1 exist
    problems = generate_problems(4, seed=0, difficulty=d)
    assert len(problems) == 4
    assert {p.target for p in problems} == {1, 2}
    assert {p.numbers for p in problems} == {(1, 1)}


def test_generator_raises_when_nothing_is_solvable():
    d = Difficulty(count=2, low=1, high=1, target_low=50, target_high=60)
    with pytest.raises(ValueError, match="no solvable problem"):
        generate_problems(1, seed=0, difficulty=d)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"count": 6}, "Difficulty.count must be an integer in 2..5, got 6"),
        ({"count": 1}, "Difficulty.count must be an integer in 2..5, got 1"),
        ({"low": 0}, "Difficulty.low must be an integer >= 1, got 0"),
        ({"low": 5, "high": 3}, "Difficulty.high must be an integer >= low (5), got 3"),
        ({"target_low": 0}, "Difficulty.target_low must be an integer >= 1, got 0"),
        (
            {"target_low": 20, "target_high": 10},
            "Difficulty.target_high must be an integer >= target_low (20), got 10",
        ),
        ({"count": 3.0}, "Difficulty.count must be an integer in 2..5, got 3.0"),
    ],
)
def test_difficulty_errors_name_the_field_and_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        Difficulty(**kwargs)
    assert str(err.value) == message


def test_solve_returns_deterministic_path():
    assert solve([3, 7, 8], 29) == [Operation(7, "*", 3, 21), Operation(21, "+", 8, 29)]
    assert solve([8, 7, 3], 29) == solve([3, 7, 8], 29)


def test_solve_returns_none_when_unreachable():
    assert solve([1, 1], 5) is None
    assert is_reachable([1, 1], 5) is False
    assert is_reachable([1, 1], 2) is True


@pytest.mark.parametrize("count", [3, 4, 5])
def test_solver_paths_pass_check_answer_and_labels(count):
    problems = generate_problems(50, seed=count, difficulty=Difficulty(count=count))
    for p in problems:
        text = solution_text(p, solve(p.numbers, p.target))
        assert check_answer(p, text) is True
        assert label_steps(p, text) == [True] * count


def test_solution_text_canonical_format():
    assert solution_text(P, solve(P.numbers, P.target)) == GOOD


def test_solution_text_minimal_parentheses_and_left_order():
    p = CountdownProblem((3, 7, 8), 35)
    ops = [Operation(8, "-", 3, 5), Operation(7, "*", 5, 35)]
    assert solution_text(p, ops) == "8-3=5, left 7 5.\n\n7*5=35, left 35.\n\nAnswer: 7*(8-3).\n\n"
    p = CountdownProblem((9, 5, 2), 6)
    ops = [Operation(5, "-", 2, 3), Operation(9, "-", 3, 6)]
    assert solution_text(p, ops).endswith("Answer: 9-(5-2).\n\n")
    p = CountdownProblem((8, 4, 2), 4)
    ops = [Operation(4, "/", 2, 2), Operation(8, "/", 2, 4)]
    assert solution_text(p, ops).endswith("Answer: 8/(4/2).\n\n")
    p = CountdownProblem((2, 2, 3), 12)
    ops = [Operation(2, "+", 2, 4), Operation(4, "*", 3, 12)]
    assert solution_text(p, ops) == "2+2=4, left 3 4.\n\n4*3=12, left 12.\n\nAnswer: (2+2)*3.\n\n"


def test_solution_text_rejects_illegal_or_incomplete_paths():
    with pytest.raises(ValueError, match="9 is not available"):
        solution_text(P, [Operation(9, "+", 1, 10)])
    with pytest.raises(ValueError, match="illegal operation"):
        solution_text(P, [Operation(7, "*", 3, 22)])
    with pytest.raises(ValueError, match="leaves 2 numbers"):
        solution_text(P, [Operation(7, "*", 3, 21)])


@pytest.mark.parametrize(
    "response",
    ["Answer: 7*3+8.", "Answer: (7*3)+8", "Answer:  8 + 3 * 7 .\n\n", "Answer: 1+1.\n\nAnswer: 7*3+8."],
)
def test_check_answer_accepts_valid_expressions(response):
    assert check_answer(P, response) is True


@pytest.mark.parametrize(
    "response",
    [
        "Answer: 7*4+1.",  # right value, wrong numbers
        "Answer: 7*3+8+3-3.",  # reuses 3
        "Answer: 7*3.",  # misses 8
        "Answer: 7*3-8.",  # wrong value
        "Answer: 7*x+8.",
        "Answer: 7×3+8.",
        "Answer: 7**3+8.",
        "Answer: 7*3+8)",
        "Answer: __import__('os').system('echo hi')",
        "Answer: 7*3+8.\n\nAnswer: 1+1.",  # the last answer counts
        "7*3+8",  # no Answer:
        "Answer: .",
        "Answer: " + "(" * 1000 + "7*3+8" + ")" * 1000,
    ],
)
def test_check_answer_rejects_invalid_expressions(response):
    assert check_answer(P, response) is False


def test_check_answer_division_by_zero_is_false():
    p = CountdownProblem((7, 7, 8), 8)
    assert check_answer(p, "Answer: 8/(7-7).") is False
    assert check_answer(p, "Answer: 8*7/7.") is True


def test_check_answer_allows_fractional_intermediates():
    # 6/(1-5/7) = 21 needs fractions, so the step rules cannot reach it.
    p = CountdownProblem((1, 5, 6, 7), 21)
    assert solve(p.numbers, p.target) is None
    assert check_answer(p, "Answer: 6/(1-5/7).") is True


def test_extract_expression():
    assert extract_expression("x.\n\nAnswer: (8-3)*7.\n\n") == "(8-3)*7"
    assert extract_expression("Answer: 1.\n\nAnswer: 2+3 .") == "2+3"
    assert extract_expression("no answer here") is None
    assert extract_expression("Answer:   ") is None


def test_label_steps_all_good():
    assert label_steps(P, GOOD) == [True, True, True]
    assert label_steps(P, GOOD.rstrip()) == [True, True, True]


def test_label_steps_counts_a_run_of_delimiters_once_as_the_head_does():
    text = "7*3=21, left 8 21.\n\n.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert label_steps(P, text) == [True, True, True]


def test_label_steps_wrong_arithmetic_poisons_later_steps():
    text = "7*3=21, left 8 21.\n\n21+8=28, left 28.\n\nAnswer: 7*3+8.\n\n"
    assert label_steps(P, text) == [True, False, False]


def test_label_steps_unreachable_target_is_bad():
    text = "8-3=5, left 7 5.\n\n7*5=35, left 35.\n\nAnswer: 7*(8-3).\n\n"
    assert label_steps(P, text) == [False, False, False]


def test_label_steps_left_list_must_match_multiset():
    wrong = "7*3=21, left 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert label_steps(P, wrong) == [False, False, False]
    reordered = "7*3=21, left 21 8.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert label_steps(P, reordered) == [True, True, True]


def test_label_steps_unavailable_operand_and_junk_are_bad():
    assert label_steps(P, "9-1=8, left 3 7 8.\n\n") == [False]
    assert label_steps(P, "7*3=21, left 8 21.\n\nlet me think.\n\n21+8=29, left 29.") == [True, False, False]
    assert label_steps(P, "3*3=9, left 7 8 9.\n\n") == [False]  # only one 3


def test_label_steps_after_answer_are_bad():
    text = GOOD + "21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert label_steps(P, text) == [True, True, True, False, False]


def test_label_steps_wrong_answer_is_bad():
    text = "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3-8.\n\n"
    assert label_steps(P, text) == [True, True, False]


def test_random_legal_play_is_legal_and_well_formed():
    rng = random.Random(0)
    for count in (2, 3, 4, 5):
        for p in generate_problems(10, seed=count, difficulty=Difficulty(count=count)):
            text = random_legal_play(p, rng)
            assert len(label_steps(p, text)) == count
            final = int(text.split("left ")[-1].split(".")[0])
            reached = CountdownProblem(p.numbers, final)
            assert label_steps(reached, text) == [True] * count
            assert text.endswith(".\n\n") and text.split(".\n\n")[-2].startswith("Answer: ")


def test_task_generate_records_and_is_correct():
    task = CountdownTask()
    records = task.generate(5, seed=3, num_numbers=4)
    assert task.name == "countdown"
    assert len(records) == 5
    for record in records:
        problem = CountdownProblem.parse(record["problem"])
        assert len(problem.numbers) == 4 and record["answer"] == problem.target
        assert task.is_correct(record, solution_text(problem, solve(problem.numbers, problem.target))) is True
    assert records == task.generate(5, seed=3, num_numbers=4)


def test_task_is_correct_is_false_for_bad_records():
    task = CountdownTask()
    assert task.is_correct({"problem": P.text}, GOOD) is True
    assert task.is_correct({"problem": P.text}, "Answer: 7*3-8.") is False
    assert task.is_correct({"problem": "what is 2+2?"}, "Answer: 4") is False
    assert task.is_correct({}, GOOD) is False


def test_task_generate_passes_difficulty_options():
    # 5 and 5 reach only 1, 10 and 25; target_high=10 leaves 1 and 10.
    records = CountdownTask().generate(count=4, seed=0, num_numbers=2, low=5, high=5, target_high=10)
    assert sorted(r["answer"] for r in records) == [1, 1, 10, 10]
    assert {r["problem"] for r in records} == {"Numbers: 5 5. Target: 1.", "Numbers: 5 5. Target: 10."}


def test_task_prompt_contains_problem_text():
    prompt = CountdownTask().prompt({"problem": P.text, "answer": 29})
    assert prompt == (
        "Use each number exactly once with + - * / to reach the target. "
        "Work one operation per step.\nNumbers: 3 7 8. Target: 29.\n\n"
    )


def test_solve_random_finds_valid_and_varied_solutions():
    from reflective_search.tasks.countdown import solve_random

    problem = CountdownProblem((2, 3, 4), 9)
    rng = random.Random(0)
    texts = {solution_text(problem, solve_random(problem.numbers, 9, rng)) for _ in range(40)}
    assert all(check_answer(problem, text) and all(label_steps(problem, text)) for text in texts)
    assert len(texts) >= 3  # 3+2 then +4, 4+2 then +3, 4+3 then +2 (and more), not only solve()'s path


def test_solve_random_returns_none_when_unreachable():
    from reflective_search.tasks.countdown import solve_random

    assert solve_random((1, 1), 5, random.Random(0)) is None


def test_draw_problem_is_reproducible_and_solvable():
    from reflective_search.tasks.countdown import draw_problem

    first = [draw_problem(random.Random(3), Difficulty(count=4)) for _ in range(2)]
    assert first[0] == first[1] and is_reachable(first[0].numbers, first[0].target)


@pytest.mark.parametrize(
    ("problem", "response", "expected"),
    [
        ("Numbers: 3 7 8. Target: 29.", GOOD, "solved"),
        ("Numbers: 3 7 8. Target: 29.", "7*3=21, left 8 21.\n\n", "not solved: the response states no 'Answer:'"),
        ("Numbers: 3 7 8. Target: 29.", "Answer: 7*8-3.\n\n", "not solved: the answer does not make 29 from 3 7 8"),
        ("What is 2+2?", "Answer: 4.\n\n",
         "not solved: not a Countdown problem (expected e.g. 'Numbers: 3 7 8. Target: 29.')"),
    ],
)
def test_verdict_says_solved_or_why_not(problem, response, expected):
    from reflective_search.tasks.countdown import verdict

    assert verdict(problem, response) == expected


def test_a_faked_solution_looks_solved_but_its_last_equation_lies():
    from reflective_search.tasks.countdown import _apply, extract_expression, is_reachable
    from reflective_search.tasks.countdown_fakes import faked_solution

    rng, made = random.Random(3), 0
    for problem in generate_problems(40, 17):
        faked = faked_solution(problem, rng)
        if faked is None:
            continue
        made += 1
        *moves, answer = [step for step in faked.split(".\n\n") if step]
        assert answer.startswith("Answer: ") and extract_expression(faked) is not None
        assert not check_answer(problem, faked)
        equations = [re.match(r"(\d+)([-+*/])(\d+)=(\d+), left ([\d ]+)$", step).groups() for step in moves]
        *true, lie = [(int(a), op, int(b), int(c)) for a, op, b, c, _ in equations]
        assert all(_apply(a, op, b) == c for a, op, b, c in true)  # every move but the last is honest
        assert lie[3] == problem.target != _apply(*lie[:3]) and abs(_apply(*lie[:3]) - problem.target) <= 10
        assert not is_reachable([lie[0], lie[2]], problem.target)  # it lies from a dead end
    assert made >= 20
