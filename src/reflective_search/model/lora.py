"""Merging a saved LoRA adapter into its base's weights without importing peft.

A plain LoRA adapter merges as ``W += (lora_alpha / r) * B @ A`` on each target linear map,
computed in float32 and cast to the weight's dtype, as peft's ``merge_and_unload`` computes
it. Done by hand it takes 0.34 s for countdown-smol's 210 maps on one idle core; peft's path
(import, wrapping every map, merging, unwrapping) took 0.7 s, and seconds on a busy machine. Adapters outside that form (DoRA, rsLoRA, biases, ranks
per module, saved modules or embeddings) are left to peft: ``plain_lora`` says which is which.
"""

from __future__ import annotations

import torch

PREFIX = "base_model.model."  # how peft names the wrapped model's modules in a saved adapter
SIDES = {"lora_A.weight": 0, "lora_B.weight": 1}
# Adapter settings that leave the merge W += (lora_alpha / r) * B @ A as it is, whatever their
# value (naming, initialisation, dropout, which layers were targeted). Any other setting that
# is set (DoRA, rsLoRA, biases, per-module ranks, aLoRA, layer replication, settings a later
# peft adds) leaves the adapter to peft.
NEUTRAL = frozenset({
    "peft_type", "r", "lora_alpha", "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern",
    "base_model_name_or_path", "revision", "task_type", "inference_mode", "peft_version", "auto_mapping",
    "init_lora_weights", "lora_dropout", "bias", "eva_config", "corda_config", "loftq_config", "lora_ga_config",
    "qalora_group_size", "megatron_core",
})


def plain_lora(config: dict) -> bool:
    """Whether the adapter's settings make its merge ``W += (lora_alpha / r) * B @ A``."""
    return (config.get("peft_type") == "LORA" and config.get("bias", "none") == "none"
            and not any(value for key, value in config.items() if key not in NEUTRAL))


def merge_lora(backbone: torch.nn.Module, weights: dict[str, torch.Tensor], config: dict) -> bool:
    """Add each saved (A, B) pair into its linear map of ``backbone``, in place, and return
    True; False, with nothing changed, when the adapter is not plain LoRA on linear maps
    (peft's to merge). ValueError names a pair that is incomplete or does not fit its map."""
    pairs = lora_pairs(weights) if plain_lora(config) else None
    modules = dict(backbone.named_modules())
    if not pairs or not all(isinstance(modules.get(name), torch.nn.Linear) for name in pairs):
        return False
    for name, (down, up) in pairs.items():
        linear = modules[name]
        if up.shape[0] != linear.out_features or down.shape[1] != linear.in_features or up.shape[1] != down.shape[0]:
            raise ValueError(f"the pair for {name} does not fit its linear map ({linear.out_features} x "
                             f"{linear.in_features}): B is {tuple(up.shape)}, A is {tuple(down.shape)}")
    scale = config["lora_alpha"] / config["r"]
    with torch.no_grad():
        for name, (down, up) in pairs.items():
            weight = modules[name].weight
            weight += ((up.float() @ down.float()) * scale).to(weight.dtype)
    return True


def lora_pairs(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]] | None:
    """{module name: (A, B)} from an adapter file's tensors; None when some tensor is not a
    linear map's A or B (embedding LoRA, saved modules: peft's to load)."""
    pairs: dict[str, list] = {}
    for key, tensor in weights.items():
        module, _, side = key.removeprefix(PREFIX).partition(".lora_")
        if not key.startswith(PREFIX) or "lora_" + side not in SIDES:
            return None
        pairs.setdefault(module, [None, None])[SIDES["lora_" + side]] = tensor
    incomplete = [name for name, pair in pairs.items() if pair[0] is None or pair[1] is None]
    if incomplete:
        raise ValueError(f"{incomplete[0]} lacks its A or B weight")
    return {name: (pair[0], pair[1]) for name, pair in pairs.items()}
