"""The compiled tree kernels agree exactly with their pure-Python twins."""

from __future__ import annotations

import numpy as np
import pytest

from reflective_search.interface import ChildStep, StepEnd
from reflective_search.tree import ROOT, Tree
from reflective_search.tree_ops import HAVE_NUMBA, backup, backup_batch, select_leaves


def random_tree(seed: int, nodes: int = 400, fan_out: int = 3) -> Tree:
    """A tree grown by random expansions, with random priors and backed-up scores."""
    rng = np.random.default_rng(seed)
    tree = Tree([1, 2, 3], "prompt")
    while tree.size < nodes:
        leaves = [n for n in tree.leaves() if not tree.terminal[n]]
        node = int(rng.choice(leaves))
        priors = rng.dirichlet(np.ones(fan_out))
        steps = [ChildStep((int(t),), "s", 0.0, float(rng.random()), StepEnd.DELIMITER) for t in rng.integers(5, 50, fan_out)]
        for child in tree.add_children(node, steps, priors.tolist()):
            tree.terminal[child] = rng.random() < 0.1
            backup(tree, child, float(tree.score[child]), compiled=False)
    return tree


def test_tree_stores_each_nodes_tokens_once():
    tree = random_tree(0, nodes=50)
    assert tree.num_tokens == 3 + (tree.size - 1)
    leaf = tree.leaves()[-1]
    assert tree.token_path(leaf)[0] == (1, 2, 3)
    assert len(tree.token_path(leaf)) == int(tree.depth[leaf]) + 1


def test_parent_visits_equal_own_backup_plus_children():
    tree = random_tree(1, nodes=200)
    for node in range(1, tree.size):
        kids = tree.children(node)
        assert int(tree.visits[node]) == 1 + sum(int(tree.visits[c]) for c in kids)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: only the Python path exists")
@pytest.mark.parametrize("use_max", [False, True])
def test_numba_and_python_select_the_same_leaves(use_max):
    for seed in range(5):
        tree = random_tree(seed)
        for batch in (1, 4, 16):
            fast = select_leaves(tree, batch, 1.5, use_max=use_max, compiled=True)
            slow = select_leaves(tree, batch, 1.5, use_max=use_max, compiled=False)
            assert fast == slow
            np.testing.assert_array_equal(tree.effective_visits, tree.visits)  # virtual loss fully removed


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: only the Python path exists")
def test_numba_and_python_backup_identically():
    a, b = random_tree(7), random_tree(7)
    for node, value in [(a.size - 1, 0.25), (5, 0.9), (a.size // 2, 0.1)]:
        backup(a, node, value, compiled=True)
        backup(b, node, value, compiled=False)
    np.testing.assert_array_equal(a.visits, b.visits)
    np.testing.assert_array_equal(a.value_sum, b.value_sum)
    np.testing.assert_array_equal(a.value_max, b.value_max)


@pytest.mark.skipif(not HAVE_NUMBA, reason="numba not installed: only the Python path exists")
def test_numba_and_python_batch_backups_agree_with_one_by_one():
    a, b, c = random_tree(8), random_tree(8), random_tree(8)
    nodes, values = [a.size - 1, 5, a.size // 2, 5], [0.25, 0.9, 0.1, 0.3]
    backup_batch(a, nodes, values, compiled=True)
    backup_batch(b, nodes, values, compiled=False)
    for node, value in zip(nodes, values):
        backup(c, node, value, compiled=False)
    for tree in (a, b):
        np.testing.assert_array_equal(tree.visits, c.visits)
        np.testing.assert_array_equal(tree.value_sum, c.value_sum)
        np.testing.assert_array_equal(tree.value_max, c.value_max)


@pytest.mark.parametrize("compiled", [True, False])
def test_a_fractional_virtual_loss_leaves_no_trace(compiled):
    tree = random_tree(0)
    for _ in range(50):
        select_leaves(tree, 16, 1.5, virtual_loss=0.1, compiled=compiled)
    np.testing.assert_array_equal(tree.effective_visits, tree.visits)


def test_selection_with_virtual_loss_spreads_over_leaves():
    tree = Tree([1], "p")
    steps = [ChildStep((t,), "s", 0.0, 0.5, StepEnd.DELIMITER) for t in (1, 2, 3, 4)]
    for child in tree.add_children(ROOT, steps, [0.25] * 4):
        backup(tree, child, 0.5)
    assert select_leaves(tree, 4, 1.0, virtual_loss=1.0) == [1, 2, 3, 4]
    assert select_leaves(tree, 4, 1.0, virtual_loss=0.0) == [1]  # no virtual loss: one leaf


def test_small_trees_run_the_python_twins_and_large_ones_the_compiled(monkeypatch):
    """Importing numba and compiling costs seconds that a search's tree of tens of nodes never
    earns back: below COMPILE_FROM_NODES the default is the Python kernel."""
    from reflective_search import tree_ops

    tree = random_tree(0)
    assert tree_ops._kernel("select_leaves", tree, None) is tree_ops.PYTHON_KERNELS["select_leaves"]
    monkeypatch.setattr(tree_ops, "COMPILE_FROM_NODES", tree.size)
    assert tree_ops._kernel("backup_batch", tree, None) is tree_ops.compiled_kernels()["backup_batch"]
    assert tree_ops._kernel("backup", tree, False) is tree_ops.PYTHON_KERNELS["backup"]
    assert (tree_ops.compiled_kernels()["backup"] is not tree_ops.PYTHON_KERNELS["backup"]) == HAVE_NUMBA


@pytest.mark.parametrize("compiled", [True, False])
def test_the_exploration_term_is_float64_in_both_twins(compiled):
    """A float32 prior times a tiny c_puct underflows in float32 (NumPy 2 keeps float * float32 in
    float32); in float64, as numba computes it, the prior still breaks the tie between equal values."""
    tree = Tree([1], "p")
    steps = [ChildStep((t,), "s", 0.0, 0.0, StepEnd.DELIMITER) for t in (1, 2)]
    for child in tree.add_children(ROOT, steps, [0.0, 1.0]):
        backup(tree, child, 0.0)
    assert select_leaves(tree, 1, 1e-77, compiled=compiled) == [2]
