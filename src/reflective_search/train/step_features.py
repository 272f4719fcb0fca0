"""Step features for the SPRM head: where each step's feature is read, with which label.

Read exactly where inference reads it (``step_positions``: the state that emits the
delimiter's first token, as ``ReflectiveModel.score_steps`` does). ``make_step_batch`` pads
whole trajectories (joint training); ``frozen_features`` runs each distinct prompt once and
shares its KV with the samples that continue it (frozen heads, evaluation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch

from reflective_search.errors import ProblemError
from reflective_search.model.reflective import ReflectiveModel
from reflective_search.train.policy import pad_batch
from reflective_search.train.tasks import Task, get_task

if TYPE_CHECKING:
    from reflective_search.train.sprm import Trajectory


def step_positions(model: ReflectiveModel, trajectory: Trajectory, step=None) -> list[int]:
    """Absolute positions of the states that emit each step's end (as ``score_steps`` reads);
    ``step``: a ``config.StepConfig`` (None: the model's own rule, ``search_step``)."""
    return model.step_feature_positions(len(trajectory.prompt_ids), trajectory.response_ids, step)


@dataclass(frozen=True, slots=True)
class StepBatch:
    input_ids: torch.Tensor  # [B, T] prompt + response, right-padded
    attention_mask: torch.Tensor  # [B, T]
    rows: torch.Tensor  # [S] which sequence each step belongs to
    positions: torch.Tensor  # [S] where its feature is read
    labels: torch.Tensor  # [S] its trajectory's correctness (0/1), or its step label (diagnostic)
    step_index: torch.Tensor  # [S] the step's position in its trajectory (0 = first)
    policy_labels: torch.Tensor  # [B, T] response tokens of correct trajectories, -100 elsewhere (joint loss)


def make_step_batch(model: ReflectiveModel, trajectories: Sequence[Trajectory], labels: str = "outcome",
                    task: Task | None = None) -> StepBatch:
    """Pad trajectories into one batch and list every step's (row, position, label).

    ``labels="outcome"``: every step inherits its trajectory's correctness. ``"steps"``:
    the step checker's labels (diagnostic only; a step past the checker's list is bad).
    """
    sequences = [list(t.prompt_ids) + list(t.response_ids) for t in trajectories]
    # The policy learns only from correct trajectories: a wrong one's "prompt" is all of it.
    padded = pad_batch([(sequence, len(t.prompt_ids) if t.correct else len(sequence))
                        for t, sequence in zip(trajectories, sequences)], model.tokenizer.pad_token_id)
    rows, positions, targets, index = [], [], [], []
    for row, trajectory in enumerate(trajectories):
        found = step_positions(model, trajectory)
        rows += [row] * len(found)
        positions += found
        targets += _step_targets(trajectory, len(found), labels, task)
        index += list(range(len(found)))
    return StepBatch(padded["input_ids"], padded["attention_mask"], torch.tensor(rows, dtype=torch.long),
                     torch.tensor(positions, dtype=torch.long), torch.tensor(targets),
                     torch.tensor(index, dtype=torch.long), padded["labels"])


def _step_targets(trajectory: Trajectory, steps: int, labels: str, task: Task | None) -> list[float]:
    if labels == "outcome":
        return [float(trajectory.correct)] * steps
    if labels == "steps":
        task = task or get_task("countdown")
        if task.step_labels is None:
            raise ProblemError(f"--labels steps needs a task with a step checker; task {task.name} has none")
        checked = task.step_labels(trajectory.problem, trajectory.response)
        return [float(good) for good in (checked + [False] * steps)[:steps]]
    raise ValueError(f"labels={labels!r}: use 'outcome' or 'steps'")


def batch_features(model: ReflectiveModel, batch: StepBatch) -> torch.Tensor:
    """Head features [S, H] of every step in the batch (gradient flows if enabled)."""
    positions = torch.arange(batch.input_ids.shape[1])[None].expand_as(batch.input_ids)
    # One position's logits, not [B, T, vocab]: SmolLM2's lm_head is 21% of its multiply-adds per token.
    _, features = model(batch.input_ids, position_ids=positions, attention_mask=batch.attention_mask,
                        logits_to_keep=1)
    return features[batch.rows, batch.positions]


@torch.no_grad()
def frozen_features(model: ReflectiveModel, trajectories: Sequence[Trajectory], batch_size: int = 256,
                    labels: str = "outcome", task: Task | None = None, progress: bool = True
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features [S, H], labels [S], trajectory index [S] and step index [S] of every step.

    Each distinct prompt runs once and its KV serves every trajectory that continues it
    (``prompt_shared_features``); ``batch_size`` bounds the rows of one forward.
    """
    per_trajectory = prompt_shared_features(model, trajectories, batch_size, progress)
    return stack_step_features(model, trajectories, per_trajectory, labels, task)


def stack_step_features(model: ReflectiveModel, trajectories: Sequence[Trajectory], per_trajectory: Sequence[torch.Tensor],
                        labels: str = "outcome", task: Task | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``frozen_features``' four tensors from each trajectory's step features [steps, H]."""
    targets, owners, index = [], [], []
    for owner, (trajectory, features) in enumerate(zip(trajectories, per_trajectory)):
        targets += _step_targets(trajectory, len(features), labels, task)
        owners += [owner] * len(features)
        index += range(len(features))
    width = model.feature_size
    features = torch.cat([f.reshape(-1, width) for f in per_trajectory]) if per_trajectory else torch.zeros(0, width)
    return features, torch.tensor(targets), torch.tensor(owners, dtype=torch.long), torch.tensor(index, dtype=torch.long)


def prompt_shared_features(model: ReflectiveModel, trajectories: Sequence[Trajectory], rows: int = 256,
                           progress: bool = True) -> list[torch.Tensor]:
    """Each trajectory's step features [steps, H], read where ``step_positions`` says.

    A problem's samples share their prompt (the chat-formatted problem is most of each
    sequence), so the prompt is computed once and its KV copied to the rows continuing it.
    """
    return [features for features, _ in prompt_shared_pass(model, trajectories, rows, progress=progress)]


@torch.no_grad()
def prompt_shared_pass(model: ReflectiveModel, trajectories: Sequence[Trajectory], rows: int = 256,
                       logprobs: bool = False, progress: bool = True) -> list[tuple[torch.Tensor, float | None]]:
    """(step features [steps, H], mean log-probability per response token or None) of each
    trajectory, from one prompt-shared forward; ``logprobs`` asks for the second (the LM
    head then runs over every response position: keep ``rows`` small, [rows, T, vocab])."""
    from reflective_search.experiments.progress import progress_bar

    groups = prompt_groups(trajectories)
    out: list = [None] * len(trajectories)
    with progress_bar(len(trajectories), "head features", "trajectory", progress) as bar:
        for chunk in _equal_length_chunks(groups, rows):
            members = [[trajectories[i] for i in groups[prompt]] for prompt in chunk]
            read = _continue_prompts(model, chunk, members, logprobs)
            for i, result in zip((i for prompt in chunk for i in groups[prompt]), read):
                out[i] = result
            bar.update(len(read))
    return out


def prompt_groups(trajectories: Sequence[Trajectory]) -> dict[tuple[int, ...], list[int]]:
    """Indices of the trajectories continuing each distinct prompt, in first-seen order."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, trajectory in enumerate(trajectories):
        groups.setdefault(trajectory.prompt_ids, []).append(i)
    return groups


def _equal_length_chunks(groups: dict[tuple[int, ...], list[int]], rows: int) -> list[list[tuple[int, ...]]]:
    """Prompts cut into chunks of one prompt length and at most ``rows`` trajectories
    (a prompt with more trajectories than that gets a chunk of its own)."""
    chunks: list[list[tuple[int, ...]]] = []
    filled = 0
    for prompt in sorted(groups, key=len):
        size = len(groups[prompt])
        if not chunks or len(chunks[-1][0]) != len(prompt) or filled + size > rows:
            chunks.append([])
            filled = 0
        chunks[-1].append(prompt)
        filled += size
    return chunks


def _continue_prompts(model: ReflectiveModel, prompts: list[tuple[int, ...]], members: list[list[Trajectory]],
                      logprobs: bool = False) -> list[tuple[torch.Tensor, float | None]]:
    """One forward over the prompts, then one over every member's response on copies of
    its prompt's KV (responses right-padded and masked)."""
    from transformers import DynamicCache

    length, device, cache = len(prompts[0]), model.device, DynamicCache()
    ids = torch.tensor(prompts, device=device)
    positions = torch.arange(length, device=device)[None].expand_as(ids)
    prompt_logits, prompt_features = model(ids, position_ids=positions, cache=cache, logits_to_keep=1)
    owners = [g for g, group in enumerate(members) for _ in group]
    flat = [t for group in members for t in group]
    longest = max(len(t.response_ids) for t in flat)
    response_logits = response_features = None
    if longest:
        cache.batch_select_indices(torch.tensor(owners, device=device))
        pad = model.tokenizer.pad_token_id
        responses = torch.tensor([list(t.response_ids) + [pad] * (longest - len(t.response_ids)) for t in flat],
                                 device=device)
        seen = torch.tensor([[1] * len(t.response_ids) + [0] * (longest - len(t.response_ids)) for t in flat],
                            device=device)
        mask = torch.cat([torch.ones(len(flat), length, dtype=seen.dtype, device=device), seen], dim=1)
        positions = torch.arange(length, length + longest, device=device)[None].expand_as(responses)
        response_logits, response_features = model(responses, position_ids=positions, attention_mask=mask,
                                                   cache=cache, logits_to_keep=0 if logprobs else 1)
    return [(_read_steps(model, t, prompt_features[owner], None if response_features is None else response_features[row]),
             _mean_logprob(t, prompt_logits[owner, -1], None if response_logits is None else response_logits[row])
             if logprobs else None)
            for row, (owner, t) in enumerate(zip(owners, flat))]


def _mean_logprob(trajectory: Trajectory, first: torch.Tensor, rest: torch.Tensor | None) -> float:
    """Mean log-probability of the response's tokens: the first predicted by the prompt's last
    state (``first`` [V]), the others by the response's own states (``rest`` [T, V])."""
    n = len(trajectory.response_ids)
    if n == 0:  # no likelihood to speak for it: rank it last, not (as NaN) first
        return -math.inf
    logits = torch.cat([first[None], rest[: n - 1]]).float()
    tokens = torch.tensor(trajectory.response_ids, device=logits.device)
    return float(torch.log_softmax(logits, dim=-1).gather(-1, tokens[:, None]).mean())


def _read_steps(model: ReflectiveModel, trajectory: Trajectory, prompt_features: torch.Tensor,
                response_features: torch.Tensor | None) -> torch.Tensor:
    """The trajectory's step features [steps, H] from its prompt's and its response's states."""
    length = len(trajectory.prompt_ids)
    rows = [prompt_features[p] if p < length else response_features[p - length] for p in step_positions(model, trajectory)]
    return torch.stack(rows) if rows else prompt_features.new_zeros(0, prompt_features.shape[-1])
