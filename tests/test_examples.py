"""The scripts in examples/ run as a user would run them, with small budgets.

The three start together (most of each run is importing torch and transformers, which
overlaps well), then each test checks one script's output.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from reflective_search.tree import Tree
from experiment_helpers import HANG_GUARD_S
from test_viz_export import png_size

import pytest

REPO = Path(__file__).resolve().parents[1]
SMALL_RUNS = {  # example -> arguments after --out
    "solve_and_visualise": ["--tokens", "120", "--max-step-tokens", "8", "--model", "countdown-tiny"],
    "compare_methods": ["--n", "3", "--max-step-tokens", "8", "--model", "countdown-tiny"],
    "custom_model": ["--max-step-tokens", "8"],
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, tuple[str, Path]]:
    """Every example run in its own fresh interpreter: name -> (standard output, --out folder)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    started = {}
    for name, arguments in SMALL_RUNS.items():
        out = tmp_path_factory.mktemp(name)
        command = [sys.executable, str(REPO / "examples" / f"{name}.py"), "--out", str(out), *arguments]
        started[name] = (subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                          text=True), out)
    results = {}
    for name, (process, out) in started.items():
        stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
        results[name] = (stdout, out, process.returncode, stderr)
    return results


def finished(runs, name: str) -> tuple[str, Path]:
    stdout, out, returncode, stderr = runs[name]
    assert returncode == 0, stderr[-3000:]
    return stdout, out


def test_solve_and_visualise_writes_viewer_picture_and_tree(runs):
    out, tmp_path = finished(runs, "solve_and_visualise")
    tree = Tree.from_json(str(tmp_path / "tree.json"))
    assert tree.history and tree.chosen >= 0
    assert f"tree: {tree.size} nodes, {len(tree.history)} rounds" in out
    assert re.search(r"^answer: .+ \(score 0\.\d{3}\)$", out, re.M)
    assert '<script type="application/json" id="tree-data">' in (tmp_path / "tree.html").read_text(encoding="utf-8")
    assert png_size(tmp_path / "tree.png") == (1600, 1000)


def test_compare_methods_prints_both_methods_and_draws_them_side_by_side(runs):
    out, tmp_path = finished(runs, "compare_methods")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:3]}
    assert set(rows) == {"best_of_n", "mcts"}
    assert int(rows["mcts"][-4]) >= int(rows["best_of_n"][-4])  # MCTS spends at least Best-of-N's tokens
    assert png_size(tmp_path / "compare.png") == (1800, 900)


def test_custom_model_searches_and_reloads_with_the_same_scores(runs):
    out, model_dir = finished(runs, "custom_model")
    assert "+ SPRM head 18,817" in out  # Linear(96, 192) + Linear(192, 1)
    scores = re.search(r"step scores (\[.*\])", out).group(1)
    assert f"reloaded scores {scores}" in out
    assert (model_dir / "sprm_head.safetensors").is_file()
