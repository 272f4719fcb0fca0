"""Reading YAML with errors that name the file and line instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from reflective_search.errors import ConfigError


class YAMLTextError(ValueError):
    """Text that is not valid YAML: ``problem`` says why, ``line`` (1-based) where, when known."""

    def __init__(self, problem: str, line: int | None) -> None:
        super().__init__(problem)
        self.problem, self.line = problem, line


def load_yaml_text(text: str) -> Any:
    """``yaml.safe_load`` of ``text``; every way bad text fails is one ``YAMLTextError``.

    Besides ``YAMLError`` (syntax), PyYAML's value constructors raise ValueError
    (``2001-02-30``, ``!!int x``), IndexError (``!!int`` with no value) and RecursionError
    (brackets nested thousands deep).
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YAMLTextError(getattr(exc, "problem", None) or "malformed YAML",
                            None if mark is None else mark.line + 1) from None
    except RecursionError:
        raise YAMLTextError("nested too deeply", None) from None
    except (ValueError, IndexError, OverflowError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise YAMLTextError(f"a value cannot be read ({detail})", None) from None


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """Parse a YAML file whose top level must be a mapping (empty file -> {})."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read config {path}: it is not UTF-8 text") from None
    try:
        data = load_yaml_text(text)
    except YAMLTextError as exc:
        line = f" at line {exc.line}" if exc.line is not None else ""
        raise ConfigError(f"{path}{line}: {exc.problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data
