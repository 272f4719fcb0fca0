"""The shared-KV expander: every token of the search tree goes through the model once.

Recipe: *tree attention over one cache*. All resident tokens of all trees live in one
batch-1 Hugging Face cache (the "arena", see ``kv_arena``); a token may sit anywhere in
it, and a float 4D mask lets each query see exactly its ancestors. A round of expansions
(1) feeds every not-yet-computed token of the requested paths in one forward, (2) decodes
all children of all requests together, one token per child per forward, each child
seeing its path plus its own tokens, and (3) reads step scores from hidden states the
same forwards captured. Children's KV stays in the arena, so expanding them later costs
only their one unfed last token. Measured against the other recipe (gather per-node
segments into a padded batch per round) in ``bench``; REFERENCE.md section 3 has both.

Segments are interned by content: (parent segment, tokens) -> id, so the search needs no
handles and identical prefixes (same prompt twice, merged siblings) share KV.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch

from reflective_search.config import SamplingConfig
from reflective_search.errors import ConfigError
from reflective_search.expand.decoding import Unit, all_units, decode_children, decode_cost, group_by_request
from reflective_search.expand.kv_arena import KVArena, Segment
from reflective_search.expand.tree_attention import TREE_SDPA
from reflective_search.interface import ExpandRequest, Expansion, TokenPath
from reflective_search.model.reflective import ReflectiveModel


TREE_MASK_ATTENTION = ("sdpa", "eager", TREE_SDPA)  # flash-attention-2 takes only 2D padding masks


class SharedKVExpander:
    """Expands many nodes per model call with KV shared across the whole tree.

    Args:
        model: the reflective model.
        kv_budget_tokens: most KV slots kept resident (None: unbounded). Past it, KV of
            released subtrees goes first, then the least recently used; evicted paths are
            recomputed on demand. A round that cannot fit is split.
        score: read SPRM scores (off only to measure what scoring costs).
    """

    def __init__(self, model: ReflectiveModel, kv_budget_tokens: int | None = None, score: bool = True) -> None:
        attention = getattr(model.backbone.config, "_attn_implementation", "sdpa")
        if attention not in TREE_MASK_ATTENTION:
            raise ConfigError(
                f"the shared expander needs attention that takes 4D tree masks (sdpa or eager), but the model "
                f"uses {attention!r}: load it with attn_implementation='sdpa', or set expander: reference"
            )
        self.model = model
        self.arena = KVArena(model, kv_budget_tokens)
        self.score = score
        self._lock = threading.Lock()  # the arena is shared state: one round at a time

    # -- the Expander protocol -------------------------------------------------------------

    def expand(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> list[Expansion]:
        with self._lock, torch.no_grad():
            paths = [self.arena.intern_path(r.path) for r in requests]
            steps: dict[Unit, object] = {}
            forwarded = [0] * len(requests)
            try:
                for chunk in self._chunks(requests, paths, sampling):
                    self._round(requests, paths, chunk, sampling, steps, forwarded)
            except BaseException:
                # A forward that failed part-way (out of memory, Ctrl-C, NaN scores) leaves
                # layers of unequal length: start from an empty arena rather than a broken one.
                self.arena.reset()
                raise
            units = all_units(requests)
            children = group_by_request(requests, units, [steps[u] for u in units])
            return [Expansion(tuple(kids), forwarded[i] + decode_cost(kids)) for i, kids in enumerate(children)]

    def release(self, paths: Sequence[TokenPath]) -> None:
        with self._lock:
            self.arena.release(paths)

    # -- one round ------------------------------------------------------------------------------

    def _round(self, requests, paths, units: list[Unit], sampling: SamplingConfig, steps: dict, forwarded: list[int]) -> None:
        """Prefill what the units' paths lack, decode their children, keep the children's KV."""
        arena = self.arena
        request_ids = list(dict.fromkeys(index for index, _ in units))
        arena.make_room([paths[i] for i in request_ids], extra=len(units) * sampling.max_step_tokens)
        # 1) prefill: every uncomputed token of these paths, plus a re-fed last token where
        #    a path is already complete (its last logits are not kept between rounds).
        last_logits, last_features, cost = arena.prefill([paths[i] for i in request_ids], self.score)
        for index, tokens in zip(request_ids, cost):
            forwarded[index] += tokens
        row_of_request = {index: slot for slot, index in enumerate(request_ids)}
        pick = torch.tensor([row_of_request[index] for index, _ in units], dtype=torch.long)
        # 2) decode all children together, each seeing its own path and tokens
        decoder = arena.decoder([paths[index] for index, _ in units], self.score)
        features = last_features[pick] if last_features is not None else None
        new_steps = decode_children(self.model, requests, units, last_logits[pick], features,
                                    decoder.forward_rows, sampling)
        # 3) keep each child's KV as a segment under its parent
        for row, (unit, step) in enumerate(zip(units, new_steps)):
            arena.adopt(paths[unit[0]][-1], step.tokens, decoder.row_slots(row))
            steps[unit] = step

    def _chunks(self, requests, paths, sampling: SamplingConfig) -> list[list[Unit]]:
        """Split a round's children into chunks whose worst case fits the KV budget.

        Worst case per chunk: each distinct path once (+1 re-fed token) and every child
        decoding ``max_step_tokens`` tokens.
        """
        units = all_units(requests)
        budget = self.arena.budget
        if budget is None:
            return [units]
        chunks, current, need, seen = [], [], 0, set()
        for unit in units:
            path_cost = 0 if unit[0] in seen else paths[unit[0]][-1].end_position + 2
            single = paths[unit[0]][-1].end_position + 2 + sampling.max_step_tokens
            if single > budget:
                raise ConfigError(
                    f"kv_budget_tokens={budget} cannot hold one path of {single - sampling.max_step_tokens - 1} "
                    f"tokens plus max_step_tokens={sampling.max_step_tokens}: raise it to at least {single}"
                )
            if current and need + path_cost + sampling.max_step_tokens > budget:
                chunks.append(current)
                current, need, seen = [], 0, set()
                path_cost = paths[unit[0]][-1].end_position + 2
            current.append(unit)
            seen.add(unit[0])
            need += path_cost + sampling.max_step_tokens
        return chunks + [current]

    # -- reporting ------------------------------------------------------------------------------

    @property
    def computed_tokens(self) -> int:
        """Tokens run through the model by this expander since it was made."""
        return self.arena.computed_tokens

    @property
    def kv_peak_bytes(self) -> int:
        return self.arena.peak_slots * self.arena.bytes_per_slot


__all__ = ["SharedKVExpander", "Segment"]
