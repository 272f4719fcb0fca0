"""Executors without a cluster: what is refused before Ray starts, and the local executor.

(The Ray cluster tests are in test_ray_executor.py; none here starts Ray or opens a socket
off loopback.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from experiment_helpers import HANG_GUARD_S, SRC, run_cli, save_model_once, write_yaml

from reflective_search.experiments.executors import EXECUTORS, open_executor
from reflective_search.experiments.spec import ExecutorSpec
from reflective_search.model import ReflectiveModel

# Makes ``import ray`` fail as it does where Ray is not installed.
BLOCK_RAY = """
import sys
class NoRay:
    def find_spec(self, name, path=None, target=None):
        if name == "ray" or name.startswith("ray."):
            raise ModuleNotFoundError("No module named 'ray'")
sys.meta_path.insert(0, NoRay())
from reflective_search.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def config(tiny_llama, tmp_path_factory):
    model = save_model_once(tiny_llama, tmp_path_factory)
    return write_yaml(tmp_path_factory.mktemp("executors") / "e.yaml", {
        "model": str(model), "problems": {"count": 2, "seed": 1},
        "search": {"method": "greedy", "sampling": {"max_step_tokens": 4, "max_steps": 2}},
    })


def test_the_registry_names_the_documented_kinds():
    assert sorted(EXECUTORS) == ["local", "ray"]


def test_ray_without_ray_installed_is_one_line_saying_how_to_install(config, tmp_path):
    run = subprocess.run([sys.executable, "-c", BLOCK_RAY, "run", str(config), f"output_dir={tmp_path / 'run'}",
                          "executor.kind=ray"], capture_output=True, text=True, timeout=HANG_GUARD_S,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"})
    assert (run.returncode, run.stderr) == (2, "error: executor.kind: ray needs Ray, which is not installed: "
                                               "pip install 'reflective_search[ray]' (Ray 2.60.0)\n")
    assert not (tmp_path / "run").exists()  # refused before the run directory is made


def test_an_unreachable_address_is_one_line_before_ray_starts(config, tmp_path):
    """Ray's own connect retries for minutes; the address is probed (CONNECT_TIMEOUT_S) before ray.init."""
    ray = pytest.importorskip("ray")
    code, _, err = run_cli("run", config, f"output_dir={tmp_path}", "executor.kind=ray",
                           "executor.address=127.0.0.1:1", "--no-progress")  # nothing listens on port 1
    assert (code, err) == (2, "error: executor.address 127.0.0.1:1: no Ray cluster answers there (Connection refused): "
                              "start one with `ray start --head` or fix the address\n")
    assert not ray.is_initialized()


def test_a_malformed_address_is_refused():
    pytest.importorskip("ray")
    from reflective_search.errors import ConfigError
    from reflective_search.experiments.ray_executor import check_reachable

    with pytest.raises(ConfigError, match=r"""^executor.address 'head-node': expected "host:port", "auto" or null$"""):
        check_reachable("head-node")


def test_a_shipped_model_folder_is_rebuilt_file_for_file(tiny_llama, tmp_path_factory, tmp_path):
    from reflective_search.experiments.ray_executor import folder_files, write_folder

    # A copy: the session's saved model folder is shared by other tests and stays as saved.
    folder = shutil.copytree(save_model_once(tiny_llama, tmp_path_factory), tmp_path / "shipped")
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.txt").write_text("nested", encoding="utf-8")
    write_folder(tmp_path / "rebuilt", folder_files(folder))
    assert folder_files(tmp_path / "rebuilt") == folder_files(folder)
    assert (tmp_path / "rebuilt" / "sub" / "extra.txt").read_text(encoding="utf-8") == "nested"


def test_local_executor_yields_every_item_once_with_its_index(tiny_llama):
    class Echo:  # a solver factory: model -> solve(item)
        def __init__(self, model):
            self.parameters = model.num_parameters

        def __call__(self, item):
            return item * 2, self.parameters

    spec = ExecutorSpec(workers=1)
    executor = open_executor(spec, None, Echo)
    with executor:
        finished = list(executor.map([3, 4, 5]))
    assert [(f.index, f.item, f.result[0], f.worker["worker"]) for f in finished] == [
        (0, 3, 6, "local"), (1, 4, 8, "local"), (2, 5, 10, "local")]


@pytest.mark.parametrize("flags, message", [
    (["--executor", "ray", "--sampler", "generate"],
     "--executor and --workers draw through the search engine: drop --sampler generate"),
    (["--sampler", "search", "--workers", "0"], "--workers 0: give 1 or more"),
    (["--sampler", "search", "--address", "auto"], "--address applies to a Ray cluster: add --executor ray"),
])
def test_train_sprm_executor_flags_are_checked(tiny_llama, tmp_path_factory, tmp_path, flags, message):
    model = save_model_once(tiny_llama, tmp_path_factory)
    code, _, err = run_cli("train", "sprm", "--model", model, "--out", tmp_path / "out", "--problems", 2, *flags)
    assert (code, err.splitlines()[-1]) == (2, f"error: {message}")


def test_sampling_on_a_two_worker_pool_gives_the_trajectories_of_in_process_sampling(tiny_llama, tmp_path_factory):
    from reflective_search.train.executor_sampling import sample_on_executor
    from reflective_search.train.sprm import sample_with_search
    from reflective_search.train.tasks import countdown_problems

    model = save_model_once(tiny_llama, tmp_path_factory)
    a, b, c = countdown_problems(3, [3], 2)
    problems = [a, b, c, a, b]  # two rounds of copies, cut into units of 2: three units over two workers
    here = sample_with_search(tiny_llama, problems, 2, 1.0, chunk=2, progress=False)
    pooled = sample_on_executor(ExecutorSpec(workers=2), str(model), problems, 2, 1.0, chunk=2, progress=False)
    assert pooled == here and len(here) == 10


def test_frozen_features_on_a_two_worker_pool_equal_the_in_process_pass(tiny_llama, tmp_path_factory):
    """Units of whole prompts go out with the driver's head layer and step rule (not the saved
    model's), and each trajectory's features come back in its place."""
    import dataclasses

    import torch

    from reflective_search.train.executor_sampling import feature_units, features_on_executor
    from reflective_search.train.sprm import sample_with_search
    from reflective_search.train.step_features import prompt_shared_features
    from reflective_search.train.tasks import countdown_problems

    model = save_model_once(tiny_llama, tmp_path_factory)
    trajectories = sample_with_search(tiny_llama, countdown_problems(3, [3, 4], 5), 2, 1.0, progress=False)
    trajectories = trajectories[::2] + trajectories[1::2]  # a prompt's samples apart in the list
    assert feature_units(trajectories, 3) == [[0, 3], [1, 4], [2, 5]]
    settings = dataclasses.replace(tiny_llama.settings, feature_layers=(0, -1), search_defaults=(
        ("sampling.step.kind", "tokens"), ("sampling.step.size", 3)))
    reader = tiny_llama.reading(settings)
    here = prompt_shared_features(reader, trajectories)
    pooled = features_on_executor(ExecutorSpec(workers=2), str(model), reader, trajectories, per_unit=3, progress=False)
    assert [f.shape for f in pooled] == [f.shape for f in here] != [f.shape for f in prompt_shared_features(
        tiny_llama, trajectories)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(pooled, here))
    assert here[0].shape[-1] == 2 * tiny_llama.hidden_size  # both layers, concatenated


def test_train_sprm_reads_a_frozen_heads_features_on_its_workers(tiny_llama, tmp_path_factory, tmp_path):
    import torch
    from safetensors.torch import load_file

    from reflective_search.train.sprm import sample_with_search, save_trajectories
    from reflective_search.train.tasks import countdown_problems

    model = save_model_once(tiny_llama, tmp_path_factory)
    save_trajectories(sample_with_search(tiny_llama, countdown_problems(2, [3], 0), 2, 1.0, progress=False),
                      tmp_path / "samples.jsonl")
    heads = {}
    for workers in (1, 2):  # both on the same samples, with contrast pairs for the missing class
        code, _, err = run_cli("train", "sprm", "--model", model, "--out", tmp_path / f"w{workers}", "--contrast", 2,
                               "--epochs", 2, "--standardise", "--workers", workers, "--feature-layers", 0, -1,
                               "--trajectories", tmp_path / "samples.jsonl")
        assert code == 0, err
        heads[workers] = load_file(tmp_path / f"w{workers}" / "sprm_head.safetensors")
    assert heads[1]["0.weight"].shape[1] == heads[1]["feature_mean"].shape[0] == 2 * tiny_llama.hidden_size
    assert ReflectiveModel.from_pretrained(tmp_path / "w2").settings.feature_layers == (0, -1)
    assert heads[1].keys() == heads[2].keys()
    assert all(torch.allclose(heads[1][k], heads[2][k], atol=1e-4) for k in heads[1])
