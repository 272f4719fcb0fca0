"""The ``reflective-search`` command line.

Each subcommand lives in its own module with a ``register(subparsers)`` function that
adds its parser and sets ``func``; this file only dispatches. Errors of our own kind are
printed as one line (no traceback) with exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from reflective_search.errors import ReflectiveSearchError

DESCRIPTION = ("Test-time search over a language model's reasoning steps, guided by a process reward head "
               "on the same backbone.")  # terminal text, so plain (the docstring above is rST)
COMMAND_MODULES = (
    "reflective_search.commands.solve",
    "reflective_search.commands.run",
    "reflective_search.commands.report",
    "reflective_search.commands.train",
    "reflective_search.commands.evaluate",
    "reflective_search.commands.viz",
    "reflective_search.commands.serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reflective-search", description=DESCRIPTION)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # the command as given, for what it saves (a model card quotes it)
    try:
        return int(args.func(args) or 0)
    except ReflectiveSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
