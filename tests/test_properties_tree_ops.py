"""Properties of the tree core (``tree_ops``): random select, expand and backup sequences, on the
compiled kernels and their Python twins, leave the same leaves, visits and values as a
pure-Python reference tree of linked nodes.

The reference scores a child with the formula the kernel documents (Q + U over one
division, so float rounding matches); the rest (the descent, virtual loss in flight,
backup, the max rule) is written independently over its own nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reflective_search.interface import ChildStep, StepEnd
from reflective_search.tree import ROOT, Tree
from reflective_search.tree_ops import backup, backup_batch, select_leaves


@dataclass(eq=False)  # nodes are compared by identity
class Node:
    parent: "Node | None"
    prior: float  # as the tree stores it (float32)
    terminal: bool = False
    children: list["Node"] = field(default_factory=list)
    visits: int = 0
    value_sum: float = 0.0
    value_max: float = 0.0
    in_flight: float | None = None  # visits plus the virtual loss added so far by this selection's descents

    def ancestry(self):
        node = self
        while node is not None:
            yield node
            node = node.parent


def seen_visits(node: Node) -> float:
    """The visit count a descent sees: in-flight virtual loss included."""
    return float(node.visits) if node.in_flight is None else node.in_flight


class ReferenceTree:
    def __init__(self) -> None:
        self.nodes = [Node(None, 0.0)]

    def backup(self, node_id: int, value: float) -> None:
        for node in self.nodes[node_id].ancestry():
            node.visits += 1
            node.value_sum += value
            node.value_max = value if node.visits == 1 else max(node.value_max, value)

    def expand(self, node_id: int, priors: list[float], terminal: list[bool]) -> None:
        parent = self.nodes[node_id]
        for prior, end in zip(priors, terminal):
            child = Node(parent, float(np.float32(prior)), end)
            parent.children.append(child)
            self.nodes.append(child)

    def select(self, batch: int, c_puct: float, use_max: bool, virtual_loss: float) -> list[int]:
        chosen = []
        for _ in range(batch):
            node = self.nodes[ROOT]
            while node.children and not node.terminal:
                node = max(node.children, key=lambda child: (self._score(node, child, c_puct, use_max),
                                                             -node.children.index(child)))
            chosen.append(self.nodes.index(node))
            for above in node.ancestry():
                above.in_flight = (float(above.visits) if above.in_flight is None else above.in_flight) + virtual_loss
        for node in self.nodes:
            node.in_flight = None
        return list(dict.fromkeys(chosen))

    @staticmethod
    def _score(parent: Node, child: Node, c_puct: float, use_max: bool) -> float:
        explore = c_puct * math.sqrt(max(seen_visits(parent), 1.0))
        n = seen_visits(child)
        if n <= 0:
            return explore * child.prior
        value = child.value_max * child.visits if use_max else child.value_sum
        return (value * (1.0 + n) + explore * child.prior * n) / (n * (1.0 + n))

    def arrays(self) -> dict[str, list]:
        return {"visits": [n.visits for n in self.nodes], "value_sum": [n.value_sum for n in self.nodes],
                "value_max": [n.value_max for n in self.nodes], "effective_visits": [float(n.visits) for n in self.nodes]}


def tree_arrays(tree: Tree) -> dict[str, list]:
    n = tree.size
    return {name: getattr(tree, name)[:n].tolist() for name in ("visits", "value_sum", "value_max", "effective_visits")}


unit = st.floats(0, 1, allow_nan=False)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "python"])
@given(data=st.data())
def test_select_expand_backup_sequences_match_the_reference_tree(compiled, data):
    tree, reference = Tree([1, 2], "p"), ReferenceTree()
    use_max = data.draw(st.booleans(), "use_max")
    c_puct, virtual_loss = data.draw(st.floats(0, 4), "c_puct"), data.draw(st.sampled_from([0.0, 0.1, 1.0, 3.0]))
    for _ in range(data.draw(st.integers(1, 8), "rounds")):
        batch = data.draw(st.integers(1, 6), "batch")
        leaves = select_leaves(tree, batch, c_puct, use_max=use_max, virtual_loss=virtual_loss, compiled=compiled)
        assert leaves == reference.select(batch, c_puct, use_max, virtual_loss)
        for leaf in leaves:
            if tree.terminal[leaf]:  # a finished path is visited again with its own value, as MCTS does
                value = data.draw(unit, "terminal value")
                backup(tree, leaf, value, compiled=compiled)
                reference.backup(leaf, value)
                continue
            k = data.draw(st.integers(1, 4), "children")
            priors, scores = data.draw(st.lists(unit, min_size=k, max_size=k)), data.draw(st.lists(unit, min_size=k,
                                                                                                  max_size=k))
            terminal = data.draw(st.lists(st.booleans(), min_size=k, max_size=k))
            steps = [ChildStep((7,), "s", 0.0, score, StepEnd.DELIMITER) for score in scores]
            children = tree.add_children(leaf, steps, priors)
            tree.terminal[children.start:children.stop] = terminal
            reference.expand(leaf, priors, terminal)
            backup_batch(tree, list(children), scores, compiled=compiled)  # each child backed up with its own score
            for child, score in zip(children, scores):
                reference.backup(child, score)
        assert tree_arrays(tree) == reference.arrays()
