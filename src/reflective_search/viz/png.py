"""Static pictures of a tree with matplotlib (Agg): PNG or SVG, no Graphviz needed.

Layout is the same tidy left-to-right tree as the HTML viewer: depth along x, leaves on
consecutive rows in depth-first order, each parent centred on its children. Nodes are
coloured by SPRM score (red -> yellow -> green), edges are as wide as their visits, the
chosen path is blue. Trees larger than ``max_nodes`` are drawn pruned to their most
visited nodes (the chosen path is always kept, and every kept node's ancestors), and
the caption says so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

from reflective_search.tree import NO_NODE, ROOT, Tree
from reflective_search.viz.export import chosen_path, node_answer

MAX_NODES = 200  # larger trees are pruned to this many nodes, most visited first
LABEL_MIN_ROW_PX = 14  # step texts are written next to nodes only when rows are this tall
LABEL_MIN_COLUMN_PX = 130  # ... and depth columns this wide
LABEL_CHARS = 28
CHOSEN_COLOUR = "#1f4e9c"
# Control characters (bar newlines) shown as U+FFFD: matplotlib's DejaVu has no control pictures.
_UNPRINTABLE = {code: 0xFFFD for code in (*range(10), *range(11, 32), 0x7F)}
ROOT_COLOUR = "#4a5563"


def most_visited_nodes(tree: Tree, max_nodes: int = MAX_NODES) -> list[int]:
    """Up to ``max_nodes`` ids, closed under parents: the chosen path, then most visited."""
    if tree.size <= max_nodes:
        return list(range(tree.size))
    kept = {ROOT} | chosen_path(tree)
    for node in sorted(range(tree.size), key=lambda n: (-int(tree.visits[n]), n)):
        if len(kept) >= max_nodes:
            break
        missing = [n for n in tree.path(node) if n not in kept]
        if len(kept) + len(missing) <= max_nodes:
            kept.update(missing)
    return sorted(kept)


def tidy_layout(tree: Tree, nodes: Sequence[int]) -> dict[int, tuple[float, float]]:
    """(x, row) per node: x = depth, leaves on rows 0, 1, ... in depth-first order."""
    kept = set(nodes)
    children = {n: [c for c in tree.children(n) if c in kept] for n in nodes}
    position: dict[int, tuple[float, float]] = {}
    order, stack, row = [], [ROOT], 0
    while stack:  # pre-order: leaves meet their rows in left-to-right order
        node = stack.pop()
        order.append(node)
        if children[node]:
            stack.extend(reversed(children[node]))
        else:
            position[node] = (float(tree.depth[node]), float(row))
            row += 1
    for node in reversed(order):  # parents after their children
        if children[node]:
            first, last = position[children[node][0]][1], position[children[node][-1]][1]
            position[node] = (float(tree.depth[node]), (first + last) / 2)
    return position


def plain_text(text: str) -> str:
    """Text matplotlib shows as written: ``$`` would start mathtext."""
    return text.replace("$", r"\$")


def pruning_caption(shown: int, total: int) -> str:
    if shown < total:
        return f"showing {shown:,} of {total:,} nodes, most visited"
    return f"{total:,} nodes"


def draw_tree(ax, tree: Tree, *, max_nodes: int = MAX_NODES, title: str | None = None):
    """Draw ``tree`` on a matplotlib ``ax``; returns the score colour mapping (for a colorbar)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    nodes = most_visited_nodes(tree, max_nodes)
    position = tidy_layout(tree, nodes)
    mapping = ScalarMappable(Normalize(0.0, 1.0), colormaps["RdYlGn"])
    on_path = chosen_path(tree)
    _draw_edges(ax, tree, nodes, position, on_path)
    _draw_nodes(ax, tree, nodes, position, on_path, mapping)
    rows = max(y for _, y in position.values()) + 1
    columns = max(x for x, _ in position.values()) + 1
    labelled = _fits_labels(ax, rows, columns)
    if labelled:
        _draw_labels(ax, tree, nodes, position, on_path)
    ax.set_xlim(-0.3, columns - 1 + (0.9 if labelled else 0.3))
    ax.set_ylim(rows - 0.5, -0.5)  # first row at the top
    ax.axis("off")
    if title:
        ax.set_title(plain_text(title), fontsize=11, loc="left")
    ax.text(0.0, -0.01, _caption(tree, len(nodes)), transform=ax.transAxes,
            ha="left", va="top", fontsize=9, color="#5f6b7a")
    return mapping


def _fits_labels(ax, rows: float, columns: float) -> bool:
    """Step texts are written only where rows are tall and columns wide enough to read them."""
    box = ax.get_window_extent()
    return box.height / rows >= LABEL_MIN_ROW_PX and box.width / (columns + 0.6) >= LABEL_MIN_COLUMN_PX


def _caption(tree: Tree, shown: int) -> str:
    answer = node_answer(tree, tree.chosen) if tree.chosen != NO_NODE else None
    chosen = f" \u00b7 chosen answer: {plain_text(answer)}" if answer is not None else ""
    return pruning_caption(shown, tree.size) + chosen


def _draw_edges(ax, tree: Tree, nodes, position, on_path) -> None:
    from matplotlib.collections import LineCollection

    most = max(int(tree.visits[ROOT]), 1)
    edges = [n for n in nodes if n != ROOT]
    segments = [[position[int(tree.parent[n])], position[n]] for n in edges]
    widths = [0.6 + 5.0 * (int(tree.visits[n]) / most) ** 0.5 for n in edges]
    colours = [CHOSEN_COLOUR if n in on_path else "#aab3bf" for n in edges]
    ax.add_collection(LineCollection(segments, linewidths=widths, colors=colours, zorder=1))


def _draw_nodes(ax, tree: Tree, nodes, position, on_path, mapping) -> None:
    size = min(160.0, max(14.0, 4000.0 / len(nodes)))
    for marker, group in (("o", [n for n in nodes if not tree.terminal[n]]), ("s", [n for n in nodes if tree.terminal[n]])):
        steps = [n for n in group if n != ROOT]
        if steps:
            ax.scatter([position[n][0] for n in steps], [position[n][1] for n in steps], s=size, marker=marker,
                       c=[mapping.to_rgba(float(tree.score[n])) for n in steps], zorder=2,
                       edgecolors=[CHOSEN_COLOUR if n in on_path else "#56606e" for n in steps],
                       linewidths=[2.0 if n in on_path else 0.5 for n in steps])
    ax.scatter([position[ROOT][0]], [position[ROOT][1]], s=size, marker="s", c=ROOT_COLOUR, zorder=2)
    if tree.chosen != NO_NODE and tree.chosen in position:
        x, y = position[tree.chosen]
        ax.scatter([x], [y], s=size * 3.2, marker="o", facecolors="none", edgecolors=CHOSEN_COLOUR, linewidths=1.5, zorder=3)


def _draw_labels(ax, tree: Tree, nodes, position, on_path) -> None:
    """Leaves: text to the right. Inner nodes: text above, clear of their outgoing edges."""
    from matplotlib import patheffects

    halo = [patheffects.withStroke(linewidth=3, foreground="white")]
    kept = set(nodes)
    for node in nodes:
        text = " ".join(tree.texts[node].replace("\t", " ").translate(_UNPRINTABLE).split())
        short = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "\u2026"
        inner = any(child in kept for child in tree.children(node))
        ax.annotate(plain_text(short) or "(empty)", position[node], xytext=(0, 8) if inner else (8, 0),
                    textcoords="offset points", ha="center" if inner else "left", va="bottom" if inner else "center",
                    fontsize=7, color=CHOSEN_COLOUR if node in on_path else "#3b4553", zorder=4,
                    path_effects=halo, annotation_clip=False)


def add_legend(figure, mapping) -> None:
    """A score colour bar and a key to the marks, in the figure's right margin."""
    from matplotlib.lines import Line2D

    colourbar = figure.colorbar(mapping, cax=figure.add_axes((0.91, 0.42, 0.015, 0.45)))
    colourbar.set_label("SPRM step score")
    key = [
        Line2D([], [], marker="o", linestyle="", markerfacecolor="#fee08b", markeredgecolor="#56606e", label="step"),
        Line2D([], [], marker="s", linestyle="", markerfacecolor="#fee08b", markeredgecolor="#56606e", label="terminal"),
        Line2D([], [], color=CHOSEN_COLOUR, linewidth=2.5, label="chosen path"),
        Line2D([], [], color="#aab3bf", linewidth=4, label="width: visits"),
    ]
    figure.legend(handles=key, loc="lower right", bbox_to_anchor=(0.995, 0.08), fontsize=8, frameon=False)


def tree_to_image(tree: Tree, path: str | Path, *, title: str | None = None, **options) -> str:
    """Draw ``tree`` into a PNG or SVG file; returns the path. Options: see ``trees_to_image``."""
    return trees_to_image([tree], path, titles=[title], **options)


def trees_to_image(trees: Sequence[Tree], path: str | Path, *, titles: Sequence[str | None] | None = None,
                   image_format: str | None = None, max_nodes: int = MAX_NODES,
                   size: tuple[int, int] = (1600, 1000), dpi: int = 100) -> str:
    """Draw trees side by side (e.g. two methods on one problem) into one image; returns the path.

    Args:
        size: (width, height) of the whole image in pixels.
        image_format: "png" or "svg"; by default the file's suffix. SVG text stays text.
        max_nodes: each tree is pruned to this many nodes, most visited first.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    titles = list(titles) if titles is not None else [None] * len(trees)
    with matplotlib.rc_context({"svg.fonttype": "none"}), warnings.catch_warnings():
        # Model text holds characters DejaVu lacks; matplotlib would warn once per glyph.
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        # A bare Figure on the Agg canvas: no pyplot, so no global backend or figure registry.
        figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
        FigureCanvasAgg(figure)
        panel = 0.86 / len(trees)
        for index, (tree, title) in enumerate(zip(trees, titles, strict=True)):
            ax = figure.add_axes((0.02 + panel * index, 0.05, panel - 0.02, 0.89))
            mapping = draw_tree(ax, tree, max_nodes=max_nodes, title=title)
        add_legend(figure, mapping)
        figure.savefig(path, format=image_format, dpi=dpi)
    return str(path)
