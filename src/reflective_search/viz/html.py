"""The offline interactive viewer: one self-contained HTML file per tree.

Everything is inline (script, style, data); the page fetches nothing, and its Content
Security Policy forbids it to. The tree travels as JSON inside
``<script type="application/json">``, with ``<``, ``>``, ``&``, U+2028/2029 and lone
surrogates written as ``\\uXXXX`` escapes so no model text can end the script element;
the page shows model text only through ``textContent`` and canvas ``fillText``.

Round snapshots travel as per-round changes, as in the tree JSON files.

Once drawn, the page states on ``<body>``: ``data-rendered-nodes`` (nodes that exist in
the shown round and are not folded away: all of them by default, nothing is folded at
load), ``data-total-nodes``, ``data-render-ms`` (parse, layout and first draw),
``data-fetched-resources`` (0), and after interaction ``data-selected``, ``data-round``,
``data-search-matches``. The URL fragment sets a view, e.g.
``tree.html#node=12&round=3&fold=4,7&search=left&colour=range``.
"""

from __future__ import annotations

import html
import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Any

from reflective_search.interface import StepEnd
from reflective_search.tree import ROOT, Tree
from reflective_search.viz.export import history_deltas, node_answer

_PLACEHOLDER = re.compile(r"@@(TITLE|STYLE|SCRIPT|DATA)@@")
_SCRIPT_UNSAFE = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
TITLE_CHARS = 120  # the page title: the prompt's first line, cut here


def tree_to_html(tree: Tree, path: str | Path, title: str | None = None) -> str:
    """Write the viewer for ``tree`` to ``path``; returns the path as a string."""
    Path(path).write_text(render_html(tree, title), encoding="utf-8")
    return str(path)


def render_html(tree: Tree, title: str | None = None) -> str:
    """The viewer page as text. ``title`` defaults to the prompt's first line."""
    title = title if title is not None else _default_title(tree)
    parts = {
        "TITLE": html.escape(title),
        "STYLE": _asset("viewer.css"),
        "SCRIPT": _asset("viewer.js"),
        "DATA": script_json(viewer_data(tree, title)),
    }
    # One pass: inserted text (model text included) is never searched for placeholders.
    return _PLACEHOLDER.sub(lambda match: parts[match.group(1)], _asset("viewer.html"))


def script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element and still parses to ``value``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return _SCRIPT_UNSAFE.sub(lambda match: f"\\u{ord(match.group(0)):04x}", text)


def viewer_data(tree: Tree, title: str) -> dict[str, Any]:
    """What the page reads: columnar node arrays, texts, answers and replay deltas."""
    n = tree.size
    return {
        "title": title,
        "chosen": int(tree.chosen),
        "parent": tree.parent[:n].tolist(),
        "score": _floats(tree.score[:n], 4),
        "visits": tree.visits[:n].tolist(),
        "value_sum": _floats(tree.value_sum[:n], 6),
        "value_max": _floats(tree.value_max[:n], 4),
        "prior": _floats(tree.prior[:n], 4),
        "logprob": _floats(tree.logprob[:n], 3),
        "terminal": tree.terminal[:n].astype(int).tolist(),
        "end": tree.end[:n].tolist(),
        "end_names": [end.name.lower() for end in StepEnd],
        "num_tokens": tree.token_len[:n].tolist(),
        "text": list(tree.texts[:n]),
        "answer": [node_answer(tree, node) for node in range(n)],
        "history": _replay(tree.history),
    }


def _replay(history: list[dict]) -> list[dict]:
    """Per-round changes (see ``export.history_deltas``), with JSON-safe numbers."""
    return [{
        "size": delta["size"],
        "changed": delta["changed"],
        "visits": delta["visits"],
        "value_sum": [_finite(float(v), 6) for v in delta["value_sum"]],
    } for delta in history_deltas(history)]


def _floats(values, digits: int) -> list[float | None]:
    return [_finite(v, digits) for v in values.tolist()]


def _finite(value: float, digits: int) -> float | None:
    """Rounded for size; NaN and infinities become null (JSON has no such numbers)."""
    return round(value, digits) if math.isfinite(value) else None


def _default_title(tree: Tree) -> str:
    first = next((line.strip() for line in tree.texts[ROOT].splitlines() if line.strip()), "search tree")
    return first if len(first) <= TITLE_CHARS else first[: TITLE_CHARS - 1] + "\u2026"


def _asset(name: str) -> str:
    return resources.files("reflective_search.viz").joinpath("assets", name).read_text(encoding="utf-8")
