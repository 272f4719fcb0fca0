"""The KV arena: every resident token of every search tree, held once.

The arena is one Hugging Face cache (a ``kv_cache.SlotCache``: preallocated buffers
written in place) whose batch rows are *lanes*: each search tree (each
prompt) lives in its own lane, so a query only ever attends over its own tree's tokens
(several problems in one round cost what each costs alone, not the product). Within a
lane a token may sit at any slot; a float 4D mask lets each query see exactly its
ancestors. All lanes share the slot count ``length``; a lane with less to do that round
is padded, and the padding slots are garbage.

Verbs (each docstring says whether it mutates the arena): ``intern_path`` names a path's
segments, ``forward`` runs one planned forward (``runner`` plans and calls it), ``adopt``
files a child's KV under its parent, ``release`` marks nodes to drop first (a whole tree
when given its prompt), ``make_room`` evicts and compacts.

Invariants: a segment's ``slots`` are slots in its lane holding a prefix of its tokens
(its *computed* tokens); the KV at a slot is that token's at position ``start + i``,
attending to exactly its ancestors. Slots owned by no segment are garbage until the next
compaction. Every query, padding included, sees at least itself (a fully masked row
would turn into NaN and poison the cache). With a KV budget there is a single lane and
``length <= budget`` always.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import torch

from reflective_search.expand.kv_cache import SlotCache
from reflective_search.expand.tree_attention import Packing, tree_attention
from reflective_search.interface import TokenIds, TokenPath
from reflective_search.model.reflective import ReflectiveModel


@dataclass(slots=True, eq=False)
class Segment:
    uid: int  # interning id (content key: parent uid + tokens)
    parent: "Segment | None"  # None for a prompt
    tokens: TokenIds  # the segment's token ids
    start: int  # position of its first token (tokens above it on the path)
    lane: int  # the cache batch row holding its tree
    slots: list[int] = field(default_factory=list)  # lane slots of its computed prefix
    last_used: int = 0  # arena clock at the last request that touched it
    released: bool = False  # the search is done with it: evict first

    @property
    def end_position(self) -> int:
        return self.start + len(self.tokens) - 1

    @property
    def complete(self) -> bool:
        return len(self.slots) == len(self.tokens)


# Unbounded, compact once slots held exceed this many times the slots segments own. Every
# decode step attends over whole lanes, so garbage (columns of finished rows, padding)
# costs attention time each step, while a compaction costs about one step's KV reads.
GARBAGE_LIMIT = 1.5


class KVArena:
    def __init__(self, model: ReflectiveModel, budget: int | None) -> None:
        self.model = model
        self.budget = budget  # most slots resident at once (None: unbounded, one lane per tree)
        self.computed_tokens = 0  # real tokens ever fed through the model (padding excluded)
        self.peak_slots = 0  # most slots ever held, over all lanes
        self.bytes_per_slot = _bytes_per_token(model)
        self._uids = itertools.count(1)
        self._neg = torch.finfo(self._dtype).min
        self.generation = 0  # bumped whenever slots are renumbered or forgotten (compaction, reset)
        self.reset()

    def reset(self) -> None:
        """Forget every cached token (after a forward failed part-way); the counters stay."""
        self.cache = SlotCache()
        self.length = 0  # slots per lane, garbage included
        self.lane_roots: list[Segment | None] = []  # the prompt each lane holds (None: free)
        self._segments: dict[tuple[int, TokenIds], Segment] = {}
        self._clock = 0
        self.generation += 1

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
                lane = parent.lane if parent else self._lane_for_root()
                segment = Segment(next(self._uids), parent, tuple(tokens), start, lane)
                self._segments[key] = segment
                if parent is None:
                    self.lane_roots[lane] = segment
            segment.last_used = self._clock
            segments.append(segment)
            parent = segment
        return segments

    def _lane_for_root(self) -> int:
        """A free lane for a new tree (the only lane under a budget). Mutates: may add one."""
        if self.budget is not None and self.lane_roots:
            return 0
        for lane, root in enumerate(self.lane_roots):
            if root is None:
                return lane
        self.lane_roots.append(None)
        self.cache.add_lane()  # a new batch row of zero (finite, never visible) KV
        return len(self.lane_roots) - 1

    def release(self, paths: Sequence[TokenPath]) -> None:
        """Mark known path ends as finished with; a bare prompt frees its whole tree. Mutates."""
        for path in paths:
            segment = self._lookup(path)
            if segment is None:
                continue
            segment.released = True
            if segment.parent is None:
                self._drop_tree(segment)

    def _lookup(self, path: TokenPath) -> Segment | None:
        segment = None
        for tokens in path:
            segment = self._segments.get((segment.uid if segment else 0, tuple(tokens)))
            if segment is None:
                return None
        return segment

    def _drop_tree(self, root: Segment) -> None:
        """Forget every segment of ``root``'s tree; its slots become garbage. Mutates.

        Unbounded, the tree owns its lane, which becomes free. Under a budget all trees
        share lane 0, which stays in use while any tree is left in it.
        """
        doomed = [key for key, s in self._segments.items() if _root_of(s) is root]
        for key in doomed:
            del self._segments[key]
        if self.budget is None or not self._segments:
            self.lane_roots[root.lane] = None

    def adopt(self, parent: Segment, tokens: TokenIds, slots: list[int]) -> None:
        """File a decoded child's computed slots under ``parent``. Mutates the table."""
        key = (parent.uid, tuple(tokens))
        segment = self._segments.get(key)
        if segment is None:
            segment = Segment(next(self._uids), parent, tuple(tokens), parent.end_position + 1, parent.lane)
            self._segments[key] = segment
        if len(slots) > len(segment.slots):  # a merged duplicate keeps the first copy's KV
            segment.slots = list(slots)
        segment.last_used = self._clock

    # -- computing -----------------------------------------------------------------------------

    def forward(self, ids: torch.Tensor, positions: torch.Tensor, visible: torch.Tensor, with_features: bool,
                logits_to_keep: int | torch.Tensor = 0, packing: Packing | None = None):
        """One tree forward: ids/positions [L, Q] (or [1, N] packed), visibility [L, Q, S+Q].
        Mutates: the cache gains Q slots per lane (the caller accounts for them with ``grow``).
        Returns logits and features shaped like ids."""
        device = self.model.device
        self.cache.packing = packing
        try:
            with tree_attention(self.model.backbone, packing):
                return self.model(ids.to(device), position_ids=positions.to(device),
                                  attention_mask=self.additive_mask(visible), cache=self.cache,
                                  logits_to_keep=logits_to_keep, with_features=with_features)
        finally:
            self.cache.packing = None

    def additive_mask(self, visible: torch.Tensor) -> torch.Tensor:
        """Boolean [L, Q, K] visibility -> additive float mask [L, 1, Q, K]."""
        mask = torch.zeros(visible.shape, dtype=self._dtype, device=self.model.device)
        return mask.masked_fill_(~visible.to(self.model.device), self._neg)[:, None]

    @property
    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def grow(self, width: int, real_tokens: int) -> None:
        """Account for ``width`` slots just appended to every lane. Mutates counters."""
        self.length += width
        self.computed_tokens += real_tokens
        self.peak_slots = max(self.peak_slots, self.length * len(self.lane_roots))
        assert self.budget is None or self.length <= self.budget, "KV budget exceeded"

    # -- memory ----------------------------------------------------------------------------------

    def make_room(self, paths: Sequence[list[Segment]], extra: int, in_flight: Sequence[InFlight] = ()) -> bool:
        """Evict and compact until the paths' missing tokens plus ``extra`` fit; whether they
        do. Mutates: evicts unpinned segments (released first, then least recently used) and
        compacts, renumbering the segments' and the ``in_flight`` rows' slots.

        ``in_flight``: slots of children still decoding (pinned, like ``paths``).
        """
        missing = sum(len(s.tokens) - len(s.slots) for s in {id(s): s for p in paths for s in p}.values())
        need = missing + len(paths) + extra  # + a possible re-fed last token per path
        owned = sum(len(s.slots) for s in self._segments.values()) + sum(len(row.slots) for row in in_flight)
        if self.budget is None:
            if self.length * len(self.lane_roots) > GARBAGE_LIMIT * owned + 256:  # reclaim garbage
                self._compact(in_flight)
            return True
        if self.length + need <= self.budget:
            return True
        pinned = {id(s) for p in [*paths, *(row.path for row in in_flight)] for s in p}
        victims = sorted(
            (s for s in self._segments.values() if s.slots and id(s) not in pinned),
            key=lambda s: (not s.released, s.last_used, -s.start),
        )
        for victim in victims:
            if owned + need <= self.budget:
                break
            owned -= len(victim.slots)
            victim.slots = []
        self._compact(in_flight)
        return self.length + need <= self.budget

    def _compact(self, in_flight: Sequence[InFlight] = ()) -> None:
        """Drop garbage slots and free lanes; renumber every segment's and in-flight row's
        lane and slots. Mutates them all."""
        live_lanes = [lane for lane, root in enumerate(self.lane_roots) if root is not None]
        if not live_lanes:  # nothing resident: start over with an empty cache
            self.cache, self.lane_roots, self.length = SlotCache(), [], 0
            self._segments.clear()
            self.generation += 1
            return
        owners = {lane: [s for s in self._segments.values() if s.lane == lane and s.slots] for lane in live_lanes}
        for row in in_flight:
            owners[row.lane].append(row)
        keep = {lane: sorted({slot for s in owners[lane] for slot in s.slots}) for lane in live_lanes}
        width = max((len(k) for k in keep.values()), default=0)
        index = torch.zeros(len(live_lanes), width, dtype=torch.long)
        for row, lane in enumerate(live_lanes):
            index[row, : len(keep[lane])] = torch.tensor(keep[lane], dtype=torch.long)  # tail pads: garbage copies
        self.cache.keep(torch.tensor(live_lanes, dtype=torch.long, device=self.model.device), index)
        for row, lane in enumerate(live_lanes):
            renumber = {old: new for new, old in enumerate(keep[lane])}
            for owner in owners[lane]:
                owner.slots[:] = [renumber[slot] for slot in owner.slots]
        new_lane = {lane: row for row, lane in enumerate(live_lanes)}
        for segment in self._segments.values():
            segment.lane = new_lane[segment.lane]
        self.lane_roots = [self.lane_roots[lane] for lane in live_lanes]
        self.length = width
        self.generation += 1


class InFlight(Protocol):
    """A decoding child's KV, not yet filed as a segment (see ``engine.LiveRow``)."""

    path: list[Segment]  # the path it extends (pinned: never evicted while it decodes)
    lane: int  # read: the lane of its path (follows compaction through its parent segment)
    slots: list[int]  # the slots of its fed tokens; renumbered in place by compaction


def _root_of(segment: Segment) -> Segment:
    while segment.parent is not None:
        segment = segment.parent
    return segment


def _bytes_per_token(model: ReflectiveModel) -> int:
    config = model.backbone.config
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    element = torch.finfo(next(model.parameters()).dtype).bits // 8
    return config.num_hidden_layers * 2 * heads * head_dim * element
