"""PUCT selection with virtual loss, and backup, over the tree's arrays.

The kernels are plain Python over numpy arrays, written in the subset numba compiles.
``numba.njit`` turns each into a compiled twin; where numba is missing, the Python
original runs instead. Both are the same source, so they agree exactly (tested).

Invariant: every node except the root has ``visits >= 1`` as soon as it exists (it is
backed up with its own SPRM value when created), so Q is always defined and PUCT never
divides by zero.
"""

from __future__ import annotations

import math

import numpy as np

from reflective_search.tree import Tree

try:
    import numba

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised where numba is not installed
    numba = None
    HAVE_NUMBA = False


def _best_child(node, first_child, num_children, visits, value_sum, value_max, in_flight, prior, c_puct, use_max):
    """The child maximising Q + c_puct * P * sqrt(N_parent) / (1 + N_child); first on ties."""
    first = first_child[node]
    parent_visits = visits[node] + in_flight[node]
    explore = c_puct * math.sqrt(max(parent_visits, 1.0))
    best = first
    best_score = -np.inf
    for child in range(first, first + num_children[node]):
        n = visits[child] + in_flight[child]  # virtual loss: in-flight visits worth 0
        if n <= 0:
            score = explore * prior[child]
        else:
            # Q + U = value / n + explore * prior / (1 + n), over one division (hot loop)
            value = value_max[child] * visits[child] if use_max else value_sum[child]
            score = (value * (1.0 + n) + explore * prior[child] * n) / (n * (1.0 + n))
        if score > best_score:
            best_score = score
            best = child
    return best


def _select_leaves(first_child, num_children, parent, visits, value_sum, value_max, in_flight,
                   prior, terminal, batch, c_puct, use_max, virtual_loss, out):
    """Pick ``batch`` leaves by PUCT descents from the root, with virtual loss between them.

    Writes leaf ids into ``out[:batch]``; the same leaf may appear twice when virtual loss
    is too weak to push the next descent elsewhere (callers de-duplicate). Virtual loss is
    added along each chosen path and removed again before returning, so it only shapes the
    choices inside this batch.
    """
    for b in range(batch):
        node = 0
        while num_children[node] > 0 and not terminal[node]:
            node = _best_child(node, first_child, num_children, visits, value_sum, value_max,
                               in_flight, prior, c_puct, use_max)
        out[b] = node
        while node >= 0:
            in_flight[node] += virtual_loss
            node = parent[node]
    for b in range(batch):
        node = out[b]
        while node >= 0:
            in_flight[node] -= virtual_loss
            node = parent[node]
    return out


def _backup(parent, visits, value_sum, value_max, node, value):
    """Add one visit of ``value`` to ``node`` and every ancestor."""
    while node >= 0:
        visits[node] += 1
        value_sum[node] += value
        if visits[node] == 1 or value > value_max[node]:
            value_max[node] = value
        node = parent[node]


def _backup_batch(parent, visits, value_sum, value_max, nodes, values):
    """Back up ``values[i]`` from ``nodes[i]`` for every i (one call for a round)."""
    for i in range(len(nodes)):
        _backup(parent, visits, value_sum, value_max, nodes[i], values[i])


select_leaves_py = _select_leaves
backup_py = _backup
backup_batch_py = _backup_batch
if HAVE_NUMBA:
    _best_child_nb = numba.njit(cache=False, inline="always")(_best_child)
    # Compile the selection kernel against the compiled helper (same source, no Python calls).
    _select_globals = dict(_select_leaves.__globals__, _best_child=_best_child_nb)
    _select_src = type(_select_leaves)(_select_leaves.__code__, _select_globals, "_select_leaves_nb")
    select_leaves_nb = numba.njit(cache=False)(_select_src)
    backup_nb = numba.njit(cache=False)(_backup)
    _batch_globals = dict(_backup_batch.__globals__, _backup=backup_nb)
    backup_batch_nb = numba.njit(cache=False)(type(_backup_batch)(_backup_batch.__code__, _batch_globals, "_backup_batch_nb"))
else:  # pragma: no cover
    select_leaves_nb = select_leaves_py
    backup_nb = backup_py
    backup_batch_nb = backup_batch_py


def select_leaves(tree: Tree, batch: int, c_puct: float, use_max: bool = False,
                  virtual_loss: float = 1.0, compiled: bool = True) -> list[int]:
    """Distinct leaves (possibly terminal) chosen by ``batch`` PUCT descents."""
    kernel = select_leaves_nb if compiled else select_leaves_py
    out = np.zeros(batch, np.int32)
    kernel(tree.first_child, tree.num_children, tree.parent, tree.visits, tree.value_sum,
           tree.value_max, tree.in_flight, tree.prior, tree.terminal, batch, c_puct, use_max,
           virtual_loss, out)
    return list(dict.fromkeys(int(n) for n in out))


def backup_batch(tree: Tree, nodes, values, compiled: bool = True) -> None:
    """Back up ``values[i]`` from ``nodes[i]``, in order, in one kernel call."""
    kernel = backup_batch_nb if compiled else backup_batch_py
    kernel(tree.parent, tree.visits, tree.value_sum, tree.value_max,
           np.asarray(nodes, np.int32), np.asarray(values, np.float64))


def backup(tree: Tree, node: int, value: float, compiled: bool = True) -> None:
    """Back ``value`` up from ``node`` to the root."""
    kernel = backup_nb if compiled else backup_py
    kernel(tree.parent, tree.visits, tree.value_sum, tree.value_max, node, float(value))
