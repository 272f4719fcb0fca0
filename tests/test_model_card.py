"""Saved models carry a real card and no local path; a file-trained policy carries step limits that fit it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import build_char_model
from reflective_search.cli import main
from reflective_search.model import ReflectiveModel
from reflective_search.model.card import Card, portable_command, render_card
from reflective_search.train.step_limits import StepLimits, solution_steps, step_limits
from saved_files import card_of, local_paths_in

ALPHABET = "0123456789+-*/=()., \nAnswerEvaluatNumbsTg:"  # the char model: one token per character
MATH = [  # steps in characters (= tokens): [8, 9, 13], [9, 10, 13], [8, 12]
    {"problem": "Evaluate: 3+4*2", "answer": "11", "solution": ["4*2=8", "3+8=11", "Answer: 11"]},
    {"problem": "Evaluate: 5*6-4", "answer": "26", "solution": "5*6=30.\n\n30-4=26.\n\nAnswer: 26.\n\n"},
    {"problem": "Evaluate: 2+2", "answer": "4", "solution": "2+2=4.\n\nAnswer: 4.\n\n"},
]
SAMPLES = [  # the policy's own trajectories, one right and one wrong
    {"problem": "Evaluate: 2+2", "answer": "4", "response": "2+2=4.\n\nAnswer: 4.\n\n", "correct": True},
    {"problem": "Evaluate: 2+2", "answer": "4", "response": "2+2=5.\n\nAnswer: 5.\n\n", "correct": False},
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_card_renders_front_matter_title_and_sections():
    card = Card("countdown-smol", "A policy.", "smollm2-135m-instruct", True, ("countdown", "lora"),
                (("Training", "Trained with\n\n    reflective-search train policy\n"), ("Use", "Load it.")))
    assert render_card(card) == (
        "---\nlicense: apache-2.0\nbase_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlibrary_name: peft\n"
        "pipeline_tag: text-generation\ntags:\n- reflective-search\n- process-reward-model\n- countdown\n- lora\n---\n"
        "\n# countdown-smol\n\nA policy.\n"
        "\n## Training\n\nTrained with\n\n    reflective-search train policy\n"
        "\n## Use\n\nLoad it.\n")


def test_a_card_names_no_licence_or_base_it_does_not_know():
    text = render_card(Card("tiny", "A policy.", None, False))
    assert text.startswith("---\nlibrary_name: transformers\npipeline_tag: text-generation\ntags:\n")
    assert "license" not in text and "base_model" not in text


def test_paths_in_a_quoted_command_become_relative_or_their_file_name(tmp_path):
    argv = ["train", "policy", "--problems", str(tmp_path / "data" / "p.jsonl"), "--out", "runs/policy",
            f"--trajectories={tmp_path / 't.jsonl'}", "--base", str(tmp_path.parent / "base model")]
    assert portable_command(argv, cwd=tmp_path) == (
        "reflective-search train policy --problems data/p.jsonl --out runs/policy --trajectories=t.jsonl "
        "--base 'base model'")


def test_steps_are_cut_as_the_search_cuts_them():
    model = build_char_model(ALPHABET, max_positions=64, seed=3)
    assert solution_steps(model, "4*2=8.\n\n3+8=11.\n\nAnswer: 11.\n\n") == [8, 9, 13]  # the answer step ends it
    assert solution_steps(model, "2+2=4.\n\nAnswer: 4") == [8, 10]  # "Answer: 4" and end-of-sequence
    assert solution_steps(model, "2+2=4.\n\n") == [8, 1]  # then a step of end-of-sequence alone
    assert step_limits(model, ["2+2=4.\n\nAnswer: 4", "2+2=4.\n\n"]) == StepLimits(longest_step=10, most_steps=2)
    assert StepLimits(10, 2).search_defaults() == (("sampling.max_step_tokens", 16), ("sampling.max_steps", 4))
    assert StepLimits(16, 2).search_defaults()[0] == ("sampling.max_step_tokens", 24)  # 24.0: no rounding up past it


def test_a_task_with_limits_of_its_own_keeps_them_where_its_solutions_need_less():
    countdown = {"sampling.max_step_tokens": 32, "sampling.max_steps": 6}
    assert StepLimits(10, 2).search_defaults(countdown) == (("sampling.max_step_tokens", 32), ("sampling.max_steps", 6))
    assert StepLimits(30, 5).search_defaults(countdown) == (("sampling.max_step_tokens", 48), ("sampling.max_steps", 7))


def test_a_saved_adapter_names_its_base_by_name_and_carries_a_card(tmp_path):
    """peft records the base's local folder and writes an empty card: neither survives a save."""
    from reflective_search.model.tiny import build_tiny_model
    from reflective_search.train.finetune import FinetuneConfig, add_lora

    model = build_tiny_model("llama", seed=0)
    model.backbone.name_or_path = str(tmp_path / "cache" / "bases" / "smollm2-135m-instruct")  # as from_pretrained sets it
    model = add_lora(model, FinetuneConfig(lora_rank=2))
    model.base_name = "smollm2-135m-instruct"  # as a LoRA run over that base names it
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "smollm2-135m-instruct"
    assert local_paths_in(tmp_path / "saved", tmp_path) == []
    card = card_of(tmp_path / "saved")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\nlibrary_name: peft\n" in card
    assert "\n# saved\n" in card and "Untrained: its step scores mean nothing" in card


@pytest.fixture(scope="module")
def file_trained(tmp_path_factory):
    """A policy fine-tuned on MATH from the char model (1 step), and its head (1 epoch), via the CLI."""
    root = tmp_path_factory.mktemp("file_trained")
    build_char_model(ALPHABET, max_positions=64, seed=3).save_pretrained(root / "base")
    problems, samples = write_jsonl(root / "math.jsonl", MATH), write_jsonl(root / "samples.jsonl", SAMPLES)
    assert main(["train", "policy", "--base", str(root / "base"), "--problems", str(problems), "--lora", "0",
                 "--steps", "1", "--batch-size", "2", "--held-out", "1", "--out", str(root / "policy")]) == 0
    assert main(["train", "sprm", "--model", str(root / "policy"), "--trajectories", str(samples), "--epochs", "1",
                 "--out", str(root / "model")]) == 0
    return root


def test_a_policy_trained_on_a_file_saves_step_limits_drawn_from_its_solutions(file_trained):
    saved = json.loads((file_trained / "policy" / "reflective_config.json").read_text())
    # longest step 13 tokens x 1.5 = 19.5, up to 24; most steps 3, plus 2
    assert saved["search_defaults"] == {"sampling.max_step_tokens": 24, "sampling.max_steps": 5}
    summary = json.loads((file_trained / "policy" / "train_summary.json").read_text())
    assert summary["step_limits"] == {"longest_step_tokens": 13, "most_steps": 3}
    config = ReflectiveModel.from_pretrained(file_trained / "model").settings.search_defaults
    assert dict(config) == {"sampling.max_step_tokens": 24, "sampling.max_steps": 5}  # the head keeps them


def test_a_trained_policy_card_says_what_on_what_and_how(file_trained):
    card = card_of(file_trained / "policy")
    assert "\n# policy\n\nA policy for the `math` task: a full fine-tune of `base` on the worked solutions of " \
           "`math.jsonl`.\n" in card  # a base folder by its name: it names no base of the library
    assert ("    reflective-search train policy --base base --problems math.jsonl --lora 0 --steps 1 --batch-size 2 "
            "--held-out 1 --out policy\n") in card
    assert "| steps | 1 |\n| batch size | 2 |\n" in card and "| held-out loss (1 solution) |" in card
    assert "| `sampling.max_step_tokens` | 24 |\n| `sampling.max_steps` | 5 |" in card
    assert "the longest step, 13 tokens, times 1.5 rounded up to a multiple of 8; the most steps, 3, plus 2; never " \
           "below the task's own" in card


def test_a_trained_head_card_says_on_which_trajectories(file_trained):
    card = card_of(file_trained / "model")
    assert "The policy `policy` with an SPRM head trained on 2 of its own trajectories from `samples.jsonl` " \
           "(1 correct), labelled by final-answer correctness." in card
    assert "    reflective-search train sprm --model policy --trajectories samples.jsonl --epochs 1 --out model\n" in card
    assert "| trajectories | 2 (1 correct) |" in card and "Trained: its step scores guide the search." in card


@pytest.mark.parametrize("folder", ["policy", "model"])
def test_no_file_of_a_trained_model_holds_a_local_path(file_trained, folder, tmp_path_factory):
    assert local_paths_in(file_trained / folder, tmp_path_factory.getbasetemp()) == []


def test_no_shipped_model_holds_a_local_path(tmp_path_factory):
    from reflective_search.model.bases import BASES
    from reflective_search.shipped import shipped_model_names, shipped_model_path

    for name in shipped_model_names():
        folder = shipped_model_path(name)
        assert local_paths_in(folder, tmp_path_factory.getbasetemp()) == [], name
        adapter = folder / "adapter_config.json"
        if adapter.is_file():  # its base named as the loader resolves it, not by a folder of the machine that made it
            assert json.loads(adapter.read_text(encoding="utf-8"))["base_model_name_or_path"] in BASES, name
