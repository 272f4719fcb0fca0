"""Step scores -> one trajectory score. Sibling functions, named by the config.

MetaStone-S1 ranks candidates by the geometric mean of their step scores (its ablation:
geometric > arithmetic > product; last-step-only is worse). Scores are clamped at 1e-10
before logs so one zero does not erase the rest; a trajectory with no steps scores 0.

``penultimate`` reads the step before the last: where a finished trajectory's last step
only restates its answer (Countdown's ``Answer:``), the step that computed it can be the
better reader. countdown-smol's head is such a case (docs/results/countdown-smol.md: chosen on
the validation split), so that model ranks finished paths with it.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

Aggregate = Callable[[Sequence[float]], float]
_FLOOR = 1e-10


def geometric(scores: Sequence[float]) -> float:
    if not scores:
        return 0.0
    return math.exp(sum(math.log(max(s, _FLOOR)) for s in scores) / len(scores))


def arithmetic(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0


def minimum(scores: Sequence[float]) -> float:
    return min(scores) if scores else 0.0


def last(scores: Sequence[float]) -> float:
    return scores[-1] if scores else 0.0


def penultimate(scores: Sequence[float]) -> float:
    """The step before the last (the only step's score when there is one)."""
    return scores[-2] if len(scores) > 1 else last(scores)


def product(scores: Sequence[float]) -> float:
    return math.prod(scores) if scores else 0.0


AGGREGATES: dict[str, Aggregate] = {
    "geometric": geometric,
    "mean": arithmetic,
    "min": minimum,
    "last": last,
    "penultimate": penultimate,
    "product": product,
}
