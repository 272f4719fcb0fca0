"""Looking at a search: tree export (JSON, networkx, DOT), an offline HTML viewer, pictures.

Nothing here imports matplotlib or networkx until a function that needs it runs.
"""

from reflective_search.viz.export import TreeFileError, tree_from_json, tree_to_dot, tree_to_json, tree_to_networkx
from reflective_search.viz.html import render_html, tree_to_html
from reflective_search.viz.png import draw_tree, tree_to_image, trees_to_image

__all__ = [
    "TreeFileError",
    "draw_tree",
    "render_html",
    "tree_from_json",
    "tree_to_dot",
    "tree_to_html",
    "tree_to_image",
    "tree_to_json",
    "tree_to_networkx",
    "trees_to_image",
]
