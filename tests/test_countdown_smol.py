"""The shipped countdown-smol (SmolLM2 + a LoRA adapter + a trained head): it fits the package,
loads by name over the SmolLM2 base, solves through the CLI, carries the settings the search
configs hold, and without the base package says what to install. CI's smoke test of the real
path, and of the default model (docs/results/countdown-smol.md has its measured numbers)."""

from __future__ import annotations

import json

import pytest

from conftest import require_smol
from reflective_search.cli import main
from reflective_search.model.bases import BASES
from reflective_search.shipped import shipped_model_path

NAME = "countdown-smol"
EXAMPLE = "Numbers: 3 7 8. Target: 29."
README_EXAMPLE = "Numbers: 6 4 7. Target: 70."  # the quickstart's: greedy gets it wrong, MCTS right


def test_countdown_smol_fits_in_20_mb():
    files = [p for p in shipped_model_path(NAME).iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    assert {"adapter_model.safetensors", "sprm_head.safetensors"} <= {p.name for p in files}
    assert not [p.name for p in files if p.suffix in (".bin", ".pt", ".pth", ".pkl") or p.name == "model.safetensors"]
    config = json.loads((shipped_model_path(NAME) / "reflective_config.json").read_text())
    assert (config["base"], config["head_trained"]) == ("smollm2-135m-instruct", True)


def test_the_default_solves_the_readme_example_that_greedy_gets_wrong(smol_cache, capsys):
    """The quickstart's command, with no model named: MCTS finds the solution, and the head
    scores its path above greedy decoding's wrong one."""
    require_smol()
    assert main(["solve", README_EXAMPLE, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["method"], result["answer"], result["verdict"]) == ("mcts", "(6+4)*7", "solved")
    assert (result["generated_tokens"], result["duplicate_tokens"]) == (318, 143)  # duplicates: merged siblings
    greedy = result["greedy"]
    assert (greedy["answer"], greedy["generated_tokens"], greedy["verdict"]) == (
        "(7+4)*6", 41, "not solved: the answer does not make 70 from 6 4 7")
    # the model ranks finished paths by the step before the answer (aggregate: penultimate), and
    # greedy's path is scored the same way for the head line: (6+4)=10, 10*7=70 against 11*6=66
    assert (result["score"], result["path_score"], greedy["score"]) == (0.9997, 0.9997, 0.0161)


@pytest.mark.parametrize("named", [["--model", NAME], []], ids=["by name", "the default"])
def test_without_the_base_package_it_is_one_line_naming_what_to_install(monkeypatch, tmp_path, capsys, named):
    """Also with no model named: the default never falls back to countdown-tiny."""
    from reflective_search.model.bases import BaseModel

    monkeypatch.setenv("REFLECTIVE_SEARCH_CACHE", str(tmp_path))  # no cached copy to fall back on
    spec = BASES["smollm2-135m-instruct"]
    monkeypatch.setitem(BASES, "smollm2-135m-instruct", BaseModel("no_such_package_here", spec.gguf_file, spec.install))
    assert main(["solve", EXAMPLE, *named]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ("error: the base model smollm2-135m-instruct needs the no_such_package_here package: "
                            f"run `{spec.install}`\n")


@pytest.mark.parametrize("method", ["best_of_n", "majority", "mcts"])
def test_the_shipped_search_configs_hold_the_settings_the_model_was_evaluated_with(method):
    """search_configs/{method}.yaml sets exactly the model's chosen settings for that method."""
    from pathlib import Path

    from reflective_search.config import flatten
    from reflective_search.yaml_io import read_yaml_mapping

    chosen = json.loads((shipped_model_path(NAME) / "reflective_config.json").read_text())["search_defaults"]
    sections = ("sampling", method, "select") + (("budget",) if method == "mcts" else ())
    wanted = {key: value for key, value in chosen.items() if key.split(".")[0] in sections}
    config = flatten(read_yaml_mapping(Path(__file__).parents[1] / "search_configs" / f"{method}.yaml")["search"])
    assert {key: config.get(key) for key in wanted} == wanted and config["method"] == method


def test_the_shipped_head_ranks_correct_solutions_above_faked_ones(smol_cache):
    """CI's smoke check of the head: on generated pairs of a correct and a faked solution to
    validation problems (a true move to a dead end, then an equation that lies to claim the
    target) it orders most pairs right. (Not every one: it scores the lie `8*3=24`, `24+7=29`
    for `Numbers: 3 7 8. Target: 29.` above the true `7*3=21`, `21+8=29`, 0.997 against 0.925.)"""
    import math
    import random

    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.tasks.countdown import solution_text, solve_random
    from reflective_search.tasks.countdown_fakes import faked_solution
    from reflective_search.train.data import valid_problems

    require_smol()
    model = ReflectiveModel.from_pretrained(NAME)

    def score(problem: str, response: str) -> float:
        steps = model.score_steps(problem, response)
        return math.exp(sum(math.log(s) for s in steps) / len(steps))

    rng, pairs = random.Random(0), []
    for problem in valid_problems(3, 30):
        lie = faked_solution(problem, rng)
        if lie is not None:
            pairs.append((problem.text, solution_text(problem, solve_random(problem.numbers, problem.target, rng)), lie))
    ordered = sum(score(text, good) > score(text, bad) for text, good, bad in pairs[:20])
    # measured (v0.1.0): 17 of these 20 (81 of 100 such pairs); a head trained without contrast pairs orders 11 (51)
    assert len(pairs) >= 20 and ordered >= 13
