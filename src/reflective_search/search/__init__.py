"""Search algorithms by name. Each is a generator function over the expander boundary."""

from reflective_search.search.beam import beam
from reflective_search.search.common import SearchOutcome
from reflective_search.search.driver import run_searches
from reflective_search.search.dvts import dvts
from reflective_search.search.mcts import mcts
from reflective_search.search.rebase import rebase
from reflective_search.search.sampled import best_of_n, greedy, majority

SEARCHES = {
    "greedy": greedy,
    "majority": majority,
    "best_of_n": best_of_n,
    "beam": beam,
    "dvts": dvts,
    "rebase": rebase,
    "mcts": mcts,
}

__all__ = ["SEARCHES", "SearchOutcome", "run_searches"]
