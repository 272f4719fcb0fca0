"""Properties of tree JSON (versions 1 and 2) on trees grown by random searches over a fake model.

A tree survives JSON exactly; a file cut short, or with any one value replaced, is either
refused in one line or loads as a tree whose structure holds and which writes itself
back to the same JSON.
"""

from __future__ import annotations

import json
import random

import numpy as np
from fakes import NullModel
from hypothesis import given
from hypothesis import strategies as st

from reflective_search import ReflectiveSearch
from reflective_search.interface import ChildStep, Expansion, StepEnd, child_seed, derive_seed
from reflective_search.tree import NO_NODE, NO_PARENT, NODE_ARRAYS, ROOT, Tree
from reflective_search.viz.export import TreeFileError, tree_from_json, tree_to_json

# Step texts a model may write: line and paragraph separators, a lone surrogate, NUL,
# quotes, markup, answers in both forms.
PIECES = ["7*3=21", ", left 8 21", ".\n\n", "\u2028", "\ud800", "\x00", '"', "\\", "</script>", "é", "🙂",
          "Answer: 42", "\\boxed{x}", " ", "\t"]


class RandomExpander:
    """Children drawn from a seeded generator: each depends on its request's seed and index only."""

    def __init__(self, salt: int) -> None:
        self.salt = salt

    def expand(self, requests, sampling) -> list[Expansion]:
        return [Expansion(tuple(self._child(r.seed, i) for i in range(r.k)), forwarded_tokens=r.k) for r in requests]

    def release(self, paths) -> None:
        pass

    def _child(self, seed: int, index: int) -> ChildStep:
        rng = random.Random(derive_seed(self.salt, child_seed(seed, index)))
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
        tokens = tuple(rng.randrange(1000) for _ in range(rng.randint(1, 3)))
        end = StepEnd.EOS if rng.random() < 0.25 else StepEnd.DELIMITER
        return ChildStep(tokens, text, -5 * rng.random(), rng.random(), end, scored=rng.random() < 0.8)


counts = st.integers(1, 3)
searches = st.one_of(
    st.builds(lambda: {"method": "greedy"}),
    st.builds(lambda n: {"method": "majority", "majority": {"n": n}}, counts),
    st.builds(lambda n, select: {"method": "best_of_n", "best_of_n": {"n": n}, "select": select}, counts,
              st.sampled_from(["best", "vote", "weighted_vote"])),
    st.builds(lambda width, expand: {"method": "beam", "beam": {"width": width, "expand": expand}}, counts, counts),
    st.builds(lambda width, k: {"method": "dvts", "dvts": {"width": width, "n": width * k}}, counts, counts),
    st.builds(lambda width: {"method": "rebase", "rebase": {"width": width}}, counts),
    st.builds(lambda children, leaves, tokens, backup: {
        "method": "mcts", "mcts": {"children": children, "batch_leaves": leaves, "backup": backup},
        "budget": {"tokens": tokens}}, counts, counts, st.integers(4, 60), st.sampled_from(["mean", "max"])),
)


@st.composite
def search_trees(draw) -> Tree:
    config = {**draw(searches), "seed": draw(st.integers(0, 2**32)), "record_history": draw(st.booleans()),
              "sampling": {"max_steps": draw(st.integers(1, 4))}}
    expander = RandomExpander(draw(st.integers(0, 2**32)))
    return ReflectiveSearch(NullModel(), config, expander=expander).solve(draw(st.text(min_size=1, max_size=8)
                                                                               .filter(str.strip))).tree


def state(tree: Tree) -> dict:
    """Everything a tree holds, as comparable values (arrays with their dtypes)."""
    n = tree.size
    arrays = {name: (getattr(tree, name).dtype.str, getattr(tree, name)[:n].tolist()) for name in NODE_ARRAYS}
    return {"arrays": arrays, "tokens": (tree.tokens.dtype.str, tree.tokens[: tree.num_tokens].tolist()),
            "texts": tree.texts[:n], "chosen": tree.chosen, "history": tree.history, "size": n}


def assert_well_formed(tree: Tree) -> None:
    """What the queries and the viewer rely on: every path, child range and token slice is in the tree."""
    for node in range(tree.size):
        assert tree.path(node)[0] == ROOT
        assert all(int(tree.parent[child]) == node for child in tree.children(node))
        assert len(tree.node_tokens(node)) == int(tree.token_len[node])
    assert tree.chosen == NO_NODE or 0 <= tree.chosen < tree.size


@given(search_trees())
def test_a_searched_tree_survives_json_exactly(tree):
    text = tree_to_json(tree)
    loaded = Tree.from_json(text)
    assert state(loaded) == state(tree)
    assert tree_to_json(loaded) == text


@given(search_trees())
def test_a_version_1_file_loads_with_every_score_counted(tree):
    payload = json.loads(tree_to_json(tree))
    del payload["arrays"]["scored"]
    loaded = tree_from_json(json.dumps({**payload, "version": 1}))
    assert loaded.scored[: tree.size].all()
    assert state(loaded)["arrays"]["score"] == state(tree)["arrays"]["score"]


@given(search_trees(), st.data())
def test_a_file_cut_short_is_refused_in_one_line(tree, data):
    text = tree_to_json(tree)
    cut = data.draw(st.integers(1, len(text.rstrip()) - 1))
    try:
        tree_from_json(text[:cut])
    except TreeFileError as error:
        assert "\n" not in str(error) and str(error).startswith("tree JSON text: ")
    else:
        raise AssertionError(f"a file cut at {cut} of {len(text)} characters loaded")


def leaves_of(value, where=()):
    """(path, value) of every scalar inside a JSON value."""
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from leaves_of(inner, (*where, key))
    elif isinstance(value, list) and value:
        for index, inner in enumerate(value):
            yield from leaves_of(inner, (*where, index))
    else:
        yield where, value


def replaced(payload, where, value):
    if not where:
        return value
    head, *rest = where
    copy = dict(payload) if isinstance(payload, dict) else list(payload)
    copy[head] = replaced(payload[head], rest, value)
    return copy


json_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(), st.floats(), st.text(max_size=4),
                        st.lists(st.integers(-2, 2), max_size=2), st.just({}))


@given(search_trees(), st.data())
def test_a_file_with_any_value_replaced_loads_well_formed_or_is_refused_in_one_line(tree, data):
    payload = json.loads(tree_to_json(tree))
    # A field first (each node array is one), then one value in it: the structure's arrays are hit often.
    fields = [(key,) for key in payload if key != "arrays"] + [("arrays", name) for name in payload["arrays"]]
    field = data.draw(st.sampled_from(fields))
    where, _ = data.draw(st.sampled_from([leaf for leaf in leaves_of(payload) if leaf[0][: len(field)] == field]))
    text = json.dumps(replaced(payload, where, data.draw(json_values)))
    try:
        loaded = tree_from_json(text)
    except TreeFileError as error:
        assert "\n" not in str(error) and str(error).startswith("tree JSON text: ")
    else:
        assert_well_formed(loaded)
        again = tree_to_json(loaded)
        assert tree_to_json(tree_from_json(again)) == again
