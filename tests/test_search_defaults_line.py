"""`solve` and `evaluate search` say on stderr which search defaults they use and where they come from."""

from __future__ import annotations

import dataclasses

from conftest import build_char_model
from reflective_search.cli import main
from reflective_search.commands import search_defaults_line
from reflective_search.train.tasks import get_task

LIMITS = (("sampling.max_step_tokens", 8), ("sampling.max_steps", 2))


def carrying(model, defaults):
    return model.with_head(model.head, dataclasses.replace(model.settings, search_defaults=defaults))


def test_the_line_names_the_model_the_task_or_the_library(tiny_llama):
    saved = carrying(tiny_llama, LIMITS)
    saved.source = "/somewhere/runs/my-model"
    assert search_defaults_line(saved) == \
        "search defaults: sampling.max_step_tokens=8, sampling.max_steps=2 (saved with my-model)"
    assert search_defaults_line(carrying(tiny_llama, ())) == ("search defaults: the library's, "
                                                              "sampling.max_step_tokens=256, sampling.max_steps=32 "
                                                              "(the model carries none)")
    assert search_defaults_line(carrying(tiny_llama, ()), get_task("countdown")) == (
        "search defaults: sampling.max_step_tokens=32, sampling.max_steps=6 (the countdown task's): "
        "the model carries none")
    some = carrying(tiny_llama, (("sampling.max_steps", 4),))
    some.source = "runs/m"
    assert search_defaults_line(some, get_task("countdown")) == (
        "search defaults: sampling.max_steps=4 (saved with m); sampling.max_step_tokens=32 (the countdown task's)")
    assert search_defaults_line(carrying(tiny_llama, ()), get_task("math")) == search_defaults_line(
        carrying(tiny_llama, ()))  # a task without defaults of its own adds nothing


def test_solve_says_which_defaults_it_searches_with(tmp_path, capsys):
    model = build_char_model("0123456789+-*/=()., \nAnswerEvaluatNumbsTg:", max_positions=64, seed=3)
    carrying(model, LIMITS).save_pretrained(tmp_path / "limited")
    model.save_pretrained(tmp_path / "plain")
    assert main(["solve", "Evaluate: 2+2", "--model", str(tmp_path / "limited"), "--method", "greedy"]) == 0
    assert capsys.readouterr().err.splitlines()[-1] == (
        "search defaults: sampling.max_step_tokens=8, sampling.max_steps=2 (saved with limited)")
    assert main(["solve", "Evaluate: 2+2", "--model", str(tmp_path / "plain"), "--method", "greedy"]) == 0
    assert "search defaults: the library's, sampling.max_step_tokens=256, sampling.max_steps=32 " \
           "(the model carries none)" in capsys.readouterr().err.splitlines()
