"""Fine-tuning any causal LM (LoRA and full, resumable), and head training on any problem set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import require_smol
from model_hooks import force_sequence
from saved_files import card_of, local_paths_in
from reflective_search.cli import main
from reflective_search.errors import ProblemError
from reflective_search.model import ReflectiveModel
from reflective_search.train.finetune import FinetuneConfig, add_lora, example_stream, finetune, for_task
from reflective_search.train.sprm import check_both_classes, sample_with_search
from reflective_search.train.tasks import TrainingProblem, get_task, read_problem_file

MATH = [
    {"problem": "Evaluate: 3+4*2", "answer": "11", "solution": ["4*2=8", "3+8=11", "Answer: 11"]},
    {"problem": "Evaluate: 5*6-4", "answer": "26", "solution": "5*6=30.\n\n30-4=26.\n\nAnswer: 26.\n\n"},
    {"problem": "Evaluate: 2+2", "answer": "4", "solution": "2+2=4.\n\nAnswer: 4.\n\n"},
    {"problem": "Evaluate: 7*3+8", "answer": "29", "solution": "7*3=21.\n\n21+8=29.\n\nAnswer: 29.\n\n"},
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_solution_given_as_steps_is_joined_with_the_delimiter(tmp_path):
    problems = read_problem_file(write_jsonl(tmp_path / "p.jsonl", MATH), need="solution")
    assert problems[0] == TrainingProblem("Evaluate: 3+4*2", "11", "4*2=8.\n\n3+8=11.\n\nAnswer: 11.\n\n")


def test_a_record_without_what_the_command_needs_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [MATH[0], {"problem": "Evaluate: 1+1", "answer": "2"}])
    with pytest.raises(ProblemError) as caught:
        read_problem_file(path, need="solution")
    assert str(caught.value) == f"{path}:2: the record has no 'solution', which this command needs"
    (tmp_path / "bad.jsonl").write_text('{"problem": "x"}\n[1]\n', encoding="utf-8")
    with pytest.raises(ProblemError, match=r"bad\.jsonl:2: a record needs a non-empty 'problem' text"):
        read_problem_file(tmp_path / "bad.jsonl")


def _fresh(tiny_llama) -> ReflectiveModel:
    """A private tiny model, the same weights every call (fine-tuning changes weights in place)."""
    from reflective_search.model.tiny import build_tiny_model

    return for_task(build_tiny_model("llama", seed=0), get_task("math"))


class Interrupted(Exception):
    pass


def _stream(tmp_path, stop_at: int | None = None):
    example, _ = example_stream(str(write_jsonl(tmp_path / "m.jsonl", MATH)), [3], seed=0, held_out=0)

    def interrupted(i: int):
        if stop_at is not None and i >= stop_at:
            raise Interrupted  # as if the process were killed while building step 3's batch
        return example(i)

    return interrupted


@pytest.mark.parametrize("rank", [0, 4])
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(tiny_llama, tmp_path, rank):
    config = FinetuneConfig(steps=4, batch_size=2, learning_rate=1e-2, warmup_steps=1, lora_rank=rank,
                            checkpoint_every=2)
    whole = _fresh(tiny_llama)
    whole = add_lora(whole, config) if rank else whole
    finetune(whole, _stream(tmp_path), config, tmp_path / "whole")
    broken = _fresh(tiny_llama)
    broken = add_lora(broken, config) if rank else broken
    with pytest.raises(Interrupted):
        finetune(broken, _stream(tmp_path, stop_at=4), config, tmp_path / "resumed")  # dies in step 2 (0-based)
    again = _fresh(tiny_llama)
    again = add_lora(again, config) if rank else again
    _, summary = finetune(again, _stream(tmp_path), config, tmp_path / "resumed")
    assert summary["steps_done"] == 4
    expected = dict(whole.backbone.named_parameters())
    for name, value in again.backbone.named_parameters():
        assert torch.equal(value, expected[name]), name
    untrained = add_lora(_fresh(tiny_llama), config) if rank else _fresh(tiny_llama)  # the same init, seeded
    start = dict(untrained.backbone.named_parameters())
    moved = [name for name, value in again.backbone.named_parameters()
             if value.requires_grad and not torch.equal(value, start[name])]
    assert moved  # training changed the trained parameters (so equal weights above mean something)


def test_the_loss_covers_the_response_and_its_end_only(tiny_llama):
    from reflective_search.train.finetune import make_batch

    model = _fresh(tiny_llama)
    problem = TrainingProblem("Evaluate: 2+2", "4", "2+2=4.\n\nAnswer: 4.\n\n")
    batch = make_batch(model, [problem])
    prompt = model.encode_prompt(problem.text)
    response = model.tokenizer(problem.solution, add_special_tokens=False)["input_ids"]
    assert batch["labels"][0].tolist() == [-100] * len(prompt) + response + [model.tokenizer.eos_token_id]


def test_sprm_training_on_a_math_file_with_both_classes(tiny_llama, tmp_path):
    """Forced to write 'Answer: 11' then end, the policy is right on one problem, wrong on the other."""
    problems = [TrainingProblem("Evaluate: 3+4*2", "11"), TrainingProblem("Evaluate: 5*6-4", "26")]
    model = _fresh(tiny_llama)
    forced = model.tokenizer("Answer: 11", add_special_tokens=False)["input_ids"] + [model.tokenizer.eos_token_id]
    handle = force_sequence(model, forced)
    try:
        drawn = sample_with_search(model, problems, 2, 1.0, progress=False, task=get_task("math"))
    finally:
        handle.remove()
    assert [(t.problem.answer, t.response, t.correct) for t in drawn] == [
        ("11", "Answer: 11", True), ("11", "Answer: 11", True), ("26", "Answer: 11", False), ("26", "Answer: 11", False)]
    check_both_classes(drawn)
    with pytest.raises(ProblemError) as caught:
        check_both_classes(drawn[2:])
    assert str(caught.value) == ("none of the 2 sampled trajectories is correct, so a head cannot learn to tell them "
                                 "apart: use more or other problems, more samples, or another temperature")


def test_train_sprm_cli_on_a_math_file_refuses_one_class(tiny_llama, tmp_path, capsys):
    model_dir = tmp_path / "policy"
    _fresh(tiny_llama).save_pretrained(model_dir)
    problems = write_jsonl(tmp_path / "p.jsonl", [{k: r[k] for k in ("problem", "answer")} for r in MATH[:2]])
    code = main(["train", "sprm", "--model", str(model_dir), "--problems", str(problems), "--out",
                 str(tmp_path / "out"), "--samples", "1", "--epochs", "1"])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(
        "none of the 2 sampled trajectories is correct, so a head cannot learn to tell them apart: use more or "
        "other problems, more samples, or another temperature")


def test_train_sprm_saves_the_search_settings_it_is_given_over_the_task_defaults(tiny_llama, tmp_path):
    from reflective_search import ReflectiveSearch

    model_dir = tmp_path / "policy"
    for_task(_fresh(tiny_llama), get_task("countdown")).save_pretrained(model_dir)
    trajectories = write_jsonl(tmp_path / "t.jsonl", [
        {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "29", "response": r, "correct": c}
        for r, c in [("7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n", True),
                     ("8*3=24, left 7 24.\n\n24+7=29, left 29.\n\nAnswer: 8*3+7.\n\n", False)]])
    assert main(["train", "sprm", "--model", str(model_dir), "--trajectories", str(trajectories), "--epochs", "1",
                 "--out", str(tmp_path / "out"), "--search", "mcts.c_puct=1.0", "sampling.max_steps=5"]) == 0
    saved = json.loads((tmp_path / "out" / "reflective_config.json").read_text())["search_defaults"]
    assert saved == {"sampling.max_step_tokens": 32, "sampling.max_steps": 5, "mcts.c_puct": 1.0}
    config = ReflectiveSearch(ReflectiveModel.from_pretrained(tmp_path / "out")).config
    assert (config.mcts.c_puct, config.sampling.max_steps, config.sampling.max_step_tokens) == (1.0, 5, 32)


def test_a_head_for_block_steps_is_trained_and_scores_on_blocks(tiny_llama, tmp_path, capsys):
    from reflective_search.config import StepConfig

    model_dir, blocks = tmp_path / "policy", StepConfig("tokens", 4)
    for_task(_fresh(tiny_llama), get_task("countdown")).save_pretrained(model_dir)
    responses = ["7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n", "8*3=24, left 7 24.\n\nAnswer: 8*3+7.\n\n"]
    trajectories = write_jsonl(tmp_path / "t.jsonl", [
        {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "29", "response": r, "correct": i == 0}
        for i, r in enumerate(responses)])
    assert main(["train", "sprm", "--model", str(model_dir), "--trajectories", str(trajectories), "--epochs", "1",
                 "--out", str(tmp_path / "out"), "--search", "sampling.step.kind=tokens", "sampling.step.size=4"]) == 0
    trained = ReflectiveModel.from_pretrained(tmp_path / "out")
    ids = [trained.tokenizer(r, add_special_tokens=False)["input_ids"] for r in responses]
    count = sum(len(trained.step_feature_positions(0, i, blocks)) for i in ids)
    assert count != 5 == sum(len(trained.step_feature_positions(0, i, StepConfig())) for i in ids)
    assert f"head features: {count} steps of 2 trajectories" in capsys.readouterr().err  # blocks, not delimiters
    assert trained.search_step == blocks
    for response in responses:  # scored by the rule the search uses, with no step given
        assert trained.score_steps("Numbers: 3 7 8. Target: 29.", response) == \
            trained.score_steps("Numbers: 3 7 8. Target: 29.", response, blocks)


def test_contrast_pairs_join_the_head_training_set_labelled_by_the_checker(tiny_llama, tmp_path, capsys):
    model_dir = tmp_path / "policy"
    for_task(_fresh(tiny_llama), get_task("countdown")).save_pretrained(model_dir)
    trajectories = write_jsonl(tmp_path / "t.jsonl", [
        {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "29", "response": "Answer: 7*3+8.\n\n", "correct": True}])
    assert main(["train", "sprm", "--model", str(model_dir), "--trajectories", str(trajectories), "--epochs", "1",
                 "--out", str(tmp_path / "out"), "--contrast", "3", "--numbers", "3"]) == 0
    err = capsys.readouterr().err  # one sample alone is one class: the pairs bring the other
    assert "contrast pairs: 3 (3 of 6 trajectories correct)" in err and "steps of 7 trajectories" in err
    assert (tmp_path / "out" / "sprm_head.safetensors").is_file()


@pytest.mark.parametrize("flags, message", [
    (["--task", "math", "--contrast", "2"], "--contrast: the math task has no generator of faked solutions; "
                                            "use --task countdown or leave --contrast out"),
    (["--contrast", "-1"], "--contrast: -1 is not a number of pairs; give 0 or more"),
])
def test_train_sprm_refuses_a_contrast_it_cannot_serve_before_any_work(tmp_path, capsys, flags, message):
    assert main(["train", "sprm", "--model", "no-such-model", "--out", str(tmp_path / "out"), *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "out").exists()


def test_train_sprm_refuses_a_bad_search_setting_before_any_work(tmp_path, capsys):
    assert main(["train", "sprm", "--model", "no-such-model", "--out", str(tmp_path / "out"),
                 "--search", "mcts.cpuct=1"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown key 'mcts.cpuct' (did you mean 'c_puct'?)")
    assert not (tmp_path / "out").exists()


# -- the real base: SmolLM2, a few steps of each kind -----------------------------------------------


@pytest.mark.parametrize("lora", ["8", "0"])
def test_smollm2_smoke_fine_tune_saves_a_model_that_solves(smol_cache, tmp_path, lora):
    require_smol()
    out = tmp_path / "policy"
    assert main(["train", "policy", "--base", "smollm2-135m-instruct", "--problems", "countdown", "--out", str(out),
                 "--steps", "2", "--batch-size", "1", "--held-out", "2", "--lora", lora]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps_done"] == 2 and summary["held_out_loss"] > 0
    config = json.loads((out / "reflective_config.json").read_text())
    assert (config["base"], config["head_trained"]) == ("smollm2-135m-instruct", False)
    assert config["search_defaults"] == {"sampling.max_step_tokens": 32, "sampling.max_steps": 6}
    assert local_paths_in(out, smol_cache.parent) == []  # the base is named, not found in the cache
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct\n" in card_of(out)
    if lora != "0":
        assert (out / "adapter_model.safetensors").stat().st_size < 11_000_000  # r=8 in fp32: ~10 MB, not 538
        assert not (out / "model.safetensors").exists()
    model = ReflectiveModel.from_pretrained(out)
    base = ReflectiveModel.from_pretrained("smollm2-135m-instruct")
    ids = torch.tensor([model.encode_prompt("Numbers: 3 7 8. Target: 29.")])
    with torch.no_grad():
        assert not torch.allclose(model.backbone(ids).logits, base.backbone(ids).logits)
    assert model.format_prompt("Numbers: 3 7 8. Target: 29.").count("Use each number exactly once") == 1


def test_a_finished_lora_run_re_run_with_bf16_storage_saves_a_half_size_adapter(smol_cache, tmp_path):
    from safetensors.torch import load_file

    require_smol()
    out = tmp_path / "policy"
    command = ["train", "policy", "--base", "smollm2-135m-instruct", "--out", str(out), "--steps", "2",
               "--batch-size", "1", "--held-out", "2", "--lora", "4", "--learning-rate", "0.05"]
    assert main(command) == 0
    fp32_size, fp32 = (out / "adapter_model.safetensors").stat().st_size, ReflectiveModel.from_pretrained(out)
    assert main(command + ["--adapter-dtype", "bf16"]) == 0  # the checkpoint is complete: only the save runs
    weights = load_file(str(out / "adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}
    assert abs((out / "adapter_model.safetensors").stat().st_size / fp32_size - 0.5) < 0.01
    bf16 = ReflectiveModel.from_pretrained(out)
    assert bf16.backbone.dtype == torch.float32  # merged into the fp32 base
    ids = torch.tensor([bf16.encode_prompt("Numbers: 3 7 8. Target: 29.")])
    with torch.no_grad():
        a, b = fp32.backbone(ids).logits, bf16.backbone(ids).logits
    assert not torch.equal(a, b) and torch.allclose(a, b, atol=0.1)  # rounded, not another model


def test_a_kill_between_the_checkpoint_renames_resumes_from_the_previous_one(tiny_llama, tmp_path):
    config = FinetuneConfig(steps=4, batch_size=2, learning_rate=1e-2, warmup_steps=1, checkpoint_every=2)
    whole = _fresh(tiny_llama)
    finetune(whole, _stream(tmp_path), config, tmp_path / "whole")
    broken = _fresh(tiny_llama)
    with pytest.raises(Interrupted):
        finetune(broken, _stream(tmp_path, stop_at=4), config, tmp_path / "resumed")
    (tmp_path / "resumed" / "checkpoint").rename(tmp_path / "resumed" / ".checkpoint.old")  # as if killed mid-swap
    again = _fresh(tiny_llama)
    _, summary = finetune(again, _stream(tmp_path), config, tmp_path / "resumed")
    assert summary["steps_done"] == 4
    expected = dict(whole.backbone.named_parameters())
    assert all(torch.equal(value, expected[name]) for name, value in again.backbone.named_parameters())


def test_a_checkpoint_of_another_kind_of_run_is_refused(tiny_llama, tmp_path):
    from reflective_search.errors import ConfigError

    full = FinetuneConfig(steps=2, batch_size=2, checkpoint_every=1)
    finetune(_fresh(tiny_llama), _stream(tmp_path), full, tmp_path / "out")
    lora = FinetuneConfig(steps=2, batch_size=2, checkpoint_every=1, lora_rank=4)
    with pytest.raises(ConfigError, match=r"holds a checkpoint of another kind of run \(LoRA rank or model differ\)"):
        finetune(add_lora(_fresh(tiny_llama), lora), _stream(tmp_path), lora, tmp_path / "out")


def test_saving_full_weights_over_an_adapter_folder_drops_the_adapter(tiny_llama, tmp_path):
    folder = tmp_path / "m"
    _fresh(tiny_llama).save_pretrained(folder)
    (folder / "adapter_config.json").write_text("{}", encoding="utf-8")  # left by an earlier LoRA run
    _fresh(tiny_llama).save_pretrained(folder)
    assert not (folder / "adapter_config.json").exists()
    ReflectiveModel.from_pretrained(folder)  # loads the full weights, not a stale adapter


def test_unset_options_of_train_policy_take_the_fine_tuning_defaults():
    from reflective_search.cli import build_parser
    from reflective_search.commands.train import finetune_config

    args = build_parser().parse_args(["train", "policy", "--base", "b", "--out", "o"])
    config = finetune_config(args)
    assert (config.steps, config.batch_size, config.lora_rank, config.learning_rate) == (
        FinetuneConfig().steps, FinetuneConfig().batch_size, 16, 1e-3)
    full = finetune_config(build_parser().parse_args(["train", "policy", "--base", "b", "--out", "o", "--lora", "0"]))
    assert (full.lora_rank, full.learning_rate) == (0, 1e-4)


SMOL_SAMPLES = [
    {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "29", "correct": True,
     "response": "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"},
    {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "29", "correct": False,
     "response": "8*3=24, left 7 24.\n\n24+7=29, left 29.\n\nAnswer: 8*3+7.\n\n"},
    {"problem": "Numbers: 2 3 4. Target: 24.", "answer": "24", "correct": True,
     "response": "4*2=8, left 3 8.\n\n8*3=24, left 24.\n\nAnswer: 4*2*3.\n\n"},
]


def test_expert_iteration_trains_the_shipped_adapter_further_on_its_correct_samples(smol_cache, tmp_path, capsys):
    from safetensors.torch import load_file

    from reflective_search.shipped import shipped_model_path

    require_smol()
    samples = write_jsonl(tmp_path / "trajectories.jsonl", SMOL_SAMPLES)
    assert [p.solution is not None for p in read_problem_file(samples, need="solution")] == [True, True]
    out = tmp_path / "round2"
    command = ["train", "policy", "--base", "countdown-smol", "--problems", str(samples), "--task", "countdown",
               "--out", str(out), "--steps", "1", "--batch-size", "1", "--held-out", "1", "--learning-rate", "1e-6"]
    assert main(command + ["--lora", "8"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "holds a LoRA adapter of rank 16: continue it with --lora 16, or fine-tune full weights with --lora 0")
    assert main(command + ["--lora", "16"]) == 0
    assert not (out / "model.safetensors").exists()  # an adapter over the named base again, not 538 MB
    config = json.loads((out / "reflective_config.json").read_text())
    assert (config["base"], config["head_trained"]) == ("smollm2-135m-instruct", False)  # the head must be retrained
    # Its samples' steps need fewer than Countdown's own limits, which fit every problem size: kept.
    assert config["search_defaults"] == {"sampling.max_step_tokens": 32, "sampling.max_steps": 6}
    assert json.loads((out / "train_summary.json").read_text())["step_limits"]["most_steps"] == 3
    before = load_file(str(shipped_model_path("countdown-smol") / "adapter_model.safetensors"))
    after = load_file(str(out / "adapter_model.safetensors"))
    assert before.keys() == after.keys()
    # One step at lr 1e-6 from the shipped adapter: moved, but only just (a fresh adapter would be far off).
    assert any(not torch.equal(before[k].float(), after[k]) for k in before)
    assert all(torch.allclose(before[k].float(), after[k], atol=1e-4) for k in before)


def test_a_trajectories_file_with_no_correct_sample_is_refused_for_fine_tuning(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl", [{"problem": "Numbers: 3 7 8. Target: 29.", "response": "x", "correct": False}])
    with pytest.raises(ProblemError) as caught:
        read_problem_file(path, need="solution")
    assert str(caught.value) == f"{path}: none of its trajectories is correct, so there is nothing to fine-tune on"


def test_joint_head_training_on_a_lora_policy_trains_its_adapter_and_saves_an_adapter(smol_cache, tmp_path):
    from safetensors.torch import load_file

    from reflective_search.shipped import shipped_model_path

    require_smol()
    samples, out = write_jsonl(tmp_path / "trajectories.jsonl", SMOL_SAMPLES), tmp_path / "joint"
    assert main(["train", "sprm", "--model", "countdown-smol", "--trajectories", str(samples), "--out", str(out),
                 "--backbone-scale", "1", "--epochs", "1", "--batch-size", "3"]) == 0
    assert not (out / "model.safetensors").exists()  # the adapter trained, not 538 MB of merged weights
    config = json.loads((out / "reflective_config.json").read_text())
    assert (config["base"], config["head_trained"]) == ("smollm2-135m-instruct", True)
    assert local_paths_in(out, smol_cache.parent) == [] and "library_name: peft\n" in card_of(out)
    before = load_file(str(shipped_model_path("countdown-smol") / "adapter_model.safetensors"))
    after = load_file(str(out / "adapter_model.safetensors"))
    assert before.keys() == after.keys() and any(not torch.equal(before[k].float(), after[k]) for k in before)
    assert all(torch.allclose(before[k].float(), after[k], atol=1e-2) for k in before)  # one step of 1e-4
    assert ReflectiveModel.from_pretrained(out).score_steps("Numbers: 3 7 8. Target: 29.", SMOL_SAMPLES[0]["response"])
