"""One line of a JSONL file as a JSON object, or a one-line ``ProblemError`` naming where."""

from __future__ import annotations

import json

from reflective_search.errors import ProblemError


def json_object(line: str, where: str, example: str, fix: str = "") -> dict:
    """The object on ``line``; ``where`` names the file and line, ``example`` shows the record
    expected, ``fix`` (e.g. ": delete the file to sample again") ends an invalid-JSON error."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ProblemError(f"{where}: not valid JSON ({exc.msg}){fix}") from None
    if not isinstance(record, dict):
        raise ProblemError(f"{where}: expected a JSON object like {example}, got {type(record).__name__}")
    return record
