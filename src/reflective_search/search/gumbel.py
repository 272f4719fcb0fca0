"""Gumbel root selection for MCTS (Gumbel MuZero, Danihelka et al. 2022), PUCT below the root.

What we took from mctx's documented algorithm (``mctx.gumbel_muzero_policy``,
``_src/seq_halving.py``, ``_src/qtransforms.py``), written anew for a step tree:

* Gumbel-top-k: draw g(a) ~ Gumbel(0, 1) * scale per root child; consider the m children
  with the highest g(a) + logit(a), where logit(a) is the log prior (shifted so the best is
  0, as ``score_considered`` does).
* Sequential halving over the considered set, on g(a) + logit(a) + sigma(q(a)), with
  sigma(q) = (C_VISIT + max_b N(b)) * C_SCALE * q (``qtransform_completed_by_mix_value``
  with its defaults 50 and 0.1; our q is an SPRM value, already in [0, 1], so it is not
  rescaled). Each round visits the survivors equally, then keeps max(2, half) of them;
  there are ceil(log2 m) rounds.
* The final root child is the survivor with the highest g + logit + sigma(q).

One difference: mctx knows its simulation count in advance and schedules visits by it.
Our budget is tokens (or expansions), so each halving round gets an equal share of the
budget instead: round r runs while the spent fraction is in [r / R, (r + 1) / R).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from reflective_search.interface import derive_seed
from reflective_search.tree import ROOT, Tree

C_VISIT = 50.0  # sigma(q)'s visit offset (mctx maxvisit_init)
C_SCALE = 0.1  # sigma(q)'s scale (mctx value_scale)

GumbelDraw = Callable[[int, int], np.ndarray]  # (seed, count) -> [count] standard Gumbel draws


def sample_gumbel(seed: int, count: int) -> np.ndarray:
    """``count`` standard Gumbel(0, 1) draws, fixed by ``seed``."""
    return np.random.default_rng(derive_seed(seed, "gumbel")).gumbel(size=count)


@dataclass(slots=True)
class HalvingState:
    """Sequential halving at the root of one search (mutable; one per search call)."""

    children: list[int]  # the root's children, in id order
    gumbel: np.ndarray  # [C] scaled Gumbel draw per root child
    survivors: list[int]  # considered root children still in the running
    simulations: dict[int, int]  # simulations sent below each considered child
    rounds: int  # halving rounds in all: ceil(log2 m), at least 1
    round: int = 0  # the round in progress


def start_halving(tree: Tree, draws: np.ndarray, scale: float, considered: int) -> HalvingState:
    """Gumbel-top-k over the root's children: the considered set, best first."""
    children = list(tree.children(ROOT))
    gumbel = scale * np.asarray(draws[: len(children)], np.float64)
    logits = root_logits(tree, children)
    m = min(considered, len(children))
    ranked = sorted(range(len(children)), key=lambda i: (-(gumbel[i] + logits[i]), i))
    survivors = [children[i] for i in ranked[:m]]
    rounds = max(1, math.ceil(math.log2(m))) if m > 1 else 1
    return HalvingState(children, gumbel, survivors, dict.fromkeys(survivors, 0), rounds)


def root_logits(tree: Tree, children: list[int]) -> np.ndarray:
    """[C] log prior of each root child, shifted so the largest is 0."""
    logits = np.log(np.maximum(tree.prior[children].astype(np.float64), 1e-30))
    return logits - logits.max()


def halving_scores(tree: Tree, state: HalvingState, use_max: bool) -> dict[int, float]:
    """g + logit + sigma(q) for every survivor (q: its mean, or max, backed-up value)."""
    logits = root_logits(tree, state.children)
    most_visits = max(int(tree.visits[c]) for c in state.children)
    sigma = (C_VISIT + most_visits) * C_SCALE
    scores = {}
    for node in state.survivors:
        i = state.children.index(node)
        q = float(tree.value_max[node]) if use_max else tree.mean_value(node)
        scores[node] = float(state.gumbel[i] + logits[i] + sigma * q)
    return scores


def advance_rounds(tree: Tree, state: HalvingState, spent: float, use_max: bool) -> None:
    """Halve the survivors once per round boundary the spent budget fraction has passed."""
    target = min(state.rounds - 1, int(spent * state.rounds))
    while state.round < target:
        scores = halving_scores(tree, state, use_max)
        keep = max(2, len(state.survivors) // 2)
        state.survivors = sorted(state.survivors, key=lambda c: (-scores[c], c))[:keep]
        state.round += 1


def next_root_child(tree: Tree, state: HalvingState, use_max: bool) -> int:
    """The survivor with the fewest simulations so far (best score on ties) among those with
    an open leaf below; counts it. When every survivor's subtree is finished, the best-ranked
    other root child with an open leaf is readmitted (``readmit``), so the budget is spent
    instead of idling on finished paths."""
    live = [c for c in state.survivors if open_below(tree, c)] or readmit(tree, state)
    scores = halving_scores(tree, state, use_max)
    child = min(live or state.survivors, key=lambda c: (state.simulations[c], -scores[c], c))
    state.simulations[child] += 1
    return child


def readmit(tree: Tree, state: HalvingState) -> list[int]:
    """Add the root child outside the survivors with the best g + logit that still has an open
    leaf below it (mutates ``state``); returns it as a one-item list, or [] if there is none."""
    logits = root_logits(tree, state.children)
    waiting = [i for i, c in enumerate(state.children) if c not in state.survivors and open_below(tree, c)]
    if not waiting:
        return []
    child = state.children[min(waiting, key=lambda i: (-(state.gumbel[i] + logits[i]), i))]
    state.survivors.append(child)
    state.simulations.setdefault(child, 0)
    return [child]


def open_below(tree: Tree, node: int) -> bool:
    """Whether a leaf in ``node``'s subtree (``node`` itself, unexpanded) can still be expanded."""
    return any(not tree.terminal[leaf] for leaf in tree.leaves() if node in tree.path(leaf))


def final_root_child(tree: Tree, state: HalvingState, use_max: bool) -> int:
    """The survivor with the highest g + logit + sigma(q): the search's recommendation."""
    scores = halving_scores(tree, state, use_max)
    return max(state.survivors, key=lambda c: (scores[c], -c))
