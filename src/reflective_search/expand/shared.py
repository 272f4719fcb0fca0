"""The shared-KV expander: every token of the search tree goes through the model once.

Recipe: *tree attention over one cache*. All resident tokens of all trees live in one
Hugging Face cache (the "arena", see ``kv_arena``); a token may sit anywhere in its
tree's lane, and a float 4D mask lets each query see exactly its ancestors. The engine
(``engine``) batches continuously: each forward feeds the not-yet-computed tokens of newly
admitted paths together with one token per decoding child, each child seeing its path
plus its own tokens; step scores come from hidden states the same forwards captured.
Children's KV stays in the arena, so expanding them later costs only their one unfed last
token. Measured against the other recipe (gather per-node segments into a padded batch
per round) in ``bench``; REFERENCE.md section 3 has both.

Two ways to drive it: ``expand`` (the Expander protocol: one call run to its end, which
``search.driver`` uses for lockstep rounds), or ``submit`` / ``step`` / ``take`` (calls
from many searches in flight at once, which the driver uses under
``scheduling: continuous``).

Segments are interned by content: (parent segment, tokens) -> id, so the search needs no
handles and identical prefixes (same prompt twice, merged siblings) share KV.
"""

from __future__ import annotations

import threading
from typing import Sequence

import torch

from reflective_search.config import SCHEDULINGS, SamplingConfig
from reflective_search.errors import ConfigError
from reflective_search.expand.engine import Engine
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
            recomputed on demand. Children that cannot fit wait for room.
        score: read SPRM scores (off only to measure what scoring costs).
        max_rows: most child rows decoding at once (None: no cap).
        scheduling: how ``search.driver`` runs many searches on it: continuous (each
            search's next call joins the running batch) or rounds (lockstep, the oracle).
    """

    def __init__(self, model: ReflectiveModel, kv_budget_tokens: int | None = None, score: bool = True,
                 max_rows: int | None = None, scheduling: str = "continuous") -> None:
        attention = getattr(model.backbone.config, "_attn_implementation", "sdpa")
        if attention not in TREE_MASK_ATTENTION:
            raise ConfigError(
                f"the shared expander needs attention that takes 4D tree masks (sdpa or eager), but the model "
                f"uses {attention!r}: load it with attn_implementation='sdpa', or set expander: reference"
            )
        if scheduling not in SCHEDULINGS:
            raise ConfigError(f"scheduling must be one of {' | '.join(SCHEDULINGS)}, got {scheduling!r}")
        self.model = model
        self.arena = KVArena(model, kv_budget_tokens)
        self.engine = Engine(model, self.arena, max_rows, score)
        self.scheduling = scheduling
        self._lock = threading.Lock()  # the arena and the engine are shared state: one caller at a time

    # -- the Expander protocol -------------------------------------------------------------

    def expand(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> list[Expansion]:
        """Run one call to its end (other calls in flight advance meanwhile). Mutates the arena."""
        with self._lock, torch.no_grad():
            ticket = self.engine.submit(requests, sampling)
            while ticket not in self.engine.finished:
                self.engine.step()
            return self.engine.finished.pop(ticket)

    def release(self, paths: Sequence[TokenPath]) -> None:
        with self._lock:
            self.arena.release(paths)

    # -- continuous batching: many calls in flight ---------------------------------------------

    def submit(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> int:
        """Queue a call; returns its ticket (see ``take``). Mutates the queue."""
        with self._lock:
            return self.engine.submit(requests, sampling)

    def step(self) -> list[int]:
        """One forward over every call in flight; the tickets it finished. Mutates everything."""
        with self._lock, torch.no_grad():
            return self.engine.step()

    def take(self, ticket: int) -> list[Expansion] | None:
        """A finished call's expansions (once), or None while it runs. Mutates: forgets them."""
        with self._lock:
            return self.engine.finished.pop(ticket, None)

    def cancel(self, ticket: int) -> None:
        """Forget a call whose search has gone. Mutates the queue; its KV becomes garbage."""
        with self._lock:
            self.engine.cancel(ticket)

    # -- reporting ------------------------------------------------------------------------------

    @property
    def computed_tokens(self) -> int:
        """Tokens run through the model by this expander since it was made."""
        return self.arena.computed_tokens

    @property
    def kv_peak_bytes(self) -> int:
        return self.arena.peak_slots * self.arena.bytes_per_slot


__all__ = ["SharedKVExpander", "Segment"]
