"""The KV arena: one batch-1 cache holding every resident token of every search tree once.

Verbs (each docstring says whether it mutates the arena):
``intern_path`` names a path's segments, ``prefill`` computes what a path lacks,
``decoder`` steps children one token at a time, ``adopt`` files a child's KV under its
parent, ``release`` marks nodes to drop first, ``make_room`` evicts and compacts.

Invariants: a segment's ``slots`` are the arena slots of a prefix of its tokens (its
*computed* tokens); the slot of token i holds the KV of that token at position
``start + i`` attending to exactly its ancestors. Slots owned by no segment are garbage
(duplicates, re-fed tokens) until the next compaction. ``length <= budget`` always.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import torch

from reflective_search.interface import TokenIds, TokenPath
from reflective_search.model.reflective import ReflectiveModel


@dataclass(slots=True, eq=False)
class Segment:
    uid: int  # interning id (content key: parent uid + tokens)
    parent: "Segment | None"  # None for a prompt
    tokens: TokenIds  # the segment's token ids
    start: int  # position of its first token (tokens above it on the path)
    slots: list[int] = field(default_factory=list)  # arena slots of its computed prefix
    last_used: int = 0  # arena clock at the last request that touched it
    released: bool = False  # the search is done with it: evict first

    @property
    def end_position(self) -> int:
        return self.start + len(self.tokens) - 1

    @property
    def complete(self) -> bool:
        return len(self.slots) == len(self.tokens)


class KVArena:
    def __init__(self, model: ReflectiveModel, budget: int | None) -> None:
        from transformers import DynamicCache

        self.model = model
        self.budget = budget  # most slots resident at once (None: unbounded)
        self.cache = DynamicCache()
        self.length = 0  # slots in the cache, garbage included
        self.computed_tokens = 0  # tokens ever fed through the model
        self.peak_slots = 0
        self.bytes_per_slot = _bytes_per_token(model)
        self._segments: dict[tuple[int, TokenIds], Segment] = {}
        self._uids = itertools.count(1)
        self._clock = 0
        self._neg = torch.finfo(next(model.parameters()).dtype).min

    # -- naming ------------------------------------------------------------------------------

    def intern_path(self, path: TokenPath) -> list[Segment]:
        """Segments of ``path`` from the root, created empty where new. Mutates: touches them."""
        self._clock += 1
        segments, parent = [], None
        for tokens in path:
            key = (parent.uid if parent else 0, tuple(tokens))
            segment = self._segments.get(key)
            if segment is None:
                start = parent.end_position + 1 if parent else 0
                segment = Segment(next(self._uids), parent, tuple(tokens), start)
                self._segments[key] = segment
            segment.last_used = self._clock
            segments.append(segment)
            parent = segment
        return segments

    def release(self, paths: Sequence[TokenPath]) -> None:
        """Mark known path ends as finished with. Mutates flags only."""
        for path in paths:
            parent = None
            for tokens in path:
                parent = self._segments.get((parent.uid if parent else 0, tuple(tokens)))
                if parent is None:
                    break
            if parent is not None:
                parent.released = True

    def adopt(self, parent: Segment, tokens: TokenIds, slots: list[int]) -> None:
        """File a decoded child's computed slots under ``parent``. Mutates the table."""
        key = (parent.uid, tuple(tokens))
        segment = self._segments.get(key)
        if segment is None:
            segment = Segment(next(self._uids), parent, tuple(tokens), parent.end_position + 1)
            self._segments[key] = segment
        if len(slots) > len(segment.slots):  # a merged duplicate keeps the first copy's KV
            segment.slots = list(slots)
        segment.last_used = self._clock

    # -- computing -----------------------------------------------------------------------------

    def prefill(self, paths: Sequence[list[Segment]], with_features: bool):
        """Compute every missing token of ``paths`` in one forward. Mutates: appends slots.

        Returns last-position logits [R, V], features [R, H] (or None) and, per path, the
        tokens it was charged for (a token shared by two paths is charged to the first).
        """
        plan = _PrefillPlan(self.length)
        for index, path in enumerate(paths):
            plan.add_path(index, path)
        mask = self._prefill_mask(plan)
        ids = torch.tensor([plan.ids], device=self.model.device)
        positions = torch.tensor([plan.positions], device=self.model.device)
        keep = torch.tensor(plan.outputs, device=self.model.device)
        logits, features = self.model(ids, position_ids=positions, attention_mask=mask, cache=self.cache,
                                      logits_to_keep=keep, with_features=with_features)
        plan.commit()
        self._grow(len(plan.ids))
        last_features = features[0, keep] if features is not None else None
        return logits[0], last_features, plan.cost

    def _prefill_mask(self, plan: "_PrefillPlan") -> torch.Tensor:
        """[1, 1, Q, S+Q] additive mask: each new token sees its ancestors and itself."""
        q = len(plan.ids)
        visible = torch.zeros(q, self.length + q, dtype=torch.bool)
        for rows, ancestors, own, first_index in plan.blocks:
            if ancestors:
                visible[rows[0] : rows[-1] + 1, torch.tensor(ancestors)] = True
            tri = torch.ones(len(rows), len(own), dtype=torch.bool).tril(diagonal=first_index)
            visible[rows[0] : rows[-1] + 1, torch.tensor(own)] = tri
        return self._additive(visible)

    def decoder(self, paths: Sequence[list[Segment]], with_features: bool) -> "_Decoder":
        """A stepper for one child row per path (paths already computed). Mutates on use."""
        return _Decoder(self, paths, with_features)

    def _additive(self, visible: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(visible.shape, dtype=self._dtype, device=self.model.device)
        return mask.masked_fill_(~visible.to(self.model.device), self._neg)[None, None]

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _grow(self, count: int) -> None:
        self.length += count
        self.computed_tokens += count
        self.peak_slots = max(self.peak_slots, self.length)
        assert self.budget is None or self.length <= self.budget, "KV budget exceeded"

    # -- memory ----------------------------------------------------------------------------------

    def make_room(self, paths: Sequence[list[Segment]], extra: int) -> None:
        """Evict and compact until the paths' missing tokens plus ``extra`` fit. Mutates."""
        missing = sum(len(s.tokens) - len(s.slots) for s in {id(s): s for p in paths for s in p}.values())
        need = missing + len(paths) + extra  # + a possible re-fed last token per path
        owned = sum(len(s.slots) for s in self._segments.values())
        if self.budget is None:
            if self.length - owned > max(4096, owned):  # much garbage: reclaim it
                self._compact()
            return
        if self.length + need <= self.budget:
            return
        pinned = {id(s) for p in paths for s in p}
        victims = sorted(
            (s for s in self._segments.values() if s.slots and id(s) not in pinned),
            key=lambda s: (not s.released, s.last_used, -s.start),
        )
        for victim in victims:
            if owned + need <= self.budget:
                break
            owned -= len(victim.slots)
            victim.slots = []
        self._compact()

    def _compact(self) -> None:
        """Drop garbage slots from the cache and renumber every segment's slots."""
        owners = [s for s in self._segments.values() if s.slots]
        keep = sorted(slot for s in owners for slot in s.slots)
        keep_index = torch.tensor(keep, dtype=torch.long, device=self.model.device)
        for layer in self.cache.layers:
            if getattr(layer, "keys", None) is not None and layer.keys.numel():
                layer.keys = layer.keys.index_select(2, keep_index)
                layer.values = layer.values.index_select(2, keep_index)
        renumber = {old: new for new, old in enumerate(keep)}
        for segment in owners:
            segment.slots = [renumber[slot] for slot in segment.slots]
        self.length = len(keep)


class _PrefillPlan:
    """Which tokens a prefill feeds, where they land, and what each sees."""

    def __init__(self, first_slot: int) -> None:
        self.first_slot = first_slot
        self.ids: list[int] = []
        self.positions: list[int] = []
        self.outputs: list[int] = []  # query row whose output is each path's last position
        self.cost: list[int] = []  # tokens charged to each path
        self.blocks: list[tuple[list[int], list[int], list[int], int]] = []  # rows, ancestor slots, own slots, first idx
        self._planned: dict[int, list[int]] = {}  # id(segment) -> full planned slot list
        self._rows: dict[int, list[int]] = {}  # id(segment) -> query rows of its new tokens
        self._segments: dict[int, Segment] = {}

    def slots_of(self, segment: Segment) -> list[int]:
        return self._planned.get(id(segment), segment.slots)

    def add_path(self, index: int, path: list[Segment]) -> None:
        charged = 0
        for depth, segment in enumerate(path):
            if id(segment) not in self._planned and not segment.complete:
                charged += self._schedule(segment, path[:depth])
        leaf = path[-1]
        rows = self._rows.get(id(leaf))
        if rows:
            self.outputs.append(rows[-1])
        else:  # nothing new on this path: re-feed its last token to get its logits again
            charged += 1
            self.outputs.append(self._scratch(path))
        self.cost.append(charged)

    def _schedule(self, segment: Segment, ancestors: list[Segment]) -> int:
        first_index = len(segment.slots)
        new = segment.tokens[first_index:]
        rows = list(range(len(self.ids), len(self.ids) + len(new)))
        planned = segment.slots + [self.first_slot + row for row in rows]
        self.ids += new
        self.positions += [segment.start + first_index + i for i in range(len(new))]
        ancestor_slots = [slot for a in ancestors for slot in self.slots_of(a)]
        self.blocks.append((rows, ancestor_slots, planned, first_index))
        self._planned[id(segment)], self._rows[id(segment)] = planned, rows
        self._segments[id(segment)] = segment
        return len(new)

    def _scratch(self, path: list[Segment]) -> int:
        """A garbage copy of the path's last token, seeing the path without that token."""
        row = len(self.ids)
        leaf = path[-1]
        self.ids.append(leaf.tokens[-1])
        self.positions.append(leaf.end_position)
        visible = [slot for s in path for slot in self.slots_of(s)][:-1]
        self.blocks.append(([row], visible, [self.first_slot + row], 0))
        return row

    def commit(self) -> None:
        for key, segment in self._segments.items():
            segment.slots = self._planned[key]


class _Decoder:
    """Feeds one token per active child row; each row sees its path and its own tokens."""

    def __init__(self, arena: KVArena, paths: Sequence[list[Segment]], with_features: bool) -> None:
        self.arena = arena
        self.with_features = with_features
        self.rows = len(paths)
        self.slots: list[list[int]] = [[] for _ in paths]
        self.next_position = torch.tensor([p[-1].end_position + 1 for p in paths])
        self.visible = torch.zeros(self.rows, arena.length + 8 * self.rows, dtype=torch.bool)
        for row, path in enumerate(paths):
            self.visible[row, torch.tensor([slot for s in path for slot in s.slots])] = True

    def forward_rows(self, row_ids: list[int], tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        arena, count = self.arena, len(row_ids)
        first = arena.length
        self._reserve(first + count)
        rows = torch.tensor(row_ids)
        self.visible[rows, torch.arange(first, first + count)] = True
        mask = arena._additive(self.visible[rows, : first + count])
        device = arena.model.device
        logits, features = arena.model(
            torch.tensor([tokens], device=device), position_ids=self.next_position[rows][None].to(device),
            attention_mask=mask, cache=arena.cache, with_features=self.with_features,
        )
        arena._grow(count)
        self.next_position[rows] += 1
        for offset, row in enumerate(row_ids):
            self.slots[row].append(first + offset)
        return logits[0], (features[0] if features is not None else None)

    def row_slots(self, row: int) -> list[int]:
        return self.slots[row]

    def _reserve(self, width: int) -> None:
        if width > self.visible.shape[1]:
            grown = torch.zeros(self.rows, max(width, 2 * self.visible.shape[1]), dtype=torch.bool)
            grown[:, : self.visible.shape[1]] = self.visible
            self.visible = grown


def _bytes_per_token(model: ReflectiveModel) -> int:
    config = model.backbone.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.finfo(next(model.parameters()).dtype).bits // 8
    return config.num_hidden_layers * 2 * heads * head_dim * element
