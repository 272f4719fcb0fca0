"""The shipped Countdown model: solves through the CLI and by name, is small, and fails clearly when broken."""

import json
import shutil

import pytest

from reflective_search import ReflectiveSearch
from reflective_search.cli import main
from reflective_search.errors import ModelError
from reflective_search.model.reflective import ReflectiveModel
from reflective_search.shipped import shipped_model_path
from reflective_search.tasks.countdown import CountdownTask, verdict
from reflective_search.train.data import PROMPT_TEMPLATE

NAME = "countdown-tiny"
GREEDY = {"method": "greedy", "sampling": {"max_step_tokens": 32, "max_steps": 6}}


@pytest.fixture(scope="module")
def model():
    return ReflectiveModel.from_pretrained(NAME)


def test_solve_command_by_name_sets_the_pick_against_greedy(capsys):
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--model", NAME, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--model", NAME, "--method", "greedy", "--json"]) == 0
    greedy = json.loads(capsys.readouterr().out)
    assert (result["answer"], greedy["greedy"]) == ("8*3+7", None)
    assert result["greedy"] == {key: greedy[key] for key in ("answer", "score", "verdict", "generated_tokens")}
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--model", NAME]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"head: the chosen path scores {result['score']}; greedy decoding's path scores {greedy['score']} "
        f"(answer 8*3+7, not solved; {greedy['generated_tokens']} more tokens, not counted above)")


def test_the_head_line_scores_greedys_path_as_the_search_ranks_its_pick(capsys, tmp_path, model):
    """With ``mcts.aggregate: min`` both numbers on the head line are minimum step scores."""
    from reflective_search.aggregate import minimum

    config = tmp_path / "min.yaml"
    config.write_text("mcts: {aggregate: min}\n")
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--model", NAME, "--config", str(config), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    search = ReflectiveSearch(model, {"mcts": {"aggregate": "min"}})
    pick, greedy = search.solve("Numbers: 3 7 8. Target: 29."), ReflectiveSearch(model, GREEDY).solve("Numbers: 3 7 8. Target: 29.")
    assert result["path_score"] == round(minimum(pick.tree.step_scores(pick.tree.chosen)), 4) == result["score"]
    assert result["greedy"]["score"] == round(minimum(greedy.tree.step_scores(greedy.tree.chosen)), 4)
    assert result["greedy"]["score"] != round(greedy.score, 4)  # greedy's own score is its geometric mean


def test_shipped_model_loads_by_name_with_its_prompt_and_size(model):
    assert model.settings.prompt_template == PROMPT_TEMPLATE
    assert model.format_prompt("Numbers: 3 7 8. Target: 29.") == "Numbers: 3 7 8. Target: 29.\n\n"
    assert model.num_parameters <= 10_000_000


def test_shipped_model_solves_an_easy_problem_greedily(model):
    solution = ReflectiveSearch(model, GREEDY).solve("Numbers: 2 3 4. Target: 24.")
    assert solution.text == "4*2=8, left 3 8.\n\n8*3=24, left 24.\n\nAnswer: 4*2*3.\n\n"
    assert verdict("Numbers: 2 3 4. Target: 24.", solution.text) == "solved"


def test_shipped_files_are_safetensors_within_20_mb():
    files = [p for p in shipped_model_path(NAME).iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    assert not [p.name for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl")]


def test_problem_outside_the_format_gets_an_attempt_and_a_clear_not_solved(model):
    problem = "What is the capital of France?"
    solution = ReflectiveSearch(model, GREEDY).solve(problem)
    assert solution.text.endswith("Answer: 1+1+1+.....\n\n") and solution.stats.generated_tokens == 100
    assert CountdownTask().is_correct({"problem": problem}, solution.text) is False
    assert verdict(problem, solution.text).startswith("not solved: not a Countdown problem")


def _broken_copy(tmp_path, file_name: str):
    copy = tmp_path / NAME
    shutil.copytree(shipped_model_path(NAME), copy)
    data = (copy / file_name).read_bytes()
    (copy / file_name).write_bytes(data[: len(data) // 2])
    return copy


BACKBONE = ("{copy}: the backbone or tokenizer files are corrupted or incomplete (",
            "): re-save the model (or reinstall the package for a shipped one)")


@pytest.mark.parametrize("file_name, start, end", [
    ("sprm_head.safetensors", "{copy}/sprm_head.safetensors is corrupted or truncated (",
     "): re-save or reinstall the model"),
    ("model.safetensors", *BACKBONE),
    ("config.json", *BACKBONE),
    ("tokenizer.json", *BACKBONE),
    ("reflective_config.json", "{copy}/reflective_config.json is unreadable or incomplete (", "): re-save the model"),
])
def test_truncated_checkpoint_file_is_reported_by_name(tmp_path, file_name, start, end):
    copy = _broken_copy(tmp_path, file_name)
    with pytest.raises(ModelError) as error:
        ReflectiveModel.from_pretrained(copy)
    message = str(error.value)
    assert message.startswith(start.format(copy=copy)) and message.endswith(end) and "\n" not in message


def test_solve_command_prints_a_verdict_for_a_countdown_problem(capsys):
    assert main(["solve", "Numbers: 2 3 4. Target: 24.", "--method", "greedy", "--model", NAME]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["answer", "score", "method", "verdict", "compute"]
    assert lines[3] == "verdict: solved"


def test_solve_command_says_nothing_about_correctness_for_other_problems(capsys):
    assert main(["solve", "What is the capital of France?", "--method", "greedy", "--model", NAME]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["answer", "score", "method", "compute"]
    assert main(["solve", "What is the capital of France?", "--method", "greedy", "--json", "--model", NAME]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] is None


def test_solve_refuses_a_tree_path_in_a_missing_folder_before_searching(tmp_path, capsys):
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--tree", str(tmp_path / "nowhere" / "t.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: --tree {tmp_path / 'nowhere' / 't.json'}: the folder {tmp_path / 'nowhere'} does not exist; create it or pick another path\n"


def test_evaluate_refuses_a_bad_override_before_any_work(capsys):
    assert main(["evaluate", "search", "--problems", "1", "--mcts", "budget.tokns=400"]) == 2
    captured = capsys.readouterr()
    assert "unknown key 'budget.tokns'" in captured.err and "greedy" not in captured.out


def test_evaluate_refuses_malformed_override_yaml_in_one_line(capsys):
    assert main(["evaluate", "search", "--problems", "1", "--mcts", "budget.tokens=[1"]) == 2
    assert capsys.readouterr().err == "error: --mcts 'budget.tokens=[1': the value is not valid YAML\n"


def test_evaluate_refuses_an_override_without_a_value_in_one_line(capsys):
    assert main(["evaluate", "search", "--problems", "1", "--mcts", "budget.tokens"]) == 2
    assert capsys.readouterr().err == (
        "error: --mcts 'budget.tokens' must look like key=value, e.g. budget.tokens=400 mcts.children=2\n")


@pytest.mark.parametrize("method", ["dvts", "rebase"])
def test_solve_command_runs_the_new_methods(capsys, tmp_path, method):
    config = tmp_path / "small.yaml"
    config.write_text("sampling: {max_step_tokens: 32, max_steps: 6}\ndvts: {n: 4, width: 2}\nrebase: {width: 4}\n")
    assert main(["solve", "Numbers: 3 7 8. Target: 29.", "--method", method, "--config", str(config), "--json", "--model", NAME]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["method"] == method and result["generated_tokens"] > 0


def test_the_python_api_takes_a_model_by_name(model):
    by_name = ReflectiveSearch(NAME, GREEDY)
    assert by_name.model.source == model.source
    assert by_name.solve("Numbers: 2 3 4. Target: 24.").text == ReflectiveSearch(model, GREEDY).solve(
        "Numbers: 2 3 4. Target: 24.").text == "4*2=8, left 3 8.\n\n8*3=24, left 24.\n\nAnswer: 4*2*3.\n\n"
