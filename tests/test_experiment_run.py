"""Running experiments from the command line: records, run directory files, workers."""

from __future__ import annotations

import json

import pytest
import yaml
from experiment_helpers import by_key, outcome, read_results, run_cli, save_model_once, write_yaml

from reflective_search.experiments.spec import load_experiment, resolved_dict

RECORD_FIELDS = {"problem_id", "point", "seed", "method", "answer", "reference", "correct", "score", "generated_tokens",
                 "forwarded_tokens", "expansions", "parameters", "flops", "seconds", "cpu_seconds", "unspent_tokens",
                 "duplicate_tokens", "text"}
SAMPLING = {"max_step_tokens": 8, "max_steps": 3}


@pytest.fixture(scope="session")
def model_dir(tiny_llama, tmp_path_factory):
    return save_model_once(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="module")
def swept_run(model_dir, tmp_path_factory):
    """3 problems x 2 points x 2 seeds, run once through the CLI: (config, run dir, exit status, stdout)."""
    base = tmp_path_factory.mktemp("swept")
    config = write_yaml(base / "swept.yaml", {
        "model": str(model_dir), "problems": {"count": 3, "seed": 4},
        "search": {"method": "best_of_n", "sampling": SAMPLING},
        "seeds": [0, 1], "sweep": {"search.best_of_n.n": [1, 2]}, "batch_size": 2,
    })
    code, out, _ = run_cli("run", config, f"output_dir={base / 'run'}", "--no-progress")
    return config, base / "run", code, out


def test_run_writes_one_record_per_problem_point_and_seed(swept_run):
    _, run_dir, code, out = swept_run
    assert code == 0 and out.startswith(f"12 records in {run_dir} (12 new), accuracy ")
    records = read_results(run_dir)
    assert len(by_key(records)) == 12
    assert sorted({(r["problem_id"], r["point"]["search.best_of_n.n"], r["seed"]) for r in records}) == [
        (p, n, s) for p in (0, 1, 2) for n in (1, 2) for s in (0, 1)]
    assert all(set(r) == RECORD_FIELDS and r["method"] == "best_of_n" for r in records)


def test_records_charge_flops_as_twice_parameters_times_forwarded_tokens(swept_run, tiny_llama):
    records = read_results(swept_run[1])
    assert all(r["parameters"] == tiny_llama.num_parameters for r in records)
    assert all(r["flops"] == 2 * tiny_llama.num_parameters * r["forwarded_tokens"] > 0 for r in records)


def test_more_samples_generate_more_tokens(swept_run):
    records = read_results(swept_run[1])
    tokens = {n: sum(r["generated_tokens"] for r in records if r["point"]["search.best_of_n.n"] == n) for n in (1, 2)}
    assert tokens[2] > tokens[1] > 0


def test_run_directory_holds_the_resolved_config(swept_run):
    config, run_dir, *_ = swept_run
    stored = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    assert stored == resolved_dict(load_experiment(config, [f"output_dir={run_dir}"]))
    assert stored["search"]["mcts"]["c_puct"] == 1.5  # defaults are written out, not just the overrides


def test_run_directory_holds_the_environment_without_hostname(swept_run):
    import platform

    environment = json.loads((swept_run[1] / "environment.json").read_text(encoding="utf-8"))
    assert set(environment) == {"python", "platform", "torch", "transformers", "numpy", "reflective_search",
                                "git_commit", "git_dirty", "executor"}
    assert environment["executor"] == {"kind": "local", "workers": 1, "cpus_per_worker": 1}
    assert environment["python"] == platform.python_version()
    assert platform.node() not in json.dumps(environment)


def test_rerunning_a_finished_run_adds_nothing(swept_run):
    config, run_dir, *_ = swept_run
    before = (run_dir / "results.jsonl").read_bytes()
    code, out, _ = run_cli("run", config, f"output_dir={run_dir}", "--no-progress")
    assert code == 0 and out.startswith(f"12 records in {run_dir} (0 new)")
    assert (run_dir / "results.jsonl").read_bytes() == before


def test_changed_config_in_an_existing_run_directory_is_refused(swept_run):
    config, run_dir, *_ = swept_run
    before = sorted(p.name for p in run_dir.iterdir())
    code, _, err = run_cli("run", config, f"output_dir={run_dir}", "search.sampling.top_p=0.5")
    assert code == 2
    assert err == (f"error: {run_dir} holds a run of a different config (search.sampling.top_p: 0.95 -> 0.5): "
                   f"pick a new output_dir or delete {run_dir}\n")
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_more_workers_may_resume_the_same_run(swept_run):
    config, run_dir, *_ = swept_run
    code, out, _ = run_cli("run", config, f"output_dir={run_dir}", "workers=3", "batch_size=1", "--no-progress")
    assert code == 0 and "(0 new)" in out


def test_two_workers_give_the_same_records_as_one(model_dir, tmp_path):
    config = write_yaml(tmp_path / "w.yaml", {
        "model": str(model_dir), "problems": {"count": 4, "seed": 2},
        "search": {"method": "best_of_n", "sampling": SAMPLING, "best_of_n": {"n": 2}}, "batch_size": 2,
    })
    for workers in (1, 2):
        code, _, err = run_cli("run", config, f"output_dir={tmp_path / str(workers)}", f"workers={workers}",
                               "--no-progress")
        assert code == 0, err
    one, two = by_key(read_results(tmp_path / "1")), by_key(read_results(tmp_path / "2"))
    assert len(one) == 4
    assert {k: outcome(r) for k, r in two.items()} == {k: outcome(r) for k, r in one.items()}


# -- a problems file with no task is checked against its answers ------------------------------

# Greedy answers of the shipped model (pinned in test_shipped_model.py and here): "Numbers: 2 3 4.
# Target: 24." -> 4*2*3; "Numbers: 3 7 8. Target: 29." -> 8*3+7; "Evaluate: 3+4*2" -> 4+3+4.
ANSWERED = [
    {"id": "product", "problem": "Numbers: 2 3 4. Target: 24.", "answer": "24"},  # 4*2*3 = 24 by value
    {"id": "other-target", "problem": "Numbers: 2 3 4. Target: 24.", "answer": 25},  # countdown would say solved
    {"id": "evaluate", "problem": "Evaluate: 3+4*2", "answer": "11"},  # 4+3+4 = 11, reached by luck
    {"id": "evaluate-wrong", "problem": "Evaluate: 3+4*2", "answer": "12"},
    {"problem": "Numbers: 3 7 8. Target: 29.", "answer": "8*3+7"},  # equal as text (countdown: wrong, 31)
]


def test_a_problems_file_with_no_task_is_scored_by_its_answers(tmp_path):
    problems = tmp_path / "math.jsonl"
    problems.write_text("".join(json.dumps(record) + "\n" for record in ANSWERED), encoding="utf-8")
    config = write_yaml(tmp_path / "answers.yaml", {
        "model": "countdown-tiny", "problems": {"file": str(problems)},
        "search": {"method": "greedy", "sampling": {"max_step_tokens": 32, "max_steps": 6}}})
    code, out, err = run_cli("run", config, f"output_dir={tmp_path / 'run'}", "--no-progress")
    assert code == 0, err
    assert out.startswith(f"5 records in {tmp_path / 'run'} (5 new), accuracy 0.600;")
    records = {r["problem_id"]: r for r in read_results(tmp_path / "run")}
    assert {key: (r["answer"], r["reference"], r["correct"]) for key, r in records.items()} == {
        "product": ("4*2*3", "24", True), "other-target": ("4*2*3", 25, False), "evaluate": ("4+3+4", "11", True),
        "evaluate-wrong": ("4+3+4", "12", False), 4: ("8*3+7", "8*3+7", True)}
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))["problems"]["task"] == "math"
