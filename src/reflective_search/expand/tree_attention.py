"""Tree attention over the arena's lanes: what one forward feeds and what each query sees
(``ForwardPlan``), and the attention kernel forwards run. Pure planning; the runner
(``runner``) runs the forward, the arena (``kv_arena``) owns the cache, the segments and
the memory.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import torch

if TYPE_CHECKING:
    from reflective_search.expand.kv_arena import Segment

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
    # (lane, first token, tokens) per lane with tokens, when the tokens are packed lane by lane
    # and few lanes are busy: attention then runs per busy lane over its own queries only
    spans: tuple[tuple[int, int, int], ...] | None = None


# Attention reads every lane's whole K and V (memory-bound on a CPU: about 0.5 ms a lane
# a layer at 1500 slots), whether or not a lane has queries. When the busy lanes' tokens
# fill less than this share of the lanes x width layout, one attention per busy lane wins.
RAGGED_BELOW = 0.75


def _tree_sdpa(module, query, key, value, attention_mask, **kwargs):
    """SDPA with GQA served by stacking query heads: query [B, H, Q, D], key/value
    [B, Hkv, K, D], attention_mask additive [B, 1, Q, K] -> output [B, Q, H, D].

    In a packed forward (``Packing`` given) query is [1, H, N, D] for N tokens spread over
    B lanes: they are laid out as [B, H, width, D] for attention and gathered back."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    packing = getattr(_tree_thread, "packing", None)
    if packing is not None and packing.spans is not None:
        return _per_lane_sdpa(module, query, key, value, attention_mask, packing.spans, kwargs.get("scaling")), None
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


def _per_lane_sdpa(module, query, key, value, mask, spans, scaling) -> torch.Tensor:
    """Packed query [1, H, N, D], tokens lane by lane: each busy lane's queries against that
    lane's key/value [1, Hkv, K, D] and its mask rows -> [1, N, H, D]."""
    out = query.new_empty(1, query.shape[2], query.shape[1], query.shape[3])
    for lane, start, count in spans:
        own = _stacked_sdpa(module, query[:, :, start : start + count], key[lane : lane + 1], value[lane : lane + 1],
                            mask[lane : lane + 1, :, :count], scaling)
        out[0, start : start + count] = own[0]
    return out


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


class ForwardPlan:
    """Which tokens one forward feeds, where they land in their lane, and what each sees.

    A forward mixes two kinds of tokens: a new path's uncomputed tokens (``add_path``,
    prefill) and a decoding row's last sampled token (``add_decode``). Each token takes the
    next free column of its lane; its slot is ``first_slot + column``. Pure planning: the
    segments' slots change only at ``commit``, after the forward ran.
    """

    def __init__(self, first_slot: int, lanes: int) -> None:
        self.first_slot = first_slot
        self.lanes = [LanePlan() for _ in range(lanes)]
        self.outputs: list[tuple[int, int]] = []  # (lane, column) whose logits each caller reads
        self.cost: list[int] = []  # tokens charged to each path (add_path order)
        self._planned: dict[int, list[int]] = {}  # id(segment) -> full planned slot list
        self._rows: dict[int, list[int]] = {}  # id(segment) -> columns of its new tokens
        self._segments: dict[int, Segment] = {}

    @property
    def width(self) -> int:
        return max((len(lane.ids) for lane in self.lanes), default=0)

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
                if len(ancestors):
                    visible[lane, rows[0] : rows[-1] + 1, torch.as_tensor(ancestors)] = True
                tri = torch.ones(len(rows), len(own), dtype=torch.bool).tril(diagonal=first_index)
                visible[lane, rows[0] : rows[-1] + 1, torch.tensor(own)] = tri
        return visible

    def slots_of(self, segment: Segment) -> list[int]:
        return self._planned.get(id(segment), segment.slots)

    def add_path(self, path: list[Segment], output: bool = True) -> int | None:
        """Feed what ``path`` lacks; with ``output``, make sure its last position is computed
        (re-feeding its last token if need be) and return that output's index."""
        charged = 0
        for depth, segment in enumerate(path):
            if id(segment) not in self._planned and not segment.complete:
                charged += self._schedule(segment, path[:depth])
        leaf = path[-1]
        rows = self._rows.get(id(leaf))
        if not output:
            self.cost.append(charged)
            return None
        if rows:
            self.outputs.append((leaf.lane, rows[-1]))
        else:  # nothing new on this path: re-feed its last token to get its logits again
            charged += 1
            self.outputs.append((leaf.lane, self._scratch(path)))
        self.cost.append(charged)
        return len(self.outputs) - 1

    def add_decode(self, lane: int, token: int, position: int, visible: list[int] | torch.Tensor) -> int:
        """Feed one decoding row's token, seeing ``visible`` slots and itself; returns its
        output's index (its slot is ``first_slot + column``, see ``slot_of``)."""
        lane_plan = self.lanes[lane]
        row = len(lane_plan.ids)
        lane_plan.ids.append(token)
        lane_plan.positions.append(position)
        lane_plan.blocks.append(([row], visible, [self.first_slot + row], 0))
        self.outputs.append((lane, row))
        return len(self.outputs) - 1

    def slot_of(self, output: int) -> int:
        return self.first_slot + self.outputs[output][1]

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
        """File the prefilled segments' new slots. Mutates the segments."""
        for key, segment in self._segments.items():
            segment.slots = self._planned[key]
