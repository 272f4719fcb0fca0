"""Running an experiment: plan the missing records, solve them in batches, append each result.

Work is cut into items of up to ``batch_size`` problems sharing one (point, seed); an item
is one ``solve_batch`` call. With ``workers: 1`` items run in this process; with more, a
``spawn`` pool runs them, each worker loading its own model (torch threads set to 1) and
sending its records back: only this process writes the results file (see results.py), so
workers never race on it and a killed worker leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from reflective_search.config import SearchConfig
from reflective_search.experiments.problems import TASKS, Problem, load_problems
from reflective_search.experiments.results import ResultStore, prepare_run_dir, record_key
from reflective_search.experiments.spec import ExperimentSpec, resolved_dict
from reflective_search.experiments.sweep import Point, point_configs


@dataclass(frozen=True, slots=True)
class WorkItem:
    point: Point  # the swept values this item runs at
    seed: int  # replaces search.seed
    config: SearchConfig  # the point's search config, seed applied
    problems: tuple[Problem, ...]  # solved together in one solve_batch call
    task: str  # name of the checker that grades the answers


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_dir: Path  # where the results are
    records: int  # records in results.jsonl now
    new_records: int  # records this invocation added
    accuracy: float  # fraction of all records that are correct


def run_experiment(spec: ExperimentSpec, show_progress: bool = True) -> RunSummary:
    """Run (or resume) an experiment; every finished record is on disk when this returns or raises."""
    from reflective_search.experiments.progress import Progress

    problems = load_problems(spec.problems)
    points = point_configs(spec.search, spec.sweep)
    run_dir = Path(spec.output_dir)
    prepare_run_dir(run_dir, resolved_dict(spec), problems)
    with ResultStore.open(run_dir) as store:
        work = plan_work(points, spec.seeds, problems, store.done, spec.batch_size, spec.problems.task)
        total = len(points) * len(spec.seeds) * len(problems)
        before = len(store.records)
        with Progress(total, store.records, enabled=show_progress) as progress:
            for records in execute(work, spec.model, spec.workers):
                for record in records:
                    store.append(record)
                    progress.add(record)
        correct = sum(bool(r["correct"]) for r in store.records)
        return RunSummary(run_dir, len(store.records), len(store.records) - before,
                          correct / max(len(store.records), 1))


def plan_work(points: Sequence[tuple[Point, SearchConfig]], seeds: Sequence[int], problems: Sequence[Problem],
              done: set, batch_size: int, task: str) -> list[WorkItem]:
    """Items for every (point, seed, problem) whose record is missing, in run order."""
    items = []
    for point, config in points:
        for seed in seeds:
            missing = [p for p in problems if _key(p, point, seed) not in done]
            for start in range(0, len(missing), batch_size):
                batch = tuple(missing[start : start + batch_size])
                items.append(WorkItem(point, seed, dataclasses.replace(config, seed=seed), batch, task))
    return items


def _key(problem: Problem, point: Point, seed: int):
    return record_key({"problem_id": problem.problem_id, "point": point, "seed": seed})


def execute(work: Sequence[WorkItem], model_ref: str | None, workers: int) -> Iterator[list[dict[str, Any]]]:
    """Records of each item as it finishes (item order with one worker, completion order with more)."""
    if not work:
        return
    if workers == 1 or len(work) == 1:
        solver = BatchSolver(_load_model(model_ref))
        for item in work:
            yield solver.run(item)
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    # Leaving the with-block (finished, Ctrl-C or error) terminates the workers.
    with context.Pool(min(workers, len(work)), initializer=_init_worker, initargs=(model_ref,)) as pool:
        yield from pool.imap_unordered(_run_in_worker, work)


class BatchSolver:
    """Solves work items with one model, reusing its searcher while the config stays the same."""

    def __init__(self, model) -> None:
        self.model = model
        self._config: SearchConfig | None = None
        self._search = None

    def run(self, item: WorkItem) -> list[dict[str, Any]]:
        if item.config != self._config:
            from reflective_search.facade import ReflectiveSearch

            self._search, self._config = ReflectiveSearch(self.model, item.config), item.config
        solutions = self._search.solve_batch([problem.text for problem in item.problems])
        parameters = self.model.num_parameters
        return [make_record(item, problem, solution, parameters) for problem, solution in zip(item.problems, solutions)]


def make_record(item: WorkItem, problem: Problem, solution, parameters: int) -> dict[str, Any]:
    """One line of results.jsonl. FLOPs: 2 x parameters x tokens run through the model."""
    stats = solution.stats
    return {
        "problem_id": problem.problem_id,
        "point": item.point,
        "seed": item.seed,
        "method": solution.method,
        "answer": solution.answer,
        "reference": problem.record.get("answer"),
        "correct": bool(TASKS[item.task].is_correct(problem.record, solution)),
        "score": float(solution.score),
        "generated_tokens": stats.generated_tokens,
        "forwarded_tokens": stats.forwarded_tokens,
        "expansions": stats.expansions,
        "parameters": parameters,
        "flops": 2 * parameters * stats.forwarded_tokens,
        "seconds": stats.seconds,
        "cpu_seconds": stats.cpu_seconds,
        "unspent_tokens": stats.unspent_tokens,
        "text": solution.text,
    }


def _load_model(model_ref: str | None):
    from reflective_search.default_model import load_default_model

    return load_default_model(model_ref)


# -- worker processes (state is per process: one model each) --------------------------------

_worker_solver: BatchSolver | None = None


def _init_worker(model_ref: str | None) -> None:
    import torch

    global _worker_solver
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    torch.set_num_threads(1)
    _worker_solver = BatchSolver(_load_model(model_ref))


def _run_in_worker(item: WorkItem) -> list[dict[str, Any]]:
    return _worker_solver.run(item)
