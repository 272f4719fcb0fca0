"""The arithmetic task: generator grammar, checker, step labels, and bad input."""

import random
import re

import pytest

from reflective_search.errors import ProblemError
from reflective_search.tasks import verdict
from reflective_search.tasks.arithmetic import (
    VALUE_LIMIT, ArithmeticProblem, answer_key, check_answer, generate, label_steps, legal_reductions, parse_problem,
    problems, reduce_at, solution_steps, solution_text,
)
from reflective_search.train.tasks import get_task, TrainingProblem

# the problem grammar, written independently of the module: literals 1-99, + - *, parentheses,
# one space around each binary operator, none inside parentheses
_GRAMMAR = re.compile(r"Evaluate: \(*[1-9][0-9]?\)*( [-+*] \(*[1-9][0-9]?\)*)+")


def _problem(text: str) -> ArithmeticProblem:
    return parse_problem(f"Evaluate: {text}")


@pytest.mark.parametrize("depth", [1, 2, 4, 8])
def test_generated_problems_follow_the_grammar_at_their_depth(depth):
    for problem in problems(40, [depth], seed=depth):
        assert _GRAMMAR.fullmatch(problem.text), problem.text
        assert problem.depth == depth and problem.text.count("(") == problem.text.count(")")
        assert problem.value == eval(problem.expression)  # the grammar is a subset of Python's


def test_generated_intermediate_values_stay_within_the_limit():
    for problem in problems(60, [6, 8], seed=3):
        tokens = list(problem.tokens)
        while len(tokens) > 1:
            index = legal_reductions(tokens)[0]
            tokens = reduce_at(tokens, index)
            assert all(abs(t) <= VALUE_LIMIT for t in tokens if isinstance(t, int))


def test_generator_is_deterministic_in_its_seed():
    assert [p.text for p in problems(20, [2, 5], seed=7)] == [p.text for p in problems(20, [2, 5], seed=7)]
    assert [p.text for p in problems(20, [2, 5], seed=7)] != [p.text for p in problems(20, [2, 5], seed=8)]


def test_one_digit_operands_stay_below_ten():
    rng = random.Random(0)
    for _ in range(30):
        assert all(t < 10 for t in generate(rng, 4, digits=1).tokens if isinstance(t, int))


def test_worked_solution_reduces_leftmost_legal_operation_each_step():
    problem = _problem("(((4 + 8))) - 7 * 7")
    assert solution_steps(problem) == ["4+8=12: 12-7*7", "7*7=49: 12-49", "12-49=-37", "Answer: -37"]
    assert solution_text(problem).endswith("Answer: -37.\n\n")


def test_negative_intermediate_is_parenthesised_after_the_first_token():
    problem = _problem("5 - (3 - 49) * 2")
    assert solution_steps(problem) == ["3-49=-46: 5-(-46)*2", "-46*2=-92: 5-(-92)", "5-(-92)=97", "Answer: 97"]
    assert problem.value == 97


def test_legal_reductions_follow_precedence_then_left_to_right():
    assert legal_reductions(_problem("2 + 3 * 4").tokens) == [3]
    assert legal_reductions(_problem("2 - 3 + 4").tokens) == [1]
    assert legal_reductions(_problem("2 * 3 + 4 * 5").tokens) == [1, 5]
    assert legal_reductions(_problem("2 * 3 * 4").tokens) == [1]


@pytest.mark.parametrize("response, solved", [
    ("12-49=-37.\n\nAnswer: -37.\n\n", True),
    ("Answer: -37", True),
    ("Answer: 37.\n\n", False),  # the sign matters
    ("Answer: -37.5", False),
    ("Answer: minus thirty-seven", False),
    ("12-49=-37.\n\n", False),  # no answer stated
    ("", False),
])
def test_checker_compares_the_stated_integer_with_the_exact_value(response, solved):
    assert check_answer(_problem("(((4 + 8))) - 7 * 7"), response) is solved


def test_checker_takes_the_last_answer_stated():
    problem = _problem("7 + 4 * 9 - 8")
    assert check_answer(problem, "Answer: 99.\n\nAnswer: 35.\n\n")
    assert not check_answer(problem, "Answer: 35.\n\nAnswer: 99.\n\n")


def test_answer_key_is_the_stated_integer():
    assert answer_key("7*7=49: 12-49.\n\nAnswer: -37.\n\n") == "-37"
    assert answer_key("no answer") is None


def test_step_labels_of_the_worked_solution_are_all_good():
    for problem in problems(30, [1, 3, 6, 8], seed=11):
        assert label_steps(problem, solution_text(problem)) == [True] * (problem.depth + 1)


def test_step_label_refuses_wrong_precedence():
    problem = _problem("7 + 4 * 9 - 8")
    assert label_steps(problem, "7+4=11: 11*9-8.\n\n11*9=99: 99-8.\n\n") == [False, False]


def test_step_label_refuses_wrong_arithmetic_and_poisons_later_steps():
    problem = _problem("7 + 4 * 9 - 8")
    response = "4*9=36: 7+36-8.\n\n7+36=42: 42-8.\n\n42-8=34.\n\nAnswer: 34.\n\n"
    assert label_steps(problem, response) == [True, False, False, False]


def test_step_label_refuses_a_copying_error_in_the_remainder():
    problem = _problem("7 + 4 * 9 - 8")
    assert label_steps(problem, "4*9=36: 7+36-9.\n\n") == [False]


def test_step_label_accepts_any_legal_order():
    problem = _problem("2 * 3 + 4 * 5")
    assert label_steps(problem, "4*5=20: 2*3+20.\n\n2*3=6: 6+20.\n\n6+20=26.\n\nAnswer: 26.\n\n") == [True] * 4


def test_answer_step_is_good_only_once_the_expression_is_reduced():
    problem = _problem("7 + 4 * 9 - 8")
    assert label_steps(problem, "Answer: 35.\n\n") == [False]


@pytest.mark.parametrize("text", [
    "Evaluate: 7", "Evaluate: -7 + 2", "Evaluate: 7+2", "Evaluate: (7 + 2", "Evaluate: 100 + 2",
    "Evaluate: ( 7 + 2)", "Evaluate: 7 / 2", "Evaluate: 0 + 2", "Compute: 7 + 2", "Evaluate: 7 +  2",
])
def test_problem_outside_the_grammar_is_refused_in_one_line(text):
    assert ArithmeticProblem.parse(text) is None
    with pytest.raises(ProblemError, match="not an arithmetic problem") as info:
        parse_problem(text)
    assert "\n" not in str(info.value)


def test_depth_zero_is_refused_in_one_line():
    with pytest.raises(ProblemError, match="depth must be at least 1 operation, got 0"):
        generate(random.Random(0), 0)


def test_digits_outside_one_or_two_are_refused():
    with pytest.raises(ProblemError, match="operand digits must be 1 or 2"):
        generate(random.Random(0), 3, digits=3)


def test_verdict_names_the_value_when_wrong():
    assert verdict("Evaluate: 7 + 4 * 9 - 8", "Answer: 35.") == "solved"
    assert verdict("Evaluate: 7 + 4 * 9 - 8", "Answer: 34.") == "not solved: the value is 35"
    assert verdict("Evaluate: 7 + 4 * 9 - 8", "no idea") == "not solved: the response states no integer after 'Answer:'"
    assert verdict("What is the capital of France?", "Paris") is None


def test_task_record_checks_and_labels_through_the_registry():
    task = get_task("arithmetic")
    problem = TrainingProblem("Evaluate: 7 + 4 * 9 - 8")
    assert task.correct(problem, "Answer: 35.") and not task.correct(problem, "Answer: 36.")
    assert task.step_labels(problem, "4*9=36: 7+36-8.\n\n") == [True]
    assert dict(task.search_defaults)["sampling.max_steps"] >= 9  # depth 8 and its answer step


def test_held_out_splits_are_deterministic_and_never_in_the_training_stream():
    from reflective_search.tasks.arithmetic import TRAIN_SEED, split_problems

    test = split_problems("test", 40, 2)
    assert [p.text for p in test] == [p.text for p in split_problems("test", 40, 2)]
    assert len({p.text for p in test}) == 40 and all(p.depth == 2 for p in test)
    training = {p.text for p in problems(10_000, range(1, 9), TRAIN_SEED)}
    assert not training & {p.text for p in test + split_problems("valid", 40, 2)}
    assert not {p.text for p in test} & {p.text for p in split_problems("valid", 40, 2)}


def test_an_unknown_split_is_refused_in_one_line():
    from reflective_search.tasks.arithmetic import split_problems

    with pytest.raises(ProblemError, match="unknown split 'train': use one of valid, test"):
        split_problems("train", 1, 2)


def test_experiment_generator_gives_each_depth_its_count_with_ids_and_answers(tmp_path):
    from reflective_search.experiments.problems import load_problems
    from reflective_search.experiments.spec import spec_from_dict

    spec = spec_from_dict({"problems": {"generator": "arithmetic", "count": 3, "options": {"depths": [2, 6]}}})
    loaded = load_problems(spec.problems)
    assert [p.problem_id for p in loaded] == ["d2-0", "d2-1", "d2-2", "d6-0", "d6-1", "d6-2"]
    assert all(str(parse_problem(p.text).value) == p.record["answer"] for p in loaded)
    assert spec.search.answer_key == "arithmetic"  # votes count stated integers


@pytest.mark.parametrize("options, message", [
    ({"depths": [0, 2]}, "problems.options.depths: (0, 2) is not allowed; expected a list of integers in 1..10"),
    ({"depths": 4}, "problems.options.depths: 4 has the wrong type; expected a list"),
    ({"depths": [2, "x"]}, "problems.options.depths[1]: 'x' has the wrong type; expected int"),
    ({"split": "train"}, "problems.options.split: 'train' is not allowed; expected test | valid"),
])
def test_bad_generator_options_are_refused_in_one_line(options, message):
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.spec import spec_from_dict

    with pytest.raises(ConfigError) as info:
        spec_from_dict({"problems": {"generator": "arithmetic", "options": options}})
    assert str(info.value) == message


def test_report_by_depth_gives_a_table_and_a_point_per_depth(tmp_path, capsys):
    import json

    import yaml

    from reflective_search.cli import main

    config = {"model": "countdown-tiny", "problems": {"generator": "arithmetic", "count": 2, "options": {"depths": [1, 3]}},
              "search": {"method": "greedy", "sampling": {"max_steps": 2, "max_step_tokens": 8}},
              "output_dir": str(tmp_path / "run")}
    (tmp_path / "depth.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "depth.yaml")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run"), "--by", "depth", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert list(reports) == ["1", "3"]
    assert [(row["method"], row["problems"]) for row in reports["3"]["rows"]] == [("greedy", 2)]
    markdown = (tmp_path / "run" / "report_by_depth.md").read_text()
    assert markdown.startswith("## depth 1\n") and "\n## depth 3\n" in markdown
    assert (tmp_path / "run" / "by_depth.png").stat().st_size > 0


def test_report_by_a_field_the_problems_lack_is_one_line(tmp_path, capsys):
    import yaml

    from reflective_search.cli import main

    config = {"model": "countdown-tiny", "problems": {"generator": "arithmetic", "count": 1, "options": {"depths": [1]}},
              "search": {"method": "greedy", "sampling": {"max_steps": 1, "max_step_tokens": 4}},
              "output_dir": str(tmp_path / "run")}
    (tmp_path / "depth.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "depth.yaml")]) == 0
    capsys.readouterr()
    assert main(["report", str(tmp_path / "run"), "--by", "width"]) == 2
    assert capsys.readouterr().err == ("error: --by width: problem 'd1-0' has no 'width' field; "
                                       "group by a field every problem record has\n")
