"""The scheduler: which waiting children join the next forward, within a rows cap and the
KV budget.

Requests wait in submission order and are admitted child by child from the head of the
queue: a request whose children do not all fit joins with those that do, and the rest
follow in later forwards. Live rows keep decoding meanwhile. Under a KV budget every live
row holds a reservation of ``max_step_tokens`` slots, so a forward can never overrun it;
a child that does not fit waits at the head of the queue (nothing overtakes it) until
finished rows free room, and an empty engine can always admit one child (``submit``
refuses a path that could not fit alone), so the queue never deadlocks.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import torch

from reflective_search.config import SamplingConfig
from reflective_search.expand.decoding import ChildRow
from reflective_search.expand.kv_arena import KVArena, Segment
from reflective_search.interface import ExpandRequest


@dataclass(slots=True, eq=False)
class Pending:
    """One submitted request: its children as they are admitted and finish."""

    ticket: int  # the call it belongs to
    index: int  # its position in that call
    request: ExpandRequest
    sampling: SamplingConfig
    rows: list[ChildRow | None]  # each child's row once it finished, by child index
    admitted: int = 0  # children admitted so far (they are admitted in child order)
    done: int = 0  # children finished
    forwarded: int = 0  # prefill tokens charged to it
    first: tuple | None = None  # (logits [V], features [H] or None) at its path's end, once computed


@dataclass(slots=True, eq=False)
class LiveRow:
    """A child decoding: its last sampled token is fed in the next forward."""

    pending: Pending
    child: int  # its child index in the request
    row: ChildRow  # tokens, generator, end
    path: list[Segment]  # the path it extends (pinned while it decodes)
    position: int  # position of the next token it feeds
    slots: list[int] = field(default_factory=list)  # slots of its fed tokens (renumbered by compaction)
    _ancestors: tuple[int, torch.Tensor] | None = None  # (arena generation, the path's slots)

    @property
    def lane(self) -> int:
        return self.path[-1].lane

    def visible(self, generation: int) -> torch.Tensor:
        """Slots it attends over: its path's, then its own fed tokens'."""
        if self._ancestors is None or self._ancestors[0] != generation:
            self._ancestors = generation, torch.tensor([slot for s in self.path for slot in s.slots], dtype=torch.long)
        return torch.cat([self._ancestors[1], torch.tensor(self.slots, dtype=torch.long)])


@dataclass(frozen=True, slots=True)
class Admission:
    pending: Pending
    path: list[Segment]  # interned, pinned
    children: range  # child indices joining now


@dataclass(frozen=True, slots=True)
class Batch:
    """What one forward computes."""

    admitted: list[Admission]  # new paths: prefill, then each child's first token
    decoding: list[LiveRow]  # live rows: one token each


class Scheduler:
    """Owns the waiting queue and the live rows.

    Args:
        arena: where KV lives (the scheduler evicts and compacts through ``make_room``).
        max_rows: most child rows decoding at once (None: no cap); a request with more
            children than that joins in parts.
    """

    def __init__(self, arena: KVArena, max_rows: int | None) -> None:
        self.arena = arena
        self.max_rows = max_rows
        self.waiting: deque[Pending] = deque()
        self.live: list[LiveRow] = []
        self.finished_rows = 0  # rows ever retired: room may have freed since a stall
        self.peak_rows = 0  # most rows any forward has decoded
        self._stalled_at = -1  # finished_rows when the head last failed to fit after eviction

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.live

    def submit(self, pendings: list[Pending]) -> None:
        """Queue requests behind every earlier one. Mutates the queue."""
        self.waiting.extend(pendings)

    def schedule(self) -> Batch:
        """The next forward: every live row, plus the children that join now. Mutates: the
        queue (admitted children leave it) and, to make room, the arena."""
        admitted = self._admit()
        self.peak_rows = max(self.peak_rows, len(self.live) + sum(len(a.children) for a in admitted))
        assert admitted or self.live or not self.waiting, "an empty engine must admit the head of its queue"
        if admitted:
            paths = [a.path for a in admitted]
            self.arena.make_room(paths, extra=self._reserved(admitted), in_flight=self.live)
        return Batch(admitted, list(self.live))

    def retire(self, row: LiveRow) -> None:
        """A row's step ended (live or just admitted). Mutates the live set."""
        if row in self.live:
            self.live.remove(row)
        self.finished_rows += 1

    def clear(self) -> None:
        """Forget everything queued and live (after a failed forward reset the arena)."""
        self.waiting.clear()
        self.live.clear()

    def drop(self, ticket: int) -> None:
        """Forget a call's queued and live children (its search has gone). Mutates."""
        self.waiting = deque(p for p in self.waiting if p.ticket != ticket)
        self.live = [row for row in self.live if row.pending.ticket != ticket]

    def _admit(self) -> list[Admission]:
        admitted: list[Admission] = []
        while self.waiting:
            pending = self.waiting[0]
            path = self.arena.intern_path(pending.request.path)
            take = self._fitting(pending, path, admitted)
            if take == 0:
                break
            admitted.append(Admission(pending, path, range(pending.admitted, pending.admitted + take)))
            pending.admitted += take
            if pending.admitted == pending.request.k:
                self.waiting.popleft()
            else:
                break  # the rest of its children wait for rows or room
        return admitted

    def _fitting(self, pending: Pending, path: list[Segment], admitted: list[Admission]) -> int:
        """How many of ``pending``'s next children may join now (rows cap, then KV budget)."""
        rows = len(self.live) + sum(len(a.children) for a in admitted)
        want = pending.request.k - pending.admitted
        if self.max_rows is not None:
            want = min(want, max(self.max_rows - rows, 1 if rows == 0 else 0))
        if want == 0 or self.arena.budget is None:
            return want
        fits = self._kv_fitting(pending, path, admitted, want)
        if fits < want and (not self.live or self._stalled_at != self.finished_rows):
            extra = self._reserved(admitted) + want * pending.sampling.max_step_tokens
            self.arena.make_room([a.path for a in admitted] + [path], extra, in_flight=self.live)
            fits = self._kv_fitting(pending, path, admitted, want)
            if fits == 0:
                self._stalled_at = self.finished_rows  # evicting again before a row ends cannot help
        return fits

    def _kv_fitting(self, pending: Pending, path: list[Segment], admitted: list[Admission], want: int) -> int:
        """Children (up to ``want``) whose worst case fits the budget beside everything live:
        the path's missing tokens and a re-fed last token once, ``max_step_tokens`` each."""
        planned = {id(s): s for a in admitted for s in a.path}
        need = sum(_missing(s) for s in planned.values()) + len(admitted) + self._reserved(admitted)
        first = sum(_missing(s) for s in path if id(s) not in planned) + 1
        room = self.arena.budget - self.arena.length - need - first
        step = pending.sampling.max_step_tokens
        return 0 if room < step else min(want, room // step)

    def _reserved(self, admitted: list[Admission]) -> int:
        """KV slots live rows and admitted children may still add by decoding."""
        live = sum(row.pending.sampling.max_step_tokens - len(row.slots) for row in self.live)
        return live + sum(len(a.children) * a.pending.sampling.max_step_tokens for a in admitted)


def _missing(segment: Segment) -> int:
    """Tokens of ``segment`` without KV."""
    return len(segment.tokens) - len(segment.slots)
