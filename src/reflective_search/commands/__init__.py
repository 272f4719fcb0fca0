"""Subcommands of the command line, one module each."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from reflective_search.errors import ConfigError


def add_command(subparsers, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand's parser: ``summary`` is its line in the parent's --help and, as a sentence, opens its own.

    Help is terminal text: plain sentences, no docstring markup.
    """
    description = f"{summary[0].upper()}{summary[1:]}." + (f" {details}" if details else "")
    return subparsers.add_parser(name, help=summary, description=description)


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


def search_defaults_line(model, task=None) -> str:
    """One line saying which search defaults a command searches with and where they come from:
    those saved with the model, then (an evaluation's) those of the task for keys the model
    leaves unset, else the library's."""
    from reflective_search.config import SearchConfig

    carried = dict(model.settings.search_defaults)
    from_task = {k: v for k, v in (task.search_defaults if task is not None else ()) if k not in carried}
    parts = [f"{_settings_text(carried)} (saved with {Path(model.source).name})"] if carried else []
    parts += [f"{_settings_text(from_task)} (the {task.name} task's)"] if from_task else []
    if not parts:
        sampling = SearchConfig().sampling
        return (f"search defaults: the library's, sampling.max_step_tokens={sampling.max_step_tokens}, "
                f"sampling.max_steps={sampling.max_steps} (the model carries none)")
    return "search defaults: " + "; ".join(parts) + ("" if carried else ": the model carries none")


def _settings_text(settings: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in settings.items())
