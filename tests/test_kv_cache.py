"""The arena's preallocated KV cache against Hugging Face's DynamicCache, and the
sampling shortcuts against the plain torch calls they replace (bit for bit)."""

from __future__ import annotations

import torch
from transformers import DynamicCache

from reflective_search.expand.decoding import _draw, _nucleus
from reflective_search.expand.kv_cache import MIN_CAPACITY, SlotCache
from reflective_search.expand.tree_attention import Packing


def chunked_logits(model, ids, cache, chunks):
    """Logits of ``ids`` [B, T] fed in ``chunks`` pieces through one cache."""
    out, start = [], 0
    with torch.no_grad():
        for piece in torch.tensor_split(ids, chunks, dim=1):
            positions = torch.arange(start, start + piece.shape[1])[None].expand(ids.shape[0], -1)
            out.append(model.backbone(input_ids=piece, position_ids=positions, cache=cache).logits)
            start += piece.shape[1]
    return torch.cat(out, dim=1)


def test_slot_cache_gives_dynamic_cache_logits_across_growth(tiny_llama):
    ids = torch.randint(3, 100, (2, 3 * MIN_CAPACITY))  # grows its buffers twice
    slot, dynamic = SlotCache(), DynamicCache()
    torch.testing.assert_close(chunked_logits(tiny_llama, ids, slot, 5), chunked_logits(tiny_llama, ids, dynamic, 5),
                               rtol=0, atol=1e-5)
    for ours, theirs in zip(slot.layers, dynamic.layers):
        assert ours.keys.shape == theirs.keys.shape and ours.get_seq_length() == ids.shape[1]
        torch.testing.assert_close(ours.keys, theirs.keys, rtol=0, atol=1e-6)


def test_packed_update_writes_each_token_at_its_lane_and_column():
    cache = SlotCache()
    cache.update(torch.zeros(2, 1, 3, 4), torch.zeros(2, 1, 3, 4), 0)  # two lanes, three slots
    new = torch.arange(3 * 4, dtype=torch.float32).reshape(1, 1, 3, 4) + 1
    cache.packing = Packing(lanes=torch.tensor([1, 0, 1]), columns=torch.tensor([0, 0, 1]), width=2, lane_count=2)
    keys, _ = cache.update(new, new, 0)
    assert keys.shape == (2, 1, 5, 4)
    assert torch.equal(keys[1, 0, 3], new[0, 0, 0]) and torch.equal(keys[0, 0, 3], new[0, 0, 1])
    assert torch.equal(keys[1, 0, 4], new[0, 0, 2]) and not keys[0, 0, 4].any()  # lane 0's second column: unused


def test_keep_selects_lanes_and_slots_in_order_and_add_lane_is_zero():
    cache = SlotCache()
    kv = torch.arange(3 * 5, dtype=torch.float32).reshape(3, 1, 5, 1)
    cache.update(kv, kv, 0)
    cache.keep(torch.tensor([2, 0]), torch.tensor([[4, 1], [0, 3]]))
    assert cache.layers[0].keys[:, 0, :, 0].tolist() == [[14.0, 11.0], [0.0, 3.0]]
    cache.add_lane()
    assert cache.layers[0].keys.shape == (3, 1, 2, 1) and not cache.layers[0].keys[2].any()


def test_batched_draw_equals_per_row_multinomial():
    probs = torch.softmax(torch.randn(6, 500) * 3, dim=-1)
    seeds = range(10, 16)
    expected = [int(torch.multinomial(p, 1, generator=torch.Generator().manual_seed(s))) for p, s in zip(probs, seeds)]
    assert _draw(probs, [torch.Generator().manual_seed(s) for s in seeds]).tolist() == expected


def test_nucleus_by_topk_equals_a_full_sort_for_peaked_and_flat_rows():
    probs = torch.cat([torch.softmax(torch.randn(3, 2000) * 8, -1), torch.softmax(torch.randn(3, 2000) * 0.2, -1)])
    sorted_p, order = probs.sort(dim=-1, descending=True)
    kept = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(sorted_p.cumsum(-1) - sorted_p >= 0.9, 0.0))
    assert torch.equal(_nucleus(probs, 0.9), kept / kept.sum(dim=-1, keepdim=True))  # the flat rows take the fallback
