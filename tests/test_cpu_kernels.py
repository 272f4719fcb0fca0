"""SmallBatchLinear: the same linear map, computed as W @ x.T for 1-4 rows on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reflective_search.model.cpu_kernels import SmallBatchLinear, use_small_batch_linear


def small_layer(bias: bool, dtype=torch.float32) -> SmallBatchLinear:
    torch.manual_seed(0)
    layer = nn.Linear(24, 40, bias=bias).to(dtype)
    use_small_batch_linear(layer)
    return layer


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 24), (3, 24), (1, 4, 24), (2, 2, 24)])
def test_two_to_four_rows_are_computed_as_weight_times_input_transposed(bias, shape):
    layer, x = small_layer(bias), torch.randn(shape)
    expected = (layer.weight @ x.reshape(-1, 24).T).T + (layer.bias if bias else 0)
    check_small_path(layer, x, expected)


@pytest.mark.parametrize("shape", [(24,), (1, 24), (1, 1, 24)])
def test_one_row_is_computed_twice_as_a_two_row_product(shape):
    layer, x = small_layer(True), torch.randn(shape)
    row = x.reshape(1, 24)
    expected = (layer.weight @ torch.cat([row, row]).T)[:, :1].T + layer.bias
    check_small_path(layer, x, expected)


def check_small_path(layer, x, expected):
    out = layer(x)
    assert out.shape == (*x.shape[:-1], 40) and out.is_contiguous()
    assert torch.equal(out.reshape(-1, 40), expected)  # the small path, bit for bit
    assert torch.allclose(out, F.linear(x, layer.weight, layer.bias), atol=1e-6)  # the same map


@pytest.mark.parametrize("shape", [(5, 24), (1, 8, 24), (0, 24)])
def test_other_row_counts_call_torchs_linear(shape):
    layer, x = small_layer(True), torch.randn(shape)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_other_dtypes_call_torchs_linear():
    layer, x = small_layer(True, torch.bfloat16), torch.randn(3, 24, dtype=torch.bfloat16)
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))


def test_gradients_match_torchs_linear():
    layer, x = small_layer(True), torch.randn(3, 24, requires_grad=True)
    layer(x).square().sum().backward()
    small = (x.grad.clone(), layer.weight.grad.clone(), layer.bias.grad.clone())
    x.grad, layer.weight.grad, layer.bias.grad = None, None, None
    F.linear(x, layer.weight, layer.bias).square().sum().backward()
    for got, expected in zip(small, (x.grad, layer.weight.grad, layer.bias.grad)):
        assert torch.allclose(got, expected, atol=1e-5)


def test_reflective_model_switches_its_backbone_and_switching_back_restores_linear(tiny_llama):
    linears = [m for m in tiny_llama.backbone.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is SmallBatchLinear for m in linears)
    ids = torch.tensor([[5, 9, 11]])
    keys = list(tiny_llama.backbone.state_dict())
    with torch.no_grad():
        fast = tiny_llama.backbone(ids).logits
        assert use_small_batch_linear(tiny_llama.backbone, enabled=False) == len(linears)
        try:
            assert all(type(m) is nn.Linear for m in linears)
            plain = tiny_llama.backbone(ids).logits
        finally:
            assert use_small_batch_linear(tiny_llama.backbone) == len(linears)
    assert list(tiny_llama.backbone.state_dict()) == keys
    assert torch.allclose(fast, plain, atol=1e-5)
