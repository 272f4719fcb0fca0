"""Steering a real tiny model in tests: make one token win every sampling step."""

from __future__ import annotations


def force_token(model, token: int):
    """Make ``token`` the argmax everywhere (a forward hook on the LM head); returns the handle."""
    def boost(module, inputs, logits):
        boosted = logits.clone()
        boosted[..., token] += 1e4
        return boosted

    return model.backbone.lm_head.register_forward_hook(boost)


def force_sequence(model, tokens):
    """Make the i-th forward pass after this call emit ``tokens[i]`` (the last one repeats).

    Rows decode in step, one forward per new token, so every row writes the same text:
    enough to hand a checker responses whose answers are known. Returns the hook handle.
    """
    calls = [0]

    def boost(module, inputs, logits):
        boosted = logits.clone()
        boosted[..., tokens[min(calls[0], len(tokens) - 1)]] += 1e4
        calls[0] += 1
        return boosted

    return model.backbone.lm_head.register_forward_hook(boost)
