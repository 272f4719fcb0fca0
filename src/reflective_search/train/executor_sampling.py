"""Head-training trajectories sampled, and their frozen step features read, on an
executor's workers (Ray actors or a local pool).

The driver cuts the work into the very ``SampleUnit``s that ``sample_with_search`` runs in
this process, sends them out, and puts the returned trajectories back in unit order: the
same problems, samples and seed give the same trajectories wherever they were drawn. Only
the driver writes anything (the trajectories file, the head). The frozen feature pass
(``features_on_executor``) is cut the same way, by whole prompts, and reassembled in order.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

from reflective_search.experiments.executors import open_executor
from reflective_search.experiments.spec import ExecutorSpec
from reflective_search.train.sprm import SampleUnit, Trajectory, sample_unit, sample_units
from reflective_search.train.step_features import prompt_groups, prompt_shared_features
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
    from reflective_search.experiments.progress import progress_bar

    units = sample_units(problems, samples, temperature, top_p, seed, chunk, task)
    drawn: dict[int, list[Trajectory]] = {}
    with open_executor(executor, model_ref, UnitSampler) as running, \
            progress_bar(len(problems), "sampling", "problem", progress) as bar:
        for finished in running.map(units):
            drawn[finished.index] = finished.result
            bar.update(len(finished.item.problems))
    return [trajectory for index in range(len(units)) for trajectory in drawn[index]]


@dataclasses.dataclass(frozen=True)
class FeatureUnit:
    """Trajectories (whole prompt groups) whose features a worker reads, and where from: the
    head's layers and the search defaults that fix the step rule (the driver's, not the saved model's)."""
    trajectories: tuple[Trajectory, ...]
    feature_layers: tuple[int, ...]
    search_defaults: tuple


class UnitFeatures:
    """A worker's feature reader: the unit's step features [steps, H] per trajectory."""

    def __init__(self, model) -> None:
        self.model = model

    def __call__(self, unit: FeatureUnit) -> list:
        settings = dataclasses.replace(self.model.settings, feature_layers=unit.feature_layers,
                                       search_defaults=unit.search_defaults)
        return prompt_shared_features(self.model.reading(settings), unit.trajectories, progress=False)


def features_on_executor(executor: ExecutorSpec, model_ref: str | None, model, trajectories: Sequence[Trajectory],
                         per_unit: int = 256, progress: bool = True) -> list:
    """``prompt_shared_features(model, trajectories)``, read by the executor's workers (each
    loads ``model_ref``, the backbone of ``model``) in units of about ``per_unit`` trajectories."""
    from reflective_search.experiments.progress import progress_bar

    members = feature_units(trajectories, per_unit)
    settings = model.settings
    units = [FeatureUnit(tuple(trajectories[i] for i in unit), settings.feature_layers, settings.search_defaults)
             for unit in members]
    out: list = [None] * len(trajectories)
    with open_executor(executor, model_ref, UnitFeatures) as running, \
            progress_bar(len(trajectories), "head features", "trajectory", progress) as bar:
        for finished in running.map(units):
            for i, features in zip(members[finished.index], finished.result):
                out[i] = features
            bar.update(len(finished.result))
    return out


def feature_units(trajectories: Sequence[Trajectory], per_unit: int) -> list[list[int]]:
    """Indices of whole prompt groups, packed in first-seen order into units of about
    ``per_unit`` trajectories (a larger group is a unit of its own)."""
    packed: list[list[int]] = [[]]
    for group in prompt_groups(trajectories).values():
        if packed[-1] and len(packed[-1]) + len(group) > per_unit:
            packed.append([])
        packed[-1].extend(group)
    return [unit for unit in packed if unit]
