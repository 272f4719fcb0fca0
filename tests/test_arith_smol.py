"""The shipped arith-smol (SmolLM2 + a LoRA adapter + a head trained on its own samples'
outcomes): it fits the package, loads by name, solves a known problem through the CLI, and
its head scores a correct step above a slipped one (docs/results/arith-smol.md)."""

from __future__ import annotations

import json

import pytest

from conftest import require_smol
from reflective_search.cli import main
from reflective_search.shipped import shipped_model_path

NAME = "arith-smol"
EXAMPLE = "Evaluate: 7 + 4 * 9 - 8"


def test_arith_smol_fits_in_20_mb_with_a_trained_head():
    files = [p for p in shipped_model_path(NAME).iterdir() if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 20 * 2**20
    assert {"adapter_model.safetensors", "sprm_head.safetensors", "README.md"} <= {p.name for p in files}
    config = json.loads((shipped_model_path(NAME) / "reflective_config.json").read_text())
    assert (config["base"], config["head_trained"]) == ("smollm2-135m-instruct", True)
    assert config["message_template"].startswith("Evaluate the expression one operation per step.")


def test_arith_smol_solves_the_readme_problem(smol_cache, capsys):
    require_smol()
    assert main(["solve", "--model", NAME, EXAMPLE, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["answer"], result["verdict"]) == ("35", "solved")


@pytest.fixture(scope="module")
def arith_smol(smol_cache):
    require_smol()
    from reflective_search import ReflectiveModel

    return ReflectiveModel.from_pretrained(NAME)


def test_the_head_scores_the_step_after_a_slipped_product_below_the_right_one(arith_smol):
    """On a depth-2 problem (the head trained on depths 1-4, where it reads best): the step
    that carries a slipped product on scores far below the same step done right."""
    problem = "Evaluate: 6 * 7 - 5"
    right = arith_smol.score_steps(problem, "6*7=42: 42-5.\n\n42-5=37.\n\nAnswer: 37.\n\n")
    slipped = arith_smol.score_steps(problem, "6*7=48: 48-5.\n\n48-5=43.\n\nAnswer: 43.\n\n")
    assert right[1] > 0.5 > 0.1 > slipped[1]


def test_the_head_scores_an_illegal_first_reduction_below_the_legal_one(arith_smol):
    legal = arith_smol.score_steps(EXAMPLE, "4*9=36: 7+36-8.\n\n")
    illegal = arith_smol.score_steps(EXAMPLE, "7+4=11: 11*9-8.\n\n")  # + before *
    assert legal[0] > illegal[0]
