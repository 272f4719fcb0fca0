"""Every command's --help is terminal text: a plain description, no docstring markup."""

from __future__ import annotations

import argparse
import re

import pytest

from reflective_search.cli import build_parser, main

COMMANDS = [(), ("solve",), ("run",), ("report",), ("train",), ("train", "policy"), ("train", "sprm"), ("evaluate",),
            ("evaluate", "calibrate"), ("evaluate", "heads"), ("evaluate", "search"), ("viz",), ("serve",)]


def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command reachable from ``parser``, parents before their subcommands."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


def printed_help(capsys, *command: str) -> str:
    """``reflective-search COMMAND --help`` through the real command line: what it prints."""
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def description(text: str) -> str:
    """The paragraph argparse prints between the usage and the argument lists, unwrapped."""
    paragraphs = text.split("\n\n")
    assert paragraphs[0].startswith("usage: reflective-search")
    return " ".join(paragraphs[1].split())


def test_the_list_covers_every_command():
    assert command_paths(build_parser()) == COMMANDS


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "reflective-search")
def test_help_is_a_plain_description_without_markup(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = printed_help(capsys, *command)
    assert "`" not in text and ":class:" not in text and ":func:" not in text
    summary = description(text)
    assert re.fullmatch(r"[A-Z][^`\n]+\.", summary), summary  # a sentence: a capital, a full stop


def test_top_level_help_says_what_the_program_does(capsys):
    assert description(printed_help(capsys)) == (
        "Test-time search over a language model's reasoning steps, guided by a process reward head on the same "
        "backbone.")


def test_a_subcommand_help_opens_with_its_summary_line(capsys):
    assert description(printed_help(capsys, "solve")) == (
        "Solve one problem with search. Prints the answer, its score and the compute spent; for a Countdown "
        "problem, also whether the answer reaches the target.")
