"""Trees out of (and back into) memory: versioned JSON, networkx graphs, Graphviz DOT.

The JSON schema (``{"schema": "reflective_search.tree", "version": 2, ...}``) holds every
node array of the tree trimmed to ``size`` (``"arrays"``: name -> list), the flat token
array, the texts, the chosen leaf and the round snapshots (``"history"``, stored as
per-round changes: see ``history_deltas``), so a search can be reloaded, inspected and
replayed exactly: JSON -> tree -> JSON is byte-identical. Arrays are read back with the
dtypes the ``Tree`` itself allocates (the numba kernels depend on them). Version 1 files
(written before the ``scored`` array existed, when every step's score counted) still load.

A node's *answer* (in networkx, DOT and the viewers) is the answer its trajectory states:
for a terminal node, ``extract_answer`` of the whole path's response (that is what the
search would return if it chose this leaf); for any other node, ``extract_answer`` of its
own step text (normally None, since a step that states an answer ends its path).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from reflective_search.answers import extract_answer
from reflective_search.errors import ReflectiveSearchError
from reflective_search.interface import StepEnd
from reflective_search.tree import NODE_ARRAYS  # the arrays a Tree grows per node
from reflective_search.tree import NO_NODE, NO_PARENT, ROOT, Tree

SCHEMA = "reflective_search.tree"
VERSION = 2  # 2: the per-node "scored" array (version 1 files load with every score counted)
READABLE_VERSIONS = (1, VERSION)
_TOP_KEYS = ("schema", "version", "size", "num_tokens", "chosen", "arrays", "tokens", "texts", "history")


class TreeFileError(ReflectiveSearchError):
    """A tree file cannot be read (not JSON, wrong schema or version, inconsistent arrays)."""


# -- JSON ---------------------------------------------------------------------------


def tree_to_json(tree: Tree, path: str | Path | None = None) -> str:
    """The tree as schema-versioned JSON text; also written to ``path`` when given."""
    size, num_tokens = tree.size, tree.num_tokens
    payload = {
        "schema": SCHEMA,
        "version": VERSION,
        "size": size,
        "num_tokens": num_tokens,
        "chosen": int(tree.chosen),
        "arrays": {name: getattr(tree, name)[:size].tolist() for name in NODE_ARRAYS},
        "tokens": tree.tokens[:num_tokens].tolist(),
        "texts": list(tree.texts[:size]),
        "history": history_deltas(tree.history),
    }
    text = _dump(payload)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _dump(payload: dict) -> str:
    """One top-level key (and one array) per line: diffable, and small enough to read."""
    def encode(value: Any) -> str:  # ASCII: control characters and lone surrogates stay \u escapes
        return json.dumps(value, ensure_ascii=True, separators=(",", ":"))

    arrays = ",\n".join(f"  {encode(name)}: {encode(values)}" for name, values in payload["arrays"].items())
    lines = [
        f"{encode(key)}: {{\n{arrays}\n}}" if key == "arrays" else f"{encode(key)}: {encode(value)}"
        for key, value in payload.items()
    ]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def tree_from_json(source: str | Path) -> Tree:
    """A ``Tree`` from JSON text or from the path of a file holding it."""
    text, origin = _read_source(source)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TreeFileError(f"{origin}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    _check_header(payload, origin)
    try:
        return _build_tree(payload)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise TreeFileError(f"{origin}: malformed tree data ({_describe(exc)}); write it again with tree.to_json()") from None


def _read_source(source: str | Path) -> tuple[str, str]:
    """(JSON text, how to name it in errors)."""
    if isinstance(source, str) and source.lstrip().startswith("{"):
        return source, "tree JSON text"
    path = Path(source)
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        raise TreeFileError(f"{path}: no such tree file; write one with tree.to_json(path) or solve --tree") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TreeFileError(f"{path}: cannot be read as a UTF-8 tree file ({_describe(exc)})") from None


def _check_header(payload: Any, origin: str) -> None:
    if not isinstance(payload, dict) or payload.get("schema") != SCHEMA:
        found = payload.get("schema") if isinstance(payload, dict) else type(payload).__name__
        raise TreeFileError(f"{origin}: not a search tree file (schema {found!r}, expected {SCHEMA!r})")
    if payload.get("version") not in READABLE_VERSIONS:
        raise TreeFileError(
            f"{origin}: tree file version {payload.get('version')!r} is not supported (this library reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}); upgrade reflective_search or re-export the tree"
        )
    missing = [key for key in _TOP_KEYS if key not in payload]
    if missing:
        raise TreeFileError(f"{origin}: tree file lacks {', '.join(missing)}; write it again with tree.to_json()")


def _build_tree(payload: dict) -> Tree:
    size, num_tokens = int(payload["size"]), int(payload["num_tokens"])
    texts, arrays = payload["texts"], payload["arrays"]
    if payload["version"] == 1 and isinstance(arrays, dict):
        arrays = {**arrays, "scored": [True] * size}  # before the scoring rule, every score counted
    _expect(size >= 1 and len(texts) == size, f"{len(texts)} texts for {size} nodes")
    _expect(isinstance(arrays, dict) and set(arrays) == set(NODE_ARRAYS), "the node arrays are not the expected set")
    _expect(all(len(arrays[name]) == size for name in NODE_ARRAYS), f"a node array's length is not size={size}")
    _expect(len(payload["tokens"]) == num_tokens, f"{len(payload['tokens'])} tokens for num_tokens={num_tokens}")
    tree = Tree((), str(texts[0]), capacity=size)  # allocates every node array with its own dtype
    for name in NODE_ARRAYS:
        target = getattr(tree, name)
        target[:size] = np.asarray(arrays[name], dtype=target.dtype)
    tree.tokens = np.asarray(payload["tokens"], dtype=tree.tokens.dtype).reshape(num_tokens)
    tree.size, tree.num_tokens = size, num_tokens
    tree.texts = [str(t) for t in texts]
    tree.chosen = int(payload["chosen"])
    tree.history = history_from_deltas(payload["history"], size)
    _check_structure(tree)
    return tree


def _check_structure(tree: Tree) -> None:
    """Invariants the queries rely on: parents precede children, each node's children are the
    consecutive ids its parent's range names, depths count steps, token slices in range."""
    n = tree.size
    ids, parent = np.arange(n), tree.parent[:n]
    _expect(parent[ROOT] == NO_PARENT and bool(np.all(parent[1:] < ids[1:])) and bool(np.all(parent[1:] >= 0)),
            "a parent id does not precede its child")
    _check_child_ranges(tree.first_child[:n], tree.num_children[:n], parent)
    _expect(tree.depth[ROOT] == 0 and bool(np.all(tree.depth[1:n] == tree.depth[parent[1:]] + 1)),
            "a depth is not its parent's depth + 1")
    start, length = tree.token_start[:n], tree.token_len[:n]
    _expect(bool(np.all(start >= 0) and np.all(length >= 0) and np.all(start + length <= tree.num_tokens)),
            "a token slice is out of range")
    _expect(bool(np.isin(tree.end[:n], [int(end) for end in StepEnd]).all()), "a step end is not a StepEnd value")
    _expect(tree.chosen == NO_NODE or 0 <= tree.chosen < n, f"chosen={tree.chosen} is not a node id")


def _check_child_ranges(first_child: np.ndarray, num_children: np.ndarray, parent: np.ndarray) -> None:
    """Children are added in one call each, so the parents' ranges, in order, tile ids 1..n-1."""
    _expect(bool(np.all(num_children >= 0) and np.all(first_child[num_children == 0] == NO_NODE)),
            "a node without children names a first child")
    expanded = np.flatnonzero(num_children > 0)
    expanded = expanded[np.argsort(first_child[expanded], kind="stable")]
    counts = num_children[expanded].astype(np.int64)
    starts = 1 + np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    _expect(counts.sum() == len(parent) - 1 and bool(np.all(first_child[expanded] == starts)) and
            bool(np.all(np.repeat(expanded, counts) == parent[1:])), "a node's children are not the ids its range names")


def _expect(ok: bool, problem: str) -> None:
    if not ok:
        raise ValueError(problem)


def _describe(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# -- round snapshots as changes ----------------------------------------------------------
# ``tree.history[r]`` holds every node's visits and value sum after round r: nodes x rounds
# numbers in all. Files store each round as the nodes that changed since the round before
# ("changed", with their new "visits" and "value_sum"), which is proportional to the work
# the search did; reading rebuilds the full snapshots exactly.

_SNAPSHOT_ARRAYS = ("visits", "value_sum")


def history_deltas(history: list[dict]) -> list[dict]:
    """Full snapshots -> per-round changes (other snapshot keys are kept as they are)."""
    deltas, before = [], {name: np.zeros(0) for name in _SNAPSHOT_ARRAYS}
    for snap in history:
        now = {name: np.asarray(snap[name], dtype=np.float64) for name in _SNAPSHOT_ARRAYS}
        moved = np.zeros(int(snap["size"]), dtype=bool)
        for name in _SNAPSHOT_ARRAYS:
            moved |= now[name] != _resized(before[name], len(moved))
        changed = np.flatnonzero(moved).tolist()
        delta = {key: value for key, value in snap.items() if key not in _SNAPSHOT_ARRAYS}
        delta["changed"] = changed
        delta.update({name: [snap[name][i] for i in changed] for name in _SNAPSHOT_ARRAYS})
        deltas.append(delta)
        before = now
    return deltas


def history_from_deltas(deltas: Any, size: int) -> list[dict]:
    """Per-round changes -> full snapshots, as ``Tree.snapshot`` writes them."""
    _expect(isinstance(deltas, list), "history is not a list")
    history, current = [], {"visits": [], "value_sum": []}
    zero = {"visits": 0, "value_sum": 0.0}
    for delta in deltas:
        _expect(isinstance(delta, dict) and isinstance(delta.get("size"), int) and 0 < delta["size"] <= size,
                "a history round has no valid size")
        rows = delta["size"]
        changed = delta["changed"]
        _expect(all(isinstance(i, int) and 0 <= i < rows for i in changed), "a history round changes a node it lacks")
        snap = {key: value for key, value in delta.items() if key != "changed" and key not in _SNAPSHOT_ARRAYS}
        for name in _SNAPSHOT_ARRAYS:
            values = (current[name] + [zero[name]] * rows)[:rows]
            _expect(len(delta[name]) == len(changed), f"history {name} does not match its changed nodes")
            _expect(all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in delta[name]),
                    f"history {name} holds a value that is not a number")
            for node, value in zip(changed, delta[name]):
                values[node] = value
            current[name] = snap[name] = values
        history.append(snap)
    return history


def _resized(values: np.ndarray, length: int) -> np.ndarray:
    out = np.zeros(length)
    out[: min(length, len(values))] = values[:length]
    return out


# -- per-node facts shared by networkx, DOT and the viewers ---------------------------


def chosen_path(tree: Tree) -> set[int]:
    """Node ids on the path root..tree.chosen (empty when nothing was chosen)."""
    return set(tree.path(tree.chosen)) if tree.chosen != NO_NODE else set()


def node_answer(tree: Tree, node: int) -> str | None:
    """The answer a node's trajectory states (see the module docstring)."""
    if tree.terminal[node] and node != ROOT:
        return extract_answer(tree.response_text(node))
    return extract_answer(tree.texts[node]) if node != ROOT else None


def node_attributes(tree: Tree, node: int, on_chosen_path: bool) -> dict[str, Any]:
    """Everything a viewer shows about one node, as plain Python values."""
    return {
        "text": tree.texts[node],
        "score": float(tree.score[node]),
        "visits": int(tree.visits[node]),
        "mean_value": tree.mean_value(node),
        "value_max": float(tree.value_max[node]),
        "prior": float(tree.prior[node]),
        "logprob": float(tree.logprob[node]),
        "depth": int(tree.depth[node]),
        "terminal": bool(tree.terminal[node]),
        "end": StepEnd(int(tree.end[node])).name.lower(),
        "num_tokens": int(tree.token_len[node]),
        "answer": node_answer(tree, node),
        "on_chosen_path": on_chosen_path,
    }


# -- networkx -------------------------------------------------------------------------


def tree_to_networkx(tree: Tree):
    """A ``networkx.DiGraph``: node ids as in the tree, edges parent -> child.

    Node attributes: see ``node_attributes``. Edge attribute ``visits``: the child's
    visits (how often search went down that edge). Graph attributes: ``chosen``, ``prompt``.
    """
    import networkx as nx

    graph = nx.DiGraph(chosen=int(tree.chosen), prompt=tree.texts[ROOT])
    on_path = chosen_path(tree)
    for node in range(tree.size):
        graph.add_node(node, **node_attributes(tree, node, node in on_path))
        if node != ROOT:
            graph.add_edge(int(tree.parent[node]), node, visits=int(tree.visits[node]))
    return graph


# -- Graphviz DOT ---------------------------------------------------------------------

DOT_LABEL_CHARS = 40  # step text shown in a DOT node label (the full text is its tooltip)


def score_colour(score: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1) as ``#rrggbb``; grey for a score that is not a number."""
    if not math.isfinite(score):
        return "#9e9e9e"
    s = min(max(score, 0.0), 1.0)
    low, mid, high = (215, 48, 39), (254, 224, 139), (26, 152, 80)  # ColorBrewer RdYlGn ends and middle
    a, b, t = (low, mid, 2 * s) if s < 0.5 else (mid, high, 2 * s - 1)
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def visible_text(text: str) -> str:
    """Control characters (other than newline and tab) as their visible symbols (U+2400 block).

    Random or half-trained policies emit them; shown raw they vanish or break renderers.
    """
    return text.translate(_CONTROL_PICTURES)


_CONTROL_PICTURES = {code: 0x2400 + code for code in range(32) if chr(code) not in "\n\t"} | {0x7F: 0x2421}


def dot_escape(text: str) -> str:
    """Text for a DOT double-quoted string, shown literally (no \\N-style expansion)."""
    out = visible_text(text.replace("\r\n", "\n")).replace("\\", "\\\\").replace('"', '\\"')
    return out.replace("\n", "\\n").replace("\t", " ")


def tree_to_dot(tree: Tree, path: str | Path | None = None) -> str:
    """Graphviz DOT text: nodes filled by SPRM score, edges as wide as their visits, the
    chosen path drawn bold in blue. Also written to ``path`` when given."""
    on_path = chosen_path(tree)
    most_visits = max(int(tree.visits[ROOT]), 1)
    lines = ["digraph search_tree {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontsize=10];']
    for node in range(tree.size):
        lines.append(f"  n{node} [{_dot_node_attributes(tree, node, node in on_path)}];")
    for node in range(1, tree.size):
        width = 1 + 4 * math.sqrt(int(tree.visits[node]) / most_visits)
        style = ', color="#1f4e9c"' if node in on_path else ""
        lines.append(f"  n{int(tree.parent[node])} -> n{node} [penwidth={width:.2f}{style}];")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _dot_node_attributes(tree: Tree, node: int, on_path: bool) -> str:
    text = tree.texts[node]
    short = text if len(text) <= DOT_LABEL_CHARS else text[: DOT_LABEL_CHARS - 1] + "\u2026"
    label = f"{short.strip() or '(empty)'}\nscore {tree.score[node]:.3f}, visits {int(tree.visits[node])}"
    fill = "#ffffff" if node == ROOT else score_colour(float(tree.score[node]))
    parts = [f'label="{dot_escape(label)}"', f'tooltip="{dot_escape(text)}"', f'fillcolor="{fill}"']
    if on_path:
        parts.append('color="#1f4e9c", penwidth=2.5')
    return ", ".join(parts)
