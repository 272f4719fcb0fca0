"""Search configuration: one frozen dataclass per concern, built from dicts or YAML.

Defaults live here and only here. YAML files and dicts hold overrides; the loader refuses
unknown keys (naming the nearest valid one) and impossible values before any work starts.
No torch import: the search side of the boundary reads this module.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from reflective_search.errors import ConfigError

METHODS = ("greedy", "majority", "best_of_n", "beam", "mcts")
EXPANDERS = ("reference", "shared")
AGGREGATES = ("geometric", "min", "last", "mean", "product")
BACKUPS = ("mean", "max")
ANSWER_RULES = ("best_score", "vote")
EFFORT_N = {"low": 2, "medium": 8, "high": 32}  # MetaStone-S1 reasoning-effort modes


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {allowed}")


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    temperature: float = 0.7  # softmax temperature; 0 means greedy (argmax)
    top_p: float = 0.95  # nucleus mass kept before sampling, in (0, 1]
    max_step_tokens: int = 256  # a step longer than this is cut (and ends there)
    max_steps: int = 32  # a path this many steps deep is terminal

    def __post_init__(self) -> None:
        _require(self.temperature >= 0, "sampling.temperature", "a number >= 0", self.temperature)
        _require(0 < self.top_p <= 1, "sampling.top_p", "a number in (0, 1]", self.top_p)
        _require(self.max_step_tokens >= 1, "sampling.max_step_tokens", "an integer >= 1", self.max_step_tokens)
        _require(self.max_steps >= 1, "sampling.max_steps", "an integer >= 1", self.max_steps)


@dataclass(frozen=True, slots=True)
class BudgetConfig:
    tokens: int | None = 4096  # generated tokens MCTS may spend (None: no limit)
    expansions: int | None = None  # expansion requests MCTS may issue (None: no limit)

    def __post_init__(self) -> None:
        for key in ("tokens", "expansions"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"budget.{key}", "an integer >= 1 or null", value)
        _require(
            self.tokens is not None or self.expansions is not None,
            "budget", "at least one of tokens / expansions set", "both null",
        )


@dataclass(frozen=True, slots=True)
class BestOfNConfig:
    n: int = 8  # sampled trajectories
    effort: str | None = None  # low | medium | high sets n to 2 / 8 / 32 (MetaStone-S1)
    aggregate: str = "geometric"  # how step scores rank a trajectory

    def __post_init__(self) -> None:
        _require(self.n >= 1, "best_of_n.n", "an integer >= 1", self.n)
        _require(self.effort is None or self.effort in EFFORT_N, "best_of_n.effort", "low | medium | high", self.effort)
        _require(self.aggregate in AGGREGATES, "best_of_n.aggregate", " | ".join(AGGREGATES), self.aggregate)

    @property
    def samples(self) -> int:
        """The number of trajectories actually drawn (effort wins over n)."""
        return EFFORT_N[self.effort] if self.effort else self.n


@dataclass(frozen=True, slots=True)
class MajorityConfig:
    n: int = 8  # samples voted over (self-consistency)

    def __post_init__(self) -> None:
        _require(self.n >= 1, "majority.n", "an integer >= 1", self.n)


@dataclass(frozen=True, slots=True)
class BeamConfig:
    width: int = 4  # beams kept after each step
    expand: int = 4  # children sampled per beam per step
    aggregate: str = "geometric"  # how step scores rank a beam

    def __post_init__(self) -> None:
        _require(self.width >= 1, "beam.width", "an integer >= 1", self.width)
        _require(self.expand >= 1, "beam.expand", "an integer >= 1", self.expand)
        _require(self.aggregate in AGGREGATES, "beam.aggregate", " | ".join(AGGREGATES), self.aggregate)


@dataclass(frozen=True, slots=True)
class MCTSConfig:
    children: int = 4  # child steps sampled per expanded leaf (identical ones merged)
    c_puct: float = 1.5  # exploration constant in the PUCT formula
    batch_leaves: int = 4  # leaves selected (with virtual loss) and expanded per model call
    backup: str = "mean"  # mean | max: how a node's value summarises its subtree
    answer: str = "best_score"  # best_score | vote: how the final answer is picked
    aggregate: str = "geometric"  # how step scores rank a finished trajectory
    virtual_loss: float = 1.0  # zero-valued visits added per in-flight selection
    resample: int = 0  # extra sampling rounds for a leaf whose children were not all distinct
    # Extra sampling rounds, when a round would leave the tree no open leaf, that ask the
    # leaves being expanded for more children until one is open or the budget is spent
    # (0: off; the search then stops early and reports the unspent budget).
    widen: int = 8

    def __post_init__(self) -> None:
        _require(self.children >= 1, "mcts.children", "an integer >= 1", self.children)
        _require(self.c_puct >= 0, "mcts.c_puct", "a number >= 0", self.c_puct)
        _require(self.batch_leaves >= 1, "mcts.batch_leaves", "an integer >= 1", self.batch_leaves)
        _require(self.backup in BACKUPS, "mcts.backup", " | ".join(BACKUPS), self.backup)
        _require(self.answer in ANSWER_RULES, "mcts.answer", " | ".join(ANSWER_RULES), self.answer)
        _require(self.aggregate in AGGREGATES, "mcts.aggregate", " | ".join(AGGREGATES), self.aggregate)
        _require(self.virtual_loss >= 0, "mcts.virtual_loss", "a number >= 0", self.virtual_loss)
        _require(self.resample >= 0, "mcts.resample", "an integer >= 0", self.resample)
        _require(self.widen >= 0, "mcts.widen", "an integer >= 0", self.widen)


@dataclass(frozen=True, slots=True)
class ExpanderConfig:
    kv_budget_tokens: int | None = None  # shared expander: KV slots kept resident (None: no limit)

    def __post_init__(self) -> None:
        budget = self.kv_budget_tokens
        _require(budget is None or budget >= 1, "expander_options.kv_budget_tokens", "an integer >= 1 or null", budget)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    method: str = "mcts"  # greedy | majority | best_of_n | beam | mcts
    expander: str = "shared"  # shared (KV shared across the tree) | reference (test oracle)
    seed: int = 0  # every random choice of a solve derives from this and the problem
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    majority: MajorityConfig = field(default_factory=MajorityConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    expander_options: ExpanderConfig = field(default_factory=ExpanderConfig)
    record_history: bool = False  # snapshot the tree after every round (to replay its growth)

    def __post_init__(self) -> None:
        _require(self.method in METHODS, "method", " | ".join(METHODS), self.method)
        _require(self.expander in EXPANDERS, "expander", " | ".join(EXPANDERS), self.expander)
        _require(isinstance(self.seed, int), "seed", "an integer", self.seed)

    def replace(self, **overrides: Any) -> "SearchConfig":
        """A copy with dotted-key overrides applied, e.g. replace(**{"mcts.children": 2})."""
        return config_from_dict(set_dotted(to_dict(self), overrides))


def to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (what YAML would hold)."""
    return dataclasses.asdict(config)


def set_dotted(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply {"a.b": value} overrides to a nested dict (copied, not mutated)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items()}
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for part in parents:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[leaf] = value
    return out


def config_from_dict(data: Mapping[str, Any], cls: type = SearchConfig, prefix: str = "") -> Any:
    """Build a (nested) config dataclass from a dict, refusing unknown keys and bad types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping of keys, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown key {where!r}{did_you_mean(str(key), names)}; valid keys: {', '.join(names)}")
        kwargs[key] = _coerce(value, hints[key], where)
    return cls(**kwargs)


def load_search_config(source: "SearchConfig | Mapping[str, Any] | str | Path | None",
                       defaults: Mapping[str, Any] | None = None) -> SearchConfig:
    """Accept a SearchConfig, a dict, a YAML path, or None (all defaults).

    ``defaults`` (dotted keys: a model's task defaults) replace the library's defaults and
    are overridden in turn by what ``source`` sets: by every key of a dict or YAML file,
    and by every field of a SearchConfig that differs from the library's default.
    """
    base = SearchConfig().replace(**defaults) if defaults else SearchConfig()
    if source is None:
        return base
    if isinstance(source, SearchConfig):
        return base.replace(**changed_fields(source, SearchConfig())) if defaults else source
    if isinstance(source, (str, Path)):
        from reflective_search.yaml_io import read_yaml_mapping

        source = read_yaml_mapping(Path(source))
    if not isinstance(source, Mapping):
        return config_from_dict(source)  # refused there, with the usual message
    return config_from_dict(merge_nested(to_dict(base), source))


def changed_fields(config: Any, reference: Any) -> dict[str, Any]:
    """Dotted keys whose values differ between two configs of the same class."""
    return {key: value for key, value in flatten(to_dict(config)).items() if flatten(to_dict(reference))[key] != value}


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def merge_nested(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section (neither is mutated)."""
    out = dict(base)
    for key, value in overrides.items():
        both = isinstance(value, Mapping) and isinstance(out.get(key), Mapping)
        out[key] = merge_nested(out[key], value) if both else value
    return out


def did_you_mean(key: str, names: list[str]) -> str:
    """' (did you mean X?)' for the closest valid name, or '' when none is close."""
    close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check one value against its annotation; nested dataclasses recurse."""
    if dataclasses.is_dataclass(hint):
        return config_from_dict({} if value is None else value, hint, prefix=f"{where}.")
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{where}: null is not allowed; expected {_type_names(allowed)}")
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isnan(float(value)):
                raise ConfigError(f"{where}: NaN is not allowed")
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind is bool and isinstance(value, bool):
            return value
    raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_names(allowed)}")


def _type_names(kinds: tuple) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
