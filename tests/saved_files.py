"""What a saved model folder must not hold: a local absolute path, or peft's empty card."""

from __future__ import annotations

import os
from pathlib import Path

PEFT_TEMPLATE = "[More Information Needed]"


def local_paths_in(folder: Path, scratch: Path) -> list[str]:
    """Every file under ``folder`` (as ``name: path``) that holds the test session's scratch
    folder (``scratch``, where its files and caches live), the working folder or home: where
    every local path a test (or a user) hands the library starts. The paths are long, so
    the bytes of a weights file never hold one by chance."""
    roots = {str(scratch.resolve()), str(scratch), os.getcwd(), str(Path.home())}
    needles = [root.encode() for root in roots if root not in ("", "/")]
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(folder)}: {needle.decode()}" for needle in needles if needle in data]
    return found


def card_of(folder: Path) -> str:
    """The folder's README, checked to be a card of ours and not peft's template."""
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert PEFT_TEMPLATE not in text and text.startswith("---\n"), text[:300]
    return text
