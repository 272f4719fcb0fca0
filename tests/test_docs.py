"""The README, docs and model cards say what the code does: their links resolve, their
commands parse with the real command line, the configuration reference equals the code, and
every shipped model folder holds a complete card and no machine's absolute path."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import re
import shlex
import struct
from pathlib import Path

import pytest
import yaml

from reflective_search import config as config_module
from reflective_search.cli import build_parser
from reflective_search.config import SearchConfig, flatten, to_dict
from reflective_search.config_doc import BEGIN, END, generate, main, sections
from reflective_search.shipped import SHIPPED_DIR, shipped_model_names

REPO = Path(__file__).resolve().parents[1]
PAGES = sorted([REPO / "README.md", REPO / "CHANGELOG.md", *(REPO / "docs").rglob("*.md"),
                *SHIPPED_DIR.glob("*/README.md")])
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
INLINE_CODE = re.compile(r"`[^`\n]+`")
INLINE_COMMAND = re.compile(r"`(reflective-search [^`]+)`")  # may wrap across lines
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")
ABSOLUTE_PATHS = ("/root", "/home", "/tmp", "/Users", "C:\\")
CARD_SECTIONS = ("## Base", "## Task", "## Data", "## Recipe", "## Held-out results", "## Size", "## Licence")


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO))


def prose(text: str) -> str:
    """``text`` without fenced code blocks and inline code (where a link is not a link)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings (lower case, punctuation dropped, spaces to -)."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", text), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
        seen[slug] = seen.get(slug, 0) + 1
    return anchors


def broken_links(page: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in LINK.findall(prose(text)):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in github_anchors(resolved.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor")
    return broken


def shell_lines(text: str) -> list[str]:
    """Every logical line of the page's shell code blocks, ``\\`` continuations joined."""
    lines = []
    for language, body in FENCE.findall(text):
        if language in SHELL_LANGUAGES:
            lines += body.replace("\\\n", " ").splitlines()
    return lines


def quoted_commands(page: Path) -> list[list[str]]:
    """The arguments of every ``reflective-search ...`` command the page quotes, in a code block or inline."""
    text = page.read_text(encoding="utf-8")
    spans = [span.split() for span in INLINE_COMMAND.findall(FENCE.sub("", text))]
    inline = [" ".join(words) for words in spans if len(words) >= 3]  # not a bare `reflective-search run`
    commands = []
    for line in shell_lines(text) + inline:
        if "reflective-search" not in line:
            continue
        words = shlex.split(line, comments=True)
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word in ("&&", "||", ";", "|"):
                if segment and segment[0].endswith("reflective-search"):
                    commands.append(segment[1:])
                segment = []
            else:
                segment.append(word)
    return commands


def parse_error(parser: argparse.ArgumentParser, arguments: list[str]) -> str | None:
    """What argparse says about ``arguments`` (None: they parse); nothing is run."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(arguments)
    except SystemExit as exited:
        return None if exited.code == 0 else stderr.getvalue().strip().splitlines()[-1]  # 0: --help
    return None


COMMANDS = [(page_id(page), arguments) for page in PAGES for arguments in quoted_commands(page)]


def test_the_docs_pages_are_found_and_quote_commands():
    assert {"README.md", "docs/configuration.md", "docs/results/countdown-smol.md"} <= {page_id(p) for p in PAGES}
    assert len(COMMANDS) >= 40
    assert {arguments[0] for _, arguments in COMMANDS} == {"solve", "run", "report", "train", "evaluate", "viz", "serve"}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_a_broken_link_and_a_missing_anchor_are_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## The `mcts` section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#the-mcts-section) [b](missing.md) [c](other.md#nowhere) "
                    "`[d](ignored.md)` [e](https://example.com)\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading with that anchor"]


@pytest.mark.parametrize("page, arguments", COMMANDS, ids=[f"{p}: {' '.join(a)[:60]}" for p, a in COMMANDS])
def test_every_quoted_command_parses_with_the_real_command_line(page, arguments):
    assert parse_error(build_parser(), arguments) is None


def test_a_command_the_cli_lacks_is_caught():
    assert "unrecognized arguments: --widht" in parse_error(build_parser(), ["solve", "x", "--widht", "2"])
    assert "invalid choice" in parse_error(build_parser(), ["evaluate", "searc"])


def test_commands_are_read_across_continuations_chains_and_comments(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\n.venv/bin/pip install x && .venv/bin/reflective-search solve \"a b\"   # note\n"
                    "reflective-search run c.yaml \\\n    k=v && reflective-search report runs/c\n```\n",
                    encoding="utf-8")
    assert quoted_commands(page) == [["solve", "a b"], ["run", "c.yaml", "k=v"], ["report", "runs/c"]]


def test_the_readme_quotes_ci_test_command_word_for_word():
    command = (REPO / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert command in shell_lines((REPO / "README.md").read_text(encoding="utf-8"))
    assert command in shell_lines((REPO / "docs" / "getting-started.md").read_text(encoding="utf-8"))


# -- the configuration reference ---------------------------------------------------------------


def generated_block(page: str) -> str:
    start, end = page.index(BEGIN), page.index(END)
    return page[start:end + len(END)]


def test_the_configuration_page_holds_exactly_the_generated_reference():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert generated_block(page) == generate(), (
        "docs/configuration.md is out of date: run python -m reflective_search.config_doc --write docs/configuration.md")


def test_write_replaces_only_the_generated_block(tmp_path):
    page = tmp_path / "configuration.md"
    page.write_text(f"# Intro\n\n{BEGIN}\nstale\n{END}\n\nAfter.\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == f"# Intro\n\n{generate()}\n\nAfter.\n"


def test_write_refuses_a_page_without_markers_in_one_line(tmp_path, capsys):
    page = tmp_path / "configuration.md"
    page.write_text("# Intro\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 2
    assert capsys.readouterr().err == (f"error: {page}: the page has no generated block: add the lines {BEGIN!r} "
                                       f"and {END!r}\n")
    assert page.read_text(encoding="utf-8") == "# Intro\n"


def test_every_config_dataclass_has_a_section():
    defined = {cls for cls in vars(config_module).values()
               if dataclasses.is_dataclass(cls) and cls.__module__ == config_module.__name__}
    documented = {section.cls for _, part in sections() for section in part}
    assert defined <= documented


def test_every_search_key_and_default_is_in_the_page():
    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    for key, default in flatten(to_dict(SearchConfig())).items():
        rendered = "null" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
        assert f"| `{key}` | `{rendered}` |" in page, key


def search_keys() -> set[str]:
    """Every dotted search key, sections included (``mcts``, ``mcts.gumbel``, ``mcts.gumbel.scale``)."""
    keys = set()
    for key in flatten(to_dict(SearchConfig())):
        parts = key.split(".")
        keys |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
    return keys


def named_search_keys(text: str) -> set[str]:
    """Dotted search keys the page names in inline code (`mcts.children`, `mcts.root: gumbel`)."""
    defaults = SearchConfig()
    sections_ = {f.name for f in dataclasses.fields(SearchConfig) if dataclasses.is_dataclass(getattr(defaults, f.name))}
    named = set()
    for span in INLINE_CODE.findall(FENCE.sub("", text)):
        word = re.split(r"[:= ,]", span.strip("`"))[0].removeprefix("search.")
        is_file = re.search(r"\.(yaml|yml|jsonl?|md|py|png)$", word)
        if "." in word and word.split(".")[0] in sections_ and re.fullmatch(r"[a-z_.]+", word) and not is_file:
            named.add(word)
    return named


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_pages_name_no_search_key_the_code_lacks(page):
    assert named_search_keys(page.read_text(encoding="utf-8")) - search_keys() == set()


def test_an_unknown_search_key_in_a_page_is_caught():
    assert named_search_keys("set `mcts.childs: 2` or `search.beam.width=2`") == {"mcts.childs", "beam.width"}
    assert named_search_keys("set `mcts.childs: 2`") - search_keys() == {"mcts.childs"}


# -- shipped model folders ---------------------------------------------------------------------


def safetensors_header(path: Path) -> str:
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return handle.read(length).decode("utf-8")


def absolute_paths_in(folder: Path) -> list[str]:
    """Files whose text (a safetensors file: its JSON header) names a machine's absolute path."""
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        text = safetensors_header(path) if path.suffix == ".safetensors" else path.read_text(encoding="utf-8")
        found += [f"{path.name}: {marker}" for marker in ABSOLUTE_PATHS if marker in text]
    return found


@pytest.mark.parametrize("name", shipped_model_names())
def test_a_shipped_model_folder_names_no_absolute_path(name):
    assert absolute_paths_in(SHIPPED_DIR / name) == []


def test_an_absolute_path_in_a_model_folder_is_found(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/root/.cache/x"}))
    assert absolute_paths_in(tmp_path) == ["adapter_config.json: /root"]


def card_problems(folder: Path) -> list[str]:
    """What a model folder's card lacks: the file, its metadata, a section, or real content."""
    card = folder / "README.md"
    if not card.is_file():
        return ["no README.md"]
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return ["no metadata block"]
    metadata = yaml.safe_load(text.split("---\n", 2)[1])
    problems = [f"metadata lacks {key}" for key in ("license", "tags") if not metadata.get(key)]
    base = metadata.get("base_model")
    if (folder / "adapter_config.json").exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", str(base)):
        problems.append(f"base_model {base!r} is not a hub id (owner/name)")
    problems += [f"no section {section!r}" for section in CARD_SECTIONS if f"\n{section}\n" not in text]
    problems += ["peft's empty template"] * ("[More Information Needed]" in text)
    return problems


@pytest.mark.parametrize("name", shipped_model_names())
def test_a_shipped_model_folder_holds_a_complete_card(name):
    assert card_problems(SHIPPED_DIR / name) == []


def test_an_empty_template_card_is_refused(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "README.md").write_text("---\nbase_model: /root/.cache/base\nlibrary_name: peft\n---\n"
                                        "# Model Card for Model ID\n\n[More Information Needed]\n")
    assert card_problems(tmp_path) == [
        "metadata lacks license", "metadata lacks tags", "base_model '/root/.cache/base' is not a hub id (owner/name)",
        *[f"no section {section!r}" for section in CARD_SECTIONS], "peft's empty template"]
