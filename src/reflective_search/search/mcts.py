"""Step-level MCTS with the SPRM head as value function: no rollouts, no second model.

Each iteration: select a batch of leaves (PUCT with virtual loss; at the root, PUCT or
Gumbel sequential halving, ``mcts.root``), expand them in one model call (k sampled steps
each, identical siblings merged), value every new child by its SPRM step score, and back
that value up. Priors come from the policy's own step likelihood. The loop stops when the
budget (generated tokens and/or expansions) is spent.

A peaked policy can exhaust a tree early: merged duplicates and finished paths leave no
open leaf while budget remains. Before a round would do that, the leaves it expands are
asked for more children (``mcts.widen`` extra rounds, fresh seeds) until one child is open
or the budget is spent, so comparisons at equal compute are not silently handicapped;
overshoot is at most one round. Budget left when even that finds nothing new is reported
(``Meter.unspent_tokens``).
"""

from __future__ import annotations

from typing import Sequence

from reflective_search.config import SearchConfig
from reflective_search.interface import ExpandCall, Expansion, derive_seed
from reflective_search.search.common import (
    Meter, SearchGenerator, after_round, complete, grow, is_terminal, merge_identical, node_values, outcome,
    request,
)
from reflective_search.search.gumbel import (
    GumbelDraw, HalvingState, advance_rounds, final_root_child, next_root_child, sample_gumbel, start_halving,
)
from reflective_search.search.vote import select_answer
from reflective_search.tree import ROOT, Tree
from reflective_search.tree_ops import backup_batch, select_leaves

# Rounds in a row that may select only finished leaves before the tree counts as solved
# (re-visiting a terminal leaf costs no tokens, so the budget alone would never stop it).
MAX_IDLE_ROUNDS = 64


def mcts(prompt_ids: Sequence[int], prompt_text: str, config: SearchConfig, seed: int, *,
         draw_gumbel: GumbelDraw = sample_gumbel) -> SearchGenerator:
    """Run MCTS on one problem; see the module docstring. Score: the aggregated path score.

    ``draw_gumbel`` gives the root's Gumbel noise (``mcts.root: gumbel``); tests fix it.
    """
    tree, meter = Tree(prompt_ids, prompt_text), Meter()
    root = ROOT_RULES[config.mcts.root](config, seed, draw_gumbel)
    idle, finished = 0, []
    while not budget_spent(meter, config) and idle < MAX_IDLE_ROUNDS and has_open_leaf(tree):
        leaves = root.simulate(tree, meter)
        open_leaves = [leaf for leaf in leaves if not tree.terminal[leaf]]
        revisit_terminals(tree, [leaf for leaf in leaves if tree.terminal[leaf]], config)
        idle = 0 if open_leaves else idle + 1
        if open_leaves:
            # Finished children from the last round are never expanded: their KV may go first.
            released = tuple(tree.token_path(node) for node in finished)
            expansions = yield from sample_children(tree, open_leaves, config, seed, meter, released)
            finished = expand_and_backup(tree, open_leaves, expansions, config)
            after_round(tree, config)
    top = root.recommend(tree)
    if not finished_below(tree, top):
        yield from complete(tree, [most_visited_leaf(tree, top)], config, seed, meter)
    if config.budget.tokens is not None:  # after completing a path, whose tokens count as spent
        meter.unspent_tokens = max(config.budget.tokens - meter.generated_tokens, 0)
    chosen, score = select_answer(tree, finished_below(tree, top), config, config.mcts.aggregate)
    return outcome(tree, chosen, score, meter)


class PuctRoot:
    """Every descent starts at the root and follows PUCT; the answer may come from anywhere."""

    def __init__(self, config: SearchConfig, seed: int, draw_gumbel: GumbelDraw) -> None:
        self.config = config

    def simulate(self, tree: Tree, meter: Meter) -> list[int]:
        return simulate(tree, self.config)

    def recommend(self, tree: Tree) -> int:
        return ROOT


class GumbelRoot:
    """Root children by Gumbel-top-k and sequential halving (see ``search.gumbel``).

    Once the root is expanded, each descent of a batch begins at the considered child
    with the fewest simulations; PUCT (with virtual loss) takes it from there. The answer
    is picked among the finished paths below the final root child.
    """

    def __init__(self, config: SearchConfig, seed: int, draw_gumbel: GumbelDraw) -> None:
        self.config, self.seed, self.draw = config, seed, draw_gumbel
        self.use_max = config.mcts.backup == "max"
        self.state: HalvingState | None = None

    def simulate(self, tree: Tree, meter: Meter) -> list[int]:
        if tree.is_leaf(ROOT):
            return [ROOT]
        options = self.config.mcts
        if self.state is None:
            draws = self.draw(self.seed, int(tree.num_children[ROOT]))
            self.state = start_halving(tree, draws, options.gumbel.scale, options.gumbel.considered)
        advance_rounds(tree, self.state, spent_fraction(meter, self.config), self.use_max)
        starts = [next_root_child(tree, self.state, self.use_max) for _ in range(options.batch_leaves)]
        return select_leaves(tree, len(starts), options.c_puct, use_max=self.use_max,
                             virtual_loss=options.virtual_loss, starts=starts)

    def recommend(self, tree: Tree) -> int:
        return ROOT if self.state is None else final_root_child(tree, self.state, self.use_max)


ROOT_RULES = {"puct": PuctRoot, "gumbel": GumbelRoot}


def sample_children(tree: Tree, leaves: Sequence[int], config: SearchConfig, seed: int, meter: Meter,
                    released: tuple = ()):
    """Sample ``children`` steps for each leaf (``root_children`` at the root); resample where
    duplicates left fewer distinct.

    A peaked policy often draws the same step k times; merged, that leaves one child and
    a chain-shaped tree that the search exhausts long before its budget. Up to
    ``mcts.resample`` more rounds ask such leaves for the missing number of children.
    Returns one Expansion per leaf holding every sample drawn for it.
    """
    k = {leaf: config.mcts.children_at(int(tree.depth[leaf])) for leaf in leaves}
    drawn: dict[int, list] = {leaf: [] for leaf in leaves}
    forwarded = dict.fromkeys(leaves, 0)
    for attempt in range(1 + config.mcts.resample):
        short = {leaf: k[leaf] - len(merge_identical(drawn[leaf])) for leaf in leaves}
        asking = [leaf for leaf in leaves if short[leaf] > 0]
        if not asking:
            break
        attempt_seed = seed if attempt == 0 else derive_seed(seed, "resample", attempt)
        requests = tuple(request(tree, leaf, short[leaf], attempt_seed) for leaf in asking)
        expansions = yield ExpandCall(requests, config.sampling, released if attempt == 0 else ())
        meter.charge(expansions)
        for leaf, expansion in zip(asking, expansions):
            drawn[leaf].extend(expansion.children)
            forwarded[leaf] += expansion.forwarded_tokens
    yield from widen(tree, leaves, drawn, forwarded, config, seed, meter)
    return [Expansion(tuple(drawn[leaf]), forwarded[leaf]) for leaf in leaves]


def widen(tree: Tree, leaves: Sequence[int], drawn: dict, forwarded: dict, config: SearchConfig, seed: int,
          meter: Meter):
    """Ask ``leaves`` for as many more samples as they were first asked for while this round
    would leave the tree without an open leaf and budget remains (at most ``mcts.widen``
    rounds). Mutates ``drawn`` and ``forwarded``."""
    for attempt in range(config.mcts.widen):
        if budget_spent(meter, config) or would_stay_open(tree, leaves, drawn, config):
            return
        requests = tuple(request(tree, leaf, config.mcts.children_at(int(tree.depth[leaf])),
                                 derive_seed(seed, "widen", attempt)) for leaf in leaves)
        expansions = yield ExpandCall(requests, config.sampling)
        meter.charge(expansions)
        for leaf, expansion in zip(leaves, expansions):
            drawn[leaf].extend(expansion.children)
            forwarded[leaf] += expansion.forwarded_tokens


def would_stay_open(tree: Tree, leaves: Sequence[int], drawn: dict, config: SearchConfig) -> bool:
    """Whether, after adding ``drawn`` under ``leaves``, some leaf of the tree could still be expanded."""
    expanding = set(leaves)
    if any(not tree.terminal[n] for n in tree.leaves() if n not in expanding):
        return True
    depth = {leaf: int(tree.depth[leaf]) + 1 for leaf in leaves}
    return any(not is_terminal(step, depth[leaf], config.sampling.max_steps)
               for leaf in leaves for step in merge_identical(drawn[leaf]))


def has_open_leaf(tree: Tree) -> bool:
    """A leaf that is not terminal remains (the root counts until it is expanded)."""
    return any(not tree.terminal[n] for n in tree.leaves())


def budget_spent(meter: Meter, config: SearchConfig) -> bool:
    return spent_fraction(meter, config) >= 1.0


def spent_fraction(meter: Meter, config: SearchConfig) -> float:
    """How much of the budget is gone: the larger fraction of the limits that are set."""
    budget = config.budget
    fractions = [meter.generated_tokens / budget.tokens if budget.tokens is not None else 0.0,
                 meter.expansions / budget.expansions if budget.expansions is not None else 0.0]
    return max(fractions)


def simulate(tree: Tree, config: SearchConfig) -> list[int]:
    """Select up to ``batch_leaves`` distinct leaves by PUCT with virtual loss."""
    options = config.mcts
    return select_leaves(tree, options.batch_leaves, options.c_puct, use_max=options.backup == "max",
                         virtual_loss=options.virtual_loss)


def revisit_terminals(tree: Tree, leaves: Sequence[int], config: SearchConfig) -> None:
    """A selected finished leaf has nothing to expand: back its value up once more."""
    backup_batch(tree, leaves, node_values(tree, leaves, config.mcts.aggregate))


def expand_and_backup(tree: Tree, leaves: Sequence[int], expansions, config: SearchConfig) -> list[int]:
    """Add each leaf's children, back up every child's SPRM score; returns the finished ones.

    Growing reads no visit counts, so all children are added first and backed up in one
    kernel call, in the order they were added.
    """
    grown = [child for leaf, expansion in zip(leaves, expansions)
             for child in grow(tree, leaf, expansion, config.sampling.max_steps, merge=True)]
    backup_batch(tree, grown, node_values(tree, grown, config.mcts.aggregate))
    return [child for child in grown if tree.terminal[child]]


def most_visited_leaf(tree: Tree, node: int = ROOT) -> int:
    """Follow the most visited child from ``node`` (first on ties) down to a leaf."""
    while not tree.is_leaf(node):
        node = max(tree.children(node), key=lambda c: (int(tree.visits[c]), -c))
    return node


def finished_below(tree: Tree, node: int) -> list[int]:
    """Terminal leaves in ``node``'s subtree (all of them for the root)."""
    return [leaf for leaf in tree.terminal_leaves() if node == ROOT or node in tree.path(leaf)]
