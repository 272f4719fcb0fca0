"""Sweeps: which config points an experiment covers.

``sweep:`` maps dotted search keys to lists of values; the run covers their product. It
may also be a list of such mappings (groups): the run covers the union of the groups'
products, which is how one experiment holds e.g. Best-of-N at several N *and* MCTS at
several budgets without crossing the two.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import typing
from typing import Any, Sequence

from reflective_search.config import SearchConfig, did_you_mean, config_from_dict, set_dotted, to_dict
from reflective_search.errors import ConfigError

Point = dict[str, Any]  # one config point: swept dotted key -> value, e.g. {"search.budget.tokens": 512}
SweepGroup = tuple[tuple[str, tuple[Any, ...]], ...]  # (dotted key, values) pairs; the run covers their product


def parse_sweep(raw: Any) -> tuple[SweepGroup, ...]:
    """The ``sweep:`` value (a mapping, or a list of mappings) as checked groups."""
    if raw is None or raw == {}:
        return ()
    if isinstance(raw, list) and not raw:
        raise ConfigError("sweep: an empty list; give a mapping of key -> values, or a list of such mappings")
    groups = raw if isinstance(raw, list) else [raw]
    return tuple(_sweep_group(group, "sweep" if group is raw else f"sweep[{i}]") for i, group in enumerate(groups))


def _sweep_group(group: Any, where: str) -> SweepGroup:
    if not isinstance(group, dict) or not group:
        raise ConfigError(f"{where}: expected a non-empty mapping of dotted key -> list of values")
    pairs = []
    for key, values in group.items():
        _check_search_key(str(key), where)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.{key}: expected a non-empty list of values, got {values!r}")
        pairs.append((str(key), tuple(values)))
    return tuple(pairs)


def _check_search_key(dotted: str, where: str) -> None:
    """A sweep key must name one setting of the search config, e.g. search.budget.tokens."""
    parts = dotted.split(".")
    if parts[0] != "search" or len(parts) < 2:
        raise ConfigError(f"{where}: key {dotted!r} is not a search setting; sweep keys look like search.budget.tokens")
    if dotted == "search.seed":
        raise ConfigError(f"{where}: sweep search.seed through the top-level seeds: list instead")
    cls: Any = SearchConfig
    for depth, part in enumerate(parts[1:], start=1):
        names = [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []
        if part not in names:
            prefix = ".".join(parts[:depth]) + "."
            hint = did_you_mean(dotted, [prefix + name for name in names])
            raise ConfigError(f"{where}: unknown key {dotted!r}{hint}")
        cls = typing.get_type_hints(cls)[part]
    if dataclasses.is_dataclass(cls):
        raise ConfigError(f"{where}: {dotted} is a group of settings; sweep one of them, e.g. "
                          f"{dotted}.{dataclasses.fields(cls)[0].name}")


def point_configs(search: SearchConfig, sweep: Sequence[SweepGroup]) -> list[tuple[Point, SearchConfig]]:
    """Every config point with its search config: ``search`` with the point's values (seed not yet applied)."""
    base = to_dict(search)
    configs = []
    for point in sweep_points(sweep):
        overrides = {key.removeprefix("search."): value for key, value in point.items()}
        try:
            configs.append((point, config_from_dict(set_dotted(base, overrides), SearchConfig, prefix="search.")))
        except ConfigError as exc:
            raise ConfigError(f"sweep point {json.dumps(point)}: {exc}") from None
    return configs


def sweep_points(sweep: Sequence[SweepGroup]) -> list[Point]:
    """The union of each group's product, first occurrence kept; no groups: one empty point."""
    points: list[Point] = []
    for group in sweep or ((),):
        keys = [key for key, _ in group]
        for values in itertools.product(*(values for _, values in group)):
            point = dict(zip(keys, values))
            if point not in points:
                points.append(point)
    return points
