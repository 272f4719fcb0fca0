"""A saved model's README: a Hugging Face model card rendered from a small record.

Every saved model folder holds one, in place of the empty template peft writes beside an
adapter: ``checkpoint.save_model`` writes the plain card (what the folder holds, its search
defaults, how to use it), and ``train policy`` and ``train sprm`` rewrite it with what was
trained, on what, with which command, and the train summary. A card holds no absolute local
path: the base is named by its Hub id, and paths in the command are cut to their relative
form (under the working folder) or their file name.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

CARD_FILE = "README.md"
LIBRARY_TAGS = ("reflective-search", "process-reward-model")


@dataclass(frozen=True, slots=True)
class Card:
    title: str  # the heading: the saved folder's name
    summary: str  # one paragraph: what the model is
    base: str | None  # the library's name of the base model (model.bases; None: from scratch or unnamed)
    adapter: bool  # the folder holds a LoRA adapter over the base rather than full weights
    tags: tuple[str, ...] = ()  # front-matter tags beyond the library's own (the task, "lora")
    sections: tuple[tuple[str, str], ...] = ()  # (heading, Markdown body), in order


def render_card(card: Card) -> str:
    """The card's Markdown: YAML front matter, the title, the summary, then each section."""
    body = "".join(f"\n## {heading}\n\n{text.rstrip()}\n" for heading, text in card.sections)
    return f"{front_matter(card)}\n# {card.title}\n\n{card.summary}\n{body}"


def front_matter(card: Card) -> str:
    """Hugging Face metadata: the base's licence and Hub id when the base is a known one."""
    from reflective_search.model.bases import BASES

    spec = BASES.get(card.base)
    lines = ["---"]
    lines += [f"license: {spec.license}"] if spec and spec.license else []
    lines += [f"base_model: {spec.hub_id}"] if spec and spec.hub_id else []
    lines += [f"library_name: {'peft' if card.adapter else 'transformers'}", "pipeline_tag: text-generation", "tags:"]
    lines += [f"- {tag}" for tag in (*LIBRARY_TAGS, *card.tags)]
    return "\n".join([*lines, "---", ""])


def write_card(directory, card: Card) -> None:
    """Write (or replace) ``directory/README.md``."""
    (Path(directory) / CARD_FILE).write_text(render_card(card), encoding="utf-8")


def table(rows: Sequence[tuple[str, object]]) -> str:
    """A two-column Markdown table of (what, value) rows."""
    return "\n".join(["| | |", "|---|---|", *(f"| {what} | {value} |" for what, value in rows)])


def portable_command(argv: Sequence[str], cwd: str | Path | None = None) -> str:
    """``reflective-search ARGV`` as a shell line, each absolute path made relative to ``cwd``
    (the working folder) when it lies inside it, else cut to its file name."""
    return shlex.join(["reflective-search", *(portable_argument(arg, cwd) for arg in argv)])


def portable_argument(arg: str, cwd: str | Path | None = None) -> str:
    """``arg`` with an absolute path in it (the whole of it, or after ``--option=``) made portable."""
    option, equals, value = arg.partition("=") if arg.startswith("--") else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    path, root = Path(value), Path(cwd or os.getcwd())
    portable = path.relative_to(root).as_posix() if path.is_relative_to(root) and path != root else path.name
    return f"{option}{equals}{portable}"


def base_label(base: str | None) -> str:
    """How a card's text names a base: its Hub id and the library's name for it."""
    from reflective_search.model.bases import BASES

    if base in BASES and BASES[base].hub_id:
        return f"{BASES[base].hub_id} (`{base}`)"
    return f"`{base}`" if base else "a model trained from scratch"


def search_defaults_section(defaults: Sequence[tuple[str, object]], note: str = "") -> tuple[str, str]:
    """The search settings the model carries, which ``solve``, ``run`` and ``evaluate`` use
    unless a search config overrides them."""
    if not defaults:
        return ("Search defaults", "None: searches use the library's defaults." + (f" {note}" if note else ""))
    text = ("`solve`, `run` and `evaluate` search with these settings unless a search config overrides them"
            + (f" ({note})" if note else "") + ":\n\n")
    return ("Search defaults", text + table([(f"`{key}`", value) for key, value in defaults]))


def usage_section(title: str) -> tuple[str, str]:
    return ("Use", f"Point `--model` at this folder:\n\n"
                   f"    reflective-search solve \"PROBLEM\" --model path/to/{title}\n\n"
                   f"or, in Python:\n\n    from reflective_search import ReflectiveSearch\n\n"
                   f"    print(ReflectiveSearch(\"path/to/{title}\").solve(\"PROBLEM\").answer)")


def head_section(trained: bool) -> tuple[str, str]:
    if trained:
        return ("SPRM head", "Trained: its step scores guide the search.")
    return ("SPRM head", "Untrained: its step scores mean nothing until one is trained with "
                         "`reflective-search train sprm --model <this folder> --out <folder>`.")


def plain_card(title: str, base: str | None, adapter: bool, settings) -> Card:
    """The card of a model saved without a training command to describe it."""
    return Card(title, "A reflective model for `reflective_search`: a causal language model (the policy) and an "
                       f"SPRM head on its backbone. Base: {base_label(base)}.", base, adapter,
                ("lora",) if adapter else (),
                (head_section(settings.head_trained), search_defaults_section(settings.search_defaults),
                 usage_section(title)))


def training_section(command: str, rows: Sequence[tuple[str, object]]) -> tuple[str, str]:
    """How the model was trained: the command that did it, and its summary."""
    return ("Training", f"Trained with\n\n    {command}\n\n{table(rows)}")
