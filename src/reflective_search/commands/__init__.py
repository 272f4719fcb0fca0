"""Subcommands of the command line, one module each."""

from __future__ import annotations

import os
from pathlib import Path

from reflective_search.errors import ConfigError


def check_writable(path: str | Path, option: str) -> Path:
    """``path`` if a file can be written there; else a one-line error (checked before any work)."""
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise ConfigError(f"{option} {path}: the folder {folder} does not exist; create it or pick another path")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{option} {path}: the folder {folder} is not writable; pick another path")
    return path


def prepare_output_dir(path: str | Path, option: str) -> Path:
    """Create the output folder ``path`` now, so a bad path fails before hours of work."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{option} {path}: cannot create the folder ({error.strerror}); pick another path") from None
    return check_writable(path / "probe", option).parent
