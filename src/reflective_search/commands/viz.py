"""``reflective-search viz TREE.json -o OUT.html``: turn a saved search tree into a picture.

The output's suffix picks the form: ``.html`` (the offline interactive viewer), ``.png``
or ``.svg`` (a static drawing), ``.dot`` (Graphviz text).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from reflective_search.commands import add_command, check_writable
from reflective_search.errors import ConfigError
from reflective_search.viz.png import MAX_NODES

OUTPUT_SUFFIXES = (".html", ".png", ".svg", ".dot")


def register(subparsers) -> None:
    parser = add_command(subparsers, "viz", "view a saved search tree (HTML viewer, PNG, SVG or DOT)",
                         "The output's suffix picks the form: .html the offline interactive viewer, .png or .svg "
                         "a static drawing, .dot Graphviz text.")
    parser.add_argument("tree", metavar="TREE.json", help="a tree written by solve --tree or Tree.to_json()")
    parser.add_argument("-o", "--output", metavar="OUT", help="output file; its suffix picks the form "
                        f"({', '.join(OUTPUT_SUFFIXES)}); default: TREE.html")
    parser.add_argument("--title", help="the viewer's title (default: the prompt's first line)")
    parser.add_argument("--max-nodes", type=int, default=MAX_NODES,
                        help=f"PNG/SVG: draw at most this many nodes (default {MAX_NODES})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reflective_search.tree import Tree

    output = Path(args.output) if args.output else Path(args.tree).with_suffix(".html")
    suffix = output.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(f"--output {output}: unknown kind {suffix or '(no suffix)'!r}; end it in one of "
                          f"{', '.join(OUTPUT_SUFFIXES)}")
    if args.max_nodes < 1:
        raise ConfigError(f"--max-nodes {args.max_nodes}: expected an integer >= 1")
    check_writable(output, "--output")
    tree = Tree.from_json(args.tree)
    if suffix == ".html":
        tree.to_html(str(output), title=args.title)
    elif suffix == ".dot":
        tree.to_dot(str(output))
    else:
        from reflective_search.viz.png import tree_to_image

        tree_to_image(tree, output, image_format=suffix[1:], max_nodes=args.max_nodes, title=args.title)
    print(f"wrote {output} ({tree.size} nodes)")
    return 0
