"""Properties of the config loader (dicts, YAML files, ``key=value`` overrides) on generated input.

Valid input round-trips exactly; anything else is one ``ConfigError`` line that names the
key or file at fault, never another exception.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
import typing
from pathlib import Path

import yaml
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from reflective_search import config as C
from reflective_search.config import SearchConfig, config_from_dict, flatten, load_search_config, to_dict
from reflective_search.errors import ConfigError
from reflective_search.experiments.spec import apply_override, parse_override, parse_search_settings

counts = st.integers(1, 64)
maybe_counts = st.none() | counts
numbers = st.floats(0, 10, allow_nan=False)
positive_numbers = st.floats(0, 10, allow_nan=False, exclude_min=True)
aggregates = st.sampled_from(C.AGGREGATES)


@st.composite
def sampling(draw) -> dict:
    max_step_tokens = draw(counts)
    step = draw(st.just({"kind": "delimiter"}) | st.builds(lambda size: {"kind": "tokens", "size": size},
                                                            st.integers(1, max_step_tokens)))
    return {"temperature": draw(numbers), "top_p": draw(st.floats(0, 1, exclude_min=True)),
            "max_step_tokens": max_step_tokens, "max_steps": draw(counts), "step": step}


@st.composite
def budget(draw) -> dict:
    tokens, expansions = draw(maybe_counts), draw(maybe_counts)
    return {"tokens": tokens, "expansions": expansions if tokens is not None else draw(counts)}


@st.composite
def dvts(draw) -> dict:
    width = draw(st.integers(1, 8))
    return {"width": width, "n": width * draw(st.integers(1, 8)), "aggregate": draw(aggregates)}


@st.composite
def mcts(draw) -> dict:
    children, root_children = draw(counts), draw(maybe_counts)
    root = draw(st.sampled_from(C.ROOT_RULES))
    at_root = root_children or children
    return {"children": children, "root_children": root_children, "c_puct": draw(numbers),
            "batch_leaves": draw(counts), "backup": draw(st.sampled_from(C.BACKUPS)), "aggregate": draw(aggregates),
            "virtual_loss": draw(numbers), "resample": draw(st.integers(0, 8)), "root": root,
            "gumbel": {"considered": draw(st.integers(1, at_root if root == "gumbel" else 64)), "scale": draw(numbers)},
            "widen": draw(st.integers(0, 16))}


SECTIONS = {
    "method": st.sampled_from(C.METHODS),
    "expander": st.sampled_from(C.EXPANDERS),
    "seed": st.integers(-2**63, 2**63),
    "sampling": sampling(),
    "budget": budget(),
    "best_of_n": st.fixed_dictionaries({"n": counts, "effort": st.none() | st.sampled_from(sorted(C.EFFORT_N)),
                                        "aggregate": aggregates}),
    "majority": st.fixed_dictionaries({"n": counts}),
    "beam": st.fixed_dictionaries({"width": counts, "expand": counts, "aggregate": aggregates}),
    "dvts": dvts(),
    "rebase": st.fixed_dictionaries({"width": counts, "temperature": positive_numbers, "aggregate": aggregates}),
    "mcts": mcts(),
    "select": st.sampled_from(C.SELECTIONS),
    "answer_key": st.sampled_from(C.ANSWER_KEYS),
    "expander_options": st.fixed_dictionaries({"kv_budget_tokens": maybe_counts}),
    "record_history": st.booleans(),
}
# Overrides as YAML holds them: any subset of the sections, each section whole (so the
# checks across keys of one section, such as dvts.n a multiple of dvts.width, hold).
overrides = st.lists(st.sampled_from(sorted(SECTIONS)), unique=True).flatmap(
    lambda keys: st.fixed_dictionaries({key: SECTIONS[key] for key in keys}))


def write_temporary(text: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="config-property-"))
    path = folder / "search.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line_naming(error: ConfigError, *names: str) -> None:
    """The message is one line and names one of ``names`` (as written, or as repr escapes it)."""
    message = str(error)
    assert message and "\n" not in message and "Traceback" not in message
    assert any(name in message or repr(name)[1:-1] in message for name in names), (message, names)


@given(overrides)
def test_valid_overrides_round_trip_through_to_dict_and_yaml(data):
    config = config_from_dict(data)
    assert flatten(to_dict(config)).items() >= flatten(data).items()
    assert config_from_dict(to_dict(config)) == config
    path = write_temporary(yaml.safe_dump(to_dict(config)))
    assert load_search_config(path) == config
    assert load_search_config(write_temporary(yaml.safe_dump(data))) == config


@given(overrides)
def test_dotted_overrides_build_the_config_the_nested_dict_does(data):
    assert SearchConfig().replace(**flatten(data)) == config_from_dict(data)


def leaf_keys() -> list[tuple[str, typing.Any]]:
    """(dotted key, annotation) of every leaf field of SearchConfig."""
    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            hint = hints[field.name]
            yield from walk(hint, f"{prefix}{field.name}.") if dataclasses.is_dataclass(hint) else [(prefix + field.name, hint)]

    return list(walk(SearchConfig, ""))


LEAVES = leaf_keys()
KEYS = [key for key, _ in LEAVES]


SECTION_KEYS = sorted({key.rpartition(".")[0] for key in KEYS} - {""})


def section_fields(section: str) -> set[str]:
    cls = SearchConfig
    for part in filter(None, section.split(".")):
        cls = typing.get_type_hints(cls)[part]
    return {field.name for field in dataclasses.fields(cls)}


def wrong_values(hint) -> st.SearchStrategy:
    """Values whose type the annotation does not allow (an int is a valid float)."""
    allowed = set(typing.get_args(hint)) if isinstance(hint, typing.types.UnionType) else {hint}
    kinds = {int: st.integers(-5, 5), float: st.floats(allow_nan=False), str: st.text(max_size=8),
             bool: st.booleans(), type(None): st.none()}
    wrong = [strategy for kind, strategy in kinds.items()
             if kind not in allowed and not (kind is int and float in allowed)]
    return st.one_of(*wrong, st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(),
                                                                                    max_size=2))


@given(st.sampled_from(LEAVES).flatmap(lambda leaf: st.tuples(st.just(leaf[0]), wrong_values(leaf[1]))))
def test_a_mistyped_value_is_one_line_naming_its_key(mistyped):
    key, value = mistyped
    with pytest.raises(ConfigError) as refused:
        SearchConfig().replace(**{key: value})
    assert_one_line_naming(refused.value, key)


FLOAT_KEYS = [key for key, hint in LEAVES if hint is float]


@example("sampling.temperature", 10**400)  # past float's range
@example("mcts.c_puct", float("inf"))
@given(st.sampled_from(FLOAT_KEYS), st.integers() | st.floats())
def test_any_number_for_a_number_key_is_taken_exactly_or_refused_in_one_line(key, value):
    try:
        config = SearchConfig().replace(**{key: value})
    except ConfigError as error:
        assert_one_line_naming(error, key)
    else:
        taken = flatten(to_dict(config))[key]
        assert type(taken) is float and taken == float(value) and math.isfinite(taken)


@given(st.sampled_from(["", *SECTION_KEYS]), st.text(min_size=1, max_size=12))
def test_an_unknown_key_is_one_line_naming_it(section, name):
    assume(name not in section_fields(section) and "." not in name)
    dotted = f"{section}.{name}" if section else name
    with pytest.raises(ConfigError) as refused:
        config_from_dict(C.set_dotted({}, {dotted: 1}))
    assert_one_line_naming(refused.value, f"unknown key {dotted!r}", f"{dotted}:")


def names_the_file_or_a_key(path: Path):
    return (str(path), "unknown key", *(f"{key}:" for key in KEYS + SECTION_KEYS))


@example("method: 2001-02-30")  # PyYAML's own ValueError, IndexError and RecursionError
@example("seed: !!int")
@example("[" * 500)
@given(st.text(max_size=200))
def test_any_text_file_loads_or_is_one_line_naming_the_file_or_key(text):
    path = write_temporary(text)
    try:
        assert isinstance(load_search_config(path), SearchConfig)
    except ConfigError as error:
        assert_one_line_naming(error, *names_the_file_or_a_key(path))


yaml_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3), max_leaves=8)


@given(st.binary(max_size=60))
def test_a_file_of_any_bytes_loads_or_is_one_line_naming_the_file_or_key(data):
    path = write_temporary("")
    path.write_bytes(data)
    try:
        assert isinstance(load_search_config(path), SearchConfig)
    except ConfigError as error:
        assert_one_line_naming(error, *names_the_file_or_a_key(path))


@given(st.dictionaries(st.sampled_from(SECTION_KEYS + KEYS) | st.text(max_size=6), yaml_values, max_size=4),
       st.integers(0, 400))
def test_a_yaml_mapping_cut_anywhere_loads_or_is_one_line_naming_the_file_or_key(data, cut):
    path = write_temporary(yaml.safe_dump(data)[:cut])
    try:
        assert isinstance(load_search_config(path), SearchConfig)
    except ConfigError as error:
        assert_one_line_naming(error, *names_the_file_or_a_key(path))


yaml_scalars = st.text(max_size=20) | st.sampled_from(["2001-02-30", "!!int x", "[", "{a: 1}", "~", "1e3", "0x_",
                                                       "!!float nan", ".inf", "[1, [2]]", "[" * 500])
settings_options = st.lists(st.tuples(st.sampled_from(KEYS + SECTION_KEYS) | st.text(max_size=12), yaml_scalars)
                            .map("=".join) | st.text(max_size=30), max_size=3)


@example(["mcts.children.x=1"])  # a key below a value
@example(["method=!!int x"])
@given(settings_options)
def test_command_line_settings_are_applied_or_refused_in_one_line_naming_the_option(options):
    try:
        chosen = parse_search_settings(options, "--mcts", "budget.tokens=400")
    except ConfigError as error:
        keys = [option.partition("=")[0].strip() for option in options]
        assert_one_line_naming(error, "--mcts", *(key.split(".")[0] for key in keys if key))
    else:
        assert isinstance(SearchConfig().replace(**chosen), SearchConfig)


@given(st.text(max_size=40) | st.tuples(st.text(max_size=12), yaml_scalars).map("=".join),
       st.dictionaries(st.sampled_from(["search", "problems", "seeds", "sweep"]), yaml_values, max_size=3))
def test_an_experiment_override_is_applied_or_refused_in_one_line(text, data):
    try:
        apply_override(data, *parse_override(text))
    except ConfigError as error:
        assert_one_line_naming(error, "override")
