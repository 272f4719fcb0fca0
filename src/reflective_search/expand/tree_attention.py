"""Tree attention over the arena's lanes: what a prefill feeds and what each query sees,
the per-token decoder for child rows, and the attention kernel their forwards run. Pure
planning plus one forward per call; the arena (``kv_arena``) owns the cache, the
segments and the memory.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Sequence

import torch

if TYPE_CHECKING:
    from reflective_search.expand.kv_arena import KVArena, Segment

PAD_TOKEN = 0  # fed in padding query slots; its output is never read
TREE_SDPA = "reflective_tree_sdpa"  # the attention implementation name tree forwards run under


# -- the attention kernel ---------------------------------------------------------------------
#
# Hugging Face's SDPA path serves several queries per row with grouped-query attention by
# ``repeat_kv``: it copies every layer's whole K and V to all query heads each forward
# (SmolLM2: 3 KV heads -> 9, 30 layers). That copy was a third of a decode step on the
# tree. Instead, each KV head's query heads are stacked as extra queries against the
# unrepeated K/V (the mask tiled to match): the same dot products, nothing copied. Only
# forwards inside ``tree_attention`` on this thread take that path; any other forward that
# happens to run meanwhile (another thread's) gets Hugging Face's SDPA unchanged.

_tree_thread = threading.local()  # .depth: tree_attention contexts open on this thread
_switch_lock = threading.Lock()
_switched: dict[int, list] = {}  # id(config) -> [its own implementation, contexts open on it]
_registered: list[bool] = []  # [True] once TREE_SDPA is registered with transformers


@dataclass(frozen=True, slots=True)
class Packing:
    """Where the N tokens of a packed forward (ids [1, N]) sit among the lanes' queries."""

    lanes: torch.Tensor  # [N] lane of each token
    columns: torch.Tensor  # [N] its query column in that lane (its slot is the first new one + column)
    width: int  # query columns per lane (the most tokens any lane has)
    lane_count: int  # lanes in the cache


def _tree_sdpa(module, query, key, value, attention_mask, **kwargs):
    """SDPA with GQA served by stacking query heads: query [B, H, Q, D], key/value
    [B, Hkv, K, D], attention_mask additive [B, 1, Q, K] -> output [B, Q, H, D].

    In a packed forward (``Packing`` given) query is [1, H, N, D] for N tokens spread over
    B lanes: they are laid out as [B, H, width, D] for attention and gathered back."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packing = getattr(_tree_thread, "packing", None)
    if packing is not None:
        laid = query.new_zeros(packing.lane_count, query.shape[1], packing.width, query.shape[3])
        laid[packing.lanes, :, packing.columns] = query[0].transpose(0, 1)
        out = _stacked_sdpa(module, laid, key, value, attention_mask, kwargs.get("scaling"))
        return out[packing.lanes, packing.columns][None], None
    groups = getattr(module, "num_key_value_groups", 1)
    if (not getattr(_tree_thread, "depth", 0) or groups == 1 or query.shape[2] == 1 or module.training
            or attention_mask is None or attention_mask.dim() != 4 or attention_mask.shape[1] != 1):
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    return _stacked_sdpa(module, query, key, value, attention_mask, kwargs.get("scaling")), None


def _stacked_sdpa(module, query, key, value, mask, scaling) -> torch.Tensor:
    """query [B, H, Q, D] against unrepeated key/value [B, Hkv, K, D] -> [B, Q, H, D]."""
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, queries, dim = query.shape
    stacked = query.reshape(batch, heads // groups, groups * queries, dim)  # rows (group, query)
    out = torch.nn.functional.scaled_dot_product_attention(stacked, key, value, attn_mask=mask.repeat(1, 1, groups, 1),
                                                           scale=scaling)
    return out.reshape(batch, heads, queries, dim).transpose(1, 2).contiguous()


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(TREE_SDPA, _tree_sdpa)
    AttentionMaskInterface.register(TREE_SDPA, sdpa_mask)  # other threads' 2D masks still get built


def packs_queries(backbone) -> bool:
    """Whether ``backbone``'s forwards can be packed (the tree SDPA kernel runs them)."""
    return backbone.config._attn_implementation in ("sdpa", TREE_SDPA)


@contextlib.contextmanager
def tree_attention(backbone, packing: Packing | None = None) -> Iterator[None]:
    """Run the enclosed forwards of ``backbone`` with the tree SDPA kernel (SDPA models only),
    packed as ``packing`` says when given (see ``packs_queries``).

    Mutates, for the duration: the backbone's config names ``TREE_SDPA`` (restored when the
    last open context on it closes; counted, so nested and concurrent contexts are safe).
    """
    config = backbone.config
    if config._attn_implementation not in ("sdpa", TREE_SDPA):
        yield  # eager masks are added as they are; nothing to change
        return
    with _switch_lock:
        if not _registered:
            _register()
            _registered.append(True)
        entry = _switched.setdefault(id(config), [config._attn_implementation, 0])
        entry[1] += 1
        config._attn_implementation = TREE_SDPA
    _tree_thread.depth = getattr(_tree_thread, "depth", 0) + 1
    _tree_thread.packing = packing
    try:
        yield
    finally:
        _tree_thread.depth -= 1
        _tree_thread.packing = None
        with _switch_lock:
            entry[1] -= 1
            if entry[1] == 0:
                config._attn_implementation = entry[0]
                del _switched[id(config)]


@dataclass(slots=True)
class LanePlan:
    ids: list[int] = field(default_factory=list)  # new tokens fed in this lane
    positions: list[int] = field(default_factory=list)  # their positions
    blocks: list[tuple] = field(default_factory=list)  # (rows, ancestor slots, own slots, first index)


class PrefillPlan:
    """Which tokens a prefill feeds, where they land in their lane, and what each sees."""

    def __init__(self, first_slot: int, lanes: int) -> None:
        self.first_slot = first_slot
        self.lanes = [LanePlan() for _ in range(lanes)]
        self.outputs: list[tuple[int, int]] = []  # (lane, query row) of each path's last position
        self.cost: list[int] = []  # tokens charged to each path
        self._planned: dict[int, list[int]] = {}  # id(segment) -> full planned slot list
        self._rows: dict[int, list[int]] = {}  # id(segment) -> query rows of its new tokens
        self._segments: dict[int, Segment] = {}

    @property
    def width(self) -> int:
        return max(len(lane.ids) for lane in self.lanes)

    @property
    def real_tokens(self) -> int:
        return sum(len(lane.ids) for lane in self.lanes)

    def visibility(self, length: int) -> torch.Tensor:
        """[L, Q, S+Q] bool: each new token sees its ancestors and itself (padding: itself)."""
        q = self.width
        visible = torch.zeros(len(self.lanes), q, length + q, dtype=torch.bool)
        visible[:, torch.arange(q), length + torch.arange(q)] = True
        for lane, lane_plan in enumerate(self.lanes):
            for rows, ancestors, own, first_index in lane_plan.blocks:
                if ancestors:
                    visible[lane, rows[0] : rows[-1] + 1, torch.tensor(ancestors)] = True
                tri = torch.ones(len(rows), len(own), dtype=torch.bool).tril(diagonal=first_index)
                visible[lane, rows[0] : rows[-1] + 1, torch.tensor(own)] = tri
        return visible

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
            self.outputs.append((leaf.lane, rows[-1]))
        else:  # nothing new on this path: re-feed its last token to get its logits again
            charged += 1
            self.outputs.append((leaf.lane, self._scratch(path)))
        self.cost.append(charged)

    def _schedule(self, segment: Segment, ancestors: list[Segment]) -> int:
        lane = self.lanes[segment.lane]
        first_index = len(segment.slots)
        new = segment.tokens[first_index:]
        rows = list(range(len(lane.ids), len(lane.ids) + len(new)))
        planned = segment.slots + [self.first_slot + row for row in rows]
        lane.ids += new
        lane.positions += [segment.start + first_index + i for i in range(len(new))]
        ancestor_slots = [slot for a in ancestors for slot in self.slots_of(a)]
        lane.blocks.append((rows, ancestor_slots, planned, first_index))
        self._planned[id(segment)], self._rows[id(segment)] = planned, rows
        self._segments[id(segment)] = segment
        return len(new)

    def _scratch(self, path: list[Segment]) -> int:
        """A garbage copy of the path's last token, seeing the path without that token."""
        leaf = path[-1]
        lane = self.lanes[leaf.lane]
        row = len(lane.ids)
        lane.ids.append(leaf.tokens[-1])
        lane.positions.append(leaf.end_position)
        visible = [slot for s in path for slot in self.slots_of(s)][:-1]
        lane.blocks.append(([row], visible, [self.first_slot + row], 0))
        return row

    def commit(self) -> None:
        for key, segment in self._segments.items():
            segment.slots = self._planned[key]


class Decoder:
    """Feeds one token per active child row; each row sees its path and its own tokens.

    Each active row takes the next free slot column of its lane (its rank among the lane's
    active rows); a lane with fewer active rows leaves garbage columns. Under the tree SDPA
    kernel only the active rows' tokens go through the layers ([1, A], packed); otherwise
    the forward is lane-shaped [lanes, Q], Q the most active rows in any lane, padded.
    """

    def __init__(self, arena: KVArena, paths: Sequence[list[Segment]], with_features: bool) -> None:
        self.arena = arena
        self.with_features = with_features
        self.lane = torch.tensor([p[-1].lane for p in paths])  # [C] lane of each row
        self.slots: list[list[int]] = [[] for _ in paths]
        self.next_position = torch.tensor([p[-1].end_position + 1 for p in paths])
        self.visible = torch.zeros(len(paths), arena.length + 8 * len(paths), dtype=torch.bool)
        for row, path in enumerate(paths):
            self.visible[row, torch.tensor([slot for s in path for slot in s.slots])] = True

    def forward_rows(self, row_ids: list[int], tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Feed each row's token; logits [A, V] and features [A, H] in ``row_ids`` order.
        Mutates: the arena's cache gains a column per lane's active row (``grow``)."""
        arena, first = self.arena, self.arena.length
        rows = torch.tensor(row_ids)
        lanes, column = self._columns(rows)
        width = int(column.max()) + 1
        self._reserve(first + width)
        self.visible[rows, first + column] = True
        lane_count = len(arena.lane_roots)
        visible = torch.zeros(lane_count, width, first + width, dtype=torch.bool)
        visible[:, torch.arange(width), first + torch.arange(width)] = True  # padding sees itself
        visible[lanes, column] = self.visible[rows, : first + width]
        for row, col in zip(row_ids, column.tolist()):
            self.slots[row].append(first + col)
        if packs_queries(arena.model.backbone):  # only the real tokens go through the layers
            packing = Packing(lanes, column, width, lane_count)
            logits, features = arena.forward(torch.tensor([tokens]), self.next_position[rows][None], visible,
                                             self.with_features, packing=packing)
            lanes, column = torch.zeros_like(lanes), torch.arange(len(row_ids))
        else:  # lane-shaped: [lanes, width], padding included
            ids = torch.full((lane_count, width), PAD_TOKEN, dtype=torch.long)
            ids[lanes, column] = torch.tensor(tokens)
            positions = torch.zeros(lane_count, width, dtype=torch.long)
            positions[lanes, column] = self.next_position[rows]
            logits, features = arena.forward(ids, positions, visible, self.with_features)
        arena.grow(width, len(row_ids))
        self.next_position[rows] += 1
        return logits[lanes, column], (features[lanes, column] if features is not None else None)

    def _columns(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's lane, and its column within that lane's queries (rank among them)."""
        lanes = self.lane[rows]
        seen: dict[int, int] = {}
        column = []
        for lane in lanes.tolist():  # a plain list: element-wise tensor writes cost 15x more per step
            column.append(seen.get(lane, 0))
            seen[lane] = column[-1] + 1
        return lanes, torch.tensor(column, dtype=lanes.dtype)

    def row_slots(self, row: int) -> list[int]:
        return self.slots[row]

    def _reserve(self, width: int) -> None:
        if width > self.visible.shape[1]:
            grown = torch.zeros(self.visible.shape[0], max(width, 2 * self.visible.shape[1]), dtype=torch.bool)
            grown[:, : self.visible.shape[1]] = self.visible
            self.visible = grown
