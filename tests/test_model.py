"""ReflectiveModel: scoring from one pass, save/load, MetaStone-S1 files, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reflective_search.errors import ModelError, ProblemError
from reflective_search.model import ModelSettings, ReflectiveModel

RESPONSE = "7*3=21.\n\n12+21=33.\n\nAnswer: 33"


def plain_scores(model, prompt_ids, response_ids, positions):
    """Oracle: the backbone's own hidden_states[-2] at ``positions`` through the head."""
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        hidden = model.backbone(ids, output_hidden_states=True).hidden_states[-2][0]
        return torch.sigmoid(model.head(hidden[positions]).squeeze(-1)).tolist()


def test_score_steps_reads_hidden_states_before_last_layer(char_model):
    prompt_ids = char_model.encode_prompt("Evaluate 12+7*3")
    response_ids = char_model.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    # char tokenizer: token j is character j; the state emitting '.' of step n sits one before
    dots = [i for i, ch in enumerate(RESPONSE) if RESPONSE.startswith(".\n\n", i)]
    positions = [len(prompt_ids) + j - 1 for j in dots] + [len(prompt_ids) + len(RESPONSE) - 1]
    expected = plain_scores(char_model, prompt_ids, response_ids, positions)
    assert char_model.score_steps("Evaluate 12+7*3", RESPONSE) == pytest.approx(expected, abs=1e-6)


def test_merged_delimiter_token_is_scored_where_it_is_emitted(tiny_llama):
    response = "Then 12+21=33.\n\nAnswer: 33.\n\n"
    tokens = tiny_llama.tokenizer.tokenize(response)
    assert tokens[-1] == "21=33.ĊĊAnswer:Ġ33.ĊĊ"  # the BPE merged two delimiters into one token
    response_ids = tiny_llama.tokenizer(response, add_special_tokens=False)["input_ids"]
    prompt_ids = tiny_llama.encode_prompt("q")
    # both steps end inside the last token, so both are read at the state that emits it
    emitting = len(prompt_ids) + len(response_ids) - 2
    expected = plain_scores(tiny_llama, prompt_ids, response_ids, [emitting, emitting])
    assert tiny_llama.score_steps("q", response) == pytest.approx(expected, abs=1e-6)


def test_run_of_delimiters_counts_once(char_model):
    assert len(char_model.score_steps("q", "1+1=2.\n\n.\n\n2+2=4.\n\n")) == 2


def test_save_and_load_round_trip(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "m")
    loaded = ReflectiveModel.from_pretrained(tmp_path / "m")
    assert loaded.settings == tiny_llama.settings
    assert loaded.score_steps("q", RESPONSE) == pytest.approx(tiny_llama.score_steps("q", RESPONSE), abs=1e-6)


def test_metastone_release_loads_and_scores_identically(tiny_qwen, tmp_path):
    release = tmp_path / "metastone"
    tiny_qwen.backbone.save_pretrained(release)
    tiny_qwen.tokenizer.save_pretrained(release)
    torch.save(tiny_qwen.head.state_dict(), release / "score_module.pt")
    loaded = ReflectiveModel.from_pretrained(release)
    assert (loaded.settings.score_final_step, loaded.settings.think_span) == (False, True)
    # The release's scorer never scores the trailing "Answer: 33" step: the two delimited steps remain.
    assert loaded.score_steps("q", RESPONSE) == pytest.approx(tiny_qwen.score_steps("q", RESPONSE)[:2], abs=1e-6)


def test_head_width_mismatch_is_refused(tiny_llama):
    from reflective_search.model.head import build_head

    with pytest.raises(ModelError, match=r"the SPRM head reads width 32 but this model's features are 64 wide "
                                         r"\(1 layer\(s\) of 64\)"):
        ReflectiveModel(tiny_llama.backbone, tiny_llama.tokenizer, build_head(32), ModelSettings())
    with pytest.raises(ModelError, match=r"reads width 64 but this model's features are 128 wide \(2 layer"):
        ReflectiveModel(tiny_llama.backbone, tiny_llama.tokenizer, build_head(64), ModelSettings(feature_layers=(0, -1)))


def test_two_feature_layers_read_both_inputs_concatenated(char_model):
    model = char_model.reading(dataclasses.replace(char_model.settings, feature_layers=(0, -1)))
    prompt_ids = model.encode_prompt("Evaluate 12+7*3")
    response_ids = model.tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    positions = [len(prompt_ids) + j - 1 for j in model.boundary.response_step_tokens(response_ids)]
    ids = torch.tensor([prompt_ids + response_ids])
    with torch.no_grad():
        hidden = model.backbone(ids, output_hidden_states=True).hidden_states
        both = torch.cat([hidden[0][0], hidden[-2][0]], dim=-1)  # inputs of the first and the last layer
        expected = torch.sigmoid(model.head(both[positions]).squeeze(-1)).tolist()
    assert len(expected) == 3
    assert model.score_steps("Evaluate 12+7*3", RESPONSE) == pytest.approx(expected, abs=1e-6)


def test_feature_layers_survive_a_round_trip_and_old_configs_load(tiny_llama, tmp_path):
    import json

    model = tiny_llama.reading(dataclasses.replace(tiny_llama.settings, feature_layers=(0, -1)))
    model.save_pretrained(tmp_path / "m")
    config = tmp_path / "m" / "reflective_config.json"
    assert json.loads(config.read_text())["feature_layers"] == [0, -1]
    loaded = ReflectiveModel.from_pretrained(tmp_path / "m")
    assert loaded.settings.feature_layers == (0, -1) and loaded.feature_size == 128
    assert loaded.score_steps("q", RESPONSE) == pytest.approx(model.score_steps("q", RESPONSE), abs=1e-6)
    tiny_llama.save_pretrained(tmp_path / "old")  # a config written before several layers: one int
    blob = json.loads((tmp_path / "old" / "reflective_config.json").read_text())
    blob["feature_layer"] = blob.pop("feature_layers")[0]
    (tmp_path / "old" / "reflective_config.json").write_text(json.dumps(blob))
    assert ReflectiveModel.from_pretrained(tmp_path / "old").settings.feature_layers == (-1,)


@pytest.mark.parametrize("layers, message", [
    ((1, -1), r"feature layers \[1, -1\] name a layer twice: list each decoder layer once"),
    ((2,), r"feature layers \[2\]: the backbone has 2 decoder layers; name one or more of 0..1 \(or -1 for the last\)"),
    ((), r"feature layers \[\]: the backbone has 2 decoder layers"),
])
def test_bad_feature_layers_are_refused(tiny_llama, layers, message):
    from reflective_search.model.head import build_head

    with pytest.raises(ModelError, match=message):
        ReflectiveModel(tiny_llama.backbone, tiny_llama.tokenizer, build_head(64), ModelSettings(feature_layers=layers))


def test_missing_head_file_is_named(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "sprm_head.safetensors").unlink()
    with pytest.raises(ModelError, match=r"sprm_head.safetensors is missing"):
        ReflectiveModel.from_pretrained(tmp_path / "m")


def test_truncated_head_file_is_named(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "m")
    head = tmp_path / "m" / "sprm_head.safetensors"
    head.write_bytes(head.read_bytes()[:40])
    with pytest.raises(ModelError, match=r"sprm_head.safetensors is corrupted or truncated"):
        ReflectiveModel.from_pretrained(tmp_path / "m")


def test_missing_backbone_config_is_named(tiny_llama, tmp_path):
    tiny_llama.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "config.json").unlink()
    with pytest.raises(ModelError, match="has no config.json: the backbone files are missing"):
        ReflectiveModel.from_pretrained(tmp_path / "m")


def test_directory_without_head_is_refused(tmp_path):
    with pytest.raises(ModelError, match="holds neither reflective_config.json nor score_module.pt"):
        ReflectiveModel.from_pretrained(tmp_path)


def test_nonexistent_directory_is_refused(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ReflectiveModel.from_pretrained(tmp_path / "nowhere")


def test_tokenizer_without_delimiter_is_refused(char_model):
    settings = ModelSettings(delimiters=("\u00a7\u00a7",))
    with pytest.raises(ModelError, match="the tokenizer cannot write any delimiter"):
        ReflectiveModel(char_model.backbone, char_model.tokenizer, char_model.head, settings)


def test_nan_head_scores_are_refused(char_model):
    broken = ReflectiveModel(char_model.backbone, char_model.tokenizer, torch.nn.Sequential(*char_model.head), char_model.settings)
    broken.head = torch.nn.Sequential(*[torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(64, 1)])
    with torch.no_grad():
        broken.head[3].bias.fill_(float("nan"))
    with pytest.raises(ModelError, match="the SPRM head produced NaN scores"):
        broken.score_steps("q", "1+1=2.\n\n")


@pytest.mark.parametrize("problem, message", [("", "the problem is empty"), ("   ", "the problem is empty"),
                                               (42, "a problem must be a string, got int")])
def test_bad_problems_are_refused(tiny_llama, problem, message):
    with pytest.raises(ProblemError, match=message):
        tiny_llama.encode_prompt(problem)


def test_prompt_longer_than_context_is_refused(char_model):
    with pytest.raises(ProblemError, match=r"the model's context is 64 tokens: shorten the problem"):
        char_model.encode_prompt("1+" * 40)


def test_chat_template_formats_prompt_when_present(tiny_llama):
    tokenizer = tiny_llama.tokenizer
    tokenizer.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}"
    try:
        assert tiny_llama.format_prompt("hi") == "<s>hi</s>"
    finally:
        tokenizer.chat_template = None
    assert tiny_llama.format_prompt("hi") == "hi\n\n"


def test_a_multibyte_delimiter_split_into_byte_tokens_can_end_a_step():
    from reflective_search.model.steps import StepBoundary
    from reflective_search.model.tokenizer import train_bpe_tokenizer

    tokenizer = train_bpe_tokenizer(["1+1=2. 2+2=4."] * 5, vocab_size=270)
    ids = tokenizer.encode("2\u3002", add_special_tokens=False)
    assert len(ids) > 2  # the ideographic full stop is three byte tokens here
    boundary = StepBoundary(tokenizer, ("\u3002",))
    assert boundary.may_end[ids[-1]]
    assert boundary.find(tokenizer.decode(ids)) == (1, 2)


def test_wrapping_a_backbone_again_adds_no_hook_and_keeps_features(char_model):
    from reflective_search.model import ReflectiveModel

    layer = char_model.decoder_layers()[-1]
    hooks = len(layer._forward_pre_hooks)
    again = ReflectiveModel(char_model.backbone, char_model.tokenizer, char_model.head, char_model.settings)
    ReflectiveModel(char_model.backbone, char_model.tokenizer, char_model.head, char_model.settings)
    assert len(layer._forward_pre_hooks) == hooks == 1
    assert again.score_steps("Evaluate 12+7*3", RESPONSE) == char_model.score_steps("Evaluate 12+7*3", RESPONSE)
