"""The server's configuration (``serve --config YAML``) and each request's search config.

A serve YAML holds up to three sections, each optional::

    search:            # search overrides for every request (the same keys as solve's --config)
      expander_options: {kv_budget_tokens: 20000}
    efforts:           # reasoning_effort -> search overrides (default: Best-of-N, n = 2 / 8 / 32)
      high: {method: mcts, budget: {tokens: 4096}}
    server:            # ServerOptions
      queue_limit: 32

A request's search config layers, each over the last: the model's search defaults, the
YAML's ``search``, the effort's row, the OpenAI fields that mean the same (temperature,
top_p, seed, max_completion_tokens), then the body's ``search`` object. Every layer goes
through the same strict loader as a YAML file, so an unknown key names the nearest valid one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from reflective_search.config import (
    EFFORT_N, config_from_dict, did_you_mean, load_search_config, merge_nested, set_dotted,
)
from reflective_search.errors import ConfigError

SECTIONS = ("search", "efforts", "server")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    queue_limit: int = 64  # requests waiting or searching at once; one more is answered 429
    max_body_bytes: int = 1 << 20  # a larger request body is answered 413
    trees_kept: int = 16  # search trees of the latest requests served at GET /v1/trees/{id}
    stop_timeout_s: float = 30.0  # on SIGTERM, seconds in-flight searches may finish before they are cancelled

    def __post_init__(self) -> None:
        for key in ("queue_limit", "max_body_bytes", "trees_kept"):
            if getattr(self, key) < (0 if key == "trees_kept" else 1):
                raise ConfigError(f"server.{key}: {getattr(self, key)!r} is not allowed; expected a positive integer")
        if self.stop_timeout_s < 0:
            raise ConfigError(f"server.stop_timeout_s: {self.stop_timeout_s!r} is not allowed; expected a number >= 0")


def default_efforts() -> dict[str, dict[str, Any]]:
    """MetaStone-S1's reasoning-effort modes: Best-of-N with n = 2 / 8 / 32."""
    return {effort: {"method": "best_of_n", "best_of_n": {"n": n}} for effort, n in EFFORT_N.items()}


@dataclass(frozen=True, slots=True)
class ServeConfig:
    search: Mapping[str, Any] = field(default_factory=dict)  # overrides for every request
    efforts: Mapping[str, Mapping[str, Any]] = field(default_factory=default_efforts)  # effort -> overrides
    server: ServerOptions = field(default_factory=ServerOptions)


def load_serve_config(path: str | Path | None, defaults: Mapping[str, Any] = ()) -> ServeConfig:
    """A serve YAML checked whole before the server starts: unknown sections, keys and
    values are refused in one line. ``defaults``: the model's search defaults (dotted)."""
    if path is None:
        return ServeConfig()
    from reflective_search.yaml_io import read_yaml_mapping

    data = read_yaml_mapping(Path(path))
    for key in data:
        if key not in SECTIONS:
            raise ConfigError(f"{path}: unknown section {key!r}{did_you_mean(str(key), list(SECTIONS))}; "
                              f"valid sections: {', '.join(SECTIONS)}")
    search = _mapping(data.get("search"), "search")
    efforts = {**default_efforts(), **_mapping(data.get("efforts"), "efforts")}
    for effort, row in efforts.items():
        if effort not in EFFORT_N:
            raise ConfigError(f"efforts: unknown effort {effort!r}; expected {' | '.join(EFFORT_N)}")
        load_search_config(merge_nested(search, _mapping(row, f"efforts.{effort}")), dict(defaults))
    load_search_config(search, dict(defaults))
    server = config_from_dict(_mapping(data.get("server"), "server"), ServerOptions, "server.")
    return ServeConfig(search, efforts, server)


def request_overrides(serve: ServeConfig, effort: str | None, fields: Mapping[str, Any],
                      search: Mapping[str, Any]) -> dict[str, Any]:
    """One request's search overrides, layered as the module says (not yet checked)."""
    layers = merge_nested(serve.search, serve.efforts[effort]) if effort else dict(serve.search)
    return merge_nested(set_dotted(layers, fields), search)


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(value).__name__}")
    return dict(value)
