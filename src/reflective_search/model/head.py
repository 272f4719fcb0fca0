"""The SPRM head: a small MLP on the backbone's hidden state that scores a step.

Layout and state-dict keys match MetaStone-S1's released ``score_module.pt``
(``0.weight, 0.bias, 3.weight, 3.bias``) so released heads load unchanged.
"""

from __future__ import annotations

from torch import nn


def build_head(hidden_size: int, width: int | None = None) -> nn.Sequential:
    """Linear(h, w) -> ReLU -> Dropout(0.5) -> Linear(w, 1); w defaults to 2h. Outputs a logit."""
    width = width or 2 * hidden_size
    return nn.Sequential(nn.Linear(hidden_size, width), nn.ReLU(), nn.Dropout(0.5), nn.Linear(width, 1))


def head_shape(state_dict: dict) -> tuple[int, int]:
    """(input width, hidden width) of a head state dict, from its first layer."""
    width, hidden = state_dict["0.weight"].shape
    return int(hidden), int(width)
