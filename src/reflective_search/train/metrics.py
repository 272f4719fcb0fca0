"""Metrics over scored trajectories: ROC-AUC, Best-of-N picks, self-consistency, per-position step AUC.

Pure Python and numpy (no torch): the evaluation fills ``Scored`` records from search trees
or from offline sampling, and everything here reads only those records.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from reflective_search.aggregate import geometric

MIN_CLASS = 10  # a step position needs this many steps of each class for its AUC to be reported


@dataclass(frozen=True, slots=True)
class Scored:
    problem: int  # index of the problem the trajectory answers
    step_scores: tuple[float, ...]  # SPRM score of each step
    step_labels: tuple[bool, ...]  # true step labels (evaluation only), one per step
    mean_logprob: float  # the policy's mean log-probability per token (nan if unknown)
    expression: str | None  # the final answer expression, whitespace removed (None: none stated)
    correct: bool  # whether the final answer checks out


def sprm_score(record: Scored) -> float:
    """Trajectory score: geometric mean of the step scores (MetaStone-S1's default)."""
    return geometric(record.step_scores)


def logprob_score(record: Scored) -> float:
    return record.mean_logprob


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (ties count half); nan when a class is missing."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    for end in range(1, len(scores) + 1):  # average ranks over runs of equal scores
        if end == len(scores) or sorted_scores[end] != sorted_scores[start]:
            ranks[order[start:end]] = (start + end - 1) / 2 + 1
            start = end
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def by_problem(records: Sequence[Scored]) -> list[list[Scored]]:
    groups: dict[int, list[Scored]] = defaultdict(list)
    for record in records:
        groups[record.problem].append(record)
    return [groups[key] for key in sorted(groups)]


def best_of_n_accuracy(records: Sequence[Scored], key: Callable[[Scored], float]) -> float:
    """Accuracy when each problem's trajectory with the highest ``key`` is chosen (stated answers first)."""
    groups = by_problem(records)
    picks = [max(group, key=lambda r: (r.expression is not None, key(r))) for group in groups]
    return sum(p.correct for p in picks) / len(groups)


def self_consistency_accuracy(records: Sequence[Scored]) -> float:
    """Accuracy of the most frequent final expression per problem (first seen wins ties).

    Every Countdown answer claims the target, so a vote over answer *values* is
    meaningless; the vote is over the expressions themselves.
    """
    hits = 0
    groups = by_problem(records)
    for group in groups:
        counts = Counter(r.expression for r in group if r.expression is not None)
        if counts:
            winner = max(counts, key=lambda e: (counts[e], -[r.expression for r in group].index(e)))
            hits += next(r.correct for r in group if r.expression == winner)
    return hits / len(groups)


def pass_at_n(records: Sequence[Scored]) -> float:
    groups = by_problem(records)
    return sum(any(r.correct for r in group) for group in groups) / len(groups)


def sample_accuracy(records: Sequence[Scored]) -> float:
    return sum(r.correct for r in records) / len(records)


def trajectory_auc(records: Sequence[Scored], key: Callable[[Scored], float]) -> float:
    return roc_auc([key(r) for r in records], [r.correct for r in records])


def step_auc_by_position(records: Sequence[Scored]) -> dict[int, float]:
    """Step ROC-AUC against true step labels, separately for each step position (0 = first)."""
    scores, labels = defaultdict(list), defaultdict(list)
    for record in records:
        for position, (score, label) in enumerate(zip(record.step_scores, record.step_labels)):
            scores[position].append(score)
            labels[position].append(label)
    out = {}
    for position in sorted(scores):
        positives = sum(labels[position])
        if min(positives, len(labels[position]) - positives) >= MIN_CLASS:
            out[position] = roc_auc(scores[position], labels[position])
    return out


def has_step_labels(records: Sequence[Scored]) -> bool:
    """Whether the records carry true step labels (a task without a step checker gives none:
    its step figures are not measured, so they are left out rather than reported as 0)."""
    return any(record.step_labels for record in records)


def positive_step_fraction(records: Sequence[Scored]) -> float:
    labels = [label for r in records for label in r.step_labels]
    return sum(labels) / max(len(labels), 1)


def bootstrap_interval(records: Sequence[Scored], statistic: Callable[[Sequence[Scored]], float],
                       rounds: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """A percentile bootstrap interval of ``statistic`` over problems (resampled with replacement)."""
    groups = by_problem(records)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        drawn = [record for index in rng.integers(0, len(groups), len(groups)) for record in groups[index]]
        value = statistic(drawn)
        if not math.isnan(value):
            values.append(value)
    if not values:
        return math.nan, math.nan
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_difference(first: Sequence[bool], second: Sequence[bool], rounds: int = 1000, seed: int = 0,
                      level: float = 0.95) -> dict[str, float | list[float]]:
    """Accuracy of ``first`` minus ``second`` on the same problems, with a percentile bootstrap
    interval that resamples problems (both methods read the same draw)."""
    assert len(first) == len(second) and first, "one verdict per problem for each method"
    diffs = np.asarray(first, float) - np.asarray(second, float)  # [P] per-problem difference
    draws = np.random.default_rng(seed).integers(0, len(diffs), (rounds, len(diffs)))
    low, high = np.quantile(diffs[draws].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return {"difference": float(diffs.mean()), "ci": [float(low), float(high)]}


def auc_intervals(records: Sequence[Scored], rounds: int = 1000) -> dict[str, tuple[float, float]]:
    """95% bootstrap intervals (over problems) of the head's and log-prob's trajectory AUC and
    of their difference (paired: both read the same resampled problems)."""
    head = lambda rs: trajectory_auc(rs, sprm_score)  # noqa: E731
    logprob = lambda rs: trajectory_auc(rs, logprob_score)  # noqa: E731
    return {
        "trajectory_auc_ci": bootstrap_interval(records, head, rounds),
        "trajectory_auc_logprob_ci": bootstrap_interval(records, logprob, rounds),
        "auc_gain_over_logprob_ci": bootstrap_interval(records, lambda rs: head(rs) - logprob(rs), rounds),
    }


def sample_summary(records: Sequence[Scored]) -> dict[str, float]:
    """What the samples themselves give, whichever head ranks them."""
    return {"self_consistency": self_consistency_accuracy(records), "pass_at_n": pass_at_n(records),
            "sample_accuracy": sample_accuracy(records)}


def head_summary(records: Sequence[Scored]) -> dict[str, object]:
    """The head's numbers on one set of trajectories (N samples per problem); the step AUCs
    only when the records carry step labels."""
    return {"trajectory_auc": trajectory_auc(records, sprm_score), **step_aucs(records),
            "best_of_n": best_of_n_accuracy(records, sprm_score)}


def step_aucs(records: Sequence[Scored]) -> dict[str, object]:
    """Step ROC-AUC pooled, by position and its minimum over positions; empty without step labels."""
    if not has_step_labels(records):
        return {}
    by_position = step_auc_by_position(records)
    pooled = roc_auc([s for r in records for s in r.step_scores], [x for r in records for x in r.step_labels])
    return {"step_auc_pooled": pooled, "step_auc_by_position": by_position,
            "step_auc_min_position": min(by_position.values()) if by_position else math.nan}
