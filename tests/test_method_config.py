"""Bad input for the DVTS, REBASE, Gumbel and selection keys: each refused with its one-line message."""

from __future__ import annotations

import pytest

from reflective_search.config import SearchConfig, config_from_dict
from reflective_search.errors import ConfigError

BAD = {
    "dvts width 0": ({"dvts": {"width": 0}}, "dvts.width: 0 is not allowed; expected an integer >= 1"),
    "dvts n 0": ({"dvts": {"n": 0}}, "dvts.n: 0 is not allowed; expected an integer >= 1"),
    "dvts n not a multiple": ({"dvts": {"n": 6, "width": 4}},
                              "dvts.n: 6 is not allowed; expected a multiple of dvts.width (4)"),
    "rebase width 0": ({"rebase": {"width": 0}}, "rebase.width: 0 is not allowed; expected an integer >= 1"),
    "rebase temperature 0": ({"rebase": {"temperature": 0}},
                             "rebase.temperature: 0.0 is not allowed; expected a number > 0"),
    "rebase temperature < 0": ({"rebase": {"temperature": -0.5}},
                               "rebase.temperature: -0.5 is not allowed; expected a number > 0"),
    "considered above children": ({"mcts": {"root": "gumbel", "children": 4, "gumbel": {"considered": 8}}},
                                  "mcts.gumbel.considered: 8 is not allowed; expected an integer <= the root's "
                                  "children (4)"),
    "considered above root children": ({"mcts": {"root": "gumbel", "children": 8, "root_children": 2,
                                                 "gumbel": {"considered": 4}}},
                                       "mcts.gumbel.considered: 4 is not allowed; expected an integer <= the root's "
                                       "children (2)"),
    "root children 0": ({"mcts": {"root_children": 0}},
                        "mcts.root_children: 0 is not allowed; expected an integer >= 1 or null"),
    "considered 0": ({"mcts": {"gumbel": {"considered": 0}}},
                     "mcts.gumbel.considered: 0 is not allowed; expected an integer >= 1"),
    "negative gumbel scale": ({"mcts": {"gumbel": {"scale": -1}}},
                              "mcts.gumbel.scale: -1.0 is not allowed; expected a number >= 0"),
    "unknown root rule": ({"mcts": {"root": "ucb"}}, "mcts.root: 'ucb' is not allowed; expected puct | gumbel"),
    "unknown selection": ({"select": "majority"},
                          "select: 'majority' is not allowed; expected best | vote | weighted_vote"),
    "unknown answer key": ({"answer_key": "chess"},
                           "answer_key: 'chess' is not allowed; expected math | countdown"),
    "mcts.answer is gone": ({"mcts": {"answer": "vote"}},
                            "mcts.answer: removed; set the top-level search key 'select' (best | vote | weighted_vote)"),
    "dvts typo": ({"dvts": {"widht": 2}},
                  "unknown key 'dvts.widht' (did you mean 'width'?); valid keys: n, width, aggregate"),
    "rebase typo": ({"rebase": {"temprature": 1}}, "unknown key 'rebase.temprature' (did you mean 'temperature'?); "
                                                   "valid keys: width, temperature, aggregate"),
    "gumbel typo": ({"mcts": {"gumbel": {"considerd": 2}}}, "unknown key 'mcts.gumbel.considerd' (did you mean "
                                                            "'considered'?); valid keys: considered, scale"),
    "select typo": ({"selct": "vote"}, "unknown key 'selct' (did you mean 'select'?); valid keys: "),
}


@pytest.mark.parametrize("data,message", BAD.values(), ids=BAD.keys())
def test_bad_method_config_is_refused_with_its_message(data, message):
    with pytest.raises(ConfigError) as error:
        config_from_dict(data)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_considered_above_children_is_fine_while_the_root_is_puct():
    assert config_from_dict({"mcts": {"children": 2}}).mcts.gumbel.considered == 4


def test_a_gumbel_root_considers_up_to_the_root_children():
    mcts = config_from_dict({"mcts": {"root": "gumbel", "children": 2, "root_children": 8,
                                      "gumbel": {"considered": 8}}}).mcts
    assert (mcts.children_at(0), mcts.children_at(1), mcts.children_at(5)) == (8, 2, 2)


@pytest.mark.parametrize("method", ["dvts", "rebase"])
def test_new_methods_build_from_python(method):
    assert SearchConfig(method=method).method == method
