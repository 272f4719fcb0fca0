"""Crash safety: a run killed at any moment resumes with no record lost, none duplicated."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from experiment_helpers import (HANG_GUARD_S, by_key, cli_process, outcome, read_results, run_cli, save_model_once,
                                wait_for, write_yaml)

PROBLEMS = 8


@pytest.fixture(scope="session")
def model_dir(tiny_llama, tmp_path_factory):
    return save_model_once(tiny_llama, tmp_path_factory)


@pytest.fixture(scope="module")
def config(model_dir, tmp_path_factory):
    """Best-of-2 over 8 problems, one problem per solve call so that records trickle out."""
    return write_yaml(tmp_path_factory.mktemp("resume") / "resume.yaml", {
        "model": str(model_dir), "problems": {"count": PROBLEMS, "seed": 3},
        "search": {"method": "best_of_n", "best_of_n": {"n": 2}, "sampling": {"max_step_tokens": 8, "max_steps": 3}},
        "batch_size": 1,
    })


@pytest.fixture(scope="module")
def finished_dir(config, tmp_path_factory):
    """A run directory of the experiment run in one go (tests work on copies)."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert run_cli("run", config, f"output_dir={run_dir}", "--no-progress")[0] == 0
    return run_dir


@pytest.fixture(scope="module")
def uninterrupted(finished_dir):
    """The records of the uninterrupted run, by key."""
    return by_key(read_results(finished_dir))


@pytest.fixture
def run_dir(finished_dir, tmp_path):
    """A copy of the finished run directory, to damage."""
    return shutil.copytree(finished_dir, tmp_path / "run")


def complete_lines(path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def test_killed_run_resumes_to_the_records_of_an_uninterrupted_run(config, uninterrupted, tmp_path):
    results = tmp_path / "run" / "results.jsonl"
    first = cli_process("run", config, f"output_dir={tmp_path / 'run'}", "--no-progress")
    wait_for(lambda: complete_lines(results) >= 2, first, "2 records")
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL  # killed mid-run, not finished
    assert 2 <= complete_lines(results) < PROBLEMS

    code, _, err = run_cli("run", config, f"output_dir={tmp_path / 'run'}", "--no-progress")  # the same command again
    assert code == 0, err
    assert results.read_bytes().endswith(b"\n")
    resumed = by_key(read_results(tmp_path / "run"))  # fails on a duplicate key
    assert {k: outcome(r) for k, r in resumed.items()} == {k: outcome(r) for k, r in uninterrupted.items()}


def test_partial_last_line_is_cut_and_its_record_redone(config, uninterrupted, run_dir):
    lines = (run_dir / "results.jsonl").read_bytes().splitlines(keepends=True)
    kept, cut = lines[:3], lines[3]
    (run_dir / "results.jsonl").write_bytes(b"".join(kept) + cut[: len(cut) // 2])  # as a kill mid-write leaves it

    code, out, _ = run_cli("run", config, f"output_dir={run_dir}", "--no-progress")
    assert code == 0 and out.startswith(f"{PROBLEMS} records in {run_dir} ({PROBLEMS - 3} new)")
    after = (run_dir / "results.jsonl").read_bytes()
    assert after.startswith(b"".join(kept)) and after.endswith(b"\n")
    resumed = by_key(read_results(run_dir))
    assert {k: outcome(r) for k, r in resumed.items()} == {k: outcome(r) for k, r in uninterrupted.items()}


def test_records_already_present_are_not_redone(config, run_dir):
    lines = (run_dir / "results.jsonl").read_bytes().splitlines(keepends=True)
    # Mark the kept records so that a redo would show: the runner must trust what is on disk.
    marked = [line.replace(b'"method": "best_of_n"', b'"method": "kept"') for line in lines[:5]]
    (run_dir / "results.jsonl").write_bytes(b"".join(marked))

    assert run_cli("run", config, f"output_dir={run_dir}", "--no-progress")[0] == 0
    methods = [r["method"] for r in read_results(run_dir)]
    assert methods == ["kept"] * 5 + ["best_of_n"] * (PROBLEMS - 5)


def test_a_damaged_middle_line_is_refused(config, run_dir):
    lines = (run_dir / "results.jsonl").read_bytes().splitlines(keepends=True)
    (run_dir / "results.jsonl").write_bytes(lines[0] + b"garbage\n" + lines[1])
    code, _, err = run_cli("run", config, f"output_dir={run_dir}", "--no-progress")
    assert code == 2
    assert err == (f"error: {run_dir / 'results.jsonl'} line 2 is not a result record: delete the run directory "
                   "or remove that line\n")


def test_ctrl_c_keeps_the_records_so_far_and_exits_130(config, tmp_path):
    results = tmp_path / "run" / "results.jsonl"
    run = cli_process("run", config, f"output_dir={tmp_path / 'run'}", "--no-progress", start_new_session=True)
    wait_for(lambda: complete_lines(results) >= 2, run, "2 records")
    os.killpg(run.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole process group
    out, err = run.communicate(timeout=HANG_GUARD_S)
    kept = complete_lines(results)
    assert (run.returncode, out) == (130, "")
    # The last line is ours; transformers may have drawn a weight-loading bar above it.
    assert err.splitlines()[-1] == f"interrupted: {kept} records kept in {tmp_path / 'run'}; run the same command again to resume"
    assert 2 <= kept < PROBLEMS and results.read_bytes().endswith(b"\n")


def test_a_second_run_on_a_busy_directory_is_refused(config, run_dir):
    from reflective_search.experiments.results import ResultStore

    with ResultStore.open(run_dir):  # holds the lock, as a running experiment does
        code, _, err = run_cli("run", config, f"output_dir={run_dir}", "--no-progress")
    assert (code, err) == (2, f"error: another run is writing {run_dir}: wait for it to finish or stop it\n")
