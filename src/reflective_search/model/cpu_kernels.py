"""Linear layers that stay fast when a decode step feeds only a few rows, on CPU.

A search decodes a handful of children at a time: 1-4 rows per forward is its common case
(greedy decoding, MCTS rounds of one or two leaves). For 2-4 rows torch's ``F.linear``
(``x @ W.T`` through MKL's sgemm) streams the float32 weight in an order that on this
project's CPU ran 2-4x slower than the same product written ``W @ x.T``, and one row
(sgemv) ran slower than that product over the row twice; at 8 rows or more they are level.
Decoding is bound by reading the weights, so the kernel choice is most of a decode step's
time (``python -m reflective_search.bench kernels --json`` measures it on the shipped model).
Only the order of the float32 sums differs: outputs agree with ``F.linear`` to rounding.

``ReflectiveModel`` switches its backbone's ``nn.Linear`` layers to ``SmallBatchLinear``
when it wraps them; on any other device, dtype or row count they call ``F.linear``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SMALL_ROWS = range(1, 5)  # rows per forward for which ``W @ x.T`` is the faster product


class SmallBatchLinear(nn.Linear):
    """``nn.Linear`` (same weights, same state dict) that computes 1-4 rows as ``W @ x.T`` on CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not _takes_small_path(self.weight, x, rows):
            return F.linear(x, self.weight, self.bias)
        flat = x.reshape(rows, self.in_features)
        if rows == 1:  # one row (sgemv) is slower still than two: compute it twice, keep one
            flat = torch.cat((flat, flat))
        # The transpose back is made contiguous: a layer fed a column-major input (the next
        # one, through the MLP's product) would hit sgemm's slow layout again.
        out = (self.weight @ flat.T)[:, :rows].T.contiguous()  # [rows, out]
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features)


def _takes_small_path(weight: torch.Tensor, x: torch.Tensor, rows: int) -> bool:
    return rows in SMALL_ROWS and x.device.type == "cpu" and weight.dtype == torch.float32 == x.dtype


def use_small_batch_linear(module: nn.Module, enabled: bool = True) -> int:
    """Switch every plain ``nn.Linear`` under ``module`` to ``SmallBatchLinear`` (or, with
    ``enabled=False``, back). Mutates the modules' class only: weights, hooks and state-dict
    keys stay. Returns how many layers it switched."""
    old, new = (nn.Linear, SmallBatchLinear) if enabled else (SmallBatchLinear, nn.Linear)
    switched = [layer for layer in module.modules() if type(layer) is old]
    for layer in switched:
        layer.__class__ = new
    return len(switched)
