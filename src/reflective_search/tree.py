"""The search tree: parallel arrays indexed by node id, each node's tokens stored once.

Node 0 is the root and holds the prompt. A node's children are added in one call and get
consecutive ids, so ``first_child`` and ``num_children`` describe them without lists:
this is what lets the numba kernels in ``tree_ops`` walk the tree over plain arrays.
Search statistics (visits, values) live here too; the tree itself has no behaviour beyond
growing and answering questions about its data. No torch import.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from reflective_search.interface import ChildStep, StepEnd, TokenIds, TokenPath

ROOT = 0
NO_PARENT = -1
NO_NODE = -1


class Tree:
    """A growing step tree. Arrays are over-allocated; ``size`` nodes are valid."""

    def __init__(self, prompt_tokens: Sequence[int], prompt_text: str, capacity: int = 64) -> None:
        self.size = 0
        self.parent = np.full(capacity, NO_PARENT, np.int32)  # [N] parent id
        self.depth = np.zeros(capacity, np.int32)  # [N] steps below the root
        self.first_child = np.full(capacity, NO_NODE, np.int32)  # [N] id of the first child
        self.num_children = np.zeros(capacity, np.int32)  # [N] children (consecutive ids)
        self.visits = np.zeros(capacity, np.int32)  # [N] backups through this node
        self.value_sum = np.zeros(capacity, np.float64)  # [N] sum of backed-up values
        self.value_max = np.zeros(capacity, np.float64)  # [N] best backed-up value
        # [N] visits plus virtual loss in flight: the one count PUCT reads (equal to ``visits``
        # outside a selection). Keeping it apart saves the hot loop a load per child.
        self.effective_visits = np.zeros(capacity, np.float64)
        self.prior = np.zeros(capacity, np.float32)  # [N] policy prior among siblings (float32: the
        # selection kernel is memory-bound on big trees)
        self.score = np.zeros(capacity, np.float64)  # [N] SPRM score of the node's step
        self.scored = np.ones(capacity, np.bool_)  # [N] the score counts toward its paths (model.steps' rule)
        self.logprob = np.zeros(capacity, np.float64)  # [N] summed log p of the step's tokens
        self.terminal = np.zeros(capacity, np.bool_)  # [N] no expansion below this node
        self.end = np.zeros(capacity, np.int8)  # [N] StepEnd of the step
        self.token_start = np.zeros(capacity, np.int64)  # [N] offset into ``tokens``
        self.token_len = np.zeros(capacity, np.int32)  # [N] number of the node's tokens
        self.tokens = np.zeros(max(256, len(prompt_tokens) * 2), np.int32)  # [T] all tokens, once
        self.num_tokens = 0
        self.texts: list[str] = []  # [N] decoded text of each node's step (root: prompt)
        self.chosen = NO_NODE  # the leaf whose path is the returned answer
        self.history: list[dict] = []  # snapshots per search round (when config.record_history)
        self._append_node(NO_PARENT, tuple(int(t) for t in prompt_tokens), prompt_text)

    # -- growing -------------------------------------------------------------------

    def add_children(self, parent: int, steps: Sequence[ChildStep], priors: Sequence[float]) -> range:
        """Append ``steps`` as the children of ``parent`` (once per node); returns their ids."""
        assert self.num_children[parent] == 0, "a node is expanded once"
        first = self.size
        for step, prior in zip(steps, priors, strict=True):
            node = self._append_node(parent, step.tokens, step.text)
            self.prior[node] = prior
            self.score[node] = step.score
            self.scored[node] = step.scored
            self.logprob[node] = step.logprob
            self.end[node] = int(step.end)
        self.first_child[parent] = first if steps else NO_NODE
        self.num_children[parent] = len(steps)
        return range(first, self.size)

    def _append_node(self, parent: int, tokens: TokenIds, text: str) -> int:
        self._reserve(self.size + 1, self.num_tokens + len(tokens))
        node = self.size
        self.size += 1
        self.parent[node] = parent
        self.depth[node] = 0 if parent == NO_PARENT else self.depth[parent] + 1
        self.token_start[node] = self.num_tokens
        self.token_len[node] = len(tokens)
        self.tokens[self.num_tokens : self.num_tokens + len(tokens)] = tokens
        self.num_tokens += len(tokens)
        self.texts.append(text)
        return node

    def _reserve(self, nodes: int, tokens: int) -> None:
        """Double the arrays that are too small (amortised O(1) appends)."""
        if nodes > len(self.parent):
            new = max(nodes, 2 * len(self.parent))
            for name in NODE_ARRAYS:
                old = getattr(self, name)
                grown = np.full(new, _FILL.get(name, 0), old.dtype)
                grown[: len(old)] = old
                setattr(self, name, grown)
        if tokens > len(self.tokens):
            grown = np.zeros(max(tokens, 2 * len(self.tokens)), np.int32)
            grown[: self.num_tokens] = self.tokens[: self.num_tokens]
            self.tokens = grown

    def snapshot(self) -> None:
        """Record the tree's growth so far: node count and per-node visits and value sums."""
        n = self.size
        self.history.append({
            "round": len(self.history),
            "size": n,
            "visits": self.visits[:n].tolist(),
            "value_sum": [round(v, 6) for v in self.value_sum[:n].tolist()],
        })

    # -- queries -------------------------------------------------------------------

    def children(self, node: int) -> range:
        first = int(self.first_child[node])
        return range(first, first + int(self.num_children[node])) if first != NO_NODE else range(0)

    def is_leaf(self, node: int) -> bool:
        return int(self.num_children[node]) == 0

    def node_tokens(self, node: int) -> TokenIds:
        start = int(self.token_start[node])
        return tuple(int(t) for t in self.tokens[start : start + int(self.token_len[node])])

    def path(self, node: int) -> list[int]:
        """Node ids from the root down to ``node``."""
        nodes = []
        while node != NO_PARENT:
            nodes.append(node)
            node = int(self.parent[node])
        return nodes[::-1]

    def token_path(self, node: int) -> TokenPath:
        """The tokens of every segment from the root to ``node`` (what an expander reads)."""
        return tuple(self.node_tokens(n) for n in self.path(node))

    def step_scores(self, node: int) -> list[float]:
        """SPRM scores of the scored steps from the root's first child down to ``node``."""
        return [float(self.score[n]) for n in self.path(node)[1:] if self.scored[n]]

    def response_text(self, node: int) -> str:
        """The concatenated step texts below the prompt (the trajectory's response)."""
        return "".join(self.texts[n] for n in self.path(node)[1:])

    def mean_value(self, node: int) -> float:
        visits = int(self.visits[node])
        return float(self.value_sum[node]) / visits if visits else 0.0

    def leaves(self) -> list[int]:
        return [n for n in range(self.size) if self.num_children[n] == 0]

    def terminal_leaves(self) -> list[int]:
        return [n for n in range(self.size) if self.terminal[n] and n != ROOT]

    def step_end(self, node: int) -> StepEnd:
        return StepEnd(int(self.end[node]))

    # -- export (implemented in reflective_search.viz; imported lazily) ---------------

    def to_json(self, path: str | None = None) -> str:
        from reflective_search.viz.export import tree_to_json

        return tree_to_json(self, path)

    @classmethod
    def from_json(cls, source: str) -> "Tree":
        from reflective_search.viz.export import tree_from_json

        return tree_from_json(source)

    def to_networkx(self):  # -> networkx.DiGraph
        from reflective_search.viz.export import tree_to_networkx

        return tree_to_networkx(self)

    def to_dot(self, path: str | None = None) -> str:
        """Graphviz DOT text (also written to ``path`` when given)."""
        from reflective_search.viz.export import tree_to_dot

        return tree_to_dot(self, path)

    def to_html(self, path: str, title: str | None = None) -> str:
        """Write the offline interactive viewer (one self-contained HTML file); returns ``path``."""
        from reflective_search.viz.html import tree_to_html

        return tree_to_html(self, path, title=title)

    def to_png(self, path: str, **options) -> str:
        """Draw the tree with matplotlib (options: see ``viz.png.trees_to_image``); returns ``path``."""
        from reflective_search.viz.png import tree_to_image

        return tree_to_image(self, path, image_format="png", **options)

    def to_svg(self, path: str, **options) -> str:
        """Like ``to_png``, as SVG."""
        from reflective_search.viz.png import tree_to_image

        return tree_to_image(self, path, image_format="svg", **options)


NODE_ARRAYS = (
    "parent", "depth", "first_child", "num_children", "visits", "value_sum", "value_max",
    "effective_visits", "prior", "score", "scored", "logprob", "terminal", "end", "token_start", "token_len",
)
_FILL = {"parent": NO_PARENT, "first_child": NO_NODE, "scored": True}
