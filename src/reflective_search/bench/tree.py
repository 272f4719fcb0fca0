"""Tree-core benchmark: PUCT selection of 16 leaves with virtual loss, then their backup,
on a tree of 100,000 nodes; the numba kernels against the same code run as Python.

``sims_per_s_numba`` / ``_python`` run the same round loop compiled and interpreted (the
kernels' own speed); ``sims_per_s_numba_called_from_python`` adds one Python call per
selection and per backup, as MCTS makes them (numba's argument dispatch, ~10 us a call).
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from reflective_search.interface import ChildStep, StepEnd
from reflective_search.tree import Tree
from reflective_search.tree_ops import HAVE_NUMBA, PYTHON_KERNELS, _compiled, backup_batch, compiled_kernels

BATCH, FAN_OUT, C_PUCT = 16, 4, 1.5
ROOTS = np.zeros(BATCH, np.int32)  # every descent starts at the root


def grow_tree(nodes: int, seed: int = 0) -> Tree:
    """Grow by expanding PUCT-selected leaves (as MCTS does) until ``nodes`` exist."""
    rng = np.random.default_rng(seed)
    tree = Tree([1], "p", capacity=nodes + BATCH * FAN_OUT)
    out = np.zeros(BATCH, np.int32)
    while tree.size < nodes:
        leaves = dict.fromkeys(int(n) for n in _select(compiled_kernels()["select_leaves"], tree, out))
        children, values = [], []
        for leaf in leaves:
            steps = [ChildStep((1,), "", 0.0, float(v), StepEnd.DELIMITER) for v in rng.random(FAN_OUT)]
            for child in tree.add_children(leaf, steps, list(rng.dirichlet(np.ones(FAN_OUT)))):
                children.append(child)
                values.append(tree.score[child])
        backup_batch(tree, children, values, compiled=True)
    return tree


def _select(kernel, tree: Tree, out: np.ndarray) -> np.ndarray:
    return kernel(tree.first_child, tree.num_children, tree.parent, tree.visits, tree.effective_visits,
                  tree.value_sum, tree.value_max, tree.prior, tree.terminal, ROOTS, C_PUCT, False, 1.0, out)


def sims_per_second(tree: Tree, select, backup, seconds: float) -> float:
    """Selections+backups per second: each round selects 16 leaves and backs each one up."""
    out, values = np.zeros(BATCH, np.int32), np.full(BATCH, 0.5)
    rounds, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        leaves = _select(select, tree, out)
        backup(tree.parent, tree.visits, tree.effective_visits, tree.value_sum, tree.value_max, leaves, values)
        rounds += 1
    return rounds * BATCH / (time.process_time() - start)


def _rounds(rounds, first_child, num_children, parent, visits, effective_visits, value_sum, value_max, prior,
            terminal, out, values):
    """``rounds`` x (select 16 leaves with virtual loss, back each up): the kernels alone."""
    for _ in range(rounds):
        select(first_child, num_children, parent, visits, effective_visits, value_sum, value_max, prior, terminal,
               ROOTS, C_PUCT, False, 1.0, out)
        back(parent, visits, effective_visits, value_sum, value_max, out, values)


def round_loops() -> tuple:
    """The same loop twice: calling the compiled kernels from compiled code, and the Python ones."""
    python = type(_rounds)(_rounds.__code__, dict(_rounds.__globals__, select=PYTHON_KERNELS["select_leaves"],
                                                   back=PYTHON_KERNELS["backup_batch"]))
    if not HAVE_NUMBA:  # pragma: no cover
        return python, python
    kernels = compiled_kernels()
    return _compiled(_rounds, select=kernels["select_leaves"], back=kernels["backup_batch"]), python


def kernel_sims_per_second(tree: Tree, loop, seconds: float) -> float:
    """Sims/s with the round loop itself in ``loop`` (no Python call per round)."""
    out, values = np.zeros(BATCH, np.int32), np.full(BATCH, 0.5)
    arrays = (tree.first_child, tree.num_children, tree.parent, tree.visits, tree.effective_visits,
              tree.value_sum, tree.value_max, tree.prior, tree.terminal, out, values)
    done, rounds, start = 0, 1, time.process_time()
    while time.process_time() - start < seconds:
        loop(rounds, *arrays)
        done += rounds
        rounds = min(rounds * 2, 4096)
    return done * BATCH / (time.process_time() - start)


def run_tree_bench(nodes: int = 100_000, repeats: int = 3) -> dict:
    tree = grow_tree(nodes)
    (rounds_nb, rounds_py), kernels = round_loops(), compiled_kernels()
    kernel_sims_per_second(tree, rounds_nb, 0.2)  # warm-up (compiles)
    sims_per_second(tree, kernels["select_leaves"], kernels["backup_batch"], 0.2)
    fast = statistics.median(kernel_sims_per_second(tree, rounds_nb, 1.0) for _ in range(repeats))
    slow = statistics.median(kernel_sims_per_second(tree, rounds_py, 1.0) for _ in range(repeats))
    from_python = statistics.median(sims_per_second(tree, kernels["select_leaves"], kernels["backup_batch"], 1.0)
                                    for _ in range(repeats))
    return {
        "nodes": tree.size,
        "max_depth": int(tree.depth[: tree.size].max()),
        "batch": BATCH,
        "numba": HAVE_NUMBA,
        "sims_per_s_numba": round(fast),
        "sims_per_s_python": round(slow),
        "speedup": round(fast / slow, 1),
        "sims_per_s_numba_called_from_python": round(from_python),
    }
