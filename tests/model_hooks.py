"""Steering a real tiny model in tests: make one token win every sampling step."""

from __future__ import annotations


def force_token(model, token: int):
    """Make ``token`` the argmax everywhere (a forward hook on the LM head); returns the handle."""
    def boost(module, inputs, logits):
        boosted = logits.clone()
        boosted[..., token] += 1e4
        return boosted

    return model.backbone.lm_head.register_forward_hook(boost)
