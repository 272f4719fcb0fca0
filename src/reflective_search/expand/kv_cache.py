"""The arena's KV storage: one preallocated buffer per layer, written in place.

Hugging Face's ``DynamicCache`` grows by ``torch.cat`` on every forward, copying every
layer's whole cache each step (30 layers on SmolLM2: the copy grows with the tree). Here
each layer keeps ``[lanes, kv heads, capacity, head dim]`` buffers; a forward writes its
new slots into the next free columns and attention reads a view of the filled ones.
Capacity doubles when full, so growth copies O(log n) times instead of every step.

Verbs: ``update`` (Hugging Face's, mutates: appends), ``add_lane`` and ``keep`` (the
arena's, mutate: a new zero lane; keep only some lanes and slots, in a new order).
A layer's ``keys``/``values`` are views of its buffers' filled part, as DynamicCache's
tensors would be, so anything that reads a DynamicCache reads this one the same way.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer

MIN_CAPACITY = 64  # slots first allocated per lane


class SlotLayer(DynamicLayer):
    """One layer's KV: buffers [lanes, heads, capacity, dim], the first ``length`` slots filled."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor, lanes: int | None = None) -> None:
        self.device = key_states.device
        self.length = 0
        lanes = lanes or key_states.shape[0]
        self._keys = key_states.new_zeros(lanes, key_states.shape[1], MIN_CAPACITY, key_states.shape[3])
        self._values = value_states.new_zeros(lanes, value_states.shape[1], MIN_CAPACITY, value_states.shape[3])
        self._refresh()
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, packing=None, **kwargs):
        """Write new slots after the filled ones. Mutates; returns views of all filled slots
        (what attention reads).

        Lane-shaped: key_states [lanes, heads, new, dim] fill ``new`` columns. Packed
        (``packing``, a ``tree_attention.Packing``): key_states [1, heads, N, dim], token i
        goes to lane ``packing.lanes[i]``, column ``packing.columns[i]`` of ``packing.width``
        new columns; the columns no token takes stay zero (finite, never visible)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states, packing.lane_count if packing else None)
        end = self.length + (packing.width if packing is not None else key_states.shape[2])
        if end > self._keys.shape[2]:
            self._grow(max(end, 2 * self._keys.shape[2]))
        if packing is None:
            self._keys[:, :, self.length : end] = key_states
            self._values[:, :, self.length : end] = value_states
        else:
            slots = self.length + packing.columns
            self._keys[packing.lanes, :, slots] = key_states[0].transpose(0, 1)
            self._values[packing.lanes, :, slots] = value_states[0].transpose(0, 1)
        self.length = end
        self._refresh()
        return self.keys, self.values

    def add_lane(self) -> None:
        """Append a lane of zero KV (finite, never visible). Mutates."""
        self._keys = torch.cat([self._keys, self._keys.new_zeros(1, *self._keys.shape[1:])])
        self._values = torch.cat([self._values, self._values.new_zeros(1, *self._values.shape[1:])])
        self._refresh()

    def keep(self, lanes: torch.Tensor, slots: torch.Tensor) -> None:
        """Keep lanes ``lanes`` [L'] and, in lane i, slots ``slots[i]`` [L', S'] in that order. Mutates."""
        gather = slots.to(self.device)[:, None, :, None].expand(-1, self._keys.shape[1], -1, self._keys.shape[3])
        capacity = max(MIN_CAPACITY, 2 * slots.shape[1])
        self._keys = _into(self._keys.index_select(0, lanes).gather(2, gather), capacity)
        self._values = _into(self._values.index_select(0, lanes).gather(2, gather), capacity)
        self.length = slots.shape[1]
        self._refresh()

    def _grow(self, capacity: int) -> None:
        self._keys = _into(self._keys[:, :, : self.length], capacity)
        self._values = _into(self._values[:, :, : self.length], capacity)

    def _refresh(self) -> None:
        self.keys = self._keys[:, :, : self.length]
        self.values = self._values[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0


def _into(filled: torch.Tensor, capacity: int) -> torch.Tensor:
    """A zero buffer of ``capacity`` slots whose first slots hold ``filled``."""
    buffer = filled.new_zeros(*filled.shape[:2], capacity, filled.shape[3])
    buffer[:, :, : filled.shape[2]] = filled
    return buffer


class SlotCache(DynamicCache):
    """A DynamicCache whose layers are ``SlotLayer``s (created on first use, like DynamicCache's)."""

    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=SlotLayer)
        self.packing = None  # the current forward's tree_attention.Packing, set by the arena around it

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs):
        """Hugging Face's verb: append this forward's KV to layer ``layer_idx``. Mutates."""
        while len(self.layers) <= layer_idx:
            self.layers.append(SlotLayer())
        return self.layers[layer_idx].update(key_states, value_states, packing=self.packing)

    @property
    def started(self) -> bool:
        """Whether any forward has written to it."""
        return bool(self.layers) and self.layers[0].is_initialized

    def add_lane(self) -> None:
        """Append a zero lane to every layer. Mutates."""
        for layer in self.layers:
            if layer.is_initialized:
                layer.add_lane()

    def keep(self, lanes: torch.Tensor, slots: torch.Tensor) -> None:
        """Keep ``lanes`` and, per kept lane, ``slots`` [L', S'] (renumbered 0..S'-1). Mutates."""
        for layer in self.layers:
            if layer.is_initialized:
                layer.keep(lanes, slots)
