"""Tree export: JSON round trips, networkx attributes, DOT escaping, static pictures."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from reflective_search.errors import ReflectiveSearchError
from reflective_search.interface import ChildStep, StepEnd
from reflective_search.tree import NODE_ARRAYS, Tree
from reflective_search.viz.export import tree_from_json, tree_to_dot, tree_to_json, tree_to_networkx
from reflective_search.viz.png import most_visited_nodes, tree_to_image

PROMPT = "Numbers: 3 7 8. Target: 29.\n\n"
SMALL_SEARCH = {"method": "mcts", "record_history": True, "sampling": {"max_step_tokens": 8, "max_steps": 3},
                "budget": {"tokens": 120}}


def fake_tree() -> Tree:
    """Root -> (1: "7*3=21", 2: "8+7=15"); 1 -> 3: the answer. Chosen: 3. Two snapshots."""
    tree = Tree([5, 6, 7], PROMPT)
    tree.add_children(0, [
        ChildStep((10, 11), "7*3=21, left 8 21.\n\n", -0.5, 0.8, StepEnd.DELIMITER),
        ChildStep((12,), "8+7=15, left 3 15.\n\n", -1.0, 0.25, StepEnd.DELIMITER),
    ], [0.625, 0.375])
    tree.visits[:3], tree.value_sum[:3] = [2, 1, 1], [1.05, 0.8, 0.25]
    tree.snapshot()
    tree.add_children(1, [ChildStep((13, 14, 15), "21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n", -0.25, 0.5,
                                    StepEnd.EOS)], [1.0])
    tree.terminal[3] = True
    tree.visits[:4], tree.value_sum[:4], tree.value_max[:4] = [3, 2, 1, 1], [1.55, 1.3, 0.25, 0.5], [0.8, 0.8, 0.25, 0.5]
    tree.snapshot()
    tree.chosen = 3
    return tree


def synthetic_tree(size: int, seed: int = 0, snapshot_every: int = 16) -> Tree:
    """A random bushy tree of exactly ``size`` nodes, with backed-up visits and snapshots."""
    rng = random.Random(seed)
    tree = Tree([1, 2, 3], PROMPT)
    open_leaves = [0]
    while tree.size < size:
        leaf = open_leaves.pop(rng.randrange(len(open_leaves)) if rng.random() < 0.3 else -1)
        k = min(rng.randint(2, 4), size - tree.size)
        steps = [ChildStep((rng.randrange(300),), f"step {tree.size + i}: {rng.randint(1, 99)}+{rng.randint(1, 99)}.\n\n",
                           -rng.random(), rng.random(), StepEnd.DELIMITER) for i in range(k)]
        for child in tree.add_children(leaf, steps, [1.0 / k] * k):
            path = tree.path(child)
            tree.visits[path] += 1
            tree.value_sum[path] += tree.score[child]
            tree.terminal[child] = rng.random() < 0.15
            if not tree.terminal[child]:
                open_leaves.append(child)
        if tree.size // snapshot_every > len(tree.history):
            tree.snapshot()
    tree.chosen = max(tree.terminal_leaves(), key=lambda n: (int(tree.visits[n]), -n))
    return tree


@pytest.fixture(scope="module")
def search_tree(tiny_llama) -> Tree:
    from reflective_search import ReflectiveSearch

    return ReflectiveSearch(tiny_llama, SMALL_SEARCH).solve(PROMPT.strip()).tree


# -- networkx -------------------------------------------------------------------------


def test_networkx_node_carries_step_facts():
    graph = tree_to_networkx(fake_tree())
    assert graph.nodes[3] == {
        "text": "21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n", "score": 0.5, "visits": 1, "mean_value": 0.5,
        "value_max": 0.5, "prior": 1.0, "logprob": -0.25, "depth": 2, "terminal": True, "end": "eos",
        "num_tokens": 3, "answer": "7*3+8", "on_chosen_path": True,
    }
    assert graph.nodes[2]["mean_value"] == 0.25 and graph.nodes[2]["answer"] is None


def test_networkx_marks_the_chosen_path():
    graph = tree_to_networkx(fake_tree())
    assert {n: graph.nodes[n]["on_chosen_path"] for n in graph} == {0: True, 1: True, 2: False, 3: True}


def test_networkx_edges_run_parent_to_child_with_child_visits():
    graph = tree_to_networkx(fake_tree())
    assert sorted(graph.edges(data="visits")) == [(0, 1, 2), (0, 2, 1), (1, 3, 1)]
    assert graph.graph == {"chosen": 3, "prompt": PROMPT}


def test_terminal_answer_comes_from_the_whole_path():
    tree = fake_tree()
    tree.texts[3] = "Answer: 29.\n\n"
    tree.texts[1] = "Answer: 7.\n\n"  # a non-terminal step's own answer is its step text's
    graph = tree_to_networkx(tree)
    assert graph.nodes[3]["answer"] == "29" and graph.nodes[1]["answer"] == "7"


# -- JSON ----------------------------------------------------------------------------


def test_json_round_trip_of_a_search_tree_is_byte_identical(search_tree):
    text = tree_to_json(search_tree)
    assert search_tree.history, "the search recorded snapshots"
    assert tree_to_json(tree_from_json(text)) == text


def test_json_round_trip_restores_every_array_with_its_dtype(search_tree):
    loaded = tree_from_json(tree_to_json(search_tree))
    n = search_tree.size
    for name in NODE_ARRAYS:
        original, restored = getattr(search_tree, name)[:n], getattr(loaded, name)[:n]
        assert restored.dtype == original.dtype, name
        np.testing.assert_array_equal(restored, original, err_msg=name)
    np.testing.assert_array_equal(loaded.tokens[: loaded.num_tokens], search_tree.tokens[: search_tree.num_tokens])
    assert loaded.tokens.dtype == search_tree.tokens.dtype
    assert (loaded.size, loaded.chosen, loaded.texts, loaded.history) == (
        search_tree.size, search_tree.chosen, search_tree.texts, search_tree.history)


def test_loaded_tree_answers_queries_like_the_original():
    loaded = tree_from_json(tree_to_json(fake_tree()))
    assert loaded.path(3) == [0, 1, 3]
    assert loaded.node_tokens(3) == (13, 14, 15)
    assert loaded.response_text(3) == "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert list(loaded.children(0)) == [1, 2]


def test_loaded_tree_can_grow():
    loaded = tree_from_json(tree_to_json(fake_tree()))
    (new,) = loaded.add_children(2, [ChildStep((16,), "15*2=30.\n\n", -0.1, 0.4, StepEnd.DELIMITER)], [1.0])
    assert (new, loaded.node_tokens(new), loaded.depth[new]) == (4, (16,), 2)


def test_json_holds_a_versioned_schema_and_the_history_as_changes():
    payload = json.loads(tree_to_json(fake_tree()))
    assert (payload["schema"], payload["version"], payload["size"], payload["chosen"]) == ("reflective_search.tree", 2, 4, 3)
    assert payload["history"] == [
        {"round": 0, "size": 3, "changed": [0, 1, 2], "visits": [2, 1, 1], "value_sum": [1.05, 0.8, 0.25]},
        {"round": 1, "size": 4, "changed": [0, 1, 3], "visits": [3, 2, 1], "value_sum": [1.55, 1.3, 0.5]},
    ]


def test_history_is_restored_in_full():
    assert tree_from_json(tree_to_json(fake_tree())).history == fake_tree().history == [
        {"round": 0, "size": 3, "visits": [2, 1, 1], "value_sum": [1.05, 0.8, 0.25]},
        {"round": 1, "size": 4, "visits": [3, 2, 1, 1], "value_sum": [1.55, 1.3, 0.25, 0.5]},
    ]


def test_from_json_reads_a_path_and_text_alike(tmp_path):
    path = tmp_path / "tree.json"
    text = tree_to_json(fake_tree(), path)
    assert path.read_text(encoding="utf-8") == text
    assert tree_to_json(tree_from_json(path)) == tree_to_json(tree_from_json(str(path))) == text


def test_json_escapes_model_text_to_ascii():
    tree = fake_tree()
    tree.texts[2] = "\x11\u2028\ud800 é"
    text = tree_to_json(tree)
    assert text.isascii()
    assert tree_from_json(text).texts[2] == "\x11\u2028\ud800 é"


def _rewritten(tmp_path, change) -> str:
    payload = json.loads(tree_to_json(fake_tree()))
    change(payload)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return str(path)


def test_from_json_rejects_another_schema(tmp_path):
    path = _rewritten(tmp_path, lambda p: p.update(schema="something.else"))
    with pytest.raises(ReflectiveSearchError, match=r"edited\.json: not a search tree file \(schema 'something\.else'"):
        tree_from_json(path)


def test_from_json_rejects_a_newer_version(tmp_path):
    path = _rewritten(tmp_path, lambda p: p.update(version=3))
    with pytest.raises(ReflectiveSearchError, match=r"edited\.json: tree file version 3 is not supported"):
        tree_from_json(path)


def test_from_json_rejects_arrays_of_the_wrong_length(tmp_path):
    path = _rewritten(tmp_path, lambda p: p["arrays"]["visits"].pop())
    with pytest.raises(ReflectiveSearchError, match=r"edited\.json: malformed tree data \(a node array's length is not size=4\)"):
        tree_from_json(path)


def test_from_json_rejects_a_history_round_that_names_a_missing_node(tmp_path):
    path = _rewritten(tmp_path, lambda p: p["history"][0]["changed"].__setitem__(0, 9))
    with pytest.raises(ReflectiveSearchError, match=r"history round changes a node it lacks"):
        tree_from_json(path)


def test_from_json_rejects_text_that_is_not_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n"schema": "reflective_search.tree",\n"version": 1,,\n}', encoding="utf-8")
    with pytest.raises(ReflectiveSearchError, match=r"broken\.json: not valid JSON \(Expecting property name .* at line 3, column 14\)"):
        tree_from_json(path)


def test_from_json_names_a_missing_file(tmp_path):
    with pytest.raises(ReflectiveSearchError, match=r"absent\.json: no such tree file"):
        tree_from_json(tmp_path / "absent.json")


def test_from_json_errors_are_one_line(tmp_path):
    path = _rewritten(tmp_path, lambda p: p.pop("texts"))
    with pytest.raises(ReflectiveSearchError) as caught:
        tree_from_json(path)
    assert "\n" not in str(caught.value) and "lacks texts" in str(caught.value)


# -- DOT -----------------------------------------------------------------------------


def test_dot_draws_nodes_edges_and_the_chosen_path():
    lines = tree_to_dot(fake_tree()).splitlines()
    assert lines[0] == "digraph search_tree {" and lines[-1] == "}"
    assert '  n2 [label="8+7=15, left 3 15.\\nscore 0.250, visits 1", tooltip="8+7=15, left 3 15.\\n\\n", ' \
           'fillcolor="#ea8859"];' in lines
    assert '  n1 -> n3 [penwidth=3.31, color="#1f4e9c"];' in lines
    assert "  n0 -> n2 [penwidth=3.31];" in lines


def test_dot_escapes_quotes_backslashes_and_control_characters(tmp_path):
    tree = fake_tree()
    tree.texts[2] = 'say "hi" \\N\x07\n}'
    text = tree_to_dot(tree, tmp_path / "tree.dot")
    assert '  n2 [label="say \\"hi\\" \\\\N\u2407\\n}\\nscore 0.250, visits 1", tooltip="say \\"hi\\" \\\\N\u2407\\n}", ' \
           'fillcolor="#ea8859"];' in text.splitlines()
    assert (tmp_path / "tree.dot").read_text(encoding="utf-8") == text


# -- pictures -------------------------------------------------------------------------


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_png_is_written_at_the_requested_size(tmp_path):
    path = tmp_path / "tree.png"
    assert fake_tree().to_png(str(path), size=(800, 500)) == str(path)
    assert png_size(path) == (800, 500)


def test_svg_keeps_its_text_and_the_small_tree_caption(tmp_path):
    path = tmp_path / "tree.svg"
    fake_tree().to_svg(str(path), title="fake")
    svg = path.read_text(encoding="utf-8")
    assert svg.lstrip().startswith("<?xml") and "4 nodes \u00b7 chosen answer: 7*3+8" in svg


def test_big_tree_is_drawn_pruned_with_a_caption(tmp_path):
    path = tmp_path / "big.svg"
    synthetic_tree(5000, snapshot_every=10**9).to_svg(str(path))
    assert "showing 200 of 5,000 nodes, most visited" in path.read_text(encoding="utf-8")


def test_pruning_keeps_the_chosen_path_and_every_kept_nodes_parent():
    tree = synthetic_tree(1000, snapshot_every=10**9)
    kept = set(most_visited_nodes(tree, 50))
    assert len(kept) == 50
    assert set(tree.path(tree.chosen)) <= kept
    assert all(int(tree.parent[n]) in kept for n in kept if n != 0)


def test_pruning_keeps_the_most_visited_nodes():
    tree = fake_tree()
    tree.chosen = -1
    assert most_visited_nodes(tree, 3) == [0, 1, 2]  # visits 3, 2, then 1 (node 2 before node 3 by id)


def test_png_of_a_big_tree_is_written(tmp_path):
    path = tmp_path / "big.png"
    tree_to_image(synthetic_tree(2000, snapshot_every=10**9), path, size=(1200, 700))
    assert png_size(path) == (1200, 700)
