"""The evaluation of any model on any task: calibration, head quality, and search methods.

* ``calibrate``: the policy alone (greedy accuracy, per-sample accuracy and pass@N at
  several temperatures, the fraction of truly good steps) on the *validation* split.
* ``head_report``: SPRM quality on N offline samples per problem (trajectory and
  per-position step ROC-AUC, Best-of-N by the head).
* ``search_report``: greedy, Best-of-8 by SPRM / by mean log-probability, self-consistency
  over final expressions (all three from the same Best-of-8 trees) and MCTS, through
  ``ReflectiveSearch`` exactly as users run it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from reflective_search.model.reflective import ReflectiveModel
from reflective_search.train import metrics
from reflective_search.train.metrics import Scored
from reflective_search.train.sprm import Trajectory, sample_trajectories
from reflective_search.train.step_features import frozen_features, prompt_shared_pass, stack_step_features
from reflective_search.train.tasks import Task, TrainingProblem, get_task


def _labels(task: Task, problem: TrainingProblem, response: str) -> tuple[bool, ...]:
    """The task's true step labels, or none (tasks without a step checker)."""
    return tuple(task.step_labels(problem, response)) if task.step_labels is not None else ()


# -- records from offline samples and from search trees ---------------------------------------


def score_trajectories(model: ReflectiveModel, trajectories: Sequence[Trajectory],
                       problem_index: dict[TrainingProblem, int], task: Task | None = None,
                       features: tuple | None = None) -> list[Scored]:
    """Head scores for offline trajectories (one batched forward), as ``Scored`` records.

    ``features``: ``frozen_features(model, trajectories)`` if already computed (None: computed here).
    """
    task = task or get_task("countdown")
    features, _, owners, _ = features or frozen_features(model, trajectories)
    with torch.no_grad():
        scores = model.score_features(features).tolist()
    per_trajectory: list[list[float]] = [[] for _ in trajectories]
    for owner, score in zip(owners.tolist(), scores):
        per_trajectory[owner].append(score)
    return [
        Scored(problem_index[t.problem], tuple(s), _labels(task, t.problem, t.response), math.nan,
               task.answer_key(t.response), t.correct)
        for t, s in zip(trajectories, per_trajectory)
    ]


def reads_same_features(a: ReflectiveModel, b: ReflectiveModel) -> bool:
    """Whether two models' heads read identical step features: the same backbone weights,
    head layers and step rule (two heads trained on one frozen policy, say)."""
    if (a.settings.feature_layers, a.settings.delimiters, a.search_step) != \
            (b.settings.feature_layers, b.settings.delimiters, b.search_step):
        return False
    mine, theirs = a.backbone.state_dict(), b.backbone.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)


@torch.no_grad()
def mean_logprobs(model: ReflectiveModel, trajectories: Sequence[Trajectory], rows: int = 32) -> list[float]:
    """The policy's mean log-probability per response token (temperature 1) of each trajectory."""
    return features_and_logprobs(model, trajectories, rows)[1]


@torch.no_grad()
def features_and_logprobs(model: ReflectiveModel, trajectories: Sequence[Trajectory], rows: int = 32,
                          progress: bool = True) -> tuple[tuple[torch.Tensor, ...], list[float]]:
    """``frozen_features(model, trajectories)`` and ``mean_logprobs`` from one prompt-shared pass
    (``rows`` trajectories a forward: the LM head's [rows, T, vocab] logits bound its memory)."""
    read = prompt_shared_pass(model, trajectories, rows, logprobs=True, progress=progress)
    return stack_step_features(model, trajectories, [f for f, _ in read]), [lp for _, lp in read]


def with_logprobs(records: Sequence[Scored], logprobs: Sequence[float]) -> list[Scored]:
    import dataclasses

    return [dataclasses.replace(r, mean_logprob=lp) for r, lp in zip(records, logprobs)]


def tree_records(problem: TrainingProblem, index: int, tree, task: Task) -> list[Scored]:
    """One record per finished trajectory of a search tree."""
    out = []
    for leaf in [n for n in tree.leaves() if n != 0]:
        path = tree.path(leaf)[1:]
        text = tree.response_text(leaf)
        tokens = sum(int(tree.token_len[n]) for n in path)
        logprob = sum(float(tree.logprob[n]) for n in path) / max(tokens, 1)
        out.append(Scored(index, tuple(tree.step_scores(leaf)), _labels(task, problem, text), logprob,
                          task.answer_key(text), task.correct(problem, text)))
    return out


# -- calibration ------------------------------------------------------------------------------------


def calibrate(model: ReflectiveModel, problems: Sequence[TrainingProblem], temperatures: Sequence[float],
              samples: int = 8, seed: int = 0, task: Task | None = None, progress: bool = True) -> dict[str, Any]:
    """The policy's accuracy profile on ``problems`` (use the validation split); ``progress``:
    a bar per sampling pass on standard error (a terminal only)."""
    task = task or get_task("countdown")
    index = {p: i for i, p in enumerate(problems)}
    greedy = sample_trajectories(model, problems, 1, 0.0, seed=seed, task=task, progress=progress)
    row: dict[str, Any] = {"greedy": sum(t.correct for t in greedy) / len(greedy)}
    for temperature in temperatures:
        sampled = sample_trajectories(model, problems, samples, temperature, seed=seed, task=task, progress=progress)
        records = [Scored(index[t.problem], (), _labels(task, t.problem, t.response), math.nan,
                          task.answer_key(t.response), t.correct) for t in sampled]
        row[f"T={temperature}"] = {
            "per_sample": metrics.sample_accuracy(records),
            f"pass@{samples}": metrics.pass_at_n(records),
            "self_consistency": metrics.self_consistency_accuracy(records),
            **step_figures(task, records),
        }
    return row


def step_figures(task: Task, records: Sequence[Scored]) -> dict[str, Any]:
    """The fraction of truly good steps, for a task that labels steps (left out for one that
    does not: not measured is not 0)."""
    return {"positive_steps": metrics.positive_step_fraction(records)} if task.step_labels is not None else {}


# -- search through the engine ------------------------------------------------------------------


def run_search(model: ReflectiveModel, problems: Sequence[TrainingProblem], overrides: dict[str, Any],
               task: Task, chunk: int = 32, progress: bool = True):
    """Solutions for every problem, in chunks that share model calls; ``progress``: a bar of
    problems solved and generated tokens per second on standard error (a terminal only)."""
    from reflective_search.experiments.progress import progress_bar, rate_postfix
    from reflective_search.facade import ReflectiveSearch

    search = ReflectiveSearch(model, search_config(model, task, overrides))
    solutions, start = [], time.perf_counter()
    with progress_bar(len(problems), str(overrides.get("method")), "problem", progress) as bar:
        for first in range(0, len(problems), chunk):
            solved = search.solve_batch([p.text for p in problems[first: first + chunk]])
            solutions += solved
            bar.set_postfix(rate_postfix(sum(s.stats.generated_tokens for s in solutions), start), refresh=False)
            bar.update(len(solved))
    return solutions


def search_config(model: ReflectiveModel, task: Task, overrides: dict[str, Any]) -> dict[str, Any]:
    """The whole config an evaluation searches with: the library's defaults, then the task's, then
    the model's own (its chosen settings), then ``overrides``; every key set, so nothing is re-layered."""
    from reflective_search.config import SearchConfig, to_dict

    layers = {**dict(task.search_defaults), **dict(model.settings.search_defaults), **overrides}
    return to_dict(SearchConfig().replace(**layers))


@dataclass(frozen=True, slots=True)
class MethodResult:
    accuracy: float  # fraction of problems whose chosen answer checks out
    tokens: float  # mean generated tokens per problem
    seconds: float  # mean wall seconds per problem
    correct: tuple[bool, ...] = ()  # [P] each problem's verdict, in the order given (paired comparisons)

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "tokens": self.tokens, "seconds": self.seconds,
                "correct": [int(c) for c in self.correct]}


def method_result(problems: Sequence[TrainingProblem], solutions, task: Task) -> MethodResult:
    correct = tuple(bool(task.correct(p, s.text)) for p, s in zip(problems, solutions))
    n = len(problems)
    return MethodResult(sum(correct) / n, sum(s.stats.generated_tokens for s in solutions) / n,
                        sum(s.stats.seconds for s in solutions) / n, correct)


def best_of_n_report(model: ReflectiveModel, problems: Sequence[TrainingProblem], n: int, temperature: float,
                     task: Task, chunk: int = 32, progress: bool = True) -> dict[str, Any]:
    """Best-of-N by SPRM (the engine's pick), by mean log-probability and self-consistency, from one run."""
    overrides = {"method": "best_of_n", "best_of_n.n": n, "sampling.temperature": temperature}
    solutions = run_search(model, problems, overrides, task, chunk, progress)
    records = [r for i, (p, s) in enumerate(zip(problems, solutions)) for r in tree_records(p, i, s.tree, task)]
    engine = method_result(problems, solutions, task)
    cost = {"tokens": engine.tokens, "seconds": engine.seconds}  # the same samples, ranked another way
    report = {
        f"best_of_{n}_sprm": engine.as_dict(),
        f"best_of_{n}_logprob": {"accuracy": metrics.best_of_n_accuracy(records, metrics.logprob_score), **cost},
        f"self_consistency_{n}": {"accuracy": metrics.self_consistency_accuracy(records), **cost},
        f"pass@{n}": metrics.pass_at_n(records),
        "per_sample": metrics.sample_accuracy(records),
        "trajectory_auc_sprm": metrics.trajectory_auc(records, metrics.sprm_score),
        "trajectory_auc_logprob": metrics.trajectory_auc(records, metrics.logprob_score),
        **metrics.auc_intervals(records),
        **({"step_auc_by_position": metrics.step_auc_by_position(records)} if task.step_labels is not None else {}),
        **step_figures(task, records),
    }
    return report


def step_search_report(model: ReflectiveModel, problems: Sequence[TrainingProblem], method: str,
                       overrides: dict[str, Any], task: Task, chunk: int = 16, progress: bool = True) -> dict[str, Any]:
    """A step search's (beam, dvts, rebase, mcts) verdicts and cost, and what its trees held
    (``tree_coverage``)."""
    solutions = run_search(model, problems, {"method": method, **overrides}, task, chunk, progress)
    return {**method_result(problems, solutions, task).as_dict(), **tree_coverage(problems, solutions, task)}


def tree_coverage(problems: Sequence[TrainingProblem], solutions, task: Task) -> dict[str, float]:
    """What the search trees held beside what was picked: ``pass@tree``, the fraction of problems
    with a correct finished path anywhere in the tree (the most any final selection could reach;
    Best-of-N's pass@N), and the mean distinct finished paths and duplicate tokens per tree."""
    finished = [{s.tree.response_text(leaf) for leaf in s.tree.terminal_leaves()} for s in solutions]
    n = len(problems)
    return {"pass@tree": sum(any(task.correct(p, text) for text in texts) for p, texts in zip(problems, finished)) / n,
            "finished_paths": sum(map(len, finished)) / n,
            "duplicate_tokens": sum(s.stats.duplicate_tokens for s in solutions) / n}


def greedy_result(model: ReflectiveModel, problems: Sequence[TrainingProblem], task: Task,
                  chunk: int = 64, progress: bool = True) -> MethodResult:
    return method_result(problems, run_search(model, problems, {"method": "greedy"}, task, chunk, progress), task)
