"""Head-training trajectories sampled on an executor's workers (Ray actors or a local pool).

The driver cuts the work into the very ``SampleUnit``s that ``sample_with_search`` runs in
this process, sends them out, and puts the returned trajectories back in unit order: the
same problems, samples and seed give the same trajectories wherever they were drawn. Only
the driver writes anything (the trajectories file, the head).
"""

from __future__ import annotations

from typing import Sequence

from reflective_search.experiments.executors import open_executor
from reflective_search.experiments.spec import ExecutorSpec
from reflective_search.train.sprm import SampleUnit, Trajectory, sample_unit, sample_units
from reflective_search.train.tasks import Task, TrainingProblem


class UnitSampler:
    """A worker's solver: samples one unit with the model the worker loaded."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, unit: SampleUnit) -> list[Trajectory]:
        return sample_unit(self.model, unit)


def sample_on_executor(executor: ExecutorSpec, model_ref: str | None, problems: Sequence[TrainingProblem],
                       samples: int, temperature: float, top_p: float = 0.95, seed: int = 0, chunk: int = 64,
                       progress: bool = True, task: Task | None = None) -> list[Trajectory]:
    """``sample_with_search``'s trajectories, drawn by the executor's workers."""
    from tqdm import tqdm

    units = sample_units(problems, samples, temperature, top_p, seed, chunk, task)
    drawn: dict[int, list[Trajectory]] = {}
    with open_executor(executor, model_ref, UnitSampler) as running, \
            tqdm(total=len(problems), desc="sampling", unit="problem", disable=not progress) as bar:
        for finished in running.map(units):
            drawn[finished.index] = finished.result
            bar.update(len(finished.item.problems))
    return [trajectory for index in range(len(units)) for trajectory in drawn[index]]
