"""The sampler both expanders share: sample a child's tokens, find where its step ends,
and score the steps from the hidden states captured on the way.

``sample_tokens``, ``append_token`` and ``finish_steps`` are the sampler phase of the
shared expander's engine (``engine``); ``decode_children`` is the reference expander's
whole decode loop over a ``forward_rows`` callable. Each child row samples with its own
generator seeded from (request seed, child index), so a child's tokens do not depend on
which other requests share the batch, nor on when it joined it. The generator lives on the
model's device (a CUDA tensor cannot draw from a CPU generator), so a GPU's draws for a
seed differ from a CPU's: each device is reproducible on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from reflective_search.config import SamplingConfig
from reflective_search.interface import ChildStep, ExpandRequest, StepEnd, child_seed
from reflective_search.model.reflective import ReflectiveModel

# forward_rows(row_ids, last_tokens) -> (logits [A, V], features [A, H]) for those rows,
# after appending each row's last sampled token to that row's context.
ForwardRows = Callable[[list[int], list[int]], tuple[torch.Tensor, torch.Tensor]]


@dataclass(slots=True)
class ChildRow:
    request: int  # index of the request this child belongs to
    generator: torch.Generator  # the child's own sampling stream
    room: int  # tokens the model's context still holds after the request's path
    tokens: list[int] = field(default_factory=list)  # sampled so far
    features: list[torch.Tensor] = field(default_factory=list)  # [H] state that emitted tokens[i]
    logprob: float = 0.0  # summed log p at temperature 1
    end: StepEnd | None = None  # set when the step stops
    delimiter_char: int = -1  # where the delimiter starts in the step text (DELIMITER only)


Unit = tuple[int, int]  # (request index, child index): one child row to sample


def all_units(requests: Sequence[ExpandRequest]) -> list[Unit]:
    """Every child of every request, in request order then child order."""
    return [(index, child) for index, request in enumerate(requests) for child in range(request.k)]


def make_rows(requests: Sequence[ExpandRequest], units: Sequence[Unit], max_context: int,
              device: torch.device | str) -> list[ChildRow]:
    """One row per unit, each with the generator its (request seed, child index) gives, on ``device``."""
    rooms = [context_room(request, max_context) for request in requests]
    return [
        ChildRow(request=index, room=rooms[index],
                 generator=torch.Generator(device=device).manual_seed(child_seed(requests[index].seed, child)))
        for index, child in units
    ]


def context_room(request: ExpandRequest, max_context: int) -> int:
    """Tokens a child of ``request`` may take before the path fills the model's context."""
    used = sum(len(segment) for segment in request.path)
    if used >= max_context:
        raise ValueError(f"cannot expand a path of {used} tokens: the model's context is {max_context} tokens "
                         f"(a path that fills it ends with StepEnd.CONTEXT and is terminal)")
    return max_context - used


NUCLEUS_CANDIDATES = 256  # top tokens sorted first; a row whose nucleus needs more is sorted whole


def sample_tokens(logits: torch.Tensor, rows: Sequence[ChildRow], sampling: SamplingConfig) -> tuple[list[int], list[float]]:
    """One token per row from logits [A, V]; returns tokens and their temperature-1 log p."""
    logits = logits.float()
    if sampling.temperature == 0:
        tokens = logits.argmax(dim=-1)
    else:
        probs = _nucleus(torch.softmax(logits / sampling.temperature, dim=-1), sampling.top_p)
        tokens = _draw(probs, [row.generator for row in rows])
    logp = torch.log_softmax(logits, dim=-1).gather(1, tokens[:, None])[:, 0]
    return tokens.tolist(), logp.tolist()


def _draw(probs: torch.Tensor, generators: Sequence[torch.Generator]) -> torch.Tensor:
    """One token per row of probs [A, V], row i from ``generators[i]``: exactly
    ``torch.multinomial(probs[i], 1, generator=generators[i])`` (which is argmax p / q with
    q ~ Exp(1) drawn from that generator), with the division and argmax done once for all rows."""
    noise = torch.empty_like(probs)
    for row, generator in enumerate(generators):
        noise[row].exponential_(generator=generator)
    return (probs / noise).argmax(dim=-1)


def _nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of top tokens whose mass reaches ``top_p``; renormalise.

    Sorting the whole vocabulary costs ~5 ms a row at 49k tokens; the top
    ``NUCLEUS_CANDIDATES`` by ``topk`` give the same leading sorted values and prefix sums,
    hence the same kept set, whenever the nucleus ends among them (rows where it does not
    are sorted whole)."""
    if top_p >= 1.0:
        return probs
    top, order = probs.topk(min(NUCLEUS_CANDIDATES, probs.shape[-1]), dim=-1)
    before = top.cumsum(dim=-1) - top  # mass of the tokens ranked above each one
    short = (before[:, -1] < top_p).nonzero()[:, 0]  # the nucleus may run past the candidates
    kept = torch.zeros_like(probs).scatter_(-1, order, top.masked_fill(before >= top_p, 0.0))
    if len(short):
        sorted_p, full_order = probs[short].sort(dim=-1, descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= top_p
        kept[short] = torch.zeros_like(sorted_p).scatter(-1, full_order, sorted_p.masked_fill(drop, 0.0))
    return kept / kept.sum(dim=-1, keepdim=True)


def decode_children(model: ReflectiveModel, requests: Sequence[ExpandRequest], units: Sequence[Unit],
                    first_logits: torch.Tensor, first_features: torch.Tensor | None,
                    forward_rows: ForwardRows, sampling: SamplingConfig) -> list[ChildStep]:
    """Sample every request's children until each step ends.

    A child feeds every token it sampled except its last (the loop stops there), so its
    decode cost is ``len(tokens) - 1`` forwarded tokens: see ``decode_cost``.

    ``first_logits [C, V]`` / ``first_features [C, H]`` hold, for each of the C units,
    the outputs at the last position of its request's path. Features are None when
    scoring is off (benchmarks only): every score is then 0. Returns one step per unit.
    """
    rows = make_rows(requests, units, model.max_context, model.device)
    logits, features = first_logits, first_features
    active = list(range(len(rows)))
    eos = model.eos_token_ids
    for _ in range(sampling.max_step_tokens):
        tokens, logps = sample_tokens(logits, [rows[i] for i in active], sampling)
        for slot, row_id in enumerate(active):
            feature = features[slot] if features is not None else None
            append_token(model, eos, rows[row_id], tokens[slot], logps[slot], feature, sampling)
        still = [(row_id, tokens[slot]) for slot, row_id in enumerate(active) if rows[row_id].end is None]
        if not still:
            break
        active = [row_id for row_id, _ in still]
        logits, features = forward_rows(active, [token for _, token in still])
    return finish_steps(model, requests, rows, sampling)


def decode_cost(children: Sequence[ChildStep]) -> int:
    """Tokens the decode loop fed for these children (all but each child's last)."""
    return sum(len(child.tokens) - 1 for child in children)


def append_token(model: ReflectiveModel, eos: frozenset[int], row: ChildRow, token: int, logp: float,
            feature: torch.Tensor | None, sampling: SamplingConfig) -> None:
    """Record a sampled token and decide whether the row's step has ended."""
    row.tokens.append(token)
    row.features.append(feature)
    row.logprob += logp
    if token in eos:
        row.end = StepEnd.EOS
    elif sampling.step.size is not None:  # block steps: the size alone ends a step
        if len(row.tokens) >= sampling.step.size:
            row.end = StepEnd.BLOCK
        elif len(row.tokens) >= row.room:
            row.end = StepEnd.LENGTH
    elif model.boundary.may_end[token] and (hit := model.boundary.find(model.decode(row.tokens))) is not None:
        row.end, row.delimiter_char = StepEnd.DELIMITER, hit[0]
    elif len(row.tokens) >= min(sampling.max_step_tokens, row.room):
        row.end = StepEnd.LENGTH  # finish_steps reports CONTEXT if it was the context that ran out


def _block_score_index(model: ReflectiveModel, row: ChildRow, sampling: SamplingConfig) -> int | None:
    """Block steps: which captured state scores the step, None when it is unscored (one rule,
    ``BlockSteps.score_token``, shared with score_steps and head training)."""
    if row.end not in (StepEnd.BLOCK, StepEnd.EOS):
        return None  # cut by the context: not a whole block
    return model.step_rule(sampling.step).score_token(len(row.tokens), final=row.end is StepEnd.EOS)


def _score_index(model: ReflectiveModel, row: ChildRow) -> int:
    """Which captured state scores the step (see model.steps for the rule)."""
    if row.end is StepEnd.DELIMITER:
        return model.boundary.token_at(model.boundary.char_ends(row.tokens), row.delimiter_char)
    return len(row.tokens) - 1  # EOS: the state that emitted it; LENGTH: the last state we have


def finish_steps(model: ReflectiveModel, requests: Sequence[ExpandRequest], rows: list[ChildRow],
            sampling: SamplingConfig) -> list[ChildStep]:
    """Score all rows with one head call (the only scoring cost) and build their steps."""
    blocks = [_block_score_index(model, row, sampling) for row in rows] if sampling.step.size else None
    indices = [_score_index(model, row) if blocks is None or blocks[i] is None else blocks[i]
               for i, row in enumerate(rows)]
    if rows[0].features[0] is None:
        scores = [0.0] * len(rows)
    else:
        scores = model.score_features(torch.stack([row.features[i] for row, i in zip(rows, indices)])).tolist()
    before = {index: _response_so_far(model, requests[index]) for index in {row.request for row in rows}}
    steps = []
    for i, (row, score) in enumerate(zip(rows, scores)):
        text = model.decode(row.tokens[:-1] if row.end is StepEnd.EOS else row.tokens)
        # A step that filled the context cannot be followed, however it ended (an EOS ends anyway).
        end = StepEnd.CONTEXT if len(row.tokens) >= row.room and row.end is not StepEnd.EOS else row.end
        if blocks is not None:
            scored = blocks[i] is not None
        else:
            delimiter = row.delimiter_char if end is StepEnd.DELIMITER else None
            scored = model.boundary.step_is_scored(before[row.request], text, delimiter, final=end is StepEnd.EOS)
        steps.append(ChildStep(tuple(row.tokens), text, row.logprob, float(score), end, scored))
    return steps


def _response_so_far(model: ReflectiveModel, request: ExpandRequest) -> str:
    """The text of the steps on the request's path (below the prompt)."""
    return model.decode([token for segment in request.path[1:] for token in segment])


def group_by_request(requests: Sequence[ExpandRequest], units: Sequence[Unit],
                     steps: Sequence[ChildStep]) -> list[list[ChildStep]]:
    """Steps regrouped per request, in child order."""
    grouped: dict[Unit, ChildStep] = dict(zip(units, steps))
    return [[grouped[(i, c)] for c in range(r.k)] for i, r in enumerate(requests)]
