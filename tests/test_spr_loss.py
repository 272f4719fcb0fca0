"""The SPR loss and class-balanced BCE on hand-made batches, with exact expected values."""

import math

import pytest
import torch

from reflective_search.train.losses import balanced_bce_loss, class_balanced_weights, spr_loss


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def bce(logit: float, label: int) -> float:
    return softplus(-logit) if label else softplus(logit)


def test_spr_loss_counts_only_steps_that_agree_with_their_label():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # Kept: step 0 (positive, logit > 0) and step 3 (negative, logit < 0): one of each,
    # so pos_w = neg_w = 1/2 and the weights are 1.5 * 1/2 and 1/2.
    expected = (0.75 * bce(2.0, 1) + 0.5 * bce(-3.0, 0)) / (1.25 + 1e-5)
    assert spr_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_spr_loss_gives_no_gradient_to_disagreeing_steps():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0], requires_grad=True)
    spr_loss(logits, torch.tensor([1.0, 1.0, 0.0, 0.0])).backward()
    assert logits.grad[1].item() == 0.0 and logits.grad[2].item() == 0.0
    assert logits.grad[0].item() < 0.0 < logits.grad[3].item()


def test_class_balancing_weights_the_rarer_class_up():
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    weights = class_balanced_weights(labels, torch.ones(5, dtype=torch.bool))
    # pos = 2, neg = 3: pos_w = 3/5 (times 1.5), neg_w = 2/5.
    assert weights.tolist() == pytest.approx([0.9, 0.9, 0.4, 0.4, 0.4])


def test_spr_loss_on_an_imbalanced_batch_where_every_step_agrees():
    logits = torch.tensor([1.0, 2.0, -1.0, -2.0, -0.5])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0])
    terms = [0.9 * bce(1.0, 1), 0.9 * bce(2.0, 1), 0.4 * bce(-1.0, 0), 0.4 * bce(-2.0, 0), 0.4 * bce(-0.5, 0)]
    expected = sum(terms) / (0.9 * 2 + 0.4 * 3 + 1e-5)
    assert spr_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_spr_loss_is_zero_without_nan_when_every_trajectory_is_wrong():
    logits = torch.tensor([-1.0, -2.0, 3.0], requires_grad=True)
    loss = spr_loss(logits, torch.zeros(3))
    loss.backward()
    assert loss.item() == 0.0
    assert logits.grad.tolist() == [0.0, 0.0, 0.0]


def test_spr_loss_is_zero_when_no_step_agrees():
    # The trap after a BCE warm-up: every logit negative, the only positives disagree.
    loss = spr_loss(torch.tensor([-1.0, -2.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == 0.0 and not math.isnan(loss.item())


def test_spr_loss_of_an_empty_batch_is_zero():
    assert spr_loss(torch.zeros(0), torch.zeros(0)).item() == 0.0


def test_balanced_bce_keeps_disagreeing_steps():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    # Two of each class: weights 0.75 on positives, 0.5 on negatives.
    expected = (0.75 * (bce(2.0, 1) + bce(-1.0, 1)) + 0.5 * (bce(0.5, 0) + bce(-3.0, 0))) / (2.5 + 1e-5)
    assert balanced_bce_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
