"""Smoke runs of both trainers on a tiny config, then the saved model loads and solves."""

import math
import random

import pytest
import torch

from reflective_search import ReflectiveSearch
from reflective_search.cli import main
from reflective_search.model.reflective import ReflectiveModel
from reflective_search.tasks.countdown import CountdownProblem, check_answer, problem_key
from reflective_search.train.data import draw_example, held_out_keys
from reflective_search.train.policy import PolicyConfig, build_policy, make_batch
from reflective_search.train.sprm import Trajectory, sample_trajectories, sample_with_search
from reflective_search.train.step_features import frozen_features, make_step_batch
from reflective_search.train.tasks import TrainingProblem, countdown_problems, get_task


def countdown(numbers, target) -> TrainingProblem:
    return TrainingProblem(CountdownProblem(tuple(numbers), target).text, str(target))


def checks(problem: TrainingProblem, response: str) -> bool:
    return get_task("countdown").correct(problem, response)

TINY = ["--hidden-size", "32", "--layers", "1", "--heads", "2", "--intermediate-size", "64"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A policy (3 steps) and a head (1 epoch on 6 sampled trajectories), via the CLI."""
    import json

    root = tmp_path_factory.mktemp("train")
    policy, model, file = root / "policy", root / "model", root / "hand.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in HAND_MADE))
    assert main(["train", "policy", "--out", str(policy), "--steps", "3", "--batch-size", "4", *TINY]) == 0
    assert main(["train", "sprm", "--model", str(policy), "--out", str(model), "--epochs", "1",
                 "--trajectories", str(file)]) == 0
    return policy, model


def test_trained_model_loads_and_solves(trained):
    model = ReflectiveModel.from_pretrained(trained[1])
    config = {"method": "best_of_n", "best_of_n": {"n": 2}, "sampling": {"max_step_tokens": 8, "max_steps": 2}}
    solution = ReflectiveSearch(model, config).solve("Numbers: 3 7 8. Target: 29.")
    assert solution.stats.generated_tokens > 0
    assert len(solution.tree.leaves()) == 2


def test_trained_folders_carry_a_card_and_no_local_path(trained, tmp_path_factory):
    from saved_files import card_of, local_paths_in

    policy, model = trained
    assert local_paths_in(policy, tmp_path_factory.getbasetemp()) == []
    assert local_paths_in(model, tmp_path_factory.getbasetemp()) == []
    assert "A Countdown policy trained from scratch: a Llama of " in card_of(policy)
    assert f"    reflective-search train sprm --model policy --out model --epochs 1 --trajectories hand.jsonl\n" \
        in card_of(model)


def test_sprm_training_changes_only_the_head_when_frozen(trained):
    policy = ReflectiveModel.from_pretrained(trained[0])
    model = ReflectiveModel.from_pretrained(trained[1])
    for (name, a), (_, b) in zip(policy.backbone.state_dict().items(), model.backbone.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(policy.head[0].weight, model.head[0].weight)


HAND_MADE = [  # one right and one wrong trajectory, as `train sprm --trajectories` files hold them
    {"problem": "Numbers: 3 7 8. Target: 29.", "response": "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\n"
     "Answer: 7*3+8.\n\n", "correct": True},
    {"problem": "Numbers: 3 7 8. Target: 29.", "response": "8-7=1, left 3 1.\n\nAnswer: 8-7+3.\n\n",
     "correct": False},
]


def test_joint_training_moves_the_backbone(trained, tmp_path):
    import json

    out, file = tmp_path / "joint", tmp_path / "hand.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in HAND_MADE))
    assert main(["train", "sprm", "--model", str(trained[0]), "--out", str(out), "--epochs", "1",
                 "--backbone-scale", "1e-4", "--trajectories", str(file)]) == 0
    before = ReflectiveModel.from_pretrained(trained[0]).backbone.state_dict()
    after = ReflectiveModel.from_pretrained(out).backbone.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_training_features_are_the_features_inference_scores():
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    problem = countdown((3, 7, 8), 29)
    response = "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    trajectory = Trajectory(problem, tuple(model.encode_prompt(problem.text)), tuple(ids), response, True)
    features, labels, _, steps = frozen_features(model, [trajectory, trajectory])
    with torch.no_grad():
        trained_scores = model.score_features(features[:3]).tolist()
    assert trained_scores == pytest.approx(model.score_steps(problem.text, response), abs=1e-6)
    assert labels.tolist() == [1.0] * 6 and steps.tolist() == [0, 1, 2, 0, 1, 2]


def test_prompt_shared_features_equal_one_full_forward_per_trajectory():
    from reflective_search.train.step_features import batch_features

    torch.manual_seed(0)
    model = build_policy(PolicyConfig(hidden_size=32, layers=2, heads=2, intermediate_size=64))
    problems = [countdown((3, 7, 8), 29), countdown((3, 7, 8, 2), 58), countdown((4, 5, 6), 26)]
    responses = ["7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n", "8-7=1, left 3 1.\n\nAnswer: 8",
                 ".\n\nAnswer: 3.", "", "4*5=20, left 6 20.\n\n20+6=26."]
    trajectories = [Trajectory(p, tuple(model.encode_prompt(p.text)), tuple(model.tokenizer(r, add_special_tokens=False)["input_ids"]),
                               r, k % 2 == 0)
                    for k, (p, r) in enumerate((p, r) for p in problems for r in responses)]
    # rows=4: the 5 trajectories of a prompt exceed a chunk, prompts of two lengths never share one
    features, labels, owners, steps = frozen_features(model, trajectories, batch_size=4)
    batch = make_step_batch(model, trajectories)
    with torch.no_grad():
        expected = batch_features(model, batch)
    assert owners.tolist() == batch.rows.tolist() and steps.tolist() == batch.step_index.tolist()
    assert labels.tolist() == batch.labels.tolist()
    assert 0 in batch.step_index.tolist() and features.shape == expected.shape
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)


def test_step_batch_reads_each_step_where_its_delimiter_is_emitted():
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    problem = countdown((3, 7, 8), 29)
    response = "8-7=1, left 3 1.\n\nAnswer: 8-7+3.\n\n"
    ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    prompt = tuple(model.encode_prompt(problem.text))
    batch = make_step_batch(model, [Trajectory(problem, prompt, tuple(ids), response, False)])
    # Char tokens: step 1's "." is response char 15, step 2's is char 31; the emitting state is one before.
    assert batch.positions.tolist() == [len(prompt) + 14, len(prompt) + 30]
    assert batch.labels.tolist() == [0.0, 0.0]


def test_training_draws_never_contain_held_out_problems_and_always_solve_them():
    rng, held_out = random.Random(0), held_out_keys()
    examples = [draw_example(rng, count) for count in (3, 4) for _ in range(150)]
    assert not [e for e in examples if problem_key(e.problem) in held_out]
    assert all(check_answer(e.problem, e.response) for e in examples)
    problems = countdown_problems(300, [3, 4], seed=0, with_solutions=True)
    assert not [p for p in problems if problem_key(CountdownProblem.parse(p.text)) in held_out]
    assert all(checks(p, p.solution) for p in problems)
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    batch = make_batch(model, rng, PolicyConfig(batch_size=4))
    assert (batch["labels"] != -100).sum() > 0


def test_sampled_trajectories_are_labelled_by_the_checker():
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    problems = [countdown((3, 7, 8), 29), countdown((2, 5), 10)]
    trajectories = sample_trajectories(model, problems, 2, 1.0, max_new_tokens=12)
    assert len(trajectories) == 4
    assert all(t.correct == checks(t.problem, t.response) for t in trajectories)
    assert all(t.correct is False for t in trajectories)  # a random policy cannot write a valid answer in 12 chars


def trajectory(model, problem, response):
    ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    return Trajectory(problem, tuple(model.encode_prompt(problem.text)), tuple(ids), response,
                      checks(problem, response))


def test_step_labels_are_the_checkers_and_outcome_labels_the_trajectorys():
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    problem = countdown((3, 7, 8), 29)
    right = trajectory(model, problem, "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n")
    bent = trajectory(model, problem, "7*3=21, left 8 21.\n\n21-8=29, left 29.\n\nAnswer: 7*3-8.\n\n")
    assert make_step_batch(model, [right, bent], "steps").labels.tolist() == [1, 1, 1, 1, 0, 0]
    batch = make_step_batch(model, [right, bent], "outcome")
    assert batch.labels.tolist() == [1, 1, 1, 0, 0, 0]
    prompt, response = len(right.prompt_ids), list(right.response_ids)
    # the joint policy loss learns the right trajectory's response and nothing of the bent one
    assert batch.policy_labels[0].tolist() == [-100] * prompt + response
    assert batch.policy_labels[1].tolist() == [-100] * batch.policy_labels.shape[1]
    with pytest.raises(ValueError, match="labels='step': use 'outcome' or 'steps'"):
        make_step_batch(model, [right], "step")


def test_search_sampler_draws_fresh_samples_for_a_repeated_problem():
    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    a, b = countdown((3, 7, 8), 29), countdown((2, 5), 10)
    drawn = sample_with_search(model, [a, b, a], 2, 1.0, progress=False)
    assert [t.problem for t in drawn] == [a, a, b, b, a, a]  # copy 0 of each problem, then copy 1 of a
    assert drawn == sample_with_search(model, [a, b, a], 2, 1.0, progress=False)  # seeded
    assert {t.response_ids for t in drawn[:2]}.isdisjoint({t.response_ids for t in drawn[4:]})
    for t in drawn:
        assert t.prompt_ids == tuple(model.encode_prompt(t.problem.text))
        assert model.decode(t.response_ids) == t.response and t.correct == checks(t.problem, t.response)
        assert model.tokenizer.eos_token_id not in t.response_ids
    assert len(sample_with_search(model, [a, b], 2, 0.0, progress=False)) == 2  # temperature 0: one greedy each


def test_train_sprm_with_the_search_sampler_and_step_labels(trained, tmp_path):
    import json

    out, file = tmp_path / "head", tmp_path / "hand.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in HAND_MADE))
    assert main(["train", "sprm", "--model", str(trained[0]), "--out", str(out), "--epochs", "1",
                 "--labels", "steps", "--trajectories", str(file)]) == 0
    policy, model = ReflectiveModel.from_pretrained(trained[0]), ReflectiveModel.from_pretrained(out)
    assert not torch.equal(policy.head[0].weight, model.head[0].weight)


def _reference_mean_logprob(model, t):
    ids = list(t.prompt_ids) + list(t.response_ids)
    with torch.no_grad():
        logp = torch.log_softmax(model.backbone(torch.tensor([ids])).logits[0, :-1].float(), dim=-1)
    start = len(t.prompt_ids) - 1
    return float(logp[torch.arange(start, len(ids) - 1), torch.tensor(ids[start + 1:])].mean())


def test_mean_logprob_of_a_padded_batch_equals_each_trajectory_alone():
    from reflective_search.train.evaluate import features_and_logprobs, mean_logprobs

    model = build_policy(PolicyConfig(hidden_size=32, layers=1, heads=2, intermediate_size=64))
    problem = countdown((3, 7, 8), 29)
    long = trajectory(model, problem, "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n")
    short = trajectory(model, problem, "8-7=1, left 3 1.\n\n")
    other = trajectory(model, countdown((25, 50, 75, 100), 125), "100+25=125, left 50 75 125.\n\n")
    assert len(other.prompt_ids) != len(long.prompt_ids)
    trajectories = [long, short, other, long]
    expected = [_reference_mean_logprob(model, t) for t in trajectories]
    # Read from the prompt-shared pass (the prompt's last state predicts the first token),
    # in forwards of 2 rows or of all, in the caller's order.
    assert mean_logprobs(model, trajectories, rows=2) == pytest.approx(expected, abs=1e-5)
    assert mean_logprobs(model, trajectories) == pytest.approx(expected, abs=1e-5)
    # The same pass's features are the head's frozen features.
    (features, _, owners, steps), _ = features_and_logprobs(model, trajectories, rows=2)
    reference = frozen_features(model, trajectories)
    assert torch.allclose(features, reference[0], atol=1e-5)
    assert torch.equal(owners, reference[2]) and torch.equal(steps, reference[3])
    # An empty response ranks last, alone in its batch or beside others.
    empty = trajectory(model, problem, "")
    assert mean_logprobs(model, [empty]) == [-math.inf]
    assert mean_logprobs(model, [short, empty]) == pytest.approx([expected[1], -math.inf], abs=1e-5)
