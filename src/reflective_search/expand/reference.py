"""The reference expander: every child recomputed from its full text, no sharing.

Each child row is its own left-padded sequence in one batch: prefill the whole path,
then decode with Hugging Face's ordinary KV cache. Simple enough to trust, it is the
oracle the shared-KV expander must match (and strategy (b) of the expander benchmark).
"""

from __future__ import annotations

from typing import Sequence

import torch

from reflective_search.config import SamplingConfig
from reflective_search.expand.decoding import all_units, decode_children, decode_cost, group_by_request
from reflective_search.interface import ExpandRequest, Expansion, TokenPath
from reflective_search.model.reflective import ReflectiveModel


class ReferenceExpander:
    """Padded batched recompute of every child's path (the test oracle)."""

    def __init__(self, model: ReflectiveModel) -> None:
        self.model = model

    @torch.no_grad()
    def expand(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> list[Expansion]:
        from transformers import DynamicCache

        paths = [_flatten(r.path) for r in requests for _ in range(r.k)]
        ids, mask, positions = _left_pad(paths, self.model.device)
        cache = DynamicCache()
        # 1) prefill every child's full path
        logits, features = self.model(ids, position_ids=positions, attention_mask=mask, cache=cache)
        state = {"mask": mask, "next_pos": positions[:, -1] + 1}

        # 2) decode: all rows step together; rows already finished are fed a dummy token
        def forward_rows(row_ids: list[int], tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
            step = ids[:, -1:].clone()
            step[row_ids, 0] = torch.tensor(tokens, device=step.device)
            state["mask"] = torch.cat([state["mask"], torch.ones_like(step)], dim=1)
            out_logits, out_features = self.model(
                step, position_ids=state["next_pos"][:, None], attention_mask=state["mask"], cache=cache
            )
            # Only live rows move on: a finished row's dummy stays at its last position, so no row
            # is fed past the context (and dynamic RoPE, which scales by the largest position in
            # the batch, sees the same positions whatever else shares the batch).
            advance = torch.zeros_like(state["next_pos"])
            advance[row_ids] = 1
            state["next_pos"] = state["next_pos"] + advance
            return out_logits[row_ids, -1], out_features[row_ids, -1]

        units = all_units(requests)
        steps = decode_children(self.model, requests, units, logits[:, -1], features[:, -1], forward_rows, sampling)
        children = group_by_request(requests, units, steps)
        return [
            Expansion(tuple(kids), forwarded_tokens=r.k * len(_flatten(r.path)) + decode_cost(kids))
            for r, kids in zip(requests, children)
        ]

    def release(self, paths: Sequence[TokenPath]) -> None:
        """Nothing is kept between calls, so there is nothing to release."""


def _flatten(path: TokenPath) -> list[int]:
    return [token for segment in path for token in segment]


def _left_pad(paths: list[list[int]], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ids [C, L], attention mask [C, L], position ids [C, L] for left-padded rows."""
    length = max(len(p) for p in paths)
    ids = torch.zeros(len(paths), length, dtype=torch.long)
    mask = torch.zeros(len(paths), length, dtype=torch.long)
    for row, path in enumerate(paths):
        ids[row, length - len(path):] = torch.tensor(path)
        mask[row, length - len(path):] = 1
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)
