"""executor kind ray on a real two-node Ray cluster (loopback only: see ray_namespace.py).

One cluster for the module: two nodes of one CPU each, started and stopped here. Every
run is compared with the records of the same experiment run locally with one worker.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time

import pytest
from experiment_helpers import (HANG_GUARD_S, by_key, cli_process, outcome, read_results, run_cli, save_model_once,
                                wait_for, write_yaml)
from ray_namespace import require_ray

require_ray()

PROBLEMS = 8


@pytest.fixture(scope="module")
def cluster():
    """Two nodes, one CPU each, on 127.0.0.1: its address."""
    from ray.cluster_utils import Cluster

    started = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
    started.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    started.wait_for_nodes()
    yield started.address
    started.shutdown()


@pytest.fixture(scope="session")
def model_dir(tiny_llama, tmp_path_factory):
    return save_model_once(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="module")
def config(model_dir, tmp_path_factory):
    """Best-of-4 over 8 problems, one problem per item so that items spread over the workers."""
    return write_yaml(tmp_path_factory.mktemp("ray") / "ray.yaml", {
        "model": str(model_dir), "problems": {"count": PROBLEMS, "seed": 5},
        "search": {"method": "best_of_n", "best_of_n": {"n": 4}, "sampling": {"max_step_tokens": 12, "max_steps": 3}},
        "batch_size": 1,
    })


@pytest.fixture(scope="module")
def local_outcomes(config, tmp_path_factory):
    """The records of the experiment run locally with one worker (timing left out)."""
    run_dir = tmp_path_factory.mktemp("local") / "run"
    code, _, err = run_cli("run", config, f"output_dir={run_dir}", "--no-progress")
    assert code == 0, err
    return outcomes(run_dir)


def outcomes(run_dir) -> dict:
    return {key: outcome(record) for key, record in by_key(read_results(run_dir)).items()}  # fails on a duplicate


def on_cluster(address: str, workers: int = 2) -> list[str]:
    return ["executor.kind=ray", f"executor.address={address}", f"executor.workers={workers}", "--no-progress"]


def events(run_dir, kind: str) -> list[dict]:
    path = run_dir / "executor.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    return [event for event in map(json.loads, lines) if event["event"] == kind]


def complete_lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def mid_run(run_dir):
    """An item finished with several left: its worker already holds the next (sent before the records are written)."""
    return lambda: 1 <= len(events(run_dir, "done")) <= PROBLEMS - 3


def test_items_run_on_both_nodes_and_the_records_equal_a_local_run(cluster, config, local_outcomes, tmp_path):
    code, _, err = run_cli("run", config, f"output_dir={tmp_path}", *on_cluster(cluster))
    assert code == 0, err
    assert outcomes(tmp_path) == local_outcomes
    environment = json.loads((tmp_path / "environment.json").read_text(encoding="utf-8"))["executor"]
    nodes = {node["node"] for node in environment["nodes"]}
    assert (environment["kind"], environment["cpus"], len(nodes)) == ("ray", 2.0, 2)
    assert {event["node"] for event in events(tmp_path, "done")} == nodes  # both nodes solved items
    assert sorted(event["item"] for event in events(tmp_path, "done")) == list(range(PROBLEMS))


def test_a_worker_killed_mid_item_loses_nothing_and_its_item_is_redone_elsewhere(cluster, config, local_outcomes,
                                                                                tmp_path):
    driver = cli_process("run", config, f"output_dir={tmp_path}", *on_cluster(cluster))
    wait_for(mid_run(tmp_path), driver, "an item done with several left")
    victim = events(tmp_path, "done")[-1]["pid"]
    os.kill(victim, signal.SIGKILL)
    _, err = driver.communicate(timeout=HANG_GUARD_S)
    assert driver.returncode == 0, err
    assert outcomes(tmp_path) == local_outcomes
    [lost] = events(tmp_path, "lost")
    assert lost["pid"] == victim and lost["item"] is not None
    [redone] = [event for event in events(tmp_path, "done") if event["item"] == lost["item"]]
    assert redone["pid"] != victim


def test_a_killed_driver_resumes_with_the_same_command(cluster, config, local_outcomes, tmp_path):
    command = ["run", config, f"output_dir={tmp_path}", *on_cluster(cluster)]
    driver = cli_process(*command)
    wait_for(lambda: complete_lines(tmp_path / "results.jsonl") >= 2, driver, "2 records")
    driver.send_signal(signal.SIGKILL)
    driver.communicate()
    assert 2 <= complete_lines(tmp_path / "results.jsonl") < PROBLEMS
    code, _, err = run_cli(*command)
    assert code == 0, err
    assert outcomes(tmp_path) == local_outcomes


def test_ctrl_c_stops_the_actors_and_keeps_the_records(cluster, config, tmp_path):
    driver = cli_process("run", config, f"output_dir={tmp_path}", *on_cluster(cluster), start_new_session=True)
    wait_for(mid_run(tmp_path), driver, "an item done with several left")
    os.killpg(driver.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends; the actors are not in that group
    _, err = driver.communicate(timeout=HANG_GUARD_S)
    kept = complete_lines(tmp_path / "results.jsonl")
    assert driver.returncode == 130
    assert err.splitlines()[-1] == f"interrupted: {kept} records kept in {tmp_path}; run the same command again to resume"
    assert kept < PROBLEMS and (tmp_path / "results.jsonl").read_bytes().endswith(b"\n")
    pids = [event["pid"] for event in events(tmp_path, "ready")]
    deadline = time.monotonic() + HANG_GUARD_S  # a guard: on a loaded box processes take a while to go
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split(") ")[-1].startswith("Z")  # a zombie has exited


def test_a_worker_that_cannot_load_the_model_ends_the_run_with_its_error(model_dir, config, tmp_path):
    broken = shutil.copytree(model_dir, tmp_path / "broken")
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    # address null: the run starts (and stops) a private Ray of its own. In a child process,
    # because a Ray started by ray.init() turns on token auth for the rest of its process.
    driver = cli_process("run", config, f"model={broken}", f"output_dir={tmp_path / 'run'}", "executor.kind=ray",
                         "executor.workers=1", "--no-progress")
    _, err = driver.communicate(timeout=HANG_GUARD_S)
    assert driver.returncode == 2 and "Traceback" not in err
    assert re.fullmatch(r"error: Ray worker w0 \(node [0-9a-f]{12}\) could not load the model: ModelError: \S+: "
                        r"the backbone or tokenizer files are corrupted or incomplete .+", err.splitlines()[-1]), err
    assert (tmp_path / "run" / "results.jsonl").read_bytes() == b""


def test_train_sprm_samples_on_ray_workers_the_trajectories_of_local_sampling(cluster, model_dir, tiny_llama,
                                                                              tmp_path):
    from reflective_search.train.sprm import sample_with_search, save_trajectories
    from reflective_search.train.tasks import countdown_problems

    problems = countdown_problems(6, [3, 4], 0)
    save_trajectories(sample_with_search(tiny_llama, problems, 2, 1.0, progress=False), tmp_path / "local.jsonl")
    code, _, err = run_cli("train", "sprm", "--model", model_dir, "--out", tmp_path / "head", "--problems", 6,
                           "--samples", 2, "--sampler", "search", "--executor", "ray", "--address", cluster,
                           "--workers", 2, "--epochs", 1, "--trajectories", tmp_path / "ray.jsonl")
    # A random policy solves nothing: the samples are kept, and the one-class head is refused.
    assert code == 2 and err.splitlines()[-1].startswith("error: none of the 12 sampled trajectories is correct"), err
    assert (tmp_path / "ray.jsonl").read_text(encoding="utf-8") == (tmp_path / "local.jsonl").read_text(encoding="utf-8")
