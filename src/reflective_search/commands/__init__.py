"""Subcommands of the command line, one module each."""

from __future__ import annotations

import os
from pathlib import Path

from reflective_search.errors import ConfigError


def check_writable(path: str | Path, option: str) -> Path:
    """``path`` if a file can be written there; else a one-line error (checked before any work)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist; create it or pick another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: the folder {folder} is not writable; pick another path")
    return path
