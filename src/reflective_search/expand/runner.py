"""The runner: one model forward for a ``ForwardPlan``, new paths' prefill tokens and live
rows' decode tokens together.

Under the tree SDPA kernel only the real tokens go through the layers (ids [1, N],
packed; attention lays them out per lane); otherwise the forward is lane-shaped
[lanes, width] with padding. Either way it returns the logits and features of the plan's
outputs only (``logits_to_keep``), in output order.
"""

from __future__ import annotations

import torch

from reflective_search.expand.kv_arena import KVArena
from reflective_search.expand.tree_attention import PAD_TOKEN, RAGGED_BELOW, ForwardPlan, Packing, packs_queries


def run_forward(arena: KVArena, plan: ForwardPlan, with_features: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Run ``plan``; logits [O, V] and features [O, H] (None when not asked) of its O outputs.

    Mutates: the arena's cache gains ``plan.width`` slots per lane (``arena.grow``); the
    prefilled segments get their slots when the engine files them (``plan.commit``).
    """
    if not plan.real_tokens:  # every child joins from outputs its request kept: nothing to run
        return torch.empty(0, 0), None
    visible = plan.visibility(arena.length)
    if packs_queries(arena.model.backbone):
        logits, features = _packed(arena, plan, visible, with_features)
    else:
        logits, features = _lane_shaped(arena, plan, visible, with_features)
    arena.grow(plan.width, plan.real_tokens)
    return logits, features


def _packed(arena: KVArena, plan: ForwardPlan, visible: torch.Tensor, with_features: bool):
    """ids [1, N]: lane by lane, each lane's tokens in column order."""
    offsets, ids, positions, lanes, columns = [], [], [], [], []
    for lane, lane_plan in enumerate(plan.lanes):
        offsets.append(len(ids))
        ids += lane_plan.ids
        positions += lane_plan.positions
        lanes += [lane] * len(lane_plan.ids)
        columns += range(len(lane_plan.ids))
    spans = tuple((lane, offsets[lane], len(p.ids)) for lane, p in enumerate(plan.lanes) if p.ids)
    ragged = len(ids) < RAGGED_BELOW * plan.width * len(plan.lanes)
    packing = Packing(torch.tensor(lanes), torch.tensor(columns), plan.width, len(plan.lanes), spans if ragged else None)
    keep = torch.tensor([offsets[lane] + column for lane, column in plan.outputs], device=arena.model.device)
    logits, features = arena.forward(torch.tensor([ids]), torch.tensor([positions]), visible, with_features,
                                     logits_to_keep=keep, packing=packing)
    return logits[0], (features[0, keep] if features is not None else None)


def _lane_shaped(arena: KVArena, plan: ForwardPlan, visible: torch.Tensor, with_features: bool):
    """ids [L, width], padded; logits kept for the columns any output reads."""
    ids = torch.full((len(plan.lanes), plan.width), PAD_TOKEN, dtype=torch.long)
    positions = torch.zeros(len(plan.lanes), plan.width, dtype=torch.long)
    for lane, lane_plan in enumerate(plan.lanes):
        ids[lane, : len(lane_plan.ids)] = torch.tensor(lane_plan.ids, dtype=torch.long)
        positions[lane, : len(lane_plan.ids)] = torch.tensor(lane_plan.positions, dtype=torch.long)
    columns = sorted({column for _, column in plan.outputs})
    keep = torch.tensor(columns, device=arena.model.device)
    logits, features = arena.forward(ids, positions, visible, with_features, logits_to_keep=keep)
    lanes = torch.tensor([lane for lane, _ in plan.outputs])
    at = {column: index for index, column in enumerate(columns)}
    picked = logits[lanes, torch.tensor([at[column] for _, column in plan.outputs])]
    out_columns = torch.tensor([column for _, column in plan.outputs])
    return picked, (features[lanes, out_columns] if features is not None else None)
