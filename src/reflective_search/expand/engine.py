"""The engine: continuous batching over the KV arena, one forward per ``step``.

Calls are submitted (``submit``) and wait in the scheduler's queue. Every step reads one
way, each phase a named function of the file that owns its state:

    scheduler.schedule  -> which waiting children join, which rows decode; KV made room for
    plan_forward        -> one ForwardPlan: new paths' prefill tokens + live rows' last tokens
    runner.run_forward  -> one model forward over that plan
    sample_rows         -> a token per row (each child's own generator), step ends
    file_rows           -> finished children's KV filed under their parents; finished
                           requests scored, finished calls handed back (``finished``)

A finished call leaves at once while other rows keep decoding, and its search's next call
joins the next forward. Each child samples from its own generator (``child_seed``), so
its tokens do not depend on which other rows share its forwards.
"""

from __future__ import annotations

import itertools
from typing import Sequence

import torch

from reflective_search.config import SamplingConfig
from reflective_search.errors import ConfigError
from reflective_search.expand.decoding import (
    append_token, context_room, decode_cost, finish_steps, make_rows, sample_tokens,
)
from reflective_search.expand.kv_arena import KVArena
from reflective_search.expand.runner import run_forward
from reflective_search.expand.scheduler import Batch, LiveRow, Pending, Scheduler
from reflective_search.expand.tree_attention import ForwardPlan
from reflective_search.interface import ExpandRequest, Expansion
from reflective_search.model.reflective import ReflectiveModel


class Engine:
    """Continuous batching of expansion calls. Not thread-safe: the expander locks around it.

    Args:
        model: the reflective model.
        arena: the KV arena every call's tree lives in.
        max_rows: most child rows decoding at once (None: no cap).
        score: read SPRM scores (off only to measure what scoring costs).
    """

    def __init__(self, model: ReflectiveModel, arena: KVArena, max_rows: int | None, score: bool) -> None:
        self.model = model
        self.arena = arena
        self.score = score
        self.scheduler = Scheduler(arena, max_rows)
        self.finished: dict[int, list[Expansion]] = {}  # ticket -> its call's expansions, until taken
        self.forwards = 0  # forwards run since it was made
        self._tickets = itertools.count()
        self._calls: dict[int, list[Expansion | None]] = {}  # ticket -> expansions so far, by request
        self._left: dict[int, int] = {}  # ticket -> requests still unfinished

    @property
    def idle(self) -> bool:
        return self.scheduler.idle

    def submit(self, requests: Sequence[ExpandRequest], sampling: SamplingConfig) -> int:
        """Queue a call; returns its ticket. Refuses, before queueing anything, a path that
        fills the context or could not fit the KV budget alone. Mutates the queue."""
        for request in requests:
            self._check(request, sampling)
        ticket = next(self._tickets)
        if not requests:
            self.finished[ticket] = []
            return ticket
        self._calls[ticket], self._left[ticket] = [None] * len(requests), len(requests)
        self.scheduler.submit([Pending(ticket, index, request, sampling, [None] * request.k)
                               for index, request in enumerate(requests)])
        return ticket

    def cancel(self, ticket: int) -> None:
        """Forget a call (its search is gone): its queued and live children leave; their KV
        becomes garbage. Mutates."""
        self.scheduler.drop(ticket)
        self._calls.pop(ticket, None)
        self._left.pop(ticket, None)
        self.finished.pop(ticket, None)

    def step(self) -> list[int]:
        """Run one forward; the tickets it finished (their expansions wait in ``finished``).

        Mutates everything. A forward that fails part-way (out of memory, Ctrl-C, NaN
        scores) leaves the cache's layers of unequal length: the arena is reset and every
        queued and live call forgotten before the error propagates.
        """
        try:
            batch = self.scheduler.schedule()
            plan, firsts, decodes = plan_forward(self.arena, batch)
            logits, features = run_forward(self.arena, plan, self.score)
            self.forwards += 1
            rows = self._sample_rows(batch, plan, firsts, decodes, logits, features)
            return self._file_rows(plan, rows)
        except BaseException:
            self.arena.reset()
            self.scheduler.clear()
            self._calls.clear()
            self._left.clear()
            raise

    # -- the phases ---------------------------------------------------------------------------

    def _sample_rows(self, batch: Batch, plan: ForwardPlan, firsts: list[int | None], decodes: list[int],
                     logits: torch.Tensor, features: torch.Tensor | None) -> list[LiveRow]:
        """Every row of the batch with its next token appended: admitted children first (from
        their path's last logits, kept on the request for children admitted later), then live
        rows. Mutates the rows (tokens, slots, ends) and the requests (charges, ``first``)."""
        rows: list[LiveRow] = []
        for admission, output, cost in zip(batch.admitted, firsts, plan.cost):
            pending = admission.pending
            pending.forwarded += cost
            if pending.first is None:
                pending.first = logits[output], (features[output] if features is not None else None)
            made = make_rows([pending.request], [(0, child) for child in admission.children],
                             self.model.max_context, self.model.device)
            start = admission.path[-1].end_position + 1
            rows += [LiveRow(pending, child, row, admission.path, start) for child, row in zip(admission.children, made)]
        for row, output in zip(batch.decoding, decodes):
            row.slots.append(plan.slot_of(output))
            row.position += 1
            rows.append(row)
        decoded = logits[torch.tensor(decodes, dtype=torch.long)], features[decodes] if features is not None else None
        sample_rows(self.model, rows, len(rows) - len(decodes), decoded)
        return rows

    def _file_rows(self, plan: ForwardPlan, rows: list[LiveRow]) -> list[int]:
        """File the prefilled segments' slots and every row whose step ended; finish requests
        and calls whose rows all ended. Mutates the arena's segments, the live set and ``finished``."""
        plan.commit()
        live = set(map(id, self.scheduler.live))  # rows that were decoding before this forward
        done = []
        for row in rows:
            if row.row.end is None:
                if id(row) not in live:
                    self.scheduler.live.append(row)
                continue
            self.arena.adopt(row.path[-1], tuple(row.row.tokens), row.slots)
            self.scheduler.retire(row)
            pending = row.pending
            pending.rows[row.child] = row.row
            pending.done += 1
            if pending.done == pending.request.k and self._finish_request(pending):
                done.append(pending.ticket)
        return done

    def _finish_request(self, pending: Pending) -> bool:
        """Score a request's children into its Expansion; whether that finished its call."""
        steps = finish_steps(self.model, [pending.request], pending.rows, pending.sampling)
        self._calls[pending.ticket][pending.index] = Expansion(tuple(steps), pending.forwarded + decode_cost(steps))
        self._left[pending.ticket] -= 1
        if self._left[pending.ticket]:
            return False
        self.finished[pending.ticket] = self._calls.pop(pending.ticket)
        del self._left[pending.ticket]
        return True

    def _check(self, request: ExpandRequest, sampling: SamplingConfig) -> None:
        context_room(request, self.model.max_context)  # raises for a path that fills the context
        budget = self.arena.budget
        single = sum(len(segment) for segment in request.path) + 1 + sampling.max_step_tokens
        if budget is not None and single > budget:
            raise ConfigError(
                f"kv_budget_tokens={budget} cannot hold one path of {single - sampling.max_step_tokens - 1} "
                f"tokens plus max_step_tokens={sampling.max_step_tokens}: raise it to at least {single}"
            )


def plan_forward(arena: KVArena, batch: Batch) -> tuple[ForwardPlan, list[int | None], list[int]]:
    """The forward for ``batch``: each admitted path's missing tokens (its output: the path's
    last position, unless an earlier part of its request kept it), then each live row's last
    sampled token. Pure: returns the plan and its output indices."""
    plan = ForwardPlan(arena.length, len(arena.lane_roots))
    firsts = [plan.add_path(a.path, output=a.pending.first is None) for a in batch.admitted]
    decodes = [plan.add_decode(row.lane, row.row.tokens[-1], row.position, row.visible(arena.generation))
               for row in batch.decoding]
    return plan, firsts, decodes


def sample_rows(model: ReflectiveModel, rows: list[LiveRow], admitted: int,
                decoded: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    """One token per row: the first ``admitted`` rows from their request's path-end outputs,
    the rest from ``decoded`` (logits [D, V], features [D, H] or None), grouped by sampling
    config (each row draws from its own generator). Mutates the rows: token appended, end decided."""
    outputs = [row.pending.first for row in rows[:admitted]]
    outputs += [(decoded[0][i], decoded[1][i] if decoded[1] is not None else None) for i in range(len(rows) - admitted)]
    groups: dict[SamplingConfig, list[int]] = {}
    for index, row in enumerate(rows):
        groups.setdefault(row.pending.sampling, []).append(index)
    for sampling, members in groups.items():
        logits = torch.stack([outputs[i][0] for i in members])
        tokens, logps = sample_tokens(logits, [rows[i].row for i in members], sampling)
        for i, token, logp in zip(members, tokens, logps):
            append_token(model, model.eos_token_ids, rows[i].row, token, logp, outputs[i][1], sampling)
