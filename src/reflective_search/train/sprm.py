"""Train the SPRM head on the policy's own trajectories, labelled only by final correctness.

1. Sample several trajectories per training problem from the policy (``sample_trajectories``
   with ``generate``, or ``sample_with_search`` through the shared-KV engine: 7-9x faster here).
2. Label each by whether its final answer checks out; every step inherits that label.
   (``labels="steps"`` trains on the Countdown step checker's labels instead: a diagnostic
   upper bound on what the backbone can learn, never the shipped head.)
3. Read each step's feature exactly where inference reads it (``train.step_features``).
4. Train the head with the SPR loss or plain class-balanced BCE, either on frozen features
   or jointly with the backbone, whose gradient is scaled by ``backbone_scale`` (1e-4 in
   MetaStone-S1), keeping the policy itself unchanged in the forward pass.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from reflective_search.errors import ProblemError
from reflective_search.model.head import build_head
from reflective_search.model.reflective import ReflectiveModel
from reflective_search.train.losses import LOSSES
from reflective_search.train.step_features import make_step_batch, prompt_shared_features, stack_step_features
from reflective_search.train.tasks import Task, TrainingProblem, get_task

if TYPE_CHECKING:
    from reflective_search.config import SearchConfig


@dataclass(frozen=True, slots=True)
class Trajectory:
    problem: TrainingProblem  # the problem it answers
    prompt_ids: tuple[int, ...]  # model.encode_prompt(problem.text)
    response_ids: tuple[int, ...]  # sampled tokens, end-of-sequence and padding removed
    response: str  # decoded response text
    correct: bool  # whether the final answer checks out (the only training label)


@dataclass(frozen=True, slots=True)
class HeadConfig:
    loss: str = "spr"  # spr | bce
    backbone_scale: float = 0.0  # gradient scale reaching the backbone (0: frozen features; paper 1e-4)
    epochs: int = 30  # passes over the training trajectories (joint training: 1 is already slow on CPU)
    batch_size: int = 128  # trajectories per step
    learning_rate: float = 1e-3  # head AdamW learning rate
    backbone_learning_rate: float = 1e-4  # backbone AdamW learning rate (joint training only)
    weight_decay: float = 0.01  # head AdamW weight decay (paper: 1e-2)
    feature_layers: tuple[int, ...] = (-1,)  # decoder layers whose inputs the head reads (-1: the last, as MetaStone-S1)
    policy_weight: float = 1.0  # joint training: weight of the policy loss on correct trajectories
    labels: str = "outcome"  # outcome (final correctness; the SPRM's only signal) | steps (diagnostic)
    standardise: bool = False  # frozen heads: standardise each feature (train mean and std, saved with the head)
    seed: int = 0  # head init and batch order


# -- 1. sampling -------------------------------------------------------------------------


@torch.no_grad()
def sample_trajectories(model: ReflectiveModel, problems: Sequence[TrainingProblem], samples: int,
                        temperature: float, top_p: float = 0.95, max_new_tokens: int = 160,
                        batch_size: int = 256, seed: int = 0, task: Task | None = None,
                        progress: bool = False) -> list[Trajectory]:
    """``samples`` trajectories per problem (temperature 0: one greedy one), labelled by correctness.

    Prompts of equal length are batched together, so no padding shifts positions. ``progress``:
    a bar of samples drawn on standard error (a terminal only).
    """
    from reflective_search.experiments.progress import progress_bar, rate_postfix

    torch.manual_seed(seed)
    task = task or get_task("countdown")
    prompts = [tuple(model.encode_prompt(p.text)) for p in problems]
    copies = 1 if temperature == 0 else samples
    jobs = sorted(((prompts[i], problems[i]) for i in range(len(problems)) for _ in range(copies)),
                  key=lambda job: len(job[0]))
    out: list[Trajectory] = []
    began, tokens = time.perf_counter(), 0
    with progress_bar(len(jobs), "sampling", "sample", progress) as bar:
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start: start + batch_size]
            for length in sorted({len(ids) for ids, _ in chunk}):
                drawn = _sample_same_length(model, [job for job in chunk if len(job[0]) == length], temperature,
                                            top_p, max_new_tokens, task)
                out += drawn
                tokens += sum(len(t.response_ids) for t in drawn)
                bar.set_postfix(rate_postfix(tokens, began), refresh=False)
                bar.update(len(drawn))
    return out


def _sample_same_length(model, jobs, temperature, top_p, max_new_tokens, task: Task) -> list[Trajectory]:
    ids = torch.tensor([list(prompt) for prompt, _ in jobs])
    options = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0) if temperature > 0 else \
        dict(do_sample=False)
    generated = model.backbone.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
        eos_token_id=model.tokenizer.eos_token_id, pad_token_id=model.tokenizer.pad_token_id, **options,
    )[:, ids.shape[1]:]
    stop = {model.tokenizer.eos_token_id, model.tokenizer.pad_token_id}
    out = []
    for (prompt, problem), row in zip(jobs, generated.tolist()):
        response_ids = tuple(_until(row, stop))
        response = model.decode(response_ids)
        out.append(Trajectory(problem, prompt, response_ids, response, task.correct(problem, response)))
    return out


def _until(ids: list[int], stop: set[int]) -> list[int]:
    for index, token in enumerate(ids):
        if token in stop:
            return ids[:index]
    return ids


@torch.no_grad()
def sample_with_search(model: ReflectiveModel, problems: Sequence[TrainingProblem], samples: int,
                       temperature: float, top_p: float = 0.95, seed: int = 0, chunk: int = 64,
                       progress: bool = True, task: Task | None = None) -> list[Trajectory]:
    """Like ``sample_trajectories``, but through the search engine (Best-of-N trees, shared KV).

    The samples come from exactly the distribution search draws from (the task's search
    defaults, e.g. Countdown's step limits).
    The engine seeds each problem from its prompt, so the k-th copy of a repeated problem
    is drawn with seed ``seed + k``: copies add new samples instead of repeating them.
    The work is cut into ``SampleUnit``s, so an executor can run the same units elsewhere
    (train/executor_sampling.py) and get the very same trajectories.
    """
    from reflective_search.experiments.progress import progress_bar, rate_postfix

    out: list[Trajectory] = []
    start, tokens = time.perf_counter(), 0
    with progress_bar(len(problems), "sampling", "problem", progress) as bar:
        for unit in sample_units(problems, samples, temperature, top_p, seed, chunk, task):
            drawn = sample_unit(model, unit)
            out += drawn
            tokens += sum(len(t.response_ids) for t in drawn)
            bar.set_postfix(rate_postfix(tokens, start), refresh=False)
            bar.update(len(unit.problems))
    return out


@dataclass(frozen=True, slots=True)
class SampleUnit:
    config: "SearchConfig"  # the search drawing the samples, its seed set for this unit's round of copies
    problems: tuple[TrainingProblem, ...]  # solved together in one solve_batch call
    task: str = "countdown"  # the name of the task whose checker labels the trajectories


def sample_units(problems: Sequence[TrainingProblem], samples: int, temperature: float, top_p: float = 0.95,
                 seed: int = 0, chunk: int = 64, task: Task | None = None) -> list[SampleUnit]:
    """The solve_batch calls ``sample_with_search`` makes, in order."""
    from reflective_search.config import SearchConfig

    task = task or get_task("countdown")
    method = {"method": "greedy"} if temperature == 0 else {"method": "best_of_n", "best_of_n.n": samples}
    base = SearchConfig().replace(**dict(task.search_defaults), **method,
                                  **{"sampling.temperature": temperature, "sampling.top_p": top_p})
    return [SampleUnit(base.replace(seed=seed + copy), tuple(group[first: first + chunk]), task.name)
            for copy, group in enumerate(_copies_by_round(problems)) for first in range(0, len(group), chunk)]


@torch.no_grad()
def sample_unit(model: ReflectiveModel, unit: SampleUnit) -> list[Trajectory]:
    """Every leaf of every problem's search tree, as a labelled trajectory."""
    from reflective_search.facade import ReflectiveSearch

    task = get_task(unit.task)
    with warnings.catch_warnings():  # the head's scores pick nothing here: an untrained one is fine
        warnings.filterwarnings("ignore", message=".*SPRM head was never trained")
        search = ReflectiveSearch(model, unit.config)
    solutions = search.solve_batch([p.text for p in unit.problems])
    return [t for problem, solution in zip(unit.problems, solutions)
            for t in _tree_trajectories(model, problem, solution.tree, task)]


def _copies_by_round(problems: Sequence[TrainingProblem]) -> list[list[TrainingProblem]]:
    """Round k holds the k-th occurrence of every problem drawn at least k + 1 times."""
    seen: dict[TrainingProblem, int] = {}
    rounds: list[list[TrainingProblem]] = []
    for problem in problems:
        copy = seen.get(problem, 0)
        seen[problem] = copy + 1
        if copy == len(rounds):
            rounds.append([])
        rounds[copy].append(problem)
    return rounds


def _tree_trajectories(model: ReflectiveModel, problem: TrainingProblem, tree, task: Task) -> list[Trajectory]:
    stop = set(model.eos_token_ids)  # the engine ends a path only at EOS (its last token)
    out = []
    for leaf in [node for node in tree.leaves() if node != 0]:
        prompt, *steps = tree.token_path(leaf)
        response = tree.response_text(leaf)
        ids = _until([t for step in steps for t in step], stop)
        out.append(Trajectory(problem, tuple(prompt), tuple(ids), response, task.correct(problem, response)))
    return out


# -- 4. training -------------------------------------------------------------------------


def contrast_trajectories(model: ReflectiveModel, task: Task, count: int, number_counts: Sequence[int],
                          seed: int) -> list[Trajectory]:
    """``count`` generated (correct, faked) response pairs of the task as trajectories, each
    labelled by the task's checker like any sample: hard negatives that look solved."""
    require_contrast(task, count)
    return [encode_trajectory(model, problem, response, task.correct(problem, response))
            for problem, *responses in task.contrast(count, number_counts, seed) for response in responses]


def require_contrast(task: Task, count: int) -> None:
    """Refuse a contrast request the task cannot serve (before any work)."""
    if count < 0:
        raise ProblemError(f"--contrast: {count} is not a number of pairs; give 0 or more")
    if count and task.contrast is None:
        raise ProblemError(f"--contrast: the {task.name} task has no generator of faked solutions; "
                           f"use --task countdown or leave --contrast out")


def scale_gradient(features: torch.Tensor, scale: float) -> torch.Tensor:
    """Same values; the backbone receives ``scale`` times the gradient (MetaStone-S1's trick)."""
    return features * scale + features.detach() * (1 - scale)


def train_head(model: ReflectiveModel, trajectories: Sequence[Trajectory], config: HeadConfig,
               log=None, task: Task | None = None, read_features=None) -> ReflectiveModel:
    """Train a fresh head on labelled trajectories; returns the model wearing it (backbone
    shared). Progress goes to ``log`` (None: standard error at call time). ``read_features``
    (model, trajectories) -> each trajectory's step features, for a frozen head: where the
    feature pass runs (None: ``prompt_shared_features`` in this process)."""
    log = log or sys.stderr
    # The feature hooks are fixed when a model is built, so other layers mean another wrapper.
    settings = dataclasses.replace(model.settings, feature_layers=tuple(config.feature_layers), head_trained=True)
    frozen = config.backbone_scale == 0
    # Features first: a pool of workers may draw on torch's global generator, which seeds the head.
    reading = model.reading(settings)
    features = (read_features or prompt_shared_features)(reading, trajectories) if frozen else None
    torch.manual_seed(config.seed)
    model = model.with_head(build_head(reading.feature_size, model.settings.head_width), settings)
    if not frozen:
        if config.standardise:
            raise ValueError("standardise applies to frozen heads (backbone_scale 0): the features move in joint training")
        if model.adapter_source is not None:  # a LoRA policy: train its adapter, which saves as one again
            from reflective_search.train.finetune import continue_lora

            model = continue_lora(model)
        _train_joint(model, trajectories, config, log, task)
        model.adapter_source = None  # the backbone changed: saved as the trained adapter, or in full
    else:
        _train_frozen(model, trajectories, features, config, log, task)
    return model.eval()


def _head_optimizer(model: ReflectiveModel, config: HeadConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.head.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)


def _train_frozen(model: ReflectiveModel, trajectories, per_trajectory, config: HeadConfig, log,
                  task: Task | None) -> None:
    """The head trains on features computed once (trajectory-level batches)."""
    features, labels, owners, _ = stack_step_features(model, trajectories, per_trajectory, config.labels, task)
    print(f"head features: {len(labels)} steps of {len(trajectories)} trajectories", file=log, flush=True)
    if config.standardise:
        model.feature_norm = (features.mean(dim=0), features.std(dim=0).clamp_min(1e-6))
    loss_fn, optimizer = LOSSES[config.loss], _head_optimizer(model, config)
    order, rng, start = list(range(len(trajectories))), random.Random(config.seed), time.perf_counter()
    model.head.train()
    for epoch in range(config.epochs):
        rng.shuffle(order)
        total = 0.0
        for first in range(0, len(order), config.batch_size):
            chosen = torch.zeros(len(trajectories), dtype=torch.bool)
            chosen[order[first: first + config.batch_size]] = True
            steps = chosen[owners]
            loss = loss_fn(model.head_logits(features[steps]), labels[steps])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        _log_epoch(log, epoch, total, features, labels, model, start)


def _train_joint(model: ReflectiveModel, trajectories, config: HeadConfig, log, task: Task | None) -> None:
    """Head and backbone together, as in MetaStone-S1 (where GRPO trains the policy alongside).

    The backbone's loss is the policy's own next-token loss on the *correct* trajectories
    (rejection-sampling fine-tuning: GRPO's update with 0/1 rewards, positive side) plus the
    head's loss reaching it through ``scale_gradient``. Adam is invariant to a loss's overall
    scale, so the 1e-4 only means something relative to the policy loss it is added to.
    """
    loss_fn, optimizer = LOSSES[config.loss], _head_optimizer(model, config)
    backbone_optimizer = torch.optim.AdamW(model.backbone.parameters(), lr=config.backbone_learning_rate,
                                           weight_decay=0.0)
    from tqdm import tqdm

    order, rng, start = list(range(len(trajectories))), random.Random(config.seed), time.perf_counter()
    batches = -(-len(order) // config.batch_size)
    bar = tqdm(total=config.epochs * batches, desc="joint training", unit="batch", file=log)
    model.train()
    for epoch in range(config.epochs):
        rng.shuffle(order)
        total = 0.0
        for first in range(0, len(order), config.batch_size):
            chosen = [trajectories[i] for i in order[first: first + config.batch_size]]
            loss = _joint_loss(model, chosen, loss_fn, config, task)
            optimizer.zero_grad(set_to_none=True)
            backbone_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.backbone.parameters(), 1.0)
            optimizer.step()
            backbone_optimizer.step()
            total += loss.item()
            bar.update()
        print(f"epoch {epoch} loss {total:.4f} elapsed {time.perf_counter() - start:.0f}s", file=log, flush=True)
    bar.close()


def _joint_loss(model: ReflectiveModel, trajectories: Sequence[Trajectory], loss_fn, config: HeadConfig,
                task: Task | None = None) -> torch.Tensor:
    """Policy loss on the correct trajectories' responses + head loss (backbone gradient scaled)."""
    batch = make_step_batch(model, trajectories, config.labels, task)
    positions = torch.arange(batch.input_ids.shape[1])[None].expand_as(batch.input_ids)
    logits, features = model(batch.input_ids, position_ids=positions, attention_mask=batch.attention_mask)
    features = scale_gradient(features[batch.rows, batch.positions], config.backbone_scale)
    head_loss = loss_fn(model.head_logits(features), batch.labels)
    targets = batch.policy_labels
    if (targets[:, 1:] != -100).any():
        policy_loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), targets[:, 1:].reshape(-1), ignore_index=-100)
    else:
        policy_loss = logits.sum() * 0.0
    return config.policy_weight * policy_loss + head_loss


def _log_epoch(log, epoch: int, total: float, features, labels, model, start: float) -> None:
    with torch.no_grad():
        model.head.eval()
        agree = ((model.head_logits(features) > 0) == (labels > 0.5)).float().mean().item()
        model.head.train()
    print(f"epoch {epoch} loss {total:.4f} agreement {agree:.3f} elapsed {time.perf_counter() - start:.0f}s",
          file=log, flush=True)


# -- trajectory files (so head variants train on the very same samples) ---------------------


def save_trajectories(trajectories: Sequence[Trajectory], path) -> None:
    """One JSON line per trajectory: problem text, reference answer, response, correctness.

    Written beside ``path`` and moved over it, so a run killed mid-write leaves no
    half file for the next run to reuse.
    """
    import json
    import os
    from pathlib import Path

    lines = [json.dumps({"problem": t.problem.text, "answer": t.problem.answer, "response": t.response,
                         "correct": t.correct}) for t in trajectories]
    partial = Path(f"{path}.partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    os.replace(partial, path)


def load_trajectories(model: ReflectiveModel, path) -> list[Trajectory]:
    """Trajectories saved by ``save_trajectories``, re-encoded with ``model``'s tokenizer
    (their labels as checked when they were sampled)."""
    return [encode_trajectory(model, problem, response, correct)
            for problem, response, correct in read_trajectory_records(path)]


def read_trajectory_records(path) -> list[tuple[TrainingProblem, str, bool]]:
    """(problem, response, correct) of each line of a trajectories file (blank lines skipped);
    a line that is not such a record is a one-line ProblemError naming it."""
    from pathlib import Path

    try:
        lines = Path(path).read_bytes().decode("utf-8").split("\n")  # JSONL lines end at \n: a lone \r, \u2028 are text
    except OSError as exc:
        raise ProblemError(f"cannot read trajectories file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ProblemError(f"trajectories file {path} is not UTF-8 text: delete it to sample again") from None
    records = [_trajectory_record(line, f"{path} line {number}")
               for number, line in enumerate(lines, start=1) if line.strip()]
    if not records:
        raise ProblemError(f"trajectories file {path} holds no trajectories: delete it to sample again")
    return records


def _trajectory_record(line: str, where: str) -> tuple[TrainingProblem, str, bool]:
    from reflective_search.jsonl import json_object

    record = json_object(line, where, '{"problem": ..., "response": ..., "correct": ...}',
                         ": delete the file to sample again")
    for key, kind, wanted in (("problem", str, "text"), ("response", str, "text"), ("correct", bool, "true or false")):
        if not isinstance(record.get(key), kind):
            raise ProblemError(f"{where}: {key!r} must be {wanted}")
    answer = record.get("answer")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float, type(None))):
        raise ProblemError(f"{where}: 'answer' must be text, a number or null")
    return TrainingProblem(record["problem"], answer), record["response"], record["correct"]


def encode_trajectory(model: ReflectiveModel, problem: TrainingProblem, response: str, correct: bool) -> Trajectory:
    """A response text to ``problem`` as a trajectory, encoded exactly as the search formats it."""
    response_ids = model.tokenizer(response, add_special_tokens=False)["input_ids"]
    return Trajectory(problem, tuple(model.encode_prompt(problem.text)), tuple(response_ids), response, correct)


def check_both_classes(trajectories: Sequence[Trajectory]) -> None:
    """A head needs correct and wrong trajectories; one class alone is a one-line error."""
    correct = sum(t.correct for t in trajectories)
    if correct == 0 or correct == len(trajectories):
        kind = "correct" if correct == 0 else "wrong"
        raise ProblemError(f"none of the {len(trajectories)} sampled trajectories is {kind}, so a head cannot learn to "
                           "tell them apart: use more or other problems, more samples, or another temperature")
