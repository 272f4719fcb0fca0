"""Reading YAML with errors that name the file and line instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reflective_search.errors import ConfigError


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file whose top level must be a mapping (empty file -> {})."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{path}{line}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data
