"""The SPRM head's losses: MetaStone-S1's SPR loss and plain class-balanced BCE.

Both take per-step logits and per-step labels, where every step inherits its trajectory's
final-answer correctness (1 = correct). No step labels exist in training.

Class balancing (as in the released code): with ``pos``/``neg`` the counts of positive
and negative steps that take part, ``pos_w = neg / total`` and ``neg_w = pos / total``;
a step's weight is ``1.5 * pos_w`` if positive, ``neg_w`` if negative; the loss is
``sum(bce * w) / (sum(w) + 1e-5)``. So a batch of one class only has weight zero and
loss zero: there is nothing to balance against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

POSITIVE_BOOST = 1.5  # extra weight on positive steps (released code)
EPSILON = 1e-5  # keeps the weighted mean finite when every weight is zero


def class_balanced_weights(labels: torch.Tensor, taking_part: torch.Tensor) -> torch.Tensor:
    """Per-step weights [N] for labels [N] (0/1) among the steps where ``taking_part`` [N] is True."""
    positive = (labels > 0.5) & taking_part
    negative = (labels <= 0.5) & taking_part
    pos, neg = positive.sum().float(), negative.sum().float()
    total = (pos + neg).clamp(min=1.0)  # no step taking part: every weight is zero anyway
    return POSITIVE_BOOST * positive.float() * (neg / total) + negative.float() * (pos / total)


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(bce * w) / (sum(w) + 1e-5)``: zero, never NaN, when every weight is zero."""
    losses = F.binary_cross_entropy_with_logits(logits.float(), labels.float(), reduction="none")
    return (losses * weights).sum() / (weights.sum() + EPSILON)


def agreeing_steps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Steps whose prediction (score > 0.5, i.e. logit > 0) already matches their label."""
    return (logits > 0) == (labels > 0.5)


def spr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Self-supervised process reward loss: class-balanced BCE over agreeing steps only.

    A wrong trajectory's early steps may be fine (and a right one's may be lucky): the
    filter keeps only the steps the head already judges like the final answer, so noisy
    inherited labels do not pull the head against what it has learned.

    Args:
        logits: head logits, [N].
        labels: the trajectory label each step inherits, [N] (0 or 1).
    Returns:
        A scalar loss (0 when no step agrees, or when the agreeing steps are one class).
    """
    return weighted_bce(logits, labels, class_balanced_weights(labels, agreeing_steps(logits, labels)))


def balanced_bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Class-balanced BCE over every step (the comparison: no agreement filter)."""
    every = torch.ones_like(labels, dtype=torch.bool)
    return weighted_bce(logits, labels, class_balanced_weights(labels, every))


LOSSES = {"spr": spr_loss, "bce": balanced_bce_loss}
