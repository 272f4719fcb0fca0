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

from reflective_search.aggregate import AGGREGATES as _AGGREGATE_FUNCTIONS
from reflective_search.errors import ConfigError

METHODS = ("greedy", "majority", "best_of_n", "beam", "dvts", "rebase", "mcts")
EXPANDERS = ("reference", "shared")
SCHEDULINGS = ("continuous", "rounds")  # how the shared expander batches many searches (ExpanderConfig)
AGGREGATES = tuple(_AGGREGATE_FUNCTIONS)  # every path-scoring rule that exists (aggregate.py)
BACKUPS = ("mean", "max")
SELECTIONS = ("best", "vote", "weighted_vote")
ANSWER_KEYS = ("math", "countdown", "arithmetic")  # the tasks that say when two answers are one vote
ROOT_RULES = ("puct", "gumbel")
EFFORT_N = {"low": 2, "medium": 8, "high": 32}  # MetaStone-S1 reasoning-effort modes


def _require(ok: bool, key: str, allowed: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {allowed}")


STEP_KINDS = ("delimiter", "tokens")


@dataclass(frozen=True, slots=True)
class StepConfig:
    kind: str = "delimiter"  # delimiter: a step ends at the model's delimiter | tokens: after `size` tokens
    size: int | None = None  # tokens per step (kind: tokens only; the last step may end sooner, at EOS)

    def __post_init__(self) -> None:
        _require(self.kind in STEP_KINDS, "sampling.step.kind", " | ".join(STEP_KINDS), self.kind)
        if self.kind == "tokens":
            _require(self.size is not None and self.size >= 1, "sampling.step.size", "an integer >= 1", self.size)
        else:
            _require(self.size is None, "sampling.step.size", "null with kind: delimiter", self.size)


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    temperature: float = 0.7  # softmax temperature; 0 means greedy (argmax)
    top_p: float = 0.95  # nucleus mass kept before sampling, in (0, 1]
    max_step_tokens: int = 256  # a step longer than this is cut (and ends there)
    max_steps: int = 32  # a path this many steps deep is terminal
    step: StepConfig = field(default_factory=StepConfig)  # where a step ends: delimiter | a block of tokens

    def __post_init__(self) -> None:
        _require(self.temperature >= 0, "sampling.temperature", "a number >= 0", self.temperature)
        _require(0 < self.top_p <= 1, "sampling.top_p", "a number in (0, 1]", self.top_p)
        _require(self.max_step_tokens >= 1, "sampling.max_step_tokens", "an integer >= 1", self.max_step_tokens)
        _require(self.max_steps >= 1, "sampling.max_steps", "an integer >= 1", self.max_steps)
        size = self.step.size
        _require(size is None or size <= self.max_step_tokens, "sampling.step.size",
                 f"an integer <= sampling.max_step_tokens ({self.max_step_tokens})", size)


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
class DVTSConfig:
    n: int = 8  # trajectories in all: n / width independent subtrees, one per distinct first step
    width: int = 4  # children sampled per subtree per step; the best-scored one continues
    aggregate: str = "geometric"  # how step scores rank a path (within a subtree, and at the end)

    def __post_init__(self) -> None:
        _require(self.width >= 1, "dvts.width", "an integer >= 1", self.width)
        _require(self.n >= 1, "dvts.n", "an integer >= 1", self.n)
        _require(self.n % self.width == 0, "dvts.n", f"a multiple of dvts.width ({self.width})", self.n)
        _require(self.aggregate in AGGREGATES, "dvts.aggregate", " | ".join(AGGREGATES), self.aggregate)

    @property
    def subtrees(self) -> int:
        return self.n // self.width


@dataclass(frozen=True, slots=True)
class RebaseConfig:
    width: int = 8  # children per depth, shared among open nodes; also the finished paths wanted
    temperature: float = 0.2  # softmax temperature over SPRM step scores (lower: greedier), > 0
    aggregate: str = "geometric"  # how step scores rank a finished path

    def __post_init__(self) -> None:
        _require(self.width >= 1, "rebase.width", "an integer >= 1", self.width)
        _require(self.temperature > 0, "rebase.temperature", "a number > 0", self.temperature)
        _require(self.aggregate in AGGREGATES, "rebase.aggregate", " | ".join(AGGREGATES), self.aggregate)


@dataclass(frozen=True, slots=True)
class GumbelConfig:
    considered: int = 4  # root children kept by Gumbel-top-k (at most mcts.children)
    scale: float = 1.0  # multiplies the Gumbel noise; 0 keeps the top-k by prior

    def __post_init__(self) -> None:
        _require(self.considered >= 1, "mcts.gumbel.considered", "an integer >= 1", self.considered)
        _require(self.scale >= 0, "mcts.gumbel.scale", "a number >= 0", self.scale)


@dataclass(frozen=True, slots=True)
class MCTSConfig:
    children: int = 4  # child steps sampled per expanded leaf (identical ones merged)
    # Child steps sampled when the root is expanded (null: ``children``). The root is where a
    # peaked policy's samples repeat most and where the tree's branches are cheapest, and its
    # children are drawn once: a wider root buys the distinct first moves a narrow one never sees.
    root_children: int | None = None
    c_puct: float = 1.5  # exploration constant in the PUCT formula
    batch_leaves: int = 4  # leaves selected (with virtual loss) and expanded per model call
    backup: str = "mean"  # mean | max: how a node's value summarises its subtree
    aggregate: str = "geometric"  # how step scores rank a finished trajectory
    virtual_loss: float = 1.0  # zero-valued visits added per in-flight selection
    resample: int = 0  # extra sampling rounds for a leaf whose children were not all distinct
    root: str = "puct"  # puct | gumbel: how simulations pick the root child (PUCT below it either way)
    gumbel: GumbelConfig = field(default_factory=GumbelConfig)  # mcts.root: gumbel only
    # Extra sampling rounds, when a round would leave the tree no open leaf, that ask the
    # leaves being expanded for more children until one is open or the budget is spent
    # (0: off; the search then stops early and reports the unspent budget).
    widen: int = 8

    def __post_init__(self) -> None:
        _require(self.children >= 1, "mcts.children", "an integer >= 1", self.children)
        _require(self.root_children is None or self.root_children >= 1, "mcts.root_children",
                 "an integer >= 1 or null", self.root_children)
        _require(self.c_puct >= 0, "mcts.c_puct", "a number >= 0", self.c_puct)
        _require(self.batch_leaves >= 1, "mcts.batch_leaves", "an integer >= 1", self.batch_leaves)
        _require(self.backup in BACKUPS, "mcts.backup", " | ".join(BACKUPS), self.backup)
        _require(self.aggregate in AGGREGATES, "mcts.aggregate", " | ".join(AGGREGATES), self.aggregate)
        _require(self.virtual_loss >= 0, "mcts.virtual_loss", "a number >= 0", self.virtual_loss)
        _require(self.resample >= 0, "mcts.resample", "an integer >= 0", self.resample)
        _require(self.root in ROOT_RULES, "mcts.root", " | ".join(ROOT_RULES), self.root)
        considered = self.gumbel.considered
        _require(self.root != "gumbel" or considered <= self.children_at(0), "mcts.gumbel.considered",
                 f"an integer <= the root's children ({self.children_at(0)})", considered)
        _require(self.widen >= 0, "mcts.widen", "an integer >= 0", self.widen)

    def children_at(self, depth: int) -> int:
        """Child steps to sample below a node at ``depth`` (the root is depth 0)."""
        return self.root_children if depth == 0 and self.root_children is not None else self.children


@dataclass(frozen=True, slots=True)
class ExpanderConfig:
    kv_budget_tokens: int | None = None  # shared expander: KV slots kept resident (None: no limit)
    # shared expander: how many searches share its forwards. continuous: a search's next call
    # joins the running batch as soon as its own call is done; rounds: every search waits for
    # the slowest call of the round (lockstep; the oracle continuous must equal)
    scheduling: str = "continuous"
    max_rows: int | None = None  # shared expander: most child rows decoding at once (None: no limit)

    def __post_init__(self) -> None:
        budget = self.kv_budget_tokens
        _require(budget is None or budget >= 1, "expander_options.kv_budget_tokens", "an integer >= 1 or null", budget)
        _require(self.scheduling in SCHEDULINGS, "expander_options.scheduling", " | ".join(SCHEDULINGS), self.scheduling)
        rows = self.max_rows
        _require(rows is None or (isinstance(rows, int) and rows >= 1), "expander_options.max_rows",
                 "an integer >= 1 or null", rows)


@dataclass(frozen=True, slots=True)
class SearchConfig:
    method: str = "mcts"  # greedy | majority | best_of_n | beam | dvts | rebase | mcts
    expander: str = "shared"  # shared (KV shared across the tree) | reference (test oracle)
    seed: int = 0  # every random choice of a solve derives from this and the problem
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    majority: MajorityConfig = field(default_factory=MajorityConfig)
    beam: BeamConfig = field(default_factory=BeamConfig)
    dvts: DVTSConfig = field(default_factory=DVTSConfig)
    rebase: RebaseConfig = field(default_factory=RebaseConfig)
    mcts: MCTSConfig = field(default_factory=MCTSConfig)
    # best | vote | weighted_vote: the final pick among finished paths (best_of_n, beam, dvts,
    # rebase, mcts): the best aggregated score, the most frequent answer, or the answer with the
    # most aggregated score summed over its paths
    select: str = "best"
    answer_key: str = "math"  # math | countdown | arithmetic: the task whose rule makes two answers one vote
    expander_options: ExpanderConfig = field(default_factory=ExpanderConfig)
    record_history: bool = False  # snapshot the tree after every round (to replay its growth)

    def __post_init__(self) -> None:
        _require(self.method in METHODS, "method", " | ".join(METHODS), self.method)
        _require(self.expander in EXPANDERS, "expander", " | ".join(EXPANDERS), self.expander)
        _require(isinstance(self.seed, int), "seed", "an integer", self.seed)
        _require(self.select in SELECTIONS, "select", " | ".join(SELECTIONS), self.select)
        _require(self.answer_key in ANSWER_KEYS, "answer_key", " | ".join(ANSWER_KEYS), self.answer_key)

    def replace(self, **overrides: Any) -> "SearchConfig":
        """A copy with dotted-key overrides applied, e.g. replace(**{"mcts.children": 2})."""
        return config_from_dict(set_dotted(to_dict(self), overrides))


# Keys that existed once: setting one names what replaced it (not a bare "unknown key").
RETIRED_KEYS = {
    (MCTSConfig, "answer"): "removed; set the top-level search key 'select' (best | vote | weighted_vote)",
}


def to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (what YAML would hold)."""
    return dataclasses.asdict(config)


def set_dotted(tree: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Apply {"a.b": value} overrides to a nested dict (copied, not mutated)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items()}
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for depth, part in enumerate(parents):
            inner = node.get(part)
            if inner is not None and not isinstance(inner, Mapping):
                raise ConfigError(f"{dotted}: {'.'.join(parents[:depth + 1])} is a value, not a section of keys")
            node[part] = dict(inner or {})
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
        if (cls, key) in RETIRED_KEYS:
            raise ConfigError(f"{where}: {RETIRED_KEYS[cls, key]}")
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
    before = flatten(to_dict(reference))
    return {key: value for key, value in flatten(to_dict(config)).items() if before[key] != value}


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
    if typing.get_origin(hint) is tuple:  # tuple[X, ...]: a YAML list of X
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: {value!r} has the wrong type; expected a list")
        return tuple(_coerce(item, typing.get_args(hint)[0], f"{where}[{i}]") for i, item in enumerate(value))
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in allowed:
            return None
        raise ConfigError(f"{where}: null is not allowed; expected {_type_names(allowed)}")
    for kind in allowed:
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            number = _as_float(value)
            if math.isnan(number):
                raise ConfigError(f"{where}: NaN is not allowed")
            if math.isinf(number):  # no knob means anything at infinity; an int past float's range is one
                raise ConfigError(f"{where}: an infinite number is not allowed; expected a finite number")
            return number
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str):
            return value
        if kind is bool and isinstance(value, bool):
            return value
    raise ConfigError(f"{where}: {value!r} has the wrong type; expected {_type_names(allowed)}")


def _as_float(value: int | float) -> float:
    """``float(value)``; an int past float's range is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def _type_names(kinds: tuple) -> str:
    return " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
