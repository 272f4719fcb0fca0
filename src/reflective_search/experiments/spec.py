"""Experiment configs: what to run (model, problems, search, seeds, sweep) and how (executor).

YAML holds overrides only; the defaults live in the dataclasses below. Everything is
checked here, before any work starts: unknown keys at any depth (naming the nearest valid
one), wrong types, impossible values, and every sweep point's search config.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from reflective_search.config import SearchConfig, did_you_mean, config_from_dict, set_dotted
from reflective_search.errors import ConfigError
from reflective_search.experiments.problems import DEFAULT_GENERATOR, FILE_TASK, GENERATORS, TASKS
from reflective_search.experiments.sweep import SweepGroup, parse_sweep, point_configs
from reflective_search.yaml_io import YAMLTextError, load_yaml_text, read_yaml_mapping

DEFAULT_COUNT = 20  # problems a generator makes when problems.count is not set
# How a run executes, not what it computes ("workers": the old spelling of executor.workers).
EXECUTION_KEYS = ("output_dir", "executor", "workers", "batch_size")
EXECUTOR_KINDS = ("local", "ray")  # experiments/executors.py holds one class per kind


@dataclass(frozen=True, slots=True)
class ProblemsSpec:
    file: str | None = None  # a JSONL of {"problem", "answer"[, "id"]} records (either this or generator)
    generator: str | None = None  # a built-in generator (countdown | arithmetic); neither set: countdown
    count: int | None = None  # problems the generator makes (null: DEFAULT_COUNT, 20)
    seed: int = 0  # the generator's seed
    limit: int | None = None  # keep only the first `limit` problems (null: all)
    task: str | None = None  # checker deciding `correct`: math | countdown | arithmetic (null: math for a file, else the generator's)
    options: Any = None  # the generator's options dataclass (problems.options in YAML)

    def __post_init__(self) -> None:
        _check(self.count is None or self.count >= 1, "problems.count", "an integer >= 1", self.count)
        _check(self.limit is None or self.limit >= 1, "problems.limit", "an integer >= 1 or null", self.limit)
        _check(self.task is None or self.task in TASKS, "problems.task", " | ".join(TASKS), self.task)
        _check(self.generator is None or self.generator in GENERATORS, "problems.generator",
               " | ".join(GENERATORS), self.generator)


@dataclass(frozen=True, slots=True)
class ExecutorSpec:
    kind: str = "local"  # local: this machine (a process pool past one worker) | ray: actors on a Ray cluster
    address: str | None = None  # ray only: null starts a private local Ray; "auto" or "host:port" joins a cluster
    workers: int = 1  # workers, each loading its own model copy once
    cpus_per_worker: int = 1  # CPUs each worker is given (= its torch threads)
    gpus_per_worker: float = 0.0  # ray only: GPUs each actor asks the cluster for (the model then runs on one)

    def __post_init__(self) -> None:
        _check(self.kind in EXECUTOR_KINDS, "executor.kind", " | ".join(EXECUTOR_KINDS), self.kind)
        _check(self.workers >= 1, "executor.workers", "an integer >= 1", self.workers)
        _check(self.cpus_per_worker >= 1, "executor.cpus_per_worker", "an integer >= 1", self.cpus_per_worker)
        _check(self.gpus_per_worker >= 0, "executor.gpus_per_worker", "a number >= 0", self.gpus_per_worker)
        _check(self.address is None or self.address.strip() != "", "executor.address",
               'null, "auto" or "host:port"', self.address)
        for key, value in (("address", self.address), ("gpus_per_worker", self.gpus_per_worker)):
            if self.kind == "local" and value:
                raise ConfigError(f"executor.{key} applies to a Ray cluster: set executor.kind: ray or drop it")


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    model: str | None = None  # a model directory (made absolute) or shipped name; null: the default shipped model
    problems: ProblemsSpec = field(default_factory=ProblemsSpec)  # where problems come from, how they are graded
    search: SearchConfig = field(default_factory=SearchConfig)  # the search, before sweep and seeds apply
    # each replaces search.seed (null: [search.seed]); one record per (problem, point, seed)
    seeds: tuple[int, ...] = (0,)
    sweep: tuple[SweepGroup, ...] = ()  # config points: the union of each group's product (none: one point)
    # the run directory (results.jsonl, config.yaml, ...); from a YAML file: runs/<its name>
    output_dir: str = "runs/experiment"
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)  # where the work items run
    batch_size: int = 8  # problems per solve_batch call (they share model calls)


TOP_KEYS = [f.name for f in dataclasses.fields(ExperimentSpec)] + ["workers"]  # workers: see _executor


def load_experiment(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """Read an experiment YAML, apply ``key=value`` overrides, validate everything."""
    data = read_yaml_mapping(Path(path))
    for text in overrides:
        data = apply_override(data, *parse_override(text))
    return spec_from_dict(data, default_output_dir=f"runs/{Path(path).stem}")


def parse_override(text: str, label: str = "override", example: str = "search.mcts.children=2") -> tuple[str, Any]:
    """``a.b=value`` -> ("a.b", value), the value read as a YAML scalar or list.

    ``label`` names the option in errors (``--mcts`` for ``evaluate``), ``example`` shows a valid one.
    """
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{label} {text!r} must look like key=value, e.g. {example}")
    try:
        return key.strip(), load_yaml_text(raw)
    except YAMLTextError:
        raise ConfigError(f"{label} {text!r}: the value is not valid YAML") from None


def parse_search_settings(options, label: str, example: str) -> dict[str, Any]:
    """``KEY=VALUE`` options as dotted search keys, checked against SearchConfig (one-line errors)."""
    from reflective_search.config import SearchConfig

    chosen = dict(parse_override(option, label, example) for option in options)
    SearchConfig().replace(**chosen)
    return chosen


def apply_override(data: Mapping[str, Any], key: str, value: Any) -> dict[str, Any]:
    """Set one dotted key; ``sweep.<dotted search key>`` sets one sweep entry."""
    if key.startswith("sweep."):
        sweep = data.get("sweep") or {}
        if not isinstance(sweep, dict):
            raise ConfigError(f"override {key}: sweep must be a mapping (not a list of groups) to override one key")
        return {**data, "sweep": {**sweep, key.removeprefix("sweep."): value}}
    parts = key.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        node = node.get(part) if isinstance(node, dict) else None
        if node is not None and not isinstance(node, dict):
            raise ConfigError(f"override {key}: {'.'.join(parts[:depth + 1])} is not a mapping")
    return set_dotted(dict(data), {key: value})


def spec_from_dict(data: Mapping[str, Any], default_output_dir: str = "runs/experiment") -> ExperimentSpec:
    """Build and check an ExperimentSpec from a YAML mapping of overrides."""
    _check_keys(data, TOP_KEYS)
    problems = _problems(data.get("problems"))
    # The task says which answers are one vote, unless the search names its own rule.
    search_data = {"answer_key": problems.task, **_mapping(data.get("search"), "search")}
    search = config_from_dict(search_data, SearchConfig, prefix="search.")
    spec = ExperimentSpec(
        model=resolve_model(_optional_text(data.get("model"), "model")),
        problems=problems,
        search=search,
        seeds=_seeds(data.get("seeds"), search.seed),
        sweep=parse_sweep(data.get("sweep")),
        output_dir=_optional_text(data.get("output_dir"), "output_dir") or default_output_dir,
        executor=_executor(data),
        batch_size=_positive_int(data.get("batch_size", 8), "batch_size"),
    )
    point_configs(spec.search, spec.sweep)  # every point's config is built now: a bad value fails before work
    return spec


def resolved_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plain YAML-able data, every default filled in (what config.yaml holds)."""
    data = json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples -> lists
    data["sweep"] = [{key: list(values) for key, values in group} for group in spec.sweep]
    return data


def run_identity(resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that decides the results (execution knobs left out)."""
    return {key: value for key, value in resolved.items() if key not in EXECUTION_KEYS}


def resolve_model(name: str | None) -> str | None:
    """A model directory made absolute, a shipped name kept, None: the shipped default if any."""
    from reflective_search.default_model import DEFAULT_MODEL_NAME
    from reflective_search.shipped import shipped_model_names

    shipped = shipped_model_names()
    if name is None:
        return DEFAULT_MODEL_NAME if DEFAULT_MODEL_NAME in shipped else None
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name in shipped:
        return name
    raise ConfigError(f"model: {name} is neither a directory nor a shipped model ({', '.join(shipped) or 'none ship'}): "
                      "pass a saved model's folder")


# -- sections --------------------------------------------------------------------------------


def _problems(raw: Any) -> ProblemsSpec:
    raw = _mapping(raw, "problems")
    options = raw.pop("options", None)
    given = config_from_dict(raw, ProblemsSpec, prefix="problems.")
    if given.file is not None:
        return _file_problems(given, options)
    name = given.generator or DEFAULT_GENERATOR
    generator = GENERATORS[name]
    if given.task is not None and given.task != generator.task:
        raise ConfigError(f"problems.task: generator {name} is graded by task {generator.task}; drop problems.task")
    resolved_options = config_from_dict(_mapping(options, "problems.options"), generator.options,
                                        prefix="problems.options.")
    return dataclasses.replace(given, generator=name, count=given.count or DEFAULT_COUNT,
                               task=generator.task, options=resolved_options)


def _file_problems(given: ProblemsSpec, options: Any) -> ProblemsSpec:
    if given.generator is not None:
        raise ConfigError("problems: set either file or generator, not both")
    for key, value in (("count", given.count), ("options", options)):
        if value:
            raise ConfigError(f"problems.{key} applies to a generator; with a file use problems.limit")
    path = str(Path(given.file).expanduser().resolve())  # absolute: a rerun from elsewhere reads the same file
    return dataclasses.replace(given, file=path, task=given.task or FILE_TASK, options=None)


def _executor(data: Mapping[str, Any]) -> ExecutorSpec:
    """``executor:``; a top-level ``workers: N`` (configs older than executor) means executor.workers."""
    raw = _mapping(data.get("executor"), "executor")
    if "workers" in data:
        if "workers" in raw:
            raise ConfigError("workers is set twice: drop the top-level workers and keep executor.workers")
        raw["workers"] = _positive_int(data["workers"], "workers")
    return config_from_dict(raw, ExecutorSpec, prefix="executor.")


def _seeds(raw: Any, default: int) -> tuple[int, ...]:
    if raw is None:
        return (default,)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"seeds: expected a non-empty list of integers, got {raw!r}")
    for seed in raw:
        _check(isinstance(seed, int) and not isinstance(seed, bool), "seeds", "integers", seed)
    if len(set(raw)) != len(raw):
        raise ConfigError(f"seeds: {raw} repeats a seed; list each once")
    return tuple(raw)


# -- small checks -------------------------------------------------------------------------------


def _check_keys(data: Mapping[str, Any], names: list[str]) -> None:
    for key in data:
        if key not in names:
            raise ConfigError(f"unknown key {key!r}{did_you_mean(str(key), names)}; valid keys: {', '.join(names)}")


def _mapping(value: Any, key: str) -> dict[str, Any]:
    """A section's mapping (null or absent: empty), copied."""
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping of keys, got {type(value).__name__}")
    return dict(value or {})


def _check(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{key}: {value!r} is not allowed; expected {expected}")


def _positive_int(value: Any, key: str) -> int:
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, key, "an integer >= 1", value)
    return value


def _optional_text(value: Any, key: str) -> str | None:
    _check(value is None or (isinstance(value, str) and value.strip() != ""), key, "a non-empty string or null", value)
    return value
