"""Loading a LoRA adapter merges it by hand (no peft import): the same weights peft's
merge_and_unload gives, the shipped adapter takes that path, and a broken pair is named."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import require_smol
from reflective_search.errors import ModelError
from reflective_search.model.lora import lora_pairs, merge_lora, plain_lora
from reflective_search.shipped import shipped_model_path


def _copy(backbone):
    """A second backbone with the same weights (deepcopy trips over the head's feature hook)."""
    twin = type(backbone)(backbone.config)
    twin.load_state_dict(backbone.state_dict())
    return twin


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_merged_adapter_equals_peft_merge_and_unload(tiny_llama, tmp_path, dtype):
    from peft import LoraConfig, PeftModel, get_peft_model
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)  # init_lora_weights=False: B is random too, so the merge moves every weight
    lora = LoraConfig(r=4, lora_alpha=12, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(_copy(tiny_llama.backbone), lora).save_pretrained(tmp_path)
    weights = {key: t.to(dtype) for key, t in load_file(str(tmp_path / "adapter_model.safetensors")).items()}
    save_file(weights, str(tmp_path / "adapter_model.safetensors"))  # the shipped adapter is stored in bf16
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    reference = PeftModel.from_pretrained(_copy(tiny_llama.backbone), tmp_path).merge_and_unload()
    ours = _copy(tiny_llama.backbone)
    merge_lora(ours, weights, config)
    assert plain_lora(config) and len(lora_pairs(weights)) == 2 * 7  # 7 linear maps in each of 2 layers
    theirs = reference.state_dict()
    moved = [key for key, value in ours.state_dict().items() if not torch.equal(value, tiny_llama.backbone.state_dict()[key])]
    assert len(moved) == 14 and all(torch.equal(value, theirs[key]) for key, value in ours.state_dict().items())


@pytest.mark.parametrize("change", [{"use_dora": True}, {"use_rslora": True}, {"bias": "all"}, {"rank_pattern": {"q": 2}},
                                    {"modules_to_save": ["lm_head"]}, {"peft_type": "IA3"},
                                    {"alora_invocation_tokens": [7]}, {"an_option_a_later_peft_adds": True}])
def test_adapters_that_are_not_plain_lora_are_left_to_peft(change):
    config = json.loads((shipped_model_path("countdown-smol") / "adapter_config.json").read_text())
    assert plain_lora(config) and not plain_lora({**config, **change})


def test_what_is_not_a_linear_map_pair_is_left_to_peft_untouched(tiny_llama):
    config = json.loads((shipped_model_path("countdown-smol") / "adapter_config.json").read_text())
    before = {key: value.clone() for key, value in tiny_llama.backbone.state_dict().items()}
    embedding = {"base_model.model.model.embed_tokens.lora_embedding_A": torch.ones(2, 4)}
    not_linear = {"base_model.model.model.norm.lora_A.weight": torch.ones(2, 64),
                  "base_model.model.model.norm.lora_B.weight": torch.ones(64, 2)}
    assert lora_pairs(embedding) is None and lora_pairs({"model.layers.0.q_proj.lora_A.weight": torch.ones(2)}) is None
    assert not merge_lora(tiny_llama.backbone, embedding, config)
    assert not merge_lora(tiny_llama.backbone, not_linear, config)
    assert not merge_lora(tiny_llama.backbone, {}, config)
    assert all(torch.equal(value, before[key]) for key, value in tiny_llama.backbone.state_dict().items())


def test_a_pair_missing_a_half_is_named():
    with pytest.raises(ValueError, match="^model.layers.0.q_proj lacks its A or B weight$"):
        lora_pairs({"base_model.model.model.layers.0.q_proj.lora_A.weight": torch.zeros(2, 4)})


def test_the_shipped_adapter_loads_without_peft_and_a_pair_that_does_not_fit_is_named(smol_cache, tmp_path, monkeypatch):
    from safetensors.torch import load_file, save_file

    from reflective_search.model.checkpoint import load_model

    require_smol()
    folder = shutil.copytree(shipped_model_path("countdown-smol"), tmp_path / "smol")
    monkeypatch.setitem(__import__("sys").modules, "peft", None)  # any `import peft` now raises ImportError
    model = load_model(folder)
    assert type(model.backbone).__name__ == "LlamaForCausalLM"
    weights = load_file(str(folder / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.3.self_attn.k_proj.lora_B.weight"
    weights[key] = weights[key][:-1]  # one output row short
    save_file(weights, str(folder / "adapter_model.safetensors"))
    with pytest.raises(ModelError) as error:
        load_model(folder)
    assert str(error.value) == (f"{folder}: the LoRA adapter is corrupted or incomplete (the pair for "
                                "model.layers.3.self_attn.k_proj does not fit its linear map (192 x 576): B is (191, 16), "
                                "A is (16, 576)): re-save the model")
