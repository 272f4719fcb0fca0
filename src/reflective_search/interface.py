"""The one boundary between search and model.

Search algorithms speak only these types: they ask for expansions (a token path and how
many children) and get back child steps (tokens, text, log-probability, SPRM score). Any
object with an ``expand`` method of this shape can stand in for a model, which is how
the tests drive the searches with fakes that have known answers. No torch here.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Protocol, Sequence

from reflective_search.config import SamplingConfig

TokenIds = tuple[int, ...]
TokenPath = tuple[TokenIds, ...]  # the prompt's tokens, then each step's tokens, root to node


class StepEnd(enum.IntEnum):
    """Why a sampled step stopped."""

    DELIMITER = 0  # it emitted a step delimiter (e.g. ".\n\n")
    EOS = 1  # it emitted end-of-sequence: the trajectory is over
    LENGTH = 2  # it reached sampling.max_step_tokens
    CONTEXT = 3  # its path filled the model's context: nothing more can follow, so it is terminal
    BLOCK = 4  # it reached the block size (sampling.step kind: tokens): a whole step, scored


@dataclass(frozen=True, slots=True)
class ExpandRequest:
    path: TokenPath  # the node to expand, as the tokens of every segment from the root
    k: int  # children to sample below it
    seed: int  # child i samples with child_seed(seed, i): independent of batch makeup


@dataclass(frozen=True, slots=True)
class ChildStep:
    tokens: TokenIds  # sampled ids, delimiter (or EOS) included
    text: str  # decoded step text, EOS excluded
    logprob: float  # sum of log p(token) under the policy at temperature 1
    score: float  # SPRM step score in [0, 1], read where the step's end was emitted
    end: StepEnd  # why the step stopped
    scored: bool = True  # whether ``score`` counts toward the path (the model's scoring rule; see model.steps)


@dataclass(frozen=True, slots=True)
class Expansion:
    children: tuple[ChildStep, ...]  # k sampled children, in child-index order
    forwarded_tokens: int  # tokens this request ran through the model (its share)


@dataclass(frozen=True, slots=True)
class ExpandCall:
    """What a search yields: a batch of requests sampled under one sampling config."""

    requests: tuple[ExpandRequest, ...]
    sampling: SamplingConfig
    release: tuple[TokenPath, ...] = ()  # nodes the search is done with (pruned or closed)


class Expander(Protocol):
    """Turns expansion requests into batched model calls."""

    def expand(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> list[Expansion]:
        """Sample ``k`` children for every request; one Expansion per request, in order."""
        ...

    def release(self, paths: Sequence[TokenPath]) -> None:
        """Hint that these nodes will not be expanded again (their KV may go first).

        A bare prompt path (one segment) means the whole search is over: all of its
        tree's KV may go.
        """
        ...


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from any printable parts (Python's hash() is salted per run)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def child_seed(request_seed: int, child_index: int) -> int:
    """The seed child ``child_index`` of a request samples with."""
    return derive_seed(request_seed, child_index)
