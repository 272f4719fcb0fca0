"""PUCT selection with virtual loss, and backup, over the tree's arrays.

The kernels are plain Python over numpy arrays, written in the subset numba compiles.
``numba.njit`` turns each into a compiled twin; where numba is missing, the Python
original runs instead. Both are the same source, so they agree exactly (tested).

Invariants: every node except the root has ``visits >= 1`` as soon as it exists (it is
backed up with its own SPRM value when created), so Q is always defined; outside a
selection ``effective_visits == visits``.

Compiling: numba resolves a kernel's calls to other functions through its globals, so
each compiled kernel is built from the same code object with globals that point at the
compiled helpers (``_compiled``); the Python twins keep the plain ones. Importing numba
and compiling cost every process 0.8 s on an idle core here (5-6 s on a busy machine), which
a search's tree of tens of nodes never earns back, so the twins are built on first use, and
only for trees of ``COMPILE_FROM_NODES`` nodes or more.
"""

from __future__ import annotations

import functools
import importlib.util
import math

import numpy as np

from reflective_search.tree import Tree

HAVE_NUMBA = importlib.util.find_spec("numba") is not None
# Trees this large run compiled (by then a search has decoded ~100,000 tokens, minutes of
# model time, so the compile is noise); smaller ones run the Python twins.
COMPILE_FROM_NODES = 10_000


def _best_child(node, first_child, num_children, visits, effective_visits, value_sum, value_max, prior,
                c_puct, use_max):
    """The child maximising Q + c_puct * P * sqrt(N_parent) / (1 + N_child); first on ties.

    N counts virtual loss (``effective_visits``); Q = value / N, so an in-flight visit is
    worth 0. Q + U is formed over one division: the loop is the kernel's hot spot.
    """
    first = first_child[node]
    explore = c_puct * math.sqrt(max(effective_visits[node], 1.0))
    best = first
    best_score = -np.inf
    for child in range(first, first + num_children[node]):
        n = effective_visits[child]
        # float(): numba computes explore * prior in float64, but NumPy 2 keeps a Python
        # float times a float32 in float32, so without it the twins would round differently.
        p = float(prior[child])
        if n <= 0:
            score = explore * p
        else:
            value = value_max[child] * visits[child] if use_max else value_sum[child]
            score = (value * (1.0 + n) + explore * p * n) / (n * (1.0 + n))
        if score > best_score:
            best_score = score
            best = child
    return best


def _select_leaves(first_child, num_children, parent, visits, effective_visits, value_sum, value_max,
                   prior, terminal, starts, c_puct, use_max, virtual_loss, out):
    """Pick one leaf per entry of ``starts`` by a PUCT descent from that node, with virtual
    loss between descents (the root for PUCT; a root child chosen by Gumbel MCTS).

    Writes leaf ids into ``out[:len(starts)]``; the same leaf may appear twice when virtual
    loss is too weak to push the next descent elsewhere (callers de-duplicate). Virtual loss
    is added along each chosen path up to the root and removed again before returning, so it
    only shapes the choices inside this batch.
    """
    batch = len(starts)
    for b in range(batch):
        node = starts[b]
        while num_children[node] > 0 and not terminal[node]:
            node = _best_child(node, first_child, num_children, visits, effective_visits, value_sum,
                               value_max, prior, c_puct, use_max)
        out[b] = node
        while node >= 0:
            effective_visits[node] += virtual_loss
            node = parent[node]
    for b in range(batch):
        node = out[b]
        while node >= 0:
            # Restore, not subtract: adding and removing 0.1 three times need not give back
            # the same float, and outside a selection effective visits are the visits.
            effective_visits[node] = visits[node]
            node = parent[node]
    return out


def _backup(parent, visits, effective_visits, value_sum, value_max, node, value):
    """Add one visit of ``value`` to ``node`` and every ancestor."""
    while node >= 0:
        visits[node] += 1
        effective_visits[node] += 1.0
        value_sum[node] += value
        if visits[node] == 1 or value > value_max[node]:
            value_max[node] = value
        node = parent[node]


def _backup_batch(parent, visits, effective_visits, value_sum, value_max, nodes, values):
    """Back up ``values[i]`` from ``nodes[i]`` for every i (one call for a round)."""
    for i in range(len(nodes)):
        _backup(parent, visits, effective_visits, value_sum, value_max, nodes[i], values[i])


PYTHON_KERNELS = {"select_leaves": _select_leaves, "backup": _backup, "backup_batch": _backup_batch}


def _compiled(kernel, **helpers):
    """``kernel`` compiled by numba, its calls to ``helpers`` bound to compiled versions."""
    import numba

    function = type(kernel)(kernel.__code__, dict(kernel.__globals__, **helpers), kernel.__name__ + "_nb")
    return numba.njit(cache=False)(function)


@functools.cache
def compiled_kernels() -> dict:
    """The numba twins of ``PYTHON_KERNELS`` (the Python ones where numba is missing)."""
    if not HAVE_NUMBA:  # pragma: no cover - exercised where numba is not installed
        return PYTHON_KERNELS
    import numba

    backup_nb = numba.njit(cache=False)(_backup)
    best_child_nb = numba.njit(cache=False, inline="always")(_best_child)
    return {"select_leaves": _compiled(_select_leaves, _best_child=best_child_nb), "backup": backup_nb,
            "backup_batch": _compiled(_backup_batch, _backup=backup_nb)}


def _kernel(name: str, tree: Tree, compiled: bool | None):
    """``compiled``: True / False force a twin; None picks by the tree's size."""
    if compiled is None:
        compiled = tree.size >= COMPILE_FROM_NODES
    return compiled_kernels()[name] if compiled else PYTHON_KERNELS[name]


def select_leaves(tree: Tree, batch: int, c_puct: float, use_max: bool = False,
                  virtual_loss: float = 1.0, compiled: bool | None = None, starts=None) -> list[int]:
    """Distinct leaves (possibly terminal) chosen by ``batch`` PUCT descents.

    ``starts`` (length ``batch``) names the node each descent begins at; None: the root.
    """
    kernel = _kernel("select_leaves", tree, compiled)
    out = np.zeros(batch, np.int32)
    starts = np.zeros(batch, np.int32) if starts is None else np.asarray(starts, np.int32)
    assert len(starts) == batch, "one start node per descent"
    kernel(tree.first_child, tree.num_children, tree.parent, tree.visits, tree.effective_visits, tree.value_sum,
           tree.value_max, tree.prior, tree.terminal, starts, c_puct, use_max, virtual_loss, out)
    return list(dict.fromkeys(int(n) for n in out))


def backup_batch(tree: Tree, nodes, values, compiled: bool | None = None) -> None:
    """Back up ``values[i]`` from ``nodes[i]``, in order, in one kernel call."""
    kernel = _kernel("backup_batch", tree, compiled)
    kernel(tree.parent, tree.visits, tree.effective_visits, tree.value_sum, tree.value_max,
           np.asarray(nodes, np.int32), np.asarray(values, np.float64))


def backup(tree: Tree, node: int, value: float, compiled: bool | None = None) -> None:
    """Back ``value`` up from ``node`` to the root."""
    kernel = _kernel("backup", tree, compiled)
    kernel(tree.parent, tree.visits, tree.effective_visits, tree.value_sum, tree.value_max, node, float(value))
