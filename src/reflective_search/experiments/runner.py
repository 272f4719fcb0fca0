"""Running an experiment: plan the missing records, solve them in batches, append each result.

Work is cut into items of up to ``batch_size`` problems sharing one (point, seed); an item
is one ``solve_batch`` call. The executor (executors.py: this process, a process pool, or
Ray actors) solves items wherever it runs them and hands each item's records back here:
only this process writes the results file (see results.py), so workers never race on it
and a killed worker leaves nothing half-written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from reflective_search.config import SearchConfig
from reflective_search.experiments.executors import Executor, open_executor
from reflective_search.experiments.problems import TASKS, Problem, load_problems
from reflective_search.experiments.results import (
    ResultStore, append_event, prepare_run_dir, record_executor, record_key,
)
from reflective_search.experiments.spec import ExperimentSpec, resolved_dict
from reflective_search.experiments.sweep import Point, point_configs

if TYPE_CHECKING:
    from reflective_search.experiments.progress import Progress


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
    # Opened (Ray imported, if asked for) before anything is written; started only if there is work.
    executor = open_executor(spec.executor, spec.model, BatchSolver, log=lambda event: append_event(run_dir, event))
    prepare_run_dir(run_dir, resolved_dict(spec), problems)
    with ResultStore.open(run_dir) as store:
        work = plan_work(points, spec.seeds, problems, store.done, spec.batch_size, spec.problems.task)
        total = len(points) * len(spec.seeds) * len(problems)
        before = len(store.records)
        with Progress(total, store.records, enabled=show_progress) as progress:
            if work:
                execute(executor, work, run_dir, store, progress)
        correct = sum(bool(r["correct"]) for r in store.records)
        return RunSummary(run_dir, len(store.records), len(store.records) - before,
                          correct / max(len(store.records), 1))


def execute(executor: Executor, work: Sequence["WorkItem"], run_dir: Path, store: ResultStore,
            progress: "Progress") -> None:
    """Solve every item on the executor, appending its records as it finishes (any order)."""
    with executor:
        record_executor(run_dir, executor.describe())
        for done in executor.map(work):
            for record in done.result:
                store.append(record)
                progress.add(record)
            keys = [list(record_key(record)) for record in done.result]
            append_event(run_dir, {"event": "done", "item": done.index, **done.worker, "records": keys})


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


class BatchSolver:
    """Solves work items with one model, a fresh searcher per item.

    Fresh because a reused expander's scores depend on what it solved before (its KV
    arena's history shifts float rounding, ~1e-8): a record must depend only on its item,
    whichever worker, and after whichever items, solves it. Building one costs < 1 ms.
    """

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, item: WorkItem) -> list[dict[str, Any]]:
        from reflective_search.facade import ReflectiveSearch

        solutions = ReflectiveSearch(self.model, item.config).solve_batch([problem.text for problem in item.problems])
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
        "duplicate_tokens": stats.duplicate_tokens,
        "text": solution.text,
    }
