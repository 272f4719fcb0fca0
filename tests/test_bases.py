"""Base models by name (SmolLM2 from its installed GGUF), their cache, and what a model carries."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from reflective_search import ReflectiveSearch, SearchConfig
from reflective_search.errors import ModelError
from reflective_search.model import ReflectiveModel
from reflective_search.model.bases import BASES, MANIFEST, BaseModel, _cache_problem


def test_smollm2_loads_by_name_and_caches_a_safetensors_copy(smol, smol_cache):
    folder = smol_cache / "bases" / "smollm2-135m-instruct"
    assert (folder / MANIFEST).is_file() and (folder / "model.safetensors").is_file()
    assert (smol.hidden_size, len(smol.decoder_layers()), len(smol.tokenizer)) == (576, 30, 49152)
    assert (smol.source, smol.base_name, smol.settings.head_trained) == ("smollm2-135m-instruct",) * 2 + (False,)
    assert smol.format_prompt("hi").endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_a_corrupted_cache_is_rebuilt_with_one_line(smol, smol_cache, capfd):
    ids = torch.tensor([smol.encode_prompt("Numbers: 3 7 8. Target: 29.")])
    with torch.no_grad():
        before = smol.backbone(ids).logits
    weights = smol_cache / "bases" / "smollm2-135m-instruct" / "model.safetensors"
    size = weights.stat().st_size
    # Replace the file by a half-length copy instead of truncating it in place: models of this
    # session map the old file's pages, and a truncated mapping faults (SIGBUS) when read.
    half = weights.with_name("half.partial")
    with open(weights, "rb") as source:
        half.write_bytes(source.read(size // 2))
    half.replace(weights)
    capfd.readouterr()
    again = ReflectiveModel.from_pretrained("smollm2-135m-instruct")
    notes = [line for line in capfd.readouterr().err.splitlines() if line.startswith("note: the cached copy")]
    assert notes == [f"note: the cached copy of smollm2-135m-instruct at {weights.parent} is corrupt "
                     f"(model.safetensors is not the {size} bytes written); rebuilding it"]
    assert weights.stat().st_size == size
    with torch.no_grad():
        assert torch.equal(again.backbone(ids).logits, before)


def test_a_cache_without_its_manifest_is_partial(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"half")
    assert _cache_problem(tmp_path) == "missing or partial (no manifest)"
    (tmp_path / MANIFEST).write_text('{"files": {"model.safetensors": 9}}', encoding="utf-8")
    assert _cache_problem(tmp_path) == "corrupt (model.safetensors is not the 9 bytes written)"
    (tmp_path / MANIFEST).write_text('{"files": {"model.safetensors": 4}}', encoding="utf-8")
    assert _cache_problem(tmp_path) is None


def test_a_missing_base_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("REFLECTIVE_SEARCH_CACHE", str(tmp_path))
    monkeypatch.setitem(BASES, "absent-base", BaseModel("no_such_package_here", "w.gguf", "pip install absent-base"))
    with pytest.raises(ModelError) as caught:
        ReflectiveModel.from_pretrained("absent-base")
    assert str(caught.value) == "the base model absent-base needs the no_such_package_here package: run `pip install absent-base`"


def test_an_untrained_head_is_named_once(tiny_llama, monkeypatch):
    import weakref

    from reflective_search import facade

    # tiny_llama is session-wide: an earlier test's search has already had its one warning
    monkeypatch.setattr(facade, "_WARNED", weakref.WeakSet())
    with pytest.warns(UserWarning) as record:
        ReflectiveSearch(tiny_llama, {"method": "greedy"})
        ReflectiveSearch(tiny_llama, {"method": "beam"})
    messages = [str(w.message) for w in record if "never trained" in str(w.message)]
    assert messages == [f"{tiny_llama.source}: its SPRM head was never trained, so its step scores mean nothing; "
                        "train one with `reflective-search train sprm`"]


def _with_settings(model: ReflectiveModel, **changes) -> ReflectiveModel:
    return model.with_head(model.head, dataclasses.replace(model.settings, **changes))


def test_a_model_carries_its_task_search_defaults_and_config_overrides_them(tiny_llama, tmp_path):
    model = _with_settings(tiny_llama, search_defaults=(("sampling.max_step_tokens", 8), ("mcts.children", 2)))
    model.save_pretrained(tmp_path / "m")
    loaded = ReflectiveModel.from_pretrained(tmp_path / "m")
    assert loaded.settings.search_defaults == (("sampling.max_step_tokens", 8), ("mcts.children", 2))
    assert ReflectiveSearch(loaded).config.sampling.max_step_tokens == 8
    assert ReflectiveSearch(loaded, {"sampling": {"max_step_tokens": 5}}).config.sampling.max_step_tokens == 5
    chosen = ReflectiveSearch(loaded, SearchConfig(method="greedy")).config
    assert (chosen.method, chosen.sampling.max_step_tokens, chosen.mcts.children) == ("greedy", 8, 2)
    assert ReflectiveSearch(loaded, SearchConfig().replace(**{"mcts.children": 3})).config.mcts.children == 3


def test_the_saved_task_prompt_goes_inside_the_chat_template(tiny_llama, tmp_path):
    tokenizer = copy.deepcopy(tiny_llama.tokenizer)
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}</{{ m.role }}>{% endfor %}<a>"
    model = ReflectiveModel(tiny_llama.backbone, tokenizer, tiny_llama.head,
                            dataclasses.replace(tiny_llama.settings, message_template="Solve: {problem}"))
    assert model.format_prompt("1+1") == "<user>Solve: 1+1</user><a>"
    model.save_pretrained(tmp_path / "m")
    loaded = ReflectiveModel.from_pretrained(tmp_path / "m")
    assert loaded.format_prompt("1+1") == "<user>Solve: 1+1</user><a>"
    solution = ReflectiveSearch(loaded, {"method": "greedy", "sampling": {"max_step_tokens": 4, "max_steps": 1}}).solve("1+1")
    assert solution.problem == "1+1"


def test_from_backbone_takes_a_trained_head_and_its_standardisation(tiny_llama, tmp_path):
    state = {key: value.clone() for key, value in tiny_llama.head.state_dict().items()}
    norm = (torch.full((64,), 0.5), torch.full((64,), 2.0))
    model = ReflectiveModel.from_backbone(tiny_llama.backbone, tiny_llama.tokenizer, head=state, feature_norm=norm)
    assert model.settings.head_trained  # a given head is taken as trained: no warning
    features = torch.randn(3, 64)
    with torch.no_grad():
        expected = torch.sigmoid(tiny_llama.head((features - 0.5) / 2.0).squeeze(-1))
    assert torch.allclose(model.score_features(features), expected, atol=1e-6)
    model.save_pretrained(tmp_path / "m")
    loaded = ReflectiveModel.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.feature_norm[0], norm[0]) and torch.equal(loaded.feature_norm[1], norm[1])
    assert torch.allclose(loaded.score_features(features), expected, atol=1e-6)
    with pytest.raises(ModelError, match=r"the head's state dict lacks \['3.weight', '3.bias'\]"):
        ReflectiveModel.from_backbone(tiny_llama.backbone, tiny_llama.tokenizer,
                                      head={k: v for k, v in state.items() if k.startswith("0.")})


def test_a_standardised_frozen_head_trains_and_scores_as_trained(tiny_llama):
    from reflective_search.train.sprm import HeadConfig, Trajectory, train_head
    from reflective_search.train.step_features import frozen_features
    from reflective_search.train.tasks import TrainingProblem

    problem = TrainingProblem("Evaluate: 2+2", "4")
    responses = [("2+2=4.\n\nAnswer: 4.\n\n", True), ("2+2=5.\n\nAnswer: 5.\n\n", False)] * 4
    trajectories = [Trajectory(problem, tuple(tiny_llama.encode_prompt(problem.text)),
                               tuple(tiny_llama.tokenizer(r, add_special_tokens=False)["input_ids"]), r, ok)
                    for r, ok in responses]
    trained = train_head(tiny_llama, trajectories, HeadConfig(loss="bce", epochs=3, standardise=True))
    features, *_ = frozen_features(tiny_llama, trajectories)
    mean, std = trained.feature_norm
    assert torch.allclose(mean, features.mean(0)) and torch.allclose(std, features.std(0).clamp_min(1e-6))
    assert trained.settings.head_trained
    with pytest.raises(ValueError, match="standardise applies to frozen heads"):
        train_head(tiny_llama, trajectories, HeadConfig(backbone_scale=1e-4, standardise=True))


def test_an_unknown_model_names_every_model_known_by_name(tmp_path):
    with pytest.raises(ModelError) as caught:
        ReflectiveModel.from_pretrained(tmp_path / "nope")
    assert str(caught.value) == (f"model directory {tmp_path / 'nope'} does not exist: pass a saved model's folder or "
                                 "a model's name (arith-smol, countdown-smol, countdown-tiny, smollm2-135m-instruct)")
