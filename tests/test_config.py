"""Search configuration: defaults, overrides, and every refusal message."""

from __future__ import annotations

import pytest

from reflective_search.config import SearchConfig, config_from_dict, load_search_config
from reflective_search.errors import ConfigError


def test_documented_schema_keys_exist_with_defaults():
    config = SearchConfig()
    assert (config.method, config.expander, config.seed) == ("mcts", "shared", 0)
    assert (config.sampling.temperature, config.sampling.top_p) == (0.7, 0.95)
    assert (config.budget.tokens, config.budget.expansions) == (4096, None)
    assert (config.mcts.children, config.mcts.c_puct, config.mcts.batch_leaves) == (4, 1.5, 4)
    assert (config.beam.width, config.beam.expand, config.majority.n, config.best_of_n.n) == (4, 4, 8, 8)


def test_dict_overrides_nested_keys():
    config = load_search_config({"method": "beam", "beam": {"width": 2}, "sampling": {"temperature": 1}})
    assert (config.method, config.beam.width, config.beam.expand, config.sampling.temperature) == ("beam", 2, 4, 1.0)


def test_yaml_file_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method: best_of_n\nbest_of_n:\n  effort: high\n")
    assert load_search_config(path).best_of_n.samples == 32


def test_unknown_key_names_nearest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown key 'mcts.c_pucct' \(did you mean 'c_puct'\?\)"):
        config_from_dict({"mcts": {"c_pucct": 2}})


def test_unknown_top_level_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="unknown key 'methd'.*did you mean 'method'.*valid keys: method"):
        config_from_dict({"methd": "mcts"})


def test_wrong_type_is_refused_with_expected_type():
    with pytest.raises(ConfigError, match=r"mcts.children: 'four' has the wrong type; expected int"):
        config_from_dict({"mcts": {"children": "four"}})


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match="seed: True has the wrong type"):
        config_from_dict({"seed": True})


@pytest.mark.parametrize("tokens", [0, -5])
def test_budget_of_zero_or_below_is_refused(tokens):
    with pytest.raises(ConfigError, match=rf"budget.tokens: {tokens} is not allowed; expected an integer >= 1 or null"):
        config_from_dict({"budget": {"tokens": tokens}})


def test_budget_needs_a_limit():
    with pytest.raises(ConfigError, match="budget: 'both null'"):
        config_from_dict({"budget": {"tokens": None, "expansions": None}})


def test_method_must_be_known():
    with pytest.raises(ConfigError, match=r"method: 'dfs' is not allowed; expected greedy \| majority \| best_of_n \| beam \| dvts \| rebase \| mcts"):
        SearchConfig(method="dfs")


def test_malformed_yaml_names_the_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("method: mcts\nmcts: {children: 2\n")
    with pytest.raises(ConfigError, match=r"bad.yaml at line \d+"):
        load_search_config(path)


def test_replace_applies_dotted_overrides():
    config = SearchConfig().replace(**{"mcts.children": 2, "method": "beam"})
    assert (config.mcts.children, config.method, config.mcts.c_puct) == (2, "beam", 1.5)


@pytest.mark.parametrize("value", [0, False, [], ""])
def test_a_section_must_be_a_mapping_or_null(value):
    with pytest.raises(ConfigError, match=r"^mcts: expected a mapping of keys"):
        config_from_dict({"mcts": value})


def test_every_expander_name_the_config_accepts_can_be_built_and_no_other():
    from reflective_search import config, expand

    assert set(expand.EXPANDERS) == set(config.EXPANDERS)
