"""Merging a saved LoRA adapter into its base's weights without importing peft.

Importing peft costs seconds (5 s on an idle core here, 14 s on a busy one), more than the
merge it is needed for: a plain LoRA adapter merges as ``W += (lora_alpha / r) * B @ A`` on
each target linear map, computed in float32 and cast to the weight's dtype, as peft's
``merge_and_unload`` computes it. Adapters outside that form (DoRA, rsLoRA, biases, ranks
per module, saved modules or embeddings) are left to peft: ``plain_lora`` says which is which.
"""

from __future__ import annotations

import torch

PREFIX = "base_model.model."  # how peft names the wrapped model's modules in a saved adapter
SIDES = {"lora_A.weight": 0, "lora_B.weight": 1}


def plain_lora(config: dict) -> bool:
    """Whether every saved pair merges as ``W += (lora_alpha / r) * B @ A``."""
    extras = ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "modules_to_save", "fan_in_fan_out",
              "lora_bias", "trainable_token_indices", "layer_replication", "target_parameters")
    return config.get("peft_type") == "LORA" and config.get("bias", "none") == "none" and not any(
        config.get(key) for key in extras)


def merge_lora(backbone: torch.nn.Module, weights: dict[str, torch.Tensor], config: dict) -> None:
    """Add each saved (A, B) pair into its linear map of ``backbone``, in place; ValueError
    names a pair that is incomplete, has no module, or does not fit it."""
    scale = config["lora_alpha"] / config["r"]
    modules = dict(backbone.named_modules())
    for name, (down, up) in lora_pairs(weights).items():
        linear = modules.get(name)
        if not isinstance(linear, torch.nn.Linear) or up.shape[0] != linear.out_features \
                or down.shape[1] != linear.in_features or up.shape[1] != down.shape[0]:
            raise ValueError(f"the pair for {name} does not fit a linear map of the base")
        with torch.no_grad():
            linear.weight += ((up.float() @ down.float()) * scale).to(linear.weight.dtype)


def lora_pairs(weights: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """{module name: (A, B)} from an adapter file's tensors."""
    pairs: dict[str, list] = {}
    for key, tensor in weights.items():
        module, _, side = key.removeprefix(PREFIX).partition(".lora_")
        if not key.startswith(PREFIX) or "lora_" + side not in SIDES:
            raise ValueError(f"{key} is not a LoRA weight")
        pairs.setdefault(module, [None, None])[SIDES["lora_" + side]] = tensor
    incomplete = [name for name, pair in pairs.items() if pair[0] is None or pair[1] is None]
    if incomplete:
        raise ValueError(f"{incomplete[0]} lacks its A or B weight")
    return {name: (pair[0], pair[1]) for name, pair in pairs.items()}
